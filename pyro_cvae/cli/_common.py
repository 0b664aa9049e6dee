"""What the commands share: the data flags and the reading of a run folder.

The argument types (``int_list``, ``positive_int``, ...) are public in :mod:`.types`; they are
imported here for the commands of this package.

Parsing and printing only; every decision is the library's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyro
import torch

from .._validate import resolve_device
from ..checkpoint import run_folder_of
from ..data import BINARIZATIONS, DATASETS, MOLECULE_DATASETS
from ..models import load
from ..train import RunFolder, load_schema
from .types import comma_list, index_pair, int_list, key_value, positive_int

__all__ = [
    "int_list",
    "key_value",
    "positive_int",
    "index_pair",
    "add_data_args",
    "add_stream_args",
    "comma_list",
    "add_common_args",
    "add_deprecated_alias",
    "add_run_args",
    "load_run_model",
    "run_folder",
    "print_metrics",
    "unit",
    "attribute_conditions",
    "need_conditions",
    "pick",
    "check_label",
    "class_names",
    "resolve_labels",
    "images_from_npz",
]


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=None,
        choices=[*DATASETS, *MOLECULE_DATASETS],
        help="built-in data set (default: digits, shipped with scikit-learn)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="your own data instead of --dataset: a folder with one sub-folder of PNG/JPEG images "
        "per class, a folder of images with one attribute CSV (file name, then attributes), an "
        ".npz (x, and labels or conditions), or a CSV / Parquet table",
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="with --data: resize every image to N x N (needed when the sizes differ)",
    )
    p.add_argument(
        "--condition",
        type=comma_list,
        default=None,
        metavar="COLUMNS",
        help="with --data: the condition columns of a table (the others are the data), or the "
        "attribute columns to use of an attribute CSV (default: all); with --dataset moses: "
        "the properties of the condition, e.g. logp (default: all)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with torchvision-style raw data (default: $PYRO_CVAE_DATA or "
        "~/.cache/pyro_cvae)",
    )
    p.add_argument(
        "--binarize",
        default=None,
        choices=BINARIZATIONS,
        help="dynamic: new Bernoulli draw per batch; fixed: one seeded draw; none: "
        "grey levels (default: dynamic for bernoulli, none otherwise)",
    )
    p.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="use only the first N training images (and N validation/test images)",
    )


def add_stream_args(p: argparse.ArgumentParser) -> None:
    """``--stream`` and ``--workers``: the user's data read batch by batch (``train``)."""
    p.add_argument(
        "--stream", action="store_true", default=None,
        help="with --data: read the images or table rows batch by batch instead of loading them "
        "into memory (data larger than memory); same splits and training as in memory",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="with --stream: DataLoader worker processes that read the batches (default 0: the "
        "training process reads them)",
    )  # fmt: skip


def add_common_args(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--device`` and ``--quiet``, spelled and meant the same on every command that
    reads a run (``train`` has its own help texts for the same three flags)."""
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda", "auto"],
        help="where the model runs; auto picks CUDA when available (default cpu)",
    )  # fmt: skip
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (accepted by every command)"
    )


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: still works, hidden from ``--help``, notes the new one."""

    def __init__(self, option_strings, dest, new: str = "", **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.new}",
              file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kw) -> None:
    """Keep ``old`` working as a hidden alias of the flag ``new`` (stored in ``dest``)."""
    p.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS,
                   default=argparse.SUPPRESS, **kw)  # fmt: skip


def add_run_args(p: argparse.ArgumentParser, default_png: str) -> None:
    """The flags of the commands that read a trained run and write one picture."""
    p.add_argument("--run", required=True, help="run folder or checkpoint file")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
    p.add_argument(
        "--out",
        default=None,
        help=f"PNG path or folder (default: <run>/{default_png}, numbered when taken)",
    )
    add_common_args(p)
    p.add_argument("--data-dir", default=None, help="data folder, as for train")


def load_run_model(args):
    """The model of ``--run`` on ``--device``, with Pyro's and torch's RNG seeded by ``--seed``."""
    model = load(args.run, map_location=resolve_device(args.device))
    pyro.set_rng_seed(args.seed)
    return model


