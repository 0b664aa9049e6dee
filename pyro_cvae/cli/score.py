"""``pyro-cvae score``: anomaly scores, the importance-sampled -log p(x) of each image."""

from __future__ import annotations

import argparse
import csv

from .. import plots
from ..applications import (
    anomaly_scores,
)
from ..models import kind_of
from ..train import load_run_data, output_path, run_binarizes
from ._common import (
    add_common_args,
    add_deprecated_alias,
    images_from_npz,
    load_run_model,
    positive_int,
    unit,
)
from ._molecules import score_molecules

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    sc = sub.add_parser(
        "score",
        help="anomaly scores: -log p(x) per image",
        description="Score every image by its importance-sampled -log p(x) in nats (larger: "
        "more anomalous). A label model marginalises the label, p(x) = sum_y p(y) p(x|y), "
        "unless --given-label. Writes a CSV (index, label, score) and a histogram PNG beside it.",
    )
    sc.add_argument("--run", required=True, help="run folder or checkpoint file")
    sc.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
    sc.add_argument("-n", "--num", type=positive_int, default=None, help="first N images (all)")
    sc.add_argument(
        "--images-npz", default=None, metavar="PATH",
        help=".npz with an array 'images' (N, C, H, W) in [0, 1] to score instead of --split "
        "(and 'labels' for --given-label or an attribute model)",
    )  # fmt: skip
    add_deprecated_alias(sc, "--images", "--images-npz", "images_npz")
    sc.add_argument(
        "--binarize", action=argparse.BooleanOptionalAction, default=None,
        help="--images-npz under a Bernoulli likelihood: score one seeded Bernoulli draw of the "
        "images (--binarize) or their grey levels as they are (--no-binarize); default: as the "
        "run's training data (binarised unless it trained with --binarize none)",
    )  # fmt: skip
    sc.add_argument(
        "--num-samples", "-k", type=positive_int, default=100,
        help="K, importance samples per image (and per label) (100)",
    )  # fmt: skip
    sc.add_argument(
        "--given-label", action="store_true",
        help="score -log p(x | y) with each image's own label instead of the marginal",
    )  # fmt: skip
    sc.add_argument(
        "--out",
        default=None,
        help="CSV path or folder (default: <run>/scores.csv, numbered when taken)",
    )
    sc.add_argument(
        "--molecules", default=None,
        help="molecule runs: a CSV with a SMILES column to score instead of --split",
    )  # fmt: skip
    add_common_args(sc)
    sc.add_argument("--data-dir", default=None, help="data folder, as for train")


def run(args) -> int:
    model = load_run_model(args)
    if kind_of(model).output(model) == "smiles":  # -log p(x | c) per molecule, c its properties
        return score_molecules(args, model)
    cfg = model.config
    out = output_path(args.run, "scores.csv", args.out)  # refused before any work
    if args.images_npz:
        x, y = images_from_npz(args.images_npz, model)
        binarize = run_binarizes(args.run) if args.binarize is None else args.binarize
    else:  # the split as evaluate scores it: binarised once if the run binarises
        if args.binarize is not None:
            raise ValueError("--binarize and --no-binarize are for --images-npz; drop it")
        split = load_run_data(args.run, args.data_dir).eval_split(args.split)
        x, y, binarize = split.x, split.y, False
    if args.num:
        x, y = x[: args.num], None if y is None else y[: args.num]
    use_y = cfg.condition_dim or (cfg.num_classes and args.given_label)
    if use_y and y is None:
        raise ValueError(
            f"{args.images_npz} has no array 'labels'; this model needs them"
            + (" (or drop --given-label)" if cfg.num_classes else "")
        )
    if not cfg.cond_width and args.given_label:
        raise ValueError("this model is unconditional; drop --given-label")
    scores = anomaly_scores(model, x, y if use_y else None, args.num_samples,
                            binarize=binarize, progress=not args.quiet)  # fmt: skip
    label_col = [int(v) for v in y] if y is not None and y.dim() == 1 else [""] * len(scores)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "neg_log_px"])
        for i, (lab, s) in enumerate(zip(label_col, scores.tolist())):
            w.writerow([i, lab, f"{s:.6f}"])
    png = out.with_suffix(".png")
    what = "-log p(x|y)" if use_y else "-log p(x)"
    plots.score_histogram({f"{unit(model)}s": scores}, xlabel=f"{what} (nats), K={args.num_samples}",
                          path=png)  # fmt: skip
    print(f"{len(scores)} {unit(model)}s: mean {what} = {scores.mean().item():.3f} nats "
          f"(min {scores.min().item():.3f}, max {scores.max().item():.3f})")  # fmt: skip
    print(f"wrote {out} and {png}")
    return 0
