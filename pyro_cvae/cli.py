"""Command line: ``pyro-cvae train | sample | reconstruct | evaluate``.

Every run writes into one folder (``--out``); commands that use a trained model take that folder
or a checkpoint file (``--run``). ``python -m pyro_cvae`` is the same program.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyro
import torch

from .checkpoint import CheckpointError, resolve_checkpoint
from .config import LIKELIHOODS, NETS, ModelConfig, TrainConfig
from .data import BINARIZATIONS, DATASETS, Dataset, load_dataset
from .evaluate import DEFAULT_MAX_FLOATS

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


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (10, 0.5, true), else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as components=10, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


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
        "--prior-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the prior, repeatable: e.g. components=10, per_class=true, "
        "pseudo_inputs=500, layers=4 (see pyro_cvae.priors)",
    )
    t.add_argument(
        "--latent-dims",
        type=_int_list,
        default=None,
        help="widths of L >= 2 stochastic layers, bottom first, e.g. 100,50: a hierarchical "
        "model (default: one layer of --latent-dim)",
    )
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
    t.add_argument(
        "--semi-supervised",
        action="store_true",
        help="train the M2 model of Kingma et al. (2014) on partial labels, the missing labels "
        "enumerated (objective elbo or iwae); see pyro_cvae.semisupervised",
    )
    t.add_argument(
        "--labels",
        type=_positive_int,
        default=None,
        help="with --semi-supervised: training images that keep their label, balanced over "
        "classes (default 100 unless --label-fraction)",
    )
    t.add_argument(
        "--label-fraction",
        type=float,
        default=None,
        help="with --semi-supervised: share of training images that keep their label",
    )
    t.add_argument(
        "--class-weight",
        type=float,
        default=None,
        help="with --semi-supervised: Kingma's alpha, total weight of the classification loss "
        "(default 0.1 N)",
    )

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
        "--condition",
        action="append",
        default=None,
        help="attribute models: the condition to generate, e.g. digit=5,color=red "
        "(repeatable, one row each; unnamed continuous attributes take their default)",
    )
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
    e.add_argument(
        "--num-images",
        type=_positive_int,
        default=None,
        help="evaluate only the first N images of the split (default: all)",
    )
    e.add_argument(
        "--max-floats",
        type=_positive_int,
        default=DEFAULT_MAX_FLOATS,
        help="floats of decoder output per chunk: bounds memory (default 2^22, 16 MiB)",
    )
    e.add_argument("--out", default=None, help="JSON path (default: <run>/metrics.json)")
    e.add_argument("--seed", type=int, default=0, help="random seed (0)")
    e.add_argument("--data-dir", default=None, help="data folder, as for train")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="(cpu)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_application_parsers(sub)
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
    elif model.config.condition_dim:  # vector conditions: those of the first test images
        conds = test.y[: min(10, len(test))]
        plots.samples_grid(model.sample(conds, 10), None,
                           title="samples (one row per test condition)",
                           path=folder / "samples.png")  # fmt: skip
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
    labels = test.y if test.y.dim() == 1 else None
    plots.latent_scatter(loc, labels, data.class_names, path=folder / "latent.png")
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
    from .attributes import SCHEMAS, save_schema
    from .evaluate import evaluate
    from .models import build_model
    from .train import fit

    schema = SCHEMAS.get(args.dataset)  # attribute data sets: y is a condition vector
    binarize = args.binarize or (
        "dynamic" if args.likelihood == "bernoulli" and schema is None else "none"
    )
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
        num_classes=0 if (args.unconditional or schema is not None) else data.num_classes,
        condition_dim=schema.width if (schema is not None and not args.unconditional) else 0,
        latent_dim=args.latent_dim or (args.latent_dims or (50 if big else 8,))[0],
        latent_dims=args.latent_dims or (), prior_options=dict(args.prior_option),
        hidden_dims=args.hidden or ((400,) if big else (256, 256)),
        net=args.net, likelihood=args.likelihood, x_scale=args.x_scale,
        learn_x_scale=args.learn_x_scale, prior=args.prior,
    )  # fmt: skip
    if args.semi_supervised or args.labels or args.label_fraction or args.class_weight:
        from .semisupervised import cmd_train_semisupervised

        return cmd_train_semisupervised(args, data, model_cfg)
    pyro.set_rng_seed(args.seed)
    out = Path(args.out)
    if args.resume:
        from .checkpoint import load_latest_good

        if load_latest_good(out) is None:
            raise CheckpointError(f"--resume given but {out} holds no checkpoint; drop --resume")
    model = build_model(model_cfg)
    history = fit(model, data, train_cfg, out=out, resume=args.resume,
                  overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the results
        return 0
    extra = {}
    if schema is not None:
        save_schema(out, schema)
        extra["attributes"] = schema.to_dict()
    model.save(out / "model.pt", data={"name": data.name, "binarize": data.binarize}, **extra)
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
    if args.condition or cfg.condition_dim:
        return _sample_conditions(args, model, folder)
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
                       classify_samples=args.classify_samples, progress=not args.quiet,
                       num_images=args.num_images, max_floats=args.max_floats)  # fmt: skip
    metrics["checkpoint"] = str(resolve_checkpoint(args.run))
    out = Path(args.out) if args.out else _run_folder(args.run) / "metrics.json"
    out.write_text(json.dumps(metrics, indent=2))
    print(f"{args.split} metrics (nats per image), K={args.num_samples}:")
    _print_metrics(metrics)
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------ applications: transfer, interpolate, score


def _index_pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two comma-separated integers such as 0,5, got {text!r}"
        ) from None
    if a < 0 or b < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return a, b


def _add_application_parsers(sub) -> None:
    from .applications import INTERPOLATIONS

    def common(p, default_png: str) -> None:
        p.add_argument("--run", required=True, help="run folder or checkpoint file")
        p.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
        p.add_argument("--out", default=None, help=f"PNG path (default: <run>/{default_png})")
        p.add_argument("--seed", type=int, default=0, help="random seed (0)")
        p.add_argument("--data-dir", default=None, help="data folder, as for train")

    tr = sub.add_parser(
        "transfer",
        help="style transfer: redraw images as every other label",
        description="Encode images with their own label and decode the same latent with every "
        "label (or the --condition vectors of an attribute model): the style stays, the class "
        "changes. Writes a PNG (one row per image: the image, then one column per label).",
    )
    common(tr, "transfer.png")
    tr.add_argument("-n", "--num", type=_positive_int, default=8, help="images, one row each (8)")
    tr.add_argument(
        "--label", type=int, action="append", default=None,
        help="label to decode with (repeatable; default: every label)",
    )  # fmt: skip
    tr.add_argument(
        "--condition", action="append", default=None,
        help="attribute models: a condition to decode with, e.g. color=red,digit=5 (repeatable)",
    )  # fmt: skip
    tr.add_argument(
        "--npz", default=None, help="also write an .npz with images (N, L, C, H, W) and z (N, D)"
    )

    ip = sub.add_parser(
        "interpolate",
        help="interpolate between two images or two labels",
        description="Between two images: encode both, interpolate the latent (linearly or "
        "spherically) and decode with one fixed label. With --labels A,B: keep the latent of "
        "the first image and move the label from A to B. Writes an image strip.",
    )
    common(ip, "interpolation.png")
    ip.add_argument(
        "--images", type=_index_pair, default=(0, 1),
        help="indices I,J of two images of --split (default 0,1)",
    )  # fmt: skip
    ip.add_argument(
        "--labels", type=_index_pair, default=None,
        help="A,B: interpolate the label from A to B at the latent of image I instead",
    )  # fmt: skip
    ip.add_argument(
        "--label", type=int, default=None,
        help="label every point is decoded with (default: the label of image I)",
    )  # fmt: skip
    ip.add_argument(
        "--condition", action="append", default=None,
        help="attribute models: one condition to decode with, or two to interpolate between",
    )  # fmt: skip
    ip.add_argument(
        "--method", default="linear", choices=list(INTERPOLATIONS),
        help="path between the two latents (default linear)",
    )  # fmt: skip
    ip.add_argument("--steps", type=int, default=10, help="points, end points included (10)")
    ip.add_argument("--npz", default=None, help="also write an .npz with images (steps, C, H, W)")

    sc = sub.add_parser(
        "score",
        help="anomaly scores: -log p(x) per image",
        description="Score every image by its importance-sampled -log p(x) in nats (larger: "
        "more anomalous). A label model marginalises the label, p(x) = sum_y p(y) p(x|y), "
        "unless --given-label. Writes a CSV (index, label, score) and a histogram PNG beside it.",
    )
    sc.add_argument("--run", required=True, help="run folder or checkpoint file")
    sc.add_argument("--split", default="test", choices=["train", "val", "test"], help="(test)")
    sc.add_argument("-n", "--num", type=_positive_int, default=None, help="first N images (all)")
    sc.add_argument(
        "--images", default=None,
        help=".npz with an array 'images' (N, C, H, W) in [0, 1] to score instead of --split "
        "(and 'labels' for --given-label or an attribute model)",
    )  # fmt: skip
    sc.add_argument(
        "--num-samples", "-k", type=_positive_int, default=100,
        help="K, importance samples per image (and per label) (100)",
    )  # fmt: skip
    sc.add_argument(
        "--given-label", action="store_true",
        help="score -log p(x | y) with each image's own label instead of the marginal",
    )  # fmt: skip
    sc.add_argument("--out", default=None, help="CSV path (default: <run>/scores.csv)")
    sc.add_argument("--seed", type=int, default=0, help="random seed (0)")
    sc.add_argument("--data-dir", default=None, help="data folder, as for train")


def _attribute_conditions(model, folder: Path, texts) -> tuple[torch.Tensor, list[str]]:
    """Condition vectors (M, width) from ``digit=5,color=red`` texts and the run's schema."""
    from .attributes import load_schema

    schema = load_schema(folder)
    if schema.width != model.config.condition_dim:
        raise ValueError(
            f"the attribute schema of {folder} has width {schema.width} but the model expects "
            f"condition_dim={model.config.condition_dim}; the attributes.json belongs to "
            "another model"
        )
    values = [schema.parse(t) for t in texts]
    names = [",".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in
                      row.items()) for row in values]  # fmt: skip
    return schema.encode(values).to(model.device), names


