"""One training epoch of the Pyro CVAE against the hand-written PyTorch loop, side by side.

Usage: python -m benchmarks.train_speed [--dataset mnist] [--repeats 3] [--objectives elbo,iwae5]
Prints seconds per epoch for each and their ratio (Pyro / plain), measured alternately in one run.
The Pyro epoch is timed by ``fit``'s own per-epoch clock (the loop over batches), so the one-off
setup of a ``fit`` call (data checks, optimizer) is not counted against it.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import pyro_cvae as pc
from benchmarks.common import parser, sync
from benchmarks.plain import PlainCVAE, plain_epoch


def _objective(name: str) -> tuple[str, int]:
    if name == "elbo":
        return "elbo", 1
    if name.startswith("iwae"):
        return "iwae", int(name[4:])
    raise ValueError(f"unknown benchmark objective {name!r}: use elbo or iwaeK, e.g. iwae5")


def run(dataset="mnist", repeats=3, objectives=("elbo",), hidden=(400,), latent=50,
        batch_size=128, train_size=None, device="cpu", log=print) -> list[dict]:  # fmt: skip
    data = pc.load_dataset(dataset, binarize="dynamic")
    if train_size:
        data = data.subset(train_size)
    data = data.to(device)  # both sides read their batches from the device
    x, y = data.train.x, data.train.y
    rows = []
    for name in objectives:
        objective, k = _objective(name)
        torch.manual_seed(0)
        model = pc.CVAE(image_shape=data.image_shape, num_classes=data.num_classes,
                        latent_dim=latent, hidden_dims=hidden)  # fmt: skip
        plain = PlainCVAE(x[0].numel(), data.num_classes, hidden, latent).to(device)
        plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
        plain_k = 0 if objective == "elbo" else k
        with FlopCounterMode(display=False) as counter:  # one batch: matmul FLOPs, fwd + bwd
            plain_epoch(plain, plain_opt, x[:batch_size], y[:batch_size], batch_size, k=plain_k)
        flops = counter.get_total_flops() / batch_size * x.shape[0]  # per epoch
        times = {"pyro": [], "plain": []}
        for r in range(repeats + 1):  # the first round warms up and is not counted
            sync(device)
            t0 = time.perf_counter()
            plain_epoch(plain, plain_opt, x, y, batch_size, k=plain_k, seed=r)
            sync(device)
            t1 = time.perf_counter()
            history = pc.fit(model, data, epochs=1, batch_size=batch_size, objective=objective,
                             particles=k, seed=r, validate_every=0, progress=False,
                             device=torch.device(device).type)  # fmt: skip
            if r:  # fit's own clock: the epoch loop, without fit's one-off setup and checks
                times["plain"].append(t1 - t0)
                times["pyro"].append(history.last["seconds"])
        row = {
            "objective": name,
            "plain_s": statistics.median(times["plain"]),
            "pyro_s": statistics.median(times["pyro"]),
        }
        row["ratio"] = row["pyro_s"] / row["plain_s"]
        row["plain_gflops"] = flops / row["plain_s"] / 1e9
        row["pyro_gflops"] = flops / row["pyro_s"] / 1e9
        rows.append(row)
        where = torch.device(device).type
        log(f"{dataset} {where} {name:>7}: plain {row['plain_s']:.2f}s  pyro_cvae "
            f"{row['pyro_s']:.2f}s  ratio {row['ratio']:.3f}  ({row['plain_gflops']:.0f} / "
            f"{row['pyro_gflops']:.0f} GFLOP/s)")  # fmt: skip
    return rows


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per side (3)")
    p.add_argument("--objectives", default="elbo", help="comma list: elbo, iwae5, iwae50 (elbo)")
    p.add_argument("--train-size", type=int, default=None, help="use only N training images")
    args = p.parse_args(argv)
    run(args.dataset, args.repeats, tuple(args.objectives.split(",")), train_size=args.train_size,
        device=args.device)  # fmt: skip


if __name__ == "__main__":
    main()
