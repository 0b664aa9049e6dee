"""The user's own data, by path: a registry of file sources (:data:`FILE_SOURCES`).

* ``"image-folder"``: one sub-folder per class of PNG/JPEG images (torchvision's ``ImageFolder``
  layout); ``y`` holds class labels (sub-folders in sorted order).
* ``"image-attributes"``: a folder of images and one CSV file: the file name, then one column
  per attribute (as CelebA's attribute list); ``y`` holds condition vectors of an
  :class:`~pyro_cvae.data.attributes.AttributeSchema` inferred from the columns.
* ``"npz"``: arrays ``x`` (or ``images``, ``data``) of images (N, C, H, W), (N, H, W) or vectors
  (N, D), with ``y`` / ``labels`` (N,) class labels or ``conditions`` (N, d) vectors, or neither.
* ``"table"``: a CSV or Parquet table; the ``condition`` columns give an attribute schema, the
  other columns are the data, encoded by a :class:`~pyro_cvae.data.tables.TableSchema`.

Images are read in grey when every file is grey, else in RGB, scaled to [0, 1], and resized to
``image_size`` x ``image_size`` when given (else all must share one size). Splits are seeded and
stratified where there are classes (labels, or a single categorical condition). A file that
cannot be used raises :class:`DataFileError` naming the file, row and column.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from .attributes import AttributeSchema, Categorical, Continuous
from .core import Split
from .tables import (
    DataFileError,
    TableColumn,
    TableSchema,
    _plain,
    check_complete,
    check_rows,
    numeric_column,
)

__all__ = [
    "FILE_SOURCES",
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "DataFileError",
    "detect_source",
    "load_files",
    "split_indices",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
#: shares of the data held out for validation and test
FRACTIONS = (0.1, 0.1)
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def split_indices(n: int, strata: np.ndarray | None, seed: int, fractions=FRACTIONS):
    """Seeded (train, val, test) index arrays, stratified by ``strata`` when given."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s)
                                                      for s in np.unique(strata)]  # fmt: skip
    parts: list[list[int]] = [[], [], []]
    for idx in groups:
        idx = rng.permutation(idx)
        n_val, n_test = (int(round(f * len(idx))) for f in fractions)
        if len(idx) >= 3:  # every split gets at least one item of a class that has three
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val : n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test :].tolist()
    out = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    if min(len(p) for p in out) == 0:
        raise DataFileError(
            f"{n} items are too few for train, validation and test splits; give at least 3 "
            "(and at least 3 per class)"
        )
    return out


def _splits(x: torch.Tensor, y: torch.Tensor, strata, seed: int) -> dict:
    """The seeded (train, val, test) splits of ``x`` and ``y``."""
    parts = split_indices(x.shape[0], strata, seed)
    return {k: Split(x[i], y[i]) for k, i in zip(("train", "val", "test"), parts)}


