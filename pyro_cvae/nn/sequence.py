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
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn import functional as F

from .nets import MIN_SCALE, broadcast_cat

__all__ = [
    "TokenSequence",
    "sequence_lengths",
    "SequenceEncoder",
    "ConvSequenceEncoder",
    "SequenceDecoder",
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


class SequenceDecoder(nn.Module):
    """p(x | z, c): an autoregressive GRU whose initial state and every input carry [z, c].

    ``forward`` is teacher forcing: the logits of every position from the sequence shifted right
    (start token first); ``step`` advances one token for generation.
    """

    def __init__(self, vocab_size, embed_dim, hidden_dim, latent_dim, cond_width):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init = nn.Linear(latent_dim + cond_width, hidden_dim)
        self.rnn = nn.GRU(embed_dim + latent_dim + cond_width, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def initial_state(self, zc: torch.Tensor) -> torch.Tensor:
        """[z, c] (N, D + C) -> the GRU's first state (1, N, H)."""
        return torch.tanh(self.init(zc)).unsqueeze(0)

    def forward(self, inputs: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None):
        """Teacher forcing. inputs (B, L) ids (start, x_1, ..., x_{L-1}); z (..., B, D);
        c (B, C) or None -> logits (..., B, L, V)."""
        zc = broadcast_cat(z, c)  # (..., B, D + C)
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
