r"""The completion task's conditional log-likelihoods: exact for the baseline, importance-sampled
for the CVAE (:mod:`pyro_cvae.models.quadrants`)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .._validate import num_particles
from ..models.quadrants import BaselineNet, QuadrantCVAE, mask_image, quadrant_mask

__all__ = ["conditional_nll", "baseline_nll"]


def _masked_bce(logits: torch.Tensor, y: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the missing pixels of each image: shape (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (bce * (~given)).flatten(1).sum(1)


@torch.no_grad()
def baseline_nll(baseline: BaselineNet, x: torch.Tensor, num_given: int) -> torch.Tensor:
    """Exact -log p(y | c) of the deterministic baseline (nats per image): shape (N,)."""
    given = quadrant_mask(tuple(x.shape[1:]), num_given)
    return _masked_bce(baseline(mask_image(x, given)), x, given)


@torch.no_grad()
def conditional_nll(
    cvae: QuadrantCVAE, x: torch.Tensor, num_samples: int = 100, *, batch_size: int = 200
) -> torch.Tensor:
    r"""Importance-sampled :math:`-\log p(y | c)` (nats per image) with K = ``num_samples``:

    .. math:: -\log \frac1K \sum_k \frac{p(y | z_k, c)\, p(z_k | c)}{q(z_k | c, y)},
              \quad z_k \sim q(z | c, y).

    With K = 1 its expectation is the negative ELBO; it decreases towards the true value as K
    grows [Burda et al., 2016]. Returns a tensor of shape (N,).
    """
    num_particles(num_samples, "num_samples (K)")
    out = []
    for i in range(0, len(x), batch_size):
        y = x[i : i + batch_size]
        c = mask_image(y, cvae.given)
        q = cvae.q_dist(c, y)
        z = q.sample((num_samples,))  # (K, B, D)
        log_w = cvae.y_dist(z, c).log_prob(y) + cvae.z_dist(c).log_prob(z) - q.log_prob(z)
        out.append(math.log(num_samples) - torch.logsumexp(log_w, dim=0))
    return torch.cat(out)
