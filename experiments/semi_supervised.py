"""Table 1 of Kingma et al. (2014) for M2: test error with few labels, beside two references.

For each number of labels (class-balanced, seeded; the rest of the training set unlabelled):

* **M2** with the missing labels enumerated (``TraceEnum_ELBO``), classifier q(y | x);
* **IW-M2**, the same model trained with the importance-weighted bound of
  :mod:`pyro_cvae.infer.semisupervised` (K draws of z per label, the labels weighted by
  q(y | x): :func:`~pyro_cvae.infer.semisupervised.label_weighted_iw_bound`); with
  ``--particles 1`` (K = 1) this is M2's objective drawn in another order, and the row is
  named "M2, second run";
* **supervised**: a classifier of the same architecture as q(y | x) trained on the labelled
  images only.

Both M2 variants also report the generative classifier p(y | x) from their importance weights.
The epoch cost of M2 (enumeration over the labels) is measured against a plain CVAE ELBO epoch
on the same images. With ``--deadline`` the epochs of each run shrink so that the whole run ends
by then (the epochs actually run are written beside every number, and a row says whether it
reached ``--epochs`` (final) or was stopped by the deadline); runs not yet done are listed.

Writes ``semi_supervised.md``, ``semi_supervised.json``, ``semi_supervised_error.png`` (test
error of q(y | x) against epoch) and ``semi_supervised_analogies.png`` (test images re-generated
with every label) into ``--out``; results are rewritten after every run, so an interrupted
experiment leaves the runs it finished.

Usage::

    python experiments/semi_supervised.py --tiny                  # smoke test, digits, seconds
    python experiments/semi_supervised.py --labels 100,1000 --epochs 20 --deadline 15:40
    python experiments/semi_supervised.py --dataset digits --labels 100 --seeds 0,1,2 \
        --particles 4 --hidden 64 --latent-dim 4 --lr 3e-3 --class-weight 1000 --epochs 100 \
        --epochs-per-call 25 --timing-images 0 --out experiments/results/iw_m2_digits \
        --run-dir experiments/runs/iw_m2_digits              # IW-M2 vs M2 vs supervised
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
from torch.nn import functional as F

import pyro_cvae
from pyro_cvae.checkpoint import CheckpointError, trained_epochs
from pyro_cvae.cli.types import int_list, nonnegative_int_list
from pyro_cvae.data import partial_labels
from pyro_cvae.evaluate import accuracy
from pyro_cvae.models import M2, ModelConfig
from pyro_cvae.nn.nets import Classifier
from pyro_cvae.train import RunFolderError, SemiSupervisedConfig, fit_semisupervised

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/_common.py, whether run as a script or loaded by path
from _common import ResultsRows, markdown_table, run_row  # noqa: E402

#: Kingma et al. (2014), Table 1, M2 test error (%) and Pyro's SS-VAE tutorial accuracy (%)
PAPER_M2_ERROR = {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92}
PYRO_TUTORIAL_ACCURACY = {100: 93.2, 600: 94.4, 1000: 94.9, 3000: 95.8}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semi_supervised.py",
        description="M2 semi-supervised classification with few labels (Kingma et al. 2014, "
        "Table 1): enumerated M2, importance-weighted M2 and a supervised-only classifier.",
    )
    p.add_argument("--dataset", default="mnist", help="data set (default mnist)")
    p.add_argument(
        "--labels", type=int_list, default=[100, 1000, 3000],
        help="comma-separated numbers of labelled training images (default 100,1000,3000)",
    )  # fmt: skip
    p.add_argument(
        "--iwae-labels", type=nonnegative_int_list, default=[100],
        help="label counts at which IW-M2 is also trained (default 100; empty string: none)",
    )  # fmt: skip
    p.add_argument("--seeds", type=nonnegative_int_list, default=[0], help="seeds (default 0)")
    p.add_argument("--epochs", type=int, default=20, help="most epochs per M2 run (default 20)")
    p.add_argument("--particles", type=int, default=1, help="K of IW-M2, per label (default 1)")
    p.add_argument(
        "--epochs-per-call", type=int, default=1,
        help="epochs between checkpoints (and deadline checks) of a run (default 1; raise it "
        "for small data sets, where a checkpoint costs more than an epoch)",
    )  # fmt: skip
    p.add_argument("--hidden", type=int_list, default=[500], help="hidden widths (500)")
    p.add_argument("--latent-dim", type=int, default=50, help="latent dimensions (50)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    p.add_argument("--batch-size", type=int, default=100, help="unlabelled images per step")
    p.add_argument(
        "--class-weight", type=float, default=None,
        help="Kingma's alpha, total weight of the classification loss (default 0.1 N)",
    )  # fmt: skip
    p.add_argument(
        "--class-weight-ratio", type=float, default=None,
        help="instead of --class-weight: alpha = R * N * N_u / N_l, so the mean cross-entropy "
        "of a labelled batch weighs R * N_u / N_l against the mean bound of an image "
        "(R = 0.1: 50 at 100 MNIST labels; Kingma's 0.1 N gives 0.1 at every label count)",
    )  # fmt: skip
    p.add_argument(
        "--supervised-steps", type=int, default=3000,
        help="Adam steps of the supervised-only classifier (default 3000)",
    )  # fmt: skip
    p.add_argument(
        "--gen-particles", type=int, default=5,
        help="K per label of the generative classifier p(y|x) (default 5)",
    )  # fmt: skip
    p.add_argument(
        "--gen-images", type=int, default=2000,
        help="test images scored by the generative classifier (default 2000: it costs "
        "C * K decoder passes per image)",
    )  # fmt: skip
    p.add_argument(
        "--timing-images", type=int, default=5000,
        help="images of the epoch-cost comparison M2 vs CVAE (default 5000; 0: skip)",
    )  # fmt: skip
    p.add_argument(
        "--deadline", default=None,
        help="UTC time HH:MM by which the experiment must end; epochs shrink to fit",
    )  # fmt: skip
    p.add_argument("--train-size", type=int, default=None, help="use the first N train images")
    p.add_argument("--out", default=str(HERE / "results"), help="results folder")
    p.add_argument(
        "--run-dir", default=str(HERE / "runs" / "semi_supervised"),
        help="checkpoints of every run (resumable)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--tiny", action="store_true", help="smoke test: digits, tiny nets, 2 epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--render-only", action="store_true",
        help="rewrite the Markdown table and the error plot from --out's JSON; train nothing",
    )  # fmt: skip
    return p


def _tiny(args, argv) -> None:
    args.dataset, args.labels, args.iwae_labels, args.seeds = "digits", [50], [50], [0]
    args.hidden, args.latent_dim, args.particles = [32], 4, 2
    given = sys.argv[1:] if argv is None else argv
    if "--epochs" not in given:  # 2 unless given (a test continues a tiny run)
        args.epochs = 2
    args.supervised_steps, args.gen_particles, args.gen_images = 50, 2, 100
    args.timing_images, args.lr, args.deadline = 200, 3e-3, None


def _deadline(text: str | None) -> float | None:
    if not text:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    h, m = (int(v) for v in text.split(":"))
    end = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if end <= now:
        raise ValueError(f"--deadline {text} UTC has passed (now {now:%H:%M}); give a later time")
    return time.time() + (end - now).total_seconds()


def supervised_baseline(data, mask, hidden, steps: int, lr: float, seed: int) -> dict:
    """A classifier with q(y | x)'s architecture, trained on the labelled images only."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(data.image_shape, data.num_classes, tuple(hidden))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    x, y = data.train.x[mask], data.train.y[mask]
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(100, x.shape[0]),), generator=g)
        xb = torch.bernoulli(x[idx]) if data.binarize == "dynamic" else x[idx]
        loss = F.cross_entropy(clf(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = data.eval_split("test")
    with torch.no_grad():
        acc = (clf(test.x).argmax(-1) == test.y).float().mean().item()
    return {"test_error": 100 * (1 - acc), "steps": steps, "seconds": time.perf_counter() - t0}


def epoch_cost_ratio(data, model_cfg: ModelConfig, n_images: int, batch_size: int, seed: int):
    """Seconds of one M2 epoch (enumerated) over one plain CVAE ELBO epoch, same images."""
    n_images = min(n_images, len(data.train))
    sub = data.subset(n_images, 10)
    n_labels = data.num_classes * max(1, n_images // (50 * data.num_classes))
    pyro.set_rng_seed(seed)
    cvae = pyro_cvae.CVAE(model_cfg)
    h_cvae = pyro_cvae.fit(cvae, sub, epochs=1, batch_size=batch_size, validate_every=0,
                           seed=seed, progress=False)  # fmt: skip
    m2 = M2(model_cfg)
    cfg = SemiSupervisedConfig(epochs=1, batch_size=batch_size, num_labels=n_labels, seed=seed)
    h_m2 = fit_semisupervised(m2, sub, cfg, progress=False)
    t_cvae, t_m2 = h_cvae.last["seconds"], h_m2.last["seconds"]
    return {
        "images": n_images, "labelled": n_labels, "batch_size": batch_size,
        "cvae_epoch_seconds": t_cvae, "m2_epoch_seconds": t_m2, "ratio": t_m2 / t_cvae,
    }  # fmt: skip


def class_weight(args, n: int, labels: int) -> float | None:
    """Kingma's alpha for this run: --class-weight, or from --class-weight-ratio, or None."""
    if args.class_weight_ratio is not None:
        return args.class_weight_ratio * n * (n - labels) / labels
    return args.class_weight


def run_m2(data, mask, model_cfg, args, objective: str, labels: int, seed: int,
           seconds: float | None, cache):  # fmt: skip
    """Train one M2 (objective 'elbo' or 'iwae') ``args.epochs_per_call`` epochs at a time until
    ``args.epochs`` or until the next call would overrun ``seconds``; cache its result row in
    ``cache`` and return it with the model.

    Each call resumes the run folder's checkpoint, so a restarted experiment continues a run
    (same settings; only the number of epochs may differ) instead of starting it again.
    """
    pyro.set_rng_seed(seed)
    model = M2(model_cfg)
    cfg = SemiSupervisedConfig(
        epochs=1, batch_size=args.batch_size, lr=args.lr, objective=objective,
        particles=args.particles if objective == "iwae" else 1, num_labels=labels,
        label_seed=seed, seed=seed, keep_checkpoints=1,
        class_weight=class_weight(args, len(data.train), labels),
    )  # fmt: skip
    out = Path(args.run_dir) / f"{data.name}-{objective}-{labels}-seed{seed}"
    t0 = time.perf_counter()
    # epochs before the last call and the seconds of that call's epochs (None: no call yet)
    calls = {"done": min(trained_epochs(out), args.epochs), "last": None}

    def train(epochs: int):
        epoch_cfg = cfg.replace(epochs=epochs)
        try:
            history = fit_semisupervised(model, data, epoch_cfg, labelled=mask, out=out,
                                         resume=True, progress=not args.quiet)  # fmt: skip
        except (CheckpointError, RunFolderError):  # a run with other settings: start afresh
            history = fit_semisupervised(model, data, epoch_cfg, labelled=mask, out=out,
                                         overwrite=True, progress=not args.quiet)  # fmt: skip
        calls["last"] = sum(r["seconds"] for r in history.rows[calls["done"] :])
        calls["done"] = len(history)
        return history

    def out_of_time() -> bool:  # the next call would overrun the seconds left
        return (seconds is not None and calls["last"] is not None
                and time.perf_counter() - t0 + 1.05 * calls["last"] > seconds)  # fmt: skip

    def evaluate(history) -> dict:
        test = data.eval_split("test")
        n_gen = min(args.gen_images, len(test))
        gen_split = pyro_cvae.Split(test.x[:n_gen], test.y[:n_gen])
        pyro.set_rng_seed(seed)
        gen_acc = accuracy(model, gen_split, generative=args.gen_particles)
        return {
            "method": method_label(objective, cfg.particles),
            "objective": objective, "labels": labels, "seed": seed, "epochs": len(history),
            "test_error": 100 * (1 - history.last["test_accuracy"]),
            "val_error": 100 * (1 - history.last["val_accuracy"]),
            "generative_error": 100 * (1 - gen_acc),
            "generative_images": n_gen, "generative_particles": args.gen_particles,
            "train_seconds": sum(r["seconds"] for r in history.rows),
            "final": len(history) >= args.epochs,  # False: stopped by the deadline
            "class_weight": cfg.class_weight,
            "curve": [100 * (1 - r["test_accuracy"]) for r in history.rows],
        }  # fmt: skip

    row = run_row(out, args.epochs, train, evaluate, cache,
                  epochs_per_call=max(1, args.epochs_per_call), stop=out_of_time,
                  is_final=lambda r: r["epochs"] >= args.epochs)  # fmt: skip
    return row, model


#: the name of the IW-M2 row with K = 1: its bound equals M2's enumerated objective draw for
#: draw (pyro_cvae.infer.semisupervised), so the row is a second M2 run, not importance weighting
M2_SECOND_RUN = "M2, second run (IW-M2 code path, K = 1)"


def method_label(objective: str, particles: int) -> str:
    """The row's method: M2, IW-M2 (K) for K > 1, or M2's second run for IW-M2 with K = 1."""
    if objective == "elbo":
        return "M2"
    return M2_SECOND_RUN if particles == 1 else f"IW-M2 (K={particles})"


def _relabel(row: dict) -> dict:
    """A row written before IW-M2 with K = 1 was named for what it is keeps its numbers and
    gets its name."""
    if row.get("objective") == "iwae" and row["method"] == "IW-M2 (K=1)":
        return {**row, "method": M2_SECOND_RUN}
    return row


def _previous_results(out: Path, budget: dict) -> dict | None:
    """Results of an earlier run of the same experiment (same budget but its deadline)."""
    path = out / "semi_supervised.json"
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    ignore = ("deadline", "max_epochs")
    same = {k: v for k, v in previous.get("budget", {}).items() if k not in ignore}
    return previous if same == {k: v for k, v in budget.items() if k not in ignore} else None


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["rows"] = [_relabel(r) for r in results["rows"]]
    (out / "semi_supervised.json").write_text(json.dumps(results, indent=2))
    b = results["budget"]
    lines = [
        "# Semi-supervised M2 (Kingma et al. 2014, Table 1)",
        "",
        f"Written by `experiments/semi_supervised.py` ({results['command']}), "
        f"finished {results['finished'] or 'not yet (partial)'} UTC.",
        "",
        f"Budget: data set **{b['dataset']}** ({b['train_images']} training images, "
        f"test set {b['test_images']} images, dynamic binarisation), MLP with hidden "
        f"{b['hidden']}, latent {b['latent_dim']}, Adam lr {b['lr']}, {b['batch_size']} "
        f"unlabelled + 100 labelled images per step, classification weight "
        f"{b['class_weight']}, seeds {b['seeds']}, at most {b['max_epochs']} epochs per run "
        + (
            f"(fewer where the deadline {b['deadline']} UTC required: see the epochs column); "
            if b["deadline"]
            else "(no deadline); "
        )
        + "one CPU thread on a shared 2-core machine. Test error of the last epoch (no "
        "model selection on the test set). Generative p(y|x): K = "
        f"{b['gen_particles']} draws of z per label on the first {b['gen_images']} test images.",
        "",
    ]
    table = []
    for r in results["rows"]:
        mnist = b["dataset"] == "mnist"  # the references are MNIST numbers
        paper = PAPER_M2_ERROR.get(r["labels"]) if mnist else None
        tut = PYRO_TUTORIAL_ACCURACY.get(r["labels"]) if mnist else None
        gen = f"{r['generative_error']:.2f}" if "generative_error" in r else "-"
        epochs = r.get("epochs", "-") if "epochs" in r else f"{r['steps']} steps"
        reached = r.get("final", r.get("epochs", b["max_epochs"]) >= b["max_epochs"])
        status = "final" if reached else "stopped by deadline"
        table.append([
            r["labels"], r["method"], epochs, f"{r['test_error']:.2f}", gen,
            f"{r.get('train_seconds', r.get('seconds', 0)):.0f}",
            paper if paper and r["method"] == "M2" else "-",
            f"{100 - tut:.1f}" if tut and r["method"] == "M2" else "-", r["seed"], status,
        ])  # fmt: skip
    lines += markdown_table(
        ["labels", "method", "epochs", "test error q(y\\|x) %", "test error p(y\\|x) %",
         "train s", "paper M2 error %", "Pyro tutorial error %", "seed", "status"], table,
        align=["---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"],
    )  # fmt: skip
    t = results.get("timing")
    if t:
        lines += [
            "",
            f"Epoch cost: one M2 epoch with the labels enumerated took {t['m2_epoch_seconds']:.1f}"
            f" s against {t['cvae_epoch_seconds']:.1f} s for a plain CVAE ELBO epoch on the same "
            f"{t['images']} images (same networks, batch {t['batch_size']}): ratio "
            f"**{t['ratio']:.2f}x** (target <= 12x).",
        ]
    lines += _summary(results["rows"], b["test_images"])
    if any(r["method"] == M2_SECOND_RUN for r in results["rows"]):
        lines += [
            "",
            f"'{M2_SECOND_RUN}': the importance-weighted objective with K = 1 draw of z per "
            "label is M2's enumerated objective, draw for draw (`label_weighted_iw_bound`'s "
            "docstring), here with the same classification weight: the row is a second M2 run "
            "(another draw order of the same estimator), not evidence for importance weighting. "
            "IW-M2 with K = 5 at the same budget: `experiments/semi_beyond_m2.py` (issue 29).",
        ]
    pending = results.get("pending") or []
    lines += [
        "",
        "A row is written when its run ends: status 'final' when it reached the budget's "
        "epochs, 'stopped by deadline' when --deadline cut it short (not final). "
        + (
            f"Still to run: {', '.join(pending)}."
            if pending and not results["finished"]
            else "No run is still to do."
        ),
    ]
    m2_100 = [r for r in results["rows"] if r["method"] == "M2" and r["labels"] == 100]
    if m2_100 and b["dataset"] == "mnist":
        best = min(r["test_error"] for r in m2_100)
        verdict = "reached" if best <= 6.8 else "not reached"
        lines += [
            "",
            f"Target of issue 5, MNIST with 100 labels at most 6.8% test error: **{verdict}** "
            f"here ({best:.2f}% after {m2_100[0]['epochs']} epochs of this budget).",
        ]
    lines += [
        "",
        "Paper: Kingma et al. (2014), M2 test error; Pyro tutorial: test error 100 - its "
        "reported accuracy (enumeration plus an auxiliary classification loss).",
        "",
        "![test error against epoch](semi_supervised_error.png)",
        "",
        "![analogies](semi_supervised_analogies.png)",
        "",
        "Analogies: left column a test image, then the image re-generated with every label "
        "(z = mean of q(z | x, y) with the classifier's label; style kept, label changed).",
    ]
    (out / "semi_supervised.md").write_text("\n".join(lines) + "\n")


def _summary(rows: list[dict], test_images: int) -> list[str]:
    """Mean test error of q(y|x) over seeds per label count and method, and whether IW-M2
    matches the supervised-only classifier on the same labels (issue 17)."""
    lines = []
    for lab in sorted({r["labels"] for r in rows}):
        by_method: dict[str, list[float]] = {}
        for r in rows:
            if r["labels"] == lab:
                by_method.setdefault(r["method"], []).append(r["test_error"])
        if len(by_method) < 2:
            continue
        mean = {m: sum(v) / len(v) for m, v in by_method.items()}
        parts = [f"{m} {mean[m]:.2f}% ({len(v)} seeds)" for m, v in by_method.items()]
        lines += [
            "",
            f"{lab} labels, mean test error of q(y|x): " + "; ".join(parts) + f" (one test "
            f"image is {100 / test_images:.2f}%).",
        ]
        iw = [m for m in mean if m.startswith("IW-M2")]
        if iw and "supervised" in mean:
            ok = mean[iw[0]] <= mean["supervised"]
            lines[-1] += (
                f" IW-M2 {'matches or beats' if ok else 'does not match'} the supervised-only "
                f"classifier on the same labels ({mean[iw[0]]:.2f}% vs {mean['supervised']:.2f}%)."
            )
    return lines


def plot_curves(rows: list[dict], path: Path) -> None:
    """Test error of q(y|x) against epoch; one colour per label count, the supervised-only
    classifier of that count dashed, IW-M2 dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["labels"] for r in rows})
    colour = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(counts)}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        c = colour[r["labels"]]
        if r.get("curve"):
            style = "-" if r["method"] == "M2" else ":"
            ax.plot(range(1, len(r["curve"]) + 1), r["curve"], style, marker="o", ms=3, color=c,
                    label=f"{r['method']}, {r['labels']} labels, seed {r['seed']}")  # fmt: skip
        elif r["method"] == "supervised":
            ax.axhline(r["test_error"], ls="--", lw=0.9, color=c,
                       label=f"supervised only, {r['labels']} labels")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error of q(y|x) (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_analogies(model: M2, data, path: Path, n: int = 8) -> None:
    from pyro_cvae import plots

    test = data.eval_split("test")
    x = test.x[:n]
    images = torch.cat([x[:, None], model.analogies(x)], dim=1)  # (n, 1 + C, ...)
    plots.image_grid(images.flatten(0, 1), nrow=images.shape[1],
                     title="test image | re-generated with labels 0..9", path=path)  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.tiny:
        _tiny(args, argv)
        if Path(args.out) == HERE / "results":  # never overwrite the real results
            args.out = str(Path(args.run_dir) / "tiny")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.render_only:
        results = json.loads((out / "semi_supervised.json").read_text())
        write_results(results, out)
        plot_curves(results["rows"], out / "semi_supervised_error.png")
        return results
    end = _deadline(args.deadline)
    data = pyro_cvae.load_dataset(args.dataset, binarize="dynamic")
    if args.train_size:
        data = data.subset(args.train_size, len(data.test))
    model_cfg = ModelConfig(image_shape=data.image_shape, num_classes=data.num_classes,
                            latent_dim=args.latent_dim, hidden_dims=tuple(args.hidden))  # fmt: skip
    n = len(data.train)
    results = {
        "command": "python experiments/semi_supervised.py " + " ".join(argv or sys.argv[1:]),
        "finished": None,
        "budget": {
            "dataset": data.name, "train_images": n, "test_images": len(data.test),
            "hidden": list(args.hidden), "latent_dim": args.latent_dim, "lr": args.lr,
            "batch_size": args.batch_size, "seeds": list(args.seeds), "max_epochs": args.epochs,
            "class_weight": (
                f"alpha = {args.class_weight_ratio} N N_u / N_l"
                if args.class_weight_ratio is not None
                else args.class_weight or f"0.1 N = {0.1 * n:g}"
            ),
            "deadline": args.deadline, "gen_particles": args.gen_particles,
            "gen_images": min(args.gen_images, len(data.test)), "particles": args.particles,
            "supervised_steps": args.supervised_steps,
        },
        "rows": [],
        "timing": None,
    }  # fmt: skip
    previous = _previous_results(out, results["budget"])
    if previous is not None:  # a restarted experiment keeps what it finished
        results["rows"], results["timing"] = previous["rows"], previous["timing"]
    if args.timing_images and results["timing"] is None:
        results["timing"] = epoch_cost_ratio(data, model_cfg, args.timing_images,
                                             args.batch_size, args.seeds[0])  # fmt: skip
        print(f"epoch cost M2 / CVAE: {results['timing']['ratio']:.2f}x", flush=True)
        write_results(results, out)

    def save(results: dict) -> None:  # after every row: the files
        write_results(results, out)
        plot_curves(results["rows"], out / "semi_supervised_error.png")

    jobs = [(lab, seed, obj) for lab in args.labels for seed in args.seeds
            for obj in (["elbo", "iwae"] if lab in args.iwae_labels else ["elbo"])]  # fmt: skip
    analogies_done = False
    for i, (lab, seed, obj) in enumerate(jobs):
        results["pending"] = [f"{o} with {la} labels, seed {se}" for la, se, o in jobs[i:]]
        mask = partial_labels(data, lab, seed=seed)
        if not any(r["method"] == "supervised" and r["labels"] == lab and r["seed"] == seed
                   for r in results["rows"]):  # fmt: skip
            sup = supervised_baseline(data, mask, args.hidden, args.supervised_steps, args.lr, seed)
            results["rows"].append({"method": "supervised", "labels": lab, "seed": seed, **sup})
            print(f"{lab} labels, seed {seed}: supervised test error {sup['test_error']:.2f}%",
                  flush=True)  # fmt: skip
        cache = ResultsRows(results, {"objective": obj, "labels": lab, "seed": seed}, save)
        cached = cache.read()
        if cached is not None and cached["epochs"] >= args.epochs:
            continue
        # a row stopped short (by a deadline, or with fewer epochs): its run folder continues
        # the time left is shared equally by the runs still to do
        seconds = None if end is None else (end - time.time()) / (len(jobs) - i)
        row, model = run_m2(data, mask, model_cfg, args, obj, lab, seed, seconds, cache)
        if obj == "elbo" and not analogies_done:
            plot_analogies(model, data, out / "semi_supervised_analogies.png")
            analogies_done = True
        print(f"{lab} labels, seed {seed}, {row['method']}: test error {row['test_error']:.2f}% "
              f"(p(y|x): {row['generative_error']:.2f}%), {row['epochs']} epochs", flush=True)  # fmt: skip
    results["pending"] = []
    results["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    write_results(results, out)
    plot_curves(results["rows"], out / "semi_supervised_error.png")
    return results


if __name__ == "__main__":
    main()
