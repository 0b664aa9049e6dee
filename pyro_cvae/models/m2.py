r"""The M2 model of Kingma et al. (2014) for partial labels: a CVAE whose label may be missing.

Generative story, for a batch of B images, some with labels::

    y ~ p(y) = Cat(1/C)     # "y": observed where the label is known, summed out where not
    z ~ p(z) = N(0, I)      # "z": batch (B,), event (D,)
    x ~ p(x | z, y)         # "x": batch (B,), event (C, H, W)

Guide: a classifier q(y | x) and an encoder q(z | x, y). A missing label is ``y=None``, and one
``pyro.sample("y", ..., obs=y)`` serves labelled and unlabelled batches; the sum over the C labels
is exact, by enumeration switched on from outside (``config_enumerate`` + ``TraceEnum_ELBO``), and
vectorized: the networks broadcast over a leading label dimension. The objectives that train it
are in :mod:`pyro_cvae.infer.semisupervised`.

References:
    [1] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch.nn import functional as F

from .._validate import check_images, check_labels
from ..nn.nets import Classifier
from .config import ModelConfig
from .cvae import CVAE

__all__ = ["M2"]


class M2(CVAE):
    """M2: p(y) p(z) p(x | z, y) with a classifier q(y | x) and an encoder q(z | x, y).

    Built from a :class:`~pyro_cvae.config.ModelConfig` with ``num_classes >= 2`` and the
    ``"normal"`` prior (z is independent of y a priori, as in [1]); the classifier is an MLP
    with the config's ``hidden_dims``. Same public methods as :class:`~pyro_cvae.CVAE`
    (``sample``, ``reconstruct``, ``encode``, ``save``; :func:`pyro_cvae.load` reads it back),
    plus :meth:`classify` and :meth:`class_probs`. Where a label is not given, methods use the
    classifier's.

    Example::

        model = M2(image_shape=(1, 8, 8), num_classes=10, latent_dim=8)
        elbo = TraceEnum_ELBO(max_plate_nesting=2)
        loss = elbo.differentiable_loss(model.model, config_enumerate(model.guide), x)  # y=None
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a ModelConfig or keyword arguments, not both")
        if config.num_classes < 2:
            raise ValueError(
                f"M2 needs class labels: num_classes must be >= 2, got {config.num_classes} "
                f"(condition_dim={config.condition_dim}); build it with num_classes=10"
            )
        if getattr(config, "latent_dims", ()):
            raise ValueError(
                f"M2 has one stochastic layer, got latent_dims={config.latent_dims}; "
                "use latent_dim and latent_dims=()"
            )
        if config.prior != "normal":
            raise ValueError(
                f"M2 uses the prior p(z) = N(0, I), got prior {config.prior!r}; use prior='normal'"
            )
        super().__init__(config)
        C = config.num_classes
        # q(y | x) has the hidden units of the encoder and decoder (it was ReLU before 2026-12)
        self.classifier = Classifier(config.image_shape, C, config.hidden_dims, config.activation)
        self.register_buffer("y_logits", torch.zeros(C))  # uniform p(y)

    # ------------------------------------------------------------------ distributions

    def y_dist(self, batch_size: int) -> dist.TorchDistribution:
        """The label prior p(y), uniform over the C classes: batch (B,)."""
        return dist.Categorical(logits=self.y_logits.expand(batch_size, -1))

    def qy_dist(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The classifier q(y | x): batch (B,)."""
        return dist.Categorical(logits=self.classifier(x))

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """Labels of any shape (observed (B,), enumerated (C, 1, ..)) -> one-hot (..., C)."""
        return F.one_hot(y, self.config.num_classes).to(self._dtype())

    # ------------------------------------------------------------------ model and guide

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"labels must have shape ({x.shape[0]},) for {x.shape[0]} images, got "
                f"{tuple(y.shape)}; pass y=None for an unlabelled batch"
            )

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(y) p(z) p(x | z, y); ``y=None``: the label is latent (enumerate it in the guide)."""
        self._check_batch(x, y)
        B = x.shape[0]
        with pyro.plate("data", B):
            y = pyro.sample("y", self.y_dist(B), obs=y)  # (B,) or enumerated (C, 1, .., 1)
            z = pyro.sample("z", self.z_dist(None, (B,)))  # (..., B, D)
            pyro.sample("x", self.x_dist(z, self.one_hot(y)), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(y | x) q(z | x, y); the classifier is used only where the label is missing."""
        self._check_batch(x, y)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample("y", self.qy_dist(x))
            pyro.sample("z", self.q_dist(x, self.one_hot(y)))  # (..., B, D)

    # ------------------------------------------------------------------ public helpers

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise a clear ``ValueError`` for malformed images or labels (``y=None`` is allowed)."""
        check_images(x, self.config.image_shape, binary_range=self.likelihood.needs_unit_range)
        if y is not None:
            check_labels(y, self.config.num_classes, x.shape[0])

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x) for every image: (N, C) probabilities."""
        self.check_inputs(x)
        return torch.softmax(self.classifier(x), dim=-1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label under q(y | x): (N,) integers."""
        x = self._as_images(x)
        self.check_inputs(x)
        return self.classifier(x).argmax(-1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Mean and scale of q(z | x, y), each (N, latent_dim); y defaults to :meth:`classify`."""
        return super().encode(x, self.classify(x) if y is None else y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None, *, mean: bool = True):
        """Decode the posterior mean with the given labels (or the classifier's)."""
        y = self.classify(x) if y is None else y
        return super().reconstruct(x, y, mean=mean)

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Keep the style z of each image, change its label: (N, C, channels, H, W).

        z is the mean of q(z | x, y) with the image's own label (or the classifier's); it is
        then decoded with every label (Kingma et al. 2014, figure 1).
        """
        loc, _ = self.encode(x, y)  # (N, D)
        eye = torch.eye(self.config.num_classes, dtype=loc.dtype, device=loc.device)
        return self.decode_c(loc, eye[:, None, :]).transpose(0, 1)  # (C, N, ..) -> (N, C, ..)
