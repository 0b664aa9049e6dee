"""Command line: ``pyro-cvae train | sample | reconstruct | evaluate``.

Every run writes into one folder (``--out``); commands that use a trained model take that folder
or a checkpoint file (``--run``). ``python -m pyro_cvae`` is the same program.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyro
import torch

from .checkpoint import CheckpointError, resolve_checkpoint
from .config import LIKELIHOODS, NETS, ModelConfig, TrainConfig
from .data import BINARIZATIONS, DATASETS, Dataset, load_dataset

__all__ = ["main", "build_parser"]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected positive integers such as 400,400, got {text!r}"
        )
    return values


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="digits",
        choices=list(DATASETS),
        help="data set (default: digits, shipped with scikit-learn)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with torchvision-style raw data (default: $PYRO_CVAE_DATA or "
        "~/.cache/pyro_cvae)",
    )
    p.add_argument(
        "--binarize",
        default=None,
        choices=BINARIZATIONS,
        help="dynamic: new Bernoulli draw per batch; fixed: one seeded draw; none: "
        "grey levels (default: dynamic for bernoulli, none otherwise)",
    )
    p.add_argument(
        "--train-size",
        type=_positive_int,
        default=None,
        help="use only the first N training images (and N validation/test images)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-cvae`` (every flag documented)."""
    from .objectives import OBJECTIVES
    from .priors import PRIORS

    parser = argparse.ArgumentParser(
        prog="pyro-cvae",
        description="Conditional variational autoencoders in Pyro: train, sample, reconstruct, "
        "evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a model and write checkpoints, metrics and pictures",
        description="Train a (conditional) VAE with SVI. Writes checkpoints every "
        "epoch, metrics.csv, and figures into --out.",
    )
    _add_data_args(t)
    t.add_argument("--out", default="runs/digits", help="run folder (default: runs/digits)")
    t.add_argument("--epochs", type=_positive_int, default=30, help="training epochs (default 30)")
    t.add_argument("--batch-size", type=_positive_int, default=128, help="images per step (128)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (0)")
    t.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda", "auto"],
        help="where to train; auto picks CUDA when available (default cpu)",
    )
    t.add_argument(
        "--objective",
        default="elbo",
        choices=list(OBJECTIVES),
        help="training bound (default elbo)",
    )
    t.add_argument(
        "--particles",
        "-k",
        type=_positive_int,
        default=1,
        help="K, samples of z per image (default 1)",
    )
    t.add_argument("--alpha", type=float, default=0.5, help="alpha of the renyi objective (0.5)")
    t.add_argument("--beta", type=float, default=1.0, help="KL weight of beta-VAE (default 1)")
    t.add_argument(
        "--warmup-epochs",
        type=int,
        default=0,
        help="epochs of linear KL warm-up from 0 to beta (default 0: none)",
    )
    t.add_argument(
        "--latent-dim",
        type=_positive_int,
        default=None,
        help="latent dimensions (default 8 for digits, 50 for 28x28 data)",
    )
    t.add_argument(
        "--hidden",
        type=_int_list,
        default=None,
        help="hidden layer widths, comma-separated (default 256,256 / 400)",
    )
    t.add_argument("--net", default="mlp", choices=NETS, help="network family (default mlp)")
    t.add_argument(
        "--likelihood",
        default="bernoulli",
        choices=LIKELIHOODS,
        help="observation model p(x | z, y) (default bernoulli)",
    )
    t.add_argument(
        "--x-scale", type=float, default=0.1, help="gaussian likelihood: noise scale (default 0.1)"
    )
    t.add_argument("--learn-x-scale", action="store_true", help="gaussian: learn the noise scale")
    t.add_argument("--prior", default="normal", choices=list(PRIORS), help="prior (normal)")
    t.add_argument(
        "--unconditional",
        action="store_true",
        help="ignore the labels: a plain VAE from the same code",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    t.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip batches whose loss is NaN/Inf instead of stopping",
    )
    t.add_argument(
        "--keep-checkpoints",
        type=_positive_int,
        default=3,
        help="checkpoints kept in --out (default 3)",
    )
    t.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        help="K for the test log-likelihood after training (0: skip evaluation)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser(
        "sample",
        help="generate images for a label",
        description="Generate images from a trained model and save them as PNG "
        "(and .npz with --npz).",
    )
    s.add_argument("--run", required=True, help="run folder or checkpoint file")
    s.add_argument(
        "--label",
        type=int,
        action="append",
        default=None,
        help="label to generate (repeatable; default: every label, one row each)",
    )
    s.add_argument("-n", "--num", type=_positive_int, default=10, help="images per label (10)")
    s.add_argument("--temperature", type=float, default=1.0, help="scale of the prior draw (1)")
    s.add_argument(
        "--draw",
        action="store_true",
        help="draw pixels from p(x | z, y) instead of showing its mean",
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (0)")
    s.add_argument("--out", default=None, help="PNG path (default: <run>/samples.png)")
    s.add_argument(
        "--npz",
        default=None,
        help="also write an .npz with arrays images (N, C, H, W) and labels (N,)",
    )

    r = sub.add_parser(
        "reconstruct",
        help="reconstruct test images",
        description="Encode test images and decode the posterior mean.",
    )
    r.add_argument("--run", required=True, help="run folder or checkpoint file")
    r.add_argument("-n", "--num", type=_positive_int, default=10, help="images (10)")
    r.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
    r.add_argument("--out", default=None, help="PNG path (default: <run>/reconstructions.png)")
    r.add_argument("--data-dir", default=None, help="data folder, as for train")

    e = sub.add_parser(
        "evaluate",
        help="test bounds, log-likelihood, active units, control",
        description="Evaluate a trained model: ELBO, importance-sampled NLL "
        "(nats and bits/dim), KL, active units, conditional control score. "
        "Prints and writes JSON.",
    )
    e.add_argument("--run", required=True, help="run folder or checkpoint file")
    e.add_argument(
        "--num-samples",
        "-k",
        type=_positive_int,
        default=1000,
        help="K for the importance-sampled log-likelihood (IWAE paper: 5000)",
    )
    e.add_argument("--split", default="test", choices=["val", "test"], help="(test)")
    e.add_argument(
        "--classify-samples",
        type=int,
        default=0,
        help="K per label for the generative classifier p(y|x) (0: skip; costly)",
    )
    e.add_argument("--out", default=None, help="JSON path (default: <run>/metrics.json)")
    e.add_argument("--seed", type=int, default=0, help="random seed (0)")
    e.add_argument("--data-dir", default=None, help="data folder, as for train")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="(cpu)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


# --------------------------------------------------------------------------------- helpers


def _load_data(name: str, binarize: str, data_dir, seed: int, train_size: int | None) -> Dataset:
    data = load_dataset(name, binarize=binarize, data_dir=data_dir, seed=seed)
    if train_size:
        data = data.subset(train_size)
        data.meta["train_size"] = train_size
    return data


def _run_folder(run: str) -> Path:
    ckpt = resolve_checkpoint(run)
    return ckpt.parent


def _data_for_run(run: str, data_dir=None) -> Dataset:
    folder = _run_folder(run)
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{folder} has no config.json; was it written by `pyro-cvae train`?")
    spec = json.loads(cfg_path.read_text())["data"]
    return _load_data(spec["name"], spec["binarize"], data_dir, 0, spec.get("train_size"))


def write_figures(model, data: Dataset, folder: Path, rows=None) -> list[Path]:
    """Write the standard pictures of a run into ``folder``; returns their paths."""
    from . import plots

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    test = data.eval_split("test").to(model.device)
    y = test.y if model.config.cond_width else None
    if model.config.num_classes:
        labels = torch.arange(model.config.num_classes, device=model.device)
        plots.samples_grid(model.sample(labels, 10), data.class_names, path=folder / "samples.png")
    else:
        plots.image_grid(
            model.sample(None, 50), nrow=10, title="samples", path=folder / "samples.png"
        )
    written.append(folder / "samples.png")
    n = min(10, len(test))
    plots.reconstructions(
        test.x[:n],
        model.reconstruct(test.x[:n], None if y is None else y[:n]),
        path=folder / "reconstructions.png",
    )
    written.append(folder / "reconstructions.png")
    loc, _ = model.encode(test.x, y)
    plots.latent_scatter(loc, test.y, data.class_names, path=folder / "latent.png")
    written.append(folder / "latent.png")
    if rows:
        plots.training_curves(rows, path=folder / "curves.png")
        written.append(folder / "curves.png")
    return written


def _print_metrics(metrics: dict) -> None:
    for k, v in metrics.items():
        if isinstance(v, float):
            print(f"  {k:>26}: {v:.4f}")
        elif not isinstance(v, list):
            print(f"  {k:>26}: {v}")


# -------------------------------------------------------------------------------- commands


def cmd_train(args) -> int:
    from .evaluate import evaluate
    from .models import CVAE
    from .train import fit

    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    # validate every setting before touching data or files
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, objective=args.objective,
        particles=args.particles, alpha=args.alpha, beta=args.beta,
        warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device,
        keep_checkpoints=args.keep_checkpoints, skip_nonfinite=args.skip_nonfinite,
    )  # fmt: skip
    data = _load_data(args.dataset, binarize, args.data_dir, args.seed, args.train_size)
    big = data.image_shape[1] >= 28
    model_cfg = ModelConfig(
        image_shape=data.image_shape,
        num_classes=0 if args.unconditional else data.num_classes,
        latent_dim=args.latent_dim or (50 if big else 8),
        hidden_dims=args.hidden or ((400,) if big else (256, 256)),
        net=args.net, likelihood=args.likelihood, x_scale=args.x_scale,
        learn_x_scale=args.learn_x_scale, prior=args.prior,
    )  # fmt: skip
    pyro.set_rng_seed(args.seed)
    out = Path(args.out)
    if args.resume:
        from .checkpoint import load_latest_good

        if load_latest_good(out) is None:
            raise CheckpointError(f"--resume given but {out} holds no checkpoint; drop --resume")
    model = CVAE(model_cfg)
    history = fit(model, data, train_cfg, out=out, resume=args.resume,
                  overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    model.save(out / "model.pt", data={"name": data.name, "binarize": data.binarize})
    figures = write_figures(model, data, out, history.rows)
    print(f"trained {len(history)} epochs; run folder {out}")
    if args.eval_samples > 0:
        metrics = evaluate(model, data, num_samples=args.eval_samples, progress=not args.quiet)
        metrics["train_seconds"] = sum(r["seconds"] for r in history.rows)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("test metrics (nats per image):")
        _print_metrics(metrics)
    print("figures: " + ", ".join(str(p) for p in figures))
    return 0


def cmd_sample(args) -> int:
    from . import plots
    from .models import load

    model = load(args.run)
    pyro.set_rng_seed(args.seed)
    folder = _run_folder(args.run)
    cfg = model.config
    if cfg.num_classes:
        labels = args.label if args.label is not None else list(range(cfg.num_classes))
        bad = [v for v in labels if not 0 <= v < cfg.num_classes]
        if bad:
            raise ValueError(
                f"--label {bad[0]} is out of range: labels are 0..{cfg.num_classes - 1}"
            )
        y = torch.tensor(labels)
        images = model.sample(y, args.num, mean=not args.draw, temperature=args.temperature)
        names = [str(v) for v in labels]
    else:
        if args.label:
            raise ValueError("this model is unconditional; drop --label")
        images = model.sample(None, args.num, mean=not args.draw, temperature=args.temperature)[
            None
        ]
        y = torch.tensor([-1])
        names = None
    out = Path(args.out) if args.out else folder / "samples.png"
    plots.samples_grid(images, names, title="samples", path=out)
    print(f"wrote {out}")
    if args.npz:
        flat = images.flatten(0, 1).cpu().numpy()
        lab = np.repeat(y.numpy(), images.shape[1])
        np.savez(args.npz, images=flat, labels=lab)
        print(f"wrote {args.npz} (images {flat.shape}, labels {lab.shape})")
    return 0


def cmd_reconstruct(args) -> int:
    from . import plots
    from .models import load

    model = load(args.run)
    data = _data_for_run(args.run, args.data_dir)
    split = data.eval_split(args.split)
    n = min(args.num, len(split))
    y = split.y[:n] if model.config.cond_width else None
    out = Path(args.out) if args.out else _run_folder(args.run) / "reconstructions.png"
    plots.reconstructions(split.x[:n], model.reconstruct(split.x[:n], y), n=n, path=out)
    print(f"wrote {out}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate
    from .models import load
    from .train import resolve_device

    device = resolve_device(args.device)
    model = load(args.run, map_location=device)
    data = _data_for_run(args.run, args.data_dir)
    pyro.set_rng_seed(args.seed)
    metrics = evaluate(model, data, num_samples=args.num_samples, split=args.split,
                       classify_samples=args.classify_samples, progress=not args.quiet)  # fmt: skip
    metrics["checkpoint"] = str(resolve_checkpoint(args.run))
    out = Path(args.out) if args.out else _run_folder(args.run) / "metrics.json"
    out.write_text(json.dumps(metrics, indent=2))
    print(f"{args.split} metrics (nats per image), K={args.num_samples}:")
    _print_metrics(metrics)
    print(f"wrote {out}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "evaluate": cmd_evaluate,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyro-cvae``; returns the exit status."""
    from .train import NonFiniteLossError, RunFolderError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RunFolderError, NonFiniteLossError) as e:
        print(f"pyro-cvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"pyro-cvae {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