# ------------------------------------------------------------------ images


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFileError(f"{path}: cannot read the image ({e}); replace or remove it") from None
    return img


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and size of an image, from its header only (nothing decoded)."""
    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFileError(f"{path}: cannot read the image ({e}); replace or remove it") from None


def available_memory() -> int:
    """Bytes of memory available to this process (``MemAvailable``; all memory where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(n: int, channels: int, height: int, width: int, image_size=None) -> None:
    """Refuse to load ``n`` images that would not fit in the memory available.

    The images are held as float32 twice while they are stacked into one tensor.
    """
    need = 2 * 4 * n * channels * height * width
    have = available_memory()
    if need > have:
        size = f"--image-size {image_size}" if image_size is not None else f"{width}x{height}"
        raise DataFileError(
            f"{n} images at {size} ({channels} channel(s)) need about {_gib(need)} of memory to "
            f"load, but {_gib(have)} are available; choose a smaller image_size (--image-size)"
        )


def image_format(paths: list[Path], image_size: int | None) -> tuple[bool, int, int]:
    """``(grey, width, height)`` of the images at ``paths``, from their headers only: grey when
    all are grey, and the common size (refused when the sizes differ and no ``image_size``)."""
    if not paths:
        raise DataFileError("no images to read")
    headers = [_header(p) for p in paths]
    grey = all(mode in _GREY_MODES for mode, _ in headers)
    if image_size is None:
        sizes = {}
        for p, (_, size) in zip(paths, headers):
            sizes.setdefault(size, p)
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise DataFileError(
                f"images have different sizes: {p1} is {s1[0]}x{s1[1]}, {p2} is {s2[0]}x{s2[1]}; "
                "resize them all with image_size (--image-size N)"
            )
    w, h = (image_size, image_size) if image_size is not None else headers[0][1]
    return grey, w, h


def decode_image(path: Path, grey: bool, image_size: int | None) -> np.ndarray:
    """One image as float32 (C, H, W) in [0, 1], grey (C = 1) or RGB (C = 3), resized to
    ``image_size`` when given: the same bytes in memory and streamed."""
    img = _open(path).convert("L" if grey else "RGB")
    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if grey else a.transpose(2, 0, 1)


def read_images(paths: list[Path], image_size: int | None) -> torch.Tensor:
    """Images as (N, C, H, W) in [0, 1]: grey when all are grey (C = 1), else RGB (C = 3)."""
    grey, w, h = image_format(paths, image_size)
    check_memory(len(paths), 1 if grey else 3, h, w, image_size)
    out = [decode_image(p, grey, image_size) for p in paths]
    try:
        return torch.from_numpy(np.stack(out))
    except MemoryError:
        raise DataFileError(
            f"{len(paths)} images at {w}x{h} do not fit in memory; choose a smaller image_size "
            "(--image-size)"
        ) from None


def image_folder_files(path: Path, condition=None) -> tuple[list[Path], np.ndarray, tuple]:
    """The images of a folder of one sub-folder per class, their labels (N,) and the class names
    (sorted sub-folder names; none for a flat folder of unlabelled images, labels all 0)."""
    if condition:
        raise DataFileError(
            f"{path} is an image folder whose classes are its sub-folders; condition columns "
            "(--condition) are for tables, drop them"
        )
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:  # no classes: unlabelled images, for a plain VAE
        found = _image_files(classes[0] if classes else path)
        if not found:
            raise DataFileError(
                f"{path} holds no image ({', '.join(IMAGE_SUFFIXES)}): give one sub-folder of "
                "images per class, a flat folder of images (unlabelled), or images with one "
                "attribute CSV"
            )
        return found, np.zeros(len(found), dtype=np.int64), ()
    files, labels = [], []
    for k, folder in enumerate(classes):
        found = _image_files(folder)
        if not found:
            raise DataFileError(
                f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)}); every class sub-folder "
                "needs at least one"
            )
        files += found
        labels += [k] * len(found)
    return files, np.asarray(labels, dtype=np.int64), tuple(p.name for p in classes)


def load_image_folder(path: Path, *, image_size=None, condition=None, seed: int = 0) -> dict:
    """One sub-folder per class (sorted names are the classes 0, 1, ...)."""
    files, y, names = image_folder_files(path, condition)
    x = read_images(files, image_size)
    strata = y if names else None
    return dict(**_splits(x, torch.from_numpy(y), strata, seed), class_names=names,
                source=str(path))  # fmt: skip


def infer_attributes(frame: pd.DataFrame, source: str) -> AttributeSchema:
    """An attribute per column: text or two-valued columns categorical, numbers continuous."""
    check_rows(frame, source)
    check_complete(frame, source)
    attrs = []
    for name in frame.columns:
        numbers = numeric_column(frame[name], source)
        values = [_plain(v) for v in frame[name].unique().tolist()]
        if numbers is None or len(values) <= 2:
            if len(values) < 2:
                raise DataFileError(
                    f"{source}: column {name!r} holds one value only ({values[0]!r}); drop it"
                )
            attrs.append(Categorical(str(name), tuple(sorted(map(str, values)))))
        else:
            lo, hi = float(numbers.min()), float(numbers.max())
            attrs.append(Continuous(str(name), lo, hi))
    return AttributeSchema(attrs)


def _encode_conditions(frame: pd.DataFrame, schema: AttributeSchema) -> torch.Tensor:
    rows = frame.astype(object).to_dict("records")
    return schema.encode([{k: str(v) if isinstance(schema[k], Categorical) else v
                           for k, v in r.items()} for r in rows])  # fmt: skip


