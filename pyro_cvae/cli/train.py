"""``pyro-cvae train``: train a model into a run folder; checkpoints, metrics, figures, test metrics.

Parsing and printing only. A flag left out is "not given": the training config comes from
:func:`pyro_cvae.train.train_config` (:class:`~pyro_cvae.TrainConfig`, or
:class:`~pyro_cvae.SemiSupervisedConfig` with ``--semi-supervised``), the model's from
:meth:`pyro_cvae.ModelConfig.for_data` and the model from :func:`pyro_cvae.train.build_for`, so
the command line and the API train the same run. :func:`pyro_cvae.fit` trains it and
:func:`pyro_cvae.finish_run` writes the model files, figures and test metrics.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path

import pyro

from ..checkpoint import CheckpointError, load_latest_good
from ..data import MOLECULE_DATASETS, is_molecule_data, load_dataset
from ..evaluate import condition_ignored
from ..infer.objectives import OBJECTIVES
from ..models import (
    LIKELIHOODS,
    MOLECULE_ENCODERS,
    NETS,
    ModelConfig,
    MoleculeConfig,
    default_binarize,
)
from ..nn.nets import ACTIVATIONS
from ..nn.priors import PRIORS
from ..runs import finish_run
from ..train import RunFolder, SemiSupervisedConfig, TrainConfig, build_for, fit, train_config
from ._common import (
    add_data_args,
    add_stream_args,
    int_list,
    key_value,
    positive_int,
    print_metrics,
    unit,
)
from ._molecules import train_molecules

#: K of the test log-likelihood when --eval-samples is not given: finish_run's default
_EVAL_SAMPLES = inspect.signature(finish_run).parameters["eval_samples"].default


def _eval_samples(args) -> dict:
    """``eval_samples`` for finish_run where --eval-samples is given, else nothing (its default)."""
    return {} if args.eval_samples is None else {"eval_samples": args.eval_samples}


__all__ = ["add_parser", "run"]


def _default(cls, name: str):
    """The default of field ``name`` of the config dataclass ``cls``: what an unset flag means."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _train_default(name: str) -> str:
    """``"default 0.001; 0.0003 with --semi-supervised"``, read from the configs' fields."""
    plain, semi = _default(TrainConfig, name), _default(SemiSupervisedConfig, name)
    text = f"default {plain}"
    return text if semi == plain else f"{text}; {semi} with --semi-supervised"


