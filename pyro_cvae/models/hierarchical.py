r"""A conditional VAE with L >= 2 stochastic layers and a bottom-up guide.

Generative story, for a batch of B images with conditions c (widths ``latent_dims = (d_1, ...,
d_L)``, bottom first)::

    z_L ~ p(z_L | c)                  # the configured prior, "zL": batch (B,), event (d_L,)
    z_l ~ p(z_l | z_{l+1}, c)         # diagonal Gaussians, "z{l}" for l = L-1, ..., 1
    x   ~ p(x | z_1, c)               # the likelihood, "x": event (C, H, W)

and the bottom-up guide q(z_1 | x, c) q(z_2 | z_1, c) ... q(z_L | z_{L-1}, c), as in the
two-layer model of the IWAE paper [1]: with ``hidden_dims=(100, 100)`` and
``latent_dims=(100, 50)`` there are two deterministic layers of 100 units between x and z_1 and
two of 50 between z_1 and z_2 (in general: two layers of d_{l+1} units between z_l and
z_{l+1}, in both directions). The hidden units use ``config.activation`` (ReLU by default;
[1] uses tanh). A top-down (ladder) guide [2] is not implemented; the guide's structure is the
bottom-up one above.

The class is a :class:`~pyro_cvae.CVAE` with more layers, and keeps its interface: ``encode``,
``decode`` and ``reconstruct`` work on the bottom layer z_1 (next to the image), ``encoder`` is
q(z_1 | x, c) (so :func:`pyro_cvae.evaluate.active_units` counts z_1's units), and ``q_dist`` /
``z_dist`` are the joint guide and prior over all layers, concatenated as (z_1, ..., z_L), so a
Monte Carlo KL between them is the whole KL. Every sample site is inside
``pyro.plate("data")``, so the importance-weighted objectives and
:func:`pyro_cvae.log_likelihood` apply unchanged.

With ``objective="meanfield"``: the guide is not mean-field (q(z_2 | z_1) depends on z_1), and
Pyro warns that it cannot verify the mean-field restriction (model and guide draw the layers in
opposite orders). The estimate stays unbiased: the conditionals p(z_l | z_{l+1}) for l < L have no
registered analytic KL (:class:`LayerNormal`), so those terms fall back to
:math:`\log p(z_l | z_{l+1}) - \log q(z_l | \cdot)` at the guide's draw, and only the top layer,
whose prior depends on no other latent, uses a closed-form KL where the prior has one.

References:
    [1] Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016, Sec. 5.
    [2] Sønderby, Raiko, Maaløe, Sønderby and Winther, Ladder Variational Autoencoders,
        NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch import nn
from torch.distributions import register_kl
from torch.nn import functional as F

from ..nn.nets import MIN_SCALE, MLP, broadcast_cat
from ..nn.priors import make_prior
from .config import ModelConfig
from .cvae import CVAE

__all__ = ["HierarchicalCVAE", "GaussianLayer", "LayeredLatent", "LayerNormal"]


class GaussianLayer(nn.Module):
    """loc and scale of a diagonal Gaussian from (h, c): (..., B, d_in), (B, c) -> (..., B, d_out).

    An MLP ``d_in + c -> hidden... -> 2 d_out`` (``activation`` between layers); scale = softplus +
    ``MIN_SCALE``.
    """

    def __init__(self, in_dim: int, cond_width: int, hidden_dims, out_dim: int,
                 activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False):  # fmt: skip
        super().__init__()
        self.out_dim = out_dim
        sizes = [in_dim + cond_width, *hidden_dims, 2 * out_dim]
        self.net = MLP(sizes, activation, dropout, batch_norm)

    def forward(self, h: torch.Tensor, c: torch.Tensor | None = None):
        loc, raw = self.net(broadcast_cat(h, c)).split(self.out_dim, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE


class LayerNormal(dist.Independent):
    """A diagonal Gaussian over one layer, p(z_l | z_{l+1}, c), without an analytic KL.

    Its parameters depend on another latent, so a closed-form KL at the guide's draw of that
    latent would bias the mean-field ELBO; ``kl_divergence`` refuses it and
    ``TraceMeanField_ELBO`` falls back to sampling.
    """


@register_kl(dist.Independent, LayerNormal)
def _kl_needs_sampling(q, p):
    raise NotImplementedError


class LayeredLatent(TorchDistribution):
    """The joint distribution of several latent layers drawn one after another.

    ``first`` is the distribution of the first layer drawn and each function of ``steps`` maps
    the previous draw to the next layer's distribution. Values are the layers concatenated
    along the last dimension in the order (z_1, ..., z_L): ``top_down=True`` means they are
    drawn from z_L down to z_1 (a prior), otherwise from z_1 up (a guide).

    Args:
        first: distribution of the first layer drawn, event dim 1.
        steps: functions ``z_prev -> distribution of the next layer``.
        widths: (d_1, ..., d_L).
        top_down: whether layers are drawn from the top.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, first, steps: list[Callable], widths, top_down: bool = False):
        self.first, self.steps = first, list(steps)
        self.widths = tuple(widths)
        self.top_down = top_down
        super().__init__(first.batch_shape, torch.Size([sum(self.widths)]), validate_args=False)

    @property
    def has_rsample(self) -> bool:
        return bool(self.first.has_rsample)

    def _draw(self, sample_shape, reparameterized: bool) -> torch.Tensor:
        def draw(d, shape=()):
            shape = torch.Size(shape)
            return d.rsample(shape) if reparameterized else d.sample(shape)

        z = draw(self.first, torch.Size(sample_shape))
        parts = [z]
        for step in self.steps:
            z = draw(step(z))
            parts.append(z)
        return torch.cat(parts[::-1] if self.top_down else parts, dim=-1)

    def rsample(self, sample_shape=()) -> torch.Tensor:
        return self._draw(sample_shape, reparameterized=True)

    def sample(self, sample_shape=()) -> torch.Tensor:
        with torch.no_grad():
            return self._draw(sample_shape, reparameterized=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        parts = list(value.split(self.widths, dim=-1))  # (z_1, ..., z_L)
        drawn = parts[::-1] if self.top_down else parts
        lp = self.first.log_prob(drawn[0])
        for step, prev, z in zip(self.steps, drawn[:-1], drawn[1:]):
            lp = lp + step(prev).log_prob(z)
        return lp


class HierarchicalCVAE(CVAE):
    """Conditional VAE with stochastic layers ``latent_dims = (d_1, ..., d_L)``, L >= 2.

    Model p(z_L | c) p(z_{L-1} | z_L, c) ... p(z_1 | z_2, c) p(x | z_1, c); guide
    q(z_1 | x, c) q(z_2 | z_1, c) ... q(z_L | z_{L-1}, c). Sample sites ``"z1"``, ...,
    ``"zL"`` and ``"x"``. The prior of ``ModelConfig.prior`` is the top layer's.

    Args:
        config: a :class:`~pyro_cvae.config.ModelConfig` with ``latent_dims``; keyword arguments
            build one instead.

    Example::

        model = HierarchicalCVAE(image_shape=(1, 28, 28), hidden_dims=(100, 100),
                                 latent_dims=(100, 50))   # the IWAE paper's two-layer model
    """

    supports_latent_dims = True  # CVAE refuses latent_dims; this class is built for them

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a ModelConfig or keyword arguments, not both")
        if not config.latent_dims:
            raise ValueError(
                "HierarchicalCVAE needs latent_dims with the widths of L >= 2 stochastic layers, "
                "e.g. ModelConfig(latent_dims=(100, 50)), got latent_dims=(); use CVAE (or "
                "pyro_cvae.models.build_model) for one layer"
            )
        # CVAE builds the bottom of the hierarchy: encoder q(z_1 | x, c), decoder p(x | z_1, c),
        # the likelihood; its prior (over z_1) is replaced by one over the top layer below.
        super().__init__(config)
        dims, cw, opts = config.latent_dims, config.cond_width, config.layer_options
        # q(z_{l+1} | z_l, c) and p(z_l | z_{l+1}, c): two hidden layers of d_{l+1} units each
        self.q_layers = nn.ModuleList(
            GaussianLayer(dims[i], cw, (dims[i + 1],) * 2, dims[i + 1], config.activation, **opts)
            for i in range(len(dims) - 1)
        )
        self.p_layers = nn.ModuleList(
            GaussianLayer(dims[i + 1], cw, (dims[i + 1],) * 2, dims[i], config.activation, **opts)
            for i in range(len(dims) - 1)
        )
        self.prior = make_prior(config.prior, dims[-1], cw, config.prior_options)
        self.prior.bind(self)

    @property
    def num_layers(self) -> int:
        return len(self.config.latent_dims)

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """The latent sample sites ``"z1"``, ..., ``"zL"`` (those a KL weight scales)."""
        return tuple(f"z{l}" for l in range(1, self.num_layers + 1))

    # ------------------------------------------------------------------ one layer at a time

    def top_dist(self, c: torch.Tensor | None, batch_shape) -> dist.TorchDistribution:
        """The prior p(z_L | c) of the top layer with the given batch shape."""
        return self.prior.dist(c, torch.Size(batch_shape))

    def layer_dist(self, l: int, z_above: torch.Tensor, c) -> dist.TorchDistribution:
        """p(z_l | z_{l+1}, c) for l = 1, ..., L-1: batch z_above.shape[:-1], event (d_l,)."""
        loc, scale = self.p_layers[l - 1](z_above, c)
        return LayerNormal(dist.Normal(loc, scale), 1)

    def q_layer_dist(self, l: int, below: torch.Tensor, c) -> dist.TorchDistribution:
        """q(z_1 | x, c) for l = 1 (``below`` = x), q(z_l | z_{l-1}, c) for l >= 2."""
        loc, scale = self.encoder(below, c) if l == 1 else self.q_layers[l - 2](below, c)
        return dist.Normal(loc, scale).to_event(1)

    def prior_encoder(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """loc, scale of q(z_L | x, c) along the guide's mean path (used by the VampPrior).

        Each intermediate layer is replaced by its mean, so q(z_L | u, c) is one Gaussian per
        pseudo-input u (the VampPrior of a bottom-up guide is otherwise not a mixture of
        Gaussians).
        """
        loc, scale = self.encoder(x, c)
        for layer in self.q_layers:
            loc, scale = layer(loc, c)
        return loc, scale

    # ------------------------------------------------------------------ joint distributions

    def z_dist(self, c: torch.Tensor | None, batch_shape) -> dist.TorchDistribution:
        """The joint prior p(z_1, ..., z_L | c) over the concatenated layers, event (sum d_l,)."""
        L = self.num_layers
        steps = [lambda z, l=l: self.layer_dist(l, z, c) for l in range(L - 1, 0, -1)]
        return LayeredLatent(self.top_dist(c, batch_shape), steps, self.config.latent_dims, True)

    def q_dist(self, x: torch.Tensor, c: torch.Tensor | None) -> dist.TorchDistribution:
        """The joint guide q(z_1, ..., z_L | x, c) over the concatenated layers: batch (B,)."""
        steps = [lambda z, l=l: self.q_layer_dist(l, z, c) for l in range(2, self.num_layers + 1)]
        return LayeredLatent(self.q_layer_dist(1, x, c), steps, self.config.latent_dims)

    # ------------------------------------------------------------------ model and guide

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(z_L | y) ... p(z_1 | z_2, y) p(x | z_1, y) over one plate of B images."""
        B = x.shape[0]
        c = self.condition(y, B)
        L = self.num_layers
        with pyro.plate("data", B):
            z = pyro.sample(f"z{L}", self.top_dist(c, (B,)))  # (B, d_L) or (K, B, d_L)
            for l in range(L - 1, 0, -1):
                z = pyro.sample(f"z{l}", self.layer_dist(l, z, c))  # (..., B, d_l)
            pyro.sample("x", self.x_dist(z, c), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(z_1 | x, y) q(z_2 | z_1, y) ..., inside the same plate as the model."""
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B):
            h = pyro.sample("z1", self.q_layer_dist(1, x, c))  # (..., B, d_1)
            for l in range(2, self.num_layers + 1):
                h = pyro.sample(f"z{l}", self.q_layer_dist(l, h, c))  # (..., B, d_l)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def sample_latents(self, c: torch.Tensor | None, batch_shape, temperature: float = 1.0):
        """Draw z_1 top-down; ``temperature`` scales the top draw and every layer's noise."""
        z = self.top_dist(c, batch_shape).sample() * temperature
        for l in range(self.num_layers - 1, 0, -1):
            base = self.layer_dist(l, z, c).base_dist
            z = base.loc + temperature * base.scale * torch.randn_like(base.loc)
        return z  # (..., d_1)
