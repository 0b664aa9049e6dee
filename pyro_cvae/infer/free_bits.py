r"""The ELBO with free bits (Kingma et al. [1], section 3 of the appendix "free bits"): a floor
of :math:`\lambda` nats under the KL divergence of each latent dimension.

For a batch of B data points with guide :math:`q(z | x_n, y_n)` and prior :math:`p(z | y_n)`,
both diagonal Gaussians over the D coordinates of every latent site, and the analytic
per-coordinate divergence :math:`\mathrm{KL}_{nj}`, the objective maximised is

.. math:: \sum_n E_q[\log p(x_n | z, y_n)] - \beta \sum_j B \max\Big(\lambda,
          \frac1B \sum_n \mathrm{KL}_{nj}\Big),

the KL of coordinate j averaged over the batch before the floor, as in the paper. A coordinate
whose average divergence is below :math:`\lambda` gets no gradient pulling it towards the
prior, so the encoder can spend up to :math:`\lambda` nats in every coordinate for free: the
remedy of [1] and of text VAEs (Bowman et al.'s decoders ignore z) against latent coordinates
that collapse to the prior. With :math:`\lambda = 0` it is the ELBO with the analytic KL,
Pyro's ``TraceMeanField_ELBO``, exactly (tested). :math:`\beta` is the KL weight of warm-up
(the latent sites' ``scale``). Other factors of the model (``pyro.factor``, observed sites)
enter as they are.

The floor couples the data points of a batch: the value is a training objective, not a bound
per data point, so validation and test bounds stay the plain ELBO and IWAE
(:mod:`pyro_cvae.evaluate`). Its value is never above the negative ELBO's loss: the floor only
adds.

References:
    [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling, Improved Variational
        Inference with Inverse Autoregressive Flow, NeurIPS 2016.
"""

from __future__ import annotations

import math
import numbers

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import Independent, kl_divergence

__all__ = ["FreeBitsELBO", "per_coordinate_kl"]


def per_coordinate_kl(q, p, name: str = "z") -> torch.Tensor:
    """KL(q || p) of one latent site per data point and coordinate, shape (B, D): both must
    be a distribution over vectors (``to_event(1)``) of a family with a registered analytic
    divergence (diagonal Gaussians: the standard normal and learned conditional priors)."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)
            and q.reinterpreted_batch_ndims == p.reinterpreted_batch_ndims == 1):  # fmt: skip
        raise ValueError(
            f"free bits needs the latent site {name!r} to be a vector of independent "
            f"coordinates in guide and prior (to_event(1)); got {type(q).__name__} and "
            f"{type(p).__name__}: use a Gaussian prior (prior='normal' or 'conditional'), or "
            "free_bits=0"
        )
    try:
        kl = kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        raise ValueError(
            f"free bits needs the KL divergence of each coordinate in closed form; site "
            f"{name!r} has guide {type(q.base_dist).__name__} and prior "
            f"{type(p.base_dist).__name__}, which has none: use a Gaussian prior "
            "(prior='normal' or 'conditional'), or free_bits=0"
        ) from None
    if kl.dim() != 2:
        raise ValueError(
            f"free bits works per data point and coordinate; site {name!r} has a KL of shape "
            f"{tuple(kl.shape)}, expected (batch, coordinates): train with one particle plate "
            "at most and the site inside the data plate"
        )
    return kl


class FreeBitsELBO(ELBO):
    """The ELBO whose KL term has a floor of ``free_bits`` nats per latent coordinate (see
    the module docstring); ``num_particles`` draws of z average the reconstruction term.

    Args:
        free_bits: the floor :math:`\\lambda` in nats per coordinate, >= 0.
        num_particles: samples of z per data point (drawn one after the other).
    """

    def __init__(self, free_bits: float, num_particles: int = 1):
        if not (isinstance(free_bits, numbers.Real) and math.isfinite(free_bits)
                and free_bits >= 0):  # fmt: skip
            raise ValueError(f"free_bits must be a finite number of nats >= 0, got {free_bits!r}")
        super().__init__(num_particles=num_particles, vectorize_particles=False,
                         max_plate_nesting=1)  # fmt: skip
        self.free_bits = float(free_bits)

    def _get_trace(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)

    def _objective(self, model_trace, guide_trace) -> torch.Tensor:
        total = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                lp = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
                total = total + scale_and_mask(lp, site["scale"], site["mask"]).sum()
                continue
            if site["mask"] is not None or not isinstance(site["scale"], numbers.Real):
                raise ValueError(
                    f"free bits takes the latent site {name!r} unmasked and with one scale "
                    "for the batch (the KL weight)"
                )
            guide_site = guide_trace.nodes[name]
            if not guide_site["fn"].has_rsample:
                raise ValueError(f"free bits needs a reparameterized guide; site {name!r} is not")
            kl = per_coordinate_kl(guide_site["fn"], site["fn"], name)  # (B, D)
            floor = kl.mean(0).clamp(min=self.free_bits)  # (D,): no gradient below lambda
            total = total - site["scale"] * kl.shape[0] * floor.sum()
        return total

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative objective, a tensor to differentiate (averaged over the particles)."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss - self._objective(model_trace, guide_trace) / self.num_particles
        return loss

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())