def add_parser(sub) -> None:
    # every training flag defaults to None, "not given": the library's configs fill the unset
    # ones (pyro_cvae.train.train_config, ModelConfig.for_data, MoleculeConfig.for_data), so
    # the command line and the API train the same run; --help shows the configs' defaults
    t = sub.add_parser(
        "train",
        help="train a model and write checkpoints, metrics and pictures",
        description="Train a (conditional) VAE with SVI. Writes checkpoints every "
        "epoch, metrics.csv, and figures into --out. A flag left out takes the library's "
        "default (TrainConfig, SemiSupervisedConfig, ModelConfig.for_data).",
    )
    add_data_args(t)
    add_stream_args(t)
    t.add_argument(
        "--out", default=None,
        help="run folder (default: runs/<data set>, e.g. runs/mnist; runs/<name> for --data)",
    )  # fmt: skip
    t.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs ({_train_default('epochs')})")  # fmt: skip
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"images per step ({_train_default('batch_size')})")  # fmt: skip
    t.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate ({_train_default('lr')})")  # fmt: skip
    t.add_argument("--seed", type=int, default=None,
                   help=f"random seed; same seed, same run ({_train_default('seed')})")  # fmt: skip
    t.add_argument(
        "--device",
        default=None,
        choices=["cpu", "cuda", "auto"],
        help=f"where to train; auto picks CUDA when available ({_train_default('device')})",
    )
    t.add_argument(
        "--objective",
        default=None,
        choices=list(OBJECTIVES),
        help=f"training bound ({_train_default('objective')})",
    )
    t.add_argument(
        "--particles",
        "-k",
        type=positive_int,
        default=None,
        help=f"K, samples of z per image ({_train_default('particles')})",
    )
    t.add_argument("--alpha", type=float, default=None,
                   help=f"alpha of the renyi objective ({_train_default('alpha')})")  # fmt: skip
    t.add_argument("--beta", type=float, default=None,
                   help=f"KL weight of beta-VAE ({_train_default('beta')})")  # fmt: skip
    t.add_argument("--free-bits", type=float, default=None, metavar="NATS",
                   help="free bits (Kingma et al. 2016): no KL gradient for a latent coordinate "
                        "whose batch-mean KL is below NATS (elbo and meanfield; "
                        f"{_train_default('free_bits')}: off)")  # fmt: skip
    t.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="epochs of linear KL warm-up from 0 to beta "
        f"({_train_default('warmup_epochs')}: none)",
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
    t.add_argument("--net", default=None, choices=list(NETS),
                   help=f"network family (default {_default(ModelConfig, 'net')})")  # fmt: skip
    t.add_argument(
        "--activation", default=None, choices=list(ACTIVATIONS),
        help=f"activation of the hidden layers (default {_default(ModelConfig, 'activation')}; "
        "the IWAE paper uses tanh)",
    )  # fmt: skip
    t.add_argument(
        "--dropout", type=float, default=None, metavar="P",
        help="dropout probability after each hidden layer of encoder and decoder "
        f"(default {_default(ModelConfig, 'dropout')})",
    )  # fmt: skip
    t.add_argument(
        "--batch-norm", action="store_true", default=None,
        help="batch norm on the hidden layers of encoder and decoder (running statistics at "
        "evaluation)",
    )  # fmt: skip
    t.add_argument(
        "--no-lean", action="store_true",
        help="always use Pyro's full trace path for elbo/iwae/renyi (default: the lean path, "
        "same loss and gradient, where the model qualifies)",
    )  # fmt: skip
    t.add_argument(
        "--adam-eps", type=float, default=None,
        help=f"epsilon of Adam ({_train_default('adam_eps')}, torch's; the IWAE paper uses 1e-4)",
    )  # fmt: skip
    t.add_argument(
        "--adam-beta1", type=float, default=None, metavar="B1",
        help=f"first-moment decay of Adam ({_train_default('adam_beta1')}, torch's; Pyro's SS-VAE "
        "tutorial uses 0.95)",
    )  # fmt: skip
    t.add_argument(
        "--likelihood",
        default=None,
        choices=list(LIKELIHOODS),
        help="observation model p(x | z, y) (default: table for tables, gaussian for data "
        "outside [0, 1], else bernoulli)",
    )
    t.add_argument(
        "--x-scale", type=float, default=None,
        help=f"gaussian likelihood: noise scale (default {_default(ModelConfig, 'x_scale')})",
    )  # fmt: skip
    t.add_argument("--learn-x-scale", action="store_true", default=None,
                   help="gaussian: learn the noise scale")  # fmt: skip
    t.add_argument("--prior", default=None, choices=list(PRIORS),
                   help=f"prior (default {_default(ModelConfig, 'prior')})")  # fmt: skip
    t.add_argument(
        "--prior-option",
        type=key_value,
        action="append",
        default=None,
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
    t.add_argument(
        "--property-weight", type=float, default=None, metavar="W",
        help="molecule runs (--dataset moses): weight of the property loss, a predictor that "
        "scores the decoder's soft output from z ~ p(z | c) against the request "
        f"(default {MoleculeConfig.property_weight}: none; e.g. 10 with --prior conditional)",
    )  # fmt: skip
    t.add_argument(
        "--condition-dropout", type=float, default=None, metavar="P",
        help="molecule runs (--dataset moses): probability that a training molecule is decoded "
        "without its condition, so that `sample --guidance W` can sharpen the request "
        f"(default {MoleculeConfig.condition_dropout}: none; e.g. 0.2)",
    )  # fmt: skip
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    t.add_argument(
        "--skip-nonfinite",
        action="store_true",
        default=None,
        help="skip batches whose loss is NaN/Inf instead of stopping",
    )
    t.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=None,
        help=f"checkpoints kept in --out ({_train_default('keep_checkpoints')})",
    )
    t.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="K for the test log-likelihood after training (default "
        f"{_EVAL_SAMPLES}; 0: skip evaluation)",
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
        f"classes (default {_default(SemiSupervisedConfig, 'num_labels')} unless "
        "--label-fraction)",
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


def _check_flags(args, train_cfg: TrainConfig) -> None:
    if train_cfg.warmup_epochs > train_cfg.epochs:
        raise ValueError(
            f"--warmup-epochs {train_cfg.warmup_epochs} is longer than --epochs "
            f"{train_cfg.epochs}: the KL weight would never reach --beta. Lower --warmup-epochs "
            "or raise --epochs"
        )
    if args.eval_samples is not None and args.eval_samples < 0:
        raise ValueError(
            f"--eval-samples must be >= 0 (0 skips the test evaluation), got {args.eval_samples}"
        )


def _train_config(args, family: str, recorded: dict | None = None) -> TrainConfig:
    """The run's training config: the flags given, the library's defaults for the others; on
    ``--resume`` (``recorded``: the run's ``train`` settings) the recorded values for the others,
    so a run continues with the settings it was started with, whichever defaults they were."""
    fields = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, objective=args.objective,
        particles=args.particles, alpha=args.alpha, beta=args.beta, free_bits=args.free_bits,
        warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device,
        keep_checkpoints=args.keep_checkpoints, skip_nonfinite=args.skip_nonfinite,
        adam_eps=args.adam_eps, adam_beta1=args.adam_beta1, lean=False if args.no_lean else None,
    )  # fmt: skip
    if family == "semi-supervised":  # --seed also draws the labelled subset
        fields.update(num_labels=args.labels, label_fraction=args.label_fraction,
                      label_seed=args.seed, class_weight=args.class_weight)  # fmt: skip
    if recorded:
        fields = {k: recorded.get(k) if v is None else v for k, v in fields.items()}
    return train_config(family, **fields)


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
        if args.condition is None and spec.get("tokens") and spec.get("condition"):
            args.condition = tuple(spec["condition"])  # a molecule run's properties
    if args.train_size is None:
        args.train_size = spec.get("train_size")
    if args.binarize is None:
        args.binarize = spec.get("binarize")
    if args.stream is None and spec.get("stream"):
        args.stream = True


