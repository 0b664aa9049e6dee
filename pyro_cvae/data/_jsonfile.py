"""One JSON file in a folder: how the schemas (``attributes.json``, ``table.json``) are stored.

Written once here so that every schema is saved and read the same way: indented JSON of the
object's ``to_dict()``, the folder created when missing, ``None`` read back when the file is
absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["save_json", "read_json"]


def save_json(folder: str | Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON to ``folder / name`` (the folder made if missing)."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def read_json(folder: str | Path, name: str) -> dict[str, Any] | None:
    """The JSON object in ``folder / name``; ``None`` when there is no such file."""
    path = Path(folder) / name
    if not path.exists():
        return None
    return json.loads(path.read_text())
