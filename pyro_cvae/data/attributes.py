"""Multi-attribute conditions: a schema that turns ``digit=5, color=red, brightness=0.8`` into a vector.

A condition becomes one real vector c by concatenating one encoding per attribute, each declared
once:

* :class:`Categorical`: a one-hot block of width ``len(values)``;
* :class:`Continuous`: one scalar mapped from ``[low, high]`` to ``[0, 1]``.

An :class:`AttributeSchema` is the ordered list of attributes; it encodes dicts to vectors and
decodes vectors to dicts, parses ``"digit=5,color=red"`` and is stored as ``attributes.json`` in
a run folder, so a model trained with ``ModelConfig(condition_dim=schema.width)`` can be asked
for a red 5 from the command line (``pyro-cvae sample --condition digit=5,color=red``).
The coloured-digit data set that uses it is in :mod:`pyro_cvae.data.colored`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ._jsonfile import read_json, save_json

__all__ = [
    "Categorical",
    "Continuous",
    "ATTRIBUTE_KINDS",
    "AttributeSchema",
    "SCHEMA_FILE",
    "save_schema",
    "read_schema",
]

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

    def parse(self, text, *, extrapolate: bool = False) -> str:
        """The value named by ``text``; an unknown value is refused (``extrapolate``, which lets
        a continuous attribute leave its range, has nothing to extend here)."""
        text = str(text).strip()
        if text not in self.values:
            raise ValueError(
                f"{self.name}={text!r} is not a known value; choose one of {', '.join(self.values)}"
            )
        return text

    def encode(self, value, *, extrapolate: bool = False) -> list[float]:
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

    def parse(self, text, *, extrapolate: bool = False) -> float:
        """The value of ``text``; outside [low, high] it is refused unless ``extrapolate``
        (then any finite value is taken, encoded beyond [0, 1])."""
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name}={text!r} is not a number; give e.g. {self.name}={self.default:.4g}"
            ) from None
        if not math.isfinite(v):
            raise ValueError(f"{self.name}={v} is not finite; give a number")
        if not extrapolate and not self.low <= v <= self.high:
            raise ValueError(
                f"{self.name}={v} is outside the trained range [{self.low:.4g}, "
                f"{self.high:.4g}]; choose a value inside it, or ask beyond it on purpose with "
                "extrapolate=True (pyro-cvae sample: --extrapolate)"
            )
        return v

    def encode(self, value, *, extrapolate: bool = False) -> list[float]:
        v = self.parse(value, extrapolate=extrapolate)
        return [(v - self.low) / (self.high - self.low)]

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

    def complete(self, values: dict, *, extrapolate: bool = False) -> dict:
        """Check the names of one condition and fill in continuous defaults; continuous values
        outside the trained range are refused unless ``extrapolate``."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise ValueError(
                f"unknown attribute(s) {sorted(unknown)}; this model knows {', '.join(self.names)}"
            )
        out = {}
        for a in self.attributes:
            if a.name in values:
                out[a.name] = a.parse(values[a.name], extrapolate=extrapolate)
            elif isinstance(a, Continuous):
                out[a.name] = a.default
            else:
                raise ValueError(
                    f"the condition does not give {a.name!r}; add {a.name}=<one of "
                    f"{', '.join(a.values)}>"
                )
        return out

    def encode(self, values, *, extrapolate: bool = False) -> torch.Tensor:
        """One dict or a list of dicts -> condition vectors of shape (N, width); with
        ``extrapolate`` continuous values beyond the trained range are encoded beyond [0, 1]
        (what the model makes of them is what it learnt to extrapolate, not what it saw)."""
        rows = [values] if isinstance(values, dict) else list(values)
        out = []
        for row in rows:
            full = self.complete(row, extrapolate=extrapolate)
            out.append([v for a in self.attributes
                        for v in a.encode(full[a.name], extrapolate=extrapolate)])  # fmt: skip
        return torch.tensor(out, dtype=torch.get_default_dtype()).reshape(len(out), self.width)

    def decode(self, c: torch.Tensor) -> list[dict]:
        """Condition vectors (N, width) -> one dict per row (argmax for categorical blocks)."""
        if c.dim() != 2 or c.shape[-1] != self.width:
            raise ValueError(f"conditions must have shape (N, {self.width}), got {tuple(c.shape)}")
        off = self.offsets()
        return [{a.name: a.decode(row[off[a.name]]) for a in self.attributes} for row in c]

    def parse(self, text: str, *, extrapolate: bool = False) -> dict:
        """``"digit=5,color=red"`` -> ``{"digit": "5", "color": "red"}`` (checked, completed;
        ``extrapolate`` as in :meth:`complete`)."""
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
            if key.strip() in values:
                raise ValueError(
                    f"condition {text!r} gives {key.strip()!r} twice; give each attribute once"
                )
            values[key.strip()] = value.strip()
        return self.complete(values, extrapolate=extrapolate)

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


def save_schema(folder: str | Path, schema: AttributeSchema) -> Path:
    """Write ``attributes.json`` into a run folder."""
    return save_json(folder, SCHEMA_FILE, schema.to_dict())


def read_schema(folder: str | Path) -> AttributeSchema | None:
    """The schema stored in a run folder's ``attributes.json``; ``None`` when there is none."""
    stored = read_json(folder, SCHEMA_FILE)
    return None if stored is None else AttributeSchema.from_dict(stored)
