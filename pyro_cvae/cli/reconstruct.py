"""``pyro-cvae reconstruct``: test images beside the decoded posterior means."""

from __future__ import annotations

from .. import plots
from ..data import load_run_data
from ..models import load
from ..train import output_path
from ._common import (
    positive_int,
)

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "reconstruct",
        help="reconstruct test images",
        description="Encode test images and decode the posterior mean.",
    )
    r.add_argument("--run", required=True, help="run folder or checkpoint file")
    r.add_argument("-n", "--num", type=positive_int, default=10, help="images (10)")
    r.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
    r.add_argument(
        "--out",
        default=None,
        help="PNG path or folder (default: <run>/reconstruction.png, numbered when taken)",
    )
    r.add_argument("--data-dir", default=None, help="data folder, as for train")


def run(args) -> int:
    model = load(args.run)
    data = load_run_data(args.run, args.data_dir)
    split = data.eval_split(args.split)
    n = min(args.num, len(split))
    y = split.y[:n] if model.config.cond_width else None
    out = output_path(args.run, "reconstruction.png", args.out)
    plots.reconstructions(split.x[:n], model.reconstruct(split.x[:n], y), n=n, path=out)
    print(f"wrote {out}")
    return 0
