r"""Training objectives by name: Pyro's ELBOs and per-data-point importance-weighted bounds.

Every objective is a :class:`pyro.infer.ELBO` with ``loss`` (a float) and
``differentiable_loss`` (a tensor whose value is the loss and whose gradient is the
estimator's), so the trainer handles them all the same way.

For a data set of images :math:`x_n` and K samples :math:`z_{nk} \sim q(z | x_n, y_n)` with
log weights :math:`\log w_{nk} = \log p(x_n, z_{nk} | y_n) - \log q(z_{nk} | x_n, y_n)`:

* ``elbo``: :math:`\sum_n \frac1K \sum_k \log w_{nk}` (``Trace_ELBO``);
* ``iwae``: :math:`\sum_n \log \frac1K \sum_k w_{nk}` [1], the log-mean-exp taken per image;
* ``renyi``: :math:`\sum_n \frac{1}{1-\alpha} \log \frac1K \sum_k w_{nk}^{1-\alpha}` [2];
* ``dreg``: the ``iwae`` bound with the doubly-reparameterized gradient of [3] for the guide
  (lower encoder-gradient variance than ``iwae`` with a prior that does not share the encoder;
  with the VampPrior, which does, it can be higher: see :class:`DReGELBO`).

The per-image property holds only when every latent sample site sits inside the data plate
(``pyro.plate("data")``): a site outside it (a global latent) couples the images, and the
log-mean-exp over particles would no longer factorise. The bounds here keep the data dimension
explicitly and refuse (``ValueError``) models that break the condition.

How Pyro's own ``RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True)`` relates (checked
in ``tests/test_objectives.py``): before its log-mean-exp over particles it sums each particle's
log weight over the plates that are *not common to every sample site*
(``pyro.infer.util.get_dependent_plate_dims``). So

* when every sample site (model and guide) sits in the data plate, the data plate is common,
  is not summed, and ``RenyiELBO`` gives exactly the per-image bound ``iwae`` computes;
* when one site sits outside the data plate, the data plate is no longer common, is summed
  first, and ``RenyiELBO`` becomes :math:`\log \frac1K \sum_k \prod_n w_{nk}`, one log-mean-exp
  of the whole batch's weight (the bound of a model whose latent the batch shares). It equals a
  sum of per-image bounds only for a batch of one image, and it changes with the batch size;
  ``iwae`` raises instead of switching silently.

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

import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_identically_zero, is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch import nn

from .._validate import num_particles as check_particles
from .._validate import renyi_alpha
from .free_bits import FreeBitsELBO

__all__ = [
    "OBJECTIVES",
    "make_objective",
    "ImportanceWeightedELBO",
    "DReGELBO",
    "FREE_BITS_OBJECTIVES",
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


def _log_weights_from_traces(model_trace, guide_trace, width: int) -> torch.Tensor:
    """log p(x, z) - log q(z), shape (K, B), from traces whose log-densities are computed."""
    _check_per_datapoint(model_trace, guide_trace)
    log_w = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            log_w = log_w + _site_per_datapoint(site, width)
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample":
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"guide site {name!r} is not reparameterizable; importance-weighted bounds "
                    "here need reparameterized guides: use objective='tracegraph'"
                )
            log_w = log_w - _site_per_datapoint(site, width)
    return log_w


def importance_log_weights(elbo: ELBO, model, guide, *args, **kwargs):
    """Vectorized log importance weights, shape (K, B), and the traces they came from.

    ``elbo`` supplies K (``num_particles``) and the plate nesting; it must vectorize particles.
    """
    model_trace, guide_trace = next(iter(elbo._get_traces(model, guide, args, kwargs)))
    log_w = _log_weights_from_traces(model_trace, guide_trace, elbo.max_plate_nesting)
    return log_w, model_trace, guide_trace


def _check_finite(bound: torch.Tensor, name: str) -> None:
    bad = (~torch.isfinite(bound)).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"the {name!r} bound is {bound[bad[0]].item()} for {len(bad)} of {bound.numel()} "
            f"images (first at batch index {bad[0].item()}); expected finite log weights. The "
            "model or guide produced NaN or infinite log-densities: check the inputs are finite "
            "and in the likelihood's range, and that the parameters have not diverged "
            "(lower the learning rate)"
        )


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
        check_particles(num_particles, "num_particles (K)", "; e.g. 5")
        renyi_alpha(alpha, "use objective='elbo' for alpha=1; e.g. alpha=0.5, or 0 for IWAE")
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )
        if num_particles == 1:  # ELBO adds the particle plate's dim only for K > 1; keep it
            self.max_plate_nesting += 1
        self.alpha = float(alpha)
        self.name = "iwae" if self.alpha == 0 else "renyi"

    def _get_trace(self, model, guide, args, kwargs):
        # "flat" log-densities: every site's log_prob keeps its plate (and particle) dims
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def bound_per_datapoint(self, log_w: torch.Tensor) -> torch.Tensor:
        """(K, B) log weights -> (B,) bounds."""
        K = log_w.shape[0]
        a = 1.0 - self.alpha
        if a == 1.0:  # the IWAE bound: the same value without two no-op nodes in the graph
            return torch.logsumexp(log_w, dim=0) - math.log(K)
        return (torch.logsumexp(a * log_w, dim=0) - math.log(K)) / a

    def _bound(self, model, guide, args, kwargs):
        log_w, mt, gt = importance_log_weights(self, model, guide, *args, **kwargs)
        _check_scales(mt, gt, self.name)
        return self.bound_per_datapoint(log_w), log_w, gt

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Minus the bound summed over the batch; raises ``ValueError`` if it is not finite."""
        with torch.no_grad():
            bound, _, _ = self._bound(model, guide, args, kwargs)
        _check_finite(bound, self.name)
        return -bound.sum().item()

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Minus the bound (a tensor to differentiate). A non-finite value is returned as is:
        the trainer turns it into :class:`~pyro_cvae.train.NonFiniteLossError` (or skips it)."""
        # all guide sites are reparameterized, so the bound's own gradient is the estimator
        bound, _, _ = self._bound(model, guide, args, kwargs)
        return -bound.sum()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass; the backward pass multiplies the gradient by
    ``holder[name]``, which is filled in after the forward pass (the weights are not known
    when the latent is drawn)."""

    @staticmethod
    def forward(ctx, z, holder, name):
        ctx.holder, ctx.name = holder, name
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        scale = ctx.holder[ctx.name]
        while scale.dim() > grad.dim():  # K = 1 without a particle plate: drop its size-1 dim
            scale = scale.squeeze(0)
        return grad * scale, None, None


