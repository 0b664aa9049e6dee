r"""Table 1 of the IWAE paper (one stochastic layer, MNIST): VAE versus IWAE with k = 1, 5, 50.

Each row trains the one-layer model 784-200-200-50 (``ModelConfig(hidden_dims=(200, 200),
latent_dim=50)``, no label) on dynamically binarized MNIST with one objective:

* ``VAE  k``: the ELBO estimated with k samples per image (``objective="elbo"``, K = k);
* ``IWAE k``: the importance-weighted bound with k samples (``objective="iwae"``, K = k).

After every epoch the row's own training bound is measured on the evaluation images of the test
split (the curve of the figure). At the end, the test negative log-likelihood is estimated with
k = 5000 importance samples (:func:`pyro_cvae.log_likelihood`) and the active units (latent
dimensions with :math:`\mathrm{Cov}_x(E_q[z_i]) > 0.01`) are counted on the whole test split.

Differences from the paper, all written into the results table: our networks use ReLU by default
(``--activation tanh`` as the paper), batches of 100 (paper: 20), Adam with eps=1e-8 by default
(``--adam-eps 1e-4`` as the paper), fewer epochs (paper:
3280 epochs in 8 stages of decreasing learning rate), and the NLL on a stated subset of the test
images.

Every row is one run folder of :func:`pyro_cvae.fit` trained an epoch at a time with
``resume=True``: stop the script at any moment and start it again with the same arguments to
continue; finished rows are not retrained, and the results are rewritten after each row.

Usage::

    python experiments/iwae_vs_elbo.py --epochs 5 --eval-images 1000
    python experiments/iwae_vs_elbo.py --tiny        # seconds, on digits (smoke test)

References:
    [1] Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016, Table 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import pyro_cvae
from pyro_cvae.cli.types import int_list
from pyro_cvae.evaluate import active_units, log_likelihood, log_weights

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/_common.py, whether run as a script or loaded by path
from _common import RowFile, markdown_table, nll_summary, row_status, run_row  # noqa: E402
from _common import write_results as write_files  # noqa: E402

#: Burda et al. (2016), Table 1, MNIST, one stochastic layer: (test NLL in nats, active units),
#: as quoted in issue 3 (not re-checked against the paper offline)
PAPER = {
    ("vae", 1): (86.76, 19),
    ("vae", 5): (86.47, 19),
    ("vae", 50): (86.35, 20),
    ("iwae", 1): (86.76, 19),
    ("iwae", 5): (85.54, 22),
    ("iwae", 50): (84.78, 25),
}
#: the same table, two stochastic layers (100 and 50 units): test NLL only. Recalled from the
#: paper, not re-checked offline; active units are not quoted.
PAPER_2LAYER = {
    ("vae", 1): (85.33, "-"),
    ("vae", 5): (85.01, "-"),
    ("vae", 50): (84.78, "-"),
    ("iwae", 1): (85.33, "-"),
    ("iwae", 5): (83.89, "-"),
    ("iwae", 50): (82.90, "-"),
}

ACT_NAMES = {"relu": "ReLU", "tanh": "tanh"}

#: the columns of iwae_vs_elbo.csv: one line per row and epoch
CURVE_COLUMNS = ["method", "k", "epoch", "test_bound", "val_elbo", "train_loss", "seconds"]

#: row method -> objective name of :mod:`pyro_cvae.infer.objectives`
OBJECTIVE = {"vae": "elbo", "iwae": "iwae"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="VAE versus IWAE with k = 1, 5, 50 on MNIST (Table 1 of Burda et al., 2016).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs per row (default 5; 1 with --tiny)",
    )
    p.add_argument(
        "--ks",
        type=int_list,
        default="1,5,50",
        help="comma-separated numbers of samples k, one row per method",
    )
    p.add_argument(
        "--methods", default="vae,iwae", help="comma-separated methods: vae (ELBO), iwae"
    )
    p.add_argument("--dataset", default="mnist", help="data set name (see pyro_cvae.load_dataset)")
    p.add_argument("--batch-size", type=int, default=100, help="training mini-batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--adam-eps", type=float, default=1e-8, help="Adam epsilon (paper: 1e-4)")
    p.add_argument(
        "--activation", default="relu", choices=["relu", "tanh"],
        help="hidden-layer activation (paper: tanh)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of training and evaluation")
    p.add_argument(
        "--hidden", type=int_list, default="200,200", help="hidden layer widths of encoder/decoder"
    )
    p.add_argument("--latent-dim", type=int, default=50, help="latent dimensions")
    p.add_argument(
        "--latent-dims",
        type=int_list,
        default=(),
        help="two or more stochastic layers, e.g. 100,50 (the paper's two-layer rows, with "
        "--hidden 100,100); results then go to iwae_vs_elbo_2layer.*",
    )
    p.add_argument(
        "--eval-images",
        type=int,
        default=1000,
        help="first N test images used for the k=5000 NLL and the per-epoch curve (0: all)",
    )
    p.add_argument(
        "--eval-samples", type=int, default=5000, help="importance samples k of the test NLL"
    )
    p.add_argument(
        "--runs-dir",
        default=str(HERE / "runs" / "iwae_vs_elbo"),
        help="folder of the per-row run folders (checkpoints; resumable)",
    )
    p.add_argument(
        "--results-dir",
        default=str(HERE / "results"),
        help="folder for iwae_vs_elbo.md, .json, .csv and .png",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="smoke-test budget: digits, a 300-image subset, one epoch, tiny nets, NLL with k=50 "
        "on 50 images",
    )
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument(
        "--render-only", action="store_true",
        help="train nothing: write the results from the rows already finished in --runs-dir "
        "(the others are listed as not finished)",
    )  # fmt: skip
    return p


def _settings(args) -> dict:
    """The experiment's budget and architecture as a plain dict (written beside the results)."""
    s = {
        "dataset": args.dataset,
        "epochs": args.epochs if args.epochs is not None else (1 if args.tiny else 5),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "adam_eps": args.adam_eps,
        "activation": args.activation,
        "seed": args.seed,
        "hidden_dims": list(args.hidden),
        "latent_dim": args.latent_dim,
        "latent_dims": list(args.latent_dims),
        "eval_images": args.eval_images,
        "eval_samples": args.eval_samples,
        "ks": list(args.ks),
        "methods": [m.strip() for m in args.methods.split(",") if m.strip()],
        "train_subset": None,
        "tiny": bool(args.tiny),
    }
    if args.tiny:
        s.update(
            dataset="digits", hidden_dims=[32], latent_dim=8, eval_images=50,
            eval_samples=50, train_subset=300,
        )  # fmt: skip
    for m in s["methods"]:
        if m not in OBJECTIVE:
            raise SystemExit(f"unknown method {m!r} in --methods; choose from vae, iwae")
    for name in ("epochs", "batch_size", "eval_samples", "latent_dim"):
        if s[name] < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {s[name]}")
    if s["eval_images"] < 0:
        raise SystemExit(f"--eval-images must be >= 0 (0: all), got {s['eval_images']}")
    return s


