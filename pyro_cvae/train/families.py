"""What differs between model families in training, as small objects passed to :func:`fit`.

One loop trains every model (:mod:`pyro_cvae.train.loop`); a family tells it

* which objective the config names, and which callables it receives (``model.model`` and
  ``model.guide``, or the whole module for M2's objective);
* which batches a step receives (``(x, y)``; labelled plus unlabelled images; masked images
  and their missing pixels) and how many images a step counts for the reported loss;
* what an epoch reports (validation ELBO, classifier accuracies: measured by
  :mod:`pyro_cvae.evaluate`, the layer below) and how it is printed;
* what a checkpoint must store and a resume must check beyond the model and settings (the
  labelled subset of a semi-supervised run).

:func:`family_for` picks the family of a model; pass ``family=`` to :func:`fit` to choose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..checkpoint import CheckpointError
from ..data import Dataset, binarize_draw, check_labels, inputs_to_check, partial_labels
from ..evaluate.bounds import elbo_per_image
from ..evaluate.semisupervised import accuracy
from ..infer.auxiliary import AuxiliaryObjective
from ..infer.lean import lean_objective
from ..infer.objectives import make_objective
from ..infer.semisupervised import SemiSupervisedObjective
from ..models import kind_of, mask_image
from ..models.contract import check_inputs, condition_of
from .config import SemiSupervisedConfig, TrainConfig

__all__ = [
    "Family",
    "ConditionalFamily",
    "SemiSupervisedFamily",
    "AuxiliaryFamily",
    "CompletionFamily",
    "ClassifierFamily",
    "FAMILIES",
    "family_for",
    "check_data_fits_model",
]

Batch = tuple[tuple, int]  # (arguments of one step, images it counts for the mean loss)


def _shard(order: torch.Tensor, shard: tuple[int, int] | None) -> torch.Tensor:
    """This process's share of an epoch's order: every ``world``-th of the first n // world * world."""
    if shard is None:
        return order
    rank, world = shard
    n = order.shape[0]
    return order[: (n // world) * world][rank::world]


def check_data_fits_model(model, data: Dataset) -> None:
    """Refuse a data set whose image shape or number of classes the model was not built for
    (models with a library config; a model without one checks its inputs itself, if at all)."""
    cfg = getattr(model, "config", None)
    if not hasattr(cfg, "image_shape"):
        return
    if getattr(cfg, "num_classes", 0) and cfg.num_classes != data.num_classes:
        raise ValueError(
            f"the model has num_classes={cfg.num_classes} but data set {data.name!r} has "
            f"{data.num_classes} classes; build the model with num_classes={data.num_classes}"
        )
    if tuple(data.image_shape) != tuple(cfg.image_shape):
        raise ValueError(
            f"the model expects images of shape {cfg.image_shape} but data set {data.name!r} has "
            f"{data.image_shape}; build the model with image_shape={tuple(data.image_shape)}"
        )


class Family:
    """Fully observed ``(x, y)`` batches of the training split, shuffled each epoch.

    The base of the families; subclasses change what they must.
    """

    config_class = TrainConfig

    def config(self, config: TrainConfig | None) -> TrainConfig:
        """The run's config (the family's default when ``None``), checked to be of its kind."""
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} trains with a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        return config

    def objective(self, config: TrainConfig, lean: bool = False):
        """The objective ``config`` names; on the lean path of :mod:`pyro_cvae.infer.lean`
        where one exists and ``lean``."""
        objective = make_objective(config.objective, config.particles, config.alpha,
                                   free_bits=config.free_bits)  # fmt: skip
        return lean_objective(objective) if lean else objective

    def fns(self, model) -> tuple:
        """What the objective receives as model and guide."""
        return model.model, model.guide

    def check(self, model, data: Dataset, config: TrainConfig) -> None:
        """Refuse data the model cannot train on, before anything is written."""
        if len(data.train) == 0:
            raise ValueError("the training split is empty")

    def setup(self, data: Dataset, config: TrainConfig) -> None:
        """Prepare per-run state from the data (already on the training device)."""
        self.data = data

    def steps_per_epoch(self, config: TrainConfig, world: int) -> int:
        return math.ceil((len(self.data.train) // world) / config.batch_size)

    def step_args(self, model, x: torch.Tensor, y: torch.Tensor) -> tuple:
        return (x, y)

    def batches(self, model, config, epoch: int, start: int, shard) -> Iterator[Batch]:
        order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        for x, y in self.data.batches(
            "train", config.batch_size, shuffle=True, generator=order, start=start, shard=shard
        ):
            yield self.step_args(model, x, y), x.shape[0]

    def epoch_metrics(self, model, config: TrainConfig, epoch: int) -> dict:
        """Metrics of the model after an epoch (in eval mode), merged into its history row."""
        return {}

    def checkpoint_state(self) -> dict:
        """Entries a checkpoint stores beyond model, optimizer, RNG and history."""
        return {}

    def check_resume(self, path, ckpt: dict) -> None:
        """Refuse a checkpoint this run cannot continue (beyond model and settings)."""

    def run_info(self) -> dict:
        """Entries of ``config.json`` beyond model, training and data settings."""
        return {}

    def describe(self, row: dict) -> str:
        msg = f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}"
        return msg + f" ({row['seconds']:.1f}s)"


class ConditionalFamily(Family):
    """The CVAE and its hierarchical form: ``(x, y)`` batches, ``y`` given where the model is
    conditional; the validation ELBO every ``validate_every`` epochs."""

    def check(self, model, data: Dataset, config: TrainConfig) -> None:
        super().check(model, data, config)
        check_data_fits_model(model, data)
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            if len(split):
                x, y = inputs_to_check(split)  # a streamed split: its first items
                check_inputs(model, x, condition_of(model, y))

    def setup(self, data: Dataset, config: TrainConfig) -> None:
        super().setup(data, config)
        self.val = None  # the validation split as scored, made at the first validation

    def step_args(self, model, x, y) -> tuple:
        return (x, condition_of(model, y))

    def epoch_metrics(self, model, config: TrainConfig, epoch: int) -> dict:
        validate = config.validate_every and (epoch + 1) % config.validate_every == 0
        if not (validate and len(self.data.val)):
            return {}
        if self.val is None:  # one seeded binarisation per run, not one per epoch
            self.val = self.data.eval_split("val")
        return {"val_elbo": elbo_per_image(model, self.val).mean().item()}

    def describe(self, row: dict) -> str:
        msg = f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}"
        if "val_elbo" in row:
            msg += f", val ELBO {row['val_elbo']:.3f} nats/image"
        return msg + f" ({row['seconds']:.1f}s)"


class ClassifierFamily(Family):
    """A :class:`~pyro_cvae.models.LabelClassifier` on ``(x, y)`` batches (cross-entropy)."""

    def check(self, model, data: Dataset, config: TrainConfig) -> None:
        super().check(model, data, config)
        model.check_inputs(*inputs_to_check(data.train))


class CompletionFamily(Family):
    """Image completion (:mod:`pyro_cvae.models.quadrants`): a step receives the masked images
    c and the images y, ``model(c, y)``; the labels are not used."""

    def check(self, model, data: Dataset, config: TrainConfig) -> None:
        super().check(model, data, config)
        if tuple(data.image_shape) != tuple(model.config.image_shape):
            raise ValueError(
                f"the model completes images of shape {model.config.image_shape} but data set "
                f"{data.name!r} has {tuple(data.image_shape)}; build it with "
                f"image_shape={tuple(data.image_shape)}"
            )

    def step_args(self, model, x, y) -> tuple:
        return (mask_image(x, model.given), x)


class SemiSupervisedFamily(Family):
    """M2 on partially labelled data (:mod:`pyro_cvae.infer.semisupervised`).

    An epoch is one pass over the unlabelled images (``batch_size`` per step); every step also
    takes ``labelled_batch_size`` labelled images, cycling through them in a seeded order. The
    labels of unlabelled images are never read. The reported loss is the objective per image
    (each step's loss is already divided by N).

    Args:
        labelled: a boolean mask (N_train,) or indices of the labelled training images; default
            from the config (``num_labels`` / ``label_fraction``, or every label >= 0).
    """

    config_class = SemiSupervisedConfig
    auxiliary = False  # the models it trains: M2 (False) or ADGM / SDGM (AuxiliaryFamily)

    def __init__(self, labelled: torch.Tensor | None = None):
        self.labelled = labelled

    def objective(self, config: SemiSupervisedConfig, lean: bool = False):
        return SemiSupervisedObjective(config.objective, config.particles, lean=lean)

    def fns(self, model) -> tuple:
        return model, None  # SemiSupervisedObjective reads the whole module

    def check(self, model, data: Dataset, config: SemiSupervisedConfig) -> None:
        family = kind_of(model).family
        if family not in ("semi-supervised", "auxiliary"):
            raise ValueError(
                f"semi-supervised training trains the M2 model, got {type(model).__name__}; a "
                "fully supervised CVAE cannot use unlabelled images: build pyro_cvae.M2"
            )
        if (family == "auxiliary") != self.auxiliary:
            raise ValueError(
                f"{type(self).__name__} does not train {type(model).__name__}: ADGM and SDGM train "
                "with AuxiliaryFamily, M2 with SemiSupervisedFamily (family_for picks it)"
            )
        super().check(model, data, config)
        self.mask = labelled_mask(data, config, self.labelled)
        check_data_fits_model(model, data)
        model.check_inputs(inputs_to_check(data.train)[0])
        check_labels(data.train.y[self.mask], model.config.num_classes)
        for name in ("val", "test"):
            split = getattr(data, name)
            if len(split):
                model.check_inputs(split.x, split.y)

    def setup(self, data: Dataset, config: SemiSupervisedConfig) -> None:
        super().setup(data, config)
        mask = self.mask.to(data.train.x.device)
        self.mask = mask
        self.x_l, self.y_l = data.train.x[mask], data.train.y[mask]
        self.x_u = data.train.x[~mask]
        self.n_l, self.n_u = self.x_l.shape[0], self.x_u.shape[0]
        self.n = self.n_l + self.n_u
        self.class_weight = 0.1 * self.n if config.class_weight is None else config.class_weight
        self.B_l = min(config.labelled_batch_size, self.n_l)
        self.val, self.test = data.eval_split("val"), data.eval_split("test")

    def steps_per_epoch(self, config, world: int) -> int:
        if self.n_u:
            return math.ceil((self.n_u // world) / config.batch_size)
        return math.ceil((self.n_l // world) / self.B_l)

    def batches(self, model, config, epoch: int, start: int, shard) -> Iterator[Batch]:
        world = shard[1] if shard is not None else 1
        steps = self.steps_per_epoch(config, world)
        B_u, B_l, device = config.batch_size, self.B_l, self.x_l.device
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order_u = _shard(torch.randperm(self.n_u, generator=g), shard).to(device)
        reps = math.ceil(steps * B_l * world / self.n_l)
        order_l = torch.cat([torch.randperm(self.n_l, generator=g) for _ in range(reps)])
        order_l = _shard(order_l, shard).to(device)
        for step in range(start, steps):
            iu = order_u[step * B_u : (step + 1) * B_u]
            il = order_l[step * B_l : (step + 1) * B_l]
            xu, xl, yl = self.draw(self.x_u[iu]), self.draw(self.x_l[il]), self.y_l[il]
            n = self.n
            weights = (
                self.n_u / (n * max(xu.shape[0], 1)),
                self.n_l / (n * xl.shape[0]),
                self.class_weight / (n * xl.shape[0]),
            )
            yield (xl, yl, xu, weights), 1

    def draw(self, x: torch.Tensor) -> torch.Tensor:
        """What the model sees of a training batch ``x``: a fresh binarisation of dynamically
        binarised images (the global torch RNG, so resumable), else ``x`` itself."""
        return binarize_draw(x) if self.data.binarize == "dynamic" else x

    def epoch_metrics(self, model, config, epoch: int) -> dict:
        return {
            "val_accuracy": accuracy(model, self.val) if len(self.val) else float("nan"),
            "test_accuracy": accuracy(model, self.test) if len(self.test) else float("nan"),
        }

    def checkpoint_state(self) -> dict:
        return {"labelled": torch.nonzero(self.mask).flatten().cpu()}

    def check_resume(self, path, ckpt: dict) -> None:
        saved = ckpt.get("labelled")
        if saved is None or not torch.equal(saved.cpu(), torch.nonzero(self.mask).flatten().cpu()):
            raise CheckpointError(
                f"{path} was trained with another labelled subset; resume with the same labels"
            )

    def run_info(self) -> dict:
        return {"num_labelled": self.n_l}

    def describe(self, row: dict) -> str:
        return (
            f"epoch {row['epoch']}: loss {row['train_loss']:.3f}, q(y|x) test accuracy "
            f"{row['test_accuracy']:.4f} ({row['seconds']:.1f}s)"
        )


class AuxiliaryFamily(SemiSupervisedFamily):
    """ADGM and SDGM on partially labelled data (:mod:`pyro_cvae.infer.auxiliary`): the batches,
    metrics and resume checks of :class:`SemiSupervisedFamily`, with their own objective."""

    auxiliary = True

    def objective(self, config: SemiSupervisedConfig, lean: bool = False):
        return AuxiliaryObjective(config.objective, config.particles, lean=lean)


#: family name (a model kind's ``family``, :func:`pyro_cvae.models.kind_of`) -> family class
FAMILIES: dict[str, type[Family]] = {
    "conditional": ConditionalFamily,
    "semi-supervised": SemiSupervisedFamily,
    "auxiliary": AuxiliaryFamily,
    "completion": CompletionFamily,
    "classifier": ClassifierFamily,
}


def family_for(model) -> Family:
    """The default family of a model, as its kind names it (:func:`pyro_cvae.models.kind_of`):
    semi-supervised for M2 (auxiliary for ADGM and SDGM), completion for the quadrant models,
    classification for a label classifier, conditional for the CVAEs and any other Pyro model."""
    return FAMILIES[kind_of(model).family]()


def labelled_mask(data: Dataset, config: SemiSupervisedConfig, labelled=None) -> torch.Tensor:
    """The boolean mask (N_train,) of labelled training images, checked against the labels."""
    y = data.train.y
    n = y.shape[0]
    if labelled is None:
        if config.num_labels is None and config.label_fraction is None:
            return y >= 0
        if (y < 0).any():
            raise ValueError(
                "the training labels already mark missing labels with -1; pass "
                "num_labels=None and label_fraction=None to use the labels that are there"
            )
        return partial_labels(
            data, config.num_labels, fraction=config.label_fraction, seed=config.label_seed
        )
    labelled = torch.as_tensor(labelled, device=y.device)
    if labelled.dtype != torch.bool:  # indices
        if labelled.dtype.is_floating_point or labelled.dim() != 1:
            raise ValueError(
                "labelled must be a boolean mask (N,) or a vector of integer indices, got "
                f"dtype {labelled.dtype}, shape {tuple(labelled.shape)}"
            )
        if labelled.numel() and (labelled.min() < 0 or labelled.max() >= n):
            raise ValueError(
                f"labelled indices must lie in [0, {n}), got range [{labelled.min().item()}, "
                f"{labelled.max().item()}]"
            )
        mask = torch.zeros(n, dtype=torch.bool, device=y.device)
        mask[labelled] = True
        labelled = mask
    if tuple(labelled.shape) != (n,):
        raise ValueError(
            f"the labelled mask has shape {tuple(labelled.shape)} but the training set has "
            f"{n} images; give one entry per training image"
        )
    bad = torch.nonzero(labelled & (y < 0)).flatten()
    if len(bad):
        raise ValueError(
            f"the mask marks training image {bad[0].item()} as labelled but its label is "
            f"{y[bad[0]].item()} (missing); the mask disagrees with the labels: unmark it "
            "or give its label"
        )
    if not labelled.any():
        raise ValueError("the labelled mask selects no image; label at least one per class")
    return labelled