def run_folder(run: str) -> Path:
    """The folder of a run given as a folder or as a file in it."""
    return run_folder_of(run)


def unit(model) -> str:
    """What one data item of a model is called in messages: ``"image"`` or ``"row"``."""
    return "image" if len(model.config.image_shape) == 3 else "row"


def print_metrics(metrics: dict) -> None:
    for k, v in metrics.items():
        if isinstance(v, float):
            print(f"  {k:>26}: {v:.4f}")
        elif not isinstance(v, list):
            print(f"  {k:>26}: {v}")


def attribute_conditions(model, folder: Path, texts, *, extrapolate: bool = False
                         ) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """Condition vectors (M, width) from ``digit=5,color=red`` texts and the run's schema
    (continuous values outside the trained range only with ``extrapolate``)."""
    schema = load_schema(folder)
    if schema.width != model.config.condition_dim:
        raise ValueError(
            f"the attribute schema of {folder} has width {schema.width} but the model expects "
            f"condition_dim={model.config.condition_dim}; the attributes.json belongs to "
            "another model"
        )
    values = [schema.parse(t, extrapolate=extrapolate) for t in texts]
    names = [",".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in
                      row.items()) for row in values]  # fmt: skip
    return schema.encode(values, extrapolate=extrapolate).to(model.device), names


def need_conditions(model, folder: Path, given, flag: str = "--condition") -> None:
    if given:
        return
    schema = load_schema(folder)
    example = ",".join(f"{a.name}={a.values[0]}" if hasattr(a, "values") else
                       f"{a.name}={a.default:.4g}" for a in schema.attributes)  # fmt: skip
    raise ValueError(
        f"this model is conditioned on attributes ({', '.join(schema.names)}); pass "
        f"{flag}, e.g. {flag} {example}"
    )


def pick(split, indices, what: str = "--images"):
    bad = [i for i in indices if i >= len(split)]
    if bad:
        raise ValueError(
            f"{what} index {bad[0]} is out of range: the split has {len(split)} images "
            f"(indices 0..{len(split) - 1})"
        )
    idx = torch.tensor(list(indices))
    return split.x[idx], split.y[idx]


def class_names(folder: Path, num_classes: int) -> list[str]:
    """The class names a run recorded (its own data's sub-folders), else ``"0"``, ``"1"``, ..."""
    run = RunFolder(folder)
    names = run.config().get("data", {}).get("class_names") if run.has_config() else None
    return (
        list(names) if names and len(names) == num_classes else [str(i) for i in range(num_classes)]
    )


def resolve_labels(texts, names: list[str], flag: str = "--label") -> list[int]:
    """Labels given as class names or indices -> indices, refusing unknown ones by listing all."""
    out = []
    for t in texts:
        t = str(t).strip()
        if t in names:
            out.append(names.index(t))
        elif t.lstrip("-").isdigit() and 0 <= int(t) < len(names):
            out.append(int(t))
        elif t.lstrip("-").isdigit():
            raise ValueError(
                f"{flag} {t} is out of range: labels are 0..{len(names) - 1}"
                + ("" if names == [str(i) for i in range(len(names))]
                   else f" (or the class names {', '.join(names)})")
            )  # fmt: skip
        else:
            shown = ", ".join(f"{i}={n}" if n != str(i) else n for i, n in enumerate(names))
            raise ValueError(
                f"{flag} {t} is not a class of this model; give a class name or index: {shown}"
            )
    return out


def check_label(model, label: int, flag: str) -> None:
    C = model.config.num_classes
    if not 0 <= label < C:
        raise ValueError(f"{flag} {label} is out of range: labels are 0..{C - 1}")


def images_from_npz(path: str, model) -> tuple[torch.Tensor, torch.Tensor | None]:
    with np.load(path) as f:
        if "images" not in f:
            raise ValueError(f"{path} has no array 'images'; save one with np.savez(..., images=x)")
        x = torch.from_numpy(np.asarray(f["images"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(f["labels"])) if "labels" in f else None
    if y is not None and model.config.num_classes:
        y = y.long()
    elif y is not None:
        y = y.float()
    return x, y
