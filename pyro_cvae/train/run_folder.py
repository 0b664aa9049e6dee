"""The files of a training run: the folder's guard, checkpoints, resume checks, RNG states.

A run folder holds ``checkpoint_NNNNNN.pt`` files (the newest ``keep_checkpoints``), ``config.json``
(model, training and data settings), ``metrics.csv`` (one row per epoch) and, after a non-finite
loss, ``nonfinite.json``. Only :func:`pyro_cvae.fit` writes them, through this module;
``pyro-cvae train`` adds ``model.pt``, ``model.safetensors``, ``metrics.json`` and the figures
(:data:`RUN_FILES`). Commands that read a run write under names of their own
(:func:`output_path`), never over these.

:class:`RunFolder` owns ``config.json`` and names the other files; what a reader of a run needs
from it (the data it trained on, whether its images are binarised, its attribute schema) is
here too (:func:`load_run_data`, :func:`run_binarizes`, :func:`load_schema`), so the data layer
reads no run folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, list_checkpoints, run_folder_of, save_checkpoint
from ..data import (
    SCHEMA_FILE,
    SCHEMAS,
    TABLE_FILE,
    AttributeSchema,
    Dataset,
    TableSchema,
    load_dataset,
    save_schema,
    save_table,
)
from ..data import read_schema as _read_schema
from ..data import read_table as _read_table

__all__ = [
    "RunFolder",
    "load_run_data",
    "run_binarizes",
    "load_schema",
    "RunFolderError",
    "CheckpointWriteError",
    "RUN_FILES",
    "READER_OUTPUTS",
    "prepare_out",
    "output_path",
    "write_checkpoint",
    "verify_resumable",
    "verify_same_data",
    "TENSORBOARD_DIR",
    "rng_state",
    "set_rng_state",
    "start_of",
    "report_nonfinite",
]


class RunFolderError(FileExistsError):
    """The output folder already holds another run."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


#: what training writes into a run folder (besides its checkpoints); ``--overwrite`` removes them
RUN_FILES = (
    "config.json", "metrics.csv", "metrics.json", "nonfinite.json", "model.pt",
    "model.safetensors", "attributes.json", "table.json", "samples.png", "reconstructions.png", "latent.png",
    "curves.png", "analogies.png",
)  # fmt: skip

#: default names of what the commands that read a run write into it (numbered when taken:
#: ``sample-2.png``); ``--overwrite`` removes these too, they belong to the previous run
READER_OUTPUTS = (
    "sample.png", "sample.csv", "reconstruction.png", "reconstruction.csv", "evaluation.json",
    "interpolation.png",
    "transfer.png", "scores.csv", "scores.png",
)  # fmt: skip


#: the folder of TensorBoard's event files in a run folder (``tensorboard=True``)
TENSORBOARD_DIR = "tensorboard"

#: what a run that failed before its first checkpoint may leave (not a run: a retry may start)
_FAILED_START = ("nonfinite.json", TENSORBOARD_DIR)


def _is_reader_output(name: str) -> bool:
    for default in READER_OUTPUTS:
        stem, dot, ext = default.rpartition(".")
        if re.fullmatch(rf"{re.escape(stem)}(-\d+)?\.{re.escape(ext)}", name):
            return True
    return False


def _holds_run(out: Path) -> bool:
    return bool(list_checkpoints(out)) or any(
        (out / n).is_file() for n in ("config.json", "model.pt")
    )


def prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a run that training owns.

    Refused (:class:`RunFolderError`): ``out`` is an existing file; it holds another run, unless
    ``resume`` or ``overwrite``; it holds files but no run, unless ``overwrite``. ``overwrite``
    removes the previous run's checkpoints, :data:`RUN_FILES` and :data:`READER_OUTPUTS` (no
    other file); ``resume`` removes a stale ``nonfinite.json``.
    """
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} is an existing file, not a folder; choose another out folder")
    existing = list_checkpoints(out)
    if out.is_dir() and not (resume or overwrite):
        if _holds_run(out):
            what = f"{len(existing)} checkpoint(s)" if existing else "config.json / model.pt"
            raise RunFolderError(
                f"{out} already holds a run ({what}); pass resume=True (--resume) to continue "
                "it, overwrite=True (--overwrite) to replace it, or choose another out folder"
            )
        others = sorted(p.name for p in out.iterdir() if p.name not in _FAILED_START)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise RunFolderError(
                f"{out} holds files but no run ({shown}); choose a new or empty folder, or pass "
                "--overwrite to write the run into it (only the run's own files are replaced)"
            )
    if out.is_dir() and not resume and not _holds_run(out):  # leftovers of a start that failed
        for name in _FAILED_START:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            else:
                (out / name).unlink(missing_ok=True)
    if overwrite and not resume and out.is_dir():
        for p in existing:
            p.unlink()
        for p in out.iterdir():
            if p.is_file() and (p.name in RUN_FILES or _is_reader_output(p.name)):
                p.unlink()
        if (out / TENSORBOARD_DIR).is_dir():  # the old run's steps would mix with the new one's
            shutil.rmtree(out / TENSORBOARD_DIR)
    if resume:
        (out / "nonfinite.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _fresh(path: Path) -> Path:
    """``path``, or ``stem-2.ext``, ``stem-3.ext``, ... when taken."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def output_path(run: str | Path, default_name: str, out: str | Path | None = None) -> Path:
    """Where a command that reads ``run`` writes its output.

    ``out`` given: that file (replaced when it exists, unless training wrote it:
    :data:`RUN_FILES` and checkpoints of a run folder are refused), or, when it is a folder (an existing
    one, or a path ending in ``/``), ``default_name`` in it. No ``out``: ``default_name`` in
    the run folder. A default name that is taken is numbered (``sample-2.png``), so the training
    outputs (:data:`RUN_FILES`) and earlier outputs are never replaced.

    Raises:
        FileNotFoundError: the folder ``out`` names does not exist.
        RunFolderError: ``out`` names a file training wrote.
    """
    if out is None:
        return _fresh(run_folder_of(run) / default_name)
    text = str(out)
    path = Path(out)
    if text.endswith(("/", os.sep)) or path.is_dir():
        if not path.is_dir():
            if not path.parent.is_dir():
                raise FileNotFoundError(
                    f"cannot write into {text}: its parent folder {path.parent} does not exist"
                )
            path.mkdir()
        return _fresh(path / default_name)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first"
        )
    if _is_training_output(path):
        raise RunFolderError(
            f"out {path} is a file training wrote into its run folder; choose another name "
            f"(or leave out unset: {default_name} in the run folder, numbered when taken)"
        )
    return path


def _is_training_output(path: Path) -> bool:
    """Whether ``path`` is one of the files training wrote into a run folder."""
    name = path.name
    ours = name in RUN_FILES or re.fullmatch(r"checkpoint_\d+\.pt", name) is not None
    return ours and path.parent.is_dir() and _holds_run(path.parent)


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


def _changes(saved: dict, now: dict, skip=("__class__",)) -> list[str]:
    """``name: old -> new`` for every field that differs between two config dicts."""
    out = []
    for k in dict.fromkeys([*saved, *now]):
        if k in skip:
            continue
        old, new = saved.get(k, "(unset)"), now.get(k, "(unset)")
        if isinstance(old, list):
            old = tuple(old)
        if isinstance(new, list):
            new = tuple(new)
        if old != new:
            out.append(f"{k}: {old!r} -> {new!r}")
    return out


def _shape_changes(saved: dict, now: dict) -> list[str]:
    """``name: old shape -> new shape`` for every tensor of two state dicts that differs."""
    out = []
    for k in dict.fromkeys([*saved, *now]):
        old = tuple(saved[k].shape) if k in saved else "(missing)"
        new = tuple(now[k].shape) if k in now else "(missing)"
        if old != new:
            out.append(f"{k}: {old} -> {new}")
    return out[:5]


def verify_resumable(path, ckpt: dict, model, config) -> None:
    """Refuse to resume a checkpoint of another model configuration or other settings, naming
    each setting that changed with its old and new value; refuse fewer epochs than done.

    ``config``'s own class reads the saved settings, so subclasses of ``TrainConfig``
    (semi-supervised training) are compared field by field too; only ``epochs`` may change.
    """
    saved_class, now_class = ckpt.get("model_class"), type(model).__name__
    if saved_class is not None and saved_class != now_class:
        raise CheckpointError(
            f"{path} was written by a {saved_class}, not a {now_class}; resume with the same "
            "model class or train into a new out folder"
        )
    now = getattr(getattr(model, "config", None), "to_dict", None)
    if now is None:  # a model class of the user's: no config, compare the parameters' shapes
        changed = _shape_changes(ckpt.get("model") or {}, model.state_dict())
        if changed:
            raise CheckpointError(
                f"{path} was written by a {now_class} of other sizes ({'; '.join(changed)}); "
                "build the model with the sizes it was trained with or train into a new out folder"
            )
        saved_model, now_model = {}, {}
    else:
        saved_model, now_model = ckpt.get("model_config") or {}, now()
        try:  # fields added since the checkpoint was written read as their defaults
            saved_model = type(model.config).from_dict(saved_model).to_dict()
        except (TypeError, ValueError):  # another kind of config or removed fields: compare raw
            pass
    changed = _changes(saved_model, now_model)
    if changed:
        raise CheckpointError(
            f"{path} was written by a model with another configuration ({'; '.join(changed)}); "
            "resume with the same model settings or train into a new out folder"
        )
    saved_cfg = type(config).from_dict(ckpt["train_config"])
    changed = _changes(saved_cfg.to_dict(), config.to_dict(), skip=("__class__", "epochs"))
    if changed:
        raise CheckpointError(
            f"{path} was trained with other settings ({'; '.join(changed)}); resume with the "
            "same settings (only epochs may change) or train into a new out folder"
        )
    done = int(ckpt["epoch"])
    if config.epochs < done:
        raise CheckpointError(
            f"epochs={config.epochs} is fewer than the {done} epochs {path.parent} has already "
            f"trained; pass epochs >= {done} to continue it (epochs={done} changes nothing)"
        )


