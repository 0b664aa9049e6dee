"""The base of every configuration object: frozen dataclasses with a JSON round trip (layer 0).

A config is validated once, in ``__post_init__``, where it is built; ``to_dict`` / ``from_dict``
store it as JSON beside every checkpoint, tagged with its class name.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["FrozenConfig"]


class FrozenConfig:
    """Mixin of the frozen config dataclasses: ``to_dict``, ``to_json``, ``from_dict``, ``replace``."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        out["__class__"] = type(self).__name__
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = {k: v for k, v in data.items() if k != "__class__"}
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {sorted(unknown)}; the file was written by "
                "another version of pyro_cvae or is not a config of this kind"
            )
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data and isinstance(data[f.name], list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
