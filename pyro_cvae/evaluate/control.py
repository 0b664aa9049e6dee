"""Control: do images generated for a condition show it? Judged by classifiers of real images.

:func:`control_score` asks a classifier of the real training images, the judge, to label images
generated for each class; :func:`attribute_control` does the same for the coloured digits' digit,
colour and brightness. The judge is an argument: evaluation trains nothing. The caller builds
it, e.g. with :func:`pyro_cvae.train.train_classifier` (once per data set, cached), as the
package-level :func:`pyro_cvae.control_score` and :func:`pyro_cvae.evaluate` do when given none.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import COLORED_DIGITS_SCHEMA, DIGIT_NAMES, PALETTE, Dataset, Split, dominant_color
from ..data.colored import BRIGHTNESS
from ..models.contract import device_of, num_classes_of, require

__all__ = [
    "IGNORED_CONTROL_FACTOR", "IGNORED_KL", "JUDGE_KEY", "attribute_control",
    "classifier_accuracy", "condition_ignored", "control_score", "intensity_digits",
    "judge_accuracy", "require_judge", "scores_control",
]  # fmt: skip

#: key of the judge classifier's own accuracy on real test images in a metrics dict; results
#: written before it was renamed hold it under ``"classifier_test_accuracy"``
JUDGE_KEY = "judge_test_accuracy"
_OLD_JUDGE_KEY = "classifier_test_accuracy"

#: a control score at or below this many times chance (1/C) says samples ignore the label
IGNORED_CONTROL_FACTOR = 1.5
#: a KL(q(z|x) || p(z)) per image below this (nats) says the latent carries nothing
IGNORED_KL = 0.1


def require_judge(classifier: nn.Module | None, what: str, builds: str = "train_classifier(data)"):
    """``classifier``, or the error that ``what`` needs a judge classifier and how to get one.

    ``builds`` is the call of :mod:`pyro_cvae.train` that builds the judge this function needs.
    """
    if classifier is None:
        raise ValueError(
            f"{what} reads generated images with a judge classifier of real images, and none was "
            f"given: pass classifier=...; pyro_cvae.train.{builds} builds one (trained once per "
            "data set, cached). pyro_cvae.evaluate(model, data), pyro_cvae.control_score(model, "
            "data) and the functions of pyro_cvae.judge build it when given none"
        )
    return classifier


def scores_control(model, data: Dataset, control: bool | None = None) -> bool:
    """Whether :func:`~pyro_cvae.evaluate.metrics.evaluate` scores control, so needs a judge: a
    label-conditioned model with a ``sample`` method, unless ``control=False``."""
    can_sample = callable(getattr(model, "sample", None))
    return control is not False and bool(num_classes_of(model, data)) and can_sample


@torch.no_grad()
def classifier_accuracy(clf: nn.Module, split: Split) -> float:
    """Accuracy of ``clf`` on a split, computed on the classifier's device."""
    device = next(clf.parameters()).device
    return (clf(split.x.to(device)).argmax(-1) == split.y.to(device)).float().mean().item()


@torch.no_grad()
def control_score(
    model, data: Dataset, num_per_class: int = 100, classifier: nn.Module | None = None
) -> dict:
    """Fraction of images generated for each label that a classifier of real images labels so.

    The judge is a classifier of real images; its own accuracy on the real test images
    (``"judge_test_accuracy"``) is the ceiling a perfect generator would reach, not a property of
    the model: the same number for every model of one data set.

    Args:
        model: a label-conditioned model with ``sample(labels, num_samples)``.
        data: its data set (the judge's accuracy is measured on ``data.test``).
        num_per_class: images generated per label.
        classifier: the judge, e.g. :func:`pyro_cvae.train.train_classifier` of ``data``
            (moved to the model's device in a copy if it sits elsewhere). ``None``: the
            package-level :func:`pyro_cvae.control_score` builds it so (cached); in
            :mod:`pyro_cvae.evaluate`, which trains nothing, it is an error.

    Returns:
        ``{"control_score": overall, "per_class": [..], "judge_test_accuracy": acc}``.
    """
    C = num_classes_of(model, data)
    if not C:
        raise ValueError("the control score needs a label-conditioned model (num_classes > 0)")
    require(model, "sample", "the control score",
            "it draws sample(labels, num_samples) -> (C, n, *image_shape) images per label")  # fmt: skip
    clf = require_judge(classifier, "the control score")
    device = device_of(model)
    if next(clf.parameters()).device != device:  # judge on the model's device; cache untouched
        clf = copy.deepcopy(clf).to(device)
    labels = torch.arange(C, device=device)
    images = model.sample(labels, num_per_class)  # (C, n, ...)
    pred = clf(images.flatten(0, 1)).argmax(-1).reshape(len(labels), num_per_class)
    per_class = (pred == labels[:, None]).float().mean(1)
    return {
        "control_score": per_class.mean().item(),
        "per_class": per_class.tolist(),
        JUDGE_KEY: classifier_accuracy(clf, data.test),
    }


def judge_accuracy(metrics: dict) -> float | None:
    """The judge classifier's accuracy on real test images from a metrics dict (also one written
    before the key was renamed from ``"classifier_test_accuracy"``), or ``None``."""
    return metrics.get(JUDGE_KEY, metrics.get(_OLD_JUDGE_KEY))


