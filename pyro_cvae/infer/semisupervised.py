r"""Objectives of the semi-supervised M2 model (Kingma et al. 2014) and its label posteriors.

The model p(y) p(z) p(x | z, y) and its guide q(y | x) q(z | x, y) are
:class:`~pyro_cvae.models.M2`; a missing label is ``y=None`` and is summed out exactly, by
enumeration switched on here, from outside the model (``config_enumerate`` + ``TraceEnum_ELBO``).

Objectives, for the labelled images :math:`(x, y)` and the unlabelled images :math:`x`:

* ``elbo`` [1]: :math:`\mathcal L(x, y) = E_{q(z|x,y)}[\log p(x, z, y) - \log q(z|x,y)]` and
  :math:`\mathcal U(x) = \sum_y q(y|x) \mathcal L(x, y) + H[q(y|x)]`;
* ``iwae`` (this module; no library ships it): with K draws :math:`z_{yk} \sim q(z | x, y)` for
  every label, :math:`w_{yk} = p(x, z_{yk}, y) / q(z_{yk} | x, y)`,

  .. math:: \mathcal U_K(x) = \log \sum_y \frac1K \sum_k w_{yk} \le \log p(x),

  never below :math:`\mathcal U(x)` for the same draws (Jensen's inequality over the labels with
  weights q(y | x), then over the particles), rising with K [2]. It does not contain
  q(y | x), so the classifier is trained on unlabelled images towards the normalised weights,
  :math:`\sum_y \mathrm{sg}(\tilde w_y) \log q(y|x)` with
  :math:`\tilde w_y \propto \sum_k w_{yk}` (the wake update of reweighted wake-sleep [3]); the
  same :math:`\tilde w_y` is a generative classifier p(y | x).

  Known limitation (measured in ``experiments/results/semi_supervised.md``): because
  :math:`\mathcal U_K` does not weight the labels by q(y | x), only the labelled images (weight
  :math:`N_l / N`) tie the meaning of y in p(x | z, y) to the classes; with few labels y drifts
  towards unsupervised clusters, the generative classifier degrades, and the wake update drags
  q(y | x) with it. The enumerated ``elbo`` does not have this problem (its q(y | x) weights
  the labels of every unlabelled image).

Both add the classification loss :math:`\alpha\, E_{\text{labelled}}[-\log q(y | x)]` with
Kingma's :math:`\alpha = 0.1 N` [1]. One training step uses a batch of unlabelled and a batch of
labelled images and is an unbiased estimate of the whole objective divided by N:

.. math:: \frac1N \Big( \frac{N_u}{B_u} \sum_{\text{batch}_u} -\mathcal U
          + \frac{N_l}{B_l} \sum_{\text{batch}_l} -\mathcal L
          + \frac{\alpha}{B_l} \sum_{\text{batch}_l} -\log q(y | x) \Big)

References:
    [1] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
    [2] Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
    [3] Bornschein and Bengio, Reweighted Wake-Sleep, ICLR 2015.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import config_enumerate
from torch.nn import functional as F

from .._validate import num_particles as check_particles
from ..data import Split
from ..models.m2 import M2
from .objectives import ImportanceWeightedELBO, enum_objective, importance_log_weights

__all__ = [
    "SemiSupervisedObjective",
    "label_log_weights",
    "iw_bound",
    "enumerated_elbo",
    "generative_posterior",
    "accuracy",
    "SEMI_SUPERVISED_OBJECTIVES",
]

#: objectives of the semi-supervised model (names shared with :data:`pyro_cvae.OBJECTIVES`)
SEMI_SUPERVISED_OBJECTIVES = ("elbo", "iwae")


def label_log_weights(model: M2, x: torch.Tensor, num_particles: int = 1) -> torch.Tensor:
    r"""log w_yk = log p(x, z_yk, y) - log q(z_yk | x, y) for every label y: shape (K, C, B).

    z_yk ~ q(z | x, y), K draws per label and image. The C labels are stacked into one batch of
    C * B labelled images and run through :func:`~pyro_cvae.objectives.importance_log_weights`
    (the model's own sample sites, vectorized); differentiable.
    """
    check_particles(num_particles)
    B, C = x.shape[0], model.config.num_classes
    x_all = x.expand((C,) + x.shape).reshape((C * B,) + x.shape[1:])  # (C*B, ...)
    y_all = torch.arange(C, device=x.device).repeat_interleave(B)  # (C*B,)
    elbo = ImportanceWeightedELBO(num_particles=num_particles)
    log_w, _, _ = importance_log_weights(elbo, model.model, model.guide, x_all, y_all)
    return log_w.reshape(num_particles, C, B)


def _log_mean_exp(t: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(t, dim=dim) - math.log(t.shape[dim])


def iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted M2 bound from (K, C, B) log weights: log sum_y mean_k w, (B,)."""
    return torch.logsumexp(_log_mean_exp(log_w, 0), dim=0)


def enumerated_elbo(log_w: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    """The enumerated ELBO U(x) from the same (K, C, B) log weights and q(y|x) logits (B, C).

    sum_y q(y | x) mean_k log w_yk + H[q(y | x)]: shape (B,).
    """
    log_q = torch.log_softmax(class_logits, dim=-1)  # (B, C)
    q = log_q.exp()
    return (q * log_w.mean(0).T).sum(-1) - (q * log_q).sum(-1)


@torch.no_grad()
def generative_posterior(
    model: M2, x: torch.Tensor, num_particles: int = 10, *, batch_size: int = 500
) -> torch.Tensor:
    """p(y | x) from the importance weights, softmax_y log mean_k w_yk: (N, C) probabilities."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        log_w = label_log_weights(model, x[i : i + batch_size], num_particles)
        out.append(torch.softmax(_log_mean_exp(log_w, 0), dim=0).T)
    return torch.cat(out) if out else torch.zeros(0, model.config.num_classes)


@torch.no_grad()
def accuracy(model: M2, split: Split, *, generative: int = 0, batch_size: int = 2000) -> float:
    """Test accuracy of q(y | x) (``generative=0``) or of p(y | x) with K = ``generative``."""
    if generative:
        pred = generative_posterior(model, split.x, generative).argmax(-1)
    else:
        pred = torch.cat(
            [model.classify(split.x[i : i + batch_size]) for i in range(0, len(split), batch_size)]
        )
    return (pred == split.y).float().mean().item()


class SemiSupervisedObjective:
    """The M2 training loss of one step (see the module docstring), enumerated or importance-
    weighted; used by :class:`~pyro_cvae.train.ModuleSVI` through ``differentiable_loss``.

    Args:
        kind: ``"elbo"`` (``TraceEnum_ELBO``, labels enumerated) or ``"iwae"`` (the bound
            :math:`\\mathcal U_K`, labelled images with the IWAE bound of K particles).
        num_particles: K, draws of z per image (and per label where the label is missing).
    """

    def __init__(self, kind: str = "elbo", num_particles: int = 1):
        if kind not in SEMI_SUPERVISED_OBJECTIVES:
            raise ValueError(
                f"unknown semi-supervised objective {kind!r}; choose one of "
                f"{', '.join(SEMI_SUPERVISED_OBJECTIVES)}"
            )
        check_particles(num_particles)
        self.kind, self.num_particles = kind, num_particles
        self.enum_elbo = enum_objective(num_particles) if kind == "elbo" else None
        if self.enum_elbo is not None:  # labelled batches have nothing to enumerate: no warning
            self.enum_elbo.strict_enumeration_warning = False
        self.iw_elbo = ImportanceWeightedELBO(num_particles) if kind == "iwae" else None

    def unlabelled(self, model: M2, x: torch.Tensor) -> torch.Tensor:
        """Loss of the unlabelled images, summed over the batch (value: -sum U(x))."""
        if self.kind == "elbo":
            guide = config_enumerate(model.guide, "parallel", expand=False)
            return self.enum_elbo.differentiable_loss(model.model, guide, x)
        log_w = label_log_weights(model, x, self.num_particles)  # (K, C, B)
        bound = iw_bound(log_w)
        # wake update of the classifier: cross-entropy to the normalised weights (no value)
        target = torch.softmax(_log_mean_exp(log_w, 0), dim=0).T.detach()  # (B, C)
        wake = -(target * torch.log_softmax(model.classifier(x), -1)).sum()
        return -bound.sum() + (wake - wake.detach())

    def labelled(self, model: M2, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of the labelled images, summed over the batch (value: -sum L(x, y))."""
        if self.kind == "elbo":
            return self.enum_elbo.differentiable_loss(model.model, model.guide, x, y)
        log_w, _, _ = importance_log_weights(self.iw_elbo, model.model, model.guide, x, y)
        return -self.iw_elbo.bound_per_datapoint(log_w).sum()

    def differentiable_loss(self, model: M2, _guide, x_l, y_l, x_u, weights) -> torch.Tensor:
        """w_u * unlabelled + w_l * labelled + w_c * sum of -log q(y | x) over the labelled."""
        w_u, w_l, w_c = weights
        loss = torch.zeros((), device=model.device)
        if x_u is not None and x_u.shape[0]:
            loss = loss + w_u * self.unlabelled(model, x_u)
        if x_l is not None and x_l.shape[0]:
            ce = F.cross_entropy(model.classifier(x_l), y_l, reduction="sum")
            loss = loss + w_l * self.labelled(model, x_l, y_l) + w_c * ce
        return loss

    def loss(self, model: M2, _guide, *args) -> float:
        return self.differentiable_loss(model, _guide, *args).item()
