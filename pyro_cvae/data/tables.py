"""Mixed-type tables as data: a :class:`TableSchema` turns rows into real vectors and back.

Each data column is declared once, by kind, and encoded into one block of the row vector x:

* ``"continuous"``: one standardised value ``(v - mean) / std`` (Gaussian likelihood);
* ``"binary"``: 0 or 1 for the column's two values (Bernoulli likelihood);
* ``"categorical"``: a one-hot block of width ``len(values)`` (Categorical likelihood).

The kinds are inferred from a ``pandas.DataFrame`` (:meth:`TableSchema.infer`): text columns are
categorical, numeric columns with exactly two distinct values binary, other numeric columns
continuous. The standardisation of a continuous column, and its range, are those of the
training rows only. :meth:`TableSchema.decode` maps generated vectors back to a frame with the
table's own columns and types: a continuous column clipped to the range of the training rows
(``low``, ``high`` in ``table.json``; integer columns then rounded), so ages stay in the ages
seen and counts stay non-negative. The schema is stored as
``table.json`` in a run folder; the model only needs its :attr:`~TableSchema.layout`
(kind and width per column, ``ModelConfig.table_columns``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ._jsonfile import read_json, save_json

__all__ = [
    "TABLE_FILE",
    "TABLE_KINDS",
    "TableColumn",
    "TableSchema",
    "DataFileError",
    "save_table",
    "read_table",
    "numeric_column",
    "check_rows",
    "check_complete",
]

TABLE_FILE = "table.json"
#: column kinds, in the order of their likelihoods (Gaussian, Bernoulli, Categorical)
TABLE_KINDS = ("continuous", "binary", "categorical")


class DataFileError(ValueError):
    """A data file that cannot be used: the message names the file, row and column."""


def _plain(v):
    """A numpy / pandas scalar as a JSON-friendly Python value."""
    return v.item() if hasattr(v, "item") else v


def numeric_column(series: pd.Series, source: str) -> pd.Series | None:
    """The column as numbers; ``None`` for a text column.

    A text column whose cells are mostly numbers is a numeric column with a bad cell: that is a
    :class:`DataFileError` naming the file, row (counted from 1, header excluded) and column.
    """
    if pd.api.types.is_bool_dtype(series):
        return series.astype(np.int64)
    if pd.api.types.is_numeric_dtype(series):
        return series
    parsed = pd.to_numeric(series, errors="coerce")
    bad = parsed.isna() & series.notna()
    if bad.any() and bad.mean() <= 0.5:
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFileError(
            f"{source}: row {row + 1}, column {series.name!r}: {series.iloc[row]!r} is not a "
            "number, but the column is numeric elsewhere; fix the cell (or make the whole "
            "column text to treat it as categorical)"
        )
    return None if bad.any() else parsed


def check_rows(frame: pd.DataFrame, source: str) -> None:
    """Refuse a table with a header but no rows."""
    if len(frame) == 0:
        raise DataFileError(
            f"{source} has no rows (only the header {', '.join(map(str, frame.columns))}); "
            "add data rows below it"
        )


def check_complete(frame: pd.DataFrame, source: str) -> None:
    """Refuse a missing value, naming the file, the row (from 1, header excluded) and the column."""
    missing = frame.isna().to_numpy()
    if missing.any():
        row, col = (int(v[0]) for v in np.nonzero(missing))
        raise DataFileError(
            f"{source}: row {row + 1}, column {frame.columns[col]!r}: missing value; fill it in "
            "or drop the row"
        )


@dataclass(frozen=True)
class TableColumn:
    """One data column: its kind, and what encoding and decoding it needs.

    ``values`` are the two values of a binary column (encoded 0, 1) or the categories of a
    categorical one; ``mean`` and ``std`` standardise a continuous one, ``integer`` rounds it back,
    and generated values are clipped to ``[low, high]``, the range of the training rows (``None``:
    not clipped; schemas written before the range was recorded).
    """

    name: str
    kind: str
    values: tuple = ()
    mean: float = 0.0
    std: float = 1.0
    integer: bool = False
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if self.kind not in TABLE_KINDS:
            raise ValueError(
                f"column {self.name!r} has unknown kind {self.kind!r}; choose one of "
                f"{', '.join(TABLE_KINDS)}"
            )
        if self.kind == "binary" and len(self.values) != 2:
            raise ValueError(f"binary column {self.name!r} needs two values, got {self.values!r}")
        if self.kind == "categorical" and len(self.values) < 2:
            raise ValueError(
                f"categorical column {self.name!r} needs at least two categories, got "
                f"{self.values!r}"
            )
        if self.kind == "continuous" and not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"continuous column {self.name!r} needs std > 0, got {self.std!r}")

    @property
    def width(self) -> int:
        return len(self.values) if self.kind == "categorical" else 1

    @classmethod
    def infer(cls, series: pd.Series, source: str, fit_rows=None) -> TableColumn:
        """The column's kind and encoding; the categories come from every row, the
        standardisation and range of a continuous column from ``fit_rows`` only (the training
        split's positions; default all rows), so no test row leaks into them."""
        name = str(series.name)
        numbers = numeric_column(series, source)
        if numbers is None or pd.api.types.is_bool_dtype(series):
            values = sorted(series.unique().tolist(), key=str)
            if len(values) < 2:
                raise DataFileError(
                    f"{source}: column {name!r} holds one value only ({values[0]!r}); drop it"
                )
            kind = "binary" if len(values) == 2 else "categorical"
            return cls(name, kind, tuple(_plain(v) for v in values))
        values = np.unique(numbers.to_numpy())
        if len(values) == 2:
            return cls(name, "binary", tuple(_plain(v) for v in values))
        if len(values) < 2:
            raise DataFileError(
                f"{source}: column {name!r} holds one value only ({_plain(values[0])!r}); drop it"
            )
        x = numbers.to_numpy(dtype=np.float64)
        if fit_rows is not None:
            x = x[np.asarray(fit_rows)]
        integer = pd.api.types.is_integer_dtype(numbers)
        return cls(name, "continuous", (), float(x.mean()), float(x.std()) or 1.0, integer,
                   float(x.min()), float(x.max()))  # fmt: skip

    def encode(self, series: pd.Series, source: str) -> np.ndarray:
        """The column's block of the row vectors, (N, width)."""
        if self.kind == "continuous":
            numbers = numeric_column(series, source)
            if numbers is None:
                raise DataFileError(
                    f"{source}: column {self.name!r} holds text, but the model was trained on "
                    "numbers there"
                )
            return ((numbers.to_numpy(np.float64) - self.mean) / self.std)[:, None]
        index = {v: i for i, v in enumerate(self.values)}
        codes = np.empty(len(series), dtype=np.int64)
        for row, v in enumerate(series.tolist()):
            i = index.get(_plain(v), index.get(str(v)))
            if i is None:
                raise DataFileError(
                    f"{source}: row {row + 1}, column {self.name!r}: unknown value {v!r}; "
                    f"expected one of {', '.join(map(str, self.values))}"
                )
            codes[row] = i
        if self.kind == "binary":
            return codes[:, None].astype(np.float64)
        return np.eye(self.width)[codes]

    def decode(self, block: torch.Tensor) -> list:
        """The values of a block (N, width) of encoded (or generated) rows."""
        if self.kind == "continuous":
            v = block[:, 0].double() * self.std + self.mean
            if self.low is not None and self.high is not None:
                v = v.clamp(self.low, self.high)  # the range of the training rows
            return v.round().long().tolist() if self.integer else v.tolist()
        if self.kind == "binary":
            return [self.values[int(b > 0.5)] for b in block[:, 0]]
        return [self.values[int(i)] for i in block.argmax(-1)]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "values": list(self.values), "mean": self.mean,
            "std": self.std, "integer": self.integer, "low": self.low, "high": self.high,
        }  # fmt: skip


