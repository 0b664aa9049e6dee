r"""One table of priors on MNIST: test NLL (k = 5000), active units and conditional control.

Every row trains the same one-stochastic-layer model, 784-300-300-40 (``hidden_dims=(300, 300)``,
``latent_dim=40``, the MLP size of Tomczak and Welling [1]), on dynamically binarized MNIST with
the ELBO, changing only the prior (``ModelConfig(prior=..., prior_options=...)``):

* ``normal``, ``conditional``, ``mixture`` (10 components), ``mixture/class`` (3 components per
  class, selected by the label), ``vamp/class`` (a set of pseudo-inputs per class, each encoded
  with its class), ``flow`` (4 conditional affine couplings): label-conditioned CVAEs, whose NLL
  is :math:`-\log p(x | y)`;
* ``normal VAE`` and ``vamp VAE``: the same without the label (:math:`-\log p(x)`), the setting of
  [1], for the comparison with its MNIST results.

Measured per row: the importance-sampled test NLL with k = 5000 samples
(:func:`pyro_cvae.log_likelihood`) on the first ``--eval-images`` test images (one fixed,
seeded binarisation), the test ELBO on the same images, active units (latent dimensions with
:math:`\mathrm{Cov}_x(E_q[z_i]) > 0.01`) on the whole test split, and for labelled rows the
control score (:func:`pyro_cvae.evaluate.control_score`: the fraction of 100 samples per label
that a classifier of real images assigns to that label). The figure shows ten conditional
samples per label under each prior.

Every row is a run folder of :func:`pyro_cvae.fit`; stop the script and start it again with the
same arguments to continue (finished rows are not retrained). Results are rewritten after each
row.

Usage::

    python experiments/priors.py --epochs 10 --eval-images 500
    python experiments/priors.py --tiny          # seconds, on digits (smoke test)

References:
    [1] Tomczak and Welling, VAE with a VampPrior, AISTATS 2018, MNIST table (dynamic MNIST,
        one stochastic layer, MLP): standard normal 88.56, VampPrior 85.57 nats.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import torch

import pyro_cvae
from pyro_cvae.checkpoint import list_checkpoints
from pyro_cvae.cli.types import int_list
from pyro_cvae.data import Split
from pyro_cvae.evaluate import active_units, elbo_per_image, log_likelihood
from pyro_cvae.judge import control_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/_common.py, whether run as a script or loaded by path
from _common import RowFile, markdown_table, nll_summary, run_row, standard_error  # noqa: E402
from _common import write_results as write_files  # noqa: E402

#: Tomczak and Welling (2018), MNIST table, dynamic MNIST, VAE with one stochastic layer (MLP):
#: test log-likelihood in nats (k = 5000), negated
PAPER = {"normal VAE": 88.56, "vamp VAE": 85.57}


def _rows(pseudo_inputs: int, pseudo_per_class: int, flow_hidden: int) -> dict[str, dict]:
    """Row name -> (prior, options, label-conditioned)."""
    vamp = {"pseudo_inputs": pseudo_inputs}
    vamp_class = {"pseudo_inputs": pseudo_per_class, "per_class": True}
    return {
        "normal": {"prior": "normal", "options": {}, "conditional": True},
        "conditional": {"prior": "conditional", "options": {}, "conditional": True},
        "mixture": {"prior": "mixture", "options": {"components": 10}, "conditional": True},
        "mixture/class": {
            "prior": "mixture",
            "options": {"components": 3, "per_class": True},
            "conditional": True,
        },
        "vamp/class": {"prior": "vamp", "options": vamp_class, "conditional": True},
        "flow": {
            "prior": "flow",
            "options": {"layers": 4, "hidden": flow_hidden},
            "conditional": True,
        },
        "normal VAE": {"prior": "normal", "options": {}, "conditional": False},
        "vamp VAE": {"prior": "vamp", "options": vamp, "conditional": False},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compare priors (normal, conditional, mixture, VampPrior, flow) of a CVAE on "
        "MNIST: test NLL with k=5000, active units, control score, samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=int, default=6, help="training epochs per row")
    p.add_argument(
        "--rows",
        default="all",
        help="comma-separated rows (normal, conditional, mixture, mixture/class, vamp/class, flow, "
        "'normal VAE', 'vamp VAE') or 'all'",
    )
    p.add_argument("--dataset", default="mnist", help="data set name (see pyro_cvae.load_dataset)")
    p.add_argument("--batch-size", type=int, default=100, help="training mini-batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of training and evaluation")
    p.add_argument(
        "--hidden", type=int_list, default="300,300", help="hidden layer widths of encoder/decoder"
    )
    p.add_argument("--latent-dim", type=int, default=40, help="latent dimensions")
    p.add_argument(
        "--pseudo-inputs",
        type=int,
        default=100,
        help="VampPrior pseudo-inputs P of the unconditional row (paper: 500)",
    )
    p.add_argument(
        "--pseudo-per-class",
        type=int,
        default=10,
        help="VampPrior pseudo-inputs per class of the conditional row",
    )
    p.add_argument(
        "--warmup-epochs", type=int, default=0,
        help="KL warm-up: the KL weight rises linearly from 0 to 1 over these epochs "
        "(Tomczak and Welling: 100 of their epochs)",
    )  # fmt: skip
    p.add_argument("--flow-hidden", type=int, default=128, help="width of each coupling network")
    p.add_argument(
        "--eval-images", type=int, default=300, help="first N test images of the NLL (0: all)"
    )
    p.add_argument(
        "--eval-samples", type=int, default=5000, help="importance samples k of the test NLL"
    )
    p.add_argument("--control-samples", type=int, default=100, help="samples per label (control)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="folder of the per-row run folders (default experiments/runs/priors; "
        "runs/priors_tiny with --tiny)",
    )
    p.add_argument(
        "--results-dir",
        default=None,
        help="folder for priors.md, .json, .png (default experiments/results; "
        "runs/priors_tiny with --tiny)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="smoke-test budget: digits, 200 training images, one epoch, tiny nets, "
        "k=5000 -> 20 on 10 images",
    )
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


def _settings(args) -> dict:
    """The budget and architecture as a plain dict (written beside the results)."""
    s = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "hidden_dims": list(args.hidden),
        "latent_dim": args.latent_dim,
        "pseudo_inputs": args.pseudo_inputs,
        "pseudo_per_class": args.pseudo_per_class,
        "flow_hidden": args.flow_hidden,
        "eval_images": args.eval_images,
        "eval_samples": args.eval_samples,
        "control_samples": args.control_samples,
        "train_subset": None,
        "objective": "elbo",
        "tiny": bool(args.tiny),
    }
    if args.warmup_epochs < 0:
        raise SystemExit(f"--warmup-epochs must be >= 0 (0: no warm-up), got {args.warmup_epochs}")
    if args.warmup_epochs:  # only when asked, so the settings of earlier runs still match
        s["warmup_epochs"] = args.warmup_epochs
    if args.tiny:
        s.update(
            dataset="digits", epochs=1, hidden_dims=[32], latent_dim=4, pseudo_inputs=5,
            pseudo_per_class=2,
            flow_hidden=16, eval_images=10, eval_samples=20, control_samples=10, train_subset=200,
        )  # fmt: skip
    for name in ("epochs", "batch_size", "eval_samples", "latent_dim", "pseudo_inputs",
                 "pseudo_per_class"):  # fmt: skip
        if s[name] < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {s[name]}")
    if s["eval_images"] < 0:
        raise SystemExit(f"--eval-images must be >= 0 (0: all), got {s['eval_images']}")
    table = _rows(s["pseudo_inputs"], s["pseudo_per_class"], s["flow_hidden"])
    names = list(table) if args.rows == "all" else [r.strip() for r in args.rows.split(",")]
    bad = [r for r in names if r not in table]
    if bad:
        raise SystemExit(f"unknown row(s) {bad} in --rows; choose from {', '.join(table)}")
    s["rows"] = {r: table[r] for r in names}
    return s


def _load(s: dict) -> pyro_cvae.Dataset:
    data = pyro_cvae.load_dataset(s["dataset"], binarize="dynamic", seed=s["seed"])
    if s["train_subset"]:
        data = data.subset(s["train_subset"], 100)
    s["x_dim"] = int(torch.Size(data.image_shape).numel())
    return data


def _model(s: dict, row: dict, data) -> pyro_cvae.CVAE:
    cfg = pyro_cvae.ModelConfig(
        image_shape=data.image_shape,
        num_classes=data.num_classes if row["conditional"] else 0,
        latent_dim=s["latent_dim"],
        hidden_dims=tuple(s["hidden_dims"]),
        prior=row["prior"],
        prior_options=dict(row["options"]),
    )
    return pyro_cvae.CVAE(cfg)


def train_row(name: str, s: dict, data, runs_dir: Path, progress: bool):
    """Train (or resume) one row and evaluate it; returns its metrics and sample images."""
    row = s["rows"][name]
    folder = runs_dir / name.replace(" ", "_").replace("/", "_per_")
    pyro.set_rng_seed(s["seed"])
    model = _model(s, row, data)
    key = {k: v for k, v in s.items() if k != "rows"} | {"row": row}
    train_cfg = pyro_cvae.TrainConfig(
        epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], objective="elbo",
        seed=s["seed"], validate_every=0, warmup_epochs=s.get("warmup_epochs", 0),
    )  # fmt: skip

    def train(epochs: int):
        return pyro_cvae.fit(
            model, data, train_cfg.replace(epochs=epochs), out=folder,
            resume=bool(list_checkpoints(folder)), overwrite=True, progress=progress,
        )  # fmt: skip

    def evaluate(history) -> dict:
        model.eval()
        pyro.set_rng_seed(s["seed"])
        test = data.eval_split("test")
        n = s["eval_images"] or len(test)
        y = test.y if row["conditional"] else None
        x_eval, y_eval = test.x[:n], None if y is None else y[:n]
        t0 = time.perf_counter()
        ll = log_likelihood(
            model, x_eval, y_eval, s["eval_samples"], max_floats=2**23, progress=progress
        )
        nll_s = time.perf_counter() - t0
        elbo = elbo_per_image(model, Split(x_eval, test.y[:n]), num_samples=10)
        n_active, _ = active_units(model, test.x, y)
        metrics = {
            "prior": row["prior"],
            "prior_options": row["options"],
            "conditional": row["conditional"],
            **nll_summary(ll),
            "log_px": [round(v, 4) for v in ll.tolist()],  # per image, for paired comparisons
            "elbo": elbo.mean().item(),
            "active_units": n_active,
            "latent_dim": s["latent_dim"],
            "train_loss_last_epoch": history.last.get("train_loss"),
            "epochs_trained": len(history),
            "train_seconds": round(sum(r["seconds"] for r in history.rows), 1),
            "nll_seconds": round(nll_s, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        if row["conditional"]:
            cs = control_score(model, data, num_per_class=s["control_samples"])
            metrics["control_score"] = cs["control_score"]
            metrics["control_per_class"] = cs["per_class"]
            metrics["judge_test_accuracy"] = cs["judge_test_accuracy"]
        metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
        torch.save(model.state_dict(), folder / "model.pt")
        return {"metrics": metrics}

    done = run_row(folder, s["epochs"], train, evaluate, RowFile(folder / "row.json", key))
    # a cached row: its model, as trained then (a row trained now: the same weights)
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    pyro.set_rng_seed(s["seed"])
    return done["metrics"], _samples(model, data)


@torch.no_grad()
def _samples(model, data, per_label: int = 10) -> torch.Tensor:
    """(rows, per_label, C, H, W): one row per label, or ten rows of unconditional samples."""
    if model.config.num_classes:
        return model.sample(torch.arange(data.num_classes), per_label)
    return model.sample(None, 10 * per_label).reshape((10, per_label) + data.image_shape)


def _fmt(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def write_results(s: dict, results: dict, samples: dict, out: Path, wall: float) -> None:
    """Write priors.json, priors.md and priors.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in s.items() if k != "rows"}
    payload = {
        "settings": settings,
        "rows": results,
        "paper_tomczak_welling_2018_nll": PAPER,
        "wall_seconds_this_call": round(wall, 1),
        "row_seconds_total": round(_row_seconds(results), 1),
        "command": " ".join(["python", "experiments/priors.py", *sys.argv[1:]]),
    }
    n_img = s["eval_images"] or "all"
    lines = [
        "# Priors of a CVAE on " + s["dataset"],
        "",
        f"Written by `experiments/priors.py` ({payload['command']}).",
        "",
        f"Budget: {s['epochs']} epochs per row of the ELBO"
        + (f" with a KL warm-up over {s['warmup_epochs']} epochs" if s.get("warmup_epochs") else "")
        + f" (Adam, lr {s['lr']}, batches of "
        f"{s['batch_size']}, dynamic binarisation"
        + (f", first {s['train_subset']} training images" if s["train_subset"] else "")
        + f"); model {s['x_dim']}-{'-'.join(map(str, s['hidden_dims']))}-{s['latent_dim']} "
        "(ReLU MLPs), "
        f"VampPrior with P = {s['pseudo_inputs']} pseudo-inputs (VAE row) or "
        f"{s['pseudo_per_class']} per class (CVAE row). NLL: importance sampling with "
        f"k = {s['eval_samples']} on the first {n_img} test images (one seeded binarisation); "
        "ELBO on the same images (10 samples); active units on the whole test split; control "
        f"score from {s['control_samples']} samples per label. Time: "
        f"{_row_seconds(results) / 60:.1f} min of training and evaluation in all (the rows' "
        "own timings, whichever call ran them) on a CPU shared with other jobs, 1 thread.",
        "",
    ]
    table = []
    for name, m in results.items():
        opts = ", ".join(f"{k}={v}" for k, v in m["prior_options"].items()) or "-"
        table.append([
            name, m["prior"], opts, "y" if m["conditional"] else "none", _fmt(m["nll"]),
            _fmt(m["nll_stderr"]), _paired(results, name), _fmt(-m["elbo"]),
            f"{m['active_units']}/{m['latent_dim']}", _fmt(m.get("control_score"), 3),
            f"{m['train_seconds']:.0f}",
        ])  # fmt: skip
    lines += markdown_table(
        ["row", "prior", "options", "label", "test NLL (nats)", "± s.e.",
         "NLL - baseline (paired s.e.)", "test -ELBO", "active units", "control score",
         "train s"], table,
    )  # fmt: skip
    pending = [name for name in s["rows"] if name not in results]
    lines += [
        "",
        "Every row in the table is final (trained its full budget, then evaluated)."
        + (f" Not finished (still training; run the same command again to continue): "
           f"{', '.join(pending)}." if pending else " No row is still to do."),
    ]  # fmt: skip
    lines += [
        "",
        "Test -ELBO is the bound on the NLL (nats). ± s.e.: standard error of the mean over the "
        "test images. NLL - baseline: the difference from the `normal` row (labelled rows) or the "
        "`normal VAE` row, image by image on the same images, with its standard error (usually "
        "much smaller than the rows' own, since most of the spread is between images). Rows with a "
        "label report -log p(x | y); the two VAE rows report -log p(x). A label carries at most "
        "log 10 = 2.30 nats about an image, so a CVAE's NLL is not directly comparable with an "
        "unconditional one.",
    ]
    if s["dataset"] == "mnist":
        lines += _comparison(results)
    lines += ["", "![conditional samples under each prior](priors.png)", ""]
    write_files(out / "priors", payload, lines)
    _figure(samples, out / "priors.png")


