"""Argument checks written once (layer 0: imports nothing of the package).

Every check raises ``ValueError`` (``TypeError`` for a value of the wrong kind) whose message
names the argument, the value it got and what to pass instead. ``flag`` arguments let the
command line say the same thing in its own words (``--particles`` for ``particles``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "positive_int",
    "choice",
    "positive_number",
    "num_particles",
    "renyi_alpha",
    "check_images",
    "check_labels",
    "resolve_device",
    "DEVICES",
]

DEVICES = ("cpu", "cuda", "auto")


def positive_int(name: str, value: Any, fix: str = "") -> int:
    """``value`` as a positive ``int`` (``bool`` refused), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}. {fix}".rstrip())
    return value


def choice(name: str, value: Any, choices: Iterable[str]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


def positive_number(name: str, value: Any, fix: str = "", *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}. {fix}".rstrip())
    return value


def num_particles(value: Any, name: str = "num_particles (K)", fix: str = "") -> int:
    """K, the number of samples of z per image: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}{fix}")
    return value


def renyi_alpha(value: Any, fix: str = "e.g. --alpha 0.5") -> float:
    """alpha of the Renyi bound: a finite number >= 0 and != 1 (1 is the ELBO)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or value == 1
    ):
        raise ValueError(
            f"alpha must be >= 0 and != 1 (alpha=0 is the IWAE bound, alpha=1 the ELBO), got "
            f"{value!r}; {fix}"
        )
    return value


def check_images(x: torch.Tensor, image_shape: tuple[int, ...], *, binary_range: bool) -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch (N, *image_shape), finite, in range."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"images must be floating point in [0, 1], got dtype {x.dtype}; "
            "convert with x.float() / 255 for bytes"
        )
    if x.dim() != len(image_shape) + 1 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"images must have shape (N, {', '.join(map(str, image_shape))}), got "
            f"{tuple(x.shape)}; reshape them or build the model with image_shape={tuple(x.shape[1:])}"
        )
    if x.numel() == 0:
        return
    lo, hi = (v.item() for v in torch.aminmax(x))  # one pass; NaN propagates into min/max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or Inf; clean the data before training")
    if binary_range and (lo < 0 or hi > 1):
        raise ValueError(
            f"images must lie in [0, 1] for this likelihood, got range "
            f"[{lo:.3g}, {hi:.3g}]; rescale them (e.g. divide by 255)"
        )


def check_labels(y: torch.Tensor, num_classes: int, n: int | None = None) -> None:
    """Raise ``ValueError`` unless ``y`` is an integer vector of labels in [0, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {y.dtype}; use y.long()")
    if y.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(y.shape)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"got {y.shape[0]} labels for {n} images; give one label per image")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got range [{y.min().item()}, "
            f"{y.max().item()}]; the model was built with num_classes={num_classes}"
        )


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but no CUDA GPU is available; use --device cpu"
        )
    choice("device", name, DEVICES)
    return torch.device(name)