def _need_conditions(model, folder: Path, given, flag: str = "--condition") -> None:
    if given:
        return
    from .attributes import load_schema

    schema = load_schema(folder)
    example = ",".join(f"{a.name}={a.values[0]}" for a in schema.attributes if hasattr(a, "values"))
    raise ValueError(
        f"this model is conditioned on attributes ({', '.join(schema.names)}); pass "
        f"{flag}, e.g. {flag} {example}"
    )


def _sample_conditions(args, model, folder: Path) -> int:
    from . import plots

    if not model.config.condition_dim:
        raise ValueError(
            "--condition is for attribute models (trained on condition vectors); this model "
            "is conditioned on labels, use --label"
        )
    if args.label:
        raise ValueError("an attribute model takes --condition, not --label; drop --label")
    _need_conditions(model, folder, args.condition)
    c, names = _attribute_conditions(model, folder, args.condition)
    images = model.sample(c, args.num, mean=not args.draw, temperature=args.temperature)
    out = Path(args.out) if args.out else folder / "samples.png"
    plots.samples_grid(images, names, title="samples", path=out)  # (M, n, C, H, W)
    print(f"wrote {out}")
    if args.npz:
        flat = images.flatten(0, 1).cpu().numpy()
        cond = np.repeat(c.cpu().numpy(), images.shape[1], axis=0)
        np.savez(args.npz, images=flat, conditions=cond)
        print(f"wrote {args.npz} (images {flat.shape}, conditions {cond.shape})")
    return 0