def run(args) -> int:
    semi = _semi_supervised(args)
    family = "semi-supervised" if semi else "conditional"
    if semi and args.unconditional:
        raise ValueError("--semi-supervised needs the class labels; drop --unconditional")
    # validate every setting before touching data or files
    train_cfg = _train_config(args, family)
    _check_flags(args, train_cfg)
    if args.data and args.dataset:
        raise ValueError(
            "give either --dataset (a built-in set) or --data PATH (your own), not both"
        )
    if args.resume and not (args.data or args.dataset):
        _recorded_data(args)
    molecules = not args.data and args.dataset in MOLECULE_DATASETS
    if not args.data and (args.image_size or (args.condition and not molecules)):
        raise ValueError(
            "--image-size and --condition describe your own data; add --data PATH (or, for "
            "--dataset moses, --condition picks the properties, e.g. --condition logp)"
        )
    if args.workers is not None and not args.stream:
        raise ValueError("--workers N are the readers of a streamed data set; add --stream")
    if args.stream and not args.data:
        name = args.dataset or "digits"
        raise ValueError(
            f"--stream with --dataset {name}: nothing to stream, the built-in data set is loaded "
            "into memory whole; --stream reads your own data by path: give --data PATH (an "
            "image folder, an attribute folder or a CSV / Parquet table), or drop --stream"
        )
    if args.stream and semi:
        raise ValueError(
            "--semi-supervised holds its labelled and unlabelled images in memory; drop --stream"
        )
    source = args.data or args.dataset or "digits"
    if args.out is None:  # runs/mnist, runs/faces for --data data/faces/
        args.out = str(Path("runs") / Path(str(source)).stem)
    run_folder = RunFolder(args.out)
    if args.resume and run_folder.has_config():  # unset flags: the settings the run recorded
        train_cfg = _train_config(args, family, run_folder.config().get("train", {}))
        _check_flags(args, train_cfg)
    binarize = args.binarize or default_binarize(source, args.likelihood)
    files = dict(image_size=args.image_size, condition=args.condition) if args.data else {}
    if molecules and args.condition:
        files = {"condition": args.condition}
    if args.stream:
        files.update(stream=True, workers=args.workers or 0)
    data = load_dataset(source, binarize=binarize, data_dir=args.data_dir, seed=train_cfg.seed,
                        train_size=args.train_size, **files)  # fmt: skip
    if is_molecule_data(data):  # SMILES as tokens: the sequence CVAE (pyro_cvae.models.molecules)
        if semi:
            raise ValueError(
                "--semi-supervised trains M2 on partially labelled images; the molecule model "
                "trains on its properties: drop --semi-supervised"
            )
        return train_molecules(args, data, train_cfg, family)
    molecule_flags = (args.word_dropout, args.embed_dim, args.encoder, args.property_weight,
                      args.condition_dropout)  # fmt: skip
    if any(flag is not None for flag in molecule_flags):
        raise ValueError(
            "--word-dropout, --embed-dim, --encoder, --property-weight and --condition-dropout "
            "describe the molecule model; they apply to --dataset moses only (for dropout in "
            "these networks use --dropout)"
        )
    model_cfg = ModelConfig.for_data(
        data, unconditional=args.unconditional, latent_dim=args.latent_dim,
        latent_dims=args.latent_dims, hidden_dims=args.hidden, net=args.net,
        activation=args.activation, dropout=args.dropout, batch_norm=args.batch_norm,
        likelihood=args.likelihood, x_scale=args.x_scale, learn_x_scale=args.learn_x_scale,
        prior=args.prior, prior_options=dict(args.prior_option) if args.prior_option else None,
    )  # fmt: skip
    if semi and not model_cfg.num_classes:
        raise ValueError(f"--semi-supervised needs class labels; data set {source!r} has none")
    if train_cfg.batch_size > len(data.train):
        print(f"note: --batch-size {train_cfg.batch_size} exceeds the {len(data.train)} training "
              "images: one full-batch step per epoch")  # fmt: skip
    out = Path(args.out)
    if args.resume and load_latest_good(out) is None:
        raise CheckpointError(f"--resume given but {out} holds no checkpoint; drop --resume")
    pyro.set_rng_seed(train_cfg.seed)
    model = build_for(model_cfg, family)  # M2 for --semi-supervised; fit picks its family
    history = fit(model, data, train_cfg, out=out, resume=args.resume,
                  overwrite=args.overwrite, progress=not args.quiet,
                  tensorboard=args.tensorboard)  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the results
        return 0
    print(f"trained {len(history)} epochs; run folder {out}")
    done = finish_run(out, model, data, history, config=train_cfg, progress=not args.quiet,
                      **_eval_samples(args))  # fmt: skip
    metrics = done.metrics
    if metrics is not None:
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
    print("figures: " + ", ".join(str(p) for p in done.figures))
    return 0
