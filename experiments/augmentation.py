"""Data augmentation: does adding CVAE-generated images help a classifier trained on few labels?

For n real labelled images per class (n = 5, 10, 50; drawn with the seed), train the same MLP
classifier twice with the same number of optimisation steps: (a) on the 10 n real images only,
(b) on them plus ``--generated`` images per class sampled from a CVAE that was trained on those
same 10 n real images (no other data: the generator sees nothing the classifier does not).
Report the test accuracy of both over several seeds, and their difference.

Writes ``experiments/results/augmentation.{md,json,png}`` (all data sets run so far are kept in
``augmentation.json`` and shown in the table).

    python experiments/augmentation.py --dataset digits
    python experiments/augmentation.py --dataset mnist --seeds 3
    python experiments/augmentation.py --tiny           # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pyro_cvae import CVAE, TrainConfig, fit, load_dataset  # noqa: E402
from pyro_cvae.data import Dataset, Split  # noqa: E402
from pyro_cvae.nn.nets import Classifier  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: per data set: CVAE latent and hidden widths, CVAE steps, classifier steps
DEFAULTS = {
    "digits": dict(latent_dim=8, hidden=(256, 256), cvae_steps=3000, clf_steps=1000),
    "mnist": dict(latent_dim=16, hidden=(400,), cvae_steps=3000, clf_steps=1000),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=list(DEFAULTS), help="(digits)")
    p.add_argument(
        "--per-class",
        default="5,10,50",
        help="real labelled images per class, comma-separated (5,10,50)",
    )
    p.add_argument("--generated", type=int, default=200, help="CVAE images added per class (200)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (3)")
    p.add_argument("--cvae-steps", type=int, default=None, help="CVAE optimisation steps (3000)")
    p.add_argument("--clf-steps", type=int, default=None, help="classifier steps (1000)")
    p.add_argument("--max-test", type=int, default=None, help="cap on test images (all)")
    p.add_argument("--out", default=str(RESULTS), help="results folder (experiments/results)")
    p.add_argument("--tiny", action="store_true", help="smoke-test budget")
    return p


def few_labels(split: Split, n: int, num_classes: int, seed: int) -> Split:
    """n images of every class, chosen with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in range(num_classes):
        members = torch.nonzero(split.y == c).flatten()
        if len(members) < n:
            raise ValueError(f"class {c} has only {len(members)} images, fewer than n={n}")
        idx.append(members[torch.randperm(len(members), generator=g)[:n]])
    idx = torch.cat(idx)
    return Split(split.x[idx], split.y[idx])


