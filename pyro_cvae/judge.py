"""Evaluation with the judge classifier built for you: :func:`evaluate`, :func:`control_score`,
:func:`attribute_control`, :func:`sample_quality` and :func:`label_diversity`.

The functions of :mod:`pyro_cvae.evaluate` are pure and train nothing: those that read generated
images through a judge (a classifier of the real images) take it as ``classifier=``. These are
the same functions, one layer above training, that build the judge when given none with
:func:`pyro_cvae.train.train_classifier` (trained once per data set on the CPU without moving
the caller's random state, cached in memory and under ``<data dir>/classifiers``) and then call
the pure function. ``pyro_cvae.evaluate(model, data)`` and ``pyro_cvae.control_score(model,
data)`` are the first two.
"""

from __future__ import annotations

import functools

from torch import nn

from .data import Dataset
from .evaluate import control as _control
from .evaluate import fidelity as _fidelity
from .evaluate import metrics as _metrics
from .train import train_classifier

__all__ = ["attribute_control", "control_score", "evaluate", "label_diversity", "sample_quality"]


def _builds_judge(pure):
    """Document a wrapper as the pure function it calls (its signature and docstring)."""

    def wrap(fn):
        return functools.update_wrapper(fn, pure, assigned=("__doc__",), updated=())

    return wrap


@_builds_judge(_metrics.evaluate)
def evaluate(model, data: Dataset, *, classifier: nn.Module | None = None, **kwargs) -> dict:
    if classifier is None and _control.scores_control(model, data, kwargs.get("control")):
        classifier = train_classifier(data)
    return _metrics.evaluate(model, data, classifier=classifier, **kwargs)


@_builds_judge(_control.control_score)
def control_score(
    model, data: Dataset, num_per_class: int = 100, classifier: nn.Module | None = None
) -> dict:
    if classifier is None and _control.scores_control(model, data):
        classifier = train_classifier(data)  # else the pure function names what the model lacks
    return _control.control_score(model, data, num_per_class, classifier)


@_builds_judge(_control.attribute_control)
def attribute_control(
    model, data: Dataset, *, num_per_condition: int = 20, classifier: nn.Module | None = None
) -> dict:
    if classifier is not None:
        return _control.attribute_control(
            model, data, num_per_condition=num_per_condition, classifier=classifier
        )
    digits = _control.intensity_digits(data)
    judge = train_classifier(digits)
    out = _control.attribute_control(
        model, data, num_per_condition=num_per_condition, classifier=judge
    )
    return {**out, _control.JUDGE_KEY: _control.classifier_accuracy(judge, digits.test)}


@_builds_judge(_fidelity.sample_quality)
def sample_quality(images, data: Dataset, *, classifier: nn.Module | None = None, **kwargs) -> dict:
    if classifier is None and images.shape[1] >= 2:  # else the pure function says what is wrong
        classifier = train_classifier(data)
    return _fidelity.sample_quality(images, data, classifier=classifier, **kwargs)


@_builds_judge(_fidelity.label_diversity)
def label_diversity(
    model, data: Dataset, num_samples: int = 50, *, classifier: nn.Module | None = None
) -> dict:
    if classifier is None and _control.scores_control(model, data) and data.is_image:
        classifier = train_classifier(data)  # else the pure function names what is missing
    return _fidelity.label_diversity(model, data, num_samples, classifier=classifier)
