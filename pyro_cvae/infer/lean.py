r"""A lean path for the hot loop: the same loss and gradient as Pyro's trace, without the trace.

``Trace_ELBO`` and the importance-weighted bounds need, of every sample site, its value and its
log-density with the plate dimensions kept. Pyro computes them by tracing the guide, replaying the
model against that trace and walking both traces (copying every message into a graph, pruning
subsample sites, computing score parts). :class:`LeanObjective` gets the same numbers from one
small effect handler, :class:`SiteRecorder`, which records each site's scaled, masked
``log_prob`` as the model and guide run, and feeds the guide's values to the model (what
``poutine.replay`` does). Everything else is Pyro's own machinery: the same plates, the same
particle plate (``vectorize_particles``), the same ``rsample`` calls in the same order, so with
the same seed the loss and the gradients equal the full path's to float precision.

A model qualifies when, checked once on the first batch with Pyro's own traces, every sample
site sits in the data plate (and no other plate), every guide site is reparameterized and not
enumerated, and the guide's sites are exactly the model's latent sites. Objectives other than
``Trace_ELBO`` (``elbo``) and :class:`~pyro_cvae.infer.objectives.ImportanceWeightedELBO`
(``iwae``, ``renyi``) are used as they are. The full path stays the reference: it is what
Pyro's validation mode uses, and ``TrainConfig(lean=False)`` (``--no-lean``) chooses it.
"""

from __future__ import annotations

import pyro
import pyro.util
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites

from .objectives import DATA_PLATE, ImportanceWeightedELBO, _check_finite

__all__ = ["SiteRecorder", "LeanObjective", "lean_objective", "lean_log_weights", "qualifies"]

_PARTICLES = "num_particles_vectorized"  # the name Pyro's ELBO gives its particle plate


