"""The files of a training run: the folder's guard, checkpoints, resume checks, RNG states.

A run folder holds ``checkpoint_NNNNNN.pt`` files (the newest ``keep_checkpoints``), ``config.json``
(model, training and data settings), ``metrics.csv`` (one row per epoch) and, after a non-finite
loss, ``nonfinite.json``. Only :func:`pyro_cvae.fit` writes them, through this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, list_checkpoints, save_checkpoint

__all__ = [
    "RunFolderError",
    "CheckpointWriteError",
    "prepare_out",
    "write_checkpoint",
    "verify_resumable",
    "rng_state",
    "set_rng_state",
    "start_of",
    "report_nonfinite",
]


class RunFolderError(FileExistsError):
    """The output folder already holds another run."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


def prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a folder holding another run unless ``resume`` or ``overwrite``;
    with ``overwrite`` remove that run's checkpoints and metrics first."""
    existing = list_checkpoints(out)
    if existing and not (resume or overwrite):
        raise RunFolderError(
            f"{out} already holds a run ({len(existing)} checkpoint(s)); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out"
        )
    if overwrite and not resume:
        for p in existing:
            p.unlink()
        for name in ("metrics.csv", "nonfinite.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_checkpoint(out: Path, progress_id: int, payload: dict, keep: int) -> Path:
    """Write ``checkpoint_<progress_id>.pt`` atomically and keep only the newest ``keep``.

    Raises:
        CheckpointWriteError: when the file cannot be written; earlier checkpoints stay intact.
    """
    target = out / f"checkpoint_{progress_id:06d}.pt"
    try:
        save_checkpoint(target, payload)
    except OSError as e:
        previous = list_checkpoints(out)
        kept = f"; the previous checkpoint {previous[-1].name} is intact" if previous else ""
        raise CheckpointWriteError(
            f"could not write checkpoint {target}: {e.strerror or e}. Free disk space or fix "
            f"the folder's permissions, or choose another --out{kept}"
        ) from e
    for old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def verify_resumable(path, ckpt: dict, model, config) -> None:
    """Refuse to resume a checkpoint of another model configuration or other settings.

    ``config``'s own class reads the saved settings, so subclasses of ``TrainConfig``
    (semi-supervised training) are compared field by field too; only ``epochs`` may change.
    """
    if ckpt.get("model_config") != model.config.to_dict():
        raise CheckpointError(
            f"{path} was written by a model with another configuration; resume with the "
            "same model settings or train into a new --out folder"
        )
    saved_cfg = type(config).from_dict(ckpt["train_config"])
    if saved_cfg.replace(epochs=config.epochs) != config:
        raise CheckpointError(
            f"{path} was trained with other settings ({saved_cfg}); resume with the same "
            "settings (only --epochs may change) or train into a new --out folder"
        )


def rng_state(device: torch.device) -> dict:
    """The torch RNG states a resume needs (the CUDA one on a GPU)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def start_of(ckpt: dict) -> int:
    """Steps done before a checkpoint (to derive a fresh seed when RNG states do not fit)."""
    return int(ckpt["epoch"]) * 100_000 + int(ckpt["step"])


def report_nonfinite(out: Path | None, epoch: int, step: int, config, what: str) -> None:
    """Write ``nonfinite.json``: where training stopped and with which settings."""
    if out is None:
        return
    (out / "nonfinite.json").write_text(
        json.dumps(
            {"epoch": epoch + 1, "step": step + 1, "what": what, "train_config": config.to_dict()},
            indent=2,
        )
    )
