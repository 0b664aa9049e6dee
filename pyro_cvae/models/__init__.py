"""Layer 2, models: Pyro model/guide pairs, their configs, and the registry that rebuilds them.

Every model is one root ``PyroModule`` with ``model(x, y=None)`` and ``guide(x, y=None)``, a
frozen ``config`` (its class is ``config_class``) and ``latent_sites``, the names of the sample
sites a KL weight scales. :data:`MODEL_CLASSES` is built here, explicitly, from the modules that
define the models; :func:`load` reads any of them back from a checkpoint.

Imports layers 0 and 1 only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pyro.nn import PyroModule

from ..checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .classifier import ClassifierConfig, LabelClassifier
from .config import LIKELIHOODS, NETS, ModelConfig
from .cvae import CVAE
from .hierarchical import GaussianLayer, HierarchicalCVAE, LayeredLatent, LayerNormal
from .m2 import M2
from .quadrants import (
    QUADRANTS_GIVEN,
    BaselineNet,
    QuadrantConfig,
    QuadrantCVAE,
    mask_image,
    quadrant_mask,
)

__all__ = [
    "BaselineNet",
    "CVAE",
    "ClassifierConfig",
    "GaussianLayer",
    "HierarchicalCVAE",
    "LIKELIHOODS",
    "LabelClassifier",
    "LayerNormal",
    "LayeredLatent",
    "M2",
    "MODEL_CLASSES",
    "ModelConfig",
    "NETS",
    "QUADRANTS_GIVEN",
    "QuadrantCVAE",
    "QuadrantConfig",
    "build_model",
    "load",
    "mask_image",
    "model_from_payload",
    "quadrant_mask",
]

#: model class name -> class, used by :func:`load` (the name is stored in every checkpoint)
MODEL_CLASSES: dict[str, type[PyroModule]] = {
    cls.__name__: cls
    for cls in (CVAE, HierarchicalCVAE, M2, QuadrantCVAE, BaselineNet, LabelClassifier)
}


def build_model(config: ModelConfig) -> CVAE:
    """The model a config describes: :class:`HierarchicalCVAE` when it lists ``latent_dims``,
    else :class:`CVAE`."""
    return HierarchicalCVAE(config) if config.latent_dims else CVAE(config)


def model_from_payload(payload: dict, source: str = "checkpoint") -> PyroModule:
    """Rebuild a model from a checkpoint payload (class name, config and weights)."""
    try:
        cls = MODEL_CLASSES[payload.get("model_class", "CVAE")]
        config = cls.config_class.from_dict(payload["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source} does not hold a pyro_cvae model configuration: {e}") from e
    model = cls(config)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{source} holds weights that do not fit its configuration ({e}); "
            "the file was written by a different model"
        ) from e
    return model


def load(path: str | Path, map_location: str | torch.device = "cpu") -> PyroModule:
    """Rebuild a saved model from a checkpoint file or a run folder (its latest checkpoint).

    Needs no other input: the configuration is stored with the weights.
    """
    ckpt = resolve_checkpoint(path)
    model = model_from_payload(load_checkpoint(ckpt, map_location), str(ckpt))
    return model.to(map_location).eval()
