"""Semi-supervised learning beyond M2 (issue 29): M1+M2, ADGM, SDGM and IW-M2 with K > 1.

Rows, all with the same labelled images (class-balanced, seeded) and the same networks:

* **M2**, the reference: Kingma et al. (2014), missing labels enumerated;
* **IW-M2 (K)**: M2 trained with the label-weighted importance-weighted bound of
  :mod:`pyro_cvae.infer.semisupervised` with K draws of z per label (K = 1 is M2's objective
  drawn in another order, so the row needs K > 1 to say anything about importance weighting);
* **M1+M2**: :func:`pyro_cvae.fit_m1m2`, M2 on the latent features of a VAE trained on every
  training image (Kingma et al. 2014: 3.33% test error at 100 MNIST labels);
* **ADGM** and **SDGM**: :class:`pyro_cvae.ADGM` / :class:`pyro_cvae.SDGM`, an auxiliary latent
  (Maaløe et al. 2016: 0.96% and 1.32% at 100 MNIST labels).

Every row trains ``--epochs-per-call`` epochs at a time from its run folder's checkpoint and is
written after each call with its epochs and whether it reached ``--epochs`` (``final``) or is
still training; run the same command again to continue. ``--max-minutes`` stops the experiment
between calls. Writes ``semi_beyond_m2.md``, ``semi_beyond_m2.json`` and
``semi_beyond_m2_error.png`` (test error of the classifier against epoch) into ``--out``.

Usage::

    python experiments/semi_beyond_m2.py --tiny                   # smoke test, seconds
    python experiments/semi_beyond_m2.py --dataset digits --labels 100 --epochs 100 \
        --hidden 64 --latent-dim 4 --aux-dim 4 --m1-latent-dim 8 --lr 3e-3 --class-weight 1000 \
        --epochs-per-call 25 --out experiments/results/semi_beyond_m2_digits
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import pyro
import torch

import pyro_cvae
from pyro_cvae.cli.types import int_list, nonnegative_int_list
from pyro_cvae.data import partial_labels
from pyro_cvae.models import ADGM, M2, SDGM, AuxiliaryConfig, ModelConfig
from pyro_cvae.nn.nets import ACTIVATIONS
from pyro_cvae.train import SemiSupervisedConfig, TrainConfig, fit_m1m2, fit_semisupervised

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/_common.py, whether run as a script or loaded by path
from _common import ResultsRows, markdown_table, run_row  # noqa: E402

METHODS = ("m2", "iw-m2", "m1m2", "adgm", "sdgm")
#: test error (%) on MNIST in the papers, by number of labels: Kingma et al. 2014 (Table 1),
#: Maaløe et al. 2016 (100 labels only)
PAPER_ERROR = {
    100: {"m2": 11.97, "m1m2": 3.33, "adgm": 0.96, "sdgm": 1.32},
    1000: {"m2": 3.60, "m1m2": 2.40},
    3000: {"m2": 3.92, "m1m2": 2.18},
}


def _methods(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {bad}; choose from {', '.join(METHODS)}"
        )
    return names


def _beta1(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) such as 0.9, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semi_beyond_m2.py",
        description="Semi-supervised classification with few labels beyond M2: M1+M2, ADGM, "
        "SDGM and IW-M2 with K > 1, beside M2 on the same labels and budget.",
    )
    p.add_argument("--dataset", default="mnist", help="data set (default mnist)")
    p.add_argument("--labels", type=int, default=100, help="labelled training images (100)")
    p.add_argument("--seeds", type=nonnegative_int_list, default=[0], help="seeds, label draws (0)")
    p.add_argument("--methods", type=_methods, default=list(METHODS),
                   help=f"comma-separated rows (default {','.join(METHODS)})")  # fmt: skip
    p.add_argument("--epochs", type=int, default=100, help="epochs per row (100)")
    p.add_argument("--m1-epochs", type=int, default=None, help="M1's epochs (default --epochs)")
    p.add_argument("--epochs-per-call", type=int, default=5,
                   help="epochs between checkpoints and result updates (5)")  # fmt: skip
    p.add_argument("--particles", type=int, default=5, help="K of IW-M2 (default 5)")
    p.add_argument("--hidden", type=int_list, default=[500], help="hidden widths (500)")
    p.add_argument("--latent-dim", type=int, default=50, help="z (and M1+M2's z2) width (50)")
    p.add_argument("--aux-dim", type=int, default=100, help="a's width, ADGM/SDGM (100)")
    p.add_argument("--m1-latent-dim", type=int, default=50, help="M1's z1 width (50)")
    p.add_argument("--m2-x-scale", type=float, default=1.0,
                   help="M1+M2: initial scale of M2's Gaussian p(z1 | z2, y), learned (1; the "
                        "image default 0.1 lets M1's unused coordinates swamp M2's bound)")  # fmt: skip
    p.add_argument("--m1-draws", choices=("batch", "once"), default="batch",
                   help="M1+M2: draw M2's features z1 ~ q(z1 | x) afresh for every batch "
                        "(batch, as Kingma et al.'s code) or once per image (once)")  # fmt: skip
    p.add_argument("--m1-units", choices=("active", "all"), default="active",
                   help="M1+M2: the coordinates of z1 M2 sees, M1's active units (active) or "
                        "every one (all); --tiny uses all (its M1 has too few active)")  # fmt: skip
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    p.add_argument("--adam-beta1", type=_beta1, default=0.9,
                   help="Adam's first-moment decay (torch's 0.9; Pyro's SS-VAE tutorial 0.95)")  # fmt: skip
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                   help="hidden units of M2, ADGM, SDGM (relu; Pyro's tutorial softplus)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=100, help="unlabelled images per step")
    p.add_argument("--class-weight", type=float, default=None,
                   help="alpha, total weight of the classification loss (default 0.1 N)")  # fmt: skip
    p.add_argument("--class-weight-ratio", type=float, default=None,
                   help="instead: alpha = R * N * N_u / N_l (semi_supervised.py's flag)")  # fmt: skip
    p.add_argument("--train-size", type=int, default=None, help="use the first N train images")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop between calls after this many minutes (rows stay resumable)")  # fmt: skip
    p.add_argument("--out", default=str(HERE / "results"), help="results folder")
    p.add_argument("--run-dir", default=str(HERE / "runs" / "semi_beyond_m2"),
                   help="checkpoints of every row (resumable)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--tiny", action="store_true", help="smoke test: digits, tiny nets, 2 epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite the Markdown table and plot from --out's JSON; train nothing")  # fmt: skip
    return p


def _tiny(args, argv) -> None:
    given = sys.argv[1:] if argv is None else argv
    args.dataset, args.labels, args.seeds, args.train_size = "digits", 50, [0], 400
    args.hidden, args.latent_dim, args.aux_dim, args.m1_latent_dim = [16], 3, 3, 4
    args.particles, args.lr, args.epochs_per_call = 2, 3e-3, 1
    if "--epochs" not in given:
        args.epochs = 2
    if "--m1-units" not in given:
        args.m1_units = "all"


def _class_weight(args, n: int) -> float | None:
    if args.class_weight_ratio is not None:
        return args.class_weight_ratio * n * (n - args.labels) / args.labels
    return args.class_weight


def _label(method: str, particles: int) -> str:
    return {"m2": "M2", "iw-m2": f"IW-M2 (K={particles})", "m1m2": "M1+M2", "adgm": "ADGM",
            "sdgm": "SDGM"}[method]  # fmt: skip


def train_row(method: str, data, mask, args, seed: int, epochs: int):
    """Train row ``method`` to ``epochs`` epochs (resuming its run folder); its History."""
    run = Path(args.run_dir) / f"{data.name}-{method}-{args.labels}-seed{seed}"
    n = len(data.train)
    cfg = SemiSupervisedConfig(
        epochs=epochs, batch_size=args.batch_size, lr=args.lr, num_labels=args.labels,
        label_seed=seed, seed=seed, keep_checkpoints=1, class_weight=_class_weight(args, n),
        adam_beta1=args.adam_beta1,
        objective="iwae" if method == "iw-m2" else "elbo",
        particles=args.particles if method == "iw-m2" else 1,
    )  # fmt: skip
    if method == "m1m2":
        m1_cfg = TrainConfig(epochs=args.m1_epochs or args.epochs, batch_size=args.batch_size,
                             lr=args.lr, adam_beta1=args.adam_beta1, seed=seed,
                             keep_checkpoints=1)  # fmt: skip
        result = fit_m1m2(data, m1_cfg, cfg.replace(num_labels=None), labelled=mask,
                          m1_latent_dim=args.m1_latent_dim, m2_latent_dim=args.latent_dim,
                          hidden_dims=tuple(args.hidden), m2_x_scale=args.m2_x_scale,
                          resample=args.m1_draws == "batch", units=args.m1_units,
                          out=run, resume=True,
                          progress=not args.quiet, seed=seed)  # fmt: skip
        return result.m2_history, sum(r["seconds"] for r in result.m1_history.rows)
    shape = dict(image_shape=data.image_shape, num_classes=data.num_classes,
                 latent_dim=args.latent_dim, hidden_dims=tuple(args.hidden),
                 activation=args.activation)  # fmt: skip
    pyro.set_rng_seed(seed)
    if method in ("adgm", "sdgm"):
        model = (ADGM if method == "adgm" else SDGM)(AuxiliaryConfig(**shape, aux_dim=args.aux_dim))
    else:
        model = M2(ModelConfig(**shape))
    history = fit_semisupervised(model, data, cfg.replace(num_labels=None), labelled=mask,
                                 out=run, resume=True, progress=not args.quiet)  # fmt: skip
    return history, 0.0


def _row(method, args, seed, history, extra_seconds) -> dict:
    return {
        "method": _label(method, args.particles), "key": method, "labels": args.labels,
        "seed": seed, "epochs": len(history), "final": len(history) >= args.epochs,
        "test_error": 100 * (1 - history.last["test_accuracy"]),
        "val_error": 100 * (1 - history.last["val_accuracy"]),
        "train_seconds": extra_seconds + sum(r["seconds"] for r in history.rows),
        "particles": args.particles if method == "iw-m2" else 1,
        "curve": [100 * (1 - r["test_accuracy"]) for r in history.rows],
    }  # fmt: skip


#: what M2 of M1+M2 trains on, by ``--m1-draws``
_DRAWS = {
    "batch": "a fresh draw z1 ~ q(z1 | x) per batch",
    "once": "one draw z1 ~ q(z1 | x) per image",
}


#: which coordinates of z1 M2 of M1+M2 sees, by ``--m1-units``
_UNITS = {"active": "M1's active units", "all": "every unit of z1"}


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "semi_beyond_m2.json").write_text(json.dumps(results, indent=2))
    b = results["budget"]
    papers = PAPER_ERROR.get(b["labels"], {}) if b["dataset"] == "mnist" else {}
    m1m2 = ""  # M1+M2's settings, where the file has an M1+M2 row
    if any(r["key"] == "m1m2" for r in results["rows"]):
        m1m2 = (
            f"M1's z1 {b['m1_latent_dim']} (M1 trained {b['m1_epochs']} epochs on every "
            f"training image; M2's p(z1 | z2, y) Gaussian with a learned scale from "
            f"{b.get('m2_x_scale', 1.0):g}, trained on {_DRAWS[b.get('m1_draws', 'batch')]} "
            f"at {_UNITS[b.get('m1_units', 'active')]}), "
        )
    lines = [
        "# Semi-supervised learning beyond M2 (issue 29)",
        "",
        f"Written by `experiments/semi_beyond_m2.py` ({results['command']}), last updated "
        f"{results['updated']} UTC.",
        "",
        f"Budget: data set **{b['dataset']}** ({b['train_images']} training images, "
        f"{b['labels']} labelled, test set {b['test_images']} images, dynamic binarisation), "
        f"MLPs with hidden {b['hidden']} ({b.get('activation', 'relu')}), latent z "
        f"{b['latent_dim']}, auxiliary a {b['aux_dim']} (ADGM, SDGM), {m1m2}Adam lr {b['lr']} "
        f"(beta1 {b.get('adam_beta1', 0.9):g}), "
        f"{b['batch_size']} unlabelled + 100 labelled images per step, classification weight "
        f"{b['class_weight']}, at most {b['max_epochs']} epochs per row; one CPU thread on a "
        "shared 2-core machine. Test error of q(y|x) after the last epoch trained (no model "
        "selection on the test set).",
        "",
    ]
    table = []
    for r in results["rows"]:
        paper = papers.get(r["key"])
        status = "final" if r["final"] else f"still training (budget {b['max_epochs']} epochs)"
        table.append([
            r["method"], r["epochs"], f"{r['test_error']:.2f}", f"{r['val_error']:.2f}",
            f"{r['train_seconds']:.0f}", f"{paper:.2f}" if paper else "-", r["seed"], status,
        ])  # fmt: skip
    lines += markdown_table(
        ["method", "epochs", "test error %", "val error %", "train s", "paper error %", "seed",
         "status"], table, align=["---", "---:", "---:", "---:", "---:", "---:", "---:", "---"],
    )  # fmt: skip
    iw = [r for r in results["rows"] if r["key"] == "iw-m2"]
    m2 = [r for r in results["rows"] if r["key"] == "m2"]
    if iw and m2:
        lines += ["", _iw_against_m2(iw[0], m2[0], b["test_images"])]
    lines += [
        "",
        "A row is rewritten after every call of `--epochs-per-call` epochs; 'final' once it "
        "reached the budget's epochs. Run the command again to continue the rows still training.",
        "Paper: Kingma et al. (2014, Table 1) for M2 and M1+M2, Maaløe et al. (2016) for ADGM "
        "and SDGM (100 labels only), on MNIST (shown only for MNIST).",
        "",
        "![test error against epoch](semi_beyond_m2_error.png)",
    ]
    (out / "semi_beyond_m2.md").write_text("\n".join(lines) + "\n")


def _iw_against_m2(iw: dict, m2: dict, test_images: int) -> str:
    """IW-M2 against M2 at the same epoch (the last both reached; a row still training is
    compared with M2's curve at its epoch), and the mean of the last ten epochs of each: one
    epoch's test error moves by several test images."""
    n = min(len(iw["curve"]), len(m2["curve"]))
    a, c = iw["curve"][n - 1], m2["curve"][n - 1]
    w = min(10, n)
    ma, mc = sum(iw["curve"][n - w : n]) / w, sum(m2["curve"][n - w : n]) / w
    state = "" if iw["final"] and m2["final"] else " (a row still training)"
    return (
        f"IW-M2 (K = {iw['particles']}) against M2 on the same labels and budget, at epoch {n}"
        f"{state}: {a:.2f}% against {c:.2f}%, {'at or below' if a <= c else 'above'} M2; mean "
        f"test error of epochs {n - w + 1} to {n}: {ma:.2f}% against {mc:.2f}% (one test image "
        f"is {100 / test_images:.2f}%)."
    )


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], marker="o", ms=2,
                label=f"{r['method']}, seed {r['seed']}")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.tiny:
        _tiny(args, argv)
        if Path(args.out) == HERE / "results":  # never overwrite the real results
            args.out = str(Path(args.run_dir) / "tiny")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.render_only:
        results = json.loads((out / "semi_beyond_m2.json").read_text())
        write_results(results, out)
        plot_curves(results["rows"], out / "semi_beyond_m2_error.png")
        return results
    t0 = time.time()
    data = pyro_cvae.load_dataset(args.dataset, binarize="dynamic")
    if args.train_size:
        data = data.subset(args.train_size, min(len(data.test), 1000))
    n = len(data.train)
    budget = {
        "dataset": data.name, "train_images": n, "test_images": len(data.test),
        "labels": args.labels, "hidden": list(args.hidden), "latent_dim": args.latent_dim,
        "aux_dim": args.aux_dim, "m1_latent_dim": args.m1_latent_dim,
        "m1_epochs": args.m1_epochs or args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "max_epochs": args.epochs, "particles": args.particles,
        "class_weight": (
            f"alpha = {args.class_weight_ratio} N N_u / N_l"
            if args.class_weight_ratio is not None
            else args.class_weight or f"0.1 N = {0.1 * n:g}"
        ),
    }  # fmt: skip
    if args.m2_x_scale != 1.0:  # budgets of files written before the flag hold the default
        budget["m2_x_scale"] = args.m2_x_scale
    if args.m1_draws != "batch":  # files written before the flag drew once: their budgets say so
        budget["m1_draws"] = args.m1_draws
    if args.m1_units != "active":  # files written before the flag used every unit: they say so
        budget["m1_units"] = args.m1_units
    if args.adam_beta1 != 0.9:  # flags added later: the budgets of older files hold the default
        budget["adam_beta1"] = args.adam_beta1
    if args.activation != "relu":
        budget["activation"] = args.activation
    # rows written by separate --methods calls share the budget: the command recorded is the one
    # that writes every row of the file (the same flags, --methods naming the file's rows)
    given = list(argv or sys.argv[1:])
    every_row = [a for i, a in enumerate(given) if a != "--methods"
                 and not (i and given[i - 1] == "--methods") and not a.startswith("--methods=")]  # fmt: skip
    results = {"command": "python experiments/semi_beyond_m2.py " + " ".join(every_row),
               "updated": None, "budget": budget, "rows": []}  # fmt: skip
    path = out / "semi_beyond_m2.json"
    if path.exists():  # rows of an earlier run of the same budget are kept
        previous = json.loads(path.read_text())
        if previous.get("budget") == budget:
            results["rows"] = previous["rows"]
    stopped = []

    def out_of_time() -> bool:
        if args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes:
            print("--max-minutes reached; run again to continue", flush=True)
            stopped.append(True)
        return bool(stopped)

    def save(results: dict) -> None:  # after every call of a row: its row, the files
        keys = ",".join(dict.fromkeys(r["key"] for r in results["rows"]))
        results["command"] = "python experiments/semi_beyond_m2.py " + " ".join(
            [*every_row, "--methods", keys]
        )
        results["updated"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        write_results(results, out)
        plot_curves(results["rows"], out / "semi_beyond_m2_error.png")
        row = results["rows"][-1]
        print(f"{row['method']}, seed {row['seed']}: {row['epochs']} epochs, test error "
              f"{row['test_error']:.2f}%", flush=True)  # fmt: skip

    for seed in args.seeds:
        mask = partial_labels(data, args.labels, seed=seed)
        for method in args.methods:
            run = Path(args.run_dir) / f"{data.name}-{method}-{args.labels}-seed{seed}"
            extra = {}  # M1's training seconds (M1+M2)

            def train(epochs: int, method=method, seed=seed, mask=mask, extra=extra):
                history, extra["seconds"] = train_row(method, data, mask, args, seed, epochs)
                return history

            def evaluate(history, method=method, seed=seed, extra=extra) -> dict:
                return _row(method, args, seed, history, extra["seconds"])

            run_row(run / ("m2" if method == "m1m2" else ""), args.epochs, train, evaluate,
                    ResultsRows(results, {"key": method, "seed": seed}, save),
                    epochs_per_call=args.epochs_per_call, evaluate_every_call=True,
                    stop=out_of_time, is_final=lambda r: r["epochs"] >= args.epochs)  # fmt: skip
            if stopped:
                return results
    return results


if __name__ == "__main__":
    main()
