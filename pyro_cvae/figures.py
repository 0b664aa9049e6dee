"""The standard pictures of a trained model, written into its run folder.

Training never draws; the command line (or a user) calls :func:`write_figures` afterwards. The
plotting itself is :mod:`pyro_cvae.plots`, which takes tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import plots
from .data import Dataset
from .models import kind_of
from .models.contract import device_of

__all__ = ["write_figures"]


@torch.no_grad()
def write_figures(model, data: Dataset, folder: str | Path, rows=None) -> list[Path]:
    """Write the pictures the model's kind names (:func:`pyro_cvae.models.kind_of`) into
    ``folder``: samples, reconstructions, the latent scatter, training curves (given ``rows``)
    and, for M2, analogies; returns the paths written. Models of vectors and table rows get the
    latent scatter and the curves, a model of the user's own class the curves only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figures = kind_of(model).figures(model)  # the pictures this kind of model gets
    if "samples" not in figures:
        return _latent_and_curves(model, data, folder, rows, figures)
    test = data.eval_split("test").to(model.device)
    y = test.y if model.config.cond_width else None
    if model.config.num_classes and _label_free_prior(model):
        # one prior draw per column, decoded with every label: a row varies the style, a
        # column keeps it (p(z) does not depend on the label, so each column is a model sample)
        labels = torch.arange(model.config.num_classes, device=model.device)
        c = model.condition(labels, len(labels))  # (M, c)
        z = model.sample_latents(c[:1], (10, 1))  # (10, 1, D)
        grid = model.decode_c(z, c).transpose(0, 1)  # (M, 10, C, H, W)
        plots.samples_grid(grid, data.class_names, path=folder / "samples.png",
                           title="samples: one row per label, one latent per column")  # fmt: skip
    elif model.config.num_classes:
        labels = torch.arange(model.config.num_classes, device=model.device)
        plots.samples_grid(model.sample(labels, 10), data.class_names, path=folder / "samples.png")
    elif model.config.condition_dim:  # vector conditions: those of the first test images
        conds = test.y[: min(10, len(test))]
        plots.samples_grid(model.sample(conds, 10), None,
                           title="samples (one row per test condition)",
                           path=folder / "samples.png")  # fmt: skip
    else:
        plots.image_grid(
            model.sample(None, 50), nrow=10, title="samples", path=folder / "samples.png"
        )
    written.append(folder / "samples.png")
    n = min(10, len(test))
    plots.reconstructions(
        test.x[:n],
        model.reconstruct(test.x[:n], None if y is None else y[:n]),
        path=folder / "reconstructions.png",
    )
    written.append(folder / "reconstructions.png")
    loc, _ = model.encode(test.x, y)
    labels = test.y if test.y.dim() == 1 else None
    plots.latent_scatter(loc, labels, data.class_names, path=folder / "latent.png")
    written.append(folder / "latent.png")
    if rows:
        plots.training_curves(rows, path=folder / "curves.png")
        written.append(folder / "curves.png")
    if "analogies" in figures:
        x = test.x[:n]
        plots.image_grid(torch.cat([x[:, None], model.analogies(x)], 1).flatten(0, 1),
                         nrow=model.config.num_classes + 1, path=folder / "analogies.png",
                         title="test image | re-generated with every label")  # fmt: skip
        written.append(folder / "analogies.png")
    return written


def _label_free_prior(model) -> bool:
    """Whether p(z | y) = p(z), so one latent can be decoded with every label (the standard
    normal prior of a one-layer CVAE)."""
    return model.config.prior == "normal" and not getattr(model.config, "latent_dims", ())


def _latent_and_curves(model, data: Dataset, folder: Path, rows, figures) -> list[Path]:
    """The latent scatter (where the kind has it) and the training curves."""
    written = []
    if "latent" in figures:
        test = data.eval_split("test").to(device_of(model))
        y = test.y if model.config.cond_width else None
        loc, _ = model.encode(test.x, y)
        labels = test.y if test.y.dim() == 1 and model.config.num_classes else None
        plots.latent_scatter(loc, labels, data.class_names, path=folder / "latent.png")
        written.append(folder / "latent.png")
    if rows and "curves" in figures:
        plots.training_curves(rows, path=folder / "curves.png")
        written.append(folder / "curves.png")
    return written
