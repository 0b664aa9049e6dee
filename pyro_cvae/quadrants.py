r"""Image-conditioned CVAE: complete an image from one, two or three of its quadrants.

The structured-output task of Sohn, Lee and Yan [1]: the condition c is the image with the
missing quadrants masked (set to -1), the output y is the missing part. Generative story::

    z ~ p(z | c) = N(loc(c), diag scale(c)^2)        # learned prior network, "z"
    y ~ p(y | z, c) = Bernoulli(logits(z, c))         # only the missing pixels, "y"

with the recognition network q(z | c, y). Given quadrants follow Pyro's example [2]: one is the
bottom-left quadrant, two the left half, three every quadrant but the bottom-right.

The baseline is a deterministic network from c to the missing pixels, trained with the same
(masked) cross-entropy; its negative conditional log-likelihood is exactly that cross-entropy.
For the CVAE, :func:`conditional_nll` estimates :math:`-\log p(y | c)` by importance sampling
with q as the proposal (a proper estimate that tightens with K, not the negative ELBO).

References:
    [1] Sohn, Lee and Yan, Learning Structured Output Representation using Deep Conditional
        Generative Models, NeurIPS 2015.
    [2] Pyro examples, Conditional Variational Auto-encoder (examples/cvae), 2020.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from .nets import MIN_SCALE, MLP

__all__ = [
    "QUADRANTS_GIVEN",
    "quadrant_mask",
    "mask_image",
    "BaselineNet",
    "QuadrantCVAE",
    "train_quadrants",
    "conditional_nll",
    "baseline_nll",
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


class BaselineNet(nn.Module):
    """Deterministic completion: masked image (..., C, H, W) -> logits of every pixel."""

    def __init__(self, image_shape, hidden_dims=(500, 500)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        d = math.prod(image_shape)
        self.net = MLP([d, *hidden_dims, d])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        out = self.net(c.flatten(-3))
        return out.reshape(out.shape[:-1] + self.image_shape)


class QuadrantCVAE(PyroModule):
    """CVAE with a learned prior p(z | c), recognition q(z | c, y) and p(y | z, c).

    Args:
        image_shape: (C, H, W).
        num_given: given quadrants (1, 2 or 3); fixes which pixels are the output y.
        latent_dim, hidden_dims: sizes of the three MLPs.
    """

    def __init__(self, image_shape, num_given: int, latent_dim: int = 20, hidden_dims=(500,)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        d = math.prod(image_shape)
        self.register_buffer("given", quadrant_mask(image_shape, num_given))
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
        return dist.Bernoulli(logits=logits, validate_args=False).mask(~self.given).to_event(3)

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


def _batches(n: int, size: int, generator=None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, size):
        yield order[i : i + size]


def train_quadrants(
    x: torch.Tensor,
    num_given: int,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    latent_dim: int = 20,
    hidden_dims=(500,),
    seed: int = 0,
) -> tuple[BaselineNet, QuadrantCVAE]:
    """Train the baseline (masked cross-entropy) and the CVAE (ELBO) on images ``x`` (N, C, H, W).

    Returns:
        ``(baseline, cvae)`` in eval mode.
    """
    shape = tuple(x.shape[1:])
    given = quadrant_mask(shape, num_given)
    torch.manual_seed(seed)
    baseline = BaselineNet(shape, hidden_dims)
    cvae = QuadrantCVAE(shape, num_given, latent_dim, hidden_dims)
    opt_b = torch.optim.Adam(baseline.parameters(), lr=lr)
    opt_c = torch.optim.Adam(cvae.parameters(), lr=lr)
    elbo = Trace_ELBO()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in _batches(len(x), batch_size, g):
            y = x[idx]
            c = mask_image(y, given)
            loss_b = _masked_bce(baseline(c), y, given).mean()
            opt_b.zero_grad()
            loss_b.backward()
            opt_b.step()
            loss_c = elbo.differentiable_loss(cvae.model, cvae.guide, c, y) / len(idx)
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
    return baseline.eval(), cvae.eval()


def _masked_bce(logits: torch.Tensor, y: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the missing pixels of each image: shape (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (bce * (~given)).flatten(1).sum(1)


@torch.no_grad()
def baseline_nll(baseline: BaselineNet, x: torch.Tensor, num_given: int) -> torch.Tensor:
    """Exact -log p(y | c) of the deterministic baseline (nats per image): shape (N,)."""
    given = quadrant_mask(tuple(x.shape[1:]), num_given)
    return _masked_bce(baseline(mask_image(x, given)), x, given)


@torch.no_grad()
def conditional_nll(
    cvae: QuadrantCVAE, x: torch.Tensor, num_samples: int = 100, *, batch_size: int = 200
) -> torch.Tensor:
    r"""Importance-sampled :math:`-\log p(y | c)` (nats per image) with K = ``num_samples``:

    .. math:: -\log \frac1K \sum_k \frac{p(y | z_k, c)\, p(z_k | c)}{q(z_k | c, y)},
              \quad z_k \sim q(z | c, y).

    With K = 1 its expectation is the negative ELBO; it decreases towards the true value as K
    grows [Burda et al., 2016]. Returns a tensor of shape (N,).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples (K) must be an integer >= 1, got {num_samples!r}")
    out = []
    for idx in _batches(len(x), batch_size):
        y = x[idx]
        c = mask_image(y, cvae.given)
        q = cvae.q_dist(c, y)
        z = q.sample((num_samples,))  # (K, B, D)
        log_w = cvae.y_dist(z, c).log_prob(y) + cvae.z_dist(c).log_prob(z) - q.log_prob(z)
        out.append(math.log(num_samples) - torch.logsumexp(log_w, dim=0))
    return torch.cat(out)
