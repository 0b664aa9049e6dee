r"""Semi-supervised learning with partial labels: the M2 model of Kingma et al. (2014).

Generative story, for a batch of B images, some with labels::

    y ~ p(y) = Cat(1/C)     # "y": observed where the label is known, summed out where not
    z ~ p(z) = N(0, I)      # "z": batch (B,), event (D,)
    x ~ p(x | z, y)         # "x": batch (B,), event (C, H, W)

Guide: a classifier q(y | x) and an encoder q(z | x, y). A missing label is ``y=None``, and one
``pyro.sample("y", ..., obs=y)`` serves labelled and unlabelled batches; the sum over the C labels
is exact, by enumeration switched on from outside (``config_enumerate`` + ``TraceEnum_ELBO``), and
vectorized: the networks broadcast over a leading label dimension.

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

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, list_checkpoints, load_latest_good, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import Dataset, Split, binarize_draw, check_images, check_labels, partial_labels
from .models import CVAE
from .nets import Classifier
from .objectives import ImportanceWeightedELBO, enum_objective, importance_log_weights
from .train import (
    History,
    ModuleSVI,
    NonFiniteLossError,
    _prepare_out,
    _rng_state,
    _set_rng_state,
    _StopFlag,
    check_data_fits_model,
    kl_weight,
    resolve_device,
    verify_resumable,
)

__all__ = [
    "M2",
    "SemiSupervisedConfig",
    "SemiSupervisedObjective",
    "fit_semisupervised",
    "label_log_weights",
    "iw_bound",
    "enumerated_elbo",
    "generative_posterior",
    "accuracy",
    "SEMI_SUPERVISED_OBJECTIVES",
    "cmd_train_semisupervised",
]

#: objectives of the semi-supervised model (names shared with :data:`pyro_cvae.OBJECTIVES`)
SEMI_SUPERVISED_OBJECTIVES = ("elbo", "iwae")


class M2(CVAE):
    """M2: p(y) p(z) p(x | z, y) with a classifier q(y | x) and an encoder q(z | x, y).

    Built from a :class:`~pyro_cvae.config.ModelConfig` with ``num_classes >= 2`` and the
    ``"normal"`` prior (z is independent of y a priori, as in [1]); the classifier is an MLP
    with the config's ``hidden_dims``. Same public methods as :class:`~pyro_cvae.CVAE`
    (``sample``, ``reconstruct``, ``encode``, ``save``; :func:`pyro_cvae.load` reads it back),
    plus :meth:`classify` and :meth:`class_probs`. Where a label is not given, methods use the
    classifier's.

    Example::

        model = M2(image_shape=(1, 8, 8), num_classes=10, latent_dim=8)
        elbo = TraceEnum_ELBO(max_plate_nesting=2)
        loss = elbo.differentiable_loss(model.model, config_enumerate(model.guide), x)  # y=None
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise ValueError("give either a ModelConfig or keyword arguments, not both")
        if config.num_classes < 2:
            raise ValueError(
                f"M2 needs class labels: num_classes must be >= 2, got {config.num_classes} "
                f"(condition_dim={config.condition_dim}); build it with num_classes=10"
            )
        if getattr(config, "latent_dims", ()):
            raise ValueError(
                f"M2 has one stochastic layer, got latent_dims={config.latent_dims}; "
                "use latent_dim and latent_dims=()"
            )
        if config.prior != "normal":
            raise ValueError(
                f"M2 uses the prior p(z) = N(0, I), got prior {config.prior!r}; use prior='normal'"
            )
        super().__init__(config)
        C = config.num_classes
        self.classifier = Classifier(config.image_shape, C, config.hidden_dims)
        self.register_buffer("y_logits", torch.zeros(C))  # uniform p(y)

    # ------------------------------------------------------------------ distributions

    def y_dist(self, batch_size: int) -> dist.TorchDistribution:
        """The label prior p(y), uniform over the C classes: batch (B,)."""
        return dist.Categorical(logits=self.y_logits.expand(batch_size, -1))

    def qy_dist(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The classifier q(y | x): batch (B,)."""
        return dist.Categorical(logits=self.classifier(x))

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """Labels of any shape (observed (B,), enumerated (C, 1, ..)) -> one-hot (..., C)."""
        return F.one_hot(y, self.config.num_classes).to(self._dtype())

    # ------------------------------------------------------------------ model and guide

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"labels must have shape ({x.shape[0]},) for {x.shape[0]} images, got "
                f"{tuple(y.shape)}; pass y=None for an unlabelled batch"
            )

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """p(y) p(z) p(x | z, y); ``y=None``: the label is latent (enumerate it in the guide)."""
        self._check_batch(x, y)
        B = x.shape[0]
        with pyro.plate("data", B):
            y = pyro.sample("y", self.y_dist(B), obs=y)  # (B,) or enumerated (C, 1, .., 1)
            with self._latent_scale():
                z = pyro.sample("z", self.z_dist(None, (B,)))  # (..., B, D)
            pyro.sample("x", self.x_dist(z, self.one_hot(y)), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """q(y | x) q(z | x, y); the classifier is used only where the label is missing."""
        self._check_batch(x, y)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample("y", self.qy_dist(x))
            with self._latent_scale():
                pyro.sample("z", self.q_dist(x, self.one_hot(y)))  # (..., B, D)

    # ------------------------------------------------------------------ public helpers

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise a clear ``ValueError`` for malformed images or labels (``y=None`` is allowed)."""
        check_images(x, self.config.image_shape, binary_range=self.likelihood.needs_unit_range)
        if y is not None:
            check_labels(y, self.config.num_classes, x.shape[0])

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x) for every image: (N, C) probabilities."""
        self.check_inputs(x)
        return torch.softmax(self.classifier(x), dim=-1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label under q(y | x): (N,) integers."""
        self.check_inputs(x)
        return self.classifier(x).argmax(-1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Mean and scale of q(z | x, y), each (N, latent_dim); y defaults to :meth:`classify`."""
        return super().encode(x, self.classify(x) if y is None else y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None, *, mean: bool = True):
        """Decode the posterior mean with the given labels (or the classifier's)."""
        y = self.classify(x) if y is None else y
        return super().reconstruct(x, y, mean=mean)

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Keep the style z of each image, change its label: (N, C, channels, H, W).

        z is the mean of q(z | x, y) with the image's own label (or the classifier's); it is
        then decoded with every label (Kingma et al. 2014, figure 1).
        """
        loc, _ = self.encode(x, y)  # (N, D)
        eye = torch.eye(self.config.num_classes, dtype=loc.dtype, device=loc.device)
        return self.decode_c(loc, eye[:, None, :]).transpose(0, 1)  # (C, N, ..) -> (N, C, ..)


# --------------------------------------------------------------------------- bounds


def _check_particles(num_particles) -> None:
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"num_particles (K) must be an integer >= 1, got {num_particles!r}")


def label_log_weights(model: M2, x: torch.Tensor, num_particles: int = 1) -> torch.Tensor:
    r"""log w_yk = log p(x, z_yk, y) - log q(z_yk | x, y) for every label y: shape (K, C, B).

    z_yk ~ q(z | x, y), K draws per label and image. The C labels are stacked into one batch of
    C * B labelled images and run through :func:`~pyro_cvae.objectives.importance_log_weights`
    (the model's own sample sites, vectorized); differentiable.
    """
    _check_particles(num_particles)
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
        _check_particles(num_particles)
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


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class SemiSupervisedConfig(TrainConfig):
    """A :class:`~pyro_cvae.config.TrainConfig` for M2, with the partial labels.

    ``objective`` is ``"elbo"`` (enumerated) or ``"iwae"``; ``particles`` is K. Which training
    labels are kept: ``num_labels`` or ``label_fraction`` (class-balanced, fixed by
    ``label_seed``; see :func:`pyro_cvae.data.partial_labels`); with neither, every image whose
    label is >= 0 is labelled (mark a missing label with -1).
    """

    batch_size: int = 100  # unlabelled images per step (Kingma et al. 2014 use 100)
    lr: float = 3e-4
    num_labels: int | None = 100
    label_fraction: float | None = None
    label_seed: int = 0
    # Kingma's alpha, the total weight of the classification loss; None: 0.1 N, N the data size
    class_weight: float | None = None
    labelled_batch_size: int = 100  # labelled images per step (cycled: there are few)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in SEMI_SUPERVISED_OBJECTIVES:
            raise ValueError(
                f"objective {self.objective!r} is not available for the semi-supervised model; "
                f"choose one of {', '.join(SEMI_SUPERVISED_OBJECTIVES)} (--objective elbo|iwae)"
            )
        if self.num_labels is not None and self.label_fraction is not None:
            raise ValueError(
                f"give num_labels ({self.num_labels}) or label_fraction "
                f"({self.label_fraction}), not both"
            )
        if self.class_weight is not None and not (
            isinstance(self.class_weight, (int, float))
            and math.isfinite(self.class_weight)
            and self.class_weight >= 0
        ):
            raise ValueError(
                f"class_weight must be a finite number >= 0, got {self.class_weight!r}; "
                "leave it unset for Kingma's 0.1 N"
            )
        if (
            isinstance(self.labelled_batch_size, bool)
            or not isinstance(self.labelled_batch_size, int)
            or self.labelled_batch_size < 1
        ):
            raise ValueError(
                f"labelled_batch_size must be a positive integer, got {self.labelled_batch_size!r}"
            )
        if self.objective == "iwae" and (self.beta != 1.0 or self.warmup_epochs):
            raise ValueError(
                "objective 'iwae' is an importance-weighted bound; beta and KL warm-up apply to "
                "the ELBO only. Use objective='elbo', or beta=1 and warmup_epochs=0"
            )


def labelled_mask(data: Dataset, config: SemiSupervisedConfig, labelled=None) -> torch.Tensor:
    """The boolean mask (N_train,) of labelled training images, checked against the labels."""
    y = data.train.y
    n = y.shape[0]
    if labelled is None:
        if config.num_labels is None and config.label_fraction is None:
            return y >= 0
        if (y < 0).any():
            raise ValueError(
                "the training labels already mark missing labels with -1; pass "
                "num_labels=None and label_fraction=None to use the labels that are there"
            )
        return partial_labels(
            data, config.num_labels, fraction=config.label_fraction, seed=config.label_seed
        )
    labelled = torch.as_tensor(labelled, device=y.device)
    if labelled.dtype != torch.bool:  # indices
        if labelled.dtype.is_floating_point or labelled.dim() != 1:
            raise ValueError(
                "labelled must be a boolean mask (N,) or a vector of integer indices, got "
                f"dtype {labelled.dtype}, shape {tuple(labelled.shape)}"
            )
        if labelled.numel() and (labelled.min() < 0 or labelled.max() >= n):
            raise ValueError(
                f"labelled indices must lie in [0, {n}), got range [{labelled.min().item()}, "
                f"{labelled.max().item()}]"
            )
        mask = torch.zeros(n, dtype=torch.bool, device=y.device)
        mask[labelled] = True
        labelled = mask
    if tuple(labelled.shape) != (n,):
        raise ValueError(
            f"the labelled mask has shape {tuple(labelled.shape)} but the training set has "
            f"{n} images; give one entry per training image"
        )
    bad = torch.nonzero(labelled & (y < 0)).flatten()
    if len(bad):
        raise ValueError(
            f"the mask marks training image {bad[0].item()} as labelled but its label is "
            f"{y[bad[0]].item()} (missing); the mask disagrees with the labels: unmark it "
            "or give its label"
        )
    if not labelled.any():
        raise ValueError("the labelled mask selects no image; label at least one per class")
    return labelled


def _check_semi_data(model: M2, data: Dataset, mask: torch.Tensor) -> None:
    cfg = model.config
    check_data_fits_model(model, data)
    model.check_inputs(data.train.x)
    check_labels(data.train.y[mask], cfg.num_classes)
    for name in ("val", "test"):
        split = getattr(data, name)
        if len(split):
            model.check_inputs(split.x, split.y)


def fit_semisupervised(
    model: M2,
    data: Dataset,
    config: SemiSupervisedConfig | None = None,
    *,
    labelled: torch.Tensor | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyro_validation: bool | None = None,
    stop_after_steps: int | None = None,
    **overrides,
) -> History:
    """Train an :class:`M2` on partially labelled ``data.train``; checkpoints and resume as
    :func:`pyro_cvae.fit`.

    An epoch is one pass over the unlabelled images (``batch_size`` per step); every step also
    takes ``labelled_batch_size`` labelled images, cycling through them in a seeded order. The
    labels of unlabelled images are never read.

    Args:
        model: an :class:`M2`.
        data: a :class:`~pyro_cvae.data.Dataset`; validation and test sets fully labelled.
        config: a :class:`SemiSupervisedConfig`; keyword ``overrides`` replace fields.
        labelled: a boolean mask (N_train,) or indices of the labelled training images; default
            from ``config`` (see :class:`SemiSupervisedConfig`).
        out, resume, overwrite, progress, pyro_validation, stop_after_steps: as for ``fit``.

    Returns:
        the :class:`~pyro_cvae.train.History`: per epoch ``train_loss`` (the objective per image,
        nats), ``val_accuracy`` and ``test_accuracy`` of q(y | x), ``seconds``.
    """
    config = config or SemiSupervisedConfig()
    if overrides:
        config = config.replace(**overrides)
    if not isinstance(config, SemiSupervisedConfig):
        raise ValueError(
            f"fit_semisupervised needs a SemiSupervisedConfig, got {type(config).__name__}"
        )
    if not isinstance(model, M2):
        raise ValueError(
            f"fit_semisupervised trains the M2 model, got {type(model).__name__}; a fully "
            "supervised CVAE cannot use unlabelled images: build pyro_cvae.semisupervised.M2"
        )
    mask = labelled_mask(data, config, labelled)
    _check_semi_data(model, data, mask)
    device = resolve_device(config.device)
    out = Path(out) if out is not None else None
    if out is not None:
        _prepare_out(out, resume, overwrite)

    model.to(device)
    data = data.to(device)
    mask = mask.to(device)
    x_l, y_l = data.train.x[mask], data.train.y[mask]
    x_u = data.train.x[~mask]
    n_l, n_u = x_l.shape[0], x_u.shape[0]
    n = n_l + n_u
    class_weight = 0.1 * n if config.class_weight is None else config.class_weight
    B_l = min(config.labelled_batch_size, n_l)

    objective = SemiSupervisedObjective(config.objective, config.particles)
    optimizer = _adam(model.parameters(), config.lr)
    svi = ModuleSVI(model, None, optimizer, objective, model.parameters())

    history = History()
    start_epoch, start_step, run_state = 0, 0, {"loss_sum": 0.0, "steps": 0}
    loaded = load_latest_good(out, map_location=device) if (resume and out is not None) else None
    if loaded is not None:
        path, ckpt = loaded
        verify_resumable(path, ckpt, model, config)
        if not torch.equal(ckpt["labelled"].to(device), torch.nonzero(mask).flatten()):
            raise CheckpointError(
                f"{path} was trained with another labelled subset; resume with the same labels"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"], device)
        start_epoch, start_step = ckpt["epoch"], ckpt["step"]
        run_state = dict(ckpt["run_state"])
        history.rows = [dict(r) for r in ckpt["history"]]
        history.skipped_batches = ckpt.get("skipped_batches", 0)
    else:
        pyro.set_rng_seed(config.seed)
    data_spec = {"name": data.name, "binarize": data.binarize, **data.meta}
    if out is not None:
        (out / "config.json").write_text(
            json.dumps(
                {
                    "model": model.config.to_dict(),
                    "train": config.to_dict(),
                    "data": data_spec,
                    "num_labelled": n_l,
                },
                indent=2,
            )
        )

    B_u = config.batch_size
    steps_per_epoch = math.ceil(n_u / B_u) if n_u else math.ceil(n_l / B_l)
    dynamic = data.binarize == "dynamic"
    val, test = data.eval_split("val"), data.eval_split("test")
    total_steps = 0

    def checkpoint(epoch: int, step: int) -> None:
        if out is None:
            return
        payload = {
            "format": "pyro_cvae.train",
            "model_class": type(model).__name__,
            "model_config": model.config.to_dict(),
            "train_config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(device),
            "epoch": epoch,
            "step": step,
            "run_state": dict(run_state),
            "history": history.rows,
            "skipped_batches": history.skipped_batches,
            "data": data_spec,
            "labelled": torch.nonzero(mask).flatten().cpu(),
        }
        save_checkpoint(out / f"checkpoint_{epoch * steps_per_epoch + step:06d}.pt", payload)
        for old in list_checkpoints(out)[: -config.keep_checkpoints]:
            old.unlink(missing_ok=True)

    model.train()
    if pyro_validation is None:  # as in fit(): on in the tests, off by default
        pyro_validation = os.environ.get("PYRO_CVAE_VALIDATE", "0") == "1"
    with pyro.validation_enabled(pyro_validation), _StopFlag() as stop:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order_u = torch.randperm(n_u, generator=g).to(device)
            reps = math.ceil(steps_per_epoch * B_l / n_l)
            order_l = torch.cat([torch.randperm(n_l, generator=g) for _ in range(reps)]).to(device)
            bar = tqdm(
                range(start_step, steps_per_epoch),
                total=steps_per_epoch,
                initial=start_step,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            )
            step = start_step
            for step in bar:
                iu = order_u[step * B_u : (step + 1) * B_u]
                il = order_l[step * B_l : (step + 1) * B_l]
                xu, xl, yl = x_u[iu], x_l[il], y_l[il]
                if dynamic:
                    xu, xl = binarize_draw(xu), binarize_draw(xl)
                weights = (
                    n_u / (n * max(xu.shape[0], 1)),
                    n_l / (n * xl.shape[0]),
                    class_weight / (n * xl.shape[0]),
                )
                model.kl_scale = kl_weight(config, epoch + (step + 1) / steps_per_epoch)
                try:
                    loss = svi.step(xl, yl, xu, weights)
                except NonFiniteLossError as e:
                    if config.skip_nonfinite:
                        history.skipped_batches += 1
                        continue
                    raise NonFiniteLossError(
                        f"training stopped at epoch {epoch + 1}, step {step + 1}: {e}. Try a "
                        f"tenth of the learning rate (lr={config.lr}); the last good checkpoint "
                        "is kept; skip_nonfinite=True skips such batches."
                    ) from None
                finally:
                    model.kl_scale = 1.0
                run_state["loss_sum"] += loss
                run_state["steps"] += 1
                total_steps += 1
                if progress and (step + 1) % 10 == 0:
                    bar.set_postfix(loss=f"{run_state['loss_sum'] / run_state['steps']:.2f}")
                if stop.requested or (
                    stop_after_steps is not None and total_steps >= stop_after_steps
                ):
                    bar.close()
                    checkpoint(epoch, step + 1)
                    history.interrupted = True
                    if stop.requested:
                        raise KeyboardInterrupt(
                            f"interrupted at epoch {epoch + 1}, step {step + 1}; checkpoint "
                            "saved, continue with --resume"
                        )
                    return history
            bar.close()
            model.eval()
            row = {
                "epoch": epoch + 1,
                "train_loss": run_state["loss_sum"] / max(run_state["steps"], 1),
                "seconds": time.perf_counter() - t0,
                "val_accuracy": accuracy(model, val) if len(val) else float("nan"),
                "test_accuracy": accuracy(model, test) if len(test) else float("nan"),
            }
            model.train()
            history.rows.append(row)
            run_state = {"loss_sum": 0.0, "steps": 0}
            start_step = 0
            checkpoint(epoch + 1, 0)
            if out is not None:
                history.to_csv(out / "metrics.csv")
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1}: loss {row['train_loss']:.3f}, q(y|x) test accuracy "
                    f"{row['test_accuracy']:.4f} ({row['seconds']:.1f}s)"
                )
    model.eval()
    return history


def _adam(params, lr: float) -> torch.optim.Optimizer:
    try:  # the core's fused Adam when the trainer provides it
        from .train import make_adam
    except ImportError:
        return torch.optim.Adam(params, lr=lr)
    return make_adam(params, lr)


def cmd_train_semisupervised(args, data: Dataset, model_cfg: ModelConfig) -> int:
    """``pyro-cvae train --semi-supervised``: train an M2, save it, write figures and metrics."""
    if not args.semi_supervised:
        raise ValueError(
            "--labels, --label-fraction and --class-weight describe semi-supervised training; "
            "add --semi-supervised (or drop them to train a fully supervised CVAE)"
        )
    if args.unconditional or not model_cfg.num_classes:
        raise ValueError("--semi-supervised needs the class labels; drop --unconditional")
    num_labels = args.labels
    if num_labels is None and args.label_fraction is None:
        num_labels = 100
    config = SemiSupervisedConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, objective=args.objective,
        particles=args.particles, beta=args.beta, warmup_epochs=args.warmup_epochs,
        seed=args.seed, device=args.device, keep_checkpoints=args.keep_checkpoints,
        skip_nonfinite=args.skip_nonfinite, num_labels=num_labels,
        label_fraction=args.label_fraction, label_seed=args.seed, class_weight=args.class_weight,
    )  # fmt: skip
    out = Path(args.out)
    if args.resume and load_latest_good(out) is None:
        raise CheckpointError(f"--resume given but {out} holds no checkpoint; drop --resume")
    pyro.set_rng_seed(args.seed)
    model = M2(model_cfg)
    history = fit_semisupervised(model, data, config, out=out, resume=args.resume,
                                 overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    model.save(out / "model.pt", data={"name": data.name, "binarize": data.binarize})
    from . import plots
    from .cli import write_figures

    figures = write_figures(model, data, out, history.rows)
    test = data.eval_split("test").to(model.device)
    n = min(10, len(test))
    x = test.x[:n]
    plots.image_grid(torch.cat([x[:, None], model.analogies(x)], 1).flatten(0, 1),
                     nrow=model.config.num_classes + 1, path=out / "analogies.png",
                     title="test image | re-generated with every label")  # fmt: skip
    figures.append(out / "analogies.png")
    print(f"trained {len(history)} epochs; run folder {out}")
    if args.eval_samples > 0:
        n_gen = min(len(test), 2000)
        gen = Split(test.x[:n_gen], test.y[:n_gen])
        metrics = {
            "test_accuracy": accuracy(model, test),
            "generative_accuracy": accuracy(model, gen, generative=5),
            "generative_particles": 5,
            "generative_images": n_gen,
            "objective": config.objective,
            "particles": config.particles,
            "train_seconds": sum(r["seconds"] for r in history.rows),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("test metrics:")
        for k, v in metrics.items():
            print(f"  {k:>22}: {v:.4f}" if isinstance(v, float) else f"  {k:>22}: {v}")
    print("figures: " + ", ".join(str(p) for p in figures))
    return 0