def _load_data(s: dict):
    data = pyro_cvae.load_dataset(s["dataset"], binarize="dynamic")
    if s["train_subset"]:
        data = data.subset(s["train_subset"], 100)
    test = data.eval_split("test")  # one fixed, seeded binarisation of the test images
    n = len(test) if not s["eval_images"] else min(s["eval_images"], len(test))
    return data, test, test.x[:n]


@torch.no_grad()
def _bound(model, x: torch.Tensor, method: str, k: int, batch: int = 100) -> float:
    """The row's training bound per image on ``x`` (ELBO averaged over k draws, or IWAE_k)."""
    total = 0.0
    for i in range(0, x.shape[0], batch):
        lw = log_weights(model, x[i : i + batch], None, k)  # (k, B)
        b = lw.mean(0) if method == "vae" else torch.logsumexp(lw, 0) - math.log(k)
        total += b.sum().item()
    return total / x.shape[0]


def _row_settings(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("ks", "methods")}


def _cache(method: str, k: int, s: dict, runs_dir: Path) -> RowFile:
    """The row's ``final.json``: reused when its settings match (which other rows this call
    runs does not matter)."""
    spec = {"method": method, "k": k, **s}
    return RowFile(runs_dir / f"{method}_k{k}" / "final.json", spec, settings_key="spec",
                   same=lambda a, b: _row_settings(a) == _row_settings(json.loads(json.dumps(b))))  # fmt: skip


