"""Distributions with cheaper log-densities on the training path (same values, same gradients).

* :class:`StandardNormal`: N(0, I) whose ``log_prob`` is ``-z^2/2 - log(2 pi)/2`` directly,
  instead of ``Normal(zeros, ones)``'s subtract, divide, log of expanded tensors.
* :class:`ReparamNormal`: ``Normal(loc, scale)`` that remembers the noise of its last
  ``rsample``. For that very sample, ``(z - loc) / scale`` *is* the noise, so ``log_prob``
  returns ``-eps^2/2 - log(scale) - log(2 pi)/2``. The value is identical, and so is the
  gradient: through ``z = loc + scale * eps`` the terms in ``(z - loc) / scale`` cancel exactly
  (d/dloc: -eps/scale + eps/scale = 0; d/dscale: -eps^2/scale + eps^2/scale = 0), so only
  ``-log(scale)`` carries gradient either way; autograd just no longer computes the two halves
  that cancel. Any other value (or a copy) takes the ordinary formula.
* :class:`BernoulliImages`: ``Bernoulli(logits).to_event(3)`` whose ``log_prob`` sums the
  cross-entropy over each image *before* negating it. torch's ``Bernoulli.log_prob`` negates
  the full-size tensor (one more pass over K x B x pixels, forward and backward) and broadcasts
  through Python first; the sum is the same number.
* :class:`DiagonalNormalMixture`: a mixture of P diagonal Gaussians (the mixture and Vamp
  priors) whose ``log_prob`` expands the square, ``(z - mu)^2 / s^2 = z^2/s^2 - 2 z mu/s^2 +
  mu^2/s^2``, into two matrix products over the D latent coordinates. torch's
  ``MixtureSameFamily`` broadcasts z against every component instead: a (..., P, D) tensor
  and several passes over it, which for the VampPrior (P = 500) at K = 5000 particles was
  most of the time and memory of a test log-likelihood.

The first three, and :class:`Independent` (what their ``to_event`` returns), answer an
``expand`` to their own batch shape with themselves: Pyro's plates expand every site's
distribution to the plate's shape on every call, two new objects per site for nothing.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints, register_kl
from torch.nn import functional as F

__all__ = [
    "StandardNormal",
    "ReparamNormal",
    "BernoulliImages",
    "DiagonalNormalMixture",
    "Independent",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_EMPTY = torch.Size()


class Independent(dist.Independent):
    """Pyro's ``Independent`` whose ``expand`` to its own batch shape returns itself.

    Inside a plate Pyro expands every site's distribution to the plate's shape, which for a
    distribution built at that shape already makes two new objects per site and step for
    nothing. Distributions are immutable, so the same object serves.
    """

    def expand(self, batch_shape, _instance=None):
        if _instance is None and tuple(batch_shape) == self.batch_shape:
            return self
        new = self._get_checked_instance(Independent, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        # torch sums the event dims as reshape(..., -1).sum(-1): a view more in the graph
        lp = self.base_dist.log_prob(value)
        n = self.reinterpreted_batch_ndims
        return lp.sum(-1) if n == 1 else lp.sum(tuple(range(-n, 0)))


class _CheapShapes:
    """``expand`` to the own batch shape returns the distribution itself, and ``to_event``
    wraps it in the :class:`Independent` above (the hot path's two shape operations)."""

    def to_event(self, reinterpreted_batch_ndims=None):
        n = reinterpreted_batch_ndims
        n = len(self.batch_shape) if n is None else n
        if n <= 0:  # nothing to reinterpret (0), or Pyro's error for a negative count
            return super().to_event(n)
        return Independent(self, n)


class StandardNormal(_CheapShapes, dist.TorchDistribution):
    """N(0, 1) in every coordinate, with the given batch shape."""

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, batch_shape=_EMPTY, *, like: torch.Tensor | None = None,
                 validate_args=None):  # fmt: skip
        like = torch.zeros(()) if like is None else like
        self._dtype, self._device = like.dtype, like.device
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    @property
    def mean(self):
        return torch.zeros(self.batch_shape, dtype=self._dtype, device=self._device)

    @property
    def variance(self):
        return torch.ones(self.batch_shape, dtype=self._dtype, device=self._device)

    def expand(self, batch_shape, _instance=None):
        if _instance is None and tuple(batch_shape) == self.batch_shape:
            return self
        return StandardNormal(batch_shape, like=torch.zeros((), dtype=self._dtype,
                                                            device=self._device))  # fmt: skip

    def rsample(self, sample_shape=_EMPTY):
        shape = self._extended_shape(sample_shape)
        return torch.randn(shape, dtype=self._dtype, device=self._device)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        out = -0.5 * value.pow(2) - _HALF_LOG_2PI
        if out.shape == self.batch_shape + self.event_shape:  # the training case
            return out
        return out.expand(broadcast_shape(out.shape, self.batch_shape))  # not torch's: slow

    def entropy(self):
        return torch.full(self.batch_shape, 0.5 + _HALF_LOG_2PI, dtype=self._dtype,
                          device=self._device)  # fmt: skip


