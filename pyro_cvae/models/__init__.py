"""Layer 2, models: Pyro model/guide pairs, their configs, and the registry that rebuilds them.

Every model is one root ``PyroModule`` with ``model(x, y=None)`` and ``guide(x, y=None)``, a
frozen ``config`` (its class is ``config_class``) and ``latent_sites``, the names of the sample
sites a KL weight scales. :data:`MODEL_CLASSES` is built here, explicitly, from the modules that
define the models; :func:`load` reads any of them back from a checkpoint.

Imports layers 0 and 1 only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from pyro.nn import PyroModule
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_latest_good,
    resolve_checkpoint,
)
from ..nn.nets import unknown_net_message
from .adgm import ADGM, SDGM, AuxiliaryConfig, AuxiliaryDGM
from .classifier import ClassifierConfig, LabelClassifier
from .config import LIKELIHOODS, NETS, ModelConfig, default_binarize, default_likelihood
from .contract import MissingCapabilityError, PyroModel, config_dict
from .cvae import CVAE
from .hierarchical import GaussianLayer, HierarchicalCVAE, LayeredLatent, LayerNormal
from .kinds import BUILDERS, KINDS, ModelKind, kind_of, register_kind
from .m2 import M2
from .molecules import (
    MOLECULE_ENCODERS,
    HierarchicalMoleculeCVAE,
    MoleculeConfig,
    MoleculeCVAE,
)
from .quadrants import (
    QUADRANTS_GIVEN,
    BaselineNet,
    QuadrantConfig,
    QuadrantCVAE,
    mask_image,
    quadrant_mask,
)

__all__ = [
    "BUILDERS",
    "ADGM",
    "AuxiliaryConfig",
    "AuxiliaryDGM",
    "BaselineNet",
    "CVAE",
    "ClassifierConfig",
    "GaussianLayer",
    "HierarchicalCVAE",
    "HierarchicalMoleculeCVAE",
    "KINDS",
    "LIKELIHOODS",
    "LabelClassifier",
    "LayerNormal",
    "LayeredLatent",
    "M2",
    "MissingCapabilityError",
    "MOLECULE_ENCODERS",
    "MoleculeCVAE",
    "MoleculeConfig",
    "MODEL_CLASSES",
    "ModelConfig",
    "ModelKind",
    "NETS",
    "PyroModel",
    "QUADRANTS_GIVEN",
    "QuadrantCVAE",
    "QuadrantConfig",
    "SDGM",
    "build_model",
    "default_binarize",
    "default_likelihood",
    "kind_of",
    "load",
    "mask_image",
    "model_from_payload",
    "quadrant_mask",
    "register_kind",
    "save_safetensors",
    "SAFETENSORS_NAME",
]

#: the exported model's file name in a run folder (weights only; config in its metadata and in
#: the folder's ``config.json``)
SAFETENSORS_NAME = "model.safetensors"

#: model class name -> class, used by :func:`load` (the name is stored in every checkpoint)
MODEL_CLASSES: dict[str, type[PyroModule]] = {
    cls.__name__: cls
    for cls in (
        CVAE,
        HierarchicalCVAE,
        M2,
        ADGM,
        SDGM,
        QuadrantCVAE,
        BaselineNet,
        LabelClassifier,
        MoleculeCVAE,
        HierarchicalMoleculeCVAE,
    )
}


def build_model(config: ModelConfig) -> CVAE:
    """The model a config describes, as :data:`BUILDERS` says: the one-layer class of the
    config's kind, or its hierarchical class when the config lists ``latent_dims``
    (:class:`CVAE` / :class:`HierarchicalCVAE` for a :class:`ModelConfig`,
    :class:`MoleculeCVAE` / :class:`HierarchicalMoleculeCVAE` for a :class:`MoleculeConfig`)."""
    for cls in type(config).__mro__:
        if cls in BUILDERS:
            flat, layered = BUILDERS[cls]
            return layered(config) if config.latent_dims else flat(config)
    raise TypeError(
        f"build_model builds a model from a ModelConfig or MoleculeConfig, got "
        f"{type(config).__name__}; build other models from their class"
    )


def model_from_payload(payload: dict, source: str = "checkpoint", model=None) -> PyroModule:
    """Rebuild a model from a checkpoint payload (class name, config and weights); with
    ``model`` given, load the weights into it instead (a model class of the user's, whose
    checkpoints hold a ``state_dict`` and no config)."""
    if model is not None:
        return _load_into(model, payload, source)
    name = payload.get("model_class", "CVAE") if isinstance(payload, dict) else None
    if (
        isinstance(payload, dict)
        and payload.get("model_config") is None
        and name not in MODEL_CLASSES
    ):
        raise CheckpointError(
            f"{source} was written by the model class {name!r}, which pyro_cvae does not know: "
            "its checkpoints hold the state_dict only (no config to rebuild it from). Build the "
            f"model yourself and pass it: pyro_cvae.load({source!r}, model={name}(...))"
        )
    net = (payload.get("model_config") or {}).get("net") if isinstance(payload, dict) else None
    if isinstance(net, str) and net not in NETS:  # a user's network, not registered here
        raise CheckpointError(f"cannot load {source}: {unknown_net_message(net)}")
    try:
        cls = MODEL_CLASSES[payload.get("model_class", "CVAE")]
        config = cls.config_class.from_dict(payload["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source} does not hold a pyro_cvae model configuration: {e}") from e
    return _load_weights(cls(config), payload, source,
                         "its configuration", "the file was written by a different model")  # fmt: skip


def _load_into(model, payload: dict, source: str):
    saved = payload.get("model_class")
    if saved is not None and saved != type(model).__name__:
        raise CheckpointError(
            f"{source} was written by a {saved}, not a {type(model).__name__}; pass a {saved}"
        )
    return _load_weights(model, payload, source, f"this {type(model).__name__}",
                         "build it with the settings it was trained with")  # fmt: skip


def _load_weights(model, payload: dict, source: str, what: str, fix: str):
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{source} holds weights that do not fit {what} ({e}); {fix}") from e
    model.loaded_from = source  # the file the weights came from (``evaluate`` records it)
    return model


def save_safetensors(model: PyroModule, path: str | Path, *, metadata: dict | None = None) -> Path:
    """Export ``model`` the way the ecosystem reads it: a ``.safetensors`` file of its
    ``state_dict`` (``safetensors.torch.load_file`` reads it), the model class and config stored
    in its metadata, and a ``config.json`` beside it holding ``model_class`` and ``model`` (the
    config), added to a run's ``config.json`` when one is there. :func:`load` reads it back.

    ``metadata``: further entries of the file's metadata, each value stored as its JSON text
    (e.g. ``{"attributes": schema.to_dict()}``, as :func:`pyro_cvae.finish_run` stores the
    attribute and table schemas), read back by ``json.loads(safe_open(...).metadata()[key])``.
    """
    if hasattr(model, "check_saveable"):
        model.check_saveable("export this model")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"a safetensors file name ends in .safetensors, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share memory (e.g. a VampPrior's bound encoder)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    config = config_dict(model)  # None for a model class of the user's: weights only
    meta = {"format": "pyro_cvae.model", "model_class": type(model).__name__}
    if config is not None:
        meta["model_config"] = json.dumps(config)
    for key, value in (metadata or {}).items():
        if key in meta:
            raise ValueError(f"metadata key {key!r} is the file's own; name the entry otherwise")
        meta[key] = json.dumps(value)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    cfg_path = path.parent / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg.update(model_class=type(model).__name__, model=config)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return path


def _load_safetensors(path: Path, map_location, model=None) -> PyroModule:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} could not be read as a safetensors file: {e}") from e
    if model is not None:
        return _load_into(model, {"model_class": meta.get("model_class"), "model": weights},
                          str(path))  # fmt: skip
    if "model_config" in meta:
        payload = {"model_class": meta.get("model_class", "CVAE"),
                   "model_config": json.loads(meta["model_config"])}  # fmt: skip
    else:  # weights only: the config.json beside it (a run's, or a flat model config)
        cfg_path = path.parent / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(
                f"{path} stores no model configuration and {cfg_path} does not exist; keep the "
                "config.json that was exported with it"
            )
        cfg = json.loads(cfg_path.read_text())
        payload = {"model_class": cfg.get("model_class", "CVAE"),
                   "model_config": cfg.get("model", cfg)}  # fmt: skip
    payload["model"] = weights
    return model_from_payload(payload, str(path), model)


def _load_folder(folder: Path, map_location, into=None) -> PyroModule:
    newest = latest_checkpoint(folder)
    final = folder / "model.pt"
    if newest is not None:
        try:
            path, payload = load_latest_good(folder, map_location)
        except CheckpointError:
            if not final.is_file():
                raise
            warnings.warn(
                f"no checkpoint of {folder} is readable; loaded {final.name} instead",
                stacklevel=3,
            )
            return model_from_payload(load_checkpoint(final, map_location), str(final), into)
        if path != newest:
            warnings.warn(
                f"{newest} is truncated or corrupted; loaded the newest good checkpoint "
                f"{path.name} instead",
                stacklevel=3,
            )
        return model_from_payload(payload, str(path), into)
    if final.is_file():
        return model_from_payload(load_checkpoint(final, map_location), str(final), into)
    if (folder / SAFETENSORS_NAME).is_file():
        return _load_safetensors(folder / SAFETENSORS_NAME, map_location, into)
    raise CheckpointError(
        f"run folder {folder} holds no checkpoint, model.pt or {SAFETENSORS_NAME}; train first "
        f"with `pyro-cvae train --out {folder}`"
    )


def load(path: str | Path, map_location: str | torch.device = "cpu", *, model=None) -> PyroModule:
    """Rebuild a saved model from a run folder, a checkpoint file, ``model.pt`` or an exported
    ``model.safetensors``.

    A model of the library needs no other input: the configuration is stored with the weights.
    A model class of your own (trained by :func:`pyro_cvae.fit`, no library config) is stored as
    its ``state_dict`` only: build it and pass it as ``model``; its weights are loaded into it.

    A run folder gives its newest checkpoint that verifies (a truncated or corrupted newer one is
    skipped with a warning), else its ``model.pt``, else its ``model.safetensors``.
    """
    path = Path(path)
    into = model
    if path.is_dir():
        model = _load_folder(path, map_location, into)
    elif path.suffix == ".safetensors" and path.is_file():
        model = _load_safetensors(path, map_location, into)
    else:
        ckpt = resolve_checkpoint(path)
        model = model_from_payload(load_checkpoint(ckpt, map_location), str(ckpt), into)
    return model.to(map_location).eval()
