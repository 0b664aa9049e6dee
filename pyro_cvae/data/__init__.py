"""Layer 1, data: in-memory splits with their condition, the built-in data sets, partial labels,
attribute schemas and the coloured-digit data set.

Imports only layer 0 (:mod:`pyro_cvae._validate`) and third-party libraries.
"""

from .._validate import check_images, check_labels
from .attributes import (
    ATTRIBUTE_KINDS,
    SCHEMA_FILE,
    AttributeSchema,
    Categorical,
    Continuous,
    read_schema,
    save_schema,
)
from .colored import (
    BRIGHTNESS,
    COLORED_DIGITS_SCHEMA,
    PALETTE,
    SCHEMAS,
    colored_splits,
    colorize,
    dominant_color,
)
from .core import BINARIZATIONS, Dataset, Split, binarize_draw, default_data_dir
from .labels import partial_labels
from .loaders import DATASETS, load_dataset, load_run_data, load_schema
from .molecules import MOLECULE_DATASETS, is_molecule_data, load_moses
from .names import DIGIT_NAMES, FASHION_NAMES

__all__ = [
    "ATTRIBUTE_KINDS",
    "AttributeSchema",
    "BINARIZATIONS",
    "BRIGHTNESS",
    "COLORED_DIGITS_SCHEMA",
    "Categorical",
    "Continuous",
    "DATASETS",
    "DIGIT_NAMES",
    "Dataset",
    "MOLECULE_DATASETS",
    "FASHION_NAMES",
    "PALETTE",
    "SCHEMAS",
    "SCHEMA_FILE",
    "Split",
    "binarize_draw",
    "check_images",
    "check_labels",
    "colored_splits",
    "colorize",
    "default_data_dir",
    "dominant_color",
    "is_molecule_data",
    "load_dataset",
    "load_moses",
    "load_run_data",
    "load_schema",
    "partial_labels",
    "read_schema",
    "save_schema",
]
