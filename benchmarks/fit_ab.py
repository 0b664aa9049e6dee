"""One ``pc.fit`` call timed in this checkout and in another, alternating, in one run.

For a change that should not move speed (a refactor): ``git worktree add /tmp/base REV`` and
``python -m benchmarks.fit_ab --other /tmp/base``. Each round trains the same model on the same
data in a fresh subprocess of each checkout (one thread, the same seed), the order alternating
between rounds, after one untimed fit call in the process; the first round is a warm-up. Prints the median seconds of each side and their
ratio (this checkout / the other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

#: the timed job: the demo-sized CVAE on digits (ELBO) and IWAE with K = 5, as ``pc.fit`` runs them
JOB = """
import time, pyro, torch, pyro_cvae as pc
torch.set_num_threads(1)
data = pc.load_dataset("digits")
pc.fit(pc.CVAE(pc.ModelConfig.for_data(data)), data, epochs=1, progress=False)  # first-call costs
out = []
for objective, k in (("elbo", 1), ("iwae", 5)):
    pyro.set_rng_seed(0)
    model = pc.CVAE(pc.ModelConfig.for_data(data))
    t = time.perf_counter()
    pc.fit(model, data, epochs={epochs}, batch_size=64, objective=objective, particles=k,
           progress=False, validate_every=0)
    out.append(time.perf_counter() - t)
print(*out)
"""


def _run(root: Path, epochs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "PYRO_CVAE_VALIDATE": "0"}  # fmt: skip
    p = subprocess.run([sys.executable, "-c", JOB.format(epochs=epochs)], cwd=root, env=env,
                       capture_output=True, text=True, check=True)  # fmt: skip
    return [float(v) for v in p.stdout.split()]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", required=True, help="the other checkout's root folder")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per side (5)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of each fit call (10)")
    args = ap.parse_args(argv)
    other = Path(args.other).resolve()
    if not (other / "pyro_cvae" / "__init__.py").is_file():
        ap.error(f"--other {other} is not a pyro_cvae checkout (no pyro_cvae/__init__.py)")
    times: dict[str, list[list[float]]] = {"this": [], "other": []}
    for r in range(args.rounds + 1):
        order = (
            (("this", HERE), ("other", other)) if r % 2 == 0 else (("other", other), ("this", HERE))
        )
        for name, root in order:
            t = _run(root, args.epochs)
            if r:  # round 0 warms the caches
                times[name].append(t)
    result = {}
    for i, what in enumerate(("elbo", "iwae K=5")):
        a = statistics.median(t[i] for t in times["this"])
        b = statistics.median(t[i] for t in times["other"])
        result[what] = (a, b, a / b)
        print(
            f"{what:9s}: this {a:.2f} s, other {b:.2f} s, ratio {a / b:.3f} "
            f"(median of {args.rounds} fit calls of {args.epochs} epochs, one thread)"
        )
    return result


if __name__ == "__main__":
    main()
