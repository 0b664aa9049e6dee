"""Control: do images generated for a condition show it? Judged by classifiers of real images.

:func:`control_score` asks a classifier of the real training images (trained once per data set
by :func:`pyro_cvae.train.train_classifier`) to label images generated for each class;
:func:`attribute_control` does the same for the coloured digits' digit, colour and brightness.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import COLORED_DIGITS_SCHEMA, DIGIT_NAMES, PALETTE, Dataset, Split, dominant_color
from ..data.colored import BRIGHTNESS
from ..models.contract import device_of, num_classes_of, require
from ..train import train_classifier

__all__ = [
    "IGNORED_CONTROL_FACTOR", "IGNORED_KL", "JUDGE_KEY", "attribute_control",
    "classifier_accuracy", "condition_ignored", "control_score", "judge_accuracy",
]  # fmt: skip

#: key of the judge classifier's own accuracy on real test images in a metrics dict; results
#: written before it was renamed hold it under ``"classifier_test_accuracy"``
JUDGE_KEY = "judge_test_accuracy"
_OLD_JUDGE_KEY = "classifier_test_accuracy"

#: a control score at or below this many times chance (1/C) says samples ignore the label
IGNORED_CONTROL_FACTOR = 1.5
#: a KL(q(z|x) || p(z)) per image below this (nats) says the latent carries nothing
IGNORED_KL = 0.1


@torch.no_grad()
def classifier_accuracy(clf: nn.Module, split: Split) -> float:
    """Accuracy of ``clf`` on a split, computed on the classifier's device."""
    device = next(clf.parameters()).device
    return (clf(split.x.to(device)).argmax(-1) == split.y.to(device)).float().mean().item()


@torch.no_grad()
def control_score(model, data: Dataset, num_per_class: int = 100, classifier=None) -> dict:
    """Fraction of images generated for each label that a classifier of real images labels so.

    The judge is a classifier of real images; its own accuracy on the real test images
    (``"judge_test_accuracy"``) is the ceiling a perfect generator would reach, not a property of
    the model: the same number for every model of one data set.

    Returns:
        ``{"control_score": overall, "per_class": [..], "judge_test_accuracy": acc}``.
    """
    C = num_classes_of(model, data)
    if not C:
        raise ValueError("the control score needs a label-conditioned model (num_classes > 0)")
    require(model, "sample", "the control score",
            "it draws sample(labels, num_samples) -> (C, n, *image_shape) images per label")  # fmt: skip
    clf = classifier or train_classifier(data)  # trained once on the CPU and cached
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


def _digit_classifier(data):
    """A classifier of digits from the coloured training images' intensity (max over RGB)."""

    def grey(split: Split) -> Split:
        digits = torch.tensor([int(r["digit"]) for r in COLORED_DIGITS_SCHEMA.decode(split.y)])
        return Split(split.x.amax(dim=1, keepdim=True), digits)

    shape = (1,) + tuple(data.image_shape[1:])
    grey_data = Dataset(
        f"{data.name}-intensity", grey(data.train), grey(data.val), grey(data.test),
        shape, 10, DIGIT_NAMES, "none",
    )  # fmt: skip
    return train_classifier(grey_data), grey_data


@torch.no_grad()
def attribute_control(model, data, *, num_per_condition: int = 20, classifier=None) -> dict:
    """How often generated coloured digits have the requested colour, digit and brightness.

    Generates ``num_per_condition`` images for every (digit, colour) pair at three brightness
    levels, then reads the colour with :func:`dominant_color`, the digit with a classifier of
    real images' intensity (the control score of :func:`pyro_cvae.control_score`), and the
    brightness as the brightest pixel.

    Returns:
        ``{"color_accuracy", "digit_control_score", "brightness_mae", "judge_test_accuracy",
        "num_images"}`` (the last: the digit judge's own accuracy on real test images).
    """
    clf, grey_data = _digit_classifier(data) if classifier is None else (classifier, None)
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
    out = {
        "color_accuracy": color_ok.float().mean().item(),
        "digit_control_score": digit_ok.float().mean().item(),
        "brightness_mae": b_err.mean().item(),
        "num_images": int(flat.shape[0]),
    }
    if grey_data is not None:
        out[JUDGE_KEY] = classifier_accuracy(clf, grey_data.test)
    return out
