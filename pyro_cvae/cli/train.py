"""``pyro-cvae train``: train a model into a run folder; checkpoints, metrics, figures, test metrics.

Builds the model with :meth:`pyro_cvae.ModelConfig.for_data` (the same defaults as the API), the
M2 model with ``--semi-supervised``, and trains it with :func:`pyro_cvae.fit`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyro

from ..checkpoint import CheckpointError, load_latest_good
from ..data import default_binarize, is_molecule_data, load_dataset, save_schema, save_table
from ..evaluate import condition_ignored, semisupervised_metrics
from ..figures import write_figures
from ..infer.objectives import OBJECTIVES
from ..judge import evaluate, label_diversity
from ..models import (
    LIKELIHOODS,
    M2,
    MOLECULE_ENCODERS,
    NETS,
    ModelConfig,
    MoleculeConfig,
    build_model,
    save_safetensors,
)
from ..nn.nets import ACTIVATIONS
from ..nn.priors import PRIORS
from ..train import SemiSupervisedConfig, SemiSupervisedFamily, TrainConfig, fit
from ._common import add_data_args, int_list, key_value, positive_int, print_metrics, unit
from ._molecules import train_molecules

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train a model and write checkpoints, metrics and pictures",
        description="Train a (conditional) VAE with SVI. Writes checkpoints every "
        "epoch, metrics.csv, and figures into --out.",
    )
    add_data_args(t)
    t.add_argument(
        "--out", default=None,
        help="run folder (default: runs/<data set>, e.g. runs/mnist; runs/<name> for --data)",
    )  # fmt: skip
    t.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default 30)")
    t.add_argument("--batch-size", type=positive_int, default=128, help="images per step (128)")
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
        type=positive_int,
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
        type=positive_int,
        default=None,
        help="latent dimensions (default 8 for digits, 50 for 28x28 data)",
    )
    t.add_argument(
        "--hidden",
        type=int_list,
        default=None,
        help="hidden layer widths, comma-separated (default: 400 for 28x28 images, else 256,256)",
    )
    t.add_argument("--net", default="mlp", choices=list(NETS), help="network family (default mlp)")
    t.add_argument(
        "--activation", default="relu", choices=list(ACTIVATIONS),
        help="activation of the hidden layers (default relu; the IWAE paper uses tanh)",
    )  # fmt: skip
    t.add_argument(
        "--dropout", type=float, default=0.0, metavar="P",
        help="dropout probability after each hidden layer of encoder and decoder (default 0)",
    )  # fmt: skip
    t.add_argument(
        "--batch-norm", action="store_true",
        help="batch norm on the hidden layers of encoder and decoder (running statistics at "
        "evaluation)",
    )  # fmt: skip
    t.add_argument(
        "--no-lean", action="store_true",
        help="always use Pyro's full trace path for elbo/iwae/renyi (default: the lean path, "
        "same loss and gradient, where the model qualifies)",
    )  # fmt: skip
    t.add_argument(
        "--adam-eps", type=float, default=1e-8,
        help="epsilon of Adam (default 1e-8, torch's; the IWAE paper uses 1e-4)",
    )  # fmt: skip
    t.add_argument(
        "--likelihood",
        default=None,
        choices=list(LIKELIHOODS),
        help="observation model p(x | z, y) (default: table for tables, gaussian for data "
        "outside [0, 1], else bernoulli)",
    )
    t.add_argument(
        "--x-scale", type=float, default=0.1, help="gaussian likelihood: noise scale (default 0.1)"
    )
    t.add_argument("--learn-x-scale", action="store_true", help="gaussian: learn the noise scale")
    t.add_argument("--prior", default="normal", choices=list(PRIORS), help="prior (normal)")
    t.add_argument(
        "--prior-option",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the prior, repeatable: e.g. components=10, per_class=true, "
        "pseudo_inputs=500, layers=4 (see pyro_cvae.nn.priors)",
    )
    t.add_argument(
        "--latent-dims",
        type=int_list,
        default=None,
        help="widths of L >= 2 stochastic layers, bottom first, e.g. 100,50: a hierarchical "
        "model (default: one layer of --latent-dim)",
    )
    t.add_argument(
        "--unconditional",
        action="store_true",
        help="ignore the labels: a plain VAE from the same code",
    )
    t.add_argument(
        "--word-dropout", type=float, default=None, metavar="P",
        help="molecule runs (--dataset moses): probability that a decoder input token becomes "
        f"<unk> in training (default {MoleculeConfig.word_dropout}, Bowman et al. 2016)",
    )  # fmt: skip
    t.add_argument(
        "--embed-dim", type=positive_int, default=None,
        help="molecule runs (--dataset moses): token embedding width "
        f"(default {MoleculeConfig.embed_dim})",
    )  # fmt: skip
    t.add_argument(
        "--encoder", default=None, choices=list(MOLECULE_ENCODERS),
        help="molecule runs (--dataset moses): the guide's network over the tokens, a GRU or "
        f"1-D convolutions (default {MoleculeConfig.encoder})",
    )  # fmt: skip
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    t.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip batches whose loss is NaN/Inf instead of stopping",
    )
    t.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=3,
        help="checkpoints kept in --out (default 3)",
    )
    t.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        help="K for the test log-likelihood after training (default 1000; 0: skip evaluation)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument(
        "--tensorboard", action="store_true",
        help="log every step's loss and every epoch's metrics for TensorBoard into "
        "<out>/tensorboard (needs the tensorboard package)",
    )  # fmt: skip
    t.add_argument(
        "--semi-supervised",
        action="store_true",
        help="train the M2 model of Kingma et al. (2014) on partial labels, the missing labels "
        "enumerated (objective elbo or iwae); see pyro_cvae.infer.semisupervised",
    )
    t.add_argument(
        "--labels",
        type=positive_int,
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


def _semi_supervised(args) -> bool:
    semi_flags = args.labels or args.label_fraction or args.class_weight
    if semi_flags and not args.semi_supervised:
        raise ValueError(
            "--labels, --label-fraction and --class-weight describe semi-supervised training; "
            "add --semi-supervised (or drop them to train a fully supervised CVAE)"
        )
    return args.semi_supervised


def _check_flags(args) -> None:
    if args.warmup_epochs > args.epochs:
        raise ValueError(
            f"--warmup-epochs {args.warmup_epochs} is longer than --epochs {args.epochs}: the KL "
            "weight would never reach --beta. Lower --warmup-epochs or raise --epochs"
        )
    if args.eval_samples < 0:
        raise ValueError(
            f"--eval-samples must be >= 0 (0 skips the test evaluation), got {args.eval_samples}"
        )


def _recorded_data(args) -> None:
    """``--resume`` without ``--data`` or ``--dataset``: the data the run in ``--out`` recorded,
    with its loading options (flags given on the command line still win, and a changed one is
    refused by the resume)."""
    cfg = Path(args.out or "") / "config.json"
    if args.out is None or not cfg.is_file():
        return
    spec = json.loads(cfg.read_text()).get("data", {})
    if "path" in spec:
        args.data = spec["path"]
        if args.image_size is None:
            args.image_size = spec.get("image_size")
        if args.condition is None and spec.get("condition"):
            args.condition = tuple(spec["condition"])
    elif spec.get("name"):
        args.dataset = spec["name"]
    if args.train_size is None:
        args.train_size = spec.get("train_size")
    if args.binarize is None:
        args.binarize = spec.get("binarize")


def run(args) -> int:
    _check_flags(args)
    semi = _semi_supervised(args)
    if args.data and args.dataset:
        raise ValueError(
            "give either --dataset (a built-in set) or --data PATH (your own), not both"
        )
    if args.resume and not (args.data or args.dataset):
        _recorded_data(args)
    if not args.data and (args.image_size or args.condition):
        raise ValueError("--image-size and --condition describe your own data; add --data PATH")
    source = args.data or args.dataset or "digits"
    if args.out is None:  # runs/mnist, runs/faces for --data data/faces/
        args.out = str(Path("runs") / Path(str(source)).stem)
    binarize = args.binarize or default_binarize(source, args.likelihood)
    # validate every setting before touching data or files
    common = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, objective=args.objective,
        particles=args.particles, beta=args.beta, warmup_epochs=args.warmup_epochs,
        seed=args.seed, device=args.device, keep_checkpoints=args.keep_checkpoints,
        skip_nonfinite=args.skip_nonfinite, adam_eps=args.adam_eps, lean=not args.no_lean,
    )  # fmt: skip
    if semi:
        if args.unconditional:
            raise ValueError("--semi-supervised needs the class labels; drop --unconditional")
        num_labels = args.labels
        if num_labels is None and args.label_fraction is None:
            num_labels = 100
        train_cfg = SemiSupervisedConfig(
            **common, num_labels=num_labels, label_fraction=args.label_fraction,
            label_seed=args.seed, class_weight=args.class_weight,
        )  # fmt: skip
    else:
        train_cfg = TrainConfig(**common, alpha=args.alpha)
    files = dict(image_size=args.image_size, condition=args.condition) if args.data else {}
    data = load_dataset(source, binarize=binarize, data_dir=args.data_dir, seed=args.seed,
                        train_size=args.train_size, **files)  # fmt: skip
    if is_molecule_data(data):  # SMILES as tokens: the sequence CVAE (pyro_cvae.models.molecules)
        return train_molecules(args, data, train_cfg)
    if args.word_dropout is not None or args.embed_dim is not None or args.encoder is not None:
        raise ValueError(
            "--word-dropout, --embed-dim and --encoder describe the molecule model; they apply to "
            "--dataset moses only (for dropout in these networks use --dropout)"
        )
    model_cfg = ModelConfig.for_data(
        data, unconditional=args.unconditional, latent_dim=args.latent_dim,
        latent_dims=args.latent_dims, hidden_dims=args.hidden, net=args.net,
        activation=args.activation, dropout=args.dropout, batch_norm=args.batch_norm,
        likelihood=args.likelihood, x_scale=args.x_scale, learn_x_scale=args.learn_x_scale,
        prior=args.prior, prior_options=dict(args.prior_option),
    )  # fmt: skip
    if semi and not model_cfg.num_classes:
        raise ValueError(f"--semi-supervised needs class labels; data set {source!r} has none")
    if args.batch_size > len(data.train):
        print(f"note: --batch-size {args.batch_size} exceeds the {len(data.train)} training "
              "images: one full-batch step per epoch")  # fmt: skip
    out = Path(args.out)
    if args.resume and load_latest_good(out) is None:
        raise CheckpointError(f"--resume given but {out} holds no checkpoint; drop --resume")
    pyro.set_rng_seed(args.seed)
    model = M2(model_cfg) if semi else build_model(model_cfg)
    family = SemiSupervisedFamily() if semi else None
    history = fit(model, data, train_cfg, family=family, out=out, resume=args.resume,
                  overwrite=args.overwrite, progress=not args.quiet,
                  tensorboard=args.tensorboard)  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the results
        return 0
    extra = {}
    if data.schema is not None and model_cfg.condition_dim:
        save_schema(out, data.schema)
        extra["attributes"] = data.schema.to_dict()
    if data.table is not None:
        save_table(out, data.table)
        extra["table"] = data.table.to_dict()
    model.save(out / "model.pt", data={"name": data.name, "binarize": data.binarize}, **extra)
    save_safetensors(model, out / "model.safetensors")
    figures = write_figures(model, data, out, history.rows)
    print(f"trained {len(history)} epochs; run folder {out}")
    if args.eval_samples > 0:
        if semi:
            metrics = semisupervised_metrics(model, data)
            metrics.update(objective=train_cfg.objective, particles=train_cfg.particles)
        else:
            metrics = evaluate(model, data, num_samples=args.eval_samples,
                               progress=not args.quiet)  # fmt: skip
            if model_cfg.num_classes and data.is_image:  # does the latent carry style?
                metrics.update(label_diversity(model, data))
        metrics["train_seconds"] = sum(r["seconds"] for r in history.rows)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("test metrics:" if semi else f"test metrics (nats per {unit(model)}):")
        print_metrics(metrics)
        if "diversity" in metrics:
            print(f"within-label diversity (judge features, {metrics['diversity_samples']} per "
                  f"label): samples {metrics['diversity']:.2f}, real test images "
                  f"{metrics['real_diversity']:.2f}")  # fmt: skip
        ignored = None if semi else condition_ignored(metrics, model_cfg.num_classes)
        if ignored:
            print(f"warning: {ignored}; train longer (more --epochs) or warm the KL weight up "
                  "(--warmup-epochs, e.g. a third of --epochs)", file=sys.stderr)  # fmt: skip
    print("figures: " + ", ".join(str(p) for p in figures))
    return 0
