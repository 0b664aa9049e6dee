"""Per-image bounds of a model: its importance log weights and its ELBO on a split.

:func:`pyro_cvae.evaluate` builds the test metrics on them, and the trainer (one layer up)
reports the validation ELBO with :func:`elbo_per_image`.
"""

from __future__ import annotations

import torch

from .._validate import num_particles
from ..data import Split
from ..infer.objectives import ImportanceWeightedELBO, importance_log_weights
from ..models.contract import condition_of

__all__ = ["log_weights", "elbo_per_image"]


@torch.no_grad()
def log_weights(model, x: torch.Tensor, y: torch.Tensor | None, num_samples: int) -> torch.Tensor:
    """log p(x, z_k | y) - log q(z_k | x, y) for K = ``num_samples`` draws: shape (K, B)."""
    num_particles(num_samples, "num_samples (K)", "; e.g. 5000 for a test log-likelihood")
    elbo = ImportanceWeightedELBO(num_particles=num_samples)
    log_w, _, _ = importance_log_weights(elbo, model.model, model.guide, x, y)
    return log_w


@torch.no_grad()
def elbo_per_image(model, split: Split, batch_size: int = 1000, num_samples: int = 1):
    """The ELBO of every image (nats), averaged over ``num_samples`` draws: shape (N,)."""
    out = []
    y_all = condition_of(model, split.y)
    for i in range(0, len(split), batch_size):
        s = slice(i, i + batch_size)
        y = None if y_all is None else y_all[s]
        out.append(log_weights(model, split.x[s], y, num_samples).mean(0))
    return torch.cat(out) if out else torch.zeros(0)
