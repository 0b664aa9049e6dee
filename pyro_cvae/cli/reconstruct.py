"""``pyro-cvae reconstruct``: test images beside the decoded posterior means."""

from __future__ import annotations

from .. import plots
from ..data import load_run_data
from ..train import output_path
from ._common import add_run_args, load_run_model, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "reconstruct",
        help="reconstruct test images",
        description="Encode test images and decode the posterior mean.",
    )
    add_run_args(r, "reconstruction.png")
    r.add_argument("-n", "--num", type=positive_int, default=10, help="images (10)")


def run(args) -> int:
    model = load_run_model(args)
    data = load_run_data(args.run, args.data_dir)
    split = data.eval_split(args.split)
    n = min(args.num, len(split))
    y = split.y[:n] if model.config.cond_width else None
    out = output_path(args.run, "reconstruction.png", args.out)
    plots.reconstructions(split.x[:n], model.reconstruct(split.x[:n], y), n=n, path=out)
    print(f"wrote {out}")
    return 0
