"""Partial labels for semi-supervised learning: which training images keep their label."""

from __future__ import annotations

import torch

from .core import Dataset

__all__ = ["partial_labels"]


def partial_labels(
    data: Dataset | torch.Tensor,
    num_labels: int | None = None,
    *,
    fraction: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Choose which training images keep their labels: a class-balanced, seeded subset.

    Give either ``num_labels`` (a multiple of the number of classes, so every class gets
    ``num_labels / C`` labelled images) or ``fraction`` of the training set (rounded to
    ``round(fraction * N / C)`` images per class, at least one). Only the training split is
    touched; validation and test sets stay fully labelled.

    Args:
        data: a :class:`Dataset` (its ``train.y`` is used) or a label vector (N,).
        num_labels: total number of labelled images.
        fraction: share of the training images that keep their labels, in (0, 1].
        seed: fixes the choice; the same seed gives the same subset.

    Returns:
        a boolean mask of shape (N,) over the training images, True where the label is kept.
    """
    y = data.train.y if isinstance(data, Dataset) else data
    classes = data.num_classes if isinstance(data, Dataset) else int(y.max().item()) + 1
    n = y.shape[0]
    if (num_labels is None) == (fraction is None):
        raise ValueError(
            f"give exactly one of num_labels and fraction, got num_labels={num_labels!r}, "
            f"fraction={fraction!r}; e.g. num_labels=100 or fraction=0.1"
        )
    if num_labels is not None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels <= 0:
            raise ValueError(
                f"num_labels must be a positive integer, got {num_labels!r}; e.g. --labels 100"
            )
        if num_labels > n:
            raise ValueError(
                f"num_labels={num_labels} is larger than the training set ({n} images); "
                f"use at most {n - n % classes}"
            )
        if num_labels % classes:
            lo = num_labels - num_labels % classes
            raise ValueError(
                f"num_labels={num_labels} cannot be split evenly over {classes} classes; use a "
                f"multiple of {classes} such as {max(lo, classes)} or {lo + classes}"
            )
        per_class = num_labels // classes
    else:
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}; e.g. 0.1")
        per_class = round(fraction * n / classes)
        if per_class < 1:
            raise ValueError(
                f"fraction={fraction} of {n} images leaves no labelled image per class; "
                f"use a fraction of at least {classes / (2 * n):.3g}"
            )
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, dtype=torch.bool)
    y_cpu = y.cpu()
    for c in range(classes):
        idx = torch.nonzero(y_cpu == c).flatten()
        if len(idx) < per_class:
            raise ValueError(
                f"class {c} has only {len(idx)} training images but {per_class} labelled images "
                f"per class were asked for; ask for at most {len(idx) * classes} labels"
            )
        mask[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
    return mask.to(y.device)
