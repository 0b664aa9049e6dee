"""Layer 3, inference: the objectives by name, the SVI step, KL weighting as an effect handler,
and the semi-supervised objectives of M2 and of ADGM / SDGM.

Imports layers 0 to 2. What only measures a trained model (per-image bounds, accuracies, label
posteriors) is evaluation, one layer up in :mod:`pyro_cvae.evaluate`.
"""

from .anneal import ScaleLatentsMessenger, scale_latents
from .auxiliary import AuxiliaryObjective, auxiliary_elbo, auxiliary_log_px, auxiliary_log_weights
from .free_bits import FreeBitsELBO
from .objectives import (
    FREE_BITS_OBJECTIVES,
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
    enumerated_elbo,
    iw_bound,
    label_log_weights,
)
from .svi import ModuleSVI, NonFiniteLossError, ObjectiveModule, make_adam

__all__ = [
    "AuxiliaryObjective",
    "DReGELBO",
    "FREE_BITS_OBJECTIVES",
    "FreeBitsELBO",
    "IMPORTANCE_WEIGHTED",
    "ImportanceWeightedELBO",
    "ModuleSVI",
    "NonFiniteLossError",
    "OBJECTIVES",
    "ObjectiveModule",
    "SEMI_SUPERVISED_OBJECTIVES",
    "ScaleLatentsMessenger",
    "SemiSupervisedObjective",
    "auxiliary_elbo",
    "auxiliary_log_px",
    "auxiliary_log_weights",
    "enum_objective",
    "enumerated_elbo",
    "importance_log_weights",
    "iw_bound",
    "label_log_weights",
    "make_adam",
    "make_objective",
    "scale_latents",
]