def _row_seconds(results: dict) -> float:
    """Training plus evaluation time recorded by the rows (0 for rows that did not record it)."""
    return sum(
        m["train_seconds"] + m.get("eval_seconds", m["nll_seconds"]) for m in results.values()
    )


def _paired(results: dict, name: str) -> str:
    """'d ± se' of the per-image NLL difference from the row's baseline, or 'n/a'."""
    m = results[name]
    base = "normal" if m["conditional"] else "normal VAE"
    if name == base or base not in results:
        return "-"
    a, b = m.get("log_px"), results[base].get("log_px")
    if not a or not b or len(a) != len(b):
        return "n/a"
    d = -(torch.tensor(a) - torch.tensor(b))  # NLL difference per image
    return f"{d.mean().item():+.2f} ± {standard_error(d):.2f}"


def _comparison(results: dict) -> list[str]:
    """Markdown lines comparing the VAE rows with the MNIST table of Tomczak and Welling."""
    lines = [
        "",
        "## Comparison with Tomczak and Welling (2018)",
        "",
        "Tomczak and Welling, *VAE with a VampPrior* (AISTATS 2018), MNIST results table "
        "(dynamically binarized MNIST, one stochastic layer of 40 units, MLP 300-300, "
        f"k = 5000): standard normal prior {PAPER['normal VAE']} nats, VampPrior (500 "
        f"pseudo-inputs) {PAPER['vamp VAE']} nats, trained with KL warm-up for up to 2000 "
        "epochs with early stopping, and with gated (not ReLU) layers. These two numbers are "
        "quoted from the paper (the issue cites about 85.57 for the VampPrior); they were not "
        "re-checked against the PDF here (no network access).",
        "",
    ]
    for name in ("normal VAE", "vamp VAE"):
        if name in results:
            m = results[name]
            lines.append(
                f"* {name}: ours {_fmt(m['nll'])} nats after {m['epochs_trained']} epochs "
                f"versus {PAPER[name]} in the paper (gap {m['nll'] - PAPER[name]:+.2f})."
            )
    if "normal VAE" in results and "vamp VAE" in results:
        gain = results["normal VAE"]["nll"] - results["vamp VAE"]["nll"]
        lines.append(
            f"* VampPrior gain over the standard normal: ours {gain:+.2f} nats (NLL of vamp "
            f"minus normal, image by image: {_paired(results, 'vamp VAE')}), paper "
            f"{PAPER['normal VAE'] - PAPER['vamp VAE']:+.2f} nats."
        )
    ours = [results[n] for n in ("normal VAE", "vamp VAE") if n in results]
    n_eval = len(ours[0]["log_px"]) if ours else None  # test images of the NLL
    subset = n_eval is not None and n_eval < 10000
    lines += [
        "",
        "Our budget is a small fraction of the paper's"
        + (
            f", and our NLL is measured on the first {n_eval} test images, not "
            "all 10,000 (the first images can be easier or harder than the rest), so the "
            "absolute numbers are not directly comparable with the paper's"
            if subset
            else ", so absolute NLLs are expected to be higher"
        )
        + "; the rows are comparable with one another (same networks, epochs, seed and test "
        "images).",
    ]  # fmt: skip
    return lines


