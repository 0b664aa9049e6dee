"""Anomaly detection with -log p(x): a CVAE (labels marginalised) against a plain VAE.

Protocol (held-out class): for every class k in turn, train on the nine other classes, score
the test images with -log p(x) (importance-sampled, K samples per term) and report the AUROC
(scikit-learn's ``roc_auc_score``) of telling class-k test images (positives) from the test
images of the nine (negatives). The CVAE scores the marginal p(x) = sum_y p(y) p(x | y) with a
uniform p(y) over the nine training labels, so it needs no label at test time; the VAE is the
same network without the condition, trained with the same budget.

Out of distribution (MNIST models against Fashion-MNIST) runs only where Fashion-MNIST is on
disk; otherwise the script says so in the table.

Writes ``experiments/results/anomaly.<dataset>.json``, ``anomaly.<dataset>.png`` (score
histograms for one held-out class) and ``anomaly.md`` (every data set run so far).

    python experiments/anomaly.py --dataset digits
    python experiments/anomaly.py --dataset mnist --epochs 5 --max-test 1000
    python experiments/anomaly.py --tiny           # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pyro_cvae import CVAE, TrainConfig, fit, load_dataset, plots
from pyro_cvae.applications import anomaly_scores, auroc
from pyro_cvae.data import Dataset, Split

RESULTS = Path(__file__).resolve().parent / "results"

#: per data set: latent_dim, hidden widths, epochs, K, cap on test images per group
DEFAULTS = {
    "digits": dict(latent_dim=8, hidden=(256, 256), epochs=50, k=100, max_test=None),
    "mnist": dict(latent_dim=20, hidden=(400,), epochs=5, k=50, max_test=1000),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=list(DEFAULTS), help="(digits)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (digits 50, mnist 5)")
    p.add_argument(
        "--num-samples",
        "-k",
        type=int,
        default=None,
        help="K importance samples per term (digits 100, mnist 50)",
    )
    p.add_argument(
        "--max-test",
        type=int,
        default=None,
        help="cap on test images per group, normal and held out (mnist 1000)",
    )
    p.add_argument("--train-size", type=int, default=None, help="first N training images")
    p.add_argument(
        "--classes", default=None, help="held-out classes, comma-separated (default: all ten)"
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (0)")
    p.add_argument("--out", default=str(RESULTS), help="results folder (experiments/results)")
    p.add_argument("--tiny", action="store_true", help="smoke-test budget")
    return p


def without_class(data: Dataset, k: int) -> Dataset:
    """The data set minus class ``k``, labels renumbered 0..C-2 (test split: the nine only)."""

    def keep(split: Split) -> Split:
        m = split.y != k
        y = split.y[m]
        return Split(split.x[m], y - (y > k).long())

    names = tuple(n for i, n in enumerate(data.class_names) if i != k)
    return Dataset(
        f"{data.name}-without-{k}", keep(data.train), keep(data.val), keep(data.test),
        data.image_shape, len(names), names, data.binarize, dict(data.meta),
    )  # fmt: skip


def _train(data: Dataset, num_classes: int, cfg: dict, epochs: int, seed: int) -> CVAE:
    torch.manual_seed(seed)
    model = CVAE(image_shape=data.image_shape, num_classes=num_classes,
                 latent_dim=cfg["latent_dim"], hidden_dims=cfg["hidden"])  # fmt: skip
    fit(model, data, TrainConfig(epochs=epochs, batch_size=128, seed=seed, validate_every=0),
        progress=False)  # fmt: skip
    return model.eval()


def _ood(models: dict, k: int, cfg: dict, n: int, mnist_test: torch.Tensor) -> dict:
    """AUROC of MNIST test images against Fashion-MNIST, or why it was skipped."""
    try:
        fashion = load_dataset("fashion-mnist", binarize="fixed").test.x[:n]
    except FileNotFoundError as e:
        return {"skipped": f"Fashion-MNIST not available: {e}"}
    out = {}
    for name, model in models.items():
        s_in = anomaly_scores(model, mnist_test, num_samples=cfg["k"])
        s_out = anomaly_scores(model, fashion, num_samples=cfg["k"])
        out[name] = auroc(s_in, s_out)
    out["held_out_class_of_models"] = k
    return out


def write_markdown(out: Path) -> Path:
    """``anomaly.md`` from every ``anomaly.<dataset>.json`` in ``out``."""
    lines = ["# Anomaly detection: held-out class, AUROC of -log p(x)", ""]
    lines += [
        "For each class k, the models are trained on the nine other classes; the held-out "
        "class's test images are the positives, the nine classes' test images the negatives. "
        "The CVAE scores the label-marginal -log sum_y p(y) p(x|y) (uniform over the nine "
        "labels), the VAE -log p(x); both importance-sampled with K samples per term. "
        "Written by `experiments/anomaly.py`.",
        "",
    ]
    for path in sorted(out.glob("anomaly.*.json")):
        r = json.loads(path.read_text())
        b = r["budget"]
        if b.get("tiny"):
            continue
        lines += [
            f"## {b['dataset']}",
            "",
            f"Budget: {b['epochs']} epochs, one training seed ({b['seed']}), "
            f"{b['train_images']} training images before the held-out class is removed, latent "
            f"{b['latent_dim']}, hidden {b['hidden']}, K = {b['k']} per term, "
            + (
                f"at most {b['max_test']} test images per group."
                if b["max_test"]
                else "every test image."
            )
            + (
                f" Training set: the first {b['train_size']} images." if b.get("train_size") else ""
            ),
            "",
            "| held-out class | CVAE AUROC | VAE AUROC | normal / held-out test images |",
            "|---|---|---|---|",
        ]
        for row in r["per_class"]:
            lines.append(
                f"| {row['class']} | {row['cvae_auroc']:.3f} | {row['vae_auroc']:.3f} | "
                f"{row['num_normal']} / {row['num_anomalous']} |"
            )
        s = r["summary"]
        lines += [
            f"| **mean** | **{s['cvae_mean']:.3f}** | **{s['vae_mean']:.3f}** | |",
            "",
            f"CVAE better than VAE on {s['cvae_wins']} of {len(r['per_class'])} classes.",
            "",
        ]
        if r.get("ood"):
            lines += [f"Out of distribution (MNIST vs Fashion-MNIST): {json.dumps(r['ood'])}", ""]
        lines += [f"![score histograms]({path.stem}.png)", ""]
    md = out / "anomaly.md"
    md.write_text("\n".join(lines))
    return md


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = dict(DEFAULTS[args.dataset])
    epochs = args.epochs or cfg["epochs"]
    cfg["k"] = args.num_samples or cfg["k"]
    cfg["max_test"] = args.max_test or cfg["max_test"]
    classes = [int(c) for c in args.classes.split(",")] if args.classes else list(range(10))
    train_size = args.train_size
    if args.tiny:
        epochs, cfg["k"], cfg["max_test"], train_size = 1, 2, 30, 300
        classes = classes[:2] if not args.classes else classes
        cfg["hidden"] = (32,)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, binarize="dynamic")
    if train_size:
        data = data.subset(train_size, max(train_size // 3, 100))
    test = data.eval_split("test")
    rows, hist = [], None
    models = {}
    for k in classes:
        t0 = time.perf_counter()
        nine = without_class(data, k)
        models = {
            "cvae": _train(nine, nine.num_classes, cfg, epochs, args.seed),
            "vae": _train(nine, 0, cfg, epochs, args.seed),
        }
        normal, anomalous = test.x[test.y != k], test.x[test.y == k]
        if cfg["max_test"]:
            normal, anomalous = normal[: cfg["max_test"]], anomalous[: cfg["max_test"]]
        torch.manual_seed(args.seed)
        row = {"class": k, "num_normal": len(normal), "num_anomalous": len(anomalous)}
        for name, model in models.items():
            s_n = anomaly_scores(model, normal, num_samples=cfg["k"])
            s_a = anomaly_scores(model, anomalous, num_samples=cfg["k"])
            row[f"{name}_auroc"] = auroc(s_n, s_a)
            row[f"{name}_mean_score_normal"] = s_n.mean().item()
            row[f"{name}_mean_score_anomalous"] = s_a.mean().item()
            if hist is None or k == classes[0]:
                hist = hist or {}
                hist[f"{name}: nine classes"] = s_n
                hist[f"{name}: held-out {k}"] = s_a
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    ood = None
    if args.dataset == "mnist":
        ood = _ood(models, classes[-1], cfg, cfg["max_test"] or 10000, test.x[: cfg["max_test"]])
        print(json.dumps({"ood": ood}), flush=True)
    summary = {
        "cvae_mean": statistics.mean(r["cvae_auroc"] for r in rows),
        "vae_mean": statistics.mean(r["vae_auroc"] for r in rows),
        "cvae_wins": sum(r["cvae_auroc"] > r["vae_auroc"] for r in rows),
    }
    budget = {
        "dataset": args.dataset, "epochs": epochs, "seed": args.seed, "k": cfg["k"],
        "max_test": cfg["max_test"], "latent_dim": cfg["latent_dim"],
        "hidden": list(cfg["hidden"]), "train_images": len(data.train), "classes": classes,
        "train_size": train_size, "tiny": args.tiny,
    }  # fmt: skip
    result = {"budget": budget, "summary": summary, "per_class": rows, "ood": ood}
    stem = f"anomaly.{args.dataset}" + ("-tiny" if args.tiny else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plots.score_histogram(hist, xlabel=f"-log p(x) (nats), K={cfg['k']}", path=out / f"{stem}.png")
    write_markdown(out)
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
