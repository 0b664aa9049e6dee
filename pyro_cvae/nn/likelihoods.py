"""Observation models p(x | z, y): a registry from name to a small module.

Each likelihood turns the decoder's output (..., B, C, H, W) into a distribution whose event
is one whole image (``to_event(3)``), and says which data it accepts.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn

from .distributions import BernoulliImages

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "LIKELIHOOD_CLASSES"]


class Likelihood(nn.Module):
    """Interface: ``dist(out)`` -> per-image distribution, ``mean(out)`` -> image in [0, 1]."""

    #: whether the data must lie in [0, 1]
    needs_unit_range: bool = True

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
        return BernoulliImages(out)  # Bernoulli(logits=out).to_event(3), a cheaper log_prob

    def mean(self, out):
        return torch.sigmoid(out)


class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli of Loaiza-Ganem and Cunningham (2019), a proper density on [0, 1]."""

    def dist(self, out):
        return dist.ContinuousBernoulli(logits=out, validate_args=False).to_event(3)

    def mean(self, out):
        return dist.ContinuousBernoulli(logits=out, validate_args=False).mean


class GaussianLikelihood(Likelihood):
    """Gaussian pixels N(out, scale^2) (squared error), with a fixed or learned scale."""

    needs_unit_range = False

    def __init__(self, scale: float = 0.1, learn: bool = False):
        super().__init__()
        log_scale = torch.tensor(math.log(scale))
        if learn:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def dist(self, out):
        return dist.Normal(out, self.log_scale.exp()).to_event(3)

    def mean(self, out):
        return out.clamp(0.0, 1.0)


#: likelihood name -> class; built from a ModelConfig by :func:`make_likelihood`
LIKELIHOOD_CLASSES = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
}


def make_likelihood(name: str, x_scale: float = 0.1, learn_x_scale: bool = False) -> Likelihood:
    if name not in LIKELIHOOD_CLASSES:
        raise ValueError(
            f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOOD_CLASSES)}"
        )
    if name == "gaussian":
        return GaussianLikelihood(x_scale, learn_x_scale)
    return LIKELIHOOD_CLASSES[name]()
