"""Layer 1, data: in-memory splits with their condition, the built-in data sets, the user's own
files (image folders, .npz, tables) in memory or streamed, partial labels, attribute and table schemas and the
coloured-digit data set.

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
from .core import (
    BINARIZATIONS,
    EVAL_BINARIZE_SEED,
    Dataset,
    Split,
    binarize_draw,
    default_data_dir,
    eval_binarize,
)
from .files import FILE_SOURCES, DataFileError, detect_source, load_files
from .labels import partial_labels
from .loaders import DATASETS, grey_level_images, load_dataset
from .molecules import MOLECULE_DATASETS, is_molecule_data, load_moses
from .names import DIGIT_NAMES, FASHION_NAMES
from .stream import StreamDataset, StreamedDataError, StreamSplit, inputs_to_check
from .tables import (
    TABLE_FILE,
    TABLE_KINDS,
    TableColumn,
    TableSchema,
    read_table,
    save_table,
)

__all__ = [
    "ATTRIBUTE_KINDS",
    "AttributeSchema",
    "BINARIZATIONS",
    "BRIGHTNESS",
    "EVAL_BINARIZE_SEED",
    "COLORED_DIGITS_SCHEMA",
    "Categorical",
    "Continuous",
    "DATASETS",
    "DataFileError",
    "FILE_SOURCES",
    "DIGIT_NAMES",
    "Dataset",
    "MOLECULE_DATASETS",
    "FASHION_NAMES",
    "PALETTE",
    "SCHEMAS",
    "SCHEMA_FILE",
    "Split",
    "StreamDataset",
    "StreamSplit",
    "StreamedDataError",
    "TABLE_FILE",
    "TABLE_KINDS",
    "TableColumn",
    "TableSchema",
    "binarize_draw",
    "check_images",
    "check_labels",
    "colored_splits",
    "colorize",
    "default_data_dir",
    "detect_source",
    "dominant_color",
    "eval_binarize",
    "grey_level_images",
    "inputs_to_check",
    "is_molecule_data",
    "load_dataset",
    "load_files",
    "load_moses",
    "partial_labels",
    "read_schema",
    "read_table",
    "save_schema",
    "save_table",
]