def _weights_like(w: torch.Tensor, site: dict, width: int) -> torch.Tensor:
    """(K, B) weights reshaped to broadcast against a site's value (particle, data, event dims)."""
    frames = [f for f in site["cond_indep_stack"] if f.name == DATA_PLATE]
    shape = [1] * (width + site["fn"].event_dim)
    shape[0] = w.shape[0]  # particles sit at batch dim -width
    shape[width + frames[0].dim] = w.shape[1]
    return w.reshape(shape)


class _DetachParams(Messenger):
    """Detaches the values of ``pyro.param`` sites (parameters from Pyro's parameter store)."""

    def _pyro_post_param(self, msg):
        msg["value"] = msg["value"].detach()


class _CallMethod(nn.Module):
    """Calls ``owner.<name>`` so that ``functional_call`` can swap the owner's parameters."""

    def __init__(self, owner: nn.Module, name: str):
        super().__init__()
        self.owner = owner
        self.method = name

    def forward(self, *args, **kwargs):
        return getattr(self.owner, self.method)(*args, **kwargs)


def _stopped(guide: Callable) -> Callable:
    """The guide with every parameter held fixed (detached) and everything else unchanged.

    Parameters of the ``nn.Module`` the guide is a method of (or is) are swapped for detached
    copies with :func:`torch.func.functional_call`; ``pyro.param`` values are detached by a
    messenger. Samples replayed into the guide keep their gradient paths.
    """
    owner = getattr(guide, "__self__", None)
    if isinstance(guide, nn.Module):
        caller, module, prefix = guide, guide, ""
    elif isinstance(owner, nn.Module):
        caller, module, prefix = _CallMethod(owner, guide.__name__), owner, "owner."
    else:
        caller = module = None

    def stopped(*args, **kwargs):
        with _DetachParams():
            if caller is None:
                return guide(*args, **kwargs)
            params = {prefix + n: p.detach() for n, p in module.named_parameters()}
            return torch.func.functional_call(caller, params, args, kwargs)

    return stopped