class SiteRecorder(Messenger):
    """Record every sample site's scaled, masked log-density; optionally replay given values.

    Args:
        replay: latent values by site name (the guide's), used for the unobserved sites.
    """

    def __init__(self, replay: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.replay = replay
        self.values: dict[str, torch.Tensor] = {}
        self.log_probs: dict[str, torch.Tensor] = {}
        self.unscaled: list[str] = []  # sites whose scale is not 1 (a KL weight)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or isinstance(msg["fn"], _Subsample):  # a plate's own site
            return
        if self.replay is not None and not msg["is_observed"]:
            msg["value"] = self.replay[msg["name"]]

    def _postprocess_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or isinstance(msg["fn"], _Subsample):
            return
        value = msg["value"]
        lp = msg["fn"].log_prob(value, *msg["args"], **msg["kwargs"])
        self.log_probs[msg["name"]] = scale_and_mask(lp, msg["scale"], msg["mask"])
        self.values[msg["name"]] = value
        if not (isinstance(msg["scale"], float) and msg["scale"] == 1.0):
            self.unscaled.append(msg["name"])


def qualifies(model, guide, *args, **kwargs) -> str | None:
    """``None`` if the lean path computes this model's objective exactly, else the reason.

    Runs the model and guide once under Pyro's traces, leaving the random state as it was.
    """
    rng = pyro.util.get_rng_state()
    try:
        with poutine.block(), torch.no_grad():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
    finally:
        pyro.util.set_rng_state(rng)
    guide_trace, model_trace = (
        prune_subsample_sites(guide_trace),
        prune_subsample_sites(model_trace),
    )
    latent = set()
    for role, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            plates = [f.name for f in site["cond_indep_stack"]]
            if plates != [DATA_PLATE]:
                return f"{role} site {name!r} sits in plates {plates}, not only {DATA_PLATE!r}"
            if role == "guide":
                if site["is_observed"] or site["infer"].get("enumerate"):
                    return f"guide site {name!r} is observed or enumerated"
                if not site["fn"].has_rsample:
                    return f"guide site {name!r} is not reparameterized"
                latent.add(name)
            elif not site["is_observed"] and name not in latent:
                return f"model site {name!r} is latent but not in the guide"
    model_latent = {
        n for n, s in model_trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
    }
    if model_latent != latent:
        return (
            f"guide sites {sorted(latent)} differ from the model's latents {sorted(model_latent)}"
        )
    return None


class LeanObjective:
    """``objective`` (a ``Trace_ELBO`` or an :class:`ImportanceWeightedELBO`) computed with a
    :class:`SiteRecorder` instead of Pyro's traces; falls back to ``objective`` itself for a model
    that does not qualify (checked once, on the first batch).

    Attributes:
        objective: the full-path objective (the reference).
        reason: why the model does not qualify (``None`` while it does, or before the check).
    """

    def __init__(self, objective):
        if type(objective) not in (Trace_ELBO, ImportanceWeightedELBO):
            raise ValueError(f"no lean path for {type(objective).__name__}")
        self.objective = objective
        self.checked = False
        self.reason: str | None = None
        self.num_particles = objective.num_particles
        # Pyro's rule (ELBO._vectorized_num_particles): a particle plate only for K > 1, at the
        # dimension left of all the model's plates
        self.vectorize = objective.vectorize_particles and objective.num_particles > 1
        self.particle_dim = -objective.max_plate_nesting

    @property
    def active(self) -> bool:
        """Whether the lean path is in use (the model qualified)."""
        return self.checked and self.reason is None

    def _run(self, fn, recorder: SiteRecorder, args, kwargs) -> None:
        with recorder:
            if self.vectorize:
                with pyro.plate(_PARTICLES, self.num_particles, dim=self.particle_dim):
                    fn(*args, **kwargs)
            else:
                fn(*args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        if not self.checked:
            self.reason = qualifies(model, guide, *args, **kwargs)
            self.checked = True
        if self.reason is not None:
            return self.objective.differentiable_loss(model, guide, *args, **kwargs)
        q = SiteRecorder()
        self._run(guide, q, args, kwargs)
        p = SiteRecorder(replay=q.values)
        self._run(model, p, args, kwargs)
        if isinstance(self.objective, ImportanceWeightedELBO):
            if p.unscaled or q.unscaled:
                raise ValueError(
                    f"objective {self.objective.name!r} is an importance-weighted bound; a KL "
                    f"weight (beta != 1 or KL warm-up, on site {(p.unscaled or q.unscaled)[0]!r}) "
                    "has no meaning inside it. Use objective='elbo' for beta-VAE and warm-up, "
                    "or beta=1 and warmup_epochs=0"
                )
            log_w = _log_weights(p, q)  # (K, B), or (B,)
            if log_w.dim() == 1:  # K = 1: no particle plate
                log_w = log_w.unsqueeze(0)
            return -self.objective.bound_per_datapoint(log_w).sum()
        loss = _minus_elbo(p, q)  # summed over particles and images
        return loss if self.num_particles == 1 else loss / self.num_particles

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            value = self.differentiable_loss(model, guide, *args, **kwargs)
        if isinstance(self.objective, ImportanceWeightedELBO):
            _check_finite(value.reshape(1), self.objective.name)
        return value.item()


def _add(terms):
    """The sum of tensors, without the ``0 +`` node the builtin ``sum`` puts in the graph
    (``0.0`` for none: a model without latents has no guide sites)."""
    out = 0.0
    for i, t in enumerate(terms):
        out = t if i == 0 else out + t
    return out


def _log_weights(p: SiteRecorder, q: SiteRecorder) -> torch.Tensor:
    """log p(x, z) - log q(z | x) per particle and data point: the model's site log-densities
    minus the guide's, each of shape (K, B) or (B,)."""
    return _add(p.log_probs.values()) - _add(q.log_probs.values())


def _minus_elbo(p: SiteRecorder, q: SiteRecorder) -> torch.Tensor:
    """sum(log q) - sum(log p) over every site, particle and data point.

    Sites of one shape (all in the data plate, and in the particle plate if any: what
    :func:`qualifies` asks) are combined elementwise and summed once, rather than summed one by
    one: fewer nodes for the backward pass to walk, which on small networks is visible."""
    p_lp, q_lp = list(p.log_probs.values()), list(q.log_probs.values())
    sites = p_lp + q_lp
    if all(lp.shape == sites[0].shape for lp in sites):
        return (_add(q_lp) - _add(p_lp)).sum()
    return _add(lp.sum() for lp in q_lp) - _add(lp.sum() for lp in p_lp)


def lean_objective(objective):
    """A :class:`LeanObjective` for the objectives it supports, else ``objective`` unchanged."""
    if type(objective) in (Trace_ELBO, ImportanceWeightedELBO):
        return LeanObjective(objective)
    return objective


def lean_log_weights(model, guide, num_particles: int, *args, **kwargs) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) of K reparameterized draws per data point, shape (K, B).

    The lean form of :func:`~pyro_cvae.infer.objectives.importance_log_weights` (same values for
    the same seed) for a model that qualifies (:func:`qualifies`; not checked here): the
    particle plate as Pyro's vectorized ELBO puts it, left of the data plate.
    """
    q = SiteRecorder()
    p = SiteRecorder(replay=q.values)
    for fn, recorder in ((guide, q), (model, p)):
        with recorder:
            if num_particles > 1:
                with pyro.plate(_PARTICLES, num_particles, dim=-2):
                    fn(*args, **kwargs)
            else:
                fn(*args, **kwargs)
    log_w = _log_weights(p, q)
    return log_w if log_w.dim() == 2 else log_w.unsqueeze(0)
