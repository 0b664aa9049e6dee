"""pyro_cvae: conditional variational autoencoders in Pyro.

A CVAE is a Pyro model/guide pair in which a condition (a class label or an attribute vector)
enters both sides: guide q(z | x, y), model p(z | y) p(x | z, y). With no condition it is a VAE.

The package is layered; each layer imports only those below it (``lint-imports`` checks)::

    L6  cli/                         the command line, one module per command
    L5c applications                 what people do with a trained model
    L5b runs                         finishing a run folder: model files, figures, metrics
    L5a figures, judge               run pictures; evaluation with the judge classifier built
                                     for you
    L4b train/                       the one fit loop, its families, run folders, the judge
    L4a evaluate/                    test and validation metrics, pure (the judge an argument)
    L3  infer/                       objectives, the SVI step, KL weighting, M2's objective
    L2  models/                      CVAE, hierarchical CVAE, M2, completion models; registry
    L1  data/, nn/, plots            data sets and conditions; networks, likelihoods, priors;
                                     plotting
    L0  _validate, _frozen, checkpoint   argument checks, config base, checkpoint files

This module only re-exports the public API.
"""

from .applications import sample_rows
from .checkpoint import CheckpointError
from .data import Dataset, Split, load_dataset, partial_labels
from .evaluate import (
    active_units,
    bits_per_dim,
    elbo_per_image,
    generative_classify,
    importance_log_likelihood,
    log_likelihood,
    log_marginal,
)
from .infer import OBJECTIVES, NonFiniteLossError, make_objective
from .judge import control_score, evaluate  # these build the judge classifier when given none
from .models import (
    ADGM,
    CVAE,
    M2,
    SDGM,
    AuxiliaryConfig,
    HierarchicalCVAE,
    MissingCapabilityError,
    ModelConfig,
    PyroModel,
    build_model,
    load,
    save_safetensors,
)
from .nn import NETS, PRIORS, register_net
from .runs import FinishedRun, finish_run
from .train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    RunFolderError,
    SemiSupervisedConfig,
    SemiSupervisedFamily,
    TrainConfig,
    fit,
    fit_m1m2,
    fit_semisupervised,
)

__version__ = "0.1.0"

__all__ = [
    "ADGM",
    "AuxiliaryConfig",
    "CSVLogger",
    "CVAE",
    "Callback",
    "CheckpointError",
    "Dataset",
    "EarlyStopping",
    "FinishedRun",
    "HierarchicalCVAE",
    "History",
    "M2",
    "MissingCapabilityError",
    "ModelConfig",
    "NETS",
    "NonFiniteLossError",
    "OBJECTIVES",
    "PRIORS",
    "PyroModel",
    "RunFolderError",
    "SDGM",
    "SemiSupervisedConfig",
    "SemiSupervisedFamily",
    "Split",
    "TrainConfig",
    "active_units",
    "bits_per_dim",
    "build_model",
    "control_score",
    "elbo_per_image",
    "evaluate",
    "finish_run",
    "fit",
    "fit_m1m2",
    "fit_semisupervised",
    "generative_classify",
    "importance_log_likelihood",
    "load",
    "load_dataset",
    "log_likelihood",
    "log_marginal",
    "make_objective",
    "partial_labels",
    "register_net",
    "sample_rows",
    "save_safetensors",
]
