"""Multi-attribute conditions, and a coloured-digits data set that shows them with no download.

A condition such as ``digit=5, color=red, brightness=0.8`` becomes one real vector c by
concatenating one encoding per attribute, each declared once:

* :class:`Categorical`: a one-hot block of width ``len(values)``;
* :class:`Continuous`: one scalar mapped from ``[low, high]`` to ``[0, 1]``.

An :class:`AttributeSchema` is the ordered list of attributes; it encodes dicts to vectors and
decodes vectors to dicts, parses ``"digit=5,color=red"`` and is stored as ``attributes.json`` in
a run folder, so a model trained with ``ModelConfig(condition_dim=schema.width)`` can be asked
for a red 5 from the command line (``pyro-cvae sample --condition digit=5,color=red``).

Coloured digits (``"colored-digits"``: 8x8 digits of scikit-learn; ``"colored-mnist"``: MNIST):
each grey image g, rescaled so its brightest pixel is 1, becomes the RGB image
``brightness * rgb(color) * g`` with a colour drawn uniformly from :data:`PALETTE` and a
brightness uniformly from [0.4, 1]. The split's ``y`` is the condition vector (N, width), not a
class index. Both attributes can be read back from the pixels (:func:`dominant_color`,
``x.amax()``), which is how generated images are checked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import DIGIT_NAMES, Split

__all__ = [
    "Categorical",
    "Continuous",
    "ATTRIBUTE_KINDS",
    "AttributeSchema",
    "PALETTE",
    "COLORED_DIGITS_SCHEMA",
    "SCHEMAS",
    "colorize",
    "dominant_color",
    "colored_splits",
    "save_schema",
    "load_schema",
    "train_attribute_model",
    "attribute_control",
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
SCHEMA_FILE = "attributes.json"


@dataclass(frozen=True)
class Categorical:
    """A categorical attribute, encoded one-hot: ``values[i]`` -> e_i of width ``len(values)``."""

    name: str
    values: tuple[str, ...]
    kind = "categorical"

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(str(v) for v in self.values))
        if len(self.values) < 2 or len(set(self.values)) != len(self.values):
            raise ValueError(
                f"categorical attribute {self.name!r} needs at least two distinct values, got "
                f"{self.values!r}"
            )

    @property
    def width(self) -> int:
        return len(self.values)

    def parse(self, text) -> str:
        text = str(text).strip()
        if text not in self.values:
            raise ValueError(
                f"{self.name}={text!r} is not a known value; choose one of {', '.join(self.values)}"
            )
        return text

    def encode(self, value) -> list[float]:
        out = [0.0] * self.width
        out[self.values.index(self.parse(value))] = 1.0
        return out

    def decode(self, block: torch.Tensor) -> str:
        return self.values[int(block.argmax())]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "values": list(self.values)}


@dataclass(frozen=True)
class Continuous:
    """A continuous attribute, encoded as one scalar ``(v - low) / (high - low)`` in [0, 1].

    ``default`` (the middle of the range unless given) is used when a condition omits it.
    """

    name: str
    low: float
    high: float
    default: float | None = None
    kind = "continuous"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ValueError(
                f"continuous attribute {self.name!r} needs finite low < high, got "
                f"low={self.low!r}, high={self.high!r}"
            )
        if self.default is None:
            object.__setattr__(self, "default", (self.low + self.high) / 2)

    @property
    def width(self) -> int:
        return 1

    def parse(self, text) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name}={text!r} is not a number; give e.g. {self.name}={self.default}"
            ) from None
        if not self.low <= v <= self.high:
            raise ValueError(
                f"{self.name}={v} is outside the trained range [{self.low}, {self.high}]; "
                "choose a value inside it"
            )
        return v

    def encode(self, value) -> list[float]:
        return [(self.parse(value) - self.low) / (self.high - self.low)]

    def decode(self, block: torch.Tensor) -> float:
        return self.low + float(block[0]) * (self.high - self.low)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "low": self.low, "high": self.high,
            "default": self.default,
        }  # fmt: skip


#: attribute kind -> class (the ``kind`` field of a stored schema)
ATTRIBUTE_KINDS = {"categorical": Categorical, "continuous": Continuous}


class AttributeSchema:
    """An ordered list of attributes; the condition vector is their encodings concatenated.

    Example::

        schema = AttributeSchema([Categorical("digit", "0123456789"),
                                  Categorical("color", ["red", "green"])])
        schema.encode({"digit": 5, "color": "red"})   # tensor of shape (1, 12)
        schema.parse("digit=5,color=red")              # {"digit": "5", "color": "red"}
    """

    def __init__(self, attributes):
        self.attributes = tuple(attributes)
        names = [a.name for a in self.attributes]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a schema needs attributes with distinct names, got {names}")

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def width(self) -> int:
        """Width of the condition vector (``ModelConfig.condition_dim``)."""
        return sum(a.width for a in self.attributes)

    def __getitem__(self, name: str):
        for a in self.attributes:
            if a.name == name:
                return a
        raise KeyError(name)

    def __eq__(self, other) -> bool:
        return isinstance(other, AttributeSchema) and self.to_dict() == other.to_dict()

    def offsets(self) -> dict[str, slice]:
        """Attribute name -> its slice of the condition vector."""
        out, i = {}, 0
        for a in self.attributes:
            out[a.name] = slice(i, i + a.width)
            i += a.width
        return out

    def complete(self, values: dict) -> dict:
        """Check the names of one condition and fill in continuous defaults."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise ValueError(
                f"unknown attribute(s) {sorted(unknown)}; this model knows {', '.join(self.names)}"
            )
        out = {}
        for a in self.attributes:
            if a.name in values:
                out[a.name] = a.parse(values[a.name])
            elif isinstance(a, Continuous):
                out[a.name] = a.default
            else:
                raise ValueError(
                    f"the condition does not give {a.name!r}; add {a.name}=<one of "
                    f"{', '.join(a.values)}>"
                )
        return out

    def encode(self, values) -> torch.Tensor:
        """One dict or a list of dicts -> condition vectors of shape (N, width)."""
        rows = [values] if isinstance(values, dict) else list(values)
        out = []
        for row in rows:
            full = self.complete(row)
            out.append([v for a in self.attributes for v in a.encode(full[a.name])])
        return torch.tensor(out, dtype=torch.get_default_dtype()).reshape(len(out), self.width)

    def decode(self, c: torch.Tensor) -> list[dict]:
        """Condition vectors (N, width) -> one dict per row (argmax for categorical blocks)."""
        if c.dim() != 2 or c.shape[-1] != self.width:
            raise ValueError(f"conditions must have shape (N, {self.width}), got {tuple(c.shape)}")
        off = self.offsets()
        return [{a.name: a.decode(row[off[a.name]]) for a in self.attributes} for row in c]

    def parse(self, text: str) -> dict:
        """``"digit=5,color=red"`` -> ``{"digit": "5", "color": "red"}`` (checked, completed)."""
        values = {}
        for part in str(text).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    f"cannot read {part!r} in condition {text!r}; write name=value pairs "
                    "separated by commas, e.g. digit=5,color=red"
                )
            values[key.strip()] = value.strip()
        return self.complete(values)

    def to_dict(self) -> dict:
        return {
            "format": "pyro_cvae.attributes",
            "attributes": [a.to_dict() for a in self.attributes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> AttributeSchema:
        attrs = []
        for item in data.get("attributes", []):
            item = dict(item)
            kind = item.pop("kind", None)
            if kind not in ATTRIBUTE_KINDS:
                raise ValueError(
                    f"unknown attribute kind {kind!r}; expected one of {', '.join(ATTRIBUTE_KINDS)}"
                )
            attrs.append(ATTRIBUTE_KINDS[kind](**item))
        return cls(attrs)


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


def save_schema(folder: str | Path, schema: AttributeSchema) -> Path:
    """Write ``attributes.json`` into a run folder."""
    path = Path(folder) / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema.to_dict(), indent=2))
    return path