def _figure(samples: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    if not samples:
        return
    n = len(samples)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, imgs) in zip(axes.flat, samples.items()):
        grid = make_grid(imgs.flatten(0, 1).clamp(0, 1), nrow=imgs.shape[1], padding=1,
                         pad_value=1.0)  # fmt: skip
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name + ("" if "VAE" in name else " (row = label)"), fontsize=9)
    fig.suptitle("samples (decoder means) under each prior")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the rows and write the results; returns the exit status."""
    args = build_parser().parse_args(argv)
    s = _settings(args)
    torch.set_num_threads(max(1, args.threads))
    default = Path("runs/priors_tiny") if args.tiny else None
    runs_dir = Path(args.runs_dir) if args.runs_dir else (default or HERE / "runs" / "priors")
    out = Path(args.results_dir) if args.results_dir else (default or HERE / "results")
    t0 = time.perf_counter()
    data = _load(s)
    results, samples = {}, {}
    for name in s["rows"]:
        t_row = time.perf_counter()
        results[name], samples[name] = train_row(name, s, data, runs_dir, args.progress)
        m = results[name]
        print(
            f"{name:>14}: NLL {m['nll']:.2f}  ELBO {m['elbo']:.2f}  AU {m['active_units']}  "
            f"control {_fmt(m.get('control_score'), 3)}  ({time.perf_counter() - t_row:.0f}s)",
            flush=True,
        )
        write_results(s, results, samples, out, time.perf_counter() - t0)
    print(f"wrote {out / 'priors.md'}, priors.json, priors.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
