r"""Label posteriors and classification accuracy of the semi-supervised models (M2, M1+M2, ADGM,
SDGM): the classifier q(y | x) and the generative classifier p(y | x).

The generative classifier reads the importance weights of every label,
:math:`w_{yk} = p(x, z_{yk}, y) / q(z_{yk} | x, y)` with :math:`z_{yk} \sim q(z | x, y)`
(:func:`~pyro_cvae.infer.semisupervised.label_log_weights`):

.. math:: p(y | x) \approx \operatorname{softmax}_y \log \frac1K \sum_{k=1}^K w_{yk}.

The trainer reports the accuracies of :func:`accuracy` after every epoch of a semi-supervised
run (one layer up, in :mod:`pyro_cvae.train.families`).

References:
    [1] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
"""

from __future__ import annotations

import math

import torch

from ..data import Split
from ..infer.semisupervised import label_log_weights
from ..models.m2 import M2

__all__ = ["generative_posterior", "accuracy"]


@torch.no_grad()
def generative_posterior(
    model: M2, x: torch.Tensor, num_particles: int = 10, *, batch_size: int = 500
) -> torch.Tensor:
    """p(y | x) from the importance weights, softmax_y log mean_k w_yk: (N, C) probabilities."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        log_w = label_log_weights(model, x[i : i + batch_size], num_particles)  # (K, C, B)
        log_p_xy = torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])  # (C, B)
        out.append(torch.softmax(log_p_xy, dim=0).T)
    return torch.cat(out) if out else torch.zeros(0, model.config.num_classes)


@torch.no_grad()
def accuracy(model: M2, split: Split, *, generative: int = 0, batch_size: int = 2000) -> float:
    """Test accuracy of q(y | x) (``generative=0``) or of p(y | x) with K = ``generative``."""
    if generative:
        pred = generative_posterior(model, split.x, generative).argmax(-1)
    else:
        pred = torch.cat(
            [model.classify(split.x[i : i + batch_size]) for i in range(0, len(split), batch_size)]
        )
    return (pred == split.y).float().mean().item()
