r"""M1+M2 (Kingma et al. 2014, the stacked model): M2 on the latent features of a VAE.

Two stages, composed from the library's parts and trained by the one :func:`fit` loop:

1. **M1**, an unconditional :class:`~pyro_cvae.CVAE` (a VAE; [1]: latent 50, Gaussian
   q(z1 | x)) trained on *every* training image, labelled or not;
2. **M2** (:class:`~pyro_cvae.M2`) trained semi-supervised on features z1 ~ q(z1 | x), a fresh
   draw for every training batch (as in [1]'s code; ``resample=False``: one seeded draw per
   image, made once), with a Gaussian likelihood p(z1 | z2, y) (learned scale, starting at 1)
   and the missing labels enumerated; validation and test images are represented by the mean of
   q(z1 | x).

M2 sees only M1's **active units** by default (``units="active"``: the coordinates i with
Cov_x(E_q[z1_i]) > 0.01, :func:`~pyro_cvae.active_units`; ``units="all"``: every coordinate).
A unit M1 leaves unused has q(z1_i | x) = N(0, 1) whatever x is: pure noise in every draw, which
M2's bound must model and its classifier, from 100 labels, must learn to ignore (24 of 50 on
MNIST after 100 epochs of M1).

The fresh draws matter with 100 labels: M2's classifier sees each labelled image as a new z1
at every step instead of memorising 100 fixed points. Measured with 100 MNIST labels, M1 and M2
100 epochs each (``make experiments-long``, ``experiments/results/long/semi_m1m2/``): 4.38% test
error with fresh draws at the 26 active units, against 11.47% from one draw per image at all 50
units ([1]: 3.33%); on digits 25.35% against 32.59% (every unit of its M1 is active).

The scale starts at 1 (``m2_x_scale``), the scale of z1 under M1's prior, not at the image
default 0.1: at 0.1 the squared error of the coordinates M1 leaves unused (pure N(0, 1) noise in
the draws) dominates M2's unlabelled bound, and the learned scale moves slowly from there (at
lr 3e-4). ``experiments/semi_beyond_m2.py --m2-x-scale`` measures both.

The classifier of M1+M2 is M2's q(y | z1) at z1 = the mean of M1's q(z1 | x)
(:meth:`M1M2.classify`). [1] reports 3.33% test error with 100 MNIST labels (Table 1).

Both stages have their own run folder (``out/m1``, ``out/m2``), so :func:`fit_m1m2` with
``resume=True`` continues whichever stage was interrupted, with every guarantee of :func:`fit`
(checkpoints, NaN guards, the resume checks). The draws of the features are seeded (the fresh
ones by the global torch RNG, which checkpoints keep, like dynamic binarisation), so a resumed
M2 sees the features an uninterrupted one would.

References:
    [1] Kingma, Rezende, Mohamed and Welling, Semi-Supervised Learning with Deep Generative
        Models, NeurIPS 2014.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointError
from ..data import Dataset, Split, binarize_draw, eval_binarize
from ..evaluate.likelihood import active_units
from ..models import CVAE, M2, ModelConfig
from .config import SemiSupervisedConfig, TrainConfig
from .families import SemiSupervisedFamily
from .loop import History, fit

__all__ = ["M1M2", "M1M2Result", "M1FeatureFamily", "fit_m1m2", "m1_features", "m1_units"]

#: what ``units`` of :func:`fit_m1m2` may be
UNITS = ("active", "all")


class M1M2(nn.Module):
    """The stacked classifier: M2's q(y | z1) at the mean of M1's q(z1 | x).

    ``units``: the indices of the coordinates of z1 that M2 reads (default: all of them).
    """

    def __init__(self, m1: CVAE, m2: M2, units: torch.Tensor | None = None):
        super().__init__()
        self.m1, self.m2 = m1, m2
        if units is None:
            units = torch.arange(m1.config.latent_dim)
        self.register_buffer("units", torch.as_tensor(units, dtype=torch.long))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of q(z1 | x) at M2's units: (N, len(units))."""
        loc, _ = self.m1.encode(x)
        return loc[:, self.units]

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | z1) at z1 = E q(z1 | x): (N, C)."""
        return self.m2.class_probs(self.features(x))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label: (N,) integers."""
        return self.m2.classify(self.features(x))


