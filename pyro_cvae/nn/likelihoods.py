"""Observation models p(x | z, y): a registry from name to a small module.

Each likelihood turns the decoder's output (..., B, *shape) into a distribution whose event
is one whole data item: an image (C, H, W), a vector (D,), or a table row (:class:`TableRows`:
Gaussian, Bernoulli and Categorical columns), and says which data it accepts.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from .distributions import BernoulliImages
from .sequence import AutoregressiveTokens

__all__ = [
    "Likelihood",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "TableLikelihood",
    "TableRows",
    "TokenLikelihood",
    "TABLE_COLUMN_KINDS",
    "LIKELIHOOD_CLASSES",
]

#: kinds of table columns and the distribution of each: Normal, Bernoulli, Categorical
TABLE_COLUMN_KINDS = ("continuous", "binary", "categorical")


class Likelihood(nn.Module):
    """Interface: ``dist(out)`` -> per-image distribution, ``mean(out)`` -> image in [0, 1]."""

    #: whether the data must lie in [0, 1]
    needs_unit_range: bool = True

    def __init__(self, event_dim: int = 3):
        super().__init__()
        self.event_dim = event_dim  # 3 for images (C, H, W), 1 for vectors

    def dist(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """Bernoulli pixels with logits ``out`` (binary cross-entropy).

    Grey levels in [0, 1] are accepted as soft targets (the usual BCE loss), so the support check
    of ``Bernoulli`` is switched off here; :func:`pyro_cvae.data.check_images` checks the range.
    """

    def dist(self, out):
        # Bernoulli(logits=out).to_event(event_dim), a cheaper log_prob
        return BernoulliImages(out, self.event_dim)

    def mean(self, out):
        return torch.sigmoid(out)


class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli of Loaiza-Ganem and Cunningham (2019), a proper density on [0, 1]."""

    def dist(self, out):
        return dist.ContinuousBernoulli(logits=out, validate_args=False).to_event(self.event_dim)

    def mean(self, out):
        return dist.ContinuousBernoulli(logits=out, validate_args=False).mean


class GaussianLikelihood(Likelihood):
    """Gaussian pixels N(out, scale^2) (squared error), with a fixed or learned scale.

    The mean of an image is clamped to [0, 1]; that of a vector is not."""

    needs_unit_range = False

    def __init__(self, scale: float = 0.1, learn: bool = False, event_dim: int = 3):
        super().__init__(event_dim)
        log_scale = torch.tensor(math.log(scale))
        if learn:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def dist(self, out):
        return dist.Normal(out, self.log_scale.exp()).to_event(self.event_dim)

    def mean(self, out):
        return out.clamp(0.0, 1.0) if self.event_dim == 3 else out


