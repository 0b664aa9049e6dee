"""Requests beyond the training range (issue 26): how far does a trained molecule CVAE follow a
property it never saw that high or that low?

Lim et al. 2018 (CVAE on ZINC) say a conditional model can make molecules whose properties lie
outside the range of its training set. This script measures it on a run of
``experiments/molecules.py`` (by default the 100,000-molecule condition-dropout model, sampled
with and without classifier-free guidance), for logP, MW and TPSA. QED is left out: it is
bounded by 1 and MOSES's training molecules reach within a few hundredths of it.

For each property the targets are the training median and the 99th percentile (inside the
range, for reference), the training minimum and maximum (the edges of the schema the model
was trained with), and the edges moved outwards by 1 and 2 training standard deviations
(``pyro_cvae`` refuses those unless asked with ``extrapolate=True``, as here; below the
minimum that can ask for what no molecule has, a negative TPSA: such a request is met by the
lowest TPSA there is, 0, below the training minimum). Every other
property is set to its median among the 5% of training molecules nearest the target in that
property (beyond the range: the molecules at the edge). ``--per-target`` molecules per target;
measured over the valid ones: the mean achieved value and, the claim itself, the share of
*requests* (valid or not) met by a molecule beyond the training range in the asked direction,
and the most extreme value reached.

    python experiments/molecules_beyond.py             # the committed 100k model (minutes)
    python experiments/molecules_beyond.py --tiny      # smoke test (trains a tiny model)

Writes ``beyond.json``, ``beyond.md`` and ``beyond.png`` into ``--results-dir``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pyro
import torch

import pyro_cvae as pc
from pyro_cvae.checkpoint import trained_epochs
from pyro_cvae.evaluate.molecules import generate_molecules
from pyro_cvae.models import MoleculeConfig, MoleculeCVAE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/molecules.py, whether run as a script or loaded by path
from molecules import _conditional_medians  # noqa: E402  (the requests of its control (b))

RUN = HERE / "runs" / "molecules" / "cvae-cond-cd20-n100000-seed0"
RESULTS = HERE / "results" / "molecules_100k"
PROPERTIES = ("logp", "mw", "tpsa")
#: target name -> (side, training standard deviations beyond the edge); None: inside
LADDER = {"median": (None, 0), "p99": (None, 0), "min": ("low", 0), "max": ("high", 0),
          "min - 1 sd": ("low", 1), "max + 1 sd": ("high", 1),
          "min - 2 sd": ("low", 2), "max + 2 sd": ("high", 2)}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=str(RUN),
                   help="a run folder of experiments/molecules.py (default: the 100,000-molecule "
                        "condition-dropout model)")  # fmt: skip
    p.add_argument("--train-size", type=int, default=100000,
                   help="the MOSES molecules the run was trained on (100000): its schema and "
                        "the training range")  # fmt: skip
    p.add_argument("--guidance", default="0,3",
                   help="classifier-free guidance values, comma-separated (0,3; a run trained "
                        "without condition dropout takes 0 only)")  # fmt: skip
    p.add_argument("--per-target", type=int, default=200, help="molecules per target (200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--results-dir", default=str(RESULTS), help="where results are written")
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: train a tiny model on 300 molecules and ask it (seconds)")  # fmt: skip
    return p


def targets(values: np.ndarray) -> dict[str, float]:
    """The ladder of one property's targets from its training values (NaNs ignored)."""
    lo, hi, sd = np.nanmin(values), np.nanmax(values), np.nanstd(values)
    edge = {"low": lo, "high": hi}
    out = {"median": float(np.nanmedian(values)), "p99": float(np.nanpercentile(values, 99))}
    for name, (side, k) in LADDER.items():
        if side is not None:
            out[name] = float(edge[side] + (k * sd if side == "high" else -k * sd))
    return {name: round(out[name], 3) for name in LADDER}


def measure(rows: list[dict], prop: str, side: str | None, lo: float, hi: float) -> dict:
    """Validity, mean achieved, the share of requests met beyond the range on ``side`` (both
    sides for a target inside it) and the most extreme value reached, of one target's rows."""
    got = np.array([r[prop] for r in rows if r["valid"]])
    high, low = got > hi, got < lo
    beyond = {"high": high, "low": low, None: high | low}[side]
    extreme = {"high": np.max, "low": np.min, None: np.median}[side]
    return {"valid": len(got) / len(rows),
            "achieved_mean": float(np.mean(got)) if len(got) else None,
            "beyond_share": float(beyond.sum() / len(rows)),
            "extreme": float(extreme(got)) if len(got) else None}  # fmt: skip


