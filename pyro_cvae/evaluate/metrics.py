"""All test metrics of a model in one call: :func:`evaluate`."""

from __future__ import annotations

import math

import torch

from ..data import Dataset, Split
from ..infer.bounds import condition_of, elbo_per_image
from ..infer.semisupervised import accuracy
from .control import control_score
from .likelihood import (
    DEFAULT_MAX_FLOATS,
    active_units,
    bits_per_dim,
    generative_classify,
    log_likelihood,
)

__all__ = ["evaluate", "semisupervised_metrics"]


@torch.no_grad()
def evaluate(
    model,
    data: Dataset,
    *,
    num_samples: int = 1000,
    split: str = "test",
    control: bool = True,
    classify_samples: int = 0,
    progress: bool = False,
    num_images: int | None = None,
    max_floats: int = DEFAULT_MAX_FLOATS,
) -> dict:
    """All test metrics of a model as a dict (nats per image, or per table row, unless stated).

    Keys: ``elbo``, ``nll`` (importance-sampled, K = ``num_samples``), ``bits_per_dim`` (not
    for tables, whose rows mix densities and probabilities),
    ``kl``, ``active_units``, and for labelled models ``control_score``; with
    ``classify_samples > 0`` also the generative classifier's accuracy.

    ``num_images`` evaluates the first N images of the split only (all when ``None``);
    ``max_floats`` bounds the memory of the log-likelihood (see :func:`log_likelihood`).
    """
    model.eval()
    device = model.device
    s = data.eval_split(split).to(device)
    if num_images is not None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(
                f"num_images must be a positive integer (first N images of the {split} split), "
                f"got {num_images!r}; pass None to evaluate all {len(s)}"
            )
        s = s.subset(num_images)
    y = condition_of(model, s.y)
    elbo = elbo_per_image(model, s)
    # eval_split made the one binarisation to score (or kept grey levels the model trained on)
    ll = log_likelihood(model, s.x, y, num_samples, progress=progress, max_floats=max_floats,
                        binarize=False)  # fmt: skip
    kl = _kl_per_image(model, s)
    n_active, _ = active_units(model, s.x, y)
    dims = math.prod(data.image_shape)
    out = {
        "split": split,
        "num_images": len(s),
        "num_samples": num_samples,
        "elbo": elbo.mean().item(),
        "nll": -ll.mean().item(),
        "kl": kl,
        "active_units": n_active,
        "latent_dim": model.config.latent_dim,
    }
    if data.table is None:  # a table row mixes densities and probabilities: no bit rate
        out = {**{k: out[k] for k in ("split", "num_images", "num_samples", "elbo", "nll")},
               "bits_per_dim": bits_per_dim(-ll.mean().item(), dims),
               **{k: v for k, v in out.items() if k not in ("split", "num_images", "num_samples",
                                                          "elbo", "nll")}}  # fmt: skip
    if control and model.config.num_classes:
        out.update(control_score(model, data))
    if classify_samples and model.config.num_classes:
        probs = generative_classify(model, s.x, classify_samples, binarize=False)
        out["generative_accuracy"] = (probs.argmax(-1) == s.y).float().mean().item()
    return out


@torch.no_grad()
def _kl_per_image(model, split: Split, num_samples: int = 10) -> float:
    """Monte Carlo KL(q(z|x,y) || p(z|y)) averaged over images (single-latent models)."""
    y = condition_of(model, split.y)
    total = 0.0
    for i in range(0, len(split), 1000):
        s = slice(i, min(i + 1000, len(split)))
        yb = None if y is None else y[s]
        c = model.condition(yb, s.stop - s.start)
        q = model.q_dist(split.x[s], c)
        z = q.sample((num_samples,))  # (S, B, D)
        p = model.z_dist(c, z.shape[:-1])
        total += (q.log_prob(z) - p.log_prob(z)).mean(0).sum().item()
    return total / max(1, len(split))


@torch.no_grad()
def semisupervised_metrics(
    model, data: Dataset, *, generative_particles: int = 5, max_images: int = 2000
) -> dict:
    """Test accuracy of an M2's classifier q(y | x), and of its generative classifier p(y | x)
    (K = ``generative_particles`` per label, on the first ``max_images`` test images)."""
    test = data.eval_split("test").to(model.device)
    n_gen = min(len(test), max_images)
    gen = Split(test.x[:n_gen], test.y[:n_gen])
    return {
        "test_accuracy": accuracy(model, test),
        "generative_accuracy": accuracy(model, gen, generative=generative_particles),
        "generative_particles": generative_particles,
        "generative_images": n_gen,
    }
