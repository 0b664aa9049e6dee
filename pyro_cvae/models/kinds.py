"""The kind of a model, one registry entry per model class: what the layers above it need to know.

The trainer, the evaluator, the pictures and the command line never ask ``isinstance`` of a
model or count the dimensions of its data; they ask :func:`kind_of`. A :class:`ModelKind` says

* ``family``: the training family's name (``"conditional"``, ``"semi-supervised"``,
  ``"auxiliary"`` (ADGM, SDGM), ``"completion"``, ``"classifier"``); :mod:`pyro_cvae.train.families` maps it to a class;
* ``output``: how its samples are presented: ``"images"``, ``"rows"`` (vectors and table rows,
  written as CSV or Parquet), ``"smiles"`` (molecules), ``"completions"``, ``"labels"``, or
  ``None`` (a model that cannot sample);
* ``figures``: the pictures a finished run gets (``"samples"``, ``"reconstructions"``,
  ``"latent"``, ``"curves"``, ``"analogies"``).

``output`` and ``figures`` may depend on the model's config (one CVAE class models images and
table rows), so the entry holds functions of the model. A model class of a user's, not
registered, is of the kind :data:`PYRO_MODEL`: trained by the conditional family, curves only.
A new kind is one :func:`register_kind` call beside its class (or one entry of :data:`KINDS`);
:data:`BUILDERS` says which class :func:`~pyro_cvae.models.build_model` builds from a config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .adgm import AuxiliaryDGM
from .classifier import LabelClassifier
from .config import ModelConfig
from .cvae import CVAE
from .hierarchical import HierarchicalCVAE
from .m2 import M2
from .molecules import HierarchicalMoleculeCVAE, MoleculeConfig, MoleculeCVAE
from .quadrants import BaselineNet, QuadrantCVAE

__all__ = ["ModelKind", "KINDS", "BUILDERS", "PYRO_MODEL", "kind_of", "register_kind",
           "FAMILY_NAMES"]  # fmt: skip

#: the training families a kind may name (classes in pyro_cvae.train.families)
FAMILY_NAMES = ("conditional", "semi-supervised", "auxiliary", "completion", "classifier")


def _const(value):
    return lambda model: value


@dataclass(frozen=True)
class ModelKind:
    """What the layers above the models need of one model class.

    Args:
        name: a short name (``"cvae"``, ``"m2"``, ...), shown in messages.
        family: the name of its training family (:data:`FAMILY_NAMES`).
        output: ``model -> str | None``: how its samples are presented.
        figures: ``model -> tuple[str, ...]``: the pictures of a finished run.
    """

    name: str
    family: str
    output: Callable[[nn.Module], str | None]
    figures: Callable[[nn.Module], tuple[str, ...]]

    def __post_init__(self) -> None:
        if self.family not in FAMILY_NAMES:
            raise ValueError(
                f"family must be one of {', '.join(FAMILY_NAMES)}, got {self.family!r}"
            )


def _cvae_output(model) -> str:
    # (C, H, W) images, or (D,) vectors and encoded table rows
    return "images" if len(model.config.image_shape) == 3 else "rows"


def _cvae_figures(model) -> tuple[str, ...]:
    if _cvae_output(model) == "images":
        return ("samples", "reconstructions", "latent", "curves")
    return ("latent", "curves")


#: a model class of the user's own: trained as a conditional model, training curves only
PYRO_MODEL = ModelKind("pyro model", "conditional", _const(None), _const(("curves",)))

#: model class -> its kind; subclasses inherit their base's entry unless they have their own
KINDS: dict[type, ModelKind] = {
    CVAE: ModelKind("cvae", "conditional", _cvae_output, _cvae_figures),
    M2: ModelKind(
        "m2",
        "semi-supervised",
        _const("images"),
        _const(("samples", "reconstructions", "latent", "curves", "analogies")),
    ),  # fmt: skip
    AuxiliaryDGM: ModelKind(
        "adgm",
        "auxiliary",
        _const("images"),
        _const(("samples", "reconstructions", "latent", "curves", "analogies")),
    ),  # fmt: skip
    MoleculeCVAE: ModelKind("molecules", "conditional", _const("smiles"), _const(("curves",))),
    QuadrantCVAE: ModelKind("completion", "completion", _const("completions"), _const(())),
    BaselineNet: ModelKind("completion", "completion", _const("completions"), _const(())),
    LabelClassifier: ModelKind("classifier", "classifier", _const("labels"), _const(())),
}


#: config class -> (model class of one latent layer, model class of ``latent_dims`` layers):
#: what :func:`pyro_cvae.models.build_model` builds from a config
BUILDERS: dict[type, tuple[type, type]] = {
    ModelConfig: (CVAE, HierarchicalCVAE),
    MoleculeConfig: (MoleculeCVAE, HierarchicalMoleculeCVAE),
}


def register_kind(cls: type, kind: ModelKind, *, replace: bool = False) -> None:
    """Register the kind of a model class (and, unless they have their own, its subclasses)."""
    if not isinstance(cls, type):
        raise TypeError(f"register_kind takes a model class, got {cls!r}")
    if not isinstance(kind, ModelKind):
        raise TypeError(f"kind must be a ModelKind, got {type(kind).__name__}")
    if cls in KINDS and KINDS[cls] != kind and not replace:
        raise ValueError(f"{cls.__name__} already has a kind; pass replace=True to replace it")
    KINDS[cls] = kind


def kind_of(model) -> ModelKind:
    """The kind of ``model``: the entry of the nearest class in its MRO, else :data:`PYRO_MODEL`."""
    for cls in type(model).__mro__:
        if cls in KINDS:
            return KINDS[cls]
    return PYRO_MODEL
