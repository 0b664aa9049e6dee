r"""A sequence CVAE for molecules: SELFIES tokens given a vector of properties.

Generative story, for B molecules with property vectors c::

    z ~ N(0, I)                                   # "z": batch (B,), event (D,)
    x ~ prod_t p(x_t | x_<t, z, c)                # "x": batch (B,), event (L,), an
                                                  # autoregressive GRU, masked past the end

and the guide q(z | x, c) = N(loc(x, c), diag scale(x, c)^2) from a GRU over the tokens (or
1-D convolutions: ``MoleculeConfig(encoder="conv")``, see :data:`MOLECULE_ENCODERS`). Both
sites sit in the data plate, so the ELBO, the importance-weighted bounds (K particles: leading
(K, B) dimensions) and :func:`pyro_cvae.log_likelihood` apply per molecule unchanged. In training
(``model.train()``) each decoder input token but the start token is replaced by ``<unk>`` with
probability ``word_dropout`` (Bowman et al. [1]), so the decoder must read z; KL warm-up is
``TrainConfig.warmup_epochs``. In evaluation mode there is no dropout: log p(x | c) is the
model's.

References:
    [1] Bowman et al., Generating Sentences from a Continuous Space, CoNLL 2016.
    [2] Lim et al., Molecular generative model based on conditional variational autoencoder for
        de novo molecular design, Journal of Cheminformatics 2018.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from .._frozen import FrozenConfig
from .._validate import positive_int
from ..checkpoint import save_checkpoint
from ..data import Dataset
from ..data.molecules import END, PAD, SPECIAL_TOKENS, START, UNK, Vocabulary
from ..nn.distributions import ReparamNormal
from ..nn.sequence import ConvSequenceEncoder, SequenceDecoder, SequenceEncoder, TokenSequence

__all__ = ["MoleculeConfig", "MoleculeCVAE", "MOLECULE_ENCODERS"]

#: encoder name -> class with the constructor (vocab_size, embed_dim, hidden_dim, latent_dim,
#: cond_width, pad, end) whose forward maps token ids (B, L) and conditions (B, C) or None to the
#: loc and scale (B, D) of q(z | x, c); ``MoleculeConfig(encoder=name)`` picks one
MOLECULE_ENCODERS = {"gru": SequenceEncoder, "conv": ConvSequenceEncoder}


@dataclass(frozen=True)
class MoleculeConfig(FrozenConfig):
    """Architecture of :class:`MoleculeCVAE`; with the vocabulary it is enough to rebuild it."""

    tokens: tuple[str, ...] = SPECIAL_TOKENS  # the vocabulary, special tokens first
    max_len: int = 2  # token positions, end token included (the longest generated molecule)
    condition_dim: int = 0  # width of the property vector; 0: an unconditional VAE
    latent_dim: int = 56  # as in Gomez-Bombarelli et al. 2018
    embed_dim: int = 64
    hidden_dim: int = 256
    word_dropout: float = 0.25  # Bowman et al. 2016 find 0.25-0.5 keeps z in use
    encoder: str = "gru"  # a name in MOLECULE_ENCODERS: "gru" or "conv" (1-D convolutions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(
                f"tokens must start with the special tokens {SPECIAL_TOKENS}, got "
                f"{self.tokens[:4]}; build the vocabulary with pyro_cvae.data.molecules.Vocabulary"
            )
        positive_int("max_len", self.max_len)
        if (
            isinstance(self.condition_dim, bool)
            or not isinstance(self.condition_dim, int)
            or (self.condition_dim < 0)
        ):
            raise ValueError(f"condition_dim must be an integer >= 0, got {self.condition_dim!r}")
        for name in ("latent_dim", "embed_dim", "hidden_dim"):
            positive_int(name, getattr(self, name))
        if self.encoder not in MOLECULE_ENCODERS:
            raise ValueError(
                f"encoder must be one of {sorted(MOLECULE_ENCODERS)}, got {self.encoder!r}"
            )
        if not (isinstance(self.word_dropout, (int, float)) and 0 <= self.word_dropout < 1):
            raise ValueError(
                f"word_dropout must be in [0, 1), got {self.word_dropout!r}; e.g. 0.25"
            )

    # what the training loop's data checks read from any model config
    @property
    def num_classes(self) -> int:
        return 0

    @property
    def cond_width(self) -> int:
        return self.condition_dim

    @property
    def image_shape(self) -> tuple[int]:
        """The shape of one data row, (max_len,)."""
        return (self.max_len,)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @classmethod
    def for_data(cls, data: Dataset, *, unconditional: bool = False, **overrides):
        """The architecture for a molecule data set (its vocabulary, length and properties);
        keyword ``overrides`` (``None`` values ignored) replace fields."""
        if "tokens" not in data.meta:
            raise ValueError(
                f"data set {data.name!r} holds no token vocabulary; load molecules with "
                "pyro_cvae.load_dataset('moses')"
            )
        defaults = {
            "tokens": tuple(data.meta["tokens"]),
            "max_len": int(data.image_shape[0]),
            "condition_dim": 0 if unconditional or data.schema is None else data.schema.width,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**defaults, **overrides})


class MoleculeCVAE(PyroModule):
    """Sequence CVAE: GRU (or 1-D convolution, ``encoder="conv"``) guide q(z | x, c),
    autoregressive GRU model p(z) p(x | z, c).

    Example::

        data = pc.load_dataset("moses", train_size=1000)
        model = MoleculeCVAE(MoleculeConfig.for_data(data, hidden_dim=64))
        pc.fit(model, data, epochs=2, warmup_epochs=1)
        model.generate_smiles(data.schema.encode({"logp": 2.5}), 10)
    """

    config_class = MoleculeConfig
    latent_sites = ("z",)

    def __init__(self, config: MoleculeConfig | None = None, **kwargs):
        if config is None:
            config = MoleculeConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a MoleculeConfig or keyword arguments, not both")
        super().__init__()
        self.config = config
        V, E, H, D, C = (config.vocab_size, config.embed_dim, config.hidden_dim,
                         config.latent_dim, config.condition_dim)  # fmt: skip
        self.encoder = MOLECULE_ENCODERS[config.encoder](V, E, H, D, C, PAD, END)
        self.decoder = SequenceDecoder(V, E, H, D, C)
        self.register_buffer("zero", torch.zeros(()))
        self.vocab = Vocabulary(config.tokens)

    @property
    def device(self) -> torch.device:
        return self.zero.device

    # ------------------------------------------------------------------ conditions and checks

    def condition(self, y: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """The property vectors (B, condition_dim), or ``None`` for an unconditional model."""
        d = self.config.condition_dim
        if not d:
            if y is not None:
                raise ValueError(
                    "this model is unconditional (condition_dim=0) but got y; pass y=None"
                )
            return None
        if y is None or y.dim() != 2 or tuple(y.shape) != (batch_size, d):
            got = "None" if y is None else f"shape {tuple(y.shape)}"
            raise ValueError(
                f"this model is conditioned on property vectors: pass y of shape "
                f"({batch_size}, {d}), got {got}"
            )
        return y.to(self.zero.dtype)

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless ``x`` is (N, L) token ids of this vocabulary and ``y``
        fits the condition. L may differ from ``max_len`` (padding does not count)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point():
            what = (
                f"shape {tuple(x.shape)}, dtype {x.dtype}"
                if isinstance(x, torch.Tensor)
                else (type(x).__name__)
            )
            raise ValueError(
                f"molecules must be integer token ids of shape (N, L), got {what}; encode SMILES "
                "with pyro_cvae.data.molecules.Vocabulary.encode"
            )
        V = self.config.vocab_size
        if x.numel() and (x.min() < 0 or x.max() >= V):
            raise ValueError(
                f"token ids must lie in [0, {V}) (this model's vocabulary), got range "
                f"[{x.min().item()}, {x.max().item()}]; the molecules were encoded with another "
                "vocabulary"
            )
        if y is not None and not torch.isfinite(y).all():
            raise ValueError("conditions contain NaN or Inf")
        self.condition(y, x.shape[0])

    # ------------------------------------------------------------------ distributions

    def z_dist(self, batch_shape) -> dist.TorchDistribution:
        """The prior p(z) = N(0, I): batch ``batch_shape``, event (D,)."""
        D = self.config.latent_dim
        zero = self.zero.expand(*batch_shape, D)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def x_dist(self, z: torch.Tensor, c: torch.Tensor | None, x: torch.Tensor) -> TokenSequence:
        """p(x | z, c) scored by teacher forcing on ``x`` (B, L); z (..., B, D) -> batch
        (..., B), event (L,)."""
        inputs = torch.cat([torch.full_like(x[:, :1], START), x[:, :-1]], dim=1)  # (B, L)
        p = self.config.word_dropout
        if self.training and p > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < p
            drop[:, 0] = False  # the start token stays
            inputs = torch.where(drop, torch.full_like(inputs, UNK), inputs)
        return TokenSequence(self.decoder(inputs, z, c), END)

    def q_dist(self, x: torch.Tensor, c: torch.Tensor | None) -> dist.TorchDistribution:
        """The guide's q(z | x, c): batch (B,), event (D,)."""
        loc, scale = self.encoder(x, c)
        return ReparamNormal(loc, scale).to_event(1)

    # ------------------------------------------------------------------ model and guide

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(z) p(x | z, y) over one plate of B molecules."""
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B):
            z = pyro.sample("z", self.z_dist((B,)))  # (B, D) or (K, B, D)
            pyro.sample("x", self.x_dist(z, c, x), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(z | x, y), inside the same plate as the model."""
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B):
            pyro.sample("z", self.q_dist(x, c))

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Posterior mean and scale of q(z | x, y), each (N, latent_dim)."""
        self.check_inputs(x, y)
        return self.encoder(x, self.condition(y, x.shape[0]))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, *, greedy: bool = False):
        """Token ids (N, max_len) from latents z (N, D) and conditions y (N, C): each token drawn
        from p(x_t | x_<t, z, y) (the most likely one with ``greedy``); ``<pad>`` after the end."""
        N = z.shape[0]
        c = self.condition(y, N) if self.config.condition_dim else self.condition(None, 0)
        zc = z if c is None else torch.cat([z, c], -1)  # (N, D + C)
        h = self.decoder.initial_state(zc)
        token = torch.full((N,), START, dtype=torch.long, device=z.device)
        out = torch.full((N, self.config.max_len), PAD, dtype=torch.long, device=z.device)
        done = torch.zeros(N, dtype=torch.bool, device=z.device)
        for t in range(self.config.max_len):
            logits, h = self.decoder.step(token, zc, h)  # (N, V)
            logits[:, [PAD, START, UNK]] = -torch.inf  # never generated
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.distributions.Categorical(logits=logits).sample()
            out[:, t] = torch.where(done, torch.full_like(token, PAD), token)
            done |= token == END
            if done.all():
                break
        return out

    def _conditions(self, y) -> tuple[torch.Tensor | None, bool]:
        """(M, d) conditions from one (d,) or M (M, d) vectors, and whether it was one."""
        d = self.config.condition_dim
        if y is None:
            if d:
                raise ValueError(f"this model is conditional: pass y of shape ({d},) or (M, {d})")
            return None, True
        if not d:
            raise ValueError("this model is unconditional; call sample(None, num_samples)")
        t = torch.as_tensor(y, dtype=self.zero.dtype, device=self.device)
        if t.dim() not in (1, 2) or t.shape[-1] != d:
            raise ValueError(
                f"pass one condition of shape ({d},) or M conditions of shape (M, {d}), got "
                f"shape {tuple(t.shape)}"
            )
        return t.reshape(-1, d), t.dim() == 1

    @torch.no_grad()
    def sample(self, y=None, num_samples: int = 1, *, temperature: float = 1.0,
               greedy: bool = False) -> torch.Tensor:  # fmt: skip
        """Token ids for conditions: one condition (d,) (or ``None`` for a VAE) gives
        (num_samples, max_len); M conditions (M, d) give (M, num_samples, max_len).
        ``temperature`` scales the prior draw of z."""
        positive_int("num_samples", num_samples)
        c, single = self._conditions(y)
        M = 1 if c is None else c.shape[0]
        z = temperature * torch.randn(M * num_samples, self.config.latent_dim, device=self.device)
        cc = None if c is None else c.repeat_interleave(num_samples, 0)  # (M * n, d)
        ids = self.decode(z, cc, greedy=greedy).reshape(M, num_samples, -1)
        return ids[0] if single else ids

    def smiles(self, ids: torch.Tensor) -> list[str]:
        """SMILES of token ids (..., L), flattened over the leading dimensions."""
        return self.vocab.decode(ids.cpu())

    def generate_smiles(self, y=None, num_samples: int = 1, **kw) -> list[str]:
        """SMILES of :meth:`sample`'s molecules, row by row (condition-major)."""
        return self.smiles(self.sample(y, num_samples, **kw))

    def save(self, path: str | Path, **extra) -> Path:
        """Write config and weights to ``path`` atomically; :func:`pyro_cvae.load` reads it."""
        payload = {
            "format": "pyro_cvae.model",
            "model_class": type(self).__name__,
            "model_config": self.config.to_dict(),
            "model": self.state_dict(),
            **extra,
        }
        return save_checkpoint(path, payload)
