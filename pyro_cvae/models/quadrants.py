r"""Image-conditioned CVAE: complete an image from one, two or three of its quadrants.

The structured-output task of Sohn, Lee and Yan [1]: the condition c is the image with the
missing quadrants masked (set to -1), the output y is the missing part. Generative story::

    z ~ p(z | c) = N(loc(c), diag scale(c)^2)        # learned prior network, "z"
    y ~ p(y | z, c) = Bernoulli(logits(z, c))         # only the missing pixels, "y"

with the recognition network q(z | c, y). Given quadrants follow Pyro's example [2]: one is the
bottom-left quadrant, two the left half, three every quadrant but the bottom-right.

The baseline is a deterministic network from c to the missing pixels, trained with the same
(masked) cross-entropy; its negative conditional log-likelihood is exactly that cross-entropy.
For the CVAE, :func:`pyro_cvae.evaluate.conditional_nll` estimates :math:`-\log p(y | c)` by importance sampling
with q as the proposal (a proper estimate that tightens with K, not the negative ELBO).

References:
    [1] Sohn, Lee and Yan, Learning Structured Output Representation using Deep Conditional
        Generative Models, NeurIPS 2015.
    [2] Pyro examples, Conditional Variational Auto-encoder (examples/cvae), 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.nn import functional as F

from .._frozen import FrozenConfig
from .._validate import positive_int
from ..nn.nets import MIN_SCALE, MLP

__all__ = [
    "QUADRANTS_GIVEN",
    "QuadrantConfig",
    "quadrant_mask",
    "mask_image",
    "BaselineNet",
    "QuadrantCVAE",
]

#: number of given quadrants -> the given ones, as (row half, column half) with 0 = top/left
QUADRANTS_GIVEN: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((1, 0),),
    2: ((1, 0), (0, 0)),
    3: ((1, 0), (0, 0), (0, 1)),
}
MASK_VALUE = -1.0


def quadrant_mask(image_shape, num_given: int) -> torch.Tensor:
    """Boolean (C, H, W) mask, True on the given quadrants (see :data:`QUADRANTS_GIVEN`)."""
    if num_given not in QUADRANTS_GIVEN:
        raise ValueError(f"num_given must be 1, 2 or 3 quadrants, got {num_given!r}")
    c, h, w = image_shape
    mask = torch.zeros(c, h, w, dtype=torch.bool)
    halves = lambda n: (slice(0, n // 2), slice(n // 2, n))  # noqa: E731
    for r, q in QUADRANTS_GIVEN[num_given]:
        mask[:, halves(h)[r], halves(w)[q]] = True
    return mask


def mask_image(x: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """The condition: ``x`` on the given pixels, -1 elsewhere (as in Pyro's example)."""
    return torch.where(given, x, torch.full_like(x, MASK_VALUE))


@dataclass(frozen=True)
class QuadrantConfig(FrozenConfig):
    """Architecture of :class:`QuadrantCVAE` and :class:`BaselineNet` (``latent_dim`` unused by
    the baseline)."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_given: int = 1  # given quadrants: 1, 2 or 3
    latent_dim: int = 20
    hidden_dims: tuple[int, ...] = (500,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if self.num_given not in QUADRANTS_GIVEN:
            raise ValueError(f"num_given must be 1, 2 or 3 quadrants, got {self.num_given!r}")
        positive_int("latent_dim", self.latent_dim)
        for h in self.hidden_dims:
            positive_int("each hidden_dims entry", h)


def _config(config: QuadrantConfig | None, kwargs: dict) -> QuadrantConfig:
    if config is None:
        return QuadrantConfig(**kwargs)
    if kwargs:
        raise ValueError("give either a QuadrantConfig or keyword arguments, not both")
    return config


def _masked_bernoulli(logits: torch.Tensor, given: torch.Tensor) -> dist.TorchDistribution:
    """Bernoulli pixels counted only where they are missing: event (C, H, W)."""
    return dist.Bernoulli(logits=logits, validate_args=False).mask(~given).to_event(3)


class BaselineNet(PyroModule):
    """Deterministic completion: masked image (..., C, H, W) -> logits of every pixel.

    As a Pyro model, ``p(y | c) = Bernoulli(logits(c))`` on the missing pixels with an empty
    guide: its ELBO is exactly the log-likelihood, so :func:`pyro_cvae.fit` trains it by the
    masked cross-entropy, like any other model.

    Args:
        config: a :class:`QuadrantConfig`; keyword arguments build one instead.
    """

    def __init__(self, config: QuadrantConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = _config(config, kwargs)
        self.image_shape = config.image_shape
        d = math.prod(config.image_shape)
        self.register_buffer("given", quadrant_mask(config.image_shape, config.num_given))
        self.net = MLP([d, *config.hidden_dims, d])

    config_class = QuadrantConfig
    latent_sites: tuple[str, ...] = ()

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        out = self.net(c.flatten(-3))
        return out.reshape(out.shape[:-1] + self.image_shape)

    def model(self, c: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", c.shape[0]):
            pyro.sample("y", _masked_bernoulli(self(c), self.given), obs=y)

    def guide(self, c: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Nothing is latent."""


class QuadrantCVAE(PyroModule):
    """CVAE with a learned prior p(z | c), recognition q(z | c, y) and p(y | z, c).

    Args:
        config: a :class:`QuadrantConfig` (image shape, given quadrants, sizes of the three
            MLPs); keyword arguments build one instead.
    """

    config_class = QuadrantConfig
    latent_sites = ("z",)

    def __init__(self, config: QuadrantConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = _config(config, kwargs)
        self.image_shape = config.image_shape
        self.latent_dim = latent_dim = config.latent_dim
        hidden_dims = config.hidden_dims
        d = math.prod(config.image_shape)
        self.register_buffer("given", quadrant_mask(config.image_shape, config.num_given))
        self.prior_net = MLP([d, *hidden_dims, 2 * latent_dim])
        self.recognition_net = MLP([2 * d, *hidden_dims, 2 * latent_dim])
        self.generation_net = MLP([latent_dim + d, *reversed(hidden_dims), d])

    def _normal(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = h.split(self.latent_dim, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)

    def z_dist(self, c: torch.Tensor) -> dist.TorchDistribution:
        """The prior network p(z | c): batch (B,), event (D,)."""
        return self._normal(self.prior_net(c.flatten(-3)))

    def q_dist(self, c: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """The recognition network q(z | c, y): batch (B,), event (D,)."""
        return self._normal(self.recognition_net(torch.cat([c.flatten(-3), y.flatten(-3)], -1)))

    def y_dist(self, z: torch.Tensor, c: torch.Tensor) -> dist.TorchDistribution:
        """p(y | z, c) on the missing pixels; z (..., B, D) -> batch (..., B), event (C, H, W)."""
        h = torch.cat([z, c.flatten(-3).expand(z.shape[:-1] + (-1,))], dim=-1)
        logits = self.generation_net(h).reshape(z.shape[:-1] + self.image_shape)
        return _masked_bernoulli(logits, self.given)

    def model(self, c: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", c.shape[0]):
            z = pyro.sample("z", self.z_dist(c))
            pyro.sample("y", self.y_dist(z, c), obs=y)

    def guide(self, c: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", c.shape[0]):
            pyro.sample("z", self.q_dist(c, y))

    @torch.no_grad()
    def complete(self, c: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Completions drawn from the prior network: (num_samples, B, C, H, W), given pixels kept."""
        z = self.z_dist(c).sample((num_samples,))  # (S, B, D)
        probs = self.y_dist(z, c).base_dist.base_dist.probs
        return torch.where(self.given, c, probs)
