"""``fit_semisupervised``: :func:`fit` with the semi-supervised family, the labelled images named."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import Dataset
from ..models import M2, kind_of
from .config import SemiSupervisedConfig
from .families import AuxiliaryFamily, SemiSupervisedFamily
from .loop import History, fit

__all__ = ["fit_semisupervised"]


def fit_semisupervised(
    model: M2,
    data: Dataset,
    config: SemiSupervisedConfig | None = None,
    *,
    labelled: torch.Tensor | None = None,
    out: str | Path | None = None,
    **kwargs,
) -> History:
    """Train an :class:`~pyro_cvae.M2` (or an ADGM / SDGM) on partially labelled ``data.train``.

    The same as ``fit(model, data, config, family=SemiSupervisedFamily(labelled))``
    (``AuxiliaryFamily`` for ADGM and SDGM): checkpoints,
    resume, Ctrl-C, non-finite guards and multi-process training as for every model. An epoch is
    one pass over the unlabelled images (``batch_size`` per step); every step also takes
    ``labelled_batch_size`` labelled images, cycling through them in a seeded order. The labels of
    unlabelled images are never read.

    Args:
        model: an :class:`~pyro_cvae.M2`.
        data: a :class:`~pyro_cvae.data.Dataset`; validation and test sets fully labelled.
        config: a :class:`~pyro_cvae.SemiSupervisedConfig`; keyword overrides replace fields.
        labelled: a boolean mask (N_train,) or indices of the labelled training images; default
            from ``config`` (see :class:`~pyro_cvae.SemiSupervisedConfig`).
        out, resume, overwrite, progress, pyro_validation, stop_after_steps: as for ``fit``.

    Returns:
        the :class:`~pyro_cvae.History`: per epoch ``train_loss`` (the objective per image,
        nats), ``val_accuracy`` and ``test_accuracy`` of q(y | x), ``seconds``.
    """
    # ADGM's and SDGM's family, else M2's (whose check refuses a model that is not an M2)
    family = AuxiliaryFamily if kind_of(model).family == "auxiliary" else SemiSupervisedFamily
    return fit(model, data, config, family=family(labelled), out=out, **kwargs)
