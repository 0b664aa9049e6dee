"""Layer 4 (above training), evaluation: importance-sampled log-likelihoods, bounds, active
units, control scores, the completion task's conditional likelihoods, and the fidelity and
diversity of samples in the judge classifier's features; pure ``@torch.no_grad()`` functions.
It sits above :mod:`pyro_cvae.train` because the control score's judge classifier is trained by
``fit``.
"""

from ..infer.bounds import elbo_per_image, log_weights
from ..infer.semisupervised import accuracy, generative_posterior
from .control import (
    JUDGE_KEY,
    attribute_control,
    classifier_accuracy,
    condition_ignored,
    control_score,
    judge_accuracy,
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
    "judge_accuracy",
    "importance_log_likelihood",
    "log_likelihood",
    "log_marginal",
    "log_weights",
    "label_diversity",
    "sample_quality",
    "semisupervised_metrics",
    "sharpness",
    "within_label_diversity",
]
