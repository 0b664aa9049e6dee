"""Data larger than memory: the user's files read batch by batch through ``torch.utils.data``.

:func:`stream_files` (``load_dataset(path, stream=True)``, ``pyro-cvae train --data PATH
--stream``) returns a :class:`StreamDataset`: the same splits, conditions, schemas and
binarisation as the in-memory :class:`~pyro_cvae.data.Dataset` of the same path and seed, but
its training split is a :class:`StreamSplit` that holds only the conditions ``y`` (and where each
item lives); the items are read when a batch asks for them, by ``DataLoader`` workers
(``workers=N``, ``--workers N``). The validation and test splits are read into memory the first
time they are used (validation, evaluation), as evaluation reads them whole.

What is the same as in memory, and why:

* the split: :func:`~pyro_cvae.data.files.split_indices` of the same labels or conditions and
  seed, so the same items fall in train, validation and test;
* the items: each image is decoded by :func:`~pyro_cvae.data.files.decode_image`, the function
  the in-memory path stacks; a table's rows are encoded by the same
  :class:`~pyro_cvae.data.tables.TableSchema`, inferred column by column (one column in memory
  at a time) with the standardisation of the training rows, then encoded chunk by chunk (CSV) or
  row group by row group (Parquet) into a memory-mapped cache of encoded rows under
  ``<data dir>/stream``, from which a batch reads its rows;
* the order: :meth:`StreamDataset.batches` draws the epoch's permutation exactly as
  :meth:`Dataset.batches` does, shards it the same way (``shard=(rank, world)``, under
  ``torchrun``), skips ``start`` batches without reading them (resume mid-epoch), and draws the
  dynamic binarisation in the main process from the global RNG, after the workers have read the
  batch: the same seed trains the same model, bit for bit, with any number of workers (the
  ``DataLoader`` gets a private generator, so creating it moves no global RNG).

The one difference: a ``"fixed"`` binarisation is drawn per item (seeded by the seed and the
item's position in the source) rather than in one draw over each split, so it is the same from
run to run but not the in-memory draw. MOSES and ``.npz`` files are not streamed (an ``.npz`` is
read whole by numpy; MOSES's properties are computed and cached in memory).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.utils.data

from .core import Dataset, Split, binarize_draw, default_data_dir, eval_binarize
from .files import (
    _check_names,
    _encode_conditions,
    _strata,
    decode_image,
    detect_source,
    image_attribute_files,
    image_folder_files,
    image_format,
    infer_attributes,
    split_indices,
)
from .tables import DataFileError, TableColumn, TableSchema, check_rows

__all__ = [
    "STREAM_SOURCES",
    "StreamDataset",
    "StreamSplit",
    "StreamedItems",
    "StreamedDataError",
    "inputs_to_check",
    "stream_files",
]

#: rows of a table read at once (a CSV chunk; a Parquet batch)
CHUNK_ROWS = 65_536
#: items read into memory to check a streamed split's shape and values against a model
CHECK_ITEMS = 256
_CACHE_VERSION = 1


class StreamedDataError(ValueError):
    """An operation that would read a whole streamed split into memory where that was not asked."""


def _as_is(batch):
    """The ``DataLoader``'s collate function: the items' ``__getitems__`` already stacked them."""
    return batch


class _Items(torch.utils.data.Dataset):
    """Items of a source by position; ``__getitems__`` reads a batch as one tensor."""

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.__getitems__([i])[0]


class ImageItems(_Items):
    """The images of a folder by position, decoded as the in-memory path decodes them."""

    def __init__(self, root: Path, names: list[str], grey: bool, image_size: int | None):
        self.root, self.names = Path(root), list(names)
        self.grey, self.image_size = grey, image_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitems__(self, idx) -> torch.Tensor:
        out = [decode_image(self.root / self.names[i], self.grey, self.image_size) for i in idx]
        return torch.from_numpy(np.stack(out))


class RowItems(_Items):
    """Encoded table rows by position, from a memory-mapped ``.npy`` cache (opened per worker)."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self._rows = Path(path), n, None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:  # a worker opens its own map
        return {**self.__dict__, "_rows": None}

    def __getitems__(self, idx) -> torch.Tensor:
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.ascontiguousarray(self._rows[np.asarray(idx, dtype=np.int64)]))


