"""``pyro-cvae transfer``: style transfer, each image redrawn with every other label."""

from __future__ import annotations

import numpy as np
import torch

from .. import plots
from ..applications import (
    transfer,
)
from ..train import load_run_data, output_path
from ._common import (
    add_run_args,
    attribute_conditions,
    check_label,
    load_run_model,
    need_conditions,
    pick,
    positive_int,
    run_folder,
)

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    tr = sub.add_parser(
        "transfer",
        help="style transfer: redraw images as every other label",
        description="Encode images with their own label and decode the same latent with every "
        "label (or the --condition vectors of an attribute model): the style stays, the class "
        "changes. Writes a PNG (one row per image: the image, then one column per label).",
    )
    add_run_args(tr, "transfer.png")
    tr.add_argument("-n", "--num", type=positive_int, default=8, help="images, one row each (8)")
    tr.add_argument(
        "--label", type=int, action="append", default=None,
        help="label to decode with (repeatable; default: every label)",
    )  # fmt: skip
    tr.add_argument(
        "--condition", action="append", default=None,
        help="attribute models: a condition to decode with, e.g. color=red,digit=5 (repeatable)",
    )  # fmt: skip
    tr.add_argument(
        "--npz", default=None, help="also write an .npz with images (N, L, C, H, W) and z (N, D)"
    )


def run(args) -> int:
    model = load_run_model(args)
    folder = run_folder(args.run)
    cfg = model.config
    if not cfg.cond_width:
        raise ValueError("style transfer needs a conditional model; this run is a plain VAE")
    data = load_run_data(args.run, args.data_dir)
    split = data.eval_split(args.split)
    x, y = pick(split, range(min(args.num, len(split))))
    if cfg.condition_dim:
        need_conditions(model, folder, args.condition)
        labels, names = attribute_conditions(model, folder, args.condition)
    else:
        if args.condition:
            raise ValueError("--condition is for attribute models; this model takes --label")
        chosen = args.label if args.label is not None else list(range(cfg.num_classes))
        for v in chosen:
            check_label(model, v, "--label")
        labels = torch.tensor(chosen)
        names = [data.class_names[v] for v in chosen]
    result = transfer(model, x, y, labels)
    out = output_path(args.run, "transfer.png", args.out)
    plots.transfer_grid(x, result.images, names, path=out)
    print(f"wrote {out} ({x.shape[0]} images x {len(names)} labels)")
    if args.npz:
        np.savez(args.npz, images=result.images.cpu().numpy(), z=result.z.cpu().numpy())
        print(f"wrote {args.npz} (images {tuple(result.images.shape)})")
    return 0
