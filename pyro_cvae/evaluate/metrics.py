"""All test metrics of a model in one call: :func:`evaluate`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data import Dataset, Split
from ..infer.objectives import ImportanceWeightedELBO
from ..models.contract import (
    MissingCapabilityError,
    check_model,
    condition_of,
    device_of,
    num_classes_of,
)
from .bounds import elbo_per_image
from .control import control_score, require_judge, scores_control
from .likelihood import (
    DEFAULT_MAX_FLOATS,
    active_units,
    bits_per_dim,
    generative_classify,
    log_likelihood,
)
from .semisupervised import accuracy

__all__ = ["evaluate", "semisupervised_metrics"]


@torch.no_grad()
def evaluate(
    model,
    data: Dataset,
    *,
    num_samples: int = 1000,
    split: str = "test",
    control: bool | None = None,
    classify_samples: int = 0,
    progress: bool = False,
    num_images: int | None = None,
    max_floats: int = DEFAULT_MAX_FLOATS,
    classifier: nn.Module | None = None,
) -> dict:
    """All test metrics of a model as a dict (nats per image, or per table row, unless stated).

    Keys: ``elbo``, ``nll`` (importance-sampled, K = ``num_samples``), ``bits_per_dim`` (not
    for tables, whose rows mix densities and probabilities), ``kl``, ``active_units`` (of the
    guide's first latent site, ``latent_dim`` its width), and for label-conditioned models
    ``control_score``; with ``classify_samples > 0`` also the generative classifier's accuracy.

    ``model`` is any model of the contract :class:`~pyro_cvae.models.contract.PyroModel`: the
    library's own, or a researcher's ``PyroModule`` with ``model(x, y)`` and ``guide(x, y)``.
    ``control``: ``None`` (default) scores control where the model is label-conditioned and can
    ``sample``; ``True`` requires it; ``False`` skips it.

    ``num_images`` evaluates the first N images of the split only (all when ``None``);
    ``max_floats`` bounds the memory of the log-likelihood (see :func:`log_likelihood`).

    ``classifier`` is the judge of the control score (:func:`control_score`), e.g.
    :func:`pyro_cvae.train.train_classifier` of ``data``. ``None``: the package-level
    :func:`pyro_cvae.evaluate` builds it so (cached) when control is scored; in
    :mod:`pyro_cvae.evaluate`, which trains nothing, scoring control without one is an error.
    """
    check_model(model, "evaluate it")
    if scores_control(model, data, control):  # before the costly metrics, not after them
        require_judge(classifier, "evaluate's control score (control=False skips it)")
    model.eval()
    device = device_of(model)
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
    n_active, variances = active_units(model, s.x, y)
    dims = math.prod(data.image_shape)
    out = {
        "split": split,
        "num_images": len(s),
        "num_samples": num_samples,
        "elbo": elbo.mean().item(),
        "nll": -ll.mean().item(),
        "kl": kl,
        "active_units": n_active,
        "latent_dim": variances.numel(),
    }
    if data.table is None:  # a table row mixes densities and probabilities: no bit rate
        out = {**{k: out[k] for k in ("split", "num_images", "num_samples", "elbo", "nll")},
               "bits_per_dim": bits_per_dim(-ll.mean().item(), dims),
               **{k: v for k, v in out.items() if k not in ("split", "num_images", "num_samples",
                                                          "elbo", "nll")}}  # fmt: skip
    C = num_classes_of(model, data)
    if control and not scores_control(model, data):
        raise MissingCapabilityError(
            "control=True scores images generated for each label: it needs a label-conditioned "
            f"model with a sample(y, num_samples) method; {type(model).__name__} "
            + ("has no sample method" if C else "is not conditioned on labels")
            + " (pass control=None or False to skip the control score)"
        )
    if scores_control(model, data, control):
        out.update(control_score(model, data, classifier=classifier))
    if classify_samples and C:
        probs = generative_classify(model, s.x, classify_samples, binarize=False)
        out["generative_accuracy"] = (probs.argmax(-1) == s.y).float().mean().item()
    return out


@torch.no_grad()
def _kl_per_image(model, split: Split, num_samples: int = 10) -> float:
    """Monte Carlo KL(q(z|x,y) || p(z|y)) over every latent site, averaged over images: the mean
    of log q(z | x, y) - log p(z | y) at ``num_samples`` vectorized draws from the guide."""
    y = condition_of(model, split.y)
    elbo = ImportanceWeightedELBO(num_particles=num_samples)
    total = 0.0
    for i in range(0, len(split), 1000):
        s = slice(i, min(i + 1000, len(split)))
        yb = None if y is None else y[s]
        model_trace, guide_trace = next(iter(elbo._get_traces(model.model, model.guide,
                                                              (split.x[s], yb), {})))  # fmt: skip
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                # (K, B) log-densities summed over everything but particles: their mean / K
                total += (site["log_prob"].sum() - model_trace.nodes[name]["log_prob"].sum()).item()
    return total / (num_samples * max(1, len(split)))


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