def _pick(split, indices, what: str = "--images"):
    bad = [i for i in indices if i >= len(split)]
    if bad:
        raise ValueError(
            f"{what} index {bad[0]} is out of range: the split has {len(split)} images "
            f"(indices 0..{len(split) - 1})"
        )
    idx = torch.tensor(list(indices))
    return split.x[idx], split.y[idx]


def _check_label(model, label: int, flag: str) -> None:
    C = model.config.num_classes
    if not 0 <= label < C:
        raise ValueError(f"{flag} {label} is out of range: labels are 0..{C - 1}")


def cmd_transfer(args) -> int:
    from . import plots
    from .applications import transfer
    from .models import load

    model = load(args.run)
    pyro.set_rng_seed(args.seed)
    folder = _run_folder(args.run)
    cfg = model.config
    if not cfg.cond_width:
        raise ValueError("style transfer needs a conditional model; this run is a plain VAE")
    data = _data_for_run(args.run, args.data_dir)
    split = data.eval_split(args.split)
    x, y = _pick(split, range(min(args.num, len(split))))
    if cfg.condition_dim:
        _need_conditions(model, folder, args.condition)
        labels, names = _attribute_conditions(model, folder, args.condition)
    else:
        if args.condition:
            raise ValueError("--condition is for attribute models; this model takes --label")
        chosen = args.label if args.label is not None else list(range(cfg.num_classes))
        for v in chosen:
            _check_label(model, v, "--label")
        labels = torch.tensor(chosen)
        names = [data.class_names[v] for v in chosen]
    result = transfer(model, x, y, labels)
    out = Path(args.out) if args.out else folder / "transfer.png"
    plots.transfer_grid(x, result.images, names, path=out)
    print(f"wrote {out} ({x.shape[0]} images x {len(names)} labels)")
    if args.npz:
        np.savez(args.npz, images=result.images.cpu().numpy(), z=result.z.cpu().numpy())
        print(f"wrote {args.npz} (images {tuple(result.images.shape)})")
    return 0


