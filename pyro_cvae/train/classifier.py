"""The judge of generated images: a classifier of the real training images, trained by :func:`fit`
once per data set and cached in memory and on disk (``<data dir>/classifiers``).

:mod:`pyro_cvae.evaluate` trains nothing and takes the judge as an argument; this is where it is
built (by the caller, or for the caller by :mod:`pyro_cvae.judge`)."""

from __future__ import annotations

import hashlib
import io

import pyro.util
import torch

from ..checkpoint import atomic_write_bytes
from ..data import Dataset, default_data_dir
from ..models import LabelClassifier
from .config import TrainConfig
from .loop import fit

__all__ = ["train_classifier"]

_CLASSIFIERS: dict[str, LabelClassifier] = {}


def _classifier_key(data: Dataset) -> str:
    h = hashlib.sha256()
    h.update(data.name.encode())
    h.update(str(tuple(data.train.x.shape)).encode())
    h.update(data.train.x[:: max(1, len(data.train) // 64)].cpu().numpy().tobytes())
    return f"{data.name}-{h.hexdigest()[:12]}"


def train_classifier(
    data: Dataset, *, epochs: int | None = None, seed: int = 0, cache: bool = True
) -> LabelClassifier:
    """A small MLP classifier of the real (grey-level) training images, in eval mode.

    Used to check that images generated for a label look like that label. Trained with
    :func:`pyro_cvae.fit` (cross-entropy, batches of 64, Adam 1e-3, ``epochs`` default
    ``max(3, min(60, 60000 // N))``) without touching the caller's random state.
    """
    key = _classifier_key(data)
    if cache and key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    path = default_data_dir() / "classifiers" / f"{key}.pt"
    if cache and path.exists():
        with torch.random.fork_rng(devices=[]):  # its random init must not move the caller's RNG
            clf = LabelClassifier(image_shape=data.image_shape, num_classes=data.num_classes)
        try:
            clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            _CLASSIFIERS[key] = clf.eval()
            return clf
        except Exception:  # noqa: BLE001 - a bad cache file is retrained and replaced
            pass
    grey = Dataset(data.name, data.train, data.val, data.test, data.image_shape,
                   data.num_classes, data.class_names, "none").to("cpu")  # fmt: skip
    epochs = epochs or max(3, min(60, 60000 // max(1, len(grey.train))))
    outer = pyro.util.get_rng_state()
    try:
        with torch.enable_grad():
            torch.manual_seed(seed)
            clf = LabelClassifier(image_shape=data.image_shape, num_classes=data.num_classes)
            fit(clf, grey, TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed,
                                      validate_every=0), progress=False)  # fmt: skip
    finally:
        pyro.util.set_rng_state(outer)
    clf.eval()
    if cache:
        _CLASSIFIERS[key] = clf
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            torch.save(clf.state_dict(), buf)
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass
    return clf
