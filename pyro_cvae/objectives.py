r"""Training objectives by name: Pyro's ELBOs and per-data-point importance-weighted bounds.

Every objective is a :class:`pyro.infer.ELBO` with ``loss`` (a float) and
``differentiable_loss`` (a tensor whose value is the loss and whose gradient is the
estimator's), so the trainer handles them all the same way.

For a data set of images :math:`x_n` and K samples :math:`z_{nk} \sim q(z | x_n, y_n)` with
log weights :math:`\log w_{nk} = \log p(x_n, z_{nk} | y_n) - \log q(z_{nk} | x_n, y_n)`:

* ``elbo``: :math:`\sum_n \frac1K \sum_k \log w_{nk}` (``Trace_ELBO``);
* ``iwae``: :math:`\sum_n \log \frac1K \sum_k w_{nk}` [1], the log-mean-exp taken per image;
* ``renyi``: :math:`\sum_n \frac{1}{1-\alpha} \log \frac1K \sum_k w_{nk}^{1-\alpha}` [2];
* ``dreg``: the ``iwae`` bound with the doubly-reparameterized gradient of [3] for the guide.

The per-image property holds only when every latent sample site sits inside the data plate
(``pyro.plate("data")``): a site outside it (a global latent) couples the images, and the
log-mean-exp over particles would no longer factorise. Pyro's ``RenyiELBO`` sums each particle's
log weight over all plates *before* the log-mean-exp: it equals the per-image bound only for a
batch of one image. The bounds here keep the data dimension and refuse models that break the
condition.

References:
    [1] Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
    [2] Li and Turner, Rényi Divergence Variational Inference, NeurIPS 2016.
    [3] Tucker, Lawson, Gu and Maddison, Doubly Reparameterized Gradient Estimators for Monte
        Carlo Objectives, ICLR 2019.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_identically_zero

__all__ = [
    "OBJECTIVES",
    "make_objective",
    "ImportanceWeightedELBO",
    "DReGELBO",
    "TraceGraphELBO",
    "importance_log_weights",
    "DATA_PLATE",
]

#: name of the plate over images that the importance-weighted bounds keep separate
DATA_PLATE = "data"


class TraceGraphELBO(TraceGraph_ELBO):
    """``TraceGraph_ELBO`` with a ``differentiable_loss`` (value = loss, gradient = surrogate)."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        elbo, surrogate_loss = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        loss = -elbo.detach() if torch.is_tensor(elbo) else torch.tensor(-elbo)
        return loss + (surrogate_loss - surrogate_loss.detach())


def _site_per_datapoint(site: dict, width: int) -> torch.Tensor:
    """A site's log-density reduced to shape (K, B): particle dim and data-plate dim kept.

    ``width`` is the vectorized ELBO's ``max_plate_nesting``, which counts the particle plate:
    particles sit at dim ``-width``.
    """
    lp = site["log_prob"]
    while lp.dim() < width:
        lp = lp.unsqueeze(0)
    frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
    data_dim = frames[0].dim  # negative
    keep = {lp.dim() - width, lp.dim() + data_dim}
    other = [d for d in range(lp.dim()) if d not in keep]
    return lp.sum(other) if other else lp


