"""``pyro-cvae sample``: images generated for labels or attribute conditions (PNG, .npz), or
table rows and vectors (CSV, Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import plots
from ..applications import sample_rows
from ..data import read_table
from ..models import kind_of
from ..train import load_schema, output_path
from ._common import (
    add_common_args,
    attribute_conditions,
    class_names,
    load_run_model,
    need_conditions,
    positive_int,
    resolve_labels,
    run_folder,
)
from ._molecules import sample_molecules

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    s = sub.add_parser(
        "sample",
        help="generate images for a label",
        description="Generate images from a trained model and save them as PNG "
        "(and .npz with --npz).",
    )
    s.add_argument("--run", required=True, help="run folder or checkpoint file")
    s.add_argument(
        "--label",
        action="append",
        default=None,
        help="label to generate, a class name or index (repeatable; default: every label, one "
        "row each)",
    )
    s.add_argument("-n", "--num", type=positive_int, default=10, help="images per label (10)")
    s.add_argument("--temperature", type=float, default=1.0, help="scale of the prior draw (1)")
    s.add_argument(
        "--guidance", type=float, default=None, metavar="W",
        help="molecule runs trained with --condition-dropout: classifier-free guidance, each "
        "token from (1 + W) log p(. | z, c) - W log p(. | z) (default 0: the model itself)",
    )  # fmt: skip
    s.add_argument(
        "--condition",
        action="append",
        default=None,
        help="attribute models: the condition to generate, e.g. digit=5,color=red "
        "(repeatable, one row each; unnamed continuous attributes take their default)",
    )
    s.add_argument(
        "--extrapolate",
        action="store_true",
        help="take continuous --condition values outside the range the model was trained on "
        "(refused without it): what the model makes of a request it never saw",
    )
    s.add_argument(
        "--draw",
        action="store_true",
        help="draw pixels from p(x | z, y) instead of showing its mean",
    )
    add_common_args(s)
    s.add_argument(
        "--out",
        default=None,
        help="PNG path or folder (default: <run>/sample.png, numbered when taken); for tables "
        "and vectors a .csv or .parquet file (default: <run>/sample.csv)",
    )
    s.add_argument(
        "--npz",
        default=None,
        help="images: also write an .npz with arrays images (N, C, H, W) and labels (N,) "
        "(.npz is added to a name without it)",
    )


def run(args) -> int:
    model = load_run_model(args)
    output = kind_of(model).output(model)  # how this kind of model presents its samples
    if output == "smiles":  # SMILES with properties (CSV) and a drawn grid
        return sample_molecules(args, model)
    if args.guidance is not None:
        raise ValueError(
            f"--guidance sharpens the condition of a molecule run; {args.run} holds a "
            f"{type(model).__name__}: drop --guidance"
        )
    if output not in ("images", "rows"):
        raise ValueError(
            f"{args.run} holds a {type(model).__name__}, whose output ({output}) sample does not "
            "draw; sample takes a CVAE, M2 or molecule run"
        )
    folder = run_folder(args.run)
    cfg = model.config
    if output == "rows":
        if args.npz:
            raise ValueError(
                "--npz writes images; this model generates table rows or vectors, written as "
                "CSV or Parquet with --out; drop --npz"
            )
        return _sample_rows(args, model, folder)
    if args.npz:
        args.npz = _npz_name(args.run, args.npz)
    if args.condition or cfg.condition_dim:
        return _sample_conditions(args, model, folder)
    if cfg.num_classes:
        known = class_names(folder, cfg.num_classes)
        labels = (resolve_labels(args.label, known) if args.label is not None
                  else list(range(cfg.num_classes)))  # fmt: skip
        y = torch.tensor(labels)
        images = model.sample(y, args.num, mean=not args.draw, temperature=args.temperature)
        names = [known[v] for v in labels]  # rows titled as in samples.png
    else:
        if args.label:
            raise ValueError("this model is unconditional; drop --label")
        images = model.sample(None, args.num, mean=not args.draw, temperature=args.temperature)[
            None
        ]
        y = torch.tensor([-1])
        names = None
    out = output_path(args.run, "sample.png", args.out)
    plots.samples_grid(images, names, title="samples", path=out)
    print(f"wrote {out}")
    if args.npz:
        flat = images.flatten(0, 1).cpu().numpy()
        lab = np.repeat(y.numpy(), images.shape[1])
        np.savez(args.npz, images=flat, labels=lab)
        print(f"wrote {args.npz} (images {flat.shape}, labels {lab.shape})")
    return 0


def _npz_name(run, npz: str) -> str:
    """The file ``np.savez`` writes (it adds ``.npz``), refused when training wrote it."""
    path = Path(npz if npz.endswith(".npz") else npz + ".npz")
    output_path(run, path.name, path)  # refuses a file training wrote, or a missing folder
    return str(path)


def _sample_conditions(args, model, folder: Path) -> int:
    if not model.config.condition_dim:
        raise ValueError(
            "--condition is for attribute models (trained on condition vectors); this model "
            "is conditioned on labels, use --label"
        )
    if args.label:
        raise ValueError("an attribute model takes --condition, not --label; drop --label")
    need_conditions(model, folder, args.condition)
    c, names = attribute_conditions(model, folder, args.condition, extrapolate=args.extrapolate)
    images = model.sample(c, args.num, mean=not args.draw, temperature=args.temperature)
    out = output_path(args.run, "sample.png", args.out)
    plots.samples_grid(images, names, title="samples", path=out)  # (M, n, C, H, W)
    print(f"wrote {out}")
    if args.npz:
        flat = images.flatten(0, 1).cpu().numpy()
        cond = np.repeat(c.cpu().numpy(), images.shape[1], axis=0)
        np.savez(args.npz, images=flat, conditions=cond)
        print(f"wrote {args.npz} (images {flat.shape}, conditions {cond.shape})")
    return 0


def _sample_rows(args, model, folder: Path) -> int:
    """Rows of a table (or vectors), in the table's own columns and types, as CSV or Parquet."""
    cfg = model.config
    kwargs: dict = {"table": read_table(folder), "temperature": args.temperature,
                    "extrapolate": args.extrapolate}  # fmt: skip
    if kwargs["table"] is None and cfg.likelihood == "table":
        raise ValueError(
            f"{folder} holds no table.json, which turns this table model's rows back into the "
            "table's columns; copy the run's table.json (and attributes.json, for conditions) "
            "beside the model file"
        )
    if cfg.condition_dim:
        if args.label:
            raise ValueError("this model takes --condition, not --label; drop --label")
        need_conditions(model, folder, args.condition)
        schema = load_schema(folder)
        kwargs.update(conditions=[schema.parse(t, extrapolate=args.extrapolate)
                                  for t in args.condition], schema=schema)  # fmt: skip
    elif cfg.num_classes:
        if args.condition:
            raise ValueError("this model is conditioned on labels; use --label, not --condition")
        known = class_names(folder, cfg.num_classes)
        kwargs["labels"] = (resolve_labels(args.label, known) if args.label is not None
                            else list(range(cfg.num_classes)))  # fmt: skip
    elif args.label or args.condition:
        raise ValueError("this model is unconditional; drop --label and --condition")
    rows = sample_rows(model, args.num, **kwargs)
    out = output_path(args.run, "sample.csv", args.out)
    if out.suffix.lower() in (".parquet", ".pq"):
        rows.to_parquet(out, index=False)
    elif out.suffix.lower() == ".csv":
        rows.to_csv(out, index=False)
    else:
        raise ValueError(f"--out {out}: rows are written as .csv or .parquet; name such a file")
    print(f"wrote {out} ({len(rows)} rows, columns {', '.join(map(str, rows.columns))})")
    return 0
