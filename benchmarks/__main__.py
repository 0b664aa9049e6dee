"""Run every benchmark and write benchmarks/results.md: ``python -m benchmarks`` (or make bench).

Each ratio is measured side by side in one run (these machines are noisy): Pyro and plain
PyTorch epochs alternate, the first round is a warm-up, the median of the rest is reported.
The CPU is always measured; a CUDA GPU, when one is present, gets a section of its own
(``--device cpu`` or ``--device cuda`` picks one).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import eval_speed, fit_speed, overhead, semi_speed, streaming, train_speed
from pyro_cvae.evaluate import DEFAULT_MAX_FLOATS

RESULTS = Path(__file__).with_name("results.md")

WHAT = {
    "plain": "hand-written loss, fused Adam",
    "modules": "pyro_cvae's networks and distribution objects, called without Pyro",
    "trace_elbo": "Pyro's full path: trace the guide, replay the model, `Trace_ELBO` (before)",
    "lean": "the lean path instead: one recording handler, same loss and gradient (after)",
    "svi_step": "`ModuleSVI.step` on the lean path: finite checks; one step of `fit`",
}


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def plan(args) -> dict:
    """The sizes of a run: the full one (default), ``--quick`` (a smoke test on MNIST) or
    ``--tiny`` (seconds, on the 8x8 digits: the test suite's check that every section is
    written, through the same code as the other two)."""
    fits = {"fit_cases": tuple(fit_speed.CASES), "fit_rounds": args.fit_rounds, "fit_sizes": {}}
    if args.tiny:  # the fit rows on digits only, two epochs of tiny networks
        fits = {"fit_cases": ("digits",), "fit_rounds": 1,
                "fit_sizes": {"epochs": 2, "hidden": (32,), "latent": 4}}  # fmt: skip
        return {"dataset": "digits", "train_size": 300, "iw_size": 200, "repeats": 1,
                "steps": 2, "k_eval": 10, "eval_images": (5, 20), "matmul_n": 256,
                "hidden": (32,), "latent": 4, **fits}  # fmt: skip
    if args.quick:
        fits = {"fit_cases": ("digits", "10k-elbo"), "fit_rounds": 1,
                "fit_sizes": {"epochs": 1}}  # fmt: skip
        return {"dataset": "mnist", "train_size": 2000, "iw_size": 500, "repeats": 1,
                "steps": 50, "k_eval": 200, "eval_images": (10, 40), "matmul_n": 2048,
                "hidden": (400,), "latent": 50, **fits}  # fmt: skip
    return {"dataset": "mnist", "train_size": None, "iw_size": args.iwae_train_size,
            "repeats": args.repeats, "steps": 500, "k_eval": 5000, "eval_images": (50, 200),
            "matmul_n": 2048, "hidden": (400,), "latent": 50, **fits}  # fmt: skip


def measure(device: str, args, log) -> dict:
    """Every figure on one device."""
    sz = plan(args)
    ds, size, iw_size, rep, k_eval = (sz[k] for k in ("dataset", "train_size", "iw_size",
                                                     "repeats", "k_eval"))  # fmt: skip
    n = sz["matmul_n"]
    rate = eval_speed.matmul_gflops(n, device=device)
    log(f"{device} matmul rate: {rate:.1f} GFLOP/s (fp32, {n}x{n})")
    kw = dict(hidden=sz["hidden"], latent=sz["latent"], device=device, log=log)
    return {
        "device": device,
        "rate": rate,
        "fits": fit_speed.run(
            sz["fit_cases"], sz["fit_rounds"], device=device, log=log, sizes=sz["fit_sizes"]
        ),  # fmt: skip
        "matmul_n": n,
        "repeats": rep,
        "n_full": size or 50000,
        "iw_size": iw_size,
        "elbo": train_speed.run(ds, rep, ("elbo",), train_size=size, **kw),
        "iwae": train_speed.run(ds, rep, ("iwae5", "iwae50"), train_size=iw_size, **kw),
        "elbo_iw": train_speed.run(ds, rep, ("elbo",), train_size=iw_size, **kw),
        "semi": semi_speed.run(ds, rep, train_size=iw_size, **kw),
        "steps": overhead.run(ds, sz["steps"], **kw),
        "k_eval": k_eval,
        "evals": eval_speed.run(ds, k_eval, sz["eval_images"], rate=rate, **kw)[1],
    }


def targets(m: dict) -> list[tuple[str, str, bool]]:
    """(target, measured value, met?) for each speed and memory target of the issue."""
    rows = []
    for r in m["fits"]:
        rows.append((f"one `pc.fit` call, {_fit_case(r)}: <= {r['target']:.2f}x the "
                     "hand-written loop", f"{r['ratio']:.3f}x", r["ratio"] <= r["target"]))  # fmt: skip
    elbo = m["elbo"][0]["ratio"]
    rows.append(("ELBO epoch <= 1.05x the plain loop", f"{elbo:.3f}x", elbo <= 1.05))
    for r in m["iwae"]:
        k = r["objective"][4:]
        rows.append((f"IWAE K={k} epoch <= 1.05x the plain IWAE loop", f"{r['ratio']:.3f}x",
                     r["ratio"] <= 1.05))  # fmt: skip
    semi = m["semi"]["ratio"]
    rows.append(("enumerated M2 epoch <= 6x the ELBO epoch", f"{semi:.2f}x", semi <= 6))
    rows.append(("stretch: ELBO epoch below 1.0x the plain loop", f"{elbo:.3f}x", elbo < 1.0))
    default = [r for r in m["evals"] if r["max_floats"] == DEFAULT_MAX_FLOATS]
    share = min(r["gflops"] for r in default) / m["rate"]
    rows.append((f"log_likelihood at K={m['k_eval']} >= 40% of the matmul rate",
                 f"{100 * share:.0f}%", share >= 0.40))  # fmt: skip
    small, large = default[0], default[-1]
    # "independent": 4x the images may not cost more than two more chunks. The margin is the
    # allocator's: glibc keeps up to twice its (adaptive) mmap threshold, one chunk here, of
    # freed memory in the heap, so resident memory varies by that much from call to call.
    chunk_mib = DEFAULT_MAX_FLOATS * 4 / 2**20
    bounded = large["peak_growth_mib"] <= small["peak_growth_mib"] + 2 * chunk_mib
    rows.append((
        f"its peak memory independent of the number of images ({small['images']} vs "
        f"{large['images']} images; a chunk is {chunk_mib:.0f} MiB)",
        f"{small['peak_growth_mib']:.0f} vs {large['peak_growth_mib']:.0f} MiB",
        bounded,
    ))  # fmt: skip
    return rows


def _fit_case(r: dict) -> str:
    what = "ELBO" if r["particles"] == 1 else f"IWAE K={r['particles']}"
    data = "digits" if r["case"] == "digits" else "MNIST"
    return f"{data} {r['images']} images, {what}, {r['epochs']} epochs, batch {r['batch_size']}"


def section(m: dict) -> list[str]:
    """The Markdown of one device's figures."""
    rate = m["rate"]

    def pct(gflops):
        return f"{100 * gflops / rate:.0f}%"

    out = [
        f"## {_device_name(m['device'])}",
        "",
        f"Matrix-multiply rate measured in the same run: {rate:.1f} GFLOP/s (fp32, "
        f"{m['matmul_n']} x {m['matmul_n']}). The percentages are the share of it that each "
        "figure's matrix products reach (FLOPs counted by `torch.utils.flop_counter`, forward "
        "and backward).",
        "",
        "### Targets of issues 14 and 30, checked against this run",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {v} | {'yes' if ok else 'no'} |" for t, v, ok in targets(m)],
        "",
        "### One `pc.fit` call against the hand-written loop, set-up included",
        "",
        "Each round trains a fresh model: one `pc.fit` call as a user makes it (checks, the "
        "lean path's qualification trace, optimizer, the family's set-up, every epoch's "
        "shuffling, binarisation and history row; no run folder, progress bar or validation) "
        "and the hand-written loop of `benchmarks/plain.py` (its optimizer and epochs), "
        "alternating in one process (`benchmarks/fit_speed.py`); medians of "
        f"{m['fits'][0]['rounds'] if m['fits'] else 0} timed rounds after one warm-up. The "
        "digits model is the demo's, `ModelConfig.for_data(digits)` (hidden 256, 256, latent 8).",
        "",
        "| case | plain s/call | pc.fit s/call | ratio | target |",
        "|---|---|---|---|---|",
        *[
            f"| {_fit_case(r)} | {r['plain_s']:.2f} | {r['pyro_s']:.2f} | {r['ratio']:.3f} | "
            f"<= {r['target']:.2f}x |"
            for r in m["fits"]
        ],  # fmt: skip
        "",
        "### Training: pyro_cvae against plain PyTorch",
        "",
        "| objective | training images | plain PyTorch s/epoch | pyro_cvae s/epoch | ratio "
        "| plain % of matmul | pyro_cvae % of matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, rows in ((m["n_full"], m["elbo"]), (m["iw_size"], m["elbo_iw"] + m["iwae"])):
        for r in rows:
            out.append(
                f"| {r['objective']} | {n} | {r['plain_s']:.2f} | {r['pyro_s']:.2f} | "
                f"{r['ratio']:.3f} | {pct(r['plain_gflops'])} | {pct(r['pyro_gflops'])} |"
            )
    base = m["elbo_iw"][0]["pyro_s"]
    out += ["", "Cost of an IWAE epoch relative to an ELBO epoch (same images, pyro_cvae):", ""]
    out += [f"- {r['objective']}: {r['pyro_s'] / base:.1f}x" for r in m["iwae"]]
    steps = m["steps"]
    out += [
        "",
        "Where an ELBO step's time goes (`benchmarks/overhead.py`; one batch of 128, median ms "
        "per step; `trace_elbo` is the step before the lean path, `lean` the same step after it):",
        "",
        "| version | ms/step | x plain | what it adds |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {k} | {ms:.2f} | {ms / steps['plain']:.3f} | {WHAT[k]} |" for k, ms in steps.items()
    ]
    semi = m["semi"]
    out += [
        "",
        "### Semi-supervised (M2) epoch beside the ELBO epoch",
        "",
        f"{semi['train_size']} training images, 100 of them labelled; labels enumerated in "
        "parallel (`TraceEnum_ELBO`); both pyro_cvae, same networks and unlabelled batch size "
        "(`benchmarks/semi_speed.py`).",
        "",
        "| CVAE elbo s/epoch | M2 enumerated s/epoch | ratio | matmul work ratio "
        "| CVAE % of matmul | M2 % of matmul |",
        "|---|---|---|---|---|---|",
        f"| {semi['elbo_s']:.2f} | {semi['m2_s']:.2f} | {semi['ratio']:.2f} | "
        f"{semi['flops_ratio']:.2f} | {pct(semi['elbo_gflops'])} | {pct(semi['m2_gflops'])} |",
        "",
        f"### Evaluation: `log_likelihood` at K = {m['k_eval']}",
        "",
        "Particles are drawn in chunks of `max_floats` floats of decoder output (default "
        "2^22). The FLOPs are the decoder's matrix products, K per image (the encoder runs once "
        "per image). Peak memory growth: the rise of resident memory (on a GPU: of allocated "
        "GPU memory) during the call, its peak reset before it.",
        "",
        "| test images | chunk (floats) | images/s | GFLOP/s | % of matmul "
        "| peak memory growth (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in m["evals"]:
        out.append(f"| {r['images']} | 2^{r['max_floats'].bit_length() - 1} | "
                   f"{r['images_per_s']:.1f} | {r['gflops']:.1f} | {pct(r['gflops'])} | "
                   f"{r['peak_growth_mib']:.0f} |")  # fmt: skip
    return out + [""]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per side (5)")
    p.add_argument("--fit-rounds", type=int, default=3,
                   help="timed fit calls per side in the fit-call rows (3)")  # fmt: skip
    p.add_argument("--iwae-train-size", type=int, default=10000,
                   help="training images for the IWAE and M2 rows (default 10000 of 50000)")  # fmt: skip
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                   help="all: the CPU, and the GPU when one is present (default)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="seconds, on the 8x8 digits (the tests' check of every section)",
    )
    p.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available here; use --device cpu")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    lines: list[str] = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    started, load_before = time.perf_counter(), os.getloadavg()
    results = [measure(d, args, log) for d in devices]
    minutes, load_after = (time.perf_counter() - started) / 60, os.getloadavg()
    rep = results[0]["repeats"]
    sz = plan(args)
    data = "MNIST" if sz["dataset"] == "mnist" else sz["dataset"]
    hidden = ", ".join(map(str, sz["hidden"]))
    text = [
        "# Benchmarks",
        "",
        f"Written by `python -m benchmarks` on {datetime.date.today()} in {minutes:.0f} minutes "
        f"(torch {torch.__version__}). MLP CVAE, hidden {hidden}, latent {sz['latent']}, batch 128, "
        f"{data} (dynamic binarisation). Pyro and the hand-written PyTorch loop "
        "(`benchmarks/plain.py`, fused "
        f"Adam) alternate epochs in one process; medians of {rep} timed epochs after one "
        "warm-up (pyro_cvae's epochs by `fit`'s own per-epoch clock, which leaves out the "
        "one-off setup of a `fit` call).",
        "",
        f"Load average (1, 5, 15 minutes) of this machine ({os.cpu_count()} cores) when the run "
        f"started: {', '.join(f'{v:.2f}' for v in load_before)}; when its last timing ended: "
        f"{', '.join(f'{v:.2f}' for v in load_after)} (above the number of cores, other work "
        "shared the CPU and the absolute times and matmul shares are low; the alternating "
        "ratios are the fairer figures).",
        "",
    ]
    if "cuda" not in devices:
        text += ["No CUDA GPU was present in this run: CPU figures only.", ""]
    for m in results:
        text += section(m)
    # the streamed image folder (benchmarks/streaming.py): its own subprocesses, CPU only
    stream_sizes = (40, 80) if args.tiny else (400, 4000) if args.quick else streaming.SIZES
    text += streaming.section(streaming.measure(stream_sizes, log=log, subprocesses=not args.tiny))
    text += ["Raw log:", "", "```", *lines, "```", ""]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
