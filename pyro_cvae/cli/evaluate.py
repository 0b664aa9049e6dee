"""``pyro-cvae evaluate``: the test metrics of a trained run, printed and written as JSON."""

from __future__ import annotations

import json

from ..evaluate import DEFAULT_MAX_FLOATS
from ..judge import evaluate
from ..train import load_run_data, output_path
from ._common import (
    add_common_args,
    load_run_model,
    positive_int,
    print_metrics,
    unit,
)

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    e = sub.add_parser(
        "evaluate",
        help="test bounds, log-likelihood, active units, control",
        description="Evaluate a trained model: ELBO, importance-sampled NLL "
        "(nats and bits/dim), KL, active units, conditional control score. "
        "Prints and writes JSON.",
    )
    e.add_argument("--run", required=True, help="run folder or checkpoint file")
    e.add_argument(
        "--num-samples",
        "-k",
        type=positive_int,
        default=1000,
        help="K for the importance-sampled log-likelihood (default 1000; the IWAE paper uses 5000)",
    )
    e.add_argument("--split", default="test", choices=["val", "test"], help="(test)")
    e.add_argument(
        "--classify-samples",
        type=int,
        default=0,
        help="K per label for the generative classifier p(y|x) (0: skip; costly)",
    )
    e.add_argument(
        "--num-images",
        type=positive_int,
        default=None,
        help="evaluate only the first N images of the split (default: all)",
    )
    e.add_argument(
        "--max-floats",
        type=positive_int,
        default=DEFAULT_MAX_FLOATS,
        help="floats of decoder output per chunk: bounds memory (default 2^22, 16 MiB)",
    )
    e.add_argument(
        "--out",
        default=None,
        help="JSON path or folder (default: <run>/evaluation.json, numbered when taken)",
    )
    add_common_args(e)
    e.add_argument("--data-dir", default=None, help="data folder, as for train")


def run(args) -> int:
    model = load_run_model(args)
    out = output_path(args.run, "evaluation.json", args.out)  # refused before any work
    data = load_run_data(args.run, args.data_dir)
    metrics = evaluate(model, data, num_samples=args.num_samples, split=args.split,
                       classify_samples=args.classify_samples, progress=not args.quiet,
                       num_images=args.num_images, max_floats=args.max_floats)  # fmt: skip
    metrics["checkpoint"] = model.loaded_from
    out.write_text(json.dumps(metrics, indent=2))
    print(f"{args.split} metrics (nats per {unit(model)}), K={args.num_samples}:")
    print_metrics(metrics)
    print(f"wrote {out}")
    return 0
