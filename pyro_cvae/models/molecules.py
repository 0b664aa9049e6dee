r"""A sequence CVAE for molecules: SELFIES tokens given a vector of properties. It is the
:class:`~pyro_cvae.CVAE` with other parts, not a second model.

Generative story, for B molecules with property vectors c::

    z ~ p(z | c)                                  # "z": batch (B,), event (D,); any prior of
                                                  # the registry (ModelConfig.prior)
    x ~ prod_t p(x_t | x_<t, z, c)                # "x": batch (B,), event (L,), an
                                                  # autoregressive GRU, masked past the end

and the guide q(z | x, c) = N(loc(x, c), diag scale(x, c)^2) from a GRU over the tokens (or
1-D convolutions: ``MoleculeConfig(encoder="conv")``, see :data:`MOLECULE_ENCODERS`). The
networks are the nets registry's sequence families (:data:`pyro_cvae.nn.sequence.SEQUENCE_NETS`)
and the likelihood its ``"tokens"`` entry, so CVAE's own model and guide, every prior but the
VampPrior (``prior="conditional"``: a learned p(z | c)), the hierarchy (``latent_dims``) and
every objective apply to molecules with one argument. Both sites sit in the data plate, so the
ELBO, the importance-weighted bounds and :func:`pyro_cvae.log_likelihood` apply per molecule.
In training (``model.train()``) each decoder input token but the start token is replaced by
``<unk>`` with probability ``word_dropout`` (Bowman et al. [1]), so the decoder must read z; KL
warm-up is ``TrainConfig.warmup_epochs``. In evaluation mode there is no dropout: log p(x | c)
is the model's.

**Making the decoder read c** (issue 26; ``MoleculeConfig(property_weight=w)``). Fed [z, c] at
every step, the decoder can still ignore c: in training the encoder's z already says what c says
about x. With ``w > 0`` the model adds, in training mode only, the factor ``"properties"``

.. math:: -w \big( \lVert f(x) - c \rVert^2 + \lVert \bar f(\tilde x(z', c)) - c
          \rVert^2 \big), \qquad z' \sim p(z \mid c),

where f (:class:`~pyro_cvae.nn.sequence.SoftTokenPredictor`) predicts the scaled properties from
tokens and learns them on the real molecule x (first term), and the second scores a molecule
:math:`\tilde x` the decoder generates, differentiably (below), from a latent drawn from the
prior, independent of x, by the same predictor with its parameters frozen (:math:`\bar f`: the
decoder must carry c into the molecule; the predictor cannot learn to excuse it). A property predictor
trained jointly is Gomez-Bombarelli et al.'s [4] remedy; scoring the generated sequence rather
than z is what reaches the decoder. A factor, not a change of objective, so the ELBO, IWAE and
every other objective train it; evaluation (test ELBO, log-likelihood) sees the model alone.

The generated molecules are straight-through Gumbel-softmax samples (one-hot tokens forward,
:meth:`~pyro_cvae.nn.sequence.SequenceDecoder.soft_generate`), so the predictor scores what the
generator draws. Measured (control (a) of issue 26: the property vectors of 1,000 held-out MOSES
test molecules as requests, one molecule each, Spearman between requested and achieved; 20,000
molecules x 3 epochs, KL warm-up 1 epoch, word dropout 0.25, seed 0, one thread)::

    row                                   logP    QED     MW      TPSA    MW MAE  val. ELBO
    VAE (no condition: chance)            0.044  -0.007  -0.021   0.043   60.2    -39.03
    CVAE, N(0, I)                         0.107   0.034   0.382   0.115   45.6    -38.63
    CVAE, N(0, I), KL weight 3            0.112   0.003   0.384   0.099   45.2    -38.67
    CVAE, p(z | c)                        0.105   0.039   0.393   0.086   43.7    -38.55
    p(z | c), relaxed soft output, w=50  -0.021   0.001   0.050   0.049  203.6    -73.70
    p(z | c), straight-through, w=10      0.094   0.002   0.454   0.124   61.8    -41.28
    p(z | c), straight-through, w=50      0.101   0.053   0.064   0.074  121.5    -51.08

At this budget nothing tried moves logP control beyond noise (about +-0.03 between seeds of the
sampler): neither the learned prior (as the issue's probe found) nor a KL weight of 3 (the
validation ELBO moves by 0.04 nats: the KL term is small already, so z holds little that could
crowd c out) nor the property loss. Feeding back expected embeddings (Hu et al. [3];
``straight_through=False``) lets the decoder satisfy the predictor with rows inside the simplex
that no drawn molecule resembles: control and the ELBO collapse. The straight-through loss at
w=10 raises the MW rank correlation a little (0.454) at the price of a biased MW and a worse
ELBO; at w=50 it too degrades the molecules (MW off by 120 Da). So ``property_weight`` stays 0
by default: an option for longer runs (``make experiments-long`` measures its row at w=10), not
a remedy shown to work here.

**What does work: classifier-free guidance** (``MoleculeConfig(condition_dropout=p)``,
``sample(guidance=w)``; Ho and Salimans [5]). With condition dropout the decoder is trained
without c (c zeroed, a flag set) for a share p of the molecules, so one network learns both
p(x | z, c) and p(x | z); at generation each token is drawn from
softmax((1 + w) log p(x_t | ., z, c) - w log p(x_t | ., z)), which amplifies whatever the
condition changes in the decoder's next-token distribution, however little that is at a small
budget. Measured (``experiments/molecules.py --train-size 20000 --epochs 3 --warmup-epochs 1``,
p(z | c), word dropout 0.25, one model trained with p = 0.2, sampled at each w; control (a):
Spearman between requested and achieved over 1,000 held-out requests, about +-0.03 standard
error; FCD/Test of 1,000 molecules, 1.37 for 1,000 real training molecules)::

    row                          logP    QED     MW      TPSA    FCD/Test  valid
    p(z | c), no dropout         0.126   0.027   0.461   0.162   20.9      1.000
    p = 0.2, w = 0               0.090   0.051   0.374   0.142   20.8      1.000
    p = 0.2, w = 1               0.149   0.048   0.568   0.268   21.0      1.000
    p = 0.2, w = 3               0.306   0.067   0.715   0.362   21.5      1.000
    p = 0.2, w = 6               0.432   0.118   0.803   0.420   22.5      1.000
    p = 0.2, w = 10              0.480   0.114   0.776   0.440   23.9      1.000

Guidance raises every property's rank correlation at a small cost in FCD (the molecules move
towards the request and away from the average one); QED, a bounded product of many terms,
follows least. Condition dropout is 0 by default (checkpoints keep their shapes); train with
``condition_dropout=0.2`` and sample with ``guidance`` 3-10 for control.

At the issue's budget (``--train-size 100000 --epochs 10 --warmup-epochs 3``, 2,000 requests,
30,000 molecules for FCD/Test; ``experiments/results/molecules_100k/``), KL(q||p) per molecule
over 1,000 validation molecules beside it::

    row                              logP    QED     MW      TPSA    FCD/Test  KL nats
    VAE (no condition: chance)       0.014  -0.033  -0.025  -0.000   10.15     4.85
    CVAE, N(0, I)                    0.484   0.064   0.709   0.618   10.71     3.97
    CVAE, p(z | c)                   0.559   0.108   0.734   0.644   11.17     3.91
    p(z | c), word dropout 0         0.664   0.119   0.849   0.782    8.03     0.42
    p(z | c), p = 0.2, w = 0         0.465   0.096   0.730   0.566   10.48     3.62
    p(z | c), p = 0.2, w = 3         0.691   0.178   0.740   0.785   11.46     3.62

With more data the learned prior does help (0.559 against 0.484), and word dropout 0 beats the
default 0.25 on every property and on FCD while its decoder leaves z nearly unused (0.42 nats):
a decoder that sees its own previous tokens reads c instead of waiting for z. The default stays
0.25 (Bowman et al.'s setting, within noise of 0 at 20,000 molecules, and the checkpoints and
rows measured so far use it); pass ``word_dropout=0`` (``--word-dropout 0``) for control.
Free bits (``fit(free_bits=...)``) moved logP within noise at 20,000 x 3 (0.088 at 0.05 nats,
0.150 at 0.25, against 0.126).

References:
    [1] Bowman et al., Generating Sentences from a Continuous Space, CoNLL 2016.
    [2] Lim et al., Molecular generative model based on conditional variational autoencoder for
        de novo molecular design, Journal of Cheminformatics 2018.
    [3] Hu et al., Toward Controlled Generation of Text, ICML 2017.
    [4] Gomez-Bombarelli et al., Automatic Chemical Design Using a Data-Driven Continuous
        Representation of Molecules, ACS Central Science 2018.
    [5] Ho and Salimans, Classifier-Free Diffusion Guidance, NeurIPS 2021 workshop (2022).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pyro
import torch
from torch.func import functional_call
from torch.nn import functional as F

from .._validate import positive_int
from ..data import Dataset
from ..data.molecules import END, PAD, SPECIAL_TOKENS, START, UNK, Vocabulary
from ..nn._common import broadcast_cat
from ..nn.sequence import ConvSequenceEncoder, SequenceEncoder, SoftTokenPredictor, sequence_lengths
from .config import ModelConfig
from .cvae import CVAE
from .hierarchical import HierarchicalCVAE

__all__ = ["MoleculeConfig", "MoleculeCVAE", "HierarchicalMoleculeCVAE", "MOLECULE_ENCODERS",
           "MOLECULE_NETS"]  # fmt: skip

#: encoder name -> class with the constructor (vocab_size, embed_dim, hidden_dim, latent_dim,
#: cond_width, pad, end) whose forward maps token ids (B, L) and conditions (B, C) or None to the
#: loc and scale (B, D) of q(z | x, c); ``MoleculeConfig(encoder=name)`` picks one
MOLECULE_ENCODERS = {"gru": SequenceEncoder, "conv": ConvSequenceEncoder}

#: encoder name -> the network family of the nets registry that has it (with the GRU decoder)
MOLECULE_NETS = {"gru": "gru", "conv": "conv1d"}

#: priors that cannot model token sequences: the VampPrior's pseudo-inputs are continuous
#: images, and a sequence of token ids has no such relaxation here
_NO_SEQUENCE_PRIORS = ("vamp",)


@dataclass(frozen=True)
class MoleculeConfig(ModelConfig):
    """Architecture of :class:`MoleculeCVAE`: a :class:`ModelConfig` whose network family, data
    shape and likelihood follow from the molecule fields; with the vocabulary it is enough to
    rebuild the model.

    ``max_len``, ``hidden_dim`` and ``encoder`` set the inherited ``image_shape = (max_len,)``,
    ``hidden_dims = (hidden_dim,)`` and ``net`` (:data:`MOLECULE_NETS`); ``likelihood`` is
    ``"tokens"``. Every other field is ModelConfig's: ``prior`` (``"conditional"`` learns
    p(z | c)), ``prior_options``, ``latent_dims`` (a hierarchy over z), ``condition_dim``.
    Configs saved before molecules became a CVAE (no ModelConfig fields) read as before.
    """

    image_shape: tuple[int, ...] = (2,)  # (max_len,), set from max_len
    num_classes: int | None = 0  # molecules are conditioned on property vectors, not labels
    latent_dim: int = 56  # as in Gomez-Bombarelli et al. 2018
    hidden_dims: tuple[int, ...] = (256,)  # (hidden_dim,), set from hidden_dim
    net: str = "gru"  # set from encoder
    likelihood: str = "tokens"
    tokens: tuple[str, ...] = SPECIAL_TOKENS  # the vocabulary, special tokens first
    max_len: int = 2  # token positions, end token included (the longest generated molecule)
    embed_dim: int = 64
    hidden_dim: int = 256  # the GRU's width (or the convolutions' channels)
    word_dropout: float = 0.25  # Bowman et al. 2016 find 0.25-0.5 keeps z in use
    encoder: str = "gru"  # a name in MOLECULE_ENCODERS: "gru" or "conv" (1-D convolutions)
    # weight of the property loss that makes the decoder read c (0: none; see MoleculeCVAE)
    property_weight: float = 0.0
    # probability that a training molecule is decoded without c, so that sample(guidance=w)
    # can contrast p(x | z, c) with p(x | z) (0: none; see MoleculeCVAE)
    condition_dropout: float = 0.0

    __hash__ = ModelConfig.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(
                f"tokens must start with the special tokens {SPECIAL_TOKENS}, got "
                f"{self.tokens[:4]}; build the vocabulary with pyro_cvae.data.molecules.Vocabulary"
            )
        for name in ("max_len", "embed_dim", "hidden_dim"):
            positive_int(name, getattr(self, name))
        if self.encoder not in MOLECULE_ENCODERS:
            raise ValueError(
                f"encoder must be one of {sorted(MOLECULE_ENCODERS)}, got {self.encoder!r}"
            )
        if not (isinstance(self.word_dropout, (int, float)) and 0 <= self.word_dropout < 1):
            raise ValueError(
                f"word_dropout must be in [0, 1), got {self.word_dropout!r}; e.g. 0.25"
            )
        if not (
            isinstance(self.condition_dropout, (int, float)) and 0 <= self.condition_dropout < 1
        ):
            raise ValueError(
                f"condition_dropout must be in [0, 1), got {self.condition_dropout!r}; e.g. 0.2"
            )
        if self.condition_dropout and not self.condition_dim:
            raise ValueError(
                f"condition_dropout={self.condition_dropout} drops the condition of a conditional "
                "model, and this one has none (condition_dim=0); set condition_dropout=0"
            )
        if not (isinstance(self.property_weight, (int, float)) and self.property_weight >= 0):
            raise ValueError(
                f"property_weight must be a number >= 0, got {self.property_weight!r}; e.g. 50"
            )
        if self.property_weight and (not self.condition_dim or self.latent_dims):
            raise ValueError(
                f"property_weight={self.property_weight} needs a conditional model with one "
                f"latent layer, got condition_dim={self.condition_dim}, "
                f"latent_dims={self.latent_dims}; set property_weight=0"
            )
        if self.num_classes not in (0, None):
            raise ValueError(
                f"molecules are conditioned on property vectors (condition_dim), not labels; "
                f"got num_classes={self.num_classes}"
            )
        if self.likelihood != "tokens":
            raise ValueError(
                f"a molecule model scores token sequences: likelihood must be 'tokens', got "
                f"{self.likelihood!r}"
            )
        if self.prior in _NO_SEQUENCE_PRIORS:
            raise ValueError(
                f"prior {self.prior!r} needs continuous pseudo-inputs, which token sequences do "
                "not have; use normal, conditional, mixture or flow (--prior conditional)"
            )
        derived = {"image_shape": (self.max_len,), "hidden_dims": (self.hidden_dim,),
                   "net": MOLECULE_NETS[self.encoder]}  # fmt: skip
        defaults = {"image_shape": (2,), "hidden_dims": (256,), "net": "gru"}
        source = {"image_shape": "max_len", "hidden_dims": "hidden_dim", "net": "encoder"}
        for name, value in derived.items():
            given = tuple(getattr(self, name)) if name != "net" else self.net
            if given not in (value, defaults[name]):
                raise ValueError(
                    f"{name}={given!r} disagrees with {source[name]}={getattr(self, source[name])!r}; "
                    f"a molecule model sets {name} from {source[name]}: drop {name}"
                )
            object.__setattr__(self, name, value)
        object.__setattr__(self, "num_classes", 0)
        super().__post_init__()

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def net_options(self) -> dict:
        """The sequence networks' keyword options (:data:`~pyro_cvae.nn.sequence.SEQUENCE_NETS`)."""
        return {"vocab_size": self.vocab_size, "embed_dim": self.embed_dim,
                "specials": (PAD, START, END, UNK), "word_dropout": float(self.word_dropout),
                "condition_dropout": float(self.condition_dropout)}  # fmt: skip

    @property
    def layer_options(self) -> dict:
        return {}

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


