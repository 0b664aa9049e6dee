"""Training of the image-completion models (:mod:`pyro_cvae.models.quadrants`) through :func:`fit`."""

from __future__ import annotations

import torch

from ..data import Dataset, Split
from ..models.quadrants import BaselineNet, QuadrantConfig, QuadrantCVAE
from .config import TrainConfig
from .loop import fit

__all__ = ["train_quadrants"]


def train_quadrants(
    x: torch.Tensor,
    num_given: int,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    latent_dim: int = 20,
    hidden_dims=(500,),
    seed: int = 0,
) -> tuple[BaselineNet, QuadrantCVAE]:
    """Train the baseline (masked cross-entropy) and the CVAE (ELBO) on images ``x`` (N, C, H, W).

    Both go through :func:`pyro_cvae.fit` with the same settings and seed.

    Returns:
        ``(baseline, cvae)`` in eval mode.
    """
    shape = tuple(x.shape[1:])
    config = QuadrantConfig(shape, num_given, latent_dim, tuple(hidden_dims))
    empty = Split(x[:0], torch.zeros(0, dtype=torch.long))
    data = Dataset("completion", Split(x, torch.zeros(len(x), dtype=torch.long)), empty, empty,
                   shape, 0, ())  # fmt: skip
    train = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    torch.manual_seed(seed)
    baseline, cvae = BaselineNet(config), QuadrantCVAE(config)
    fit(baseline, data, train, progress=False)
    fit(cvae, data, train, progress=False)
    return baseline.eval(), cvae.eval()