@dataclass
class M1M2Result:
    """What :func:`fit_m1m2` returns: the stacked classifier, both histories, the features."""

    model: M1M2
    m1_history: History
    m2_history: History
    features: Dataset


@torch.no_grad()
def m1_units(m1: CVAE, data: Dataset, threshold: float = 1e-2) -> torch.Tensor:
    """The indices of M1's active units: Cov_x(E_q[z1_i]) > ``threshold`` over the training
    images (in their evaluation binarisation), :func:`~pyro_cvae.active_units`; (n_active,)."""
    _, variances = active_units(m1, data.eval_split("train").x, threshold=threshold)
    units = torch.nonzero(variances > threshold).flatten().cpu()
    if units.numel() == 0:
        raise ValueError(
            f"M1 has no active unit (no coordinate of z1 varies with x by more than {threshold}): "
            "train M1 longer, or pass units='all' to fit_m1m2"
        )
    return units


@torch.no_grad()
def m1_features(
    m1: CVAE, data: Dataset, seed: int = 0, batch_size: int = 2000,
    units: torch.Tensor | None = None,
) -> Dataset:  # fmt: skip
    """The data set M2 trains on: one seeded draw z1 ~ q(z1 | x) per training image, the mean of
    q(z1 | x) for validation and test images, at the coordinates ``units`` (default all); labels
    kept (-1 stays missing).

    Images of a dynamically binarised set are encoded in their fixed evaluation binarisation.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    units = torch.arange(m1.config.latent_dim) if units is None else units

    def encode(x: torch.Tensor, draw: bool) -> torch.Tensor:
        if data.binarize == "dynamic":
            x = eval_binarize(x)
        out = []
        for i in range(0, x.shape[0], batch_size):
            loc, scale = m1.encode(x[i : i + batch_size])
            if draw:
                noise = torch.randn(loc.shape, generator=g, dtype=loc.dtype).to(loc.device)
                loc = loc + scale * noise
            out.append(loc[:, units])
        return torch.cat(out) if out else torch.zeros(0, len(units))

    train = Split(encode(data.train.x, True), data.train.y)
    val, test = (Split(encode(s.x, False), s.y) for s in (data.val, data.test))
    return Dataset(
        f"{data.name}-m1", train, val, test, (len(units),), data.num_classes,
        data.class_names, "none", dict(data.meta),
    )  # fmt: skip


class M1FeatureFamily(SemiSupervisedFamily):
    """M2's training on M1's features with a fresh draw z1 ~ q(z1 | x) for every batch.

    The data set :func:`fit` receives is :func:`m1_features`' (its validation and test means are
    what the metrics score, its shapes what the checks read); the training batches are drawn
    from ``images``, the image data set, through the frozen ``m1``: a fresh binarisation of a
    dynamically binarised image, then z1 = loc + scale * eps.

    Args:
        labelled: as for :class:`~pyro_cvae.train.families.SemiSupervisedFamily`.
        m1: the trained M1 (a :class:`~pyro_cvae.CVAE` with no condition); never updated.
        images: the image data set M1 was trained on (the same training images, same order).
        units: the coordinates of z1 M2 sees (default all).
    """

    def __init__(self, labelled: torch.Tensor | None, m1: CVAE, images: Dataset,
                 units: torch.Tensor | None = None):  # fmt: skip
        super().__init__(labelled)
        self.m1, self.images = m1, images
        self.units = torch.arange(m1.config.latent_dim) if units is None else units

    def setup(self, data: Dataset, config: SemiSupervisedConfig) -> None:
        super().setup(data, config)
        x = self.images.train.x.to(self.x_l.device)
        if x.shape[0] != self.mask.shape[0]:
            raise ValueError(
                f"M1FeatureFamily: the features hold {self.mask.shape[0]} training images but "
                f"images holds {x.shape[0]}; pass the image data set the features came from"
            )
        self.x_l, self.x_u = x[self.mask], x[~self.mask]  # images, drawn into z1 per batch
        self.m1.to(x.device).eval()

    @torch.no_grad()
    def draw(self, x: torch.Tensor) -> torch.Tensor:
        """z1 ~ q(z1 | x) at the units for a batch of training images: (B, len(units))."""
        if self.images.binarize == "dynamic":
            x = binarize_draw(x)
        loc, scale = self.m1.encode(x)
        return (loc + scale * torch.randn_like(loc))[:, self.units]

    def checkpoint_state(self) -> dict:
        return {**super().checkpoint_state(), "m1_features": "resample"}

    def check_resume(self, path, ckpt: dict) -> None:
        super().check_resume(path, ckpt)
        if ckpt.get("m1_features") != "resample":
            raise CheckpointError(
                f"{path} was trained on one draw of M1's features per image; continue it with "
                "fit_m1m2(resample=False), or start the fresh-draw M2 in another folder"
            )

    def run_info(self) -> dict:
        return {**super().run_info(), "m1_features": "a fresh draw per batch",
                "m1_units": self.units.tolist()}  # fmt: skip


def fit_m1m2(
    data: Dataset,
    m1_config: TrainConfig | None = None,
    m2_config: SemiSupervisedConfig | None = None,
    *,
    m1_latent_dim: int = 50,
    m2_latent_dim: int = 50,
    hidden_dims: tuple[int, ...] = (500,),
    m2_x_scale: float = 1.0,
    resample: bool = True,
    units: str = "active",
    labelled: torch.Tensor | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> M1M2Result:
    """Train M1+M2 on partially labelled ``data``: M1 on every training image, then M2 on its
    features (see the module docstring).

    Args:
        data: image data; the labels of M2's labelled images are read, the others never.
        m1_config: M1's :class:`~pyro_cvae.TrainConfig` (default ``TrainConfig()``).
        m2_config: M2's :class:`~pyro_cvae.SemiSupervisedConfig` (the labelled images:
            ``num_labels`` / ``label_fraction`` / ``label_seed``, or ``labelled``).
        m1_latent_dim, m2_latent_dim: widths of z1 and z2 ([1]: 50 and 50).
        hidden_dims: hidden widths of every network ([1]: one layer of 500 for M2, two of 600
            for M1; one tuple here).
        m2_x_scale: the initial scale of M2's Gaussian p(z1 | z2, y), learned from there
            (default 1, the scale of z1 under M1's prior; see the module docstring).
        resample: draw M2's training features z1 ~ q(z1 | x) afresh for every batch
            (:class:`M1FeatureFamily`, the default); False: one seeded draw per image, made once.
        units: ``"active"`` (default): M2 models and classifies M1's active units only
            (:func:`m1_units`); ``"all"``: every coordinate of z1.
        labelled: a boolean mask or indices of the labelled training images (see
            :func:`~pyro_cvae.fit_semisupervised`).
        out: a folder for the two run folders ``m1`` and ``m2`` (None: nothing written).
        resume: continue the runs found in ``out``.
        seed: seeds both models' initialisation and the draw of the features.

    Returns:
        an :class:`M1M2Result`; ``m2_history`` has M1+M2's test accuracy per epoch.
    """
    m1_config = m1_config if m1_config is not None else TrainConfig(seed=seed)
    m2_config = m2_config if m2_config is not None else SemiSupervisedConfig(seed=seed)
    out = Path(out) if out is not None else None
    torch.manual_seed(seed)
    m1 = CVAE(ModelConfig(image_shape=data.image_shape, num_classes=0, latent_dim=m1_latent_dim,
                          hidden_dims=hidden_dims))  # fmt: skip
    h1 = fit(m1, data, m1_config, out=out / "m1" if out else None, resume=resume,
             progress=progress)  # fmt: skip
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    m1.eval()
    keep = m1_units(m1, data) if units == "active" else torch.arange(m1_latent_dim)
    features = m1_features(m1, data, seed, units=keep)
    torch.manual_seed(seed + 1)
    m2 = M2(ModelConfig(image_shape=(len(keep),), num_classes=data.num_classes,
                        latent_dim=m2_latent_dim, hidden_dims=hidden_dims,
                        likelihood="gaussian", learn_x_scale=True, x_scale=m2_x_scale))  # fmt: skip
    family = (M1FeatureFamily(labelled, m1, data, keep) if resample
              else SemiSupervisedFamily(labelled))  # fmt: skip
    h2 = fit(m2, features, m2_config, family=family, out=out / "m2" if out else None,
             resume=resume, progress=progress)  # fmt: skip
    return M1M2Result(M1M2(m1, m2, keep).eval(), h1, h2, features)