def _check_per_datapoint(model_trace, guide_trace) -> None:
    for role, trace in (("model", model_trace), ("guide", guide_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            if not any(f.name == DATA_PLATE for f in site["cond_indep_stack"]):
                raise ValueError(
                    f"sample site {name!r} of the {role} is outside pyro.plate({DATA_PLATE!r}): "
                    "importance-weighted bounds need every sample site inside the data plate so "
                    "the log-mean-exp over particles is taken per image; move the site into the "
                    "plate or train with objective='elbo'"
                )


def importance_log_weights(elbo: ELBO, model, guide, *args, **kwargs):
    """Vectorized log importance weights, shape (K, B), and the traces they came from."""
    model_trace, guide_trace = next(iter(elbo._get_traces(model, guide, args, kwargs)))
    _check_per_datapoint(model_trace, guide_trace)
    nesting = elbo.max_plate_nesting
    log_w = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            log_w = log_w + _site_per_datapoint(site, nesting)
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample":
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"guide site {name!r} is not reparameterizable; importance-weighted bounds "
                    "here need reparameterized guides: use objective='tracegraph'"
                )
            log_w = log_w - _site_per_datapoint(site, nesting)
    return log_w, model_trace, guide_trace


def _check_scales(model_trace, guide_trace, name: str) -> None:
    for trace in (model_trace, guide_trace):
        for site_name, site in trace.nodes.items():
            if site["type"] == "sample" and not is_identically_zero(site["scale"] - 1.0):
                raise ValueError(
                    f"objective {name!r} is an importance-weighted bound; a KL weight (beta != 1 "
                    f"or KL warm-up, on site {site_name!r}) has no meaning inside it. Use "
                    "objective='elbo' for beta-VAE and warm-up, or beta=1 and warmup_epochs=0"
                )


class ImportanceWeightedELBO(ELBO):
    r"""The per-data-point Rényi-:math:`\alpha` bound; :math:`\alpha = 0` is the IWAE bound.

    .. math::
        \mathcal L_\alpha = \sum_n \frac{1}{1-\alpha}
        \log \frac1K \sum_{k=1}^K w_{nk}^{1-\alpha}

    With K = 1 and any :math:`\alpha` it is the ELBO. Particles are always vectorized.
    """

    name = "iwae"

    def __init__(self, num_particles: int = 1, alpha: float = 0.0, max_plate_nesting: int = 1):
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, int)
            or num_particles < 1
        ):
            raise ValueError(f"num_particles (K) must be an integer >= 1, got {num_particles!r}")
        if not (math.isfinite(alpha) and alpha >= 0 and alpha != 1):
            raise ValueError(
                f"alpha must be >= 0 and != 1 (alpha=1 is the ELBO: use objective='elbo'), "
                f"got {alpha!r}"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )
        if num_particles == 1:  # ELBO adds the particle plate's dim only for K > 1; keep it
            self.max_plate_nesting += 1
        self.alpha = float(alpha)

    def _get_trace(self, model, guide, args, kwargs):
        # "flat" log-densities: every site's log_prob keeps its plate (and particle) dims
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def bound_per_datapoint(self, log_w: torch.Tensor) -> torch.Tensor:
        """(K, B) log weights -> (B,) bounds."""
        K = log_w.shape[0]
        a = 1.0 - self.alpha
        return (torch.logsumexp(a * log_w, dim=0) - math.log(K)) / a

    def _bound(self, model, guide, args, kwargs):
        log_w, mt, gt = importance_log_weights(self, model, guide, *args, **kwargs)
        _check_scales(mt, gt, self.name)
        return self.bound_per_datapoint(log_w), log_w, gt

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            bound, _, _ = self._bound(model, guide, args, kwargs)
        return -bound.sum().item()

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        # all guide sites are reparameterized, so the bound's own gradient is the estimator
        bound, _, _ = self._bound(model, guide, args, kwargs)
        return -bound.sum()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


def _detached(fn):
    """The same distribution with its parameters cut from the graph (values unchanged)."""
    if isinstance(fn, dist.Independent):
        return dist.Independent(_detached(fn.base_dist), fn.reinterpreted_batch_ndims)
    if isinstance(fn, (dist.Normal,)):
        return type(fn)(fn.loc.detach(), fn.scale.detach())
    raise ValueError(
        f"objective 'dreg' supports Normal guides, got {type(fn).__name__}; use 'iwae'"
    )