def load_schema(folder: str | Path) -> AttributeSchema:
    """The schema stored with a run (``attributes.json``), else the one of its data set."""
    folder = Path(folder)
    path = folder / SCHEMA_FILE
    if path.exists():
        return AttributeSchema.from_dict(json.loads(path.read_text()))
    cfg = folder / "config.json"
    name = json.loads(cfg.read_text()).get("data", {}).get("name") if cfg.exists() else None
    if name in SCHEMAS:
        return SCHEMAS[name]
    raise ValueError(
        f"{folder} holds no {SCHEMA_FILE} and its data set {name!r} has no known attribute "
        "schema; train it with pyro_cvae.attributes.train_attribute_model, which stores one"
    )


# ------------------------------------------------------------------------- coloured digits


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


# ------------------------------------------------------------------------- training, checks


def train_attribute_model(
    out: str | Path,
    dataset: str = "colored-digits",
    *,
    epochs: int = 100,
    latent_dim: int = 8,
    hidden_dims: tuple[int, ...] = (256, 256),
    batch_size: int = 64,
    seed: int = 0,
    train_size: int | None = None,
    overwrite: bool = True,
    progress: bool = False,
):
    """Train an attribute-conditioned CVAE into a run folder that stores its schema.

    The folder then works with ``pyro-cvae sample --run OUT --condition digit=5,color=red``.

    Returns:
        ``(model, data, history)``.
    """
    from .config import ModelConfig, TrainConfig
    from .data import load_dataset
    from .models import CVAE
    from .train import fit

    if dataset not in SCHEMAS:
        raise ValueError(
            f"unknown attribute data set {dataset!r}; choose one of {', '.join(SCHEMAS)}"
        )
    schema = SCHEMAS[dataset]
    data = load_dataset(dataset, binarize="none")
    if train_size:
        data = data.subset(train_size)
        data.meta["train_size"] = train_size
    torch.manual_seed(seed)
    model = CVAE(
        ModelConfig(
            image_shape=data.image_shape, num_classes=0, condition_dim=schema.width,
            latent_dim=latent_dim, hidden_dims=tuple(hidden_dims),
        )
    )  # fmt: skip
    out = Path(out)
    history = fit(
        model, data, TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        out=out, overwrite=overwrite, progress=progress,
    )  # fmt: skip
    save_schema(out, schema)
    model.save(out / "model.pt", attributes=schema.to_dict())
    return model, data, history