def train_classifier(x: torch.Tensor, y: torch.Tensor, image_shape, steps: int, seed: int):
    """An MLP classifier (256 hidden) trained with Adam for a fixed number of steps."""
    torch.manual_seed(seed)
    clf = Classifier(image_shape, 10, (256,))
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,), generator=g)
        loss = F.cross_entropy(clf(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@torch.no_grad()
def accuracy(clf, split: Split) -> float:
    return (clf(split.x).argmax(-1) == split.y).float().mean().item()


def generate(real: Split, data: Dataset, cfg: dict, per_class: int, seed: int) -> Split:
    """Train a CVAE on ``real`` only and sample ``per_class`` images of every class."""
    torch.manual_seed(seed)
    model = CVAE(image_shape=data.image_shape, num_classes=10, latent_dim=cfg["latent_dim"],
                 hidden_dims=cfg["hidden"])  # fmt: skip
    small = Dataset(f"{data.name}-few", real, real, real, data.image_shape, 10, data.class_names,
                    "none")  # fmt: skip
    batch = min(64, len(real))
    epochs = max(1, cfg["cvae_steps"] * batch // len(real))
    fit(model, small, TrainConfig(epochs=epochs, batch_size=batch, seed=seed, validate_every=0),
        progress=False)  # fmt: skip
    labels = torch.arange(10)
    x = model.sample(labels, per_class).flatten(0, 1)  # (10 * per_class, C, H, W)
    return Split(x, labels.repeat_interleave(per_class))


def plot(results: dict, path: Path) -> None:
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = results[name]["rows"]
        ns = sorted({r["n"] for r in rows})
        for key, label in (("real", "real only"), ("augmented", "real + CVAE samples")):
            means = [statistics.mean(r[key] for r in rows if r["n"] == n) for n in ns]
            stds = [statistics.pstdev(r[key] for r in rows if r["n"] == n) for n in ns]
            ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_xlabel("real labelled images per class")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(results: dict, out: Path) -> None:
    lines = [
        "# Data augmentation with CVAE samples",
        "",
        "A classifier (MLP, 256 hidden units, Adam, fixed step count) trained on n real "
        "labelled images per class, against the same classifier trained on them plus CVAE "
        "samples of every class; the CVAE is trained on the same 10 n real images only. "
        "Written by `experiments/augmentation.py`. Mean +- std over seeds; a difference within "
        "about one standard deviation of zero is no measurable effect. Generated images are "
        "means of p(x | z, y) with z drawn from the prior.",
        "",
    ]
    for name, r in results.items():
        b = r["budget"]
        lines += [
            f"## {name}",
            "",
            f"Budget: seeds 0..{b['seeds'] - 1}, CVAE {b['cvae_steps']} steps (latent "
            f"{b['latent_dim']}, hidden {b['hidden']}), classifier {b['clf_steps']} steps, "
            f"{b['generated']} generated images per class, {b['test_images']} test images.",
            "",
            "| n per class | real only | real + generated | difference | seeds where it helps |",
            "|---|---|---|---|---|",
        ]
        for n in sorted({row["n"] for row in r["rows"]}):
            rows = [row for row in r["rows"] if row["n"] == n]
            a = [row["real"] for row in rows]
            g = [row["augmented"] for row in rows]
            d = [y - x for x, y in zip(a, g)]
            lines.append(
                f"| {n} | {statistics.mean(a):.3f} +- {statistics.pstdev(a):.3f} | "
                f"{statistics.mean(g):.3f} +- {statistics.pstdev(g):.3f} | "
                f"{statistics.mean(d):+.3f} +- {statistics.pstdev(d):.3f} | "
                f"{sum(x > 0 for x in d)} of {len(d)} |"
            )
        lines.append("")
    lines += ["![accuracy against labelled images per class](augmentation.png)", ""]
    (out / "augmentation.md").write_text("\n".join(lines))


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = dict(DEFAULTS[args.dataset])
    cfg["cvae_steps"] = args.cvae_steps or cfg["cvae_steps"]
    cfg["clf_steps"] = args.clf_steps or cfg["clf_steps"]
    ns = [int(v) for v in args.per_class.split(",")]
    seeds, generated, max_test = args.seeds, args.generated, args.max_test
    if args.tiny:
        cfg.update(cvae_steps=10, clf_steps=10, hidden=(32,))
        ns, seeds, generated, max_test = ns[:1], 1, 5, 100
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, binarize="none")
    test = data.test if not max_test else data.test.subset(max_test)
    rows = []
    for n in ns:
        for seed in range(seeds):
            t0 = time.perf_counter()
            real = few_labels(data.train, n, 10, seed)
            fake = generate(real, data, cfg, generated, seed)
            both_x = torch.cat([real.x, fake.x])
            both_y = torch.cat([real.y, fake.y])
            shape = data.image_shape
            row = {
                "n": n, "seed": seed,
                "real": accuracy(train_classifier(real.x, real.y, shape, cfg["clf_steps"], seed), test),
                "augmented": accuracy(
                    train_classifier(both_x, both_y, shape, cfg["clf_steps"], seed), test
                ),
            }  # fmt: skip
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(json.dumps(row), flush=True)
    budget = {
        "seeds": seeds, "per_class": ns, "generated": generated, "test_images": len(test),
        "latent_dim": cfg["latent_dim"], "hidden": list(cfg["hidden"]),
        "cvae_steps": cfg["cvae_steps"], "clf_steps": cfg["clf_steps"], "tiny": args.tiny,
    }  # fmt: skip
    stem = "augmentation_tiny" if args.tiny else "augmentation"
    path = out / f"{stem}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.dataset] = {"budget": budget, "rows": rows}
    path.write_text(json.dumps(results, indent=2))
    if not args.tiny:
        write_markdown(results, out)
        plot(results, out / "augmentation.png")
    else:
        plot(results, out / "augmentation_tiny.png")
    return results[args.dataset]


if __name__ == "__main__":
    main()