class DReGELBO(ImportanceWeightedELBO):
    r"""The IWAE bound with the doubly-reparameterized gradient estimator of Tucker et al. (2019).

    Value: identical to ``iwae``. Gradients, with normalized weights
    :math:`\tilde w_k = w_k / \sum_j w_j` and all latents :math:`z_k = z(\epsilon_k, \phi)`
    reparameterized:

    * model (decoder, prior) parameters :math:`\theta`: :math:`\sum_k \tilde w_k
      \nabla_\theta \log w_k` (as IWAE);
    * guide parameters :math:`\phi`: :math:`\sum_k \tilde w_k^2 \frac{\partial \log w_k}
      {\partial z_k} \frac{d z_k}{d \phi}`, where the partial derivative holds :math:`\phi`
      fixed inside :math:`\log q_\phi(z)`. This drops the score-function term
      :math:`-\nabla_\phi \log q_\phi(z)|_z` whose variance makes IWAE's encoder gradient
      vanish in signal-to-noise as K grows [2].

    Several latent sites (a hierarchical guide :math:`q(z_1|x) q(z_2|z_1, x)`) are supported:
    :math:`\log q` is re-evaluated by replaying the samples into the guide with its
    *parameters* detached, so :math:`\log q(z_2 | z_1)` keeps its dependence on the sample
    :math:`z_1` and only :math:`\phi` is held fixed.

    Implementation, in one backward pass: the guide runs once to draw the latents. Each latent
    enters the model and the stopped guide through an identity whose backward pass multiplies
    the gradient by :math:`\tilde w_k` (:class:`_ScaleGrad`), while the guide's own later
    layers use the raw sample, so every path from :math:`\log w` back to :math:`\phi` is
    scaled once. The surrogate :math:`\sum_k \mathrm{sg}(\tilde w_k) \log w_k` (with
    :math:`\log q` at stopped parameters) then gives :math:`\tilde w_k` for :math:`\theta` and
    :math:`\tilde w_k^2` along the latent paths.

    Requirement: the guide's parameters live in the ``nn.Module`` (e.g. ``PyroModule``) whose
    method the guide is (as ``CVAE.guide``), or in Pyro's parameter store. Tensors captured
    in a closure cannot be held fixed and would bias the guide gradient.

    Priors that share the guide's parameters (the VampPrior [3]). Only the guide is held
    fixed; the model runs with its live parameters. So when :math:`\log p_\phi(z)` itself
    depends on :math:`\phi`, the gradient keeps that direct term,
    :math:`\sum_k \tilde w_k \nabla_\phi \log p_\phi(z_k)|_{z_k}`, exactly as IWAE has it,
    and the estimator stays unbiased (``tests/test_objectives.py`` compares its mean with
    IWAE's, and rejects the variant that holds the prior's encoder fixed as well). Its variance,
    though, can exceed IWAE's. The VampPrior :math:`p_\phi(z) = \frac1P \sum_p q_\phi(z |
    u_p)` is the encoder's posterior at the pseudo-inputs, so its term is
    :math:`\sum_p r_p(z) \nabla_\phi \log q_\phi(z | u_p)` (:math:`r_p` the responsibility of
    pseudo-input p): a score of the same encoder at a sample it did not draw, about as noisy as
    the guide's score :math:`-\nabla_\phi \log q_\phi(z | x)` and of opposite sign. Where the
    posterior resembles the prior (latent dimensions the data hardly use, pseudo-inputs that
    look like the data) the two largely cancel, and IWAE's encoder gradient is their sum.
    DReG removes the guide's score only; the prior's term stays whole, without its counterpart.
    Measured (``experiments/gradient_snr.py --prior vamp``, written to
    ``experiments/results/gradient_snr_vamp.md``: a VAE with 64 hidden units, 8 latent
    dimensions and 500 pseudo-inputs trained 20 epochs on digits, 200 draws on 8 test images,
    the same latent samples for both estimators, each draw repeated with the prior's encoder
    held fixed to separate the parts): IWAE's guide part and the prior's term have correlation
    -0.7; the encoder gradient's variance, summed over its parameters, is 1.3x IWAE's for DReG
    at K = 1 and 1.6-1.7x at K = 5 to 100, while DReG's guide part alone has 1/13 (K = 1) to
    1/900 (K = 100) of the variance of IWAE's guide part. With the standard normal prior the
    same run gives DReG 0.14x (K = 1) to 0.0008x (K = 100) IWAE's variance
    (``gradient_snr.md``). In the smaller setting of the tests (32 hidden units, 4 latent
    dimensions, 20 pseudo-inputs, 4 epochs on 500 digits, K = 5) the ratio is 1.6-2.6 over six
    seeds (0.03-0.08 with the standard normal prior), and about 3 after 20 epochs on all of
    digits; there the excess sits in the encoder's output layer (the posterior's mean and
    scale).
    DReG's average per-parameter signal-to-noise ratio stays above IWAE's (the excess is in few
    parameters), but its advantage over IWAE for the encoder is small or reversed under the
    VampPrior.

    References:
        [1] Tucker, Lawson, Gu and Maddison, Doubly Reparameterized Gradient Estimators for
            Monte Carlo Objectives, ICLR 2019.
        [2] Rainforth et al., Tighter Variational Bounds are Not Necessarily Better, ICML 2018.
        [3] Tomczak and Welling, VAE with a VampPrior, AISTATS 2018.
    """

    name = "dreg"

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1):
        super().__init__(num_particles, alpha=0.0, max_plate_nesting=max_plate_nesting)
        self.name = "dreg"

    def _traces(self, model, guide, args, kwargs):
        """Guide trace (raw samples), model trace and stopped-guide trace (hooked samples)."""
        holder: dict = {}
        width = self.max_plate_nesting
        guide_trace = poutine.trace(self._vectorized_num_particles(guide), graph_type="flat")
        guide_trace = guide_trace.get_trace(*args, **kwargs)
        hooked = guide_trace.copy()
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                hooked.nodes[name] = dict(site, value=_ScaleGrad.apply(site["value"], holder, name))
        model_trace = poutine.trace(
            poutine.replay(self._vectorized_num_particles(model), trace=hooked), graph_type="flat"
        ).get_trace(*args, **kwargs)
        stopped_trace = poutine.trace(
            poutine.replay(self._vectorized_num_particles(_stopped(guide)), trace=hooked),
            graph_type="flat",
        ).get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, width)
        traces = []
        for tr in (model_trace, guide_trace, stopped_trace):
            tr = prune_subsample_sites(tr)
            tr.compute_log_prob()
            if is_validation_enabled():
                for site in tr.nodes.values():
                    if site["type"] == "sample":
                        check_site_shape(site, width)
            traces.append(tr)
        return (*traces, holder)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Minus the IWAE bound; its gradient is the DReG estimator (see the class docstring)."""
        width = self.max_plate_nesting
        model_trace, guide_trace, stopped_trace, holder = self._traces(model, guide, args, kwargs)
        _check_scales(model_trace, guide_trace, self.name)
        log_w = _log_weights_from_traces(model_trace, guide_trace, width)  # (K, B)
        bound = self.bound_per_datapoint(log_w.detach())  # (B,)
        log_q_stopped = sum(
            _site_per_datapoint(s, width)
            for s in stopped_trace.nodes.values()
            if s["type"] == "sample"
        )
        log_p = sum(
            _site_per_datapoint(s, width)
            for s in model_trace.nodes.values()
            if s["type"] == "sample"
        )
        w_tilde = torch.softmax(log_w.detach(), dim=0)  # (K, B)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample":
                holder[name] = _weights_like(w_tilde, site, width)
        surrogate = (w_tilde * (log_p - log_q_stopped)).sum()
        return -(bound.sum() + surrogate - surrogate.detach())


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

#: objectives that take free bits (a floor under the KL term of each latent coordinate)
FREE_BITS_OBJECTIVES = ("elbo", "meanfield")


def make_objective(name: str, particles: int = 1, alpha: float = 0.5, free_bits: float = 0.0
                   ) -> ELBO:  # fmt: skip
    """Build the objective registered under ``name`` with K = ``particles`` samples per image;
    ``free_bits`` > 0 (nats per latent coordinate, ``elbo`` and ``meanfield`` only) gives the
    ELBO with free bits, :class:`~pyro_cvae.infer.free_bits.FreeBitsELBO`."""
    if name not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)} "
            "(e.g. --objective iwae --particles 5)"
        )
    check_particles(
        particles,
        "particles (K)",
        "; K is the number of samples of z per image, e.g. --particles 5",
    )
    if name == "renyi":
        renyi_alpha(alpha, "use objective 'iwae' or 'elbo' for those, e.g. --alpha 0.5")
    if free_bits:
        if name not in FREE_BITS_OBJECTIVES:
            raise ValueError(
                f"free bits floors the KL term of the ELBO; objective {name!r} has none to "
                "floor: use objective 'elbo' or 'meanfield' (--objective elbo), or free_bits=0"
            )
        return FreeBitsELBO(free_bits, num_particles=particles)
    return OBJECTIVES[name](particles=particles, alpha=alpha)


def enum_objective(particles: int = 1) -> ELBO:
    """``TraceEnum_ELBO`` for models whose discrete sites are enumerated (semi-supervised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TraceEnum_ELBO(
            num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=2
        )
