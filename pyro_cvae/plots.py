"""Figures: image grids, conditional samples, reconstructions, curves, latent scatter.

Every function takes tensors (or a history), draws with matplotlib's non-interactive ``Agg``
backend, writes a PNG when ``path`` is given and returns the figure. Training never draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

__all__ = [
    "image_grid",
    "samples_grid",
    "reconstructions",
    "training_curves",
    "latent_scatter",
    "image_strip",
    "transfer_grid",
    "score_histogram",
]


def _finish(fig, path: str | Path | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def _grid_image(images: torch.Tensor, nrow: int) -> torch.Tensor:
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    return grid.permute(1, 2, 0)  # (H, W, 3)


def image_grid(
    images: torch.Tensor,
    nrow: int = 10,
    *,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    path: str | Path | None = None,
    cell_inches: float = 0.45,
):
    """A grid of images (N, C, H, W) in [0, 1], ``nrow`` per row, with optional row labels."""
    n = images.shape[0]
    rows = (n + nrow - 1) // nrow
    fig, ax = plt.subplots(figsize=(max(2.0, nrow * cell_inches), max(1.0, rows * cell_inches)))
    grid = _grid_image(images, nrow)
    ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        h = images.shape[-2] + 1
        ax.set_yticks([1 + h * (i + 0.5) for i in range(len(row_labels))])
        ax.set_yticklabels(row_labels)
    else:
        ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def samples_grid(
    samples: torch.Tensor,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "conditional samples (one row per label)",
    path: str | Path | None = None,
):
    """Conditional samples (M, n, C, H, W) as one row per condition."""
    M, n = samples.shape[:2]
    return image_grid(samples.flatten(0, 1), nrow=n, title=title, row_labels=class_names, path=path)


def reconstructions(
    x: torch.Tensor, x_hat: torch.Tensor, *, n: int = 10, path: str | Path | None = None
):
    """Originals (top row) above their reconstructions (bottom row)."""
    n = min(n, x.shape[0])
    both = torch.cat([x[:n].cpu(), x_hat[:n].cpu()])
    return image_grid(
        both, nrow=n, title="data (top) and reconstructions (bottom)",
        row_labels=["data", "recon"], path=path,
    )  # fmt: skip


def image_strip(images: torch.Tensor, *, title: str | None = None, path=None):
    """One row of images (N, C, H, W), e.g. an interpolation."""
    return image_grid(images, nrow=images.shape[0], title=title, path=path)


def training_curves(rows: Sequence[dict], *, path: str | Path | None = None):
    """Training loss and validation bound per image against epoch."""
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train loss (-bound)")
    val = [(r["epoch"], -r["val_elbo"]) for r in rows if r.get("val_elbo") not in (None, "")]
    if val:
        ax.plot(*zip(*val), label="validation -ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def latent_scatter(
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    *,
    path: str | Path | None = None,
):
    """Posterior means (N, D) in 2-D (the first two principal components when D > 2)."""
    z = z.detach().cpu()
    method = "z"
    if z.shape[1] > 2:
        z = torch.from_numpy(PCA(n_components=2).fit_transform(z.numpy()))
        method = "PCA of z"
    elif z.shape[1] == 1:
        z = torch.cat([z, torch.zeros_like(z)], dim=1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6)
    else:
        labels = labels.cpu()
        cmap = plt.get_cmap("tab10")
        for c in labels.unique().tolist():
            m = labels == c
            name = class_names[c] if class_names else str(c)
            ax.scatter(z[m, 0], z[m, 1], s=4, alpha=0.7, color=cmap(c % 10), label=name)
        ax.legend(markerscale=3, fontsize=7, ncol=2)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title("posterior means E_q[z | x, y]")
    fig.tight_layout()
    return _finish(fig, path)


def transfer_grid(
    x: torch.Tensor,
    images: torch.Tensor,
    column_names: Sequence[str],
    *,
    path: str | Path | None = None,
):
    """Style transfer: each input image (N, C, H, W) followed by its redrawings (N, L, C, H, W)."""
    N, L = images.shape[:2]
    cells = torch.cat([x.detach().cpu()[:, None], images.detach().cpu()], dim=1)  # (N, L+1, ...)
    fig = image_grid(cells.flatten(0, 1), nrow=L + 1, title="input | the same latent decoded as")
    ax = fig.axes[0]
    w = images.shape[-1] + 1
    ax.set_xticks([1 + w * (j + 0.5) for j in range(L + 1)])
    ax.set_xticklabels(["input", *column_names], rotation=90 if L > 12 else 0, fontsize=7)
    ax.xaxis.tick_top()
    return _finish(fig, path)


def score_histogram(
    groups: dict[str, torch.Tensor],
    *,
    xlabel: str = "-log p(x) (nats)",
    bins: int = 40,
    path: str | Path | None = None,
):
    """Histograms of anomaly scores, one per named group (e.g. normal and held-out images)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, scores in groups.items():
        ax.hist(scores.detach().cpu().numpy(), bins=bins, alpha=0.6, label=name, density=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if len(groups) > 1:
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path)
