"""The conditional VAE as a Pyro model/guide pair.

Generative story, for a batch of B images with conditions c (one-hot labels or vectors)::

    z ~ p(z | c)            # prior, "z": batch (B,), event (D,)
    x ~ p(x | z, c)         # likelihood, "x": batch (B,), event (C, H, W)

and the guide q(z | x, c) = N(loc(x, c), diag scale(x, c)^2). With no condition
(``num_classes == condition_dim == 0``) the same class is a plain VAE.

References:
    [1] Kingma and Welling, Auto-Encoding Variational Bayes, ICLR 2014.
    [2] Sohn, Lee and Yan, Learning Structured Output Representation using Deep Conditional
        Generative Models, NeurIPS 2015.
"""

from __future__ import annotations

from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from .._validate import check_images, check_labels
from ..checkpoint import save_checkpoint
from ..nn.distributions import ReparamNormal
from ..nn.likelihoods import make_likelihood
from ..nn.nets import make_decoder, make_encoder
from ..nn.priors import make_prior
from .config import ModelConfig

__all__ = ["CVAE"]


class CVAE(PyroModule):
    """Conditional VAE: guide q(z | x, y), model p(z | y) p(x | z, y).

    Args:
        config: a :class:`~pyro_cvae.config.ModelConfig`; keyword arguments build one instead.
        encoder, decoder: your own ``nn.Module`` instances in place of the config's network
            family (the interface of :func:`~pyro_cvae.register_net`). Such a model trains and
            samples in this process, but cannot be saved: a checkpoint stores no code. Register
            the classes with :func:`~pyro_cvae.register_net` and set ``ModelConfig(net=...)`` to
            save and load it.

    Parameters live in this module (not in Pyro's global parameter store), so two models in
    one process never share parameters and ``state_dict()`` is the whole model.

    Example::

        model = CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=8)
        x = model.sample(5, num_samples=16)          # sixteen images of a "5"
    """

    config_class = ModelConfig

    def __init__(self, config: ModelConfig | None = None, *, encoder: nn.Module | None = None,
                 decoder: nn.Module | None = None, **kwargs):  # fmt: skip
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a ModelConfig or keyword arguments, not both")
        for role, module in (("encoder", encoder), ("decoder", decoder)):
            if module is not None and not isinstance(module, nn.Module):
                raise TypeError(
                    f"{role} must be an nn.Module instance (built, not its class), got "
                    f"{type(module).__name__} {module!r}"
                )
        if config.latent_dims and not getattr(type(self), "supports_latent_dims", False):
            raise ValueError(
                f"latent_dims={config.latent_dims} describes a hierarchical model; build it with "
                "pyro_cvae.build_model(config) (or HierarchicalCVAE), not CVAE"
            )
        super().__init__()
        self.config = config
        cw, d = config.cond_width, config.latent_dim
        net, shape, hidden, act = (
            config.net,
            config.image_shape,
            config.hidden_dims,
            config.activation,
        )
        opts = config.net_options
        # "encoder pkg.Class" for a network passed in as a module: a checkpoint could not rebuild it
        self.unregistered_nets = tuple(
            f"{role} {type(m).__module__}.{type(m).__qualname__}"
            for role, m in (("encoder", encoder), ("decoder", decoder))
            if m is not None
        )
        if encoder is None:
            encoder = make_encoder(net, shape, cw, hidden, d, act, **opts)
        if decoder is None:
            decoder = make_decoder(net, shape, cw, hidden, d, act, **opts)
        self.encoder, self.decoder = encoder, decoder
        self.prior = make_prior(config.prior, d, cw, config.prior_options)
        self.prior.bind(self)  # priors that need the model (VampPrior: its encoder)
        self.likelihood = make_likelihood(config.likelihood, config.x_scale, config.learn_x_scale,
                                          len(config.image_shape), config.table_columns)  # fmt: skip

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """Names of the latent sample sites, those a KL weight (beta, warm-up) scales."""
        return ("z",)

    # ------------------------------------------------------------------ conditions and checks

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def condition(self, y: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """The condition vector c of shape (B, cond_width) from labels or vectors (None: VAE)."""
        cfg = self.config
        if cfg.cond_width == 0:
            if y is not None:
                raise ValueError(
                    "this model has no condition (num_classes=0, condition_dim=0) but got y; "
                    "pass y=None or build the model with num_classes > 0"
                )
            return None
        if y is None:
            raise ValueError(
                f"this model is conditional: pass labels y of shape (N,) in [0, {cfg.num_classes})"
                if cfg.num_classes
                else f"this model is conditional: pass conditions y of shape (N, {cfg.condition_dim})"
            )
        if cfg.num_classes:
            if y.dim() != 1 or y.shape[0] != batch_size:
                raise ValueError(
                    f"labels must have shape ({batch_size},), got {tuple(y.shape)}; "
                    "give one integer label per image"
                )
            return F.one_hot(y, cfg.num_classes).to(self._dtype())
        if y.dim() != 2 or y.shape[-1] != cfg.condition_dim or y.shape[0] != batch_size:
            raise ValueError(
                f"conditions must have shape ({batch_size}, {cfg.condition_dim}), "
                f"got {tuple(y.shape)}"
            )
        return y.to(self._dtype())

    def _dtype(self) -> torch.dtype:
        # through the module's dicts: PyroModule's attribute lookup costs microseconds, and a
        # training step asks twice
        zero = self._modules["prior"]._buffers.get("zero")
        return zero.dtype if zero is not None else torch.get_default_dtype()

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise a clear ``ValueError`` for malformed images, labels or conditions."""
        cfg = self.config
        check_images(x, cfg.image_shape, binary_range=self.likelihood.needs_unit_range)
        if cfg.num_classes and y is not None:
            check_labels(y, cfg.num_classes, x.shape[0])
        elif cfg.condition_dim and y is not None:
            if not torch.isfinite(y).all():
                raise ValueError("conditions contain NaN or Inf")
        self.condition(y, x.shape[0])

    # ------------------------------------------------------------------ distributions

    def z_dist(self, c: torch.Tensor | None, batch_shape) -> dist.TorchDistribution:
        """The prior p(z | c) with the given batch shape."""
        return self.prior.dist(c, torch.Size(batch_shape))

    def x_dist(self, z: torch.Tensor, c: torch.Tensor | None) -> dist.TorchDistribution:
        """The likelihood p(x | z, c); z (..., B, D) -> batch (..., B), event (C, H, W)."""
        return self.likelihood.dist(self.decoder(z, c))

    def q_dist(self, x: torch.Tensor, c: torch.Tensor | None) -> dist.TorchDistribution:
        """The guide's q(z | x, c): batch (B,), event (D,)."""
        loc, scale = self.encoder(x, c)
        return ReparamNormal(loc, scale).to_event(1)

    # ------------------------------------------------------------------ model and guide

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(z | y) p(x | z, y) over one plate of B images."""
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B, device=x.device):  # the device given: one lookup fewer
            z = pyro.sample("z", self.z_dist(c, (B,)))  # (B, D) or (K, B, D)
            pyro.sample("x", self.x_dist(z, c), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(z | x, y), inside the same plate as the model."""
        B = x.shape[0]
        c = self.condition(y, B)
        with pyro.plate("data", B, device=x.device):
            pyro.sample("z", self.q_dist(x, c))

    # ------------------------------------------------------------------ public helpers

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        """Floating-point images in the model's dtype and on its device (float64 -> float32);
        other inputs are left for :meth:`check_inputs` to refuse with a message."""
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(device=self.device, dtype=self._dtype())
        return x

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Posterior mean and scale of q(z | x, y), each of shape (N, latent_dim).

        Floating-point images of another dtype (e.g. float64) are converted to the model's."""
        x = self._as_images(x)
        self.check_inputs(x, y)
        return self.encoder(x, self.condition(y, x.shape[0]))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, *, mean: bool = True):
        """Images from latents: the mean of p(x | z, y) or (``mean=False``) a draw from it."""
        z = self._as_images(z)
        c = self.condition(y, z.shape[-2]) if y is not None else self.condition(None, 0)
        out = self.decoder(z, c)
        return self.likelihood.mean(out) if mean else self.likelihood.dist(out).sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None, *, mean: bool = True):
        """Decode the posterior mean: images of the same shape as ``x``, in [0, 1]."""
        loc, _ = self.encode(x, y)
        return self.decode(loc, y, mean=mean)

    def _as_condition(self, y) -> torch.Tensor | None:
        """The conditions ``y`` as a batch: (M,) labels or (M, d) vectors (None stays None)."""
        return self._conditions_and_single(y)[0]

    def _conditions_and_single(self, y) -> tuple[torch.Tensor | None, bool]:
        """The conditions :meth:`sample` was given as a batch (M labels, or (M, d) vectors), and
        whether it was one condition (one label, or one vector of width d)."""
        cfg = self.config
        if y is None:
            return None, True
        if isinstance(y, (str, bytes)) or not (
            isinstance(y, (int, float, torch.Tensor)) or hasattr(y, "__len__")
        ):
            raise TypeError(
                "y must be a label (int), a list or tensor of labels, or condition vectors; "
                f"got {type(y).__name__} {y!r}"
            )
        if not cfg.cond_width:
            raise ValueError(
                f"this model has no condition (num_classes=0, condition_dim=0) but got y={y!r}; "
                "call sample(None, num_samples) or sample(num_samples=...)"
            )
        try:
            t = torch.as_tensor(y, device=self.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"y could not be read as a tensor of conditions: {e}") from None
        if cfg.num_classes:
            if t.dim() > 1:
                raise ValueError(
                    f"labels must be one label or a 1-D list of M labels, got shape "
                    f"{tuple(t.shape)}"
                )
            single = t.dim() == 0
            t = t.reshape(-1)
            check_labels(t if t.dtype.is_floating_point else t.long(), cfg.num_classes)
            return t.long(), single
        d = cfg.condition_dim
        if t.dim() not in (1, 2) or t.shape[-1] != d:
            raise ValueError(
                f"this model is conditioned on vectors of width {d}: pass one condition of shape "
                f"({d},) or M conditions of shape (M, {d}), got "
                + (f"{y!r}" if t.dim() == 0 else f"shape {tuple(t.shape)}")
            )
        if not t.is_floating_point() and t.dtype != torch.bool:
            t = t.float()
        return t.reshape(-1, d).to(self._dtype()), t.dim() == 1

    @torch.no_grad()
    def sample(self, y=None, num_samples: int = 1, *, mean: bool = True, temperature: float = 1.0):
        """Generate images given a condition.

        Args:
            y: ``None`` (plain VAE); one condition: a label (int, 0-dim tensor) or one vector of
                shape (d,); or M conditions: a list / 1-D tensor of M labels, or (M, d) vectors.
            num_samples: images per condition.
            mean: return the mean of p(x | z, y) (default) rather than a draw from it.
            temperature: multiplies the prior draw of z (1: the prior itself).

        Returns:
            (num_samples, C, H, W) for ``None`` or one condition (a label or one vector: the same
            rule for both), else (M, num_samples, C, H, W), also for M = 1.
        """
        if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        if y is None and self.config.cond_width:
            raise ValueError("this model is conditional: pass a label or condition y to sample()")
        labels, single = self._conditions_and_single(y)
        M = 1 if labels is None else labels.shape[0]
        c = self.condition(labels, M)
        z = self.sample_latents(c, (num_samples, M), temperature)  # (n, M, D)
        x = self.decode_c(z, c, mean=mean).transpose(0, 1)  # (M, n, C, H, W)
        return x[0] if single else x

    def sample_latents(self, c: torch.Tensor | None, batch_shape, temperature: float = 1.0):
        """Prior draws of the latent the decoder reads, ``batch_shape + (latent_dim,)``."""
        return self.z_dist(c, batch_shape).sample() * temperature

    def decode_c(self, z: torch.Tensor, c: torch.Tensor | None, *, mean: bool = True):
        """Like :meth:`decode` with a ready condition vector c (broadcast against z)."""
        out = self.decoder(z, c)
        return self.likelihood.mean(out) if mean else self.likelihood.dist(out).sample()

    def check_saveable(self, action: str = "save this model") -> None:
        """Raise a ``ValueError`` saying how to make the model saveable when its encoder or
        decoder was passed in as a module (a checkpoint could not rebuild it)."""
        if self.unregistered_nets:
            raise ValueError(
                f"cannot {action}: its {' and '.join(self.unregistered_nets)} was passed to CVAE "
                "directly, and a checkpoint stores no code, so pyro_cvae.load could not rebuild "
                "it. Register the classes with pyro_cvae.register_net('mynet', EncoderClass, "
                "DecoderClass) and build the model from ModelConfig(..., net='mynet'); or keep "
                "the model in this process (train without out=, save state_dict() yourself)"
            )

    def save(self, path: str | Path, **extra) -> Path:
        """Write config and weights to ``path`` atomically; :func:`pyro_cvae.load` reads it.

        Raises:
            ValueError: for a model built with ``encoder=`` or ``decoder=`` modules.
        """
        self.check_saveable()
        payload = {
            "format": "pyro_cvae.model",
            "model_class": type(self).__name__,
            "model_config": self.config.to_dict(),
            "model": self.state_dict(),
            **extra,
        }
        return save_checkpoint(path, payload)
