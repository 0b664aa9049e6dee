r"""What people do with a trained CVAE: interpolation, style transfer, anomaly scores.

* **Interpolation between two images**: encode both with q(z | x, y), move along the path
  between the posterior means (a straight line, or a great circle, which keeps a Gaussian latent
  at a typical norm [2]) and decode every point with one fixed label.
* **Interpolation between two labels**: keep z fixed and move the condition vector c from one
  label (or attribute vector) to the other.
* **Style transfer / analogies**: encode an image with its own label, decode the same latent with
  every other label; the latent carries the style, the label the class [1].
* **Anomaly scores**: :math:`-\log p(x)`, importance-sampled, with the labels marginalised for a
  CVAE, :math:`p(x) = \sum_y p(y)\, p(x | y)`, so no label is needed at test time.
* **Attribute models**: :func:`train_attribute_model` trains a CVAE on the coloured digits into a
  run folder that stores its attribute schema, ready for ``pyro-cvae sample --condition``.

References:
    [1] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014 (analogies, figure 1).
    [2] White, Sampling Generative Networks, arXiv:1609.04468, 2016 (spherical interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from .data import SCHEMAS, AttributeSchema, TableSchema, load_dataset
from .evaluate import log_likelihood, log_marginal
from .models import CVAE, ModelConfig
from .runs import finish_run
from .train import TrainConfig, fit

__all__ = [
    "sample_rows",
    "lerp",
    "slerp",
    "INTERPOLATIONS",
    "interpolate_images",
    "interpolate_labels",
    "Transfer",
    "transfer",
    "anomaly_scores",
    "auroc",
    "train_attribute_model",
]


def _weights(steps: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2 (the two end points), got {steps!r}")
    return torch.linspace(0.0, 1.0, steps, dtype=like.dtype, device=like.device)


def lerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Points on the straight line from ``z0`` to ``z1``: (D,), (D,) -> (steps, D)."""
    t = _weights(steps, z0)[:, None]  # (steps, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    r"""Spherical interpolation [2]: :math:`\frac{\sin((1-t)\omega)}{\sin\omega} z_0 +
    \frac{\sin(t\omega)}{\sin\omega} z_1` with :math:`\omega` the angle between the vectors.

    Falls back to :func:`lerp` when the vectors are (nearly) parallel. (D,), (D,) -> (steps, D).
    """
    t = _weights(steps, z0)[:, None]
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4 or (math.pi - omega).abs() < 1e-4:
        return lerp(z0, z1, steps)
    s = torch.sin(omega)
    return torch.sin((1 - t) * omega) / s * z0 + torch.sin(t * omega) / s * z1


#: interpolation name -> function (z0, z1, steps) -> (steps, D)
INTERPOLATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "linear": lerp,
    "spherical": slerp,
}


def _path(method: str) -> Callable:
    if method not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {method!r}; choose one of {', '.join(INTERPOLATIONS)}"
        )
    return INTERPOLATIONS[method]


def _one(model, y) -> torch.Tensor | None:
    """A single label or condition as a batch of one (None stays None)."""
    return None if y is None else model._as_condition(y)[:1]


@torch.no_grad()
def interpolate_images(
    model,
    x0: torch.Tensor,
    x1: torch.Tensor,
    y0=None,
    y1=None,
    *,
    label=None,
    steps: int = 10,
    method: str = "linear",
) -> torch.Tensor:
    """Decode the path between the posterior means of two images with one fixed label.

    Args:
        model: a trained :class:`~pyro_cvae.CVAE`.
        x0, x1: two images of shape (C, H, W).
        y0, y1: their labels (or condition vectors), used to encode them; ``None`` for a VAE.
            ``y1`` defaults to ``y0``.
        label: the label every point is decoded with (default ``y0``).
        steps: points on the path, end points included.
        method: ``"linear"`` or ``"spherical"`` (see :data:`INTERPOLATIONS`).

    Returns:
        images of shape (steps, C, H, W); with ``y0 == y1 == label`` the first and last are the
        reconstructions of ``x0`` and ``x1``.
    """
    path = _path(method)
    y1 = y0 if y1 is None else y1
    label = y0 if label is None else label
    z0, _ = model.encode(x0[None], _one(model, y0))  # (1, D)
    z1, _ = model.encode(x1[None], _one(model, y1))
    z = path(z0[0], z1[0], steps)  # (steps, D)
    c = model.condition(_one(model, label), 1)  # (1, c) or None
    return model.decode_c(z, c)


@torch.no_grad()
def interpolate_labels(model, z: torch.Tensor, y0, y1, *, steps: int = 10) -> torch.Tensor:
    """Decode one latent ``z`` (D,) while the condition moves linearly from ``y0`` to ``y1``.

    For a label model the path runs between the one-hot vectors (its end points are the two
    labels, the middle a mixture the network never saw); for an attribute model between the
    two condition vectors.

    Returns:
        images of shape (steps, C, H, W).
    """
    if not model.config.cond_width:
        raise ValueError(
            "interpolate_labels needs a conditional model (num_classes or condition_dim)"
        )
    if z.shape != (model.config.latent_dim,):
        raise ValueError(
            f"z must have shape ({model.config.latent_dim},), got {tuple(z.shape)}; "
            "pass one latent vector"
        )
    c0 = model.condition(_one(model, y0), 1)[0]
    c1 = model.condition(_one(model, y1), 1)[0]
    c = lerp(c0, c1, steps)  # (steps, c)
    return model.decode_c(z.expand(steps, -1).to(c.dtype), c)


@dataclass
class Transfer:
    """The result of :func:`transfer`.

    Attributes:
        z: the posterior means that were decoded, (N, D).
        labels: the labels (or conditions) each latent was decoded with, (L,) or (L, c).
        images: the decoded images, (N, L, C, H, W).
    """

    z: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor


@torch.no_grad()
def transfer(model, x: torch.Tensor, y, labels=None) -> Transfer:
    """Style transfer: encode each image with its own label, decode its latent with others.

    Args:
        model: a conditional model.
        x: images (N, C, H, W).
        y: their labels (N,) or condition vectors (N, c).
        labels: the labels (L,) or conditions (L, c) to decode with (default: every class of a
            label model).

    Returns:
        a :class:`Transfer`; ``images[i, j]`` is image i drawn as ``labels[j]``.
    """
    cfg = model.config
    if not cfg.cond_width:
        raise ValueError("style transfer needs a conditional model; this one has no condition")
    if labels is None:
        if not cfg.num_classes:
            raise ValueError(
                "an attribute model has no list of classes: pass labels, the (L, "
                f"{cfg.condition_dim}) condition vectors to decode with"
            )
        labels = torch.arange(cfg.num_classes, device=model.device)
    labels = model._as_condition(labels)
    z, _ = model.encode(x, y)  # (N, D)
    c = model.condition(labels, labels.shape[0])  # (L, c)
    images = model.decode_c(z[:, None, :], c)  # (N, L, C, H, W)
    return Transfer(z=z, labels=labels, images=images)


@torch.no_grad()
def anomaly_scores(model, x: torch.Tensor, y=None, num_samples: int = 100, **kw) -> torch.Tensor:
    r"""Anomaly score :math:`-\log p(x)` of each image (nats; larger is more anomalous).

    A label model scores the marginal :math:`-\log \sum_y p(y) p(x | y)` (uniform p(y), each
    term importance-sampled with K = ``num_samples``) unless labels ``y`` are given, in which
    case :math:`-\log p(x | y)`. A plain VAE scores :math:`-\log p(x)`; an attribute model
    needs its condition vectors ``y``. Keyword arguments go to :func:`pyro_cvae.log_likelihood`;
    grey-level images under a Bernoulli likelihood need its ``binarize`` (True or False).

    Returns:
        a tensor of shape (N,).
    """
    cfg = model.config
    if cfg.num_classes and y is None:
        _, marginal = log_marginal(model, x, num_samples, **kw)
        return -marginal
    if cfg.condition_dim and y is None:
        raise ValueError(
            "an attribute model cannot marginalise a continuous condition: pass the condition "
            f"vectors y of shape ({x.shape[0]}, {cfg.condition_dim})"
        )
    return -log_likelihood(model, x, y, num_samples, **kw)


def auroc(normal_scores, anomalous_scores) -> float:
    """Area under the ROC curve for telling anomalies (positives) from normal data.

    A higher score must mean "more anomalous"; 1.0 separates perfectly, 0.5 is chance, ties
    count one half. Computed by :func:`sklearn.metrics.roc_auc_score`.
    """
    normal = torch.as_tensor(normal_scores, dtype=torch.float64).reshape(-1)
    anomalous = torch.as_tensor(anomalous_scores, dtype=torch.float64).reshape(-1)
    if normal.numel() == 0 or anomalous.numel() == 0:
        raise ValueError(
            f"auroc needs scores of both groups, got {normal.numel()} normal and "
            f"{anomalous.numel()} anomalous"
        )
    scores = torch.cat([normal, anomalous])
    if not torch.isfinite(scores).all():
        raise ValueError("anomaly scores contain NaN or Inf; check the model and num_samples")
    truth = torch.cat([torch.zeros(normal.numel()), torch.ones(anomalous.numel())])
    return float(roc_auc_score(truth.numpy(), scores.numpy()))


def train_attribute_model(
    out: str | Path,
    dataset: str = "colored-digits",
    *,
    epochs: int = 100,
    latent_dim: int = 8,
    hidden_dims: tuple[int, ...] = (256, 256),
    batch_size: int = 64,
    seed: int = 0,
    train_size: int | None = None,
    overwrite: bool = True,
    progress: bool = False,
):
    """Train an attribute-conditioned CVAE into a run folder that stores its schema.

    The folder then works with ``pyro-cvae sample --run OUT --condition digit=5,color=red``:
    :func:`pyro_cvae.finish_run` writes its ``attributes.json``, ``model.pt`` and
    ``model.safetensors`` (no figures or test metrics).

    Returns:
        ``(model, data, history)``.
    """
    if dataset not in SCHEMAS:
        raise ValueError(
            f"unknown attribute data set {dataset!r}; choose one of {', '.join(SCHEMAS)}"
        )
    data = load_dataset(dataset, binarize="none")  # its schema: SCHEMAS[dataset]
    if train_size:
        data = data.subset(train_size)
        data.meta["train_size"] = train_size
    torch.manual_seed(seed)
    model = CVAE(ModelConfig.for_data(data, latent_dim=latent_dim, hidden_dims=tuple(hidden_dims)))
    out = Path(out)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    history = fit(model, data, config, out=out, overwrite=overwrite, progress=progress)
    # attributes.json, model.pt and model.safetensors with the schema; no figures or test
    # metrics (the experiments that call this evaluate the model themselves)
    finish_run(out, model, data, history, config=config, eval_samples=0, figures=False)
    return model, data, history


@torch.no_grad()
def sample_rows(
    model,
    num_samples: int,
    *,
    table: TableSchema | None = None,
    conditions: list[dict] | None = None,
    schema: AttributeSchema | None = None,
    labels: list[int] | None = None,
    temperature: float = 1.0,
    extrapolate: bool = False,
) -> pd.DataFrame:
    """Generate rows of a table (or vectors) with the table's own columns and types.

    Draws ``num_samples`` rows from p(x | z, y) per condition: one per dict of ``conditions``
    (attribute values, encoded by ``schema``; continuous values outside the trained range only
    with ``extrapolate``), per label of ``labels``, or unconditionally.
    The condition columns are filled in with the requested values; with ``table`` the columns
    come back in the table's order and types, without it (plain vectors) as ``x0, x1, ...``.
    """
    if conditions is not None:
        if schema is None:
            raise ValueError(
                "conditions given as attribute values need the schema that encodes them"
            )
        y, given = schema.encode(conditions, extrapolate=extrapolate).to(model.device), conditions
    elif labels is not None:
        y, given = torch.as_tensor(labels, device=model.device), [{"label": v} for v in labels]
    else:
        y, given = None, [{}]
    x = model.sample(y, num_samples, mean=False, temperature=temperature)
    x = x.reshape(len(given) * num_samples, -1)  # (M n, width)
    if table is not None:
        rows = table.decode(x)
    else:
        rows = pd.DataFrame(x.cpu().numpy(), columns=[f"x{i}" for i in range(x.shape[-1])])
    for name in reversed(list(given[0])):
        rows.insert(0, name, [g[name] for g in given for _ in range(num_samples)])
    if table is not None:  # the table's order and the condition columns' own types
        for name in given[0]:
            if name in table.condition_types:
                rows[name] = [table.typed(name, v) for v in rows[name]]
        extra = [c for c in rows.columns if c not in table.order]  # "label" of a label model
        rows = rows[extra + [c for c in table.order if c in rows.columns]]
    return rows