class DReGELBO(ImportanceWeightedELBO):
    r"""The IWAE bound with the doubly-reparameterized gradient estimator of Tucker et al. (2019).

    Value: identical to ``iwae``. Gradients, with normalized weights
    :math:`\tilde w_k = w_k / \sum_j w_j`:

    * model (decoder, prior): :math:`\sum_k \tilde w_k \nabla_\theta \log w_k` (as IWAE);
    * guide: :math:`\sum_k \tilde w_k^2 \frac{\partial \log w_k}{\partial z_k}
      \frac{\partial z_k}{\partial \phi}`, where :math:`\log q` is evaluated with the guide's
      parameters held fixed, which removes the score-function term whose variance grows with K.

    Implemented in one backward pass: the surrogate :math:`\sum_k \mathrm{sg}(\tilde w_k) \log w_k`
    (with :math:`\log q` at stopped parameters) gives the model gradient, and a hook on each
    latent sample multiplies the gradient that flows into it by :math:`\tilde w_k`.

    Supported guides: one stochastic layer whose distribution parameters depend on the data and
    the guide's own parameters only (as in :class:`~pyro_cvae.CVAE`); others are refused.
    """

    name = "dreg"

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1):
        super().__init__(num_particles, alpha=0.0, max_plate_nesting=max_plate_nesting)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        bound, log_w, guide_trace = self._bound(model, guide, args, kwargs)
        latents = [s for s in guide_trace.nodes.values() if s["type"] == "sample"]
        if len(latents) != 1:
            raise ValueError(
                "objective 'dreg' supports guides with one latent site; this guide has "
                f"{len(latents)} ({[s['name'] for s in latents]}): use objective='iwae'"
            )
        site = latents[0]
        nesting = self.max_plate_nesting
        # log w with log q at stopped guide parameters: z keeps its reparameterized path
        stopped = dict(site, log_prob=_detached(site["fn"]).log_prob(site["value"]))
        log_w_sg = (
            log_w + _site_per_datapoint(site, nesting) - _site_per_datapoint(stopped, nesting)
        )
        w_tilde = torch.softmax(log_w.detach(), dim=0)  # (K, B)
        z = site["value"]
        if z.requires_grad:
            scale = w_tilde.reshape(w_tilde.shape + (1,) * (z.dim() - w_tilde.dim()))
            z.register_hook(lambda g: g * scale)
        surrogate = (w_tilde * log_w_sg).sum()
        value = bound.sum()
        return -(value.detach() + surrogate - surrogate.detach())


def _elbo_factory(cls) -> Callable[..., ELBO]:
    def make(particles: int = 1, alpha: float = 0.5) -> ELBO:
        return cls(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)

    return make


#: objective name -> factory(particles, alpha) returning a Pyro ELBO
OBJECTIVES: dict[str, Callable[..., ELBO]] = {
    "elbo": _elbo_factory(Trace_ELBO),
    "meanfield": _elbo_factory(TraceMeanField_ELBO),
    "tracegraph": _elbo_factory(TraceGraphELBO),
    "iwae": lambda particles=1, alpha=0.5: ImportanceWeightedELBO(particles, alpha=0.0),
    "renyi": lambda particles=1, alpha=0.5: ImportanceWeightedELBO(particles, alpha=alpha),
    "dreg": lambda particles=1, alpha=0.5: DReGELBO(particles),
}

#: objectives whose value is an importance-weighted bound (no KL weight allowed)
IMPORTANCE_WEIGHTED = ("iwae", "renyi", "dreg")


def make_objective(name: str, particles: int = 1, alpha: float = 0.5) -> ELBO:
    """Build the objective registered under ``name`` with K = ``particles`` samples per image."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles (K) must be an integer >= 1, got {particles!r}")
    if name == "renyi" and not (math.isfinite(alpha) and alpha >= 0 and alpha != 1):
        raise ValueError(f"alpha must be >= 0 and != 1 for objective 'renyi', got {alpha!r}")
    return OBJECTIVES[name](particles=particles, alpha=alpha)


def enum_objective(particles: int = 1) -> ELBO:
    """``TraceEnum_ELBO`` for models whose discrete sites are enumerated (semi-supervised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TraceEnum_ELBO(
            num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=2
        )