class FixedDraw(_Items):
    """A ``"fixed"`` binarisation of another source's items: one Bernoulli draw per item, seeded
    by ``seed`` and the item's position, so every read of an item gives the same binary item."""

    def __init__(self, items: _Items, seed: int):
        self.items, self.seed = items, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, idx) -> torch.Tensor:
        x = self.items.__getitems__(idx)
        for row, i in enumerate(idx):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
            x[row] = torch.bernoulli(x[row], generator=g)
        return x


class StreamedItems:
    """The ``x`` of a :class:`StreamSplit`: shaped and indexable like a tensor, read on demand.

    Indexing with an int, a slice, or integer indices reads those items (a tensor on the
    split's device); a boolean mask is refused, as it would read the whole split. ``min()`` and
    ``max()`` are the bounds of the values (``[0, 1]`` for images; a table's encoded range),
    which is what a choice of likelihood asks of them.
    """

    def __init__(self, split: StreamSplit):
        self._split = split

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._split), *self._split.item_shape))

    @property
    def device(self) -> torch.device:
        return self._split.device

    dtype = torch.float32

    def __len__(self) -> int:
        return len(self._split)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def min(self) -> torch.Tensor:
        return torch.tensor(self._split.bounds[0])

    def max(self) -> torch.Tensor:
        return torch.tensor(self._split.bounds[1])

    def __getitem__(self, key) -> torch.Tensor:
        n = len(self._split)
        if isinstance(key, int):
            return self._split.read(torch.tensor([key % n]))[0]
        if isinstance(key, slice):
            return self._split.read(torch.arange(n)[key])
        idx = torch.as_tensor(key)
        if idx.dtype == torch.bool:
            raise StreamedDataError(
                "a streamed split is read batch by batch; selecting items by a mask would read "
                "all of it into memory (semi-supervised training holds its images in memory): "
                "load the data without stream=True (drop --stream)"
            )
        return self._split.read(idx.cpu().long())