def cmd_interpolate(args) -> int:
    from . import plots
    from .applications import interpolate_images, interpolate_labels
    from .models import load

    model = load(args.run)
    pyro.set_rng_seed(args.seed)
    folder = _run_folder(args.run)
    cfg = model.config
    data = _data_for_run(args.run, args.data_dir)
    (x0, x1), (y0, y1) = _pick(data.eval_split(args.split), args.images)
    if not cfg.cond_width:
        y0 = y1 = None
        if args.labels or args.label is not None or args.condition:
            raise ValueError("this model is unconditional; drop --labels, --label, --condition")
    conditions = None
    if cfg.condition_dim and args.condition:
        conditions, _ = _attribute_conditions(model, folder, args.condition)
    elif args.condition:
        raise ValueError("--condition is for attribute models; this model takes --label(s)")
    label_path = args.labels is not None or (conditions is not None and len(conditions) == 2)
    if label_path:
        if cfg.condition_dim:
            if conditions is None or len(conditions) != 2:
                raise ValueError("an attribute model interpolates between two --condition values")
            a, b = conditions[0], conditions[1]
            title = f"condition {args.condition[0]} -> {args.condition[1]}"
        else:
            for v in args.labels:
                _check_label(model, v, "--labels")
            a, b = args.labels
            title = f"label {data.class_names[a]} -> {data.class_names[b]}"
        z, _ = model.encode(x0[None], y0[None])
        images = interpolate_labels(model, z[0], a, b, steps=args.steps)
        strip = torch.cat([x0[None], images])
        title = f"image {args.images[0]} | {title} at its latent"
    else:
        label = y0
        if conditions is not None:
            if len(conditions) != 1:
                raise ValueError("give one --condition to decode with, or two to interpolate")
            label = conditions[0]
        elif args.label is not None:
            _check_label(model, args.label, "--label")
            label = torch.tensor(args.label)
        images = interpolate_images(
            model, x0, x1, y0, y1, label=label, steps=args.steps, method=args.method
        )
        strip = torch.cat([x0[None], images, x1[None]])
        title = f"image {args.images[0]} | {args.method} interpolation | image {args.images[1]}"
    out = Path(args.out) if args.out else folder / "interpolation.png"
    plots.image_strip(strip, title=title, path=out)
    print(f"wrote {out} ({args.steps} steps)")
    if args.npz:
        np.savez(args.npz, images=images.cpu().numpy())
        print(f"wrote {args.npz} (images {tuple(images.shape)})")
    return 0


def _images_from_npz(path: str, model) -> tuple[torch.Tensor, torch.Tensor | None]:
    with np.load(path) as f:
        if "images" not in f:
            raise ValueError(f"{path} has no array 'images'; save one with np.savez(..., images=x)")
        x = torch.from_numpy(np.asarray(f["images"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(f["labels"])) if "labels" in f else None
    if y is not None and model.config.num_classes:
        y = y.long()
    elif y is not None:
        y = y.float()
    return x, y


def cmd_score(args) -> int:
    import csv

    from . import plots
    from .applications import anomaly_scores
    from .models import load

    model = load(args.run)
    pyro.set_rng_seed(args.seed)
    folder = _run_folder(args.run)
    cfg = model.config
    if args.images:
        x, y = _images_from_npz(args.images, model)
    else:
        split = _data_for_run(args.run, args.data_dir).eval_split(args.split)
        x, y = split.x, split.y
    if args.num:
        x, y = x[: args.num], None if y is None else y[: args.num]
    use_y = cfg.condition_dim or (cfg.num_classes and args.given_label)
    if use_y and y is None:
        raise ValueError(
            f"{args.images} has no array 'labels'; this model needs them"
            + (" (or drop --given-label)" if cfg.num_classes else "")
        )
    if not cfg.cond_width and args.given_label:
        raise ValueError("this model is unconditional; drop --given-label")
    scores = anomaly_scores(model, x, y if use_y else None, args.num_samples)
    out = Path(args.out) if args.out else folder / "scores.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    label_col = [int(v) for v in y] if y is not None and y.dim() == 1 else [""] * len(scores)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "neg_log_px"])
        for i, (lab, s) in enumerate(zip(label_col, scores.tolist())):
            w.writerow([i, lab, f"{s:.6f}"])
    png = out.with_suffix(".png")
    what = "-log p(x|y)" if use_y else "-log p(x)"
    plots.score_histogram({"images": scores}, xlabel=f"{what} (nats), K={args.num_samples}",
                          path=png)  # fmt: skip
    print(f"{len(scores)} images: mean {what} = {scores.mean().item():.3f} nats "
          f"(min {scores.min().item():.3f}, max {scores.max().item():.3f})")  # fmt: skip
    print(f"wrote {out} and {png}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "evaluate": cmd_evaluate,
    "transfer": cmd_transfer,
    "interpolate": cmd_interpolate,
    "score": cmd_score,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyro-cvae``; returns the exit status."""
    from .train import CheckpointWriteError, NonFiniteLossError, RunFolderError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        RunFolderError,
        NonFiniteLossError,
        CheckpointWriteError,
    ) as e:
        print(f"pyro-cvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"pyro-cvae {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
