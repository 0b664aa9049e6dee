"""Layer 3, inference: the objectives by name, the SVI step, KL weighting as an effect handler,
per-image bounds, and the semi-supervised objectives of M2 and of ADGM / SDGM.

Imports layers 0 to 2.
"""

from .anneal import ScaleLatentsMessenger, scale_latents
from .auxiliary import AuxiliaryObjective, auxiliary_elbo, auxiliary_log_px, auxiliary_log_weights
from .bounds import condition_of, elbo_per_image, log_weights
from .objectives import (
    IMPORTANCE_WEIGHTED,
    OBJECTIVES,
    DReGELBO,
    ImportanceWeightedELBO,
    enum_objective,
    importance_log_weights,
    make_objective,
)
from .semisupervised import (
    SEMI_SUPERVISED_OBJECTIVES,
    SemiSupervisedObjective,
    accuracy,
    enumerated_elbo,
    generative_posterior,
    iw_bound,
    label_log_weights,
)
from .svi import ModuleSVI, NonFiniteLossError, ObjectiveModule, make_adam

__all__ = [
    "AuxiliaryObjective",
    "DReGELBO",
    "IMPORTANCE_WEIGHTED",
    "ImportanceWeightedELBO",
    "ModuleSVI",
    "NonFiniteLossError",
    "OBJECTIVES",
    "ObjectiveModule",
    "SEMI_SUPERVISED_OBJECTIVES",
    "ScaleLatentsMessenger",
    "SemiSupervisedObjective",
    "accuracy",
    "auxiliary_elbo",
    "auxiliary_log_px",
    "auxiliary_log_weights",
    "condition_of",
    "elbo_per_image",
    "enum_objective",
    "enumerated_elbo",
    "generative_posterior",
    "importance_log_weights",
    "iw_bound",
    "label_log_weights",
    "log_weights",
    "make_adam",
    "make_objective",
    "scale_latents",
]
