r"""Priors p(z | c) behind one interface, in one registry.

A prior is a module with ``dist(c, batch_shape)`` returning a distribution over ``z`` with
``event_dim == 1`` and the given batch shape, ``sample`` and ``log_prob`` built on it, and
``analytic_kl`` telling whether ``kl_divergence(Normal, prior)`` has a closed form (used by
``TraceMeanField_ELBO``; without one, Pyro's mean-field ELBO falls back to the Monte Carlo term
:math:`\log p(z) - \log q(z)` at the guide's sample). The condition ``c`` is the model's
condition vector of shape (B, cond_width) (one-hot labels or real vectors), or ``None``.

Options come from ``ModelConfig.prior_options`` (a dict); each prior lists the ones it accepts
in ``OPTIONS`` with their defaults. A prior that needs the model (the VampPrior needs its
encoder) gets it through :meth:`Prior.bind`, called once by the model's constructor.

* ``normal``: :math:`\mathcal N(0, I)`;
* ``conditional``: :math:`\mathcal N(\mu(c), \mathrm{diag}\,\sigma(c)^2)`, linear in c;
* ``mixture``: a learned mixture of Gaussians; ``per_class`` gives every class its own
  mixture, selected by the label (with ``components=1``: one Gaussian per class);
* ``vamp``: the VampPrior [1], :math:`\frac1P \sum_p q(z | u_p, c)` at learned pseudo-inputs
  :math:`u_p`;
* ``flow``: a normalizing flow [2, 3] on a standard normal base, conditional on c.

References:
    [1] Tomczak and Welling, VAE with a VampPrior, AISTATS 2018.
    [2] Rezende and Mohamed, Variational Inference with Normalizing Flows, ICML 2015.
    [3] Dinh, Sohl-Dickstein and Bengio, Density Estimation Using Real NVP, ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from .distributions import DiagonalNormalMixture, StandardNormal

__all__ = [
    "Prior",
    "NormalPrior",
    "ConditionalNormalPrior",
    "MixturePrior",
    "VampPrior",
    "FlowPrior",
    "PRIORS",
    "make_prior",
]


class Prior(nn.Module):
    """Interface of every prior over a latent vector of width ``latent_dim``.

    Args:
        latent_dim: width D of z.
        cond_width: width of the condition vector c (0: no condition).
        **options: prior-specific options, the keys of ``OPTIONS``.
    """

    analytic_kl: bool = False
    needs_condition: bool = False
    #: option name -> default value
    OPTIONS: dict[str, Any] = {}

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__()
        name = _name_of(type(self))
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            accepted = ", ".join(self.OPTIONS) or "none"
            raise ValueError(
                f"prior {name!r} got unknown option(s) {unknown}; it accepts: {accepted}"
            )
        self.options = {**self.OPTIONS, **options}
        self.latent_dim = latent_dim
        self.cond_width = cond_width
        if self.needs_condition and cond_width == 0:
            raise ValueError(
                f"prior {name!r} needs a condition; build the model with num_classes > 0 "
                "or condition_dim > 0, or use prior='normal'"
            )
        self.register_buffer("zero", torch.zeros(()))

    def bind(self, model: nn.Module) -> None:
        """Called once by the model after it has built its networks; most priors ignore it."""

    def dist(self, c: torch.Tensor | None, batch_shape: torch.Size) -> dist.TorchDistribution:
        """p(z | c): batch ``batch_shape``, event (latent_dim,); c is (B, cond_width) with
        B = ``batch_shape[-1]`` (broadcast over leading dims), or None without a condition."""
        raise NotImplementedError

    def sample(self, c: torch.Tensor | None, batch_shape: torch.Size) -> torch.Tensor:
        """Draw z of shape ``batch_shape + (latent_dim,)``."""
        return self.dist(c, torch.Size(batch_shape)).sample()

    def log_prob(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z | c), summed over the latent dimensions: shape ``z.shape[:-1]``."""
        return self.dist(c, z.shape[:-1]).log_prob(z)

    def _option_int(self, key: str, minimum: int = 1) -> int:
        v = self.options[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(
                f"prior {_name_of(type(self))!r}: option {key} must be an integer >= {minimum}, "
                f"got {v!r}; e.g. prior_options={{'{key}': {max(minimum, self.OPTIONS[key])}}}"
            )
        return v

    def _option_bool(self, key: str) -> bool:
        v = self.options[key]
        if not isinstance(v, bool):
            raise ValueError(
                f"prior {_name_of(type(self))!r}: option {key} must be true or false, got {v!r}"
            )
        return v

    def _check_per_class(self) -> None:
        if self.cond_width == 0:
            raise ValueError(
                f"prior {_name_of(type(self))!r} with per_class=True needs a condition; build "
                "the model with num_classes > 0, or set per_class=False"
            )


def _shape(batch_shape, latent_dim: int) -> tuple[int, ...]:
    return tuple(batch_shape) + (latent_dim,)


class NormalPrior(Prior):
    """The standard normal N(0, I), ignoring the condition."""

    analytic_kl = True

    def dist(self, c, batch_shape):
        # same density as Normal(0, 1) with a cheaper log_prob (pyro_cvae.distributions)
        return StandardNormal(_shape(batch_shape, self.latent_dim), like=self.zero).to_event(1)


class ConditionalNormalPrior(Prior):
    """A learned Gaussian p(z | c) = N(mu(c), diag sigma(c)^2) with a linear map from c.

    With one-hot labels this is exactly one learned mean and scale per class. Initialised at
    N(0, I) for every c.
    """

    analytic_kl = True
    needs_condition = True

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        self.net = nn.Linear(cond_width, 2 * latent_dim)
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def dist(self, c, batch_shape):
        if c is None:
            raise ValueError("prior 'conditional' needs the condition c, got None")
        loc, log_scale = self.net(c).chunk(2, dim=-1)  # (B, D) each
        shape = _shape(batch_shape, self.latent_dim)
        return dist.Normal(loc.expand(shape), log_scale.exp().expand(shape)).to_event(1)


class MixturePrior(Prior):
    r"""A learned mixture of Gaussians :math:`\sum_k \pi_k \mathcal N(z; \mu_k, \mathrm{diag}\,
    \sigma_k^2)`.

    Options:
        components: number of mixture components (default 10).
        per_class: every class has its own mixture (weights, means, scales), selected by the
            one-hot label: :math:`p(z | y) = \sum_k \pi_{yk} \mathcal N(z; \mu_{yk}, \sigma_{yk})`.
            With ``components=1`` that is one Gaussian per class. The parameters are linear in
            c, so a real condition vector mixes the tables of the classes.

    Means start as N(0, I) draws (to break the symmetry), scales at one, weights uniform.
    No closed-form KL.
    """

    OPTIONS = {"components": 10, "per_class": False}

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        K = self._option_int("components")
        self.per_class = self._option_bool("per_class")
        if self.per_class:
            self._check_per_class()
        G = cond_width if self.per_class else 1
        self.logits = nn.Parameter(torch.zeros(G, K))
        self.locs = nn.Parameter(torch.randn(G, K, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(G, K, latent_dim))

    def dist(self, c, batch_shape):
        if self.per_class:
            if c is None:
                raise ValueError("prior 'mixture' with per_class=True needs the condition c")
            logits = c @ self.logits  # (B, K)
            locs = torch.einsum("bg,gkd->bkd", c, self.locs)  # (B, K, D)
            scales = torch.einsum("bg,gkd->bkd", c, self.log_scales).exp()
        else:
            logits, locs, scales = self.logits[0], self.locs[0], self.log_scales[0].exp()
        return DiagonalNormalMixture(logits, locs, scales).expand(torch.Size(batch_shape))


class VampPrior(Prior):
    r"""The VampPrior [1]: the guide's posterior averaged over P learned pseudo-inputs.

    .. math:: p(z | c) = \frac1P \sum_{p=1}^P q(z | u_p, c)

    The condition is handled explicitly: each pseudo-input is encoded *together with the
    image's own condition c*, so the prior of a "3" is the encoder's posterior of the
    pseudo-inputs read as "3"s. With ``per_class=True`` every class has its own P pseudo-inputs
    instead (selected by the one-hot label) and each is encoded with its class.

    Options:
        pseudo_inputs: P (default 500, as in [1]).
        per_class: one set of P pseudo-inputs per class (default False).

    The pseudo-inputs are images: ``sigmoid`` of learned logits, initialised near grey (0.5).
    The prior needs the model's encoder: :meth:`bind` takes ``model.prior_encoder`` (a callable
    (x, c) -> (loc, scale) of the latent this prior is over) or else ``model.encoder``.
    Encoding costs P forward passes per distinct condition in a batch (at most
    ``num_classes * P`` for labels). No closed-form KL. Because p(z) depends on the encoder's
    parameters, ``objective='dreg'`` can give a noisier encoder gradient than ``'iwae'`` here
    (see :class:`~pyro_cvae.infer.objectives.DReGELBO`).
    """

    OPTIONS = {"pseudo_inputs": 500, "per_class": False}

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        v = self.options["pseudo_inputs"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"prior 'vamp' needs at least one pseudo-input, got pseudo_inputs={v!r}; "
                "use e.g. prior_options={'pseudo_inputs': 500}"
            )
        self.num_pseudo = v
        self.per_class = self._option_bool("per_class")
        if self.per_class:
            self._check_per_class()
        self._encode: Callable | None = None

    def bind(self, model: nn.Module) -> None:
        """Create the pseudo-inputs with the model's image shape and keep its encoder."""
        encode = getattr(model, "prior_encoder", None)
        # a bound method, not the module: the encoder stays registered once, in the model
        self._encode = encode if encode is not None else model.encoder.__call__
        shape = tuple(model.config.image_shape)
        lead = (self.cond_width, self.num_pseudo) if self.per_class else (self.num_pseudo,)
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(lead + shape))

    @contextmanager
    def encoder_held_fixed(self, encoder: nn.Module) -> Iterator[None]:
        """Within the block the pseudo-inputs are encoded by ``encoder`` with its parameters
        detached, so a gradient leaves out the prior's own dependence on the encoder (the
        latent samples are unchanged: a draw with the same seed differs exactly by that term).
        Used to split the encoder gradient of DReG and IWAE (see
        :class:`~pyro_cvae.infer.objectives.DReGELBO`)."""
        live = self._encode

        def held(u, c):
            params = {n: p.detach() for n, p in encoder.named_parameters()}
            return torch.func.functional_call(encoder, params, (u, c))

        self._encode = held
        try:
            yield
        finally:
            self._encode = live

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """The pseudo-images in [0, 1]: (P, C, H, W), or (cond_width, P, C, H, W) per class."""
        if self._encode is None:
            raise RuntimeError("VampPrior.bind(model) was not called; the model binds it")
        return torch.sigmoid(self.pseudo_logits)

    def dist(self, c, batch_shape):
        u = self.pseudo_inputs
        P = self.num_pseudo
        if c is None:
            if self.per_class or self.cond_width:
                raise ValueError("prior 'vamp' of a conditional model needs the condition c")
            loc, scale = self._encode(u, None)  # (P, D)
        else:
            # encode once per distinct condition in the batch (labels: at most num_classes)
            cu, index = torch.unique(c, dim=0, return_inverse=True)  # (U, cw), (B,)
            U = cu.shape[0]
            if self.per_class:
                uu = torch.einsum("ug,gp...->up...", cu, u)  # (U, P, C, H, W)
            else:
                uu = u.expand((U,) + u.shape)
            loc, scale = self._encode(uu, cu[:, None, :].expand(U, P, cu.shape[-1]))  # (U, P, D)
            loc, scale = loc[index], scale[index]  # (B, P, D)
        uniform = torch.zeros(loc.shape[:-1], dtype=loc.dtype, device=loc.device)
        return DiagonalNormalMixture(uniform, loc, scale).expand(torch.Size(batch_shape))


class FlowPrior(Prior):
    r"""A normalizing-flow prior: a standard normal pushed through affine coupling layers.

    .. math:: z = f_L \circ \dots \circ f_1(\varepsilon; c), \quad \varepsilon \sim \mathcal N(0, I)

    Each layer is a RealNVP affine coupling [3] (``pyro.distributions.transforms``) whose
    network also sees the condition c (``ConditionalAffineCoupling``) when the model has one;
    a reversal permutation between layers lets every coordinate be transformed. Both sampling
    and log-density are one pass. Needs ``latent_dim >= 2``.

    Options:
        layers: coupling layers (default 4).
        hidden: width of the one hidden layer of each coupling network (default 64).
        conditional: use the condition c in the couplings (default True; ignored without one).
    """

    OPTIONS = {"layers": 4, "hidden": 64, "conditional": True}

    def __init__(self, latent_dim: int, cond_width: int = 0, **options):
        super().__init__(latent_dim, cond_width, **options)
        if latent_dim < 2:
            raise ValueError(
                f"prior 'flow' uses coupling layers and needs latent_dim >= 2, got {latent_dim}; "
                "use a wider latent or another prior"
            )
        layers = self._option_int("layers")
        hidden = self._option_int("hidden")
        self.conditional = self._option_bool("conditional") and cond_width > 0
        couplings = [
            T.conditional_affine_coupling(latent_dim, cond_width, hidden_dims=[hidden])
            if self.conditional
            else T.affine_coupling(latent_dim, hidden_dims=[hidden])
            for _ in range(layers)
        ]
        self.couplings = nn.ModuleList(couplings)
        # a fixed reversal between couplings (Permute is not a module: no state to save)
        self._flip = T.Permute(torch.arange(latent_dim - 1, -1, -1))

    def dist(self, c, batch_shape):
        if self.conditional and c is None:
            raise ValueError("prior 'flow' of a conditional model needs the condition c")
        loc = self.zero.expand(_shape(batch_shape, self.latent_dim))
        base = dist.Normal(loc, torch.ones_like(loc)).to_event(1)
        ts: list = []
        for i, t in enumerate(self.couplings):
            if i:
                ts.append(self._flip)
            ts.append(t.condition(c) if self.conditional else t)
        return dist.TransformedDistribution(base, ts)


#: prior name -> class
PRIORS: dict[str, type[Prior]] = {
    "normal": NormalPrior,
    "conditional": ConditionalNormalPrior,
    "mixture": MixturePrior,
    "vamp": VampPrior,
    "flow": FlowPrior,
}


def _name_of(cls: type) -> str:
    for k, v in PRIORS.items():
        if v is cls:
            return k
    return cls.__name__


def make_prior(name: str, latent_dim: int, cond_width: int, options: dict | None = None) -> Prior:
    """Build the prior registered under ``name`` with the options of ``ModelConfig``."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name](latent_dim, cond_width, **(options or {}))