def _tiny_run(folder: Path, data) -> Path:
    run = folder / "runs" / "tiny-cd20"
    cfg = MoleculeConfig.for_data(data, latent_dim=4, hidden_dim=16, prior="conditional",
                                  condition_dropout=0.2)  # fmt: skip
    pc.fit(MoleculeCVAE(cfg), data, epochs=1, batch_size=64, seed=0, out=run, resume=True,
           progress=False)  # fmt: skip
    return run


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    given = sys.argv[1:] if argv is None else list(argv)
    folder = Path(args.results_dir)
    if args.tiny:
        args.train_size, args.per_target = 300, 5
    data = pc.load_dataset("moses", train_size=args.train_size)
    run = _tiny_run(folder, data) if args.tiny else Path(args.run)
    if not run.is_dir():
        raise SystemExit(f"--run {run}: no such run folder; train it with "
                         "experiments/molecules.py first (make experiments)")  # fmt: skip
    model = pc.load(run)
    if model.config.condition_dim != data.schema.width:
        raise SystemExit(f"--run {run} was trained on {model.config.condition_dim} properties, "
                         f"the data of --train-size {args.train_size} has {data.schema.width}: "
                         "give the --train-size the run was trained with")  # fmt: skip
    guidance = [float(w) for w in args.guidance.split(",") if w.strip()]
    if any(guidance) and not model.config.condition_dropout:
        raise SystemExit(f"--guidance {args.guidance}: {run} was trained without condition "
                         "dropout, so it knows no p(x | z) to guide against; pass --guidance 0")  # fmt: skip
    names = data.schema.names
    values = np.array([[v[n] for n in names] for v in data.schema.decode(data.train.y)])
    out = {"command": "python experiments/molecules_beyond.py " + shlex.join(given),
           "run": str(run.relative_to(HERE.parent)) if run.is_relative_to(HERE.parent) else str(run),
           "epochs": trained_epochs(run),
           "budget": {"train_size": args.train_size, "per_target": args.per_target,
                      "seed": args.seed, "threads": args.threads},
           "ranges": {}, "rows": []}  # fmt: skip
    for prop in PROPERTIES:
        col = values[:, names.index(prop)]
        lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
        ladder = targets(col)
        out["ranges"][prop] = {"min": lo, "max": hi, "sd": float(np.nanstd(col)),
                               "targets": ladder}  # fmt: skip
        asked = [_conditional_medians(values, names, prop, v) for v in ladder.values()]
        for w in guidance:
            pyro.set_rng_seed(args.seed)
            with model.guided(w):
                rows = generate_molecules(model, data.schema, asked, args.per_target,
                                          extrapolate=True)  # fmt: skip
            for m, (name, v) in enumerate(ladder.items()):
                mine = [r for r in rows if r["condition"] == m]
                side = LADDER[name][0]
                out["rows"].append({"property": prop, "target": name, "requested": v,
                                    "guidance": w, **measure(mine, prop, side, lo, hi)})  # fmt: skip
        print(prop, "done", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tiny" if args.tiny else ""
    out["picture"] = _picture(out, folder / f"beyond{suffix}.png")
    (folder / f"beyond{suffix}.json").write_text(json.dumps(out, indent=2))
    (folder / f"beyond{suffix}.md").write_text(_markdown(out))
    return out


def _picture(out: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(out["ranges"]), figsize=(4.3 * len(out["ranges"]), 4))
    for ax, (prop, rng) in zip(np.atleast_1d(axes), out["ranges"].items()):
        ax.axvspan(rng["min"], rng["max"], color="0.92", label="training range")
        ax.axhspan(rng["min"], rng["max"], color="0.92")
        for k, w in enumerate(sorted({r["guidance"] for r in out["rows"]})):
            mine = sorted((r for r in out["rows"] if r["property"] == prop and r["guidance"] == w
                           and r["achieved_mean"] is not None), key=lambda r: r["requested"])  # fmt: skip
            ax.plot([r["requested"] for r in mine], [r["achieved_mean"] for r in mine], "o-",
                    color=f"C{k}", ms=4, label=f"mean achieved, guidance {w:g}")  # fmt: skip
        t = list(rng["targets"].values())
        ax.plot([min(t), max(t)], [min(t), max(t)], ":", color="k", lw=0.8, label="as asked")
        ax.set(title=prop, xlabel=f"requested {prop}", ylabel=f"achieved {prop}")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("requests inside and beyond the training range (grey)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _markdown(out: dict) -> str:
    b = out["budget"]
    lines = ["# Molecule requests beyond the training range", "",
             f"Written by `experiments/molecules_beyond.py`: `{out['command']}`. Model: "
             f"`{out['run']}` ({out['epochs']} epochs on {b['train_size']} MOSES molecules); "
             f"{b['per_target']} molecules per target, seed {b['seed']}, {b['threads']} thread(s).",
             "", "Training ranges: " + "; ".join(
                 f"{p} [{r['min']:.3g}, {r['max']:.3g}] (sd {r['sd']:.3g})"
                 for p, r in out["ranges"].items()) + ".", "",
             "Other properties at their medians among the 5% of training molecules nearest the "
             "target. *beyond*: the share of requests met by a valid molecule beyond the "
             "training range in the asked direction (for the median and 99th-percentile "
             "targets: beyond it on either side, the chance rate); *extreme*: the highest "
             "(lowest, for a low target; the median for a target inside) value reached.", "",
             "| property | target | requested | guidance | valid | mean achieved | beyond | "
             "extreme |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in out["rows"]:
        lines.append(f"| {r['property']} | {r['target']} | {r['requested']:.3g} | "
                     f"{r['guidance']:g} | {fmt(r['valid'])} | {fmt(r['achieved_mean'])} | "
                     f"{fmt(r['beyond_share'])} | {fmt(r['extreme'])} |")  # fmt: skip
    lines += ["", _verdict(out), "", f"![requested and achieved]({out['picture']})"]
    return "\n".join(lines) + "\n"


def _verdict(out: dict) -> str:
    """What the table says, computed: per property, the best share of requests met beyond the
    range at the +-2 sd targets against the chance rate at the median."""
    parts = []
    for prop in out["ranges"]:
        mine = [r for r in out["rows"] if r["property"] == prop]
        chance = max(r["beyond_share"] for r in mine if r["target"] == "median")
        far = [r for r in mine if r["target"] in ("max + 2 sd", "min - 2 sd")]
        best = max(far, key=lambda r: r["beyond_share"])
        parts.append(f"{prop}: {best['beyond_share']:.3f} of the requests at {best['target']} "
                     f"(guidance {best['guidance']:g}) met beyond the range, against "
                     f"{chance:.3f} at the median")  # fmt: skip
    return "Beyond the range, best of each property: " + "; ".join(parts) + "."


if __name__ == "__main__":
    main()