def verify_same_data(path, ckpt: dict, data_spec: dict) -> None:
    """Refuse to resume on other data: another data set or path, other contents (the
    ``fingerprint`` of the user's data) or other loading options (``image_size``, condition
    columns, split, binarisation), naming each with its old and new value.

    Checkpoints that predate a recorded entry are not held to it.
    """
    saved = ckpt.get("data")
    if not saved:
        return
    changed = _changes(saved, {k: v for k, v in data_spec.items() if k in saved})
    if changed:
        raise CheckpointError(
            f"{path} was trained on other data ({'; '.join(changed)}); resume with the same "
            "data and loading options (--data, --image-size, --condition, --binarize), or train "
            "into a new out folder"
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


def data_schemas(model, data: Dataset) -> dict:
    """The schemas a run stores beside its model: the attribute schema of a model conditioned
    on it (a model trained ``unconditional`` ignores it), the columns of a table."""
    extra = {}
    if data.schema is not None and getattr(getattr(model, "config", None), "condition_dim", 0):
        extra["attributes"] = data.schema.to_dict()
    if data.table is not None:
        extra["table"] = data.table.to_dict()
    return extra


#: the run's settings: model class and config, training config, data spec, family entries
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"


class RunFolder:
    """A training run's folder: it owns ``config.json`` and names the files beside it.

    ``config.json`` is written once, with the run's first checkpoint (:meth:`write_config`), and
    read back by everything that uses a finished run: the data it trained on
    (:attr:`data_spec`, :meth:`load_data`), whether its images are binarised
    (:attr:`binarizes`), its attribute schema (:meth:`schema`).

    Args:
        path: the folder (it need not exist yet). :meth:`of` also takes a file in one.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, run: str | Path) -> RunFolder:
        """The run folder of ``run``: a run folder or a file in one (a checkpoint, ``model.pt``,
        ``model.safetensors``).

        Raises:
            CheckpointError: when ``run`` does not exist.
        """
        return cls(run_folder_of(run))

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        """``metrics.csv``: one row per epoch, rewritten after every epoch."""
        return self.path / METRICS_FILE

    @property
    def schema_path(self) -> Path:
        """``attributes.json``: the conditions' :class:`~pyro_cvae.data.AttributeSchema`."""
        return self.path / SCHEMA_FILE

    @property
    def table_path(self) -> Path:
        """``table.json``: the columns' :class:`~pyro_cvae.data.TableSchema` of a table run."""
        return self.path / TABLE_FILE

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        return list_checkpoints(self.path)

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def write_config(self, entries: dict) -> Path:
        """Write ``config.json`` (``model_class``, ``model``, ``train``, ``data`` and the
        family's entries). :func:`pyro_cvae.fit` calls it with the first checkpoint, not before:
        a run whose first step fails leaves no ``config.json``, so a retry into the same folder
        is not refused as another run."""
        self.config_path.write_text(json.dumps(entries, indent=2))
        return self.config_path

    def write_schemas(self, model, data: Dataset) -> list[Path]:
        """Write ``attributes.json`` and ``table.json`` where the run needs them
        (:func:`data_schemas`): what ``sample --condition`` parses and a table run decodes.
        :func:`pyro_cvae.fit` writes them with ``config.json``, so a run folder that only
        trained (no :func:`~pyro_cvae.finish_run`) samples as well."""
        extra, written = data_schemas(model, data), []
        if "attributes" in extra:
            written.append(save_schema(self.path, data.schema))
        if "table" in extra:
            written.append(save_table(self.path, data.table))
        return written

    def config(self) -> dict:
        """The contents of ``config.json``.

        Raises:
            CheckpointError: when the folder has none.
        """
        if not self.config_path.exists():
            raise CheckpointError(
                f"{self.path} has no config.json; was it written by `pyro-cvae train`?"
            )
        return json.loads(self.config_path.read_text())

    @property
    def data_spec(self) -> dict:
        """The ``data`` entry of ``config.json``: the data set or file, and its loading options."""
        return self.config()["data"]

    @property
    def binarizes(self) -> bool:
        """Whether images scored against this run are binarised first: ``True`` when it trained
        on binarised images (``"dynamic"`` or ``"fixed"``), as :func:`pyro_cvae.evaluate` scores
        its test split; ``False`` for grey levels (``"none"``)."""
        return self.data_spec["binarize"] != "none"

    def load_data(self, data_dir: str | Path | None = None) -> Dataset:
        """The data set this run trained on, as ``config.json`` records it: a built-in set by
        name (with its binarisation seed and subset), or the user's file with the same options
        and split.

        Args:
            data_dir: as for :func:`~pyro_cvae.data.load_dataset`.

        Raises:
            FileNotFoundError: when the user's data file it trained on is gone.
        """
        spec = self.data_spec
        if "path" in spec:  # the user's own data: the same file, options and split
            if not Path(spec["path"]).exists():
                raise FileNotFoundError(
                    f"{self.path} was trained on {spec['path']}, which no longer exists; put the "
                    "data back there to evaluate or reconstruct"
                )
            return load_dataset(spec["path"], binarize=spec["binarize"], seed=spec["split_seed"],
                                train_size=spec.get("train_size"),
                                image_size=spec.get("image_size"), condition=spec.get("condition"),
                                source=spec.get("source"))  # fmt: skip
        # runs written before the seed was recorded drew with load_dataset's default seed, 0
        # a molecule run records the properties of its condition (older runs: all of them)
        chosen = (
            {"condition": spec["condition"]} if "tokens" in spec and "condition" in spec else {}
        )
        return load_dataset(spec["name"], binarize=spec["binarize"], data_dir=data_dir,
                            seed=spec.get("binarize_seed", 0),
                            train_size=spec.get("train_size"), **chosen)  # fmt: skip

    def schema(self) -> AttributeSchema:
        """The attribute schema: the folder's ``attributes.json``, else its built-in data set's.

        Raises:
            ValueError: when the folder stores none and its data set has no known schema.
        """
        stored = _read_schema(self.path)
        if stored is not None:
            return stored
        name = self.config().get("data", {}).get("name") if self.has_config() else None
        if name in SCHEMAS:
            return SCHEMAS[name]
        if name is not None and "tokens" in self.data_spec:
            # a molecule run trained before fit wrote attributes.json: its property ranges are
            # those of its training subset, which the data set recomputes (cached) from config
            schema = self.load_data().schema
            if schema is not None:
                return schema
        if name is None:  # a model file on its own, out of its run folder
            raise ValueError(
                f"{self.path} holds no {SCHEMA_FILE}, which names this model's conditions; copy "
                f"the run's {SCHEMA_FILE} (and table.json for a table) beside the model file"
            )
        raise ValueError(
            f"{self.path} holds no {SCHEMA_FILE} and its data set {name!r} has no known attribute "
            "schema; train it with `pyro-cvae train --dataset colored-digits` (or "
            "pyro_cvae.applications.train_attribute_model), which stores one"
        )

    def table(self) -> TableSchema | None:
        """The table schema of a table run (its ``table.json``); ``None`` for images."""
        return _read_table(self.path)


def run_binarizes(run: str | Path) -> bool:
    """Whether images scored against a run are binarised first (:attr:`RunFolder.binarizes`).

    Args:
        run: a run folder or a file in one.
    """
    return RunFolder.of(run).binarizes


def load_run_data(run: str | Path, data_dir: str | Path | None = None) -> Dataset:
    """The data set a training run used, as its ``config.json`` records it
    (:meth:`RunFolder.load_data`).

    Args:
        run: a run folder or a file in one (a checkpoint, ``model.pt``, ``model.safetensors``).
        data_dir: as for :func:`~pyro_cvae.data.load_dataset`.
    """
    return RunFolder.of(run).load_data(data_dir)


def load_schema(folder: str | Path) -> AttributeSchema:
    """The attribute schema of a run folder: its ``attributes.json``, else its built-in data
    set's (:meth:`RunFolder.schema`).

    Raises:
        ValueError: when the folder stores none and its data set has no known schema.
    """
    return RunFolder(folder).schema()
