r"""The objective of the auxiliary deep generative models ADGM and SDGM (Maaløe et al. 2016).

The models and their guide q(a | x) q(y | a, x) q(z | a, y, x) are
:class:`~pyro_cvae.models.ADGM` and :class:`~pyro_cvae.models.SDGM`. For an unlabelled image the
bound sums the label out exactly, under one draw of a ([1], eq. 5):

.. math:: \mathcal U(x) = E_{q(a|x)} \Big[ \sum_y q(y|a,x)\, E_{q(z|a,y,x)}
          \Big[ \log \frac{p(x, y, z, a)}{q(z|a,y,x)} \Big] + H[q(y|a,x)] - \log q(a|x) \Big];

a labelled image has :math:`\mathcal L(x, y) = E_{q(a|x) q(z|a,y,x)}[\log p(x, y, z, a) -
\log q(a|x) - \log q(z|a,y,x)]`. Both are lower bounds of log p(x) and log p(x, y). The sum over
y must sit *inside* the expectation over a (q(y | a, x) depends on a), which is why this is not
M2's stacked-label path (:func:`~pyro_cvae.infer.semisupervised.label_log_weights` draws z for
each label independently, which for these models would also draw a label by label).

Training loss, one step, the same weights as M2's (:mod:`pyro_cvae.infer.semisupervised`):

.. math:: \frac1N \Big( \frac{N_u}{B_u} \sum_{\text{batch}_u} -\mathcal U
          + \frac{N_l}{B_l} \sum_{\text{batch}_l} -\mathcal L
          + \frac{\alpha}{B_l} \sum_{\text{batch}_l} E_{q(a|x)}[-\log q(y | a, x)] \Big)

with the paper's classification term (one reparameterized draw of a per labelled image).

Two paths compute the same estimator (one draw of a per image, then one draw of z per label, in
that order): Pyro's ``TraceEnum_ELBO`` on the model and ``config_enumerate`` of the guide (the
reference, used under Pyro's validation), and :func:`auxiliary_elbo`, the same sums written
with the models' distributions (no traces; the lean path). With the same seed they agree to
float precision. :func:`auxiliary_log_weights` gives importance weights with the label summed
out, whose log-mean tends to log p(x) (for evaluation).

References:
    [1] Maaløe, Sønderby, Sønderby and Winther, Auxiliary Deep Generative Models, ICML 2016.
    [2] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import config_enumerate

from .._validate import num_particles as check_particles
from ..models.adgm import AuxiliaryDGM
from .objectives import enum_objective
from .semisupervised import step_loss

__all__ = ["AuxiliaryObjective", "auxiliary_elbo", "auxiliary_log_weights", "auxiliary_log_px"]


def _label_terms(model: AuxiliaryDGM, x: torch.Tensor, y: torch.Tensor | None):
    """One draw of a (B, A), then z for each label: log q(a|x) (B,), the per-label
    log p(x, y, z, a) - log q(z|a,y,x) (C, B) or (B,), and q(y|a,x) logits (B, C) or None."""
    B = x.shape[0]
    qa = model.qa_dist(x)
    a = qa.rsample()  # (B, A)
    log_qa = qa.log_prob(a)  # (B,)
    if y is None:  # every label, as TraceEnum_ELBO enumerates it: (C, 1)
        labels = torch.arange(model.config.num_classes, device=x.device)[:, None]
        logits = model.classifier(x, a)  # (B, C)
    else:
        labels, logits = y, None
    c = model.one_hot(labels)  # (C, 1, C) or (B, C)
    qz = model.zq_dist(x, c, a)
    z = qz.rsample()  # (C, B, D) or (B, D)
    log_w = (
        model.y_dist(B).log_prob(labels)
        + model.z_dist(None, (B,)).log_prob(z)
        + model.pa_dist(x, c, z).log_prob(a)
        + model.px_dist(z, c, a).log_prob(x)
        - qz.log_prob(z)
    )  # (C, B) or (B,)
    return log_qa, log_w, logits


def auxiliary_elbo(
    model: AuxiliaryDGM, x: torch.Tensor, y: torch.Tensor | None = None
) -> torch.Tensor:
    r"""One draw of :math:`\mathcal U(x)` (``y=None``) or :math:`\mathcal L(x, y)`: shape (B,).

    The label summed out exactly under one draw of a (see the module docstring); the same
    estimator, drawn in the same order, as ``TraceEnum_ELBO``; differentiable.
    """
    log_qa, log_w, logits = _label_terms(model, x, y)
    if logits is None:
        return log_w - log_qa
    log_q = torch.log_softmax(logits, dim=-1)  # (B, C)
    q = log_q.exp()
    return (q * (log_w.T - log_q)).sum(-1) - log_qa


@torch.no_grad()
def auxiliary_log_weights(model: AuxiliaryDGM, x: torch.Tensor, num_particles: int) -> torch.Tensor:
    """log p(x, y, z, a) - log q(a | x) - log q(z | a, y, x) for K draws of a and, under each,
    one z per label: (K, C, B). ``logsumexp`` over (K, C) minus log K is an importance-sampling
    estimate of log p(x) with the label summed out; in expectation a lower bound that rises to
    log p(x) as K grows."""
    check_particles(num_particles)
    B = x.shape[0]
    xs = x.expand((num_particles,) + x.shape).reshape((num_particles * B,) + x.shape[1:])
    log_qa, log_w, _ = _label_terms(model, xs, None)  # (K*B,), (C, K*B)
    log_w = (log_w - log_qa).reshape(-1, num_particles, B)  # (C, K, B)
    return log_w.transpose(0, 1)  # (K, C, B)


@torch.no_grad()
def auxiliary_log_px(
    model: AuxiliaryDGM, x: torch.Tensor, num_particles: int = 100
) -> torch.Tensor:
    """The importance-sampling estimate of log p(x) from :func:`auxiliary_log_weights`: (B,)."""
    log_w = auxiliary_log_weights(model, x, num_particles)
    return torch.logsumexp(log_w.flatten(0, 1), 0) - math.log(num_particles)


class AuxiliaryObjective:
    """The training loss of one step of ADGM / SDGM (see the module docstring); used by
    :class:`~pyro_cvae.train.ModuleSVI` through ``differentiable_loss``, like M2's
    :class:`~pyro_cvae.infer.semisupervised.SemiSupervisedObjective`.

    Args:
        kind: ``"elbo"``, the only objective of these models (labels enumerated).
        num_particles: K, draws of (a, z) per image, averaged.
        lean: compute the bounds with :func:`auxiliary_elbo` (no Pyro traces; the same
            estimator), not ``TraceEnum_ELBO``.
    """

    def __init__(self, kind: str = "elbo", num_particles: int = 1, *, lean: bool = False):
        if kind != "elbo":
            raise ValueError(
                f"ADGM and SDGM train with the enumerated ELBO, objective 'elbo'; got {kind!r} "
                "(the importance-weighted objective 'iwae' is M2's)"
            )
        check_particles(num_particles)
        self.kind, self.num_particles, self.lean = kind, num_particles, lean
        self.enum_elbo = enum_objective(num_particles)
        self.enum_elbo.strict_enumeration_warning = False  # labelled batches enumerate nothing

    def _lean(self, model, x, y) -> torch.Tensor:
        total = sum(auxiliary_elbo(model, x, y).sum() for _ in range(self.num_particles))
        return -total / self.num_particles

    def unlabelled(self, model: AuxiliaryDGM, x: torch.Tensor) -> torch.Tensor:
        """Loss of the unlabelled images, summed over the batch (value: -sum U(x))."""
        if self.lean:
            return self._lean(model, x, None)
        guide = config_enumerate(model.guide, "parallel", expand=False)
        return self.enum_elbo.differentiable_loss(model.model, guide, x)

    def labelled(self, model: AuxiliaryDGM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of the labelled images, summed over the batch (value: -sum L(x, y))."""
        if self.lean:
            return self._lean(model, x, y)
        return self.enum_elbo.differentiable_loss(model.model, model.guide, x, y)

    def differentiable_loss(self, model: AuxiliaryDGM, _guide, x_l, y_l, x_u, weights):
        """w_u * unlabelled + w_l * labelled + w_c * sum of -log q(y | a, x), a ~ q(a | x)."""
        return step_loss(self, model, x_l, y_l, x_u, weights, model.sampled_class_logits)

    def loss(self, model: AuxiliaryDGM, _guide, *args) -> float:
        """The loss's value without gradients (the lean path: ``TraceEnum_ELBO`` refuses to run
        under ``torch.no_grad``)."""
        lean = self if self.lean else AuxiliaryObjective(self.kind, self.num_particles, lean=True)
        with torch.no_grad():
            return lean.differentiable_loss(model, _guide, *args).item()