class TableRows(dist.TorchDistribution):
    """Independent columns of a table row, given the decoder's output ``out`` (..., B, W).

    ``columns`` lists (kind, width) per column; the row ``x`` (..., B, W) holds each column's
    encoding in its block, and ``out`` the parameters in the same block::

        continuous   x_j ~ Normal(out_j, s_j)          x_j standardised, s_j learned per column
        binary       x_j ~ Bernoulli(logits=out_j)     x_j in {0, 1}
        categorical  x_J ~ Categorical(logits=out_J)   x_J one-hot over the block J

    ``log_prob`` is the sum of the columns' log-densities, so the row is one event (batch
    ``out.shape[:-1]``, event ``(W,)``): one ``"x"`` site inside the data plate, as for images.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, out: torch.Tensor, log_scale: torch.Tensor, columns, validate_args=None):
        self.out, self.log_scale, self.columns = out, log_scale, tuple(columns)
        kinds = [k for k, w in self.columns for _ in range(w)]
        self._cont = [i for i, k in enumerate(kinds) if k == "continuous"]
        self._bin = [i for i, k in enumerate(kinds) if k == "binary"]
        self._cat, start = [], 0
        for kind, width in self.columns:
            if kind == "categorical":
                self._cat.append(slice(start, start + width))
            start += width
        super().__init__(out.shape[:-1], out.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return TableRows(self.out.expand(batch_shape + self.out.shape[-1:]), self.log_scale,
                         self.columns)  # fmt: skip

    def log_prob(self, value):
        out = self.out
        if value.shape != out.shape:
            shape = broadcast_shape(value.shape, out.shape)
            out, value = out.expand(shape), value.expand(shape)
        total = out.new_zeros(out.shape[:-1])
        if self._cont:
            c = self._cont
            total = total + dist.Normal(out[..., c], self.log_scale.exp()).log_prob(
                value[..., c]).sum(-1)  # fmt: skip
        if self._bin:
            b = self._bin
            total = total - F.binary_cross_entropy_with_logits(
                out[..., b], value[..., b], reduction="none").sum(-1)  # fmt: skip
        for s in self._cat:  # one-hot . log_softmax: Categorical(logits).log_prob(index)
            total = total + (value[..., s] * out[..., s].log_softmax(-1)).sum(-1)
        return total

    def sample(self, sample_shape=()):
        with torch.no_grad():
            out = self.out.expand(torch.Size(sample_shape) + self.out.shape)
            x = torch.empty_like(out)
            c, b = self._cont, self._bin
            if c:
                x[..., c] = out[..., c] + self.log_scale.exp() * torch.randn_like(out[..., c])
            if b:
                x[..., b] = (torch.rand_like(out[..., b]) < torch.sigmoid(out[..., b])).to(x.dtype)
            for s in self._cat:
                k = dist.Categorical(logits=out[..., s]).sample()
                x[..., s] = F.one_hot(k, s.stop - s.start).to(x.dtype)
            return x

    @property
    def mean(self):
        """Column means: the Gaussian means, Bernoulli probabilities, category probabilities."""
        x = self.out.clone()
        if self._bin:
            x[..., self._bin] = torch.sigmoid(self.out[..., self._bin])
        for s in self._cat:
            x[..., s] = self.out[..., s].softmax(-1)
        return x


class TableLikelihood(Likelihood):
    """Rows of a mixed-type table (:class:`TableRows`): continuous columns Gaussian with a
    learned scale per column, binary columns Bernoulli, categorical columns Categorical.

    ``columns`` is ``ModelConfig.table_columns``: (kind, width) per column in row order.
    """

    needs_unit_range = False

    def __init__(self, columns, scale: float = 1.0):
        super().__init__(event_dim=1)
        self.columns = tuple((str(k), int(w)) for k, w in columns)
        n_cont = sum(1 for k, _ in self.columns if k == "continuous")
        # the data are standardised, so a unit scale is where every column starts
        self.log_scale = nn.Parameter(torch.full((n_cont,), math.log(scale)))

    def dist(self, out):
        return TableRows(out, self.log_scale, self.columns)

    def mean(self, out):
        return TableRows(out, self.log_scale, self.columns).mean


class TokenLikelihood(Likelihood):
    """Token sequences (molecules as SELFIES tokens) from an autoregressive sequence decoder
    (:data:`~pyro_cvae.nn.sequence.SEQUENCE_NETS`): the decoder's output is a
    :class:`~pyro_cvae.nn.sequence.Decoding` and the distribution
    :class:`~pyro_cvae.nn.sequence.AutoregressiveTokens` (teacher forcing to score, feedback to
    draw). Its "mean" is the greedy decoding: each token the most likely given those before."""

    needs_unit_range = False

    def __init__(self, event_dim: int = 1):
        super().__init__(1)

    def dist(self, out):
        return AutoregressiveTokens(out.decoder, out.zc)

    def mean(self, out):
        return out.decoder.generate(out.zc, greedy=True)


#: likelihood name -> class; built from a ModelConfig by :func:`make_likelihood`
LIKELIHOOD_CLASSES = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
    "table": TableLikelihood,
    "tokens": TokenLikelihood,
}


def make_likelihood(name: str, x_scale: float = 0.1, learn_x_scale: bool = False,
                    event_dim: int = 3, table_columns=()) -> Likelihood:  # fmt: skip
    """The likelihood ``name`` for data items of ``event_dim`` dimensions (3: images, 1: vectors);
    ``table_columns`` ((kind, width) per column) for ``"table"``."""
    if name not in LIKELIHOOD_CLASSES:
        raise ValueError(
            f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOOD_CLASSES)}"
        )
    if name == "gaussian":
        return GaussianLikelihood(x_scale, learn_x_scale, event_dim)
    if name == "table":
        return TableLikelihood(table_columns)
    return LIKELIHOOD_CLASSES[name](event_dim)