class ReparamNormal(_CheapShapes, dist.Normal):
    """``Normal`` whose ``log_prob`` of its own last reparameterized sample reuses the noise."""

    def __init__(self, loc, scale, validate_args=None):
        if not (isinstance(loc, torch.Tensor) and isinstance(scale, torch.Tensor)
                and loc.shape == scale.shape):  # fmt: skip
            super().__init__(loc, scale, validate_args=validate_args)
            return
        # an encoder's loc and scale: nothing to broadcast (torch's broadcast_all is the
        # larger part of building a Normal)
        self.loc, self.scale = loc, scale
        torch.distributions.Distribution.__init__(self, loc.shape, validate_args=validate_args)

    def rsample(self, sample_shape=_EMPTY):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        value = self.loc + eps * self.scale
        self._last = (value, eps)
        return value

    def log_prob(self, value):
        last = getattr(self, "_last", None)
        if last is not None and value is last[0]:
            if self._validate_args:
                self._validate_sample(value)
            # the noise's terms first: they need no gradient, so one node fewer in the graph
            return (-0.5 * last[1].pow(2) - _HALF_LOG_2PI) - self.scale.log()
        return super().log_prob(value)

    def expand(self, batch_shape, _instance=None):
        if _instance is None and tuple(batch_shape) == self.batch_shape:
            return self
        new = self._get_checked_instance(ReparamNormal, _instance)
        return super().expand(batch_shape, _instance=new)


class BernoulliImages(dist.Independent):
    """Independent Bernoulli pixels over the last ``event_dim`` dims ((C, H, W) by default), given
    logits.

    Pixels in [0, 1] are scored as soft targets (binary cross-entropy), as torch's ``Bernoulli``
    does with its support check off; the value broadcasts against the logits (enumerated or
    vectorized leading dims).
    """

    def __init__(self, logits: torch.Tensor, event_dim: int = 3, validate_args=None):
        base = dist.Bernoulli(logits=logits, validate_args=False)
        super().__init__(base, event_dim, validate_args=validate_args)

    def log_prob(self, value):
        logits = self.base_dist.logits
        if value.shape != logits.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        bce = F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        return -bce.sum(tuple(range(-self.reinterpreted_batch_ndims, 0)))

    def expand(self, batch_shape, _instance=None):
        if _instance is None and tuple(batch_shape) == self.batch_shape:
            return self
        new = self._get_checked_instance(BernoulliImages, _instance)
        return super().expand(batch_shape, _instance=new)


class DiagonalNormalMixture(dist.MixtureSameFamily):
    r"""\sum_p \pi_p \mathcal N(z; \mu_p, \mathrm{diag}\, \sigma_p^2) over the last dim of z.

    Args:
        logits: mixture weights' logits, (*batch, P).
        loc, scale: component means and scales, (*batch, P, D).

    The same distribution as ``MixtureSameFamily(Categorical(logits), Normal(loc,
    scale).to_event(1))`` (sampling is that class's); only ``log_prob`` differs: the quadratic
    form of every component is two batched matrix products over D, computed in float64 (the
    expanded square subtracts large terms when a scale is small), so no (..., P, D) tensor is
    formed. ``expand`` keeps the parameters unexpanded, so the leading particle and sample dims
    of z become rows of the matrix products.
    """

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 validate_args=None):  # fmt: skip
        super().__init__(
            dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1), validate_args
        )
        self._params = (logits, loc, scale)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalNormalMixture, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._params = self._params
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, loc, scale = self._params
        P, D = loc.shape[-2:]
        n = loc.dim() - 2  # the parameters' own batch dims, the last n of the full batch
        batch = broadcast_shape(value.shape[:-1], self.batch_shape)
        lead, own = batch[: len(batch) - n], batch[len(batch) - n :]
        M, N = math.prod(lead), math.prod(own)
        z = value.expand(batch + (D,)).reshape(M, N, D).transpose(0, 1).double()  # (N, M, D)
        loc = loc.expand(own + (P, D)).reshape(N, P, D).double()
        prec = scale.expand(own + (P, D)).reshape(N, P, D).double().pow(-2)
        # (N, P): mu^2/s^2 summed over D, plus the normalizer 2 log s + log 2 pi
        const = (loc.pow(2) * prec - prec.log()).sum(-1) + D * math.log(2 * math.pi)
        quad = (
            torch.bmm(z.pow(2), prec.transpose(1, 2))
            - 2 * torch.bmm(z, (loc * prec).transpose(1, 2))
            + const[:, None, :]
        )  # (N, M, P)
        log_w = torch.log_softmax(logits.expand(own + (P,)).reshape(N, 1, P).double(), -1)
        lp = torch.logsumexp(log_w - 0.5 * quad, -1)  # (N, M)
        return lp.transpose(0, 1).reshape(batch).to(value.dtype)


@register_kl(dist.Normal, StandardNormal)
def _kl_normal_standard(p, q):
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1)/2 - log s
    return 0.5 * (p.scale.pow(2) + p.loc.pow(2) - 1.0) - p.scale.log()
