"""``pyro-cvae interpolate``: latent paths between two images, or between two labels."""

from __future__ import annotations

import numpy as np
import torch

from .. import plots
from ..applications import (
    INTERPOLATIONS,
    interpolate_images,
    interpolate_labels,
)
from ..train import load_run_data, output_path
from ._common import (
    add_deprecated_alias,
    add_run_args,
    attribute_conditions,
    check_label,
    index_pair,
    load_run_model,
    pick,
    run_folder,
)

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    ip = sub.add_parser(
        "interpolate",
        help="interpolate between two images or two labels",
        description="Between two images: encode both, interpolate the latent (linearly or "
        "spherically) and decode with one fixed label. With --label-pair A,B: keep the latent of "
        "the first image and move the label from A to B. Writes an image strip.",
    )
    add_run_args(ip, "interpolation.png")
    ip.add_argument(
        "--image-pair", type=index_pair, default=(0, 1), metavar="I,J",
        help="indices I,J of two images of --split (default 0,1)",
    )  # fmt: skip
    ip.add_argument(
        "--label-pair", type=index_pair, default=None, metavar="A,B",
        help="interpolate the label from A to B at the latent of image I instead",
    )  # fmt: skip
    # the spellings before 0.1.0's one vocabulary (train's --labels is a count)
    add_deprecated_alias(ip, "--images", "--image-pair", "image_pair", type=index_pair)
    add_deprecated_alias(ip, "--labels", "--label-pair", "label_pair", type=index_pair)
    ip.add_argument(
        "--label", type=int, default=None,
        help="label every point is decoded with (default: the label of image I)",
    )  # fmt: skip
    ip.add_argument(
        "--condition", action="append", default=None,
        help="attribute models: one condition to decode with, or two to interpolate between",
    )  # fmt: skip
    ip.add_argument(
        "--method", default="linear", choices=list(INTERPOLATIONS),
        help="path between the two latents (default linear)",
    )  # fmt: skip
    ip.add_argument("--steps", type=int, default=10, help="points, end points included (10)")
    ip.add_argument("--npz", default=None, help="also write an .npz with images (steps, C, H, W)")


def run(args) -> int:
    model = load_run_model(args)
    folder = run_folder(args.run)
    cfg = model.config
    data = load_run_data(args.run, args.data_dir)
    (x0, x1), (y0, y1) = pick(data.eval_split(args.split), args.image_pair, "--image-pair")
    if not cfg.cond_width:
        y0 = y1 = None
        if args.label_pair or args.label is not None or args.condition:
            raise ValueError("this model is unconditional; drop --label-pair, --label, --condition")
    conditions = None
    if cfg.condition_dim and args.condition:
        conditions, _ = attribute_conditions(model, folder, args.condition)
    elif args.condition:
        raise ValueError(
            "--condition is for attribute models; this model takes --label or --label-pair"
        )
    label_path = args.label_pair is not None or (conditions is not None and len(conditions) == 2)
    if label_path:
        if cfg.condition_dim:
            if conditions is None or len(conditions) != 2:
                raise ValueError("an attribute model interpolates between two --condition values")
            a, b = conditions[0], conditions[1]
            title = f"condition {args.condition[0]} -> {args.condition[1]}"
        else:
            for v in args.label_pair:
                check_label(model, v, "--label-pair")
            a, b = args.label_pair
            title = f"label {data.class_names[a]} -> {data.class_names[b]}"
        z, _ = model.encode(x0[None], y0[None])
        images = interpolate_labels(model, z[0], a, b, steps=args.steps).cpu()
        strip = torch.cat([x0[None], images])
        title = f"image {args.image_pair[0]} | {title} at its latent"
    else:
        label = y0
        if conditions is not None:
            if len(conditions) != 1:
                raise ValueError("give one --condition to decode with, or two to interpolate")
            label = conditions[0]
        elif args.label is not None:
            check_label(model, args.label, "--label")
            label = torch.tensor(args.label)
        images = interpolate_images(
            model, x0, x1, y0, y1, label=label, steps=args.steps, method=args.method
        ).cpu()
        strip = torch.cat([x0[None], images, x1[None]])
        i, j = args.image_pair
        title = f"image {i} | {args.method} interpolation | image {j}"
    out = output_path(args.run, "interpolation.png", args.out)
    plots.image_strip(strip, title=title, path=out)
    print(f"wrote {out} ({args.steps} steps)")
    if args.npz:
        np.savez(args.npz, images=images.cpu().numpy())
        print(f"wrote {args.npz} (images {tuple(images.shape)})")
    return 0
