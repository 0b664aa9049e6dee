"""pyro_cvae: conditional variational autoencoders in Pyro.

A CVAE is a Pyro model/guide pair in which a condition (a class label or an attribute vector)
enters both sides: guide q(z | x, y), model p(z | y) p(x | z, y). With no condition it is a VAE.
"""

from .checkpoint import CheckpointError
from .config import ModelConfig, TrainConfig
from .data import Dataset, Split, load_dataset, partial_labels
from .evaluate import (
    active_units,
    bits_per_dim,
    control_score,
    elbo_per_image,
    evaluate,
    generative_classify,
    importance_log_likelihood,
    log_likelihood,
    log_marginal,
)
from .models import CVAE, HierarchicalCVAE, build_model, load  # models registers the others
from .objectives import OBJECTIVES, make_objective
from .priors import PRIORS
from .semisupervised import M2, SemiSupervisedConfig, fit_semisupervised
from .train import History, NonFiniteLossError, RunFolderError, fit

__version__ = "0.1.0"

__all__ = [
    "CVAE",
    "HierarchicalCVAE",
    "CheckpointError",
    "Dataset",
    "History",
    "M2",
    "SemiSupervisedConfig",
    "fit_semisupervised",
    "partial_labels",
    "ModelConfig",
    "NonFiniteLossError",
    "OBJECTIVES",
    "PRIORS",
    "RunFolderError",
    "Split",
    "TrainConfig",
    "active_units",
    "build_model",
    "bits_per_dim",
    "importance_log_likelihood",
    "control_score",
    "elbo_per_image",
    "evaluate",
    "fit",
    "generative_classify",
    "load",
    "load_dataset",
    "log_likelihood",
    "log_marginal",
    "make_objective",
]
