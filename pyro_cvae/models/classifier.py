"""A classifier p(y | x) as a Pyro model: the judge of generated images, trained like any model.

``p(y | x) = Categorical(logits(x))`` with the label observed and an empty guide: its ELBO is the
log-likelihood of the labels, so :func:`pyro_cvae.fit` trains it by cross-entropy. The control
score (:func:`pyro_cvae.control_score`) asks it whether images generated for a label look like it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from .._frozen import FrozenConfig
from .._validate import check_images, check_labels, positive_int
from ..nn.nets import Classifier

__all__ = ["ClassifierConfig", "LabelClassifier"]


@dataclass(frozen=True)
class ClassifierConfig(FrozenConfig):
    """Architecture of a :class:`LabelClassifier`."""

    image_shape: tuple[int, int, int] = (1, 8, 8)  # (C, H, W)
    num_classes: int = 10
    hidden_dims: tuple[int, ...] = (256,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes!r}")
        for h in self.hidden_dims:
            positive_int("each hidden_dims entry", h)


class LabelClassifier(PyroModule):
    """p(y | x) for images (..., C, H, W); calling it returns the logits (..., num_classes).

    Args:
        config: a :class:`ClassifierConfig`; keyword arguments build one instead.
    """

    config_class = ClassifierConfig
    latent_sites: tuple[str, ...] = ()

    def __init__(self, config: ClassifierConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = ClassifierConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a ClassifierConfig or keyword arguments, not both")
        self.config = config
        self.net = Classifier(config.image_shape, config.num_classes, config.hidden_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise a clear ``ValueError`` for malformed images or labels."""
        check_images(x, self.config.image_shape, binary_range=False)
        if y is not None:
            check_labels(y, self.config.num_classes, x.shape[0])

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self.net(x)), obs=y)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Nothing is latent (the label is observed)."""
