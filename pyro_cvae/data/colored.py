"""Coloured digits: a multi-attribute data set that needs no download.

``"colored-digits"`` tints the 8x8 digits of scikit-learn, ``"colored-mnist"`` MNIST: each grey
image g, rescaled so its brightest pixel is 1, becomes the RGB image
``brightness * rgb(color) * g`` with a colour drawn uniformly from :data:`PALETTE` and a
brightness uniformly from [0.4, 1]. The split's ``y`` is the condition vector (N, width) of
:data:`COLORED_DIGITS_SCHEMA`, not a class index. Both attributes can be read back from the
pixels (:func:`dominant_color`, ``x.amax()``), which is how generated images are checked.
"""

from __future__ import annotations

import torch

from .attributes import AttributeSchema, Categorical, Continuous
from .core import Split
from .names import DIGIT_NAMES

__all__ = [
    "PALETTE",
    "BRIGHTNESS",
    "COLORED_DIGITS_SCHEMA",
    "SCHEMAS",
    "colorize",
    "dominant_color",
    "colored_splits",
]

#: colour name -> RGB in [0, 1]; every colour is far from the others (distance >= 1)
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
BRIGHTNESS = (0.4, 1.0)

#: schema of the coloured-digit data sets: digit (10), colour (6), brightness (1) -> width 17
COLORED_DIGITS_SCHEMA = AttributeSchema(
    [
        Categorical("digit", DIGIT_NAMES),
        Categorical("color", tuple(PALETTE)),
        Continuous("brightness", *BRIGHTNESS),
    ]
)

#: data set name -> schema of its condition vectors
SCHEMAS: dict[str, AttributeSchema] = {
    "colored-digits": COLORED_DIGITS_SCHEMA,
    "colored-mnist": COLORED_DIGITS_SCHEMA,
}


def colorize(grey: torch.Tensor, colors: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """Tint grey images (N, 1, H, W): ``brightness * rgb * grey / max(grey)`` -> (N, 3, H, W).

    Args:
        grey: images in [0, 1].
        colors: palette indices (N,) into :data:`PALETTE`.
        brightness: (N,) values, the brightest pixel of each output.
    """
    rgb = torch.tensor(list(PALETTE.values()), dtype=grey.dtype)[colors]  # (N, 3)
    peak = grey.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (grey / peak) * rgb[:, :, None, None] * brightness[:, None, None, None].to(grey.dtype)


def dominant_color(images: torch.Tensor) -> torch.Tensor:
    """Palette index of each RGB image (N, 3, H, W): the colour nearest to its mean tint.

    The tint is the intensity-weighted mean of the pixels' RGB values divided by its largest
    channel, so a tinted image ``b * rgb * g`` gives exactly ``rgb``.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"dominant_color needs RGB images (N, 3, H, W), got {tuple(images.shape)}")
    w = images.amax(dim=1, keepdim=True)  # (N, 1, H, W) pixel intensity
    tint = (images * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-8)  # (N, 3)
    tint = tint / tint.amax(dim=1, keepdim=True).clamp_min(1e-8)
    palette = torch.tensor(list(PALETTE.values()), dtype=images.dtype, device=images.device)
    return torch.cdist(tint, palette).argmin(dim=1)


def _tint_split(split: Split, seed: int) -> tuple[Split, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(split)
    colors = torch.randint(len(PALETTE), (n,), generator=g)
    lo, hi = BRIGHTNESS
    brightness = lo + (hi - lo) * torch.rand(n, generator=g)
    x = colorize(split.x, colors, brightness)
    names = list(PALETTE)
    rows = [
        {"digit": str(int(d)), "color": names[int(c)], "brightness": float(b)}
        for d, c, b in zip(split.y, colors, brightness)
    ]
    return Split(x, COLORED_DIGITS_SCHEMA.encode(rows)), split.y


def colored_splits(base: dict, seed: int = 0) -> dict:
    """Tint the train/val/test splits of a grey digit data set (the loader's dict).

    The colours and brightnesses are drawn with fixed seeds (not the training seed), so the
    data set is the same in every run. Returns the loader dict with ``y`` the condition vectors
    of :data:`COLORED_DIGITS_SCHEMA`.
    """
    out = {"class_names": DIGIT_NAMES, "source": base.get("source", "")}
    for i, name in enumerate(("train", "val", "test")):
        out[name], _ = _tint_split(base[name], seed=1000 + i)
    return out