class StreamSplit:
    """One split of a :class:`StreamDataset`: its conditions ``y`` in memory, its items read
    when asked for, by ``DataLoader`` workers.

    Args:
        items: the source's items by position (a ``torch.utils.data.Dataset`` whose
            ``__getitems__`` reads a batch).
        positions: (N,) the positions in ``items`` of this split's items, in order.
        y: (N,) labels or (N, width) condition vectors.
        item_shape: the shape of one item, (C, H, W) or (D,).
        bounds: the bounds of the items' values.
        workers: ``DataLoader`` worker processes (0: read in this process).
    """

    def __init__(self, items, positions, y: torch.Tensor, item_shape, bounds=(0.0, 1.0), *,
                 workers: int = 0, device="cpu"):  # fmt: skip
        self.items, self.positions, self.y = items, torch.as_tensor(positions).long(), y
        self.item_shape, self.bounds = tuple(item_shape), tuple(bounds)
        self.workers, self.device = workers, torch.device(device)

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def x(self) -> StreamedItems:
        return StreamedItems(self)

    def _like(self, positions, y, device) -> StreamSplit:
        return StreamSplit(self.items, positions, y, self.item_shape, self.bounds,
                           workers=self.workers, device=device)  # fmt: skip

    def to(self, device) -> StreamSplit:
        return self._like(self.positions, self.y.to(device), device)

    def subset(self, n: int) -> StreamSplit:
        return self._like(self.positions[:n], self.y[:n], self.device)

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """The items at ``idx`` (indices into this split), read in this process."""
        if idx.numel() == 0:
            return torch.empty((0, *self.item_shape)).to(self.device)
        return self.items.__getitems__(self.positions[idx].tolist()).to(self.device)

    def read_batches(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The items of each batch of indices (into this split), in order, read by the workers."""
        loader = torch.utils.data.DataLoader(
            self.items,
            batch_sampler=[self.positions[b].tolist() for b in batches],
            num_workers=self.workers,
            collate_fn=_as_is,
            generator=torch.Generator(),  # its seed draw would otherwise move the global RNG
            pin_memory=self.device.type == "cuda",
        )
        for x in loader:
            yield x.to(self.device, non_blocking=True)

    def head(self, n: int = CHECK_ITEMS) -> Split:
        """The first ``n`` items and their conditions, in memory."""
        idx = torch.arange(min(n, len(self)))
        return Split(self.read(idx), self.y[: len(idx)])

    def materialize(self, batch_size: int = 256) -> Split:
        """The whole split in memory, as a :class:`~pyro_cvae.data.Split`."""
        batches = list(torch.arange(len(self)).split(batch_size))
        parts = list(self.read_batches(batches))
        x = torch.cat(parts) if parts else torch.empty((0, *self.item_shape)).to(self.device)
        return Split(x, self.y)


def inputs_to_check(split) -> tuple[torch.Tensor, torch.Tensor]:
    """What a model's input check reads of a split: all of an in-memory split; the first
    :data:`CHECK_ITEMS` items of a streamed one (decoded images are in [0, 1] and a table's rows
    are checked as they are encoded, so the rest holds no other surprise)."""
    if isinstance(split, StreamSplit):
        head = split.head()
        return head.x, split.y
    return split.x, split.y


class StreamDataset(Dataset):
    """A :class:`~pyro_cvae.data.Dataset` whose training split is streamed (:class:`StreamSplit`).

    ``val`` and ``test`` are read into memory the first time they are used, and are then plain
    :class:`~pyro_cvae.data.Split` objects; :meth:`batches` of the training split reads each
    batch through ``workers`` ``DataLoader`` workers.
    """

    def __init__(self, *args, workers: int = 0, **kw):
        self.workers = workers
        super().__init__(*args, **kw)

    def __repr__(self) -> str:  # the dataclass repr would read the evaluation splits
        return (f"StreamDataset(name={self.name!r}, train={len(self.train)} items streamed, "
                f"image_shape={self.image_shape}, workers={self.workers})")  # fmt: skip

    def _eval(name):  # noqa: N805 - a property factory, called in the class body
        key = "_" + name

        def get(self):
            split = self.__dict__[key]
            if isinstance(split, StreamSplit):
                split = self.__dict__[key] = split.materialize()
            return split

        def put(self, split):
            self.__dict__[key] = split

        return property(get, put, doc=f"The {name} split, read into memory on first use.")

    val = _eval("val")
    test = _eval("test")
    del _eval

    def _splits(self, fn) -> dict:
        return {k: fn(self.__dict__["_" + k]) for k in ("val", "test")}

    def _copy(self, train, val, test) -> StreamDataset:
        return StreamDataset(self.name, train, val, test, self.image_shape, self.num_classes,
                             self.class_names, self.binarize, dict(self.meta), self.schema,
                             self.table, workers=self.workers)  # fmt: skip

    def to(self, device) -> StreamDataset:
        s = self._splits(lambda s: s.to(device))
        return self._copy(self.train.to(device), s["val"], s["test"])

    def subset(self, n_train: int, n_eval: int | None = None) -> StreamDataset:
        n_eval = n_train if n_eval is None else n_eval
        s = self._splits(lambda s: s.subset(n_eval))
        return self._copy(self.train.subset(n_train), s["val"], s["test"])

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, start: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """The mini-batches of :meth:`Dataset.batches` (same order, shard, resume and dynamic
        binarisation), the items of the training split read by the workers."""
        data = self.train if split == "train" else getattr(self, split)
        if not isinstance(data, StreamSplit):
            yield from super().batches(split, batch_size, shuffle=shuffle, generator=generator,
                                       start=start, shard=shard)  # fmt: skip
            return
        n = len(data)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if shard is not None:
            rank, world = shard
            order = order[: (n // world) * world][rank::world]
        batches = list(order[start * batch_size :].split(batch_size))  # skipped: never read
        dynamic = self.binarize == "dynamic" and split == "train"
        for idx, x in zip(batches, data.read_batches(batches)):
            if dynamic:
                x = binarize_draw(x)
            yield x, data.y[idx.to(data.y.device)]

    def eval_split(self, split: str) -> Split:
        """As :meth:`Dataset.eval_split`; the training split is read whole into memory."""
        data = self.train.materialize() if split == "train" else getattr(self, split)
        if self.binarize != "dynamic":
            return data
        return Split(eval_binarize(data.x), data.y)


# ------------------------------------------------------------------ sources


def _image_source(files: list[Path], image_size, root: Path):
    grey, w, h = image_format(files, image_size)
    names = [str(p.relative_to(root)) for p in files]
    digest = hashlib.sha256()
    for p, name in zip(files, names):
        digest.update(f"{name}\0{p.stat().st_size}\n".encode())
    return ImageItems(root, names, grey, image_size), (1 if grey else 3, h, w), digest


def _stream_image_folder(path: Path, image_size, condition, seed, cache_dir) -> dict:
    files, y, names = image_folder_files(path, condition)
    items, shape, digest = _image_source(files, image_size, path)
    return dict(items=items, shape=shape, y=torch.from_numpy(y), strata=y if names else None,
                class_names=names, digest=digest, bounds=(0.0, 1.0), source=str(path))  # fmt: skip


def _stream_image_attributes(path: Path, image_size, condition, seed, cache_dir) -> dict:
    found = image_attribute_files(path, condition)
    items, shape, digest = _image_source(found["files"], image_size, path)
    return dict(items=items, shape=shape, y=found["y"], strata=found["strata"], class_names=(),
                schema=found["schema"], digest=digest, bounds=(0.0, 1.0),
                source=found["source"])  # fmt: skip


def _columns(path: Path) -> list[str]:
    try:
        if path.suffix.lower() == ".csv":
            return list(pd.read_csv(path, nrows=0).columns)
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as e:  # noqa: BLE001 - pandas and pyarrow raise many kinds
        raise DataFileError(f"{path}: cannot read the table ({e})") from None


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Whole columns of a table (dtypes inferred over every row, as a full read infers them)."""
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, usecols=columns)[columns]
    return pd.read_parquet(path, columns=columns)