def condition_ignored(metrics: dict, num_classes: int = 0) -> str | None:
    r"""Why a trained model looks as if it ignores its condition (or its latent), or ``None``.

    A label model whose control score is at most :data:`IGNORED_CONTROL_FACTOR` / C draws
    images that a judge of real images cannot tell apart by the label asked for: every row of
    samples is the same average image (short runs on small data sets end there). Without a
    control score (plain VAEs, attribute conditions), a KL per image below :data:`IGNORED_KL`
    nats says the posterior has collapsed onto the prior: the latent carries nothing. The usual
    cure for both is longer training or a KL warm-up.

    Args:
        metrics: a dict from :func:`evaluate` (``control_score`` and/or ``kl``).
        num_classes: C, the number of labels (0 for other models).

    Returns:
        a one-line diagnosis without the fix (the caller names the fix in its own terms).
    """
    score = metrics.get("control_score")
    if num_classes and score is not None:
        limit = IGNORED_CONTROL_FACTOR / num_classes
        if score <= limit:
            judge = judge_accuracy(metrics)
            ceiling = f"; the judge scores {judge:.2f} on real test images" if judge else ""
            return (
                f"the samples ignore the label: control score {score:.3f} <= "
                f"{IGNORED_CONTROL_FACTOR} x chance (1/{num_classes}) = {limit:.3f}{ceiling}"
            )
        return None
    kl = metrics.get("kl")
    if kl is not None and kl < IGNORED_KL:
        return (
            f"the latent is ignored: KL(q(z|x) || p(z)) = {kl:.4f} nats per image < {IGNORED_KL} "
            "(posterior collapse)"
        )
    return None


def intensity_digits(data: Dataset) -> Dataset:
    """The coloured digits as grey images of their intensity (max over RGB) labelled by digit:
    the data set the digit judge of :func:`attribute_control` is trained on
    (``pyro_cvae.train.train_classifier(intensity_digits(data))``)."""

    def grey(split: Split) -> Split:
        digits = torch.tensor([int(r["digit"]) for r in COLORED_DIGITS_SCHEMA.decode(split.y)])
        return Split(split.x.amax(dim=1, keepdim=True), digits)

    shape = (1,) + tuple(data.image_shape[1:])
    return Dataset(
        f"{data.name}-intensity", grey(data.train), grey(data.val), grey(data.test),
        shape, 10, DIGIT_NAMES, "none",
    )  # fmt: skip


@torch.no_grad()
def attribute_control(model, data, *, num_per_condition: int = 20, classifier=None) -> dict:
    """How often generated coloured digits have the requested colour, digit and brightness.

    Generates ``num_per_condition`` images for every (digit, colour) pair at three brightness
    levels, then reads the colour with :func:`dominant_color`, the digit with a classifier of
    real images' intensity (the control score of :func:`pyro_cvae.control_score`), and the
    brightness as the brightest pixel.

    Args:
        model: a model of the coloured digits conditioned on their attribute schema.
        data: the coloured digits.
        num_per_condition: images generated per (digit, colour, brightness).
        classifier: the digit judge, a classifier of :func:`intensity_digits` of ``data``
            (``pyro_cvae.train.train_classifier(intensity_digits(data))``). ``None``:
            :func:`pyro_cvae.judge.attribute_control` builds it so (cached); in
            :mod:`pyro_cvae.evaluate`, which trains nothing, it is an error.

    Returns:
        ``{"color_accuracy", "digit_control_score", "brightness_mae", "num_images"}``, and
        where the judge was built for the call (:func:`pyro_cvae.judge.attribute_control`
        given none), ``"judge_test_accuracy"``: its accuracy on the real test images.
    """
    clf = require_judge(classifier, "attribute_control", "train_classifier(intensity_digits(data))")
    schema = COLORED_DIGITS_SCHEMA
    lo, hi = BRIGHTNESS
    levels = [lo + (hi - lo) * f for f in (0.25, 0.5, 0.75)]
    rows = [
        {"digit": d, "color": c, "brightness": b}
        for d in DIGIT_NAMES for c in PALETTE for b in levels
    ]  # fmt: skip
    c = schema.encode(rows).to(model.device)
    images = model.sample(c, num_per_condition).cpu()  # (M, n, 3, H, W)
    flat = images.flatten(0, 1)
    want_color = torch.tensor([list(PALETTE).index(r["color"]) for r in rows])
    want_digit = torch.tensor([int(r["digit"]) for r in rows])
    want_b = torch.tensor([r["brightness"] for r in rows])
    rep = lambda t: t.repeat_interleave(num_per_condition)  # noqa: E731
    color_ok = dominant_color(flat) == rep(want_color)
    digit_ok = clf(flat.amax(dim=1, keepdim=True)).argmax(-1) == rep(want_digit)
    b_err = (flat.amax(dim=(1, 2, 3)) - rep(want_b)).abs()
    return {
        "color_accuracy": color_ok.float().mean().item(),
        "digit_control_score": digit_ok.float().mean().item(),
        "brightness_mae": b_err.mean().item(),
        "num_images": int(flat.shape[0]),
    }
