r"""Objectives of the semi-supervised M2 model (Kingma et al. 2014).

The model p(y) p(z) p(x | z, y) and its guide q(y | x) q(z | x, y) are
:class:`~pyro_cvae.models.M2`; a missing label is ``y=None`` and is summed out exactly, by
enumeration switched on here, from outside the model (``config_enumerate`` + ``TraceEnum_ELBO``).

Objectives, for the labelled images :math:`(x, y)` and the unlabelled images :math:`x`:

* ``elbo`` [1]: :math:`\mathcal L(x, y) = E_{q(z|x,y)}[\log p(x, z, y) - \log q(z|x,y)]` and
  :math:`\mathcal U(x) = \sum_y q(y|x) \mathcal L(x, y) + H[q(y|x)]`;
* ``iwae`` (this module; no library ships it): importance weighting over z, the exact
  q-weighted sum over y. With K draws :math:`z_{yk} \sim q(z | x, y)` for every label and
  :math:`w_{yk} = p(x, z_{yk}, y) / q(z_{yk} | x, y)`,

  .. math:: \mathcal U_K(x) = \sum_y q(y|x) \log \frac1K \sum_k w_{yk} + H[q(y|x)].

  Each :math:`E \log \frac1K \sum_k w_{yk}` is the IWAE bound [2] of :math:`\log p(x, y)`, so

  .. math:: E\,\mathcal U_K(x) \le \sum_y q(y|x) \log \frac{p(x, y)}{q(y|x)}
            = \log p(x) - \mathrm{KL}(q(y|x) \,\|\, p(y|x)) \le \log p(x);

  it rises with K (in expectation, label by label [2]) towards that middle term; with K = 1
  it *is* the enumerated :math:`\mathcal U(x)`, draw for draw. The labelled images use the
  IWAE bound of :math:`\log p(x, y)` with the same K.

  Why this form (issue 17). The first version, :math:`\log \sum_y \frac1K \sum_k w_{yk}`
  (:func:`iw_bound`), is tighter (it tends to log p(x)) but does not contain q(y | x): each
  label's decoder is then trained on every unlabelled image with the model's own posterior
  weights, only the few labelled images tie y to the classes, y drifts towards unsupervised
  clusters and a wake update of q(y | x) towards those weights [3] dragged the classifier to
  77.9% test error at 100 MNIST labels. Writing it "with q as the proposal over y",
  :math:`\log \sum_y q(y|x) \frac1K \sum_k w_{yk} / q(y|x)`, changes nothing: q cancels.
  Letting q(y | x) propose one label per particle,
  :math:`\log \frac1K \sum_k p(x, y_k, z_k) / (q(y_k|x) q(z_k|x, y_k))` with
  :math:`y_k \sim q(y|x)`, brings q into the bound, but its gradient for q is a score-function
  (REINFORCE) estimate with high variance, and as K grows the bound tends to log p(x) whatever
  q is, so the classifier's learning signal fades (Rainforth et al. [4]) and the label weights
  of the decoder become the model's posterior again: the same drift, more slowly. Keeping the
  sum over y exact and weighted by q(y | x) (as Kingma's M2 does [1]) and importance-weighting
  only z keeps what makes M2 work: q(y | x) weighs the labels of every unlabelled image (so
  the meaning of y follows the classifier, which the labelled images anchor), and the bound
  trains q(y | x) with an exact gradient (no score function, no wake term; its optimum is
  :math:`q(y|x) \propto \exp \log \frac1K \sum_k w_{yk}`, the model's posterior as K grows).
  The price is a bias that does not vanish with K: the bound stays
  :math:`\mathrm{KL}(q(y|x) \| p(y|x))` below log p(x), the gap that trains the classifier.
  The variance of the z-gradients is that of IWAE per label; the cost, C K decoder passes per
  unlabelled image, is that of the first version. :func:`iw_bound` remains the tighter bound
  for evaluating log p(x), and its log weights give the generative classifier p(y | x)
  (:func:`pyro_cvae.evaluate.generative_posterior`).

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
    [4] Rainforth, Kosiorek, Le, Maddison, Igl, Wood and Teh, Tighter Variational Bounds are
        Not Necessarily Better, ICML 2018.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import config_enumerate
from torch.nn import functional as F

from .._validate import num_particles as check_particles
from ..models.m2 import M2
from .lean import lean_log_weights
from .objectives import ImportanceWeightedELBO, enum_objective, importance_log_weights

__all__ = [
    "SemiSupervisedObjective",
    "step_loss",
    "label_log_weights",
    "iw_bound",
    "label_weighted_iw_bound",
    "enumerated_elbo",
    "SEMI_SUPERVISED_OBJECTIVES",
]


def step_loss(objective, model, x_l, y_l, x_u, weights, class_logits) -> torch.Tensor:
    """One semi-supervised step's loss: w_u * unlabelled + w_l * labelled + w_c * the
    cross-entropy of ``class_logits(x_l)`` against the labels, each term summed over its batch.

    ``objective`` supplies ``unlabelled(model, x)`` and ``labelled(model, x, y)`` (M2's
    :class:`SemiSupervisedObjective`, or ADGM's and SDGM's objective); ``weights`` is
    ``(w_u, w_l, w_c)`` from the family's batches.
    """
    w_u, w_l, w_c = weights
    loss = torch.zeros((), device=x_l.device if x_l is not None else x_u.device)
    if x_u is not None and x_u.shape[0]:
        loss = loss + w_u * objective.unlabelled(model, x_u)
    if x_l is not None and x_l.shape[0]:
        ce = F.cross_entropy(class_logits(x_l), y_l, reduction="sum")
        loss = loss + w_l * objective.labelled(model, x_l, y_l) + w_c * ce
    return loss


#: objectives of the semi-supervised model (names shared with :data:`pyro_cvae.OBJECTIVES`)
SEMI_SUPERVISED_OBJECTIVES = ("elbo", "iwae")


def label_log_weights(
    model: M2, x: torch.Tensor, num_particles: int = 1, *, lean: bool = False
) -> torch.Tensor:
    r"""log w_yk = log p(x, z_yk, y) - log q(z_yk | x, y) for every label y: shape (K, C, B).

    z_yk ~ q(z | x, y), K draws per label and image. The C labels are stacked into one batch of
    C * B labelled images and run through :func:`~pyro_cvae.objectives.importance_log_weights`
    (the model's own sample sites, vectorized), or with ``lean=True`` through
    :func:`~pyro_cvae.infer.lean.lean_log_weights` (the same values without Pyro's traces);
    differentiable.
    """
    check_particles(num_particles)
    B, C = x.shape[0], model.config.num_classes
    x_all = x.expand((C,) + x.shape).reshape((C * B,) + x.shape[1:])  # (C*B, ...)
    y_all = torch.arange(C, device=x.device).repeat_interleave(B)  # (C*B,)
    if lean:
        log_w = lean_log_weights(model.model, model.guide, num_particles, x_all, y_all)
    else:
        elbo = ImportanceWeightedELBO(num_particles=num_particles)
        log_w, _, _ = importance_log_weights(elbo, model.model, model.guide, x_all, y_all)
    return log_w.reshape(num_particles, C, B)


def _log_mean_exp(t: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(t, dim=dim) - math.log(t.shape[dim])


def iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log p(x) bounded from (K, C, B) log weights: log sum_y mean_k w_yk, shape (B,).

    Tends to log p(x) as K grows [2]; it does not contain q(y | x), so it does not train the
    classifier (the module docstring says why ``iwae`` does not train with it).
    """
    return torch.logsumexp(_log_mean_exp(log_w, 0), dim=0)


def label_weighted_iw_bound(log_w: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    r"""The bound of the ``iwae`` objective from (K, C, B) log weights and q(y|x) logits (B, C).

    .. math:: \mathcal U_K(x) = \sum_y q(y|x) \log \frac1K \sum_k w_{yk} + H[q(y|x)],

    shape (B,); with K = 1 it equals :func:`enumerated_elbo` of the same draws, and for the same
    draws it lies between :func:`enumerated_elbo` and :func:`iw_bound` (Jensen's inequality).
    """
    log_q = torch.log_softmax(class_logits, dim=-1)  # (B, C)
    log_p_xy = _log_mean_exp(log_w, 0).T  # (B, C): IWAE estimate of log p(x, y) per label
    return (log_q.exp() * (log_p_xy - log_q)).sum(-1)


def enumerated_elbo(log_w: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    """The enumerated ELBO U(x) from the same (K, C, B) log weights and q(y|x) logits (B, C).

    sum_y q(y | x) mean_k log w_yk + H[q(y | x)]: shape (B,).
    """
    log_q = torch.log_softmax(class_logits, dim=-1)  # (B, C)
    q = log_q.exp()
    return (q * log_w.mean(0).T).sum(-1) - (q * log_q).sum(-1)


class SemiSupervisedObjective:
    """The M2 training loss of one step (see the module docstring), enumerated or importance-
    weighted; used by :class:`~pyro_cvae.train.ModuleSVI` through ``differentiable_loss``.

    Args:
        kind: ``"elbo"`` (``TraceEnum_ELBO``, labels enumerated) or ``"iwae"`` (the bound
            :math:`\\mathcal U_K` of :func:`label_weighted_iw_bound`, labelled images with the
            IWAE bound of K particles).
        num_particles: K, draws of z per image (and per label where the label is missing).
        lean: compute the log weights without Pyro's traces (:mod:`pyro_cvae.infer.lean`). The
            enumerated ``elbo`` is then :func:`enumerated_elbo` of :func:`label_log_weights`:
            the estimator ``TraceEnum_ELBO`` computes (exact sum over labels, K reparameterized
            draws of z per label), drawn in another order.
    """

    def __init__(self, kind: str = "elbo", num_particles: int = 1, *, lean: bool = False):
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
        self.lean = lean

    def unlabelled(self, model: M2, x: torch.Tensor) -> torch.Tensor:
        """Loss of the unlabelled images, summed over the batch (value: -sum U(x))."""
        if self.kind == "elbo" and not self.lean:
            guide = config_enumerate(model.guide, "parallel", expand=False)
            return self.enum_elbo.differentiable_loss(model.model, guide, x)
        log_w = label_log_weights(model, x, self.num_particles, lean=self.lean)  # (K, C, B)
        if self.kind == "elbo":
            return -enumerated_elbo(log_w, model.classifier(x)).sum()
        return -label_weighted_iw_bound(log_w, model.classifier(x)).sum()

    def labelled(self, model: M2, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of the labelled images, summed over the batch (value: -sum L(x, y))."""
        if self.lean:  # no label to enumerate: the ELBO or the IWAE bound of (x, y)
            log_w = lean_log_weights(model.model, model.guide, self.num_particles, x, y)
            if self.kind == "elbo":
                return -log_w.mean(0).sum()
            return -self.iw_elbo.bound_per_datapoint(log_w).sum()
        if self.kind == "elbo":
            return self.enum_elbo.differentiable_loss(model.model, model.guide, x, y)
        log_w, _, _ = importance_log_weights(self.iw_elbo, model.model, model.guide, x, y)
        return -self.iw_elbo.bound_per_datapoint(log_w).sum()

    def differentiable_loss(self, model: M2, _guide, x_l, y_l, x_u, weights) -> torch.Tensor:
        """w_u * unlabelled + w_l * labelled + w_c * sum of -log q(y | x) over the labelled."""
        return step_loss(self, model, x_l, y_l, x_u, weights, model.classifier)

    def loss(self, model: M2, _guide, *args) -> float:
        """The loss's value, computed without gradients (also under ``torch.no_grad``, where
        ``TraceEnum_ELBO`` refuses to run: the value comes from the lean path, the same
        estimator)."""
        lean = (
            self if self.lean else SemiSupervisedObjective(self.kind, self.num_particles, lean=True)
        )
        with torch.no_grad():
            return lean.differentiable_loss(model, _guide, *args).item()