def _chunks(path: Path, columns: list[str], dtypes: dict) -> Iterator[pd.DataFrame]:
    """The table's rows, a chunk (CSV) or record batch (Parquet) at a time."""
    if path.suffix.lower() == ".csv":
        yield from pd.read_csv(path, usecols=columns, dtype=dtypes, chunksize=CHUNK_ROWS)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
        yield batch.to_pandas()


def _first_missing(frame: pd.DataFrame, offset: int = 0):
    """``(row, column index)`` of the first missing cell, or ``None``."""
    missing = frame.isna().to_numpy()
    if not missing.any():
        return None
    row, col = (int(v[0]) for v in np.nonzero(missing))
    return row, col + offset


def _stream_table(path: Path, image_size, condition, seed, cache_dir) -> dict:
    """A table's schema inferred one column at a time, its rows encoded chunk by chunk into a
    memory-mapped cache; the same split, schema and encoded rows as
    :func:`~pyro_cvae.data.files.load_table`."""
    if image_size is not None:
        raise DataFileError(f"{path} is a table; image_size (--image-size) is for images")
    source = str(path)
    columns = _columns(path)
    condition = _check_names(condition, path)
    unknown = [c for c in condition if c not in columns]
    if unknown:
        raise DataFileError(
            f"{path} has no column(s) {unknown}; condition columns must be among "
            f"{', '.join(map(str, columns))}"
        )
    data_cols = [c for c in columns if c not in condition]
    if not data_cols:
        raise DataFileError(f"{path}: every column is a condition; leave at least one as data")
    cond = _read_columns(path, condition) if condition else _read_columns(path, data_cols[:1])
    n = len(cond)
    if n == 0:
        check_rows(pd.DataFrame(columns=columns), source)
    index = {c: i for i, c in enumerate(columns)}
    missing = []  # (row, column) of each column's first missing cell: the first one is refused
    for c in condition:
        m = _first_missing(cond[[c]], index[c])
        if m is not None:
            missing.append(m)
    out: dict = {"class_names": (), "source": source, "bounds": None}
    strata = None
    if condition and not missing:
        out["schema"] = schema = infer_attributes(cond, source)
        y = _encode_conditions(cond, schema)
        strata = _strata(cond, schema)
    else:
        y = torch.zeros(n, dtype=torch.int64)
    parts = split_indices(n, strata, seed) if not missing else None
    table_cols, dtypes, errors = [], {}, []
    for c in data_cols:
        series = _read_columns(path, [c])[c]
        m = _first_missing(series.to_frame(), index[c])
        if m is not None:
            missing.append(m)
            continue
        dtypes[c] = series.dtype
        if not missing:
            try:
                table_cols.append(TableColumn.infer(series, source, parts[0]))
            except DataFileError as e:
                errors.append(e)
        del series
    if missing:
        row, col = min(missing)
        raise DataFileError(
            f"{source}: row {row + 1}, column {columns[col]!r}: missing value; fill it in "
            "or drop the row"
        )
    if errors:
        raise errors[0]
    types = {str(c): TableSchema.type_of(cond[c]) for c in condition}
    table = TableSchema(table_cols, [str(c) for c in columns], types)
    out["table"] = table
    cache, digest = _encode_rows(path, table, n, dtypes, cache_dir, condition, seed)
    rows = np.load(cache, mmap_mode="r")
    out["bounds"] = (float(rows.min()), float(rows.max())) if rows.size else (0.0, 0.0)
    del rows
    return dict(**out, items=RowItems(cache, n), shape=(table.width,), y=y, strata=strata,
                digest=digest, parts=parts)  # fmt: skip