def _strata(frame: pd.DataFrame, schema: AttributeSchema):
    """Classes to stratify by: the attribute when there is one categorical attribute only."""
    if len(schema.attributes) == 1 and isinstance(schema.attributes[0], Categorical):
        return frame.iloc[:, 0].astype(str).to_numpy()
    return None


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pandas and pyarrow raise many kinds
        raise DataFileError(f"{path}: cannot read the table ({e})") from None


def _check_names(condition, source) -> list:
    """The condition columns, each named once."""
    condition = list(condition or ())
    twice = sorted({c for c in condition if condition.count(c) > 1})
    if twice:
        raise DataFileError(
            f"{source}: condition column(s) {twice} are given twice; name each once "
            f"(--condition {','.join(dict.fromkeys(condition))})"
        )
    return condition


def image_attribute_files(path: Path, condition=None) -> dict:
    """The images of a folder with one attribute CSV, in the CSV's order: ``files``, the
    attribute ``schema``, the condition vectors ``y`` (N, width), the ``strata`` of the split
    and the CSV's path (``source``)."""
    tables = sorted(path.glob("*.csv"))
    if len(tables) != 1:
        raise DataFileError(
            f"{path} should hold exactly one attribute CSV beside the images, found "
            f"{[t.name for t in tables]}"
        )
    source = str(tables[0])
    frame = _read_table(tables[0])
    if frame.shape[1] < 2:
        raise DataFileError(
            f"{source}: expected the image file name, then one column per attribute; found "
            f"columns {list(frame.columns)}"
        )
    check_rows(frame, source)
    name_col = frame.columns[0]
    attrs = frame.drop(columns=[name_col])
    condition = _check_names(condition, source)
    if condition:
        unknown = [c for c in condition if c not in attrs.columns]
        if unknown:
            raise DataFileError(
                f"{source} has no attribute column(s) {unknown}; it has {list(attrs.columns)}"
            )
        attrs = attrs[list(condition)]
    files, seen = [], {}
    for row, name in enumerate(frame[name_col].tolist()):
        if pd.isna(name) or not str(name).strip():
            raise DataFileError(
                f"{source}: row {row + 1}, column {name_col!r}: the image file name is empty; "
                "fill it in or drop the row"
            )
        if str(name) in seen:
            raise DataFileError(
                f"{source}: rows {seen[str(name)] + 1} and {row + 1}, column {name_col!r}: image "
                f"{str(name)!r} is listed twice (it could fall in both train and test); keep one "
                "row per image"
            )
        seen[str(name)] = row
        p = path / str(name)
        if not p.is_file():
            raise DataFileError(
                f"{source}: row {row + 1}, column {name_col!r}: image {str(name)!r} is not in "
                f"{path}"
            )
        files.append(p)
    schema = infer_attributes(attrs, source)
    return dict(files=files, schema=schema, y=_encode_conditions(attrs, schema),
                strata=_strata(attrs, schema), source=source)  # fmt: skip


def load_image_attributes(path: Path, *, image_size=None, condition=None, seed: int = 0) -> dict:
    """A folder of images and one CSV: file name, then one column per attribute."""
    found = image_attribute_files(path, condition)
    x = read_images(found["files"], image_size)
    return dict(**_splits(x, found["y"], found["strata"], seed), class_names=(),
                schema=found["schema"], source=found["source"])  # fmt: skip


# ------------------------------------------------------------------ arrays and tables


def _first_key(arrays, keys, path: Path, what: str, required: bool = True):
    for k in keys:
        if k in arrays:
            return k
    if required:
        raise DataFileError(
            f"{path} has no array of {what}; name it one of {', '.join(keys)} "
            f"(it has {', '.join(arrays.files) or 'none'})"
        )
    return None


