"""A streamed image folder against the same folder in memory: images per second of a training
epoch's batches, and peak resident memory, for 4,000 and 40,000 RGB 32x32 PNGs.

``python -m benchmarks.streaming`` generates the folders into a temporary directory, measures each
(folder, mode) pair in a fresh subprocess (one torch thread; peak memory is the child's
``resource.getrusage`` maxrss, so one measurement cannot inherit another's peak) and writes its
section into ``benchmarks/results.md`` (replacing an earlier one); ``python -m benchmarks`` runs it
too. A child loads the data set (``pc.load_dataset(folder)`` or ``stream=True``) and iterates one
epoch of shuffled, dynamically binarised training batches of 128: the data pipeline a ``fit``
epoch reads, without the model's steps (the same in both modes).

Target (issue 30): the streamed folder's peak memory independent of the number of images, at most
+150 MB from 4,000 to 40,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results.md")
HEADING = "## Streamed image folder (`--stream`) against in memory"
SIZES = (4000, 40000)
TARGET_MB = 150
BATCH = 128


def generate(folder: Path, n: int, classes: int = 10, size: int = 32, seed: int = 0) -> Path:
    """``n`` RGB ``size`` x ``size`` PNGs in ``classes`` sub-folders (smooth random images, so the
    PNGs compress as photographs do rather than as noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(classes):
        (folder / f"c{k}").mkdir(parents=True, exist_ok=True)
    base = rng.random((n, 3, 8, 8)).astype(np.float32)
    for i in range(n):
        small = (base[i].transpose(1, 2, 0) * 255).astype(np.uint8)
        img = Image.fromarray(small, "RGB").resize((size, size), Image.BILINEAR)
        img.save(folder / f"c{i % classes}" / f"{i}.png")
    return folder


def child(folder: str, mode: str, workers: int) -> dict:
    """One measurement, in this process (run as a subprocess by :func:`measure`)."""
    import torch

    torch.set_num_threads(1)
    import pyro_cvae as pc

    t0 = time.perf_counter()
    stream = mode == "stream"
    data = pc.load_dataset(folder, stream=stream, workers=workers if stream else 0)
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    seen = 0
    for x, _ in data.batches("train", BATCH, shuffle=True, generator=g):
        seen += x.shape[0]
    epoch_s = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"images": len(data.train), "load_s": load_s, "epoch_s": epoch_s,
            "images_per_s": seen / epoch_s, "peak_mb": peak_kib * 1024 / 1e6}  # fmt: skip


def measure(sizes=SIZES, workers: int = 0, log=print, subprocesses: bool = True) -> list[dict]:
    """Each size in memory and streamed, each in its own subprocess (``subprocesses=False``:
    all in this process, seconds faster, but each peak then includes the earlier ones: for
    the test suite's run through every section only)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            t0 = time.perf_counter()
            folder = generate(Path(tmp) / f"png{n}", n)
            log(f"generated {n} PNGs in {time.perf_counter() - t0:.1f}s")
            for mode in ("memory", "stream"):
                row = {"files": n, "mode": mode, "workers": workers if mode == "stream" else 0}
                if subprocesses:
                    cmd = [sys.executable, "-m", "benchmarks.streaming", "--child", str(folder),
                           mode, "--workers", str(workers)]  # fmt: skip
                    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env,
                                         cwd=Path(__file__).parent.parent)  # fmt: skip
                    row.update(json.loads(out.stdout.strip().splitlines()[-1]))
                else:
                    row.update(child(str(folder), mode, workers))
                log(f"{n} PNGs, {mode}: load {row['load_s']:.1f}s, epoch {row['epoch_s']:.2f}s "
                    f"({row['images_per_s']:.0f} images/s), peak {row['peak_mb']:.0f} MB")  # fmt: skip
                rows.append(row)
    return rows


def targets(rows: list[dict]) -> list[tuple[str, str, bool]]:
    """(target, measured, met?) of the streamed folder's memory."""
    streamed = [r for r in rows if r["mode"] == "stream"]
    small, large = streamed[0], streamed[-1]
    growth = large["peak_mb"] - small["peak_mb"]
    return [(f"streamed peak memory from {small['files']} to {large['files']} PNGs: at most "
             f"+{TARGET_MB} MB", f"{growth:+.0f} MB", growth <= TARGET_MB)]  # fmt: skip


def section(rows: list[dict], wall_s: float | None = None) -> list[str]:
    """The Markdown of the measurements."""
    memory = {r["files"]: r for r in rows if r["mode"] == "memory"}
    out = [
        HEADING,
        "",
        "RGB 32x32 PNGs in 10 class folders; one epoch of shuffled training batches of "
        f"{BATCH} with dynamic binarisation (`data.batches`, what a `fit` epoch reads), one "
        "torch thread; each row a fresh subprocess (`benchmarks/streaming.py`). Load: "
        "`pc.load_dataset` (in memory it decodes every image; streamed it reads the headers "
        "and the split). Peak: the process's maxrss.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {v} | {'yes' if ok else 'no'} |" for t, v, ok in targets(rows)],
        "",
        "| PNGs | mode | workers | load s | epoch s | images/s | x in memory | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["images_per_s"] / memory[r["files"]]["images_per_s"]
        out.append(f"| {r['files']} | {r['mode']} | {r['workers']} | {r['load_s']:.1f} | "
                   f"{r['epoch_s']:.2f} | {r['images_per_s']:.0f} | {ratio:.2f} | "
                   f"{r['peak_mb']:.0f} |")  # fmt: skip
    if wall_s is not None:
        out += ["", f"Wall time of the benchmark: {wall_s:.0f} s."]
    return out + [""]


def write_section(path: Path, lines: list[str]) -> None:
    """Put the section into ``path``: replace an earlier one, else append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if HEADING in text:
        before, rest = text.split(HEADING, 1)
        after = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = before + "\n".join(lines) + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    path.write_text(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=SIZES, help="numbers of PNGs, comma-separated (4000,40000)")  # fmt: skip
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers when streamed (0)")
    p.add_argument("--out", default=str(RESULTS), help="Markdown file to write the section into")
    p.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.workers)))
        return
    t0 = time.perf_counter()
    rows = measure(args.sizes, args.workers)
    write_section(Path(args.out), section(rows, time.perf_counter() - t0))
    print(f"wrote the section into {args.out}")


if __name__ == "__main__":
    main()