def _digit_classifier(data):
    """A classifier of digits from the coloured training images' intensity (max over RGB)."""
    from .data import Dataset
    from .evaluate import train_classifier

    def grey(split: Split) -> Split:
        digits = torch.tensor([int(r["digit"]) for r in COLORED_DIGITS_SCHEMA.decode(split.y)])
        return Split(split.x.amax(dim=1, keepdim=True), digits)

    shape = (1,) + tuple(data.image_shape[1:])
    grey_data = Dataset(
        f"{data.name}-intensity", grey(data.train), grey(data.val), grey(data.test),
        shape, 10, DIGIT_NAMES, "none",
    )  # fmt: skip
    return train_classifier(grey_data), grey_data


@torch.no_grad()
def attribute_control(model, data, *, num_per_condition: int = 20, classifier=None) -> dict:
    """How often generated coloured digits have the requested colour, digit and brightness.

    Generates ``num_per_condition`` images for every (digit, colour) pair at three brightness
    levels, then reads the colour with :func:`dominant_color`, the digit with a classifier of
    real images' intensity (the control score of :func:`pyro_cvae.control_score`), and the
    brightness as the brightest pixel.

    Returns:
        ``{"color_accuracy", "digit_control_score", "brightness_mae", "classifier_test_accuracy",
        "num_images"}``.
    """
    from .evaluate import classifier_accuracy

    clf, grey_data = _digit_classifier(data) if classifier is None else (classifier, None)
    schema = COLORED_DIGITS_SCHEMA
    lo, hi = BRIGHTNESS
    levels = [lo + (hi - lo) * f for f in (0.25, 0.5, 0.75)]
    rows = [
        {"digit": d, "color": c, "brightness": b}
        for d in DIGIT_NAMES for c in PALETTE for b in levels
    ]  # fmt: skip
    c = schema.encode(rows).to(model.device)
    images = model.sample(c, num_per_condition).cpu()  # (M, n, 3, H, W)
    flat = images.flatten(0, 1)
    want_color = torch.tensor([list(PALETTE).index(r["color"]) for r in rows])
    want_digit = torch.tensor([int(r["digit"]) for r in rows])
    want_b = torch.tensor([r["brightness"] for r in rows])
    rep = lambda t: t.repeat_interleave(num_per_condition)  # noqa: E731
    color_ok = dominant_color(flat) == rep(want_color)
    digit_ok = clf(flat.amax(dim=1, keepdim=True)).argmax(-1) == rep(want_digit)
    b_err = (flat.amax(dim=(1, 2, 3)) - rep(want_b)).abs()
    out = {
        "color_accuracy": color_ok.float().mean().item(),
        "digit_control_score": digit_ok.float().mean().item(),
        "brightness_mae": b_err.mean().item(),
        "num_images": int(flat.shape[0]),
    }
    if grey_data is not None:
        out["classifier_test_accuracy"] = classifier_accuracy(clf, grey_data.test)
    return out
