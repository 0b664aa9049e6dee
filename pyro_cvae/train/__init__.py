"""Layer 4, training: the one ``fit`` loop and its callbacks, the families it trains, run folders
(and what a reader of a run loads from one), multi-process training, and the training configs.

Imports layers 0 to 3. Nothing else in the package runs a training step.
"""

from .callbacks import STOP, Callback, CSVLogger, EarlyStopping, ProgressBar, TensorBoard
from .classifier import train_classifier
from .config import SemiSupervisedConfig, TrainConfig, config_from_dict
from .defaults import FAMILY_MODELS, build_for, train_config
from .families import (
    AuxiliaryFamily,
    ClassifierFamily,
    CompletionFamily,
    ConditionalFamily,
    Family,
    SemiSupervisedFamily,
    check_data_fits_model,
    family_for,
    labelled_mask,
)
from .loop import History, fit, kl_weight
from .m1m2 import M1M2, M1M2Result, fit_m1m2, m1_features, m1_units
from .quadrants import train_quadrants
from .run_folder import (
    READER_OUTPUTS,
    RUN_FILES,
    CheckpointWriteError,
    RunFolder,
    RunFolderError,
    load_run_data,
    load_schema,
    output_path,
    run_binarizes,
)
from .semisupervised import fit_semisupervised

__all__ = [
    "AuxiliaryFamily",
    "CSVLogger",
    "Callback",
    "CheckpointWriteError",
    "ClassifierFamily",
    "CompletionFamily",
    "ConditionalFamily",
    "EarlyStopping",
    "FAMILY_MODELS",
    "Family",
    "History",
    "M1M2",
    "M1M2Result",
    "ProgressBar",
    "READER_OUTPUTS",
    "RUN_FILES",
    "STOP",
    "RunFolder",
    "RunFolderError",
    "SemiSupervisedConfig",
    "SemiSupervisedFamily",
    "TensorBoard",
    "TrainConfig",
    "build_for",
    "check_data_fits_model",
    "config_from_dict",
    "family_for",
    "fit",
    "fit_m1m2",
    "fit_semisupervised",
    "kl_weight",
    "labelled_mask",
    "load_run_data",
    "load_schema",
    "m1_features",
    "m1_units",
    "output_path",
    "run_binarizes",
    "train_classifier",
    "train_config",
    "train_quadrants",
]
