"""One ``pc.fit`` call against the hand-written loop, set-up included, as a user pays it.

Usage: python -m benchmarks.fit_speed [--rounds 5] [--cases digits,10k-elbo,10k-iwae5,50k-elbo]

Each case trains a fresh model of the same networks for several epochs, once as one
``pc.fit`` call (its checks, the lean path's qualification trace, the optimizer, the family's
set-up and every epoch's shuffling, binarisation and history row; no run folder, no progress
bar, no validation) and once as the hand-written loop of ``benchmarks/plain.py`` (its
optimizer and its epochs). The two alternate in one process, the order swapping every round;
the first round is a warm-up. Building the two models is not timed. Prints the median seconds
of each side and their ratio (pyro_cvae / plain).
"""

from __future__ import annotations

import statistics
import time

import pyro
import torch

import pyro_cvae as pc
from benchmarks.common import parser, sync
from benchmarks.plain import PlainCVAE, plain_epoch

#: name -> data set, training images (None: all), networks, batch size, epochs per call, K
CASES: dict[str, dict] = {
    # the demo's model on the embedded data set: ModelConfig.for_data(digits)
    "digits": {"dataset": "digits", "train_size": None, "hidden": None, "latent": None,
               "batch_size": 64, "epochs": 30, "particles": 1},
    "10k-elbo": {"dataset": "mnist", "train_size": 10000, "hidden": (400,), "latent": 50,
                 "batch_size": 128, "epochs": 4, "particles": 1},
    "10k-iwae5": {"dataset": "mnist", "train_size": 10000, "hidden": (400,), "latent": 50,
                  "batch_size": 128, "epochs": 2, "particles": 5},
    "50k-elbo": {"dataset": "mnist", "train_size": None, "hidden": (400,), "latent": 50,
                 "batch_size": 128, "epochs": 2, "particles": 1},
}  # fmt: skip

#: the issue's target per case: pc.fit at most this many times the hand-written loop
TARGETS = {"digits": 1.10, "10k-elbo": 1.05, "10k-iwae5": 1.05, "50k-elbo": 1.05}


def _models(data, case: dict, device):
    """A fresh CVAE and a PlainCVAE with the same architecture (seeded, not timed)."""
    torch.manual_seed(0)
    # None keeps for_data's default (the demo's model)
    config = pc.ModelConfig.for_data(data, hidden_dims=case["hidden"], latent_dim=case["latent"])
    model = pc.CVAE(config)
    plain = PlainCVAE(data.train.x[0].numel(), data.num_classes, tuple(config.hidden_dims),
                      config.latent_dim).to(device)  # fmt: skip
    return model, plain


def _plain_fit(plain: PlainCVAE, x, y, case: dict, seed: int) -> None:
    """The hand-written loop as a user writes one fit: an optimizer, then the epochs."""
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
    k = 0 if case["particles"] == 1 else case["particles"]
    for epoch in range(case["epochs"]):
        plain_epoch(plain, opt, x, y, case["batch_size"], k=k, seed=seed * 1000 + epoch)


def _pc_fit(model, data, case: dict, seed: int, device) -> None:
    objective = "elbo" if case["particles"] == 1 else "iwae"
    pc.fit(model, data, epochs=case["epochs"], batch_size=case["batch_size"], lr=1e-3,
           objective=objective, particles=case["particles"], seed=seed, validate_every=0,
           progress=False, device=torch.device(device).type)  # fmt: skip


def run(cases=tuple(CASES), rounds: int = 5, device="cpu", log=print,
        sizes: dict | None = None) -> list[dict]:  # fmt: skip
    """One row per case: median seconds of a whole fit call on each side and their ratio.

    ``sizes`` overrides fields of every case (the tests' tiny runs)."""
    rows, loaded = [], {}
    for name in cases:
        case = {**CASES[name], **(sizes or {})}
        key = (case["dataset"], case["train_size"])
        if key not in loaded:
            data = pc.load_dataset(case["dataset"], binarize="dynamic")
            loaded[key] = (data.subset(case["train_size"]) if case["train_size"] else data).to(
                device
            )
        data = loaded[key]
        x, y = data.train.x, data.train.y
        times = {"pyro": [], "plain": []}
        with pyro.validation_enabled(False):
            for r in range(rounds + 1):  # round 0 warms up
                model, plain = _models(data, case, device)
                sides = [("plain", _plain_fit, (plain, x, y, case, r)),
                         ("pyro", _pc_fit, (model, data, case, r, device))]  # fmt: skip
                for side, fn, fn_args in sides if r % 2 else sides[::-1]:
                    sync(device)
                    t0 = time.perf_counter()
                    fn(*fn_args)
                    sync(device)
                    if r:
                        times[side].append(time.perf_counter() - t0)
        row = {"case": name, "images": len(data.train), "epochs": case["epochs"],
               "batch_size": case["batch_size"], "particles": case["particles"],
               "plain_s": statistics.median(times["plain"]),
               "pyro_s": statistics.median(times["pyro"]), "rounds": rounds}  # fmt: skip
        row["ratio"] = row["pyro_s"] / row["plain_s"]
        row["target"] = TARGETS.get(name)
        rows.append(row)
        log(f"fit call {name} ({row['images']} images, {row['epochs']} epochs, batch "
            f"{row['batch_size']}, K={row['particles']}): plain {row['plain_s']:.2f}s  "
            f"pc.fit {row['pyro_s']:.2f}s  ratio {row['ratio']:.3f}")  # fmt: skip
    return rows


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=5, help="timed fit calls per side (5)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    args = p.parse_args(argv)
    cases = tuple(args.cases.split(","))
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    run(cases, args.rounds, device=args.device)


if __name__ == "__main__":
    main()
