"""Configs of an optimisation run: :class:`TrainConfig`, and :class:`SemiSupervisedConfig` for M2.

They sit with the training loop (layer 4) because they check objective names against the
registry of :mod:`pyro_cvae.infer.objectives`; :func:`config_from_dict` reads any config of the
package back from its JSON form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._frozen import FrozenConfig
from .._validate import DEVICES, choice, positive_int, positive_number, renyi_alpha
from ..infer.objectives import FREE_BITS_OBJECTIVES, IMPORTANCE_WEIGHTED, OBJECTIVES
from ..infer.semisupervised import SEMI_SUPERVISED_OBJECTIVES
from ..models.config import ModelConfig

__all__ = ["TrainConfig", "SemiSupervisedConfig", "config_from_dict"]


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """One optimisation run of :func:`pyro_cvae.fit`."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    objective: str = "elbo"
    particles: int = 1  # K: samples of z per image
    alpha: float = 0.5  # Renyi-alpha objective only
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    # nats per latent coordinate under which the KL term gives no gradient (elbo, meanfield;
    # pyro_cvae.infer.free_bits); 0: the plain objective
    free_bits: float = 0.0
    warmup_epochs: int = 0  # linear KL warm-up of beta from 0 over this many epochs
    seed: int = 0
    device: str = "cpu"
    keep_checkpoints: int = 3
    skip_nonfinite: bool = False  # skip a batch with a non-finite loss instead of stopping
    validate_every: int = 1  # epochs between validation bounds (0: never)
    adam_eps: float = 1e-8  # Adam's epsilon (torch's default; the IWAE paper uses 1e-4)
    adam_beta1: float = 0.9  # Adam's first-moment decay (torch's default; Pyro's SS-VAE 0.95)
    # compute elbo / iwae / renyi without Pyro's traces where the model qualifies (same loss
    # and gradient; pyro_cvae.infer.lean); off: always the full Pyro path
    lean: bool = True

    def __post_init__(self) -> None:
        positive_int("epochs", self.epochs, "Train for at least one epoch, e.g. --epochs 10.")
        positive_int("batch_size", self.batch_size, "Use e.g. --batch-size 128.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}; e.g. 1e-3")
        choice("objective", self.objective, tuple(OBJECTIVES))
        positive_int("particles", self.particles, "K is the number of samples, K >= 1.")
        renyi_alpha(self.alpha)
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}")
        if isinstance(self.free_bits, bool) or not (
            isinstance(self.free_bits, (int, float)) and math.isfinite(self.free_bits)
            and self.free_bits >= 0
        ):  # fmt: skip
            raise ValueError(
                f"free_bits must be a finite number of nats >= 0, got {self.free_bits!r}; "
                "e.g. --free-bits 0.1"
            )
        if self.free_bits and self.objective not in FREE_BITS_OBJECTIVES:
            raise ValueError(
                f"free_bits floors the KL term of the ELBO; objective {self.objective!r} has "
                "none: use --objective elbo or meanfield, or drop --free-bits"
            )
        if isinstance(self.warmup_epochs, bool) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        choice("device", self.device, DEVICES)
        positive_int("keep_checkpoints", self.keep_checkpoints)
        positive_number("adam_eps", self.adam_eps, "e.g. 1e-8 (torch) or 1e-4 (IWAE paper)")
        if isinstance(self.adam_beta1, bool) or not (
            isinstance(self.adam_beta1, (int, float)) and 0 <= self.adam_beta1 < 1
        ):
            raise ValueError(
                f"adam_beta1 must be a number in [0, 1), got {self.adam_beta1!r}; e.g. 0.9 "
                "(torch's default) or 0.95"
            )
        if self.validate_every < 0:
            raise ValueError(f"validate_every must be >= 0, got {self.validate_every}")
        if self.objective in IMPORTANCE_WEIGHTED and (self.beta != 1.0 or self.warmup_epochs):
            raise ValueError(
                f"objective {self.objective!r} is an importance-weighted bound; beta and KL "
                "warm-up apply to the ELBO only. Use --objective elbo, or --beta 1 "
                "--warmup-epochs 0"
            )


@dataclass(frozen=True)
class SemiSupervisedConfig(TrainConfig):
    """A :class:`~pyro_cvae.config.TrainConfig` for M2, with the partial labels.

    ``objective`` is ``"elbo"`` (enumerated) or ``"iwae"``; ``particles`` is K. Which training
    labels are kept: ``num_labels`` or ``label_fraction`` (class-balanced, fixed by
    ``label_seed``; see :func:`pyro_cvae.data.partial_labels`); with neither, every image whose
    label is >= 0 is labelled (mark a missing label with -1).
    """

    batch_size: int = 100  # unlabelled images per step (Kingma et al. 2014 use 100)
    lr: float = 3e-4
    num_labels: int | None = 100
    label_fraction: float | None = None
    label_seed: int = 0
    # Kingma's alpha, the total weight of the classification loss; None: 0.1 N, N the data size
    class_weight: float | None = None
    labelled_batch_size: int = 100  # labelled images per step (cycled: there are few)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.free_bits:
            raise ValueError(
                "free_bits applies to the CVAE families' ELBO; the semi-supervised objectives "
                "take none: drop free_bits (--free-bits)"
            )
        if self.objective not in SEMI_SUPERVISED_OBJECTIVES:
            raise ValueError(
                f"objective {self.objective!r} is not available for the semi-supervised model; "
                f"choose one of {', '.join(SEMI_SUPERVISED_OBJECTIVES)} (--objective elbo|iwae)"
            )
        if self.num_labels is not None and self.label_fraction is not None:
            raise ValueError(
                f"give num_labels ({self.num_labels}) or label_fraction "
                f"({self.label_fraction}), not both"
            )
        if self.class_weight is not None and not (
            isinstance(self.class_weight, (int, float))
            and math.isfinite(self.class_weight)
            and self.class_weight >= 0
        ):
            raise ValueError(
                f"class_weight must be a finite number >= 0, got {self.class_weight!r}; "
                "leave it unset for Kingma's 0.1 N"
            )
        positive_int("labelled_batch_size", self.labelled_batch_size)


_CLASSES = {"ModelConfig": ModelConfig, "TrainConfig": TrainConfig,
            "SemiSupervisedConfig": SemiSupervisedConfig}  # fmt: skip


def config_from_dict(data: dict[str, Any]):
    """Rebuild a config from :meth:`to_dict` output (the class is read from ``__class__``)."""
    name = data.get("__class__")
    if name not in _CLASSES:
        raise ValueError(f"not a pyro_cvae config (class {name!r})")
    return _CLASSES[name].from_dict(data)
