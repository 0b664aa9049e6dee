"""Run every benchmark and write benchmarks/results.md: ``python -m benchmarks`` (or make bench).

Each ratio is measured side by side in one run (these machines are noisy): Pyro and plain
PyTorch epochs alternate, the first round is a warm-up, the median of the rest is reported.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import torch

from benchmarks import eval_speed, train_speed

RESULTS = Path(__file__).with_name("results.md")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per side (3)")
    p.add_argument("--iwae-train-size", type=int, default=10000,
                   help="training images for the IWAE rows (default 10000 of 50000)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = p.parse_args(argv)
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    size = 2000 if args.quick else None
    iw_size = 500 if args.quick else args.iwae_train_size
    rep = 1 if args.quick else args.repeats
    elbo = train_speed.run("mnist", rep, ("elbo",), train_size=size, log=log)
    iwae = train_speed.run("mnist", rep, ("iwae5", "iwae50"), train_size=iw_size, log=log)
    elbo_iw = train_speed.run("mnist", rep, ("elbo",), train_size=iw_size, log=log)
    rate, evals = eval_speed.run(
        "mnist", 200 if args.quick else 5000, (10, 40) if args.quick else (50, 200), log=log
    )
    header = [
        "# Benchmarks",
        "",
        f"Written by `python -m benchmarks` on {datetime.date.today()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}). MLP CVAE, hidden "
        "400, latent 50, batch 128, MNIST (dynamic binarisation). Pyro and the hand-written "
        "PyTorch loop (`benchmarks/plain.py`, fused Adam) alternate epochs in one process; "
        f"medians of {rep} timed epochs after one warm-up.",
        "",
        "| objective | training images | plain PyTorch s/epoch | pyro_cvae s/epoch | ratio |",
        "|---|---|---|---|---|",
    ]
    n_full = size or 50000
    for r in elbo:
        header.append(f"| {r['objective']} | {n_full} | {r['plain_s']:.2f} | {r['pyro_s']:.2f} | "
                      f"{r['ratio']:.3f} |")  # fmt: skip
    for r in elbo_iw + iwae:
        header.append(f"| {r['objective']} | {iw_size} | {r['plain_s']:.2f} | {r['pyro_s']:.2f} "
                      f"| {r['ratio']:.3f} |")  # fmt: skip
    base = elbo_iw[0]["pyro_s"]
    header += ["", "Cost of an IWAE epoch relative to an ELBO epoch (same images, pyro_cvae):", ""]
    for r in iwae:
        header.append(f"- {r['objective']}: {r['pyro_s'] / base:.1f}x")
    header += [
        "",
        f"Evaluation, `log_likelihood` at K = {evals[0]['images'] and (200 if args.quick else 5000)}; "
        f"machine matmul rate {rate:.1f} GFLOP/s:",
        "",
        "| test images | images/s | GFLOP/s | fraction of matmul rate | peak RSS growth (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in evals:
        header.append(f"| {r['images']} | {r['images_per_s']:.1f} | {r['gflops']:.1f} | "
                      f"{100 * r['fraction_of_matmul']:.0f}% | {r['max_rss_growth_mib']:.0f} |")  # fmt: skip
    header += ["", "Raw log:", "", "```", *lines, "```", ""]
    Path(args.out).write_text("\n".join(header))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
