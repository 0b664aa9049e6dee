"""What the library asks of a model: the contract of :func:`~pyro_cvae.fit`, the bounds and the
evaluator, written down.

Pyro's ``SVI`` takes any model/guide pair and asks nothing of it but its sample sites; this
library asks almost as little. A model is a ``torch.nn.Module`` (a ``PyroModule``, or a plain
``nn.Module`` whose methods call ``pyro.module``) with two methods of one signature:

* ``model(x, y=None)``: the generative story p(z | y) p(x | z, y);
* ``guide(x, y=None)``: the variational posterior q(z | x, y),

every sample site inside ``pyro.plate("data")`` over the first dimension of ``x`` (the
importance-weighted bounds need it; the ELBO does not), and its parameters in the module, so that
``model.parameters()`` is what training optimises and ``model.state_dict()`` what a checkpoint
stores. That is :class:`PyroModel`. Everything else is optional and discovered:

=====================  =========================================================================
capability             where it comes from when the model does not offer it
=====================  =========================================================================
``latent_sites``       one trace of the guide: its sample sites that are not observed
                       (KL warm-up and beta scale these; :func:`latent_sites`)
``device``             the device of the first parameter or buffer (:func:`device_of`)
``check_inputs(x, y)`` none: the model's own errors stand (:func:`check_inputs`)
``conditional``        ``config.cond_width`` where the model has a library config, else ``True``:
                       ``y`` is passed to model and guide whenever the data have one
                       (:func:`condition_of`)
``config``             none: a checkpoint holds the ``state_dict`` only, and
                       ``pyro_cvae.load(path, model=MyModel(...))`` needs the class
``sample(y, n)``       none: sampling, the control score and sample pictures refuse, naming it
=====================  =========================================================================

The posterior means behind active units come from the guide's own distributions
(:func:`latent_means`): the ``mean`` of each latent site's distribution in one trace.

A capability that is needed and missing is a :class:`MissingCapabilityError` naming the method
to add, never an ``AttributeError`` from deep inside the library.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyro
import pyro.util
import torch
from pyro import poutine
from pyro.poutine.subsample_messenger import _Subsample
from torch import nn

__all__ = [
    "PyroModel",
    "MissingCapabilityError",
    "check_model",
    "require",
    "device_of",
    "condition_of",
    "check_inputs",
    "config_dict",
    "latent_sites",
    "latent_means",
    "num_classes_of",
]


@runtime_checkable
class PyroModel(Protocol):
    """The contract: a module with ``model(x, y=None)`` and ``guide(x, y=None)``.

    Example (a researcher's own model, no base class of this library)::

        class MyVAE(PyroModule):
            def model(self, x, y=None):
                with pyro.plate("data", x.shape[0]):
                    z = pyro.sample("z", dist.Normal(0., 1.).expand([x.shape[0], 8]).to_event(1))
                    pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(3), obs=x)

            def guide(self, x, y=None):
                with pyro.plate("data", x.shape[0]):
                    loc, scale = self.enc(x)
                    pyro.sample("z", dist.Normal(loc, scale).to_event(1))

        pc.fit(MyVAE(), data, objective="iwae", particles=5)
    """

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None: ...

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None: ...

    def parameters(self, recurse: bool = True): ...


class MissingCapabilityError(TypeError):
    """A model lacks an optional capability that the call needs; the message names the method
    to add."""


def check_model(model, purpose: str = "train it") -> None:
    """Refuse an object that does not meet :class:`PyroModel`, naming what is missing.

    Raises:
        TypeError: not an ``nn.Module``, or no callable ``model`` / ``guide``.
    """
    missing = [m for m in ("model", "guide") if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"to {purpose}, pyro_cvae needs a Pyro model/guide pair: an nn.Module (or PyroModule) "
            f"with methods model(x, y=None) and guide(x, y=None); {type(model).__name__} has no "
            f"{' and no '.join(missing)} method"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"to {purpose}, the model must be a torch.nn.Module (a PyroModule, or an nn.Module "
            f"whose model and guide call pyro.module) so that its parameters can be optimised and "
            f"saved; got {type(model).__name__}"
        )


def require(model, method: str, purpose: str, how: str = "") -> None:
    """Raise :class:`MissingCapabilityError` unless ``model`` has the callable ``method``."""
    if not callable(getattr(model, method, None)):
        raise MissingCapabilityError(
            f"{purpose} needs the model's {method}() method, which {type(model).__name__} does not "
            f"have" + (f"; {how}" if how else "")
        )


def device_of(model) -> torch.device:
    """``model.device`` where offered, else that of its first parameter or buffer (CPU when it
    has neither)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _library_config(model):
    """The model's config when it is one of this library's (it has ``cond_width``), else None."""
    cfg = getattr(model, "config", None)
    return cfg if hasattr(cfg, "cond_width") else None


