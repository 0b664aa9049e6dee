r"""Networks and the likelihood of token sequences: a GRU encoder, an autoregressive GRU decoder
and :class:`TokenSequence`, the distribution of a whole sequence as one Pyro sample site.

A sequence is a row of token ids of length L: the tokens, one end token (id ``end``), then
padding. The decoder factorises

.. math:: \log p(x | z, c) = \sum_{t \le T(x)} \log p(x_t | x_{<t}, z, c),

where T(x) is the position of the first end token (L when there is none), so positions past the
end never count: padding appended to a sequence leaves its log-likelihood unchanged. The encoder
reads the tokens left to right and summarises the sequence by its state at T(x), so the guide
does not see the padding either (:class:`ConvSequenceEncoder`, the 1-D convolution alternative of
Gomez-Bombarelli et al. [2], zeroes every layer past T(x) and pools over the positions up to it).
Both broadcast over leading sample dimensions of z (particles).

References:
    [1] Bowman et al., Generating Sentences from a Continuous Space, CoNLL 2016.
    [2] Gomez-Bombarelli et al., Automatic Chemical Design Using a Data-Driven Continuous
        Representation of Molecules, ACS Central Science 2018.
    [3] Hu et al., Toward Controlled Generation of Text, ICML 2017.
    [4] Jang et al., Categorical Reparameterization with Gumbel-Softmax, ICLR 2017.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn import functional as F

from ._common import MIN_SCALE, broadcast_cat

__all__ = [
    "TokenSequence",
    "AutoregressiveTokens",
    "Decoding",
    "sequence_lengths",
    "SequenceEncoder",
    "ConvSequenceEncoder",
    "SequenceDecoder",
    "SoftTokenPredictor",
    "SEQUENCE_NETS",
]


def sequence_lengths(x: torch.Tensor, end: int) -> torch.Tensor:
    """Tokens that count of each row of ``x`` (..., L): up to and including the first ``end``
    token, or all L when there is none."""
    L = x.shape[-1]
    pos = torch.arange(L, device=x.device).expand(x.shape)
    first_end = torch.where(x == end, pos, torch.full_like(pos, L)).min(-1).values
    return torch.clamp(first_end + 1, max=L)


class TokenSequence(dist.TorchDistribution):
    """The distribution of token sequences given per-position logits, masked past each sequence's
    end.

    Args:
        logits: (..., L, V) logits of token t given the tokens before it (teacher forcing: they
            were computed from the sequence being scored).
        end: id of the end token.

    batch shape ``logits.shape[:-2]``, event shape ``(L,)``. ``log_prob(x)`` sums
    ``log softmax(logits)[t, x_t]`` over the positions up to x's first end token. Drawing from
    it needs the decoder (each token feeds the next), so :meth:`sample` is refused: generate
    with the model's ``generate``.
    """

    arg_constraints = {"logits": constraints.real}
    has_enumerate_support = False

    def __init__(self, logits: torch.Tensor, end: int, validate_args=None):
        self.logits = logits
        self.end = end
        super().__init__(logits.shape[:-2], logits.shape[-2:-1], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(
            constraints.integer_interval(0, self.logits.shape[-1] - 1), 1
        )

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.logits.shape[-2:]
        return TokenSequence(self.logits.expand(shape), self.end)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logp = self.logits.log_softmax(-1)  # (..., L, V)
        value = value.long().expand(logp.shape[:-1])  # (..., L)
        per_token = logp.gather(-1, value.unsqueeze(-1)).squeeze(-1)  # (..., L)
        counted = torch.arange(value.shape[-1], device=value.device) < sequence_lengths(
            value, self.end
        ).unsqueeze(-1)
        return torch.where(counted, per_token, torch.zeros_like(per_token)).sum(-1)

    def sample(self, sample_shape=()):
        raise NotImplementedError(
            "a TokenSequence is scored with teacher forcing; draw sequences with the model's "
            "generate() (or sample()), which feeds each token back into the decoder"
        )


class SequenceEncoder(nn.Module):
    """q(z | x, c): token embeddings and c into a GRU; its state at each sequence's end, with c,
    into the mean and scale of a diagonal Gaussian.

    Args:
        vocab_size, embed_dim, hidden_dim, latent_dim, cond_width: sizes (``cond_width`` 0: no c).
        pad: id of the padding token (its embedding is zero).
        end: id of the end token.
    """

    def __init__(self, vocab_size, embed_dim, hidden_dim, latent_dim, cond_width, pad, end):
        super().__init__()
        self.end = end
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad)
        self.rnn = nn.GRU(embed_dim + cond_width, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim + cond_width, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None):
        """x (B, L) ids, c (B, C) or None -> loc, scale, each (B, D)."""
        emb = self.embed(x)  # (B, L, E)
        inp = (
            emb if c is None else torch.cat([emb, c.unsqueeze(-2).expand(*emb.shape[:-1], -1)], -1)
        )
        states, _ = self.rnn(inp)  # (B, L, H)
        last = sequence_lengths(x, self.end) - 1  # (B,)
        h = states.gather(1, last.view(-1, 1, 1).expand(-1, 1, states.shape[-1])).squeeze(1)
        loc, raw = self.out(broadcast_cat(h, c)).chunk(2, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE


class ConvSequenceEncoder(nn.Module):
    """q(z | x, c) by 1-D convolutions (Gomez-Bombarelli et al. [2] encode SMILES this way):
    token embeddings and c through ``layers`` same-length convolutions of ``hidden_dim``
    channels, each output zeroed past the sequence's end, then the maximum over the positions up
    to the end, with c, into the mean and scale of a diagonal Gaussian. Zeroing every layer past
    the end makes the result independent of how much padding follows.

    Args: as :class:`SequenceEncoder`, plus ``kernel_size`` (odd) and ``layers``.
    """

    def __init__(
        self, vocab_size, embed_dim, hidden_dim, latent_dim, cond_width, pad, end,
        kernel_size: int = 5, layers: int = 3,
    ):  # fmt: skip
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd (same-length convolutions), got {kernel_size}"
            )
        self.end = end
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad)
        widths = [embed_dim + cond_width] + [hidden_dim] * layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2)
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.out = nn.Linear(hidden_dim + cond_width, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None):
        """x (B, L) ids, c (B, C) or None -> loc, scale, each (B, D)."""
        L = x.shape[-1]
        inside = torch.arange(L, device=x.device) < sequence_lengths(x, self.end).unsqueeze(-1)
        mask = inside.unsqueeze(1).to(self.out.weight.dtype)  # (B, 1, L)
        emb = self.embed(x)  # (B, L, E)
        inp = (
            emb if c is None else torch.cat([emb, c.unsqueeze(-2).expand(*emb.shape[:-1], -1)], -1)
        )
        h = inp.transpose(1, 2) * mask  # (B, E + C, L), zero past the end
        for conv in self.convs:
            h = F.relu(conv(h)) * mask  # (B, H, L)
        # ReLU outputs are >= 0 and zero past the end, so the maximum over all L positions is the
        # maximum over the positions up to the end
        pooled = h.max(-1).values  # (B, H)
        loc, raw = self.out(broadcast_cat(pooled, c)).chunk(2, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE


class Decoding:
    """What :class:`SequenceDecoder` returns for latents: the decoder and [z, c] (..., B, D + C),
    the parameters of :class:`AutoregressiveTokens` (the likelihood ``"tokens"`` builds it)."""

    __slots__ = ("decoder", "zc")

    def __init__(self, decoder: SequenceDecoder, zc: torch.Tensor):
        self.decoder, self.zc = decoder, zc


class AutoregressiveTokens(dist.TorchDistribution):
    r"""p(x | z, c) of whole token sequences from an autoregressive decoder, one Pyro sample site.

    ``log_prob(x)`` is teacher forcing (the decoder reads x shifted right, with word dropout in
    training mode) and :class:`TokenSequence`'s masked sum; ``sample()`` feeds each drawn token
    back into the decoder. batch shape ``zc.shape[:-1]``, event shape ``(max_len,)``; a scored
    sequence may be of another length L (positions past its end token do not count).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, decoder: SequenceDecoder, zc: torch.Tensor, validate_args=None):
        self.decoder, self.zc = decoder, zc
        super().__init__(zc.shape[:-1], torch.Size([decoder.max_len]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(
            constraints.integer_interval(0, self.decoder.vocab_size - 1), 1
        )

    def expand(self, batch_shape, _instance=None):
        zc = self.zc.expand(torch.Size(batch_shape) + self.zc.shape[-1:])
        return AutoregressiveTokens(self.decoder, zc, validate_args=self._validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args and not self.support.check(value).all():
            raise ValueError(
                f"token ids must lie in [0, {self.decoder.vocab_size}), got range "
                f"[{value.min().item()}, {value.max().item()}]"
            )
        logits = self.decoder.logits(value, self.zc)  # (..., B, L, V)
        return TokenSequence(logits, self.decoder.end).log_prob(value)

    def sample(self, sample_shape=()):
        zc = self.zc.expand(torch.Size(sample_shape) + self.zc.shape)
        return self.decoder.generate(zc)

    def mode_sequence(self) -> torch.Tensor:
        """Each position's most likely token given the ones before (greedy decoding)."""
        return self.decoder.generate(self.zc, greedy=True)


class SequenceDecoder(nn.Module):
    """p(x | z, c): an autoregressive GRU whose initial state and every input carry [z, c].

    ``forward(z, c)`` returns the likelihood's parameters (:class:`Decoding`), as every decoder of
    the nets registry does; :meth:`logits` is teacher forcing (the logits of every position from
    the sequence shifted right, start token first, each input token but the start replaced by
    ``unk`` with probability ``word_dropout`` in training mode, Bowman et al. [1]); :meth:`step`
    advances one token and :meth:`generate` draws whole sequences.

    Args:
        vocab_size, embed_dim, hidden_dim, latent_dim, cond_width: sizes (``cond_width`` 0: no c).
        max_len: positions of a generated sequence, end token included.
        start, end, unk, pad: ids of the start, end, unknown and padding tokens.
        banned: ids never generated (padding, start, unknown).
        word_dropout: probability of replacing an input token by ``unk`` in training.
        condition_dropout: probability that a training sequence is decoded without its
            condition (c zeroed, and a flag that says so). With it the decoder learns both
            p(x | z, c) and p(x | z), and :meth:`generate` can sharpen the condition by guidance
            (Ho and Salimans [5]): each token drawn from
            softmax((1 + w) log p(x_t | ., z, c) - w log p(x_t | ., z)), w = :attr:`guidance`.
            The networks then read [z, c, flag] (D + C + 1); 0 (the default) keeps [z, c].

    [5] Ho and Salimans, Classifier-Free Diffusion Guidance, 2022 (for autoregressive sequence
        models the same tilt of every step's distribution).
    """

    def __init__(self, vocab_size, embed_dim, hidden_dim, latent_dim, cond_width, *,
                 max_len: int, start: int, end: int, unk: int, pad: int = 0, banned=(),
                 word_dropout: float = 0.0, condition_dropout: float = 0.0):  # fmt: skip
        super().__init__()
        self.hidden_dim, self.vocab_size, self.max_len = hidden_dim, vocab_size, max_len
        self.start, self.end, self.unk, self.pad = start, end, unk, pad
        self.banned, self.word_dropout = tuple(banned), float(word_dropout)
        self.latent_dim = latent_dim
        self.condition_dropout = float(condition_dropout) if cond_width else 0.0
        self.guidance = 0.0  # w of generate(); MoleculeCVAE.sample(guidance=) sets it
        width = latent_dim + cond_width + (1 if self.condition_dropout else 0)  # [z, c(, flag)]
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init = nn.Linear(width, hidden_dim)
        self.rnn = nn.GRU(embed_dim + width, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> Decoding:
        """z (..., B, D), c (B, C) or None -> the parameters of p(x | z, c)."""
        return Decoding(self, broadcast_cat(z, self.condition_input(c)))  # zc (..., B, D + C')

    def condition_input(self, c: torch.Tensor | None, drop: bool | None = None):
        """The condition as the networks read it: c (B, C) itself, or with condition dropout
        [c * keep, keep] (B, C + 1), keep 0 with probability ``condition_dropout`` per sequence
        where ``drop`` (default: in training mode) and 1 otherwise."""
        if c is None or not self.condition_dropout:
            return c
        keep = torch.ones(c.shape[:-1] + (1,), dtype=c.dtype, device=c.device)
        if self.training if drop is None else drop:
            keep = (torch.rand_like(keep) >= self.condition_dropout).to(c.dtype)
        return torch.cat([c * keep, keep], -1)

    def _without_condition(self, zc: torch.Tensor) -> torch.Tensor:
        """[z, c, 1] -> [z, 0, 0]: the input of p(x | z) that guidance contrasts with."""
        return torch.cat(
            [zc[..., : self.latent_dim], torch.zeros_like(zc[..., self.latent_dim :])], -1
        )

    def initial_state(self, zc: torch.Tensor) -> torch.Tensor:
        """[z, c] (N, D + C) -> the GRU's first state (1, N, H)."""
        return torch.tanh(self.init(zc)).unsqueeze(0)

    def logits(self, x: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
        """Teacher forcing on x (B, L) ids with [z, c] (..., B, D + C) -> logits (..., B, L, V)."""
        inputs = torch.cat([torch.full_like(x[..., :1], self.start), x[..., :-1]], dim=-1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[..., 0] = False  # the start token stays
            inputs = torch.where(drop, torch.full_like(inputs, self.unk), inputs)
        batch = zc.shape[:-1]
        L = inputs.shape[-1]
        emb = self.embed(inputs).expand(*batch, L, -1)  # (..., B, L, E)
        step_in = torch.cat([emb, zc.unsqueeze(-2).expand(*batch, L, -1)], -1)
        flat = step_in.reshape(-1, L, step_in.shape[-1])  # (K*B, L, E + D + C)
        states, _ = self.rnn(flat, self.initial_state(zc.reshape(-1, zc.shape[-1])))
        return self.out(states).reshape(*batch, L, -1)  # (..., B, L, V)

    def step(self, token: torch.Tensor, zc: torch.Tensor, h: torch.Tensor):
        """One token (N,) with [z, c] (N, D + C) and state (1, N, H) -> logits (N, V), state."""
        inp = torch.cat([self.embed(token), zc], -1).unsqueeze(1)  # (N, 1, E + D + C)
        out, h = self.rnn(inp, h)
        return self.out(out.squeeze(1)), h

    @torch.no_grad()
    def generate(self, zc: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """Token ids (..., max_len) from [z, c] (..., D + C'): each token drawn from
        p(x_t | x_<t, z, c) (the most likely one with ``greedy``), padding after the end; with
        :attr:`guidance` w > 0 from the guided (1 + w) log p(x_t | ., z, c) - w log p(x_t | ., z)."""
        w = float(self.guidance)
        if w and not self.condition_dropout:
            raise ValueError(
                f"guidance={w} contrasts p(x | z, c) with p(x | z), which only a decoder trained "
                "with condition_dropout > 0 has learned; train with condition_dropout (e.g. 0.2) "
                "or set guidance=0"
            )
        lead = zc.shape[:-1]
        zc = zc.reshape(-1, zc.shape[-1])  # (N, D + C')
        N, device = zc.shape[0], zc.device
        h = self.initial_state(zc)
        if w:
            z0 = self._without_condition(zc)
            h0 = self.initial_state(z0)
        token = torch.full((N,), self.start, dtype=torch.long, device=device)
        out = torch.full((N, self.max_len), self.pad, dtype=torch.long, device=device)
        done = torch.zeros(N, dtype=torch.bool, device=device)
        for t in range(self.max_len):
            logits, h = self.step(token, zc, h)  # (N, V)
            if w:
                plain, h0 = self.step(token, z0, h0)
                logits = (1 + w) * logits.log_softmax(-1) - w * plain.log_softmax(-1)
            if self.banned:
                logits[:, list(self.banned)] = -torch.inf  # never generated
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.distributions.Categorical(logits=logits).sample()
            out[:, t] = torch.where(done, torch.full_like(token, self.pad), token)
            done |= token == self.end
            if done.all():
                break
        return out.reshape(*lead, self.max_len)

    def soft_generate(self, zc: torch.Tensor, temperature: float = 1.0,
                      straight_through: bool = True):  # fmt: skip
        """A differentiable stand-in for :meth:`generate`: token probabilities that carry
        gradients to the decoder.

        With ``straight_through`` (the default) each token is drawn as :meth:`generate` draws it
        (Gumbel-max) and fed back one-hot, while the gradient is that of
        softmax((logits + Gumbel noise) / ``temperature``) (the straight-through Gumbel-softmax
        estimator of Jang et al. [4]): the rows are the one-hot sequences the model generates.
        Without it, each step feeds back the expected embedding under softmax(logits /
        ``temperature``) (Hu et al. [3]): rows inside the simplex, which a predictor trained on
        one-hot rows may misread.

        [z, c] (N, D + C) -> rows (N, max_len, V) and, per position, the probability (N, max_len)
        that no end token came before it (1 at the first position): the counterpart of the mask
        up to a sequence's end."""
        N = zc.shape[0]
        h = self.initial_state(zc)  # (1, N, H)
        inp = self.embed(torch.full((N,), self.start, dtype=torch.long, device=zc.device))
        banned = torch.zeros(self.vocab_size, dtype=torch.bool, device=zc.device)
        banned[list(self.banned)] = True
        alive = torch.ones(N, dtype=zc.dtype, device=zc.device)
        probs, alives = [], []
        for _ in range(self.max_len):
            out, h = self.rnn(torch.cat([inp, zc], -1).unsqueeze(1), h)  # (N, 1, H)
            logits = self.out(out.squeeze(1)).masked_fill(banned, -torch.inf)  # (N, V)
            if straight_through:
                u = torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)
                soft = ((logits - torch.log(-torch.log(u))) / temperature).softmax(-1)
                hard = F.one_hot(soft.argmax(-1), self.vocab_size).to(soft.dtype)
                p = hard + soft - soft.detach()  # forward one-hot, gradient of the softmax
            else:
                p = (logits / temperature).softmax(-1)
            probs.append(p)
            alives.append(alive)
            alive = alive * (1 - p[:, self.end])
            inp = p @ self.embed.weight  # (N, E): the token's embedding, or the expected one
        return torch.stack(probs, 1), torch.stack(alives, 1)


class SoftTokenPredictor(nn.Module):
    """Properties (N, P) from token probabilities (N, L, V) and position weights (N, L):
    one-hot rows for real sequences (weights: the mask up to the end), the decoder's soft output
    for generated ones (:meth:`SequenceDecoder.soft_generate`). Embeddings as a matrix product
    (so soft rows embed to the expected embedding), two same-length 1-D convolutions, then the
    weighted mean and the weighted sum over positions (/ L) into a small MLP: sums suit additive
    properties (weight, logP, TPSA), means intensive ones (QED).

    Args:
        vocab_size, embed_dim, hidden_dim: sizes; out_dim: properties P.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, out_dim: int,
                 kernel_size: int = 5):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(vocab_size, embed_dim, bias=False)
        self.convs = nn.ModuleList([
            nn.Conv1d(embed_dim, hidden_dim, kernel_size, padding=kernel_size // 2),
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2),
        ])  # fmt: skip
        self.head = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(),
                                  nn.Linear(hidden_dim, out_dim))  # fmt: skip

    def forward(self, probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """probs (N, L, V), weights (N, L) -> properties (N, P)."""
        w = weights.unsqueeze(1)  # (N, 1, L)
        h = self.embed(probs).transpose(1, 2) * w  # (N, E, L)
        for conv in self.convs:
            h = F.relu(conv(h)) * w  # (N, H, L)
        total = h.sum(-1)  # (N, H)
        mean = total / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        return self.head(torch.cat([mean, total / probs.shape[1]], -1))


def _sequence_options(hidden_dims, vocab_size, specials):
    if len(hidden_dims) != 1:
        raise ValueError(
            f"a sequence network has one GRU (or convolution) width, got hidden_dims={hidden_dims}; "
            f"give one width, e.g. ({hidden_dims[0]},)"
        )
    if not vocab_size:
        raise ValueError("a sequence network needs the vocabulary's size (vocab_size=...)")
    return hidden_dims[0], specials


def _gru_encoder(data_shape, cond_width, hidden_dims, latent_dim, activation="relu", *,
                 vocab_size=0, embed_dim=64, specials=(0, 1, 2, 3), word_dropout=0.0,
                 condition_dropout=0.0):  # fmt: skip
    """The nets registry's ``"gru"`` encoder: :class:`SequenceEncoder` (``specials``: the ids of
    padding, start, end and unknown; ``word_dropout`` and ``condition_dropout`` are the
    decoder's)."""
    hidden, (pad, _, end, _) = _sequence_options(hidden_dims, vocab_size, specials)
    return SequenceEncoder(vocab_size, embed_dim, hidden, latent_dim, cond_width, pad, end)


def _conv_encoder(data_shape, cond_width, hidden_dims, latent_dim, activation="relu", *,
                  vocab_size=0, embed_dim=64, specials=(0, 1, 2, 3), word_dropout=0.0,
                  condition_dropout=0.0):  # fmt: skip
    """The nets registry's ``"conv1d"`` encoder: :class:`ConvSequenceEncoder`."""
    hidden, (pad, _, end, _) = _sequence_options(hidden_dims, vocab_size, specials)
    return ConvSequenceEncoder(vocab_size, embed_dim, hidden, latent_dim, cond_width, pad, end)


def _gru_decoder(data_shape, cond_width, hidden_dims, latent_dim, activation="relu", *,
                 vocab_size=0, embed_dim=64, specials=(0, 1, 2, 3), word_dropout=0.0,
                 condition_dropout=0.0):  # fmt: skip
    """The nets registry's sequence decoder: :class:`SequenceDecoder` for sequences of
    ``data_shape = (max_len,)`` positions."""
    hidden, (pad, start, end, unk) = _sequence_options(hidden_dims, vocab_size, specials)
    return SequenceDecoder(vocab_size, embed_dim, hidden, latent_dim, cond_width,
                           max_len=data_shape[0], start=start, end=end, unk=unk, pad=pad,
                           banned=(pad, start, unk), word_dropout=word_dropout,
                           condition_dropout=condition_dropout)  # fmt: skip


#: the sequence network families of the nets registry (:data:`pyro_cvae.nn.nets.NETS`): a GRU or
#: 1-D convolution encoder with the autoregressive GRU decoder. Built with the keyword options
#: ``vocab_size``, ``embed_dim``, ``specials`` and ``word_dropout`` (``MoleculeConfig`` passes
#: them); the likelihood is ``"tokens"``.
SEQUENCE_NETS = {"gru": (_gru_encoder, _gru_decoder), "conv1d": (_conv_encoder, _gru_decoder)}