def _check_finite(a: np.ndarray, path: Path, key: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = f"row {idx[0] + 1}" + (f", column {idx[1] + 1}" if a.ndim == 2 else "")
        raise DataFileError(
            f"{path}: array {key!r}, {where}: missing or non-finite value; clean the data"
        )


def load_npz(path: Path, *, image_size=None, condition=None, seed: int = 0) -> dict:
    """Images or vectors with class labels, condition vectors or nothing."""
    if image_size is not None or condition:
        raise DataFileError(
            f"{path}: image_size and condition columns do not apply to an .npz; store the "
            "arrays at the size and with the conditions you want"
        )
    if not zipfile.is_zipfile(path):
        raise DataFileError(
            f"{path} is not a valid .npz (numpy's zip of arrays); write it with "
            "numpy.savez(path, x=..., labels=...)"
        )
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataFileError(f"{path}: cannot read the .npz ({e})") from None
    with arrays:
        kx = _first_key(arrays, ("x", "images", "data"), path, "data")
        ky = _first_key(arrays, ("y", "labels"), path, "labels", required=False)
        kc = _first_key(arrays, ("conditions", "c"), path, "conditions", required=False)
        x = np.asarray(arrays[kx])
        labels = np.asarray(arrays[ky]) if ky else None
        conds = np.asarray(arrays[kc]) if kc else None
        names = arrays["condition_names"].tolist() if "condition_names" in arrays else None
    if not np.issubdtype(x.dtype, np.number):
        raise DataFileError(f"{path}: array {kx!r} must be numeric, got dtype {x.dtype}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.ndim == 3:  # (N, H, W) grey images
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise DataFileError(
            f"{path}: array {kx!r} has shape {x.shape}; expected vectors (N, D) or images "
            "(N, H, W) / (N, C, H, W)"
        )
    if x.ndim == 2:
        _check_finite(x, path, kx)
    else:
        _check_finite(x.reshape(len(x), -1), path, kx)
    n = x.shape[0]
    if labels is not None and conds is not None:
        raise DataFileError(f"{path}: give either labels ({ky!r}) or conditions ({kc!r}), not both")
    for key, a in ((ky, labels), (kc, conds)):
        if a is not None and a.shape[0] != n:
            raise DataFileError(f"{path}: array {key!r} has {a.shape[0]} rows, {kx!r} has {n}")
    out: dict = {"class_names": (), "source": str(path)}
    strata = None
    if labels is not None:
        if labels.ndim != 1:
            raise DataFileError(
                f"{path}: labels {ky!r} must be one class per row (N,), got shape {labels.shape}; "
                "store vectors as 'conditions'"
            )
        if np.issubdtype(labels.dtype, np.floating):
            frac = np.flatnonzero(labels != np.round(labels))
            if len(frac):
                raise DataFileError(
                    f"{path}: labels {ky!r} must be integer classes (or names), but row "
                    f"{frac[0] + 1} holds {labels[frac[0]]!r}; round them, or store real values "
                    "as 'conditions' (N, d)"
                )
            labels = labels.astype(np.int64)
        classes, y = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise DataFileError(f"{path}: labels {ky!r} hold one class only; drop them")
        out["class_names"] = tuple(str(_c.item()) for _c in classes)
        y_t, strata = torch.from_numpy(y.astype(np.int64)), y
    elif conds is not None:
        conds = np.asarray(conds, dtype=np.float64).reshape(n, -1)
        _check_finite(conds, path, kc)
        names = names or [f"c{i}" for i in range(conds.shape[1])]
        frame = pd.DataFrame(conds, columns=[str(v) for v in names])
        schema = AttributeSchema(
            Continuous(c, float(frame[c].min()), float(frame[c].max()))
            if frame[c].max() > frame[c].min() else Continuous(c, float(frame[c].min()),
                                                              float(frame[c].min()) + 1.0)
            for c in frame.columns
        )  # fmt: skip
        out["schema"] = schema
        y_t = _encode_conditions(frame, schema)
    else:
        y_t = torch.zeros(n, dtype=torch.int64)
    parts = split_indices(n, strata, seed)
    x_t = torch.from_numpy(x)
    if x.ndim == 2 and (x.min() < 0 or x.max() > 1):  # real vectors: standardised, as table columns
        out["table"] = _vector_table(x, parts[0])
        x_t = out["table"].encode(pd.DataFrame(x, columns=out["table"].names), str(path))
    return {**out, **{k: Split(x_t[i], y_t[i]) for k, i in zip(("train", "val", "test"), parts)}}


def _vector_table(x: np.ndarray, train_rows: np.ndarray) -> TableSchema:
    """Real vectors (N, D) as D continuous columns ``x0, x1, ...``, standardised with the
    training rows' mean and standard deviation (and clipped to their range when generated), so
    the table likelihood learns one scale per column and samples come back in the data's units."""
    fit = x[train_rows].astype(np.float64)
    columns = [
        TableColumn(f"x{i}", "continuous", (), float(fit[:, i].mean()),
                    float(fit[:, i].std()) or 1.0, False, float(fit[:, i].min()),
                    float(fit[:, i].max()))
        for i in range(x.shape[1])
    ]  # fmt: skip
    return TableSchema(columns)


def load_table(path: Path, *, image_size=None, condition=None, seed: int = 0) -> dict:
    """A CSV or Parquet table: ``condition`` columns condition, the other columns are data.

    The split comes first, so the standardisation of the data columns is the training rows'.
    """
    if image_size is not None:
        raise DataFileError(f"{path} is a table; image_size (--image-size) is for images")
    frame = _read_table(path)
    check_rows(frame, str(path))
    condition = _check_names(condition, path)
    unknown = [c for c in condition if c not in frame.columns]
    if unknown:
        raise DataFileError(
            f"{path} has no column(s) {unknown}; condition columns must be among "
            f"{', '.join(map(str, frame.columns))}"
        )
    data_cols = [c for c in frame.columns if c not in condition]
    if not data_cols:
        raise DataFileError(f"{path}: every column is a condition; leave at least one as data")
    check_complete(frame, str(path))
    out: dict = {"class_names": (), "source": str(path)}
    strata = None
    if condition:
        schema = infer_attributes(frame[condition], str(path))
        out["schema"] = schema
        y = _encode_conditions(frame[condition], schema)
        strata = _strata(frame[condition], schema)
    else:
        y = torch.zeros(len(frame), dtype=torch.int64)
    parts = split_indices(len(frame), strata, seed)
    types = {str(c): TableSchema.type_of(frame[c]) for c in condition}
    table = TableSchema.infer(frame[data_cols], str(path), order=[str(c) for c in frame.columns],
                              fit_rows=parts[0], condition_types=types)  # fmt: skip
    x = table.encode(frame, str(path))
    out["table"] = table
    return {**out, **{k: Split(x[i], y[i]) for k, i in zip(("train", "val", "test"), parts)}}


#: file source name -> loader(path, image_size=, condition=, seed=) returning the splits
FILE_SOURCES: dict[str, Callable[..., dict]] = {
    "image-folder": load_image_folder,
    "image-attributes": load_image_attributes,
    "npz": load_npz,
    "table": load_table,
}


def detect_source(path: str | Path) -> str:
    """The source kind of a path: a key of :data:`FILE_SOURCES`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a folder of images, .npz, .csv or "
                                ".parquet file")  # fmt: skip
    if path.is_dir():
        if any(path.glob("*.csv")):
            return "image-attributes"
        return "image-folder"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in TABLE_SUFFIXES:
        return "table"
    raise DataFileError(
        f"{path}: unknown kind of file {suffix!r}; give a folder of images, an .npz, or a table "
        f"({', '.join(TABLE_SUFFIXES)})"
    )


def load_files(path: str | Path, *, source: str | None = None, image_size: int | None = None,
               condition=None, seed: int = 0) -> dict:  # fmt: skip
    """The splits of the user's data at ``path`` (the loader's dict, see :data:`FILE_SOURCES`)."""
    path = Path(path)
    kind = source or detect_source(path)
    if kind not in FILE_SOURCES:
        raise ValueError(f"unknown file source {kind!r}; choose one of {', '.join(FILE_SOURCES)}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):  # fmt: skip
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if isinstance(condition, str):
        condition = [c.strip() for c in condition.split(",") if c.strip()]
    parts = FILE_SOURCES[kind](path, image_size=image_size, condition=condition, seed=seed)
    parts["kind"] = kind
    return parts
