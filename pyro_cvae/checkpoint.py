"""Atomic, verifiable checkpoint files.

A checkpoint is one file: a header line ``PYRO_CVAE_CKPT 1 <sha256>`` followed by the bytes of
``torch.save(payload)``. It is written to a temporary file in the same folder, flushed, synced
and renamed, so a crash leaves either the old file or the new one, never half of one. Loading
checks the checksum and uses ``torch.load(weights_only=True)``, so a file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "resolve_checkpoint",
    "run_folder_of",
    "trained_epochs",
    "atomic_write_bytes",
]

MAGIC = b"PYRO_CVAE_CKPT"
VERSION = 1
_NAME = re.compile(r"^checkpoint_(\d{6})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or belongs to another configuration."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialise ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    header = b"%s %d %s\n" % (MAGIC, VERSION, hashlib.sha256(body).hexdigest().encode())
    atomic_write_bytes(path, header + body)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, not a checkpoint, truncated or corrupted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass a checkpoint file or a run folder "
            "written by `pyro-cvae train --out ...`"
        )
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        raise CheckpointError(f"{path} is not a pyro_cvae checkpoint (no header)")
    if parts[1] != str(VERSION).encode():
        raise CheckpointError(f"{path} has checkpoint format {parts[1]!r}, expected {VERSION}")
    if hashlib.sha256(body).hexdigest().encode() != parts[2]:
        raise CheckpointError(
            f"{path} is truncated or corrupted (checksum mismatch); use an earlier checkpoint "
            "of the same run (they are kept beside it) or retrain"
        )
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path} could not be read: {e}") from e


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run folder, oldest first (ordered by their progress number)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run folder, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the latest checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"run folder {path} holds no checkpoint; train first with "
                f"`pyro-cvae train --out {path}`"
            )
        return latest
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a checkpoint file or a run folder")
    return path


def run_folder_of(path: str | Path) -> Path:
    """The run folder of a path given as a run folder or as a file in one (a checkpoint,
    ``model.pt`` or ``model.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist; pass a run folder, a checkpoint file, model.pt or "
            "model.safetensors"
        )
    return path.parent


def load_latest_good(run_dir: str | Path, map_location="cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint of a run folder that verifies; corrupted ones are skipped."""
    errors = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as e:
            errors.append(str(e))
    if errors:
        raise CheckpointError("no readable checkpoint in the run folder: " + "; ".join(errors))
    return None


def trained_epochs(run_dir: str | Path) -> int:
    """Epochs completed by the newest readable checkpoint of a run folder (0 when it has none).

    A script that trains a run epoch by epoch with ``fit(..., resume=True)`` starts from here:
    ``fit`` refuses fewer epochs than a run folder has already trained.
    """
    found = load_latest_good(run_dir)
    return int(found[1]["epoch"]) if found else 0
