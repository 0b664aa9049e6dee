r"""Auxiliary deep generative models (Maaløe et al. 2016): M2 with an auxiliary latent a.

Both models share the guide (the inference model of [1], figure 1)::

    a ~ q(a | x)            # "a": batch (B,), event (A,)
    y ~ q(y | a, x)         # "y": only where the label is missing; enumerated (C, 1)
    z ~ q(z | a, y, x)      # "z": batch (..., B), event (D,)

and differ in the generative story, with p(y) = Cat(1/C) and p(z) = N(0, I):

* **ADGM**: p(y) p(z) p(a | x, y, z) p(x | y, z); the auxiliary latent leaves the generative
  model unchanged (it is M2's) and makes the variational family richer: marginally,
  q(y, z | x) = E_{q(a|x)}[q(y | a, x) q(z | a, y, x)] is a continuous mixture;
* **SDGM** (skip deep generative model): p(y) p(z) p(a | z, y) p(x | a, z, y); a is a second
  stochastic layer of the generative model.

The bound of an unlabelled image, the label summed out exactly ([1], eq. 5 with y enumerated),

.. math:: \mathcal U(x) = E_{q(a|x)} \Big[ \sum_y q(y|a,x)\, E_{q(z|a,y,x)}
          \Big[ \log \frac{p(x, y, z, a)}{q(z|a,y,x)} \Big] + H[q(y|a,x)] - \log q(a|x) \Big],

is what ``TraceEnum_ELBO`` computes from :meth:`AuxiliaryDGM.model` and
:func:`~pyro.infer.config_enumerate` of :meth:`AuxiliaryDGM.guide`; a labelled image has
:math:`\mathcal L(x, y)`, the same without the sum. The networks broadcast over the leading label
dimension, so the sum is one vectorized pass. The objective that trains them, with the paper's
classification term :math:`\alpha\, E_{q(a|x)}[-\log q(y|a,x)]` on the labelled images, is
:mod:`pyro_cvae.infer.auxiliary`.

At test time the classifier is q(y | a, x) at the mean of q(a | x) (deterministic, one pass).

References:
    [1] Maaløe, Sønderby, Sønderby and Winther, Auxiliary Deep Generative Models, ICML 2016.
    [2] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._validate import positive_int
from ..nn.distributions import ReparamNormal
from ..nn.nets import MLP, Encoder, broadcast_cat, make_decoder, make_encoder
from .config import ModelConfig
from .m2 import M2

__all__ = ["AuxiliaryConfig", "AuxiliaryDGM", "ADGM", "SDGM"]


@dataclass(frozen=True)
class AuxiliaryConfig(ModelConfig):
    """A :class:`ModelConfig` with the width of the auxiliary latent a (the paper: 100)."""

    aux_dim: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("aux_dim", self.aux_dim)


class AuxClassifier(nn.Module):
    """q(y | a, x) as an MLP: x (..., B, *shape), a (..., B, A) -> logits (..., B, C)."""

    def __init__(self, image_shape, aux_dim: int, num_classes: int, hidden_dims, activation="relu"):
        super().__init__()
        self.x_dim = int(torch.Size(image_shape).numel())
        self.event_dim = len(image_shape)
        self.net = MLP([self.x_dim + aux_dim, *hidden_dims, num_classes], activation)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[: x.dim() - self.event_dim] + (self.x_dim,))
        return self.net(broadcast_cat(h, a))


class AuxiliaryDGM(M2):
    """The common part of :class:`ADGM` and :class:`SDGM` (see the module docstring).

    Built from an :class:`AuxiliaryConfig` (a plain :class:`ModelConfig` is extended with the
    default ``aux_dim``) with the same requirements as :class:`~pyro_cvae.models.M2`. The
    networks are MLPs of the config's ``hidden_dims``: q(a | x), q(y | a, x), q(z | a, y, x)
    (the config's ``net``), p(a | ...) and p(x | ...). Trained by :func:`pyro_cvae.fit` with the
    auxiliary semi-supervised family; saved and loaded like every model.
    """

    config_class = AuxiliaryConfig
    #: what p(a | .) reads besides (y, z): the image (ADGM) or nothing (SDGM)
    a_reads_x = True
    #: whether p(x | .) reads a (SDGM) or not (ADGM)
    x_reads_a = False

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        if config is None:
            config = AuxiliaryConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a config or keyword arguments, not both")
        if not isinstance(config, AuxiliaryConfig):
            config = AuxiliaryConfig.from_dict(config.to_dict())
        super().__init__(config)
        cfg, C, A, D = config, config.num_classes, config.aux_dim, config.latent_dim
        shape, hidden, act = cfg.image_shape, cfg.hidden_dims, cfg.activation
        opts = dict(dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self.aux_encoder = Encoder(shape, 0, hidden, A, act, **opts)  # q(a | x)
        self.classifier = AuxClassifier(shape, A, C, hidden, act)  # q(y | a, x)
        # q(z | a, y, x): the config's network with the condition (one-hot y, a)
        self.encoder = make_encoder(cfg.net, shape, C + A, hidden, D, act, **cfg.net_options)
        if self.a_reads_x:  # p(a | x, y, z): an encoder of x with the condition (y, z)
            self.aux_decoder = Encoder(shape, C + D, hidden, A, act, **opts)
        else:  # p(a | z, y): an MLP of z with the condition y
            self.aux_decoder = Encoder((D,), C, hidden, A, act, **opts)
        if self.x_reads_a:  # p(x | a, z, y)
            self.decoder = make_decoder(cfg.net, shape, C + A, hidden, D, act, **cfg.net_options)

    @property
    def latent_sites(self) -> tuple[str, ...]:
        return ("z", "a")

    # ------------------------------------------------------------------ distributions

    def qa_dist(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(a | x): batch (B,), event (A,)."""
        loc, scale = self.aux_encoder(x)
        return ReparamNormal(loc, scale).to_event(1)

    def qy_dist(self, x: torch.Tensor, a: torch.Tensor | None = None) -> dist.TorchDistribution:
        """q(y | a, x): batch (B,); ``a=None``: at the mean of q(a | x)."""
        return dist.Categorical(logits=self.class_logits(x, a))

    def class_logits(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of q(y | a, x), (B, C); ``a=None``: a at the mean of q(a | x)."""
        if a is None:
            a, _ = self.aux_encoder(x)
        return self.classifier(x, a)

    def sampled_class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | a, x) with a ~ q(a | x) reparameterized: (B, C), for the paper's
        classification term alpha E_{q(a|x)}[-log q(y | a, x)]."""
        return self.classifier(x, self.qa_dist(x).rsample())

    def zq_dist(self, x, c, a) -> dist.TorchDistribution:
        """q(z | a, y, x) for one-hot labels c (B, C) or (C, 1, C): batch (..., B)."""
        return self.q_dist(x, broadcast_cat(c, a))

    def pa_dist(self, x, c, z) -> dist.TorchDistribution:
        """p(a | x, y, z) (ADGM) or p(a | z, y) (SDGM): batch (..., B), event (A,)."""
        if self.a_reads_x:
            loc, scale = self.aux_decoder(x, broadcast_cat(c, z))
        else:
            loc, scale = self.aux_decoder(z, c)
        return ReparamNormal(loc, scale).to_event(1)

    def px_dist(self, z, c, a) -> dist.TorchDistribution:
        """p(x | y, z) (ADGM) or p(x | a, z, y) (SDGM): batch (..., B), event the image's."""
        return self.x_dist(z, broadcast_cat(c, a) if self.x_reads_a else c)

    # ------------------------------------------------------------------ model and guide

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(y) p(z) p(a | .) p(x | .); ``y=None``: the label is latent (enumerated)."""
        self._check_batch(x, y)
        B = x.shape[0]
        with pyro.plate("data", B):
            y = pyro.sample("y", self.y_dist(B), obs=y)  # (B,) or enumerated (C, 1)
            c = self.one_hot(y)
            z = pyro.sample("z", self.z_dist(None, (B,)))  # (..., B, D)
            a = pyro.sample("a", self.pa_dist(x, c, z))  # (B, A): the guide's
            pyro.sample("x", self.px_dist(z, c, a), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(a | x) q(y | a, x) q(z | a, y, x); q(y | a, x) only where the label is missing."""
        self._check_batch(x, y)
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", self.qa_dist(x))  # (B, A)
            if y is None:
                y = pyro.sample("y", self.qy_dist(x, a))
            pyro.sample("z", self.zq_dist(x, self.one_hot(y), a))  # (..., B, D)

    # ------------------------------------------------------------------ public helpers

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | a, x) at the mean of q(a | x): (N, C) probabilities."""
        self.check_inputs(x)
        return torch.softmax(self.class_logits(x), dim=-1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label under q(y | a, x) at the mean of q(a | x): (N,) integers."""
        x = self._as_images(x)
        self.check_inputs(x)
        return self.class_logits(x).argmax(-1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Mean and scale of q(z | a, y, x) at the mean of q(a | x); y defaults to
        :meth:`classify`."""
        x = self._as_images(x)
        y = self.classify(x) if y is None else y
        self.check_inputs(x, y)
        a, _ = self.aux_encoder(x)
        return self.encoder(x, broadcast_cat(self.one_hot(y), a))

    def decode_c(self, z: torch.Tensor, c: torch.Tensor | None, *, mean: bool = True):
        """Images from z and one-hot labels c; SDGM decodes with a at the mean of p(a | z, y)."""
        if self.x_reads_a:
            a, _ = self.aux_decoder(z, c)
            c = broadcast_cat(c, a)
        out = self.decoder(z, c)
        return self.likelihood.mean(out) if mean else self.likelihood.dist(out).sample()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, *, mean: bool = True):
        """Images from latents z (..., N, D) and labels y (N,)."""
        z = self._as_images(z)
        return self.decode_c(z, self.condition(y, z.shape[-2]), mean=mean)


class ADGM(AuxiliaryDGM):
    """Auxiliary deep generative model: p(y) p(z) p(a | x, y, z) p(x | y, z) [1].

    Example::

        model = ADGM(image_shape=(1, 8, 8), num_classes=10, latent_dim=8, aux_dim=8)
        history = pyro_cvae.fit(model, data, SemiSupervisedConfig(num_labels=100))
    """


class SDGM(AuxiliaryDGM):
    """Skip deep generative model: p(y) p(z) p(a | z, y) p(x | a, z, y) [1]."""

    a_reads_x = False
    x_reads_a = True