def _upgrade_state_dict(module, state_dict, prefix, *args) -> None:
    """Checkpoints of the molecule model before it was a CVAE kept N(0, I)'s zero as ``zero``;
    it is the prior's buffer now."""
    old, new = prefix + "zero", prefix + "prior.zero"
    if old in state_dict and new not in state_dict:
        state_dict[new] = state_dict.pop(old)


class MoleculeCVAE(CVAE):
    """Sequence CVAE: the :class:`~pyro_cvae.CVAE` with a GRU (or 1-D convolution,
    ``encoder="conv"``) guide q(z | x, c), an autoregressive GRU p(x | z, c) and any prior
    p(z | c); CVAE's model, guide, saving and conditions, and token-specific inputs and output.

    Example::

        data = pc.load_dataset("moses", train_size=1000)
        model = MoleculeCVAE(MoleculeConfig.for_data(data, hidden_dim=64, prior="conditional"))
        pc.fit(model, data, epochs=2, warmup_epochs=1)
        model.smiles(model.sample(data.schema.encode({"logp": 2.5}), 10))
    """

    config_class = MoleculeConfig

    def __init__(self, config: MoleculeConfig | None = None, **kwargs):
        if config is None:
            config = MoleculeConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a MoleculeConfig or keyword arguments, not both")
        if not isinstance(config, MoleculeConfig):
            raise TypeError(
                f"MoleculeCVAE is built from a MoleculeConfig, got {type(config).__name__}; "
                "use MoleculeConfig.for_data(pc.load_dataset('moses'))"
            )
        super().__init__(config)
        self.vocab = Vocabulary(config.tokens)
        self.register_load_state_dict_pre_hook(_upgrade_state_dict)
        # only with a property loss, so checkpoints of models without one load as before
        self.property_net = (
            SoftTokenPredictor(config.vocab_size, config.embed_dim, config.hidden_dim // 2,
                               config.condition_dim)
            if config.property_weight else None
        )  # fmt: skip

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """CVAE's p(z | c) p(x | z, c), and in training mode with ``property_weight`` the
        property loss as the factor ``"properties"`` in the same data plate (see the class
        docstring)."""
        if not (self.training and self.property_net is not None and y is not None):
            return super().model(x, y)
        # CVAE.model with the factor in its plate (a plate cannot be entered twice); the config
        # refuses a property loss with a hierarchy, so this is the one-layer model
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B):
            z = pyro.sample("z", self.z_dist(c, (B,)))
            pyro.sample("x", self.x_dist(z, c), obs=x)
            pyro.factor("properties", -self.config.property_weight * self.property_loss(x, y))

    def property_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The two squared errors of the property loss per molecule (B,): the predictor's on
        the real tokens x (trains the predictor), and the frozen predictor's on the soft
        sequence the decoder generates from z ~ p(z | c) (trains the decoder and the prior)."""
        c = self.condition(y, x.shape[0])  # (B, C)
        L, V = x.shape[-1], self.config.vocab_size
        mask = torch.arange(L, device=x.device) < sequence_lengths(x, END).unsqueeze(-1)
        real = self.property_net(F.one_hot(x, V).to(c.dtype), mask.to(c.dtype))  # (B, C)
        z = self.z_dist(c, (x.shape[0],)).rsample()  # (B, D), independent of x
        zc = broadcast_cat(z, self.decoder.condition_input(c, drop=False))  # decoded with c
        probs, alive = self.decoder.soft_generate(zc)  # (B, L', V), (B, L')
        frozen = {k: v.detach() for k, v in self.property_net.named_parameters()}
        fake = functional_call(self.property_net, frozen, (probs, alive))  # (B, C)
        return ((real - c) ** 2).sum(-1) + ((fake - c) ** 2).sum(-1)

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

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, *, greedy: bool = False):
        """Token ids (N, max_len) from latents z (N, D) and conditions y (N, C): each token drawn
        from p(x_t | x_<t, z, y) (the most likely one with ``greedy``); ``<pad>`` after the end."""
        return super().decode(z, y, mean=greedy)

    @torch.no_grad()
    def sample(self, y=None, num_samples: int = 1, *, temperature: float = 1.0,
               greedy: bool = False, guidance: float | None = None) -> torch.Tensor:  # fmt: skip
        """Token ids for conditions: one condition (d,) (or ``None`` for a VAE) gives
        (num_samples, max_len); M conditions (M, d) give (M, num_samples, max_len). z is drawn
        from the prior p(z | c) (``temperature`` scales it), tokens one by one from the decoder
        (the most likely ones with ``greedy``).

        ``guidance`` w >= 0 (a model trained with ``condition_dropout``): each token from
        softmax((1 + w) log p(x_t | x_<t, z, c) - w log p(x_t | x_<t, z)), which leans on what
        c changes (classifier-free guidance); 0 is the model's own p(x | z, c); ``None`` (the
        default) keeps that of an enclosing :meth:`guided` block (else 0)."""
        if guidance is None:
            return super().sample(y, num_samples, mean=greedy, temperature=temperature)
        with self.guided(guidance):
            return super().sample(y, num_samples, mean=greedy, temperature=temperature)

    @contextlib.contextmanager
    def guided(self, guidance: float):
        """Within the block, the decoder draws with classifier-free guidance w = ``guidance``
        (every :meth:`sample` and :meth:`decode`); see :meth:`sample`."""
        if not (isinstance(guidance, (int, float)) and guidance >= 0):
            raise ValueError(f"guidance must be a number >= 0, got {guidance!r}; e.g. 2")
        if guidance and not self.config.condition_dropout:
            raise ValueError(
                f"guidance={guidance} needs a model trained with condition_dropout > 0 (it "
                "contrasts p(x | z, c) with p(x | z), which this model never learned); train "
                "with MoleculeConfig(condition_dropout=0.2) (--condition-dropout 0.2), or drop it"
            )
        before, self.decoder.guidance = self.decoder.guidance, float(guidance)
        try:
            yield self
        finally:
            self.decoder.guidance = before

    def smiles(self, ids: torch.Tensor) -> list[str]:
        """SMILES of token ids (..., L), flattened over the leading dimensions."""
        return self.vocab.decode(ids.cpu())


class HierarchicalMoleculeCVAE(MoleculeCVAE, HierarchicalCVAE):
    """The molecule CVAE with stochastic layers ``latent_dims`` (z1 next to the tokens, the
    prior over the top layer): :class:`~pyro_cvae.HierarchicalCVAE`'s model and guide with the
    sequence networks. :func:`pyro_cvae.build_model` builds it for a ``MoleculeConfig`` with
    ``latent_dims``."""
