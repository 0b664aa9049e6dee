"""Layer 4a (below training), evaluation: per-image bounds, importance-sampled log-likelihoods,
active units, control scores, classification accuracies and label posteriors of the
semi-supervised models, the completion task's conditional likelihoods, and the fidelity and
diversity of samples in the judge classifier's features; pure ``@torch.no_grad()`` functions.

Imports layers 0 to 3 and trains nothing: the judge classifier of the control score and of the
fidelity metrics is an argument (``classifier=``), built by the caller, e.g. with
:func:`pyro_cvae.train.train_classifier`. The package-level :func:`pyro_cvae.evaluate` and
:func:`pyro_cvae.control_score` (and :mod:`pyro_cvae.judge`) build and cache it when given none.
The trainer, one layer up, reports its validation metrics with :func:`elbo_per_image` and
:func:`accuracy`.
"""

from .bounds import elbo_per_image, log_weights
from .control import (
    JUDGE_KEY,
    attribute_control,
    classifier_accuracy,
    condition_ignored,
    control_score,
    intensity_digits,
    judge_accuracy,
    require_judge,
    scores_control,
)
from .fidelity import (
    classifier_features,
    feature_moments,
    frechet_distance,
    gaussian_frechet,
    label_diversity,
    sample_quality,
    sharpness,
    within_label_diversity,
)
from .likelihood import (
    DEFAULT_MAX_FLOATS,
    active_units,
    bits_per_dim,
    generative_classify,
    importance_log_likelihood,
    log_likelihood,
    log_marginal,
)
from .metrics import evaluate, semisupervised_metrics
from .quadrants import baseline_nll, conditional_nll
from .semisupervised import accuracy, generative_posterior

__all__ = [
    "DEFAULT_MAX_FLOATS",
    "JUDGE_KEY",
    "accuracy",
    "active_units",
    "attribute_control",
    "baseline_nll",
    "bits_per_dim",
    "classifier_accuracy",
    "classifier_features",
    "condition_ignored",
    "conditional_nll",
    "control_score",
    "elbo_per_image",
    "evaluate",
    "feature_moments",
    "frechet_distance",
    "gaussian_frechet",
    "generative_classify",
    "generative_posterior",
    "intensity_digits",
    "judge_accuracy",
    "importance_log_likelihood",
    "log_likelihood",
    "log_marginal",
    "log_weights",
    "label_diversity",
    "require_judge",
    "sample_quality",
    "scores_control",
    "semisupervised_metrics",
    "sharpness",
    "within_label_diversity",
]
