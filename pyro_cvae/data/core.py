"""Data sets as in-memory tensors: splits, their condition, binarisation and mini-batches.

Every loader returns a :class:`Dataset` whose splits hold ``x`` of shape (N, C, H, W) with values
in [0, 1] and conditions ``y``: integer class labels (N,), or attribute vectors (N, width) when
the data set carries an :class:`~pyro_cvae.data.attributes.AttributeSchema`. The data sets here fit in memory, so batches are
slices of one tensor rather than a per-item ``torch.utils.data.Dataset`` (much faster on a CPU).

Binarisation (for the Bernoulli likelihood):

* ``"dynamic"``: a fresh Bernoulli draw of every training batch, each epoch (Burda et al., 2016);
* ``"fixed"``: one draw with a seed, made once when the data are loaded;
* ``"none"``: grey levels, for Gaussian and continuous-Bernoulli likelihoods.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .attributes import AttributeSchema
from .tables import TableSchema

__all__ = [
    "Split", "Dataset", "BINARIZATIONS", "EVAL_BINARIZE_SEED", "default_data_dir", "binarize_draw",
    "eval_binarize",
]  # fmt: skip

BINARIZATIONS = ("dynamic", "fixed", "none")

#: seed of the one Bernoulli draw that evaluation scores (:meth:`Dataset.eval_split`)
EVAL_BINARIZE_SEED = 12345


def eval_binarize(x: torch.Tensor) -> torch.Tensor:
    """One Bernoulli draw of grey-level images with :data:`EVAL_BINARIZE_SEED`, on CPU so that
    every device draws the same images; returned on ``x``'s device."""
    g = torch.Generator(device="cpu").manual_seed(EVAL_BINARIZE_SEED)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def binarize_draw(x: torch.Tensor) -> torch.Tensor:
    """A fresh binary image per call: each pixel is 1 with probability ``x`` (in [0, 1]).

    ``rand < x`` has the distribution of ``torch.bernoulli(x)`` and, on the CPU, costs a
    quarter of it (torch.bernoulli with tensor probabilities draws pixel by pixel: about 1 ms
    for a batch of 128 MNIST images, a tenth of a training step).
    """
    return (torch.rand_like(x) < x).to(x.dtype)


def default_data_dir() -> Path:
    """Folder searched for torchvision-style raw data: ``$PYRO_CVAE_DATA`` or ~/.cache/pyro_cvae."""
    return Path(os.environ.get("PYRO_CVAE_DATA", Path.home() / ".cache" / "pyro_cvae"))


@dataclass
class Split:
    """One split of a data set: images ``x`` (N, C, H, W) in [0, 1] (or vectors, table rows
    (N, D)) and conditions ``y``.

    ``y`` is (N,) integer class labels, or (N, width) attribute vectors; which one is told by
    the :class:`Dataset` it belongs to (:attr:`Dataset.condition`).
    """

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
    """Train / validation / test splits with their metadata and the description of the condition.

    The condition is class labels (``num_classes`` classes named ``class_names``; ``y`` of shape
    (N,)) unless ``schema`` is given: then ``y`` holds attribute vectors (N, schema.width)
    encoded by that :class:`~pyro_cvae.data.attributes.AttributeSchema`.

    Defaults, for data of one's own: ``image_shape`` is that of ``train.x``; ``num_classes`` is 0
    for vector conditions (``y`` of shape (N, d), or a ``schema``) and one more than the largest
    label otherwise; ``class_names`` are ``"0"``, ``"1"``, ... (none for vector conditions).
    """

    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    binarize: str = "none"
    meta: dict = field(default_factory=dict)
    schema: AttributeSchema | None = None
    #: the columns of a table data set (``x`` holds encoded rows of shape (N, table.width))
    table: TableSchema | None = None

    def __post_init__(self) -> None:
        if self.image_shape is None:
            self.image_shape = tuple(self.train.x.shape[1:])
        vectors = self.schema is not None or self.train.y.dim() == 2
        if self.num_classes is None:
            if vectors:
                self.num_classes = 0
            else:
                ys = [s.y for s in (self.train, self.val, self.test) if s.y.numel()]
                self.num_classes = max(int(y.max()) for y in ys) + 1 if ys else 0
        if self.class_names is None:
            self.class_names = tuple(str(i) for i in range(self.num_classes))

    @property
    def is_image(self) -> bool:
        """Whether the items are images (C, H, W) rather than vectors or table rows."""
        return len(self.image_shape) == 3

    @property
    def condition(self) -> str:
        """``"attributes"`` (``y`` holds schema vectors) or ``"labels"`` (``y`` holds classes)."""
        return "attributes" if self.schema is not None else "labels"

    def to(self, device) -> Dataset:
        return Dataset(
            self.name, self.train.to(device), self.val.to(device), self.test.to(device),
            self.image_shape, self.num_classes, self.class_names, self.binarize, dict(self.meta),
            self.schema, self.table,
        )  # fmt: skip

    def subset(self, n_train: int, n_eval: int | None = None) -> Dataset:
        """A smaller copy (first ``n_train`` training and ``n_eval`` val/test images)."""
        n_eval = n_train if n_eval is None else n_eval
        return Dataset(
            self.name, self.train.subset(n_train), self.val.subset(n_eval),
            self.test.subset(n_eval), self.image_shape, self.num_classes, self.class_names,
            self.binarize, dict(self.meta), self.schema, self.table,
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
        return Split(eval_binarize(data.x), data.y)