def _finished_row(method: str, k: int, s: dict, runs_dir: Path) -> dict | None:
    """The result of a row finished with the same settings, else None."""
    return _cache(method, k, s, runs_dir).read()


def train_row(method: str, k: int, s: dict, data, test, x_eval, runs_dir: Path, progress: bool):
    """Train (or resume) one row epoch by epoch, then evaluate it; returns its result dict."""
    out = runs_dir / f"{method}_k{k}"
    out.mkdir(parents=True, exist_ok=True)
    spec = {"method": method, "k": k, **s}
    curve_path = out / "curve.json"
    curve = json.loads(curve_path.read_text()) if curve_path.exists() else []
    dims = tuple(s.get("latent_dims") or ())
    mcfg = pyro_cvae.ModelConfig(
        image_shape=tuple(data.image_shape), num_classes=0,
        latent_dim=dims[0] if dims else s["latent_dim"], latent_dims=dims,
        hidden_dims=tuple(s["hidden_dims"]), activation=s.get("activation", "relu"),
    )  # fmt: skip
    tcfg = pyro_cvae.TrainConfig(
        epochs=1, batch_size=s["batch_size"], lr=s["lr"], objective=OBJECTIVE[method],
        particles=k, seed=s["seed"], adam_eps=s.get("adam_eps", 1e-8),
    )  # fmt: skip
    torch.manual_seed(s["seed"])
    model = pyro_cvae.build_model(mcfg)

    def train(epochs: int):
        return pyro_cvae.fit(
            model, data, tcfg.replace(epochs=epochs), out=out, resume=True, progress=progress
        )

    def record_epoch(history) -> None:  # the curve: the row's own bound after every epoch
        epoch = len(history)
        if len(curve) < epoch:
            model.eval()
            with torch.random.fork_rng():
                torch.manual_seed(s["seed"] + epoch)
                b = _bound(model, x_eval, method, k)
            row = history.rows[epoch - 1]
            curve.append(
                {"epoch": epoch, "test_bound": b, "val_elbo": row.get("val_elbo"),
                 "train_loss": row["train_loss"], "seconds": row["seconds"]}
            )  # fmt: skip
            curve_path.write_text(json.dumps(curve, indent=2))
            print(
                f"  {method} k={k} epoch {epoch}: test bound {b:.2f} nats ({row['seconds']:.0f}s)",
                flush=True,
            )

    def evaluate(history) -> dict:
        model.eval()
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(s["seed"])
            ll = log_likelihood(model, x_eval, None, s["eval_samples"], progress=progress)
            n_active, variances = active_units(model, test.x)
            elbo = _bound(model, x_eval, "vae", 1)
        return {
            "method": method,
            "k": k,
            "objective": OBJECTIVE[method],
            **nll_summary(ll),
            "test_elbo": elbo,
            "test_bound": curve[-1]["test_bound"],
            "active_units": n_active,
            "latent_dim": s["latent_dim"],
            "train_seconds": sum(r.get("seconds", 0.0) for r in curve),
            "eval_seconds": time.perf_counter() - t0,
            "curve": curve,
            "spec": spec,
        }

    return run_row(out, s["epochs"], train, evaluate, _cache(method, k, s, runs_dir),
                   epochs_per_call=1, restore_first=True, on_call=record_epoch)  # fmt: skip


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        c = r["curve"]
        style = "-" if r["method"] == "iwae" else "--"
        ax.plot(
            [p["epoch"] for p in c], [p["test_bound"] for p in c], style, marker="o",
            label=f"{r['method'].upper()} k={r['k']}",
        )  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("test bound (nats/image; the row's own k)")
    ax.set_title("Training bound on test images (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _orderings(results: list[dict]) -> list[str]:
    """The paper's qualitative claims, checked on our numbers (only for rows that finished)."""
    by = {(r["method"], r["k"]): r for r in results}
    out = ["## The paper's ordering, on our numbers", ""]
    need = [("iwae", 50), ("iwae", 5), ("vae", 1)]
    if all(key in by for key in need):
        nll = [by[key]["nll"] for key in need]
        held = nll[0] < nll[1] < nll[2]
        out.append(
            f"- NLL, IWAE k=50 < IWAE k=5 < VAE k=1: {nll[0]:.2f} / {nll[1]:.2f} / "
            f"{nll[2]:.2f}: **{'yes' if held else 'no'}**"
        )
    for k in sorted({r["k"] for r in results}):
        if ("iwae", k) in by and ("vae", k) in by:
            i, v = by[("iwae", k)], by[("vae", k)]
            if k == 1:
                verdict = "the same objective: equal by construction"
            else:
                better = i["nll"] < v["nll"] - 0.1
                more = i["active_units"] > v["active_units"]
                verdict = (
                    f"IWAE better NLL (by > 0.1 nat): **{'yes' if better else 'no'}**; "
                    f"IWAE more active units: **{'yes' if more else 'no'}**"
                )
            out.append(
                f"- k={k}: NLL IWAE {i['nll']:.2f} vs VAE {v['nll']:.2f}; active units IWAE "
                f"{i['active_units']} vs VAE {v['active_units']}: {verdict}"
            )
    if len(out) == 2:
        out.append("- not enough finished rows to compare")
    return out


def write_results(
    results: list[dict], s: dict, results_dir: Path, pending: list[dict], command: str = ""
) -> None:
    """Write iwae_vs_elbo.md (table), .json (raw), .csv (per-epoch curves), .png (curves)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    name = "iwae_vs_elbo_2layer" if s.get("latent_dims") else "iwae_vs_elbo"
    stem = results_dir / name
    paper = PAPER_2LAYER if s.get("latent_dims") else PAPER
    raw = {"settings": s, "command": command, "paper": {f"{m}_k{k}": v for (m, k), v in paper.items()},
           "rows": results, "pending_rows": pending}  # fmt: skip
    curves = [[r["method"], r["k"], p["epoch"], p["test_bound"], p["val_elbo"], p["train_loss"],
               p["seconds"]] for r in results for p in r["curve"]]  # fmt: skip
    if results:
        _plot(results, stem.with_suffix(".png"))
    n_eval = s["eval_images"] or "all"
    layers = (
        f"{len(s['latent_dims'])} stochastic layers ({', '.join(map(str, s['latent_dims']))})"
        if s.get("latent_dims") else "one stochastic layer"
    )  # fmt: skip
    latent = ",".join(map(str, s["latent_dims"])) if s.get("latent_dims") else s["latent_dim"]
    lines = [
        f"# VAE versus IWAE (Burda et al. 2016, Table 1, {layers})",
        "",
        "Written by `experiments/iwae_vs_elbo.py`"
        + (" --tiny (smoke test budget, not a result)" if s["tiny"] else "")
        + ".",
        "",
        "## Budget and settings",
        "",
        f"- command: `{command}` (resumable: the same command continues an interrupted run)",
        f"- data: {s['dataset']}, dynamically binarized training images"
        + (f" (first {s['train_subset']} only)" if s["train_subset"] else "")
        + "; test images binarized once with a fixed seed",
        f"- model: {'-'.join(map(str, s['hidden_dims']))} hidden, {latent} latent "
        f"dims, Bernoulli likelihood, **{ACT_NAMES[s.get('activation', 'relu')]}** (the paper uses "
        "tanh)",
        f"- training: **{s['epochs']} epochs per row**, batch {s['batch_size']}, Adam "
        f"lr={s['lr']} (eps {s.get('adam_eps', 1e-8):g}), seed {s['seed']}. The paper trains 3280 epochs "
        "(batch 20, Adam eps 1e-4, lr decayed over 8 stages)",
        f"- test NLL: importance sampling with k={s['eval_samples']} on the first {n_eval} "
        "test images (paper: k=5000 on all 10,000); active units on all test images",
        "",
        "## Results (nats; lower NLL is better)",
        "",
    ]
    table = []
    for r in results:
        p_nll, p_au = paper.get((r["method"], r["k"]), (float("nan"), "-"))
        table.append([
            r["method"].upper(), r["k"], f"{r['nll']:.2f}", f"{r['nll_stderr']:.2f}", f"{p_nll:.2f}",
            f"{r['active_units']}/{(s.get('latent_dims') or [r['latent_dim']])[0]}", p_au,
            f"{r['test_elbo']:.2f}", f"{r['test_bound']:.2f}", f"{r['train_seconds']:.0f}",
        ])  # fmt: skip
    for row in pending:
        table.append([row["row"], "", f"not finished ({row['status']})", *[""] * 7])
    lines += markdown_table(
        ["method", "k", "our NLL", "± s.e.", "paper NLL", "our active units", "paper active units",
         "our test ELBO", "our test bound (training k)", "train time (s)"], table,
    )  # fmt: skip
    lines += [
        "",
        f"Every row with numbers is final (trained its {s['epochs']} epochs, then evaluated). "
        + (
            f"Not final: {len(pending)} row(s), marked 'not finished' above."
            if pending
            else "No row is still to do."
        ),
    ]
    lines += ["", *_orderings(results)]
    lines += [
        "",
        f"The paper's numbers (Burda et al. 2016, Table 1, MNIST, {layers}, "
        "dynamically binarized) are as quoted in issue 3 of this project (one layer) or "
        "recalled from the paper (two layers); the stored copies of the paper reachable offline "
        "did not show the table, so they were not re-checked against it. Active units of a "
        "hierarchical model count the bottom layer z1. The standard error is over test images (the images differ more than the "
        "estimates do); all rows use the same images, so differences between rows are better "
        "resolved than the error suggests. VAE k and IWAE k at k=1 are the same objective "
        "(Trace_ELBO and the IWAE bound with one sample): with the same seed they give the "
        "same numbers, a check of the implementation.",
        "",
        f"![test bound per epoch]({name}.png)",
        "",
        f"Raw numbers: `{name}.json` (per row, with settings), per-epoch curves: `{name}.csv`.",
        "",
    ]
    write_files(stem, raw, lines, CURVE_COLUMNS, curves)


def _table(rows: list[tuple[str, int]], s: dict, runs_dir: Path) -> tuple[list[dict], list[str]]:
    """Every finished row of the results table and the rows still to finish.

    The table is the whole grid (VAE and IWAE at k = 1, 5, 50, and any row asked for), not only
    this call's rows, so a queue that runs the rows in several calls never drops a finished one.
    Still to finish: the rows asked for, and rows of the grid whose run folder was started.
    """
    grid = sorted(set(rows) | {(m, k) for m in ("vae", "iwae") for k in (1, 5, 50)},
                  key=lambda r: (r[1], r[0]))  # fmt: skip
    table, pending = [], []
    for m, k in grid:
        done = _finished_row(m, k, s, runs_dir)
        if done is not None:
            table.append(done)
        elif (m, k) in rows or (runs_dir / f"{m}_k{k}").is_dir():
            status = row_status(runs_dir / f"{m}_k{k}", s["epochs"])
            pending.append({"row": f"{m.upper()} k={k}", "status": status})
    return table, pending


def main(argv: list[str] | None = None) -> list[dict]:
    """Run (or resume) every row and write the results; returns the rows' result dicts."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    s = _settings(args)
    # the command that trains (or continues) the table's rows; --render-only only redraws it
    command = " ".join(
        ["python experiments/iwae_vs_elbo.py", *(a for a in argv if a != "--render-only")]
    )
    torch.set_num_threads(1)
    data, test, x_eval = _load_data(s)
    runs_dir, results_dir = Path(args.runs_dir), Path(args.results_dir)
    rows = [(m, k) for m in s["methods"] for k in s["ks"]]
    rows.sort(key=lambda r: (r[1], r[0]))  # cheap rows first: K sets the cost
    results: list[dict] = []
    if args.render_only:
        table, pending = _table(rows, s, runs_dir)
        write_results(table, s, results_dir, pending, command)
        return table
    for m, k in rows:
        print(f"row {m} k={k}", flush=True)
        results.append(train_row(m, k, s, data, test, x_eval, runs_dir, args.progress))
        table, pending = _table(rows, s, runs_dir)
        write_results(table, s, results_dir, pending, command)
        r = results[-1]
        print(f"  NLL {r['nll']:.2f}, active units {r['active_units']}", flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
