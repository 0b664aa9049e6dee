"""Two small pieces every network of the package uses: the posterior scale's floor and the
concatenation of z with a condition that broadcasts their leading dimensions."""

from __future__ import annotations

import torch
from pyro.distributions.util import broadcast_shape

__all__ = ["MIN_SCALE", "broadcast_cat"]

#: lower bound on posterior scales: keeps log q finite when an encoder saturates
MIN_SCALE = 1e-4


def broadcast_cat(*tensors: torch.Tensor | None) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting all leading dimensions.

    ``None`` entries (no condition) are skipped. Shapes (K, B, D) and (B, c) give (K, B, D + c).
    """
    if len(tensors) == 2 and type(tensors[1]) is torch.Tensor and type(tensors[0]) is torch.Tensor:
        a, b = tensors  # the training case, (x or z, c) of one batch: checked in two comparisons
        if a.shape[:-1] == b.shape[:-1]:
            return torch.cat(tensors, dim=-1)
    parts = [t for t in tensors if t is not None]
    if not all(isinstance(t, torch.Tensor) for t in parts):
        bad = next(t for t in parts if not isinstance(t, torch.Tensor))
        raise TypeError(
            f"broadcast_cat takes tensors as separate arguments, got a {type(bad).__name__}; "
            "write broadcast_cat(x, c) (or broadcast_cat(*tensors) for a list)"
        )
    if len(parts) == 1:
        return parts[0]
    lead = parts[0].shape[:-1]
    if all(t.shape[:-1] == lead for t in parts):  # the training case: nothing to broadcast
        return torch.cat(parts, dim=-1)
    # pyro's broadcast_shape: the same rule as torch.broadcast_shapes, which in recent torch goes
    # through torch._refs and costs ~0.15 ms per call, a visible share of a training step
    batch = broadcast_shape(*(t.shape[:-1] for t in parts))
    return torch.cat([t.expand(batch + t.shape[-1:]) for t in parts], dim=-1)