def _encode_rows(path: Path, table: TableSchema, n: int, dtypes: dict, cache_dir: Path,
                 condition, seed) -> tuple[Path, object]:  # fmt: skip
    """The cache of encoded rows (N, width) float32, written once per file and options."""
    stat = path.stat()
    what = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, list(condition), seed,
            table.to_dict(), _CACHE_VERSION)  # fmt: skip
    key = hashlib.sha256(repr(what).encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "stream"
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / f"{path.stem}-{key}.npy"
    digest = hashlib.sha256(key.encode())
    if cache.exists():
        return cache, digest
    tmp = folder / f"{cache.stem}.tmp.npy"
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, table.width))
    at = 0
    for chunk in _chunks(path, table.names, dtypes):
        x = table.encode(chunk, f"{path} (rows {at + 1}-{at + len(chunk)})").numpy()
        rows[at : at + len(x)] = x
        at += len(x)
    rows.flush()
    del rows
    if at != n:
        tmp.unlink()
        raise DataFileError(
            f"{path} changed while it was read ({n} rows, then {at}); read it again"
        )
    tmp.replace(cache)
    return cache, digest


#: file source -> streamed loader(path, image_size, condition, seed, cache_dir)
STREAM_SOURCES = {
    "image-folder": _stream_image_folder,
    "image-attributes": _stream_image_attributes,
    "table": _stream_table,
}


def stream_files(path: str | Path, *, source: str | None = None, binarize: str = "none",
                 seed: int = 0, train_size: int | None = None, image_size: int | None = None,
                 condition=None, workers: int = 0,
                 cache_dir: str | Path | None = None) -> StreamDataset:  # fmt: skip
    """The user's data at ``path`` as a :class:`StreamDataset` (see the module docstring);
    :func:`~pyro_cvae.data.load_dataset` with ``stream=True`` calls it.

    Args:
        path, source, binarize, seed, train_size, image_size, condition: as for
            :func:`~pyro_cvae.data.load_dataset` (the binarisation already resolved).
        workers: ``DataLoader`` worker processes that read the batches (0: this process).
        cache_dir: where a table's encoded rows are cached (default
            :func:`~pyro_cvae.data.default_data_dir`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0 (0 reads in this process), got "
                         f"{workers!r}")  # fmt: skip
    path = Path(path)
    kind = source or detect_source(path)
    if kind not in STREAM_SOURCES:
        raise ValueError(
            f"{path} is a {kind!r} source, which is read whole (numpy loads an .npz at once); "
            f"streaming reads {', '.join(STREAM_SOURCES)}: load it without stream=True (drop "
            "--stream)"
        )
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):  # fmt: skip
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if isinstance(condition, str):
        condition = [c.strip() for c in condition.split(",") if c.strip()]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_data_dir()
    found = STREAM_SOURCES[kind](path, image_size, condition, seed, cache_dir)
    items = found["items"]
    if binarize == "fixed":
        items = FixedDraw(items, seed)
    parts = found.get("parts") or split_indices(len(items), found["strata"], seed)
    y = found["y"]
    split = {k: StreamSplit(items, torch.from_numpy(i), y[torch.from_numpy(i)], found["shape"],
                            found["bounds"], workers=workers)
             for k, i in zip(("train", "val", "test"), parts)}  # fmt: skip
    digest = found["digest"]
    digest.update(y.numpy().tobytes())
    meta = dict(path=str(path.resolve()), source=kind, image_size=image_size,
                condition=list(condition or []), split_seed=seed, stream=True,
                stream_fingerprint=digest.hexdigest()[:16],
                class_names=list(found["class_names"]))  # fmt: skip
    if binarize == "fixed":
        meta["binarize_seed"] = seed
    data = StreamDataset(path.name, split["train"], split["val"], split["test"],
                         tuple(found["shape"]), len(found["class_names"]), found["class_names"],
                         binarize, meta, found.get("schema"), found.get("table"),
                         workers=workers)  # fmt: skip
    if train_size:
        data = data.subset(train_size)
        data.meta["train_size"] = train_size
    return data
