"""Frozen, validated configuration objects with a JSON round trip.

A :class:`ModelConfig` is enough to rebuild a model with no other input; it is stored beside
every checkpoint. A :class:`TrainConfig` describes one optimisation run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelConfig", "TrainConfig", "config_from_dict", "LIKELIHOODS", "NETS", "DEVICES"]

#: names accepted for ``ModelConfig.likelihood`` (implemented in :mod:`pyro_cvae.likelihoods`)
LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")
#: names accepted for ``ModelConfig.net`` (implemented in :mod:`pyro_cvae.nets`)
NETS = ("mlp", "conv")
DEVICES = ("cpu", "cuda", "auto")


def _positive_int(name: str, value: Any, fix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}. {fix}".rstrip())


def _choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")


class _JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        out["__class__"] = type(self).__name__
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = {k: v for k, v in data.items() if k != "__class__"}
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {sorted(unknown)}; the file was written by "
                "another version of pyro_cvae or is not a config of this kind"
            )
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data and isinstance(data[f.name], list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class ModelConfig(_JsonMixin):
    """Architecture of a (conditional) VAE.

    The condition is either a class label (``num_classes > 0``, one-hot encoded inside the
    model) or a real vector of width ``condition_dim``; with both zero the model is a plain VAE.
    """

    image_shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W)
    num_classes: int = 10  # 0: no label
    condition_dim: int = 0  # width of a real-valued condition vector (exclusive with labels)
    latent_dim: int = 8
    hidden_dims: tuple[int, ...] = (256, 256)
    net: str = "mlp"
    likelihood: str = "bernoulli"
    # Gaussian likelihood only: observation noise scale; learned when learn_x_scale.
    x_scale: float = 0.1
    learn_x_scale: bool = False
    prior: str = "normal"
    prior_options: dict = field(default_factory=dict, hash=False, compare=True)
    # widths of L >= 2 stochastic layers, bottom (z1, next to x) first: a hierarchical model
    # (pyro_cvae.hierarchical); empty: one layer of latent_dim. latent_dim is then latent_dims[0].
    latent_dims: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if len(shape) != 3 or any(
            isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape
        ):
            raise ValueError(
                f"image_shape must be three positive integers (C, H, W), got {self.image_shape!r}"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(f"num_classes must be an integer >= 0, got {self.num_classes!r}")
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(
                f"num_classes must be 0 (no label) or at least 2, got {self.num_classes}"
            )
        if self.condition_dim < 0:
            raise ValueError(f"condition_dim must be >= 0, got {self.condition_dim}")
        if self.num_classes and self.condition_dim:
            raise ValueError(
                "give either num_classes (label condition) or condition_dim (vector condition), "
                f"not both (got {self.num_classes} and {self.condition_dim})"
            )
        _positive_int("latent_dim", self.latent_dim)
        self._check_latent_dims()
        if not self.hidden_dims:
            raise ValueError("hidden_dims must list at least one hidden layer width, e.g. (400,)")
        for h in self.hidden_dims:
            _positive_int("each hidden_dims entry", h)
        _choice("net", self.net, NETS)
        if self.net == "conv" and shape[1:] != (28, 28):
            raise ValueError(
                f"net='conv' is built for 28x28 images, got image_shape {shape}; use net='mlp'"
            )
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        if not (isinstance(self.x_scale, (int, float)) and self.x_scale > 0):
            raise ValueError(f"x_scale must be a positive number, got {self.x_scale!r}")
        from .priors import PRIORS  # local import: priors imports nothing from config

        _choice("prior", self.prior, tuple(PRIORS))
        if not isinstance(self.prior_options, dict):
            raise ValueError(f"prior_options must be a dict, got {self.prior_options!r}")
        unknown = sorted(set(self.prior_options) - set(PRIORS[self.prior].OPTIONS))
        if unknown:
            raise ValueError(
                f"prior {self.prior!r} has no option(s) {unknown}; it accepts: "
                f"{', '.join(PRIORS[self.prior].OPTIONS) or 'none'}"
            )

    def _check_latent_dims(self) -> None:
        if isinstance(self.latent_dims, (str, int)):
            raise ValueError(
                f"latent_dims must be a tuple of layer widths such as (100, 50), "
                f"got {self.latent_dims!r}"
            )
        dims = tuple(self.latent_dims)
        object.__setattr__(self, "latent_dims", dims)
        if not dims:
            return
        if len(dims) == 1:
            raise ValueError(
                f"latent_dims lists L >= 2 stochastic layers, got {dims}; for one layer use "
                f"latent_dim={dims[0]} and latent_dims=()"
            )
        for d in dims:
            _positive_int("each latent_dims entry", d, f"Got latent_dims={dims}; e.g. (100, 50).")
        default = next(f.default for f in dataclasses.fields(self) if f.name == "latent_dim")
        if self.latent_dim not in (default, dims[0]):
            raise ValueError(
                f"latent_dim={self.latent_dim} disagrees with latent_dims={dims}: with layers, "
                f"latent_dim is the bottom layer's width; drop latent_dim or set it to {dims[0]}"
            )
        object.__setattr__(self, "latent_dim", dims[0])

    @property
    def hierarchical(self) -> bool:
        """Whether the config describes several stochastic layers (``latent_dims``)."""
        return bool(self.latent_dims)

    @property
    def cond_width(self) -> int:
        """Width of the condition vector the networks receive (0 for a plain VAE)."""
        return self.num_classes or self.condition_dim

    @property
    def x_dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def __hash__(self) -> int:  # prior_options is a dict; hash on the JSON text instead
        return hash(self.to_json())


@dataclass(frozen=True)
class TrainConfig(_JsonMixin):
    """One optimisation run of :func:`pyro_cvae.fit`."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    objective: str = "elbo"
    particles: int = 1  # K: samples of z per image
    alpha: float = 0.5  # Renyi-alpha objective only
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    warmup_epochs: int = 0  # linear KL warm-up of beta from 0 over this many epochs
    seed: int = 0
    device: str = "cpu"
    keep_checkpoints: int = 3
    skip_nonfinite: bool = False  # skip a batch with a non-finite loss instead of stopping
    validate_every: int = 1  # epochs between validation bounds (0: never)

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs, "Train for at least one epoch, e.g. --epochs 10.")
        _positive_int("batch_size", self.batch_size, "Use e.g. --batch-size 128.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}; e.g. 1e-3")
        from .objectives import OBJECTIVES

        _choice("objective", self.objective, tuple(OBJECTIVES))
        _positive_int("particles", self.particles, "K is the number of samples, K >= 1.")
        a = self.alpha
        if (
            isinstance(a, bool)
            or not isinstance(a, (int, float))
            or not math.isfinite(a)
            or a < 0
            or a == 1
        ):
            raise ValueError(
                f"alpha must be >= 0 and != 1, got {a!r}; alpha=0 is the IWAE bound and alpha=1 "
                "the ELBO, e.g. --alpha 0.5"
            )
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}")
        if isinstance(self.warmup_epochs, bool) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        _choice("device", self.device, DEVICES)
        _positive_int("keep_checkpoints", self.keep_checkpoints)
        if self.validate_every < 0:
            raise ValueError(f"validate_every must be >= 0, got {self.validate_every}")


_CLASSES = {"ModelConfig": ModelConfig, "TrainConfig": TrainConfig}


def config_from_dict(data: dict[str, Any]):
    """Rebuild a config from :meth:`to_dict` output (the class is read from ``__class__``)."""
    name = data.get("__class__")
    if name not in _CLASSES:
        raise ValueError(f"not a pyro_cvae config (class {name!r})")
    return _CLASSES[name].from_dict(data)