class TableSchema:
    """The data columns of a table, in order; a row is their encodings concatenated.

    ``order`` is the column order of the whole table (condition columns included), so generated
    rows come back as the table was; ``condition_types`` the type of each condition column
    (``"int"``, ``"float"``, ``"bool"`` or ``"str"``), so the values filled into them come back
    as the table's own (:meth:`typed`).
    """

    def __init__(self, columns, order=None, condition_types=None):
        self.columns = tuple(columns)
        names = [c.name for c in self.columns]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a table schema needs columns with distinct names, got {names}")
        self.order = tuple(order) if order is not None else tuple(names)
        self.condition_types = dict(condition_types or {})

    @staticmethod
    def type_of(series: pd.Series) -> str:
        """``"bool"``, ``"int"``, ``"float"`` or ``"str"``: the type of a column's values."""
        if pd.api.types.is_bool_dtype(series):
            return "bool"
        if pd.api.types.is_integer_dtype(series):
            return "int"
        if pd.api.types.is_float_dtype(series):
            return "float"
        return "str"

    def typed(self, name: str, value):
        """A condition value (parsed from text: ``"True"``, ``30.0``) as the table's type."""
        kind = self.condition_types.get(name)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).strip() == "True"
        if kind == "int":
            return int(round(float(value)))
        if kind == "float":
            return float(value)
        return value

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        """Width of an encoded row (the data shape is ``(width,)``)."""
        return sum(c.width for c in self.columns)

    @property
    def layout(self) -> tuple[tuple[str, int], ...]:
        """(kind, width) per column: all the likelihood needs (``ModelConfig.table_columns``)."""
        return tuple((c.kind, c.width) for c in self.columns)

    def __eq__(self, other) -> bool:
        return isinstance(other, TableSchema) and self.to_dict() == other.to_dict()

    @classmethod
    def infer(cls, frame: pd.DataFrame, source: str = "table", order=None, fit_rows=None,
              condition_types=None) -> TableSchema:  # fmt: skip
        """Kinds, categories and standardisation of every column of ``frame`` (standardisation
        and ranges from the rows ``fit_rows`` only, see :meth:`TableColumn.infer`)."""
        check_rows(frame, source)
        check_complete(frame, source)
        return cls([TableColumn.infer(frame[c], source, fit_rows) for c in frame.columns], order,
                   condition_types)  # fmt: skip

    def encode(self, frame: pd.DataFrame, source: str = "table") -> torch.Tensor:
        """Rows of ``frame`` -> (N, width) real vectors."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise DataFileError(
                f"{source} has no column(s) {missing}; it has {list(frame.columns)}"
            )
        check_complete(frame[self.names], source)
        blocks = [c.encode(frame[c.name], source) for c in self.columns]
        x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
        return torch.from_numpy(x.astype(np.float32))

    def decode(self, x: torch.Tensor) -> pd.DataFrame:
        """(N, width) encoded rows -> a frame with the columns' own values and types."""
        if x.dim() != 2 or x.shape[-1] != self.width:
            raise ValueError(f"rows must have shape (N, {self.width}), got {tuple(x.shape)}")
        x = x.detach().cpu()
        out, i = {}, 0
        for c in self.columns:
            out[c.name] = c.decode(x[:, i : i + c.width])
            i += c.width
        return pd.DataFrame(out)

    def to_dict(self) -> dict:
        return {
            "format": "pyro_cvae.table",
            "columns": [c.to_dict() for c in self.columns],
            "order": list(self.order),
            "condition_types": dict(self.condition_types),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TableSchema:
        return cls([TableColumn(**c) for c in data["columns"]], data.get("order"),
                   data.get("condition_types"))  # fmt: skip


def save_table(folder: str | Path, schema: TableSchema) -> Path:
    """Write ``table.json`` into a run folder."""
    return save_json(folder, TABLE_FILE, schema.to_dict())


def read_table(folder: str | Path) -> TableSchema | None:
    """The table schema stored in a run folder; ``None`` when there is none."""
    stored = read_json(folder, TABLE_FILE)
    return None if stored is None else TableSchema.from_dict(stored)
