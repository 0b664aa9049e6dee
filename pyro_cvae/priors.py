"""Priors p(z | c) behind one interface, in one registry.

A prior is a module with ``dist(c, batch_shape)`` returning a distribution over ``z`` with
``event_dim == 1`` and the given batch shape, and ``analytic_kl`` telling whether
``kl_divergence(Normal, prior)`` has a closed form (used by ``TraceMeanField_ELBO``).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["Prior", "NormalPrior", "ConditionalNormalPrior", "PRIORS", "make_prior"]


class Prior(nn.Module):
    """Interface of every prior over a latent vector of width ``latent_dim``."""

    analytic_kl: bool = False
    needs_condition: bool = False

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__()
        if options:
            raise ValueError(
                f"{type(self).__name__} takes no options, got {sorted(options)}; remove them"
            )
        self.latent_dim = latent_dim
        self.cond_width = cond_width

    def dist(self, c: torch.Tensor | None, batch_shape: torch.Size) -> dist.TorchDistribution:
        raise NotImplementedError

    def sample(self, c: torch.Tensor | None, batch_shape: torch.Size) -> torch.Tensor:
        """Draw z of shape ``batch_shape + (latent_dim,)``."""
        return self.dist(c, batch_shape).sample()

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z | c), summed over the latent dimensions: shape ``z.shape[:-1]``."""
        return self.dist(c, z.shape[:-1]).log_prob(z)


class NormalPrior(Prior):
    """The standard normal N(0, I), ignoring the condition."""

    analytic_kl = True

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        self.register_buffer("zero", torch.zeros(()))

    def dist(self, c, batch_shape):
        loc = self.zero.expand(tuple(batch_shape) + (self.latent_dim,))
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)


class ConditionalNormalPrior(Prior):
    """A learned Gaussian p(z | c) = N(mu(c), diag sigma(c)^2) with a linear map from c.

    With one-hot labels this is exactly one learned mean and scale per class.
    """

    analytic_kl = True
    needs_condition = True

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        if cond_width == 0:
            raise ValueError(
                "prior 'conditional' needs a condition; build the model with num_classes > 0 "
                "or condition_dim > 0, or use prior='normal'"
            )
        self.net = nn.Linear(cond_width, 2 * latent_dim)
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def dist(self, c, batch_shape):
        loc, log_scale = self.net(c).chunk(2, dim=-1)  # (B, D) each
        shape = tuple(batch_shape) + (self.latent_dim,)
        return dist.Normal(loc.expand(shape), log_scale.exp().expand(shape)).to_event(1)


#: prior name -> class
PRIORS: dict[str, type[Prior]] = {
    "normal": NormalPrior,
    "conditional": ConditionalNormalPrior,
}


def make_prior(name: str, latent_dim: int, cond_width: int, options: dict | None = None) -> Prior:
    """Build the prior registered under ``name``."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name](latent_dim, cond_width, **(options or {}))