def condition_of(model, y):
    """What the model receives as ``y``: the labels or conditions for a conditional model,
    ``None`` for an unconditional one.

    A library model says so by its config (``cond_width``); another model by an attribute
    ``conditional`` (default ``True``: ``y`` is passed, and a model that ignores it is a VAE).
    """
    cfg = _library_config(model)
    if cfg is not None:
        return y if cfg.cond_width else None
    return y if getattr(model, "conditional", True) else None


def num_classes_of(model, data=None) -> int:
    """The number of class labels the model is conditioned on (0 for none): its config's
    ``num_classes``, else the data's where the model takes ``y``."""
    cfg = _library_config(model)
    if cfg is not None:
        return int(getattr(cfg, "num_classes", 0) or 0)
    if data is not None and getattr(model, "conditional", True) and data.train.y.dim() == 1:
        return int(data.num_classes or 0)
    return 0


def check_inputs(model, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """The model's own ``check_inputs(x, y)`` where it offers one (clear errors for malformed
    data); otherwise nothing, and the model's own errors stand."""
    check = getattr(model, "check_inputs", None)
    if callable(check):
        check(x, y)


def config_dict(model) -> dict | None:
    """The model's config as a dict (``config.to_dict()``), or ``None`` for a model without one."""
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    return to_dict() if callable(to_dict) else None


def _guide_trace(model, x, y):
    """One trace of the guide, leaving Pyro's random state and parameter store as they were."""
    rng = pyro.util.get_rng_state()
    try:
        with poutine.block(), torch.no_grad():
            return poutine.trace(model.guide).get_trace(x, y)
    finally:
        pyro.util.set_rng_state(rng)


def _latent_nodes(trace) -> list[tuple[str, dict]]:
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not isinstance(site["fn"], _Subsample)
    ]


def latent_sites(model, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[str, ...]:
    """Names of the latent sample sites: ``model.latent_sites`` where offered, else the guide's
    unobserved sample sites in one trace on the batch ``(x, y)``."""
    names = getattr(model, "latent_sites", None)
    if names is not None:
        return tuple(names)
    return tuple(name for name, _ in _latent_nodes(_guide_trace(model, x, y)))


@torch.no_grad()
def latent_means(model, x: torch.Tensor, y: torch.Tensor | None = None, site: str | None = None):
    """The mean of q(z | x, y) at one latent site (default: the guide's first), shape
    (B, width): the ``mean`` of that site's distribution in one trace of the guide (for a site
    that depends on another latent, its mean given that latent's draw).

    Raises:
        MissingCapabilityError: the guide has no latent site, or its distribution has no mean.
    """
    nodes = _latent_nodes(_guide_trace(model, x, y))
    if not nodes:
        raise MissingCapabilityError(
            f"the guide of {type(model).__name__} has no latent sample site; active units and "
            "posterior means need one (a pyro.sample site that is not observed)"
        )
    by_name = dict(nodes)
    if site is not None and site not in by_name:
        raise ValueError(
            f"the guide has no latent site {site!r}; its latent sites: {list(by_name)}"
        )
    name = site or nodes[0][0]
    fn = by_name[name]["fn"]
    try:
        mean = fn.mean
    except NotImplementedError:
        raise MissingCapabilityError(
            f"the guide's distribution at site {name!r} ({type(fn).__name__}) has no mean; "
            "active units need posterior means: use a distribution with a mean (e.g. Normal)"
        ) from None
    return mean.reshape(x.shape[0], -1)  # (B, width)
