"""``pyro-cvae reconstruct``: test images beside the decoded posterior means."""

from __future__ import annotations

import pandas as pd

from .. import plots
from ..train import load_run_data, output_path
from ._common import add_run_args, load_run_model, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "reconstruct",
        help="reconstruct test images",
        description="Encode test images and decode the posterior mean (a PNG); for tables and "
        "vectors, each row beside its reconstruction (a CSV).",
    )
    add_run_args(r, "reconstruction.png")
    r.add_argument("-n", "--num", type=positive_int, default=10, help="images (10)")


def run(args) -> int:
    model = load_run_model(args)
    rows = len(model.config.image_shape) != 3  # table rows or vectors: a CSV, not a picture
    out = output_path(args.run, "reconstruction.csv" if rows else "reconstruction.png", args.out)
    if rows and out.suffix.lower() != ".csv":
        raise ValueError(f"--out {out}: reconstructed rows are written as .csv; name such a file")
    data = load_run_data(args.run, args.data_dir)
    split = data.eval_split(args.split)
    n = min(args.num, len(split))
    y = split.y[:n] if model.config.cond_width else None
    recon = model.reconstruct(split.x[:n], y)
    if rows:
        _write_rows(data, split.x[:n], recon, out)
    else:
        plots.reconstructions(split.x[:n], recon, n=n, path=out)
    print(f"wrote {out}")
    return 0


def _write_rows(data, x, recon, out) -> None:
    """Each row of the split, then its reconstruction, in the table's own columns and types."""
    decode = data.table.decode if data.table is not None else (
        lambda v: pd.DataFrame(v.cpu().numpy(), columns=[f"x{i}" for i in range(v.shape[-1])])
    )  # fmt: skip
    original, rebuilt = decode(x.cpu()), decode(recon.reshape(len(x), -1).cpu())
    original.insert(0, "which", "data")
    rebuilt.insert(0, "which", "reconstruction")
    for frame in (original, rebuilt):
        frame.insert(0, "row", range(len(frame)))
    both = pd.concat([original, rebuilt]).sort_values(["row", "which"], kind="stable")
    both.to_csv(out, index=False)
