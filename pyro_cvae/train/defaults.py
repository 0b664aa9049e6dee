"""One source of defaults: the training config and the model of a family, from the fields given.

A command line (or a script) passes only what its user chose; :func:`train_config` fills the rest
from the family's config class (:class:`~pyro_cvae.TrainConfig`, or
:class:`~pyro_cvae.SemiSupervisedConfig` with its own ``lr`` and ``batch_size``), and
:func:`build_for` builds the model the family trains. ``pyro-cvae train --semi-supervised`` and
``pc.fit(pc.M2(cfg), data, pc.SemiSupervisedConfig(...))`` then write the same run.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..models import M2, ModelConfig, build_model
from .config import TrainConfig
from .families import FAMILIES

__all__ = ["FAMILY_MODELS", "train_config", "build_for"]

#: training family -> what builds its model from a config (the families a run is started in
#: by name; "conditional" builds the CVAE, its hierarchical form or the molecule model)
FAMILY_MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "conditional": build_model,
    "semi-supervised": M2,
}


def _known(family: str) -> None:
    if family not in FAMILY_MODELS:
        raise ValueError(
            f"unknown training family {family!r}; choose one of {', '.join(FAMILY_MODELS)}"
        )


def train_config(family: str = "conditional", **fields) -> TrainConfig:
    """The config of a run of ``family``: the family's config class (``FAMILIES[family]
    .config_class``) with the ``fields`` given; a field given as ``None`` takes the class's
    default, so a caller passes every option it has and the library decides the unset ones.

    A ``label_fraction`` given without ``num_labels`` keeps that share of labels instead of the
    default 100 labels (the two are exclusive).

    Example::

        train_config("semi-supervised", lr=None, num_labels=50)  # lr 3e-4, batch_size 100
    """
    _known(family)
    given = {k: v for k, v in fields.items() if v is not None}
    if given.get("label_fraction") is not None and "num_labels" not in given:
        given["num_labels"] = None
    return FAMILIES[family].config_class(**given)


def build_for(config: ModelConfig, family: str = "conditional") -> nn.Module:
    """The model ``family`` trains, built from ``config``: :func:`~pyro_cvae.build_model` for
    ``"conditional"``, :class:`~pyro_cvae.M2` for ``"semi-supervised"``
    (:data:`FAMILY_MODELS`). :func:`pyro_cvae.fit` then picks the family from the model."""
    _known(family)
    if family != "conditional" and type(config) is not ModelConfig:
        raise ValueError(
            f"{family} training builds its model from a ModelConfig (labelled images), got a "
            f"{type(config).__name__}; train this model fully supervised"
        )
    return FAMILY_MODELS[family](config)
