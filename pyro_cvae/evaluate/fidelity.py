r"""Fidelity and diversity of generated images in the feature space of our own judge classifier.

The judge is the label classifier of real images that also scores control, an argument of the
functions that need it (built by the caller, e.g. with :func:`pyro_cvae.train.train_classifier`;
:mod:`pyro_cvae.judge` builds it when given none); its penultimate layer (the last hidden
activations) is the feature space, so no downloaded network (Inception) is needed. In it:

- :func:`frechet_distance`: the Fréchet (2-Wasserstein) distance between Gaussians fitted to two
  feature sets, the FID of Heusel et al. (2017) with our judge in place of Inception;
- :func:`within_label_diversity`: the mean pairwise distance between features of images of one
  label (a generator that draws the same image for a label scores 0);
- :func:`sharpness`: how far pixels are from grey (a blurry mean image has many mid-tones);
- :func:`sample_quality`: all of these plus the control score for a grid of images generated per
  label, against the real test images.

References:
    1. M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter. GANs Trained by a Two
       Time-Scale Update Rule Converge to a Local Nash Equilibrium. NeurIPS 2017.
    2. D. C. Dowson, B. V. Landau. The Fréchet distance between multivariate normal
       distributions. Journal of Multivariate Analysis 12(3), 1982.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import Dataset, Split
from .control import JUDGE_KEY, classifier_accuracy, require_judge

__all__ = [
    "MIDTONE_RANGE", "classifier_features", "feature_moments", "frechet_distance",
    "gaussian_frechet", "label_diversity", "sample_quality", "sharpness",
    "within_label_diversity",
]  # fmt: skip

#: a pixel strictly inside this range counts as a mid-tone (neither ink nor background)
MIDTONE_RANGE = (0.1, 0.9)

Moments = tuple[torch.Tensor, torch.Tensor]


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by its eigendecomposition
    (negative round-off eigenvalues clipped to 0)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def feature_moments(feats: torch.Tensor) -> Moments:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (the covariance with the
    unbiased 1 / (N - 1) normalisation)."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(
            f"features must be a matrix (N, D) with N >= 2 rows, got shape {tuple(feats.shape)}"
        )
    f = feats.detach().to(torch.float64)
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def gaussian_frechet(mu1, sigma1, mu2, sigma2) -> float:
    r"""Squared Fréchet distance between :math:`N(\mu_1, \Sigma_1)` and :math:`N(\mu_2, \Sigma_2)`:

    .. math::
        d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Big(\Sigma_1 + \Sigma_2
              - 2\,\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big).

    The trace term uses the symmetric form :math:`(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}`,
    whose trace equals that of :math:`(\Sigma_1\Sigma_2)^{1/2}` in the usual formula but is the
    square root of a symmetric PSD matrix: two eigendecompositions, no complex round-off as with a
    general ``sqrtm``. For diagonal covariances it reduces to
    :math:`\sum_i (\sqrt{s_{1i}} - \sqrt{s_{2i}})^2 + \lVert \mu_1 - \mu_2 \rVert^2`.

    Args:
        mu1, mu2: means (D,).
        sigma1, sigma2: covariances (D, D), symmetric positive semi-definite.

    Returns:
        :math:`d^2` as a float (>= 0; clipped at 0 against round-off).
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t, dtype=torch.float64)
                                for t in (mu1, mu2, sigma1, sigma2))  # fmt: skip
    d = mu1.shape[-1]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"expected means (D,) and covariances (D, D) of one D, got {tuple(mu1.shape)}, "
            f"{tuple(sigma1.shape)}, {tuple(mu2.shape)}, {tuple(sigma2.shape)}"
        )
    root1 = _sqrt_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross
    return max(value.item(), 0.0)


def frechet_distance(a: torch.Tensor | Moments, b: torch.Tensor | Moments) -> float:
    """Squared Fréchet distance (FID-style) between two feature sets.

    Each argument is either features (N, D), whose mean and covariance are fitted with
    :func:`feature_moments`, or a ready ``(mean, covariance)`` pair; see
    :func:`gaussian_frechet` for the formula. Like every FID it is biased upward for small N:
    compare models at the same N, against the distance of N real images for a floor.
    """
    mu1, s1 = a if isinstance(a, tuple) else feature_moments(a)
    mu2, s2 = b if isinstance(b, tuple) else feature_moments(b)
    return gaussian_frechet(mu1, s1, mu2, s2)


@torch.no_grad()
def classifier_features(clf: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Penultimate-layer features (N, H) of images x (N, *shape) under a
    :class:`~pyro_cvae.models.LabelClassifier` (or its :class:`~pyro_cvae.nn.nets.Classifier`):
    the activations after the last hidden layer, i.e. the input of the final linear map."""
    net = getattr(clf, "net", clf)  # LabelClassifier -> Classifier
    mlp = net.net
    if not isinstance(mlp, nn.Sequential) or not isinstance(mlp[-1], nn.Linear) or len(mlp) < 2:
        raise ValueError(
            "classifier_features needs an MLP classifier with a hidden layer (a LabelClassifier "
            f"from pyro_cvae.train.train_classifier), got {type(clf).__name__}"
        )
    body = nn.Sequential(*list(mlp)[:-1])  # (slicing an MLP would call its own constructor)
    device = next(mlp.parameters()).device
    flat = x.reshape(x.shape[0], net.x_dim)
    return torch.cat(
        [body(flat[i : i + batch_size].to(device)).cpu() for i in range(0, len(flat), batch_size)]
    )


def within_label_diversity(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    r"""Mean pairwise Euclidean distance between features of items of the same label.

    For label c with items :math:`f_1, \dots, f_n`:
    :math:`\frac{1}{n(n-1)} \sum_{i \ne j} \lVert f_i - f_j \rVert`.

    Args:
        feats: features (N, D).
        labels: integer labels (N,).
        num_classes: C (default ``labels.max() + 1``); every label below C needs two items.

    Returns:
        the diversity of each label, shape (C,); ``.mean()`` is the usual summary.
    """
    if feats.dim() != 2 or labels.shape != feats.shape[:1]:
        raise ValueError(
            f"expected features (N, D) and labels (N,), got {tuple(feats.shape)} and "
            f"{tuple(labels.shape)}"
        )
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    out = torch.empty(num_classes, dtype=torch.float64)
    f = feats.detach().to(torch.float64)
    for c in range(num_classes):
        members = f[labels == c]
        n = members.shape[0]
        if n < 2:
            raise ValueError(f"label {c} has {n} item(s); within-label diversity needs at least 2")
        out[c] = torch.cdist(members, members).sum() / (n * (n - 1))
    return out


def sharpness(images: torch.Tensor) -> dict:
    """Two cheap sharpness proxies of images in [0, 1]: ``binariness``, the mean of
    ``|2 x - 1|`` (1 for pure ink and background, 0 for all grey), and ``midtone_fraction``, the
    fraction of pixels strictly inside :data:`MIDTONE_RANGE` (blur makes mid-tones)."""
    x = images.detach().to(torch.float64)
    lo, hi = MIDTONE_RANGE
    return {
        "binariness": (2 * x - 1).abs().mean().item(),
        "midtone_fraction": ((x > lo) & (x < hi)).double().mean().item(),
    }


@torch.no_grad()
def sample_quality(
    images: torch.Tensor,
    data: Dataset,
    *,
    classifier: nn.Module | None = None,
    reference: Split | None = None,
) -> dict:
    """Control, fidelity, diversity and sharpness of images generated per label.

    Args:
        images: (C, n, *image_shape) in [0, 1], row c generated for label c (n >= 2).
        data: the data set of the images (its test images the judge's accuracy and, by
            default, the reference).
        classifier: the judge, e.g. :func:`pyro_cvae.train.train_classifier` of ``data``.
            ``None``: :func:`pyro_cvae.judge.sample_quality` builds it so (cached); in
            :mod:`pyro_cvae.evaluate`, which trains nothing, it is an error.
        reference: real images to compare with (default ``data.test``).

    Returns:
        ``control_score`` (and ``per_class``): the fraction the judge labels as requested;
        ``frechet_distance`` to the reference in the judge's penultimate features;
        ``diversity`` (and ``per_class_diversity``): :func:`within_label_diversity` of the
        features; ``binariness`` and ``midtone_fraction`` (:func:`sharpness`);
        ``judge_test_accuracy``; ``num_images``.
    """
    num_classes, n = images.shape[:2]
    if n < 2:
        raise ValueError(f"sample_quality needs at least 2 images per label, got {n}")
    clf = require_judge(classifier, "sample_quality")
    reference = data.test if reference is None else reference
    labels = torch.arange(num_classes).repeat_interleave(n)
    flat = images.flatten(0, 1).cpu()
    device = next(clf.parameters()).device
    if device.type != "cpu":
        clf = copy.deepcopy(clf).cpu()
    feats = classifier_features(clf, flat)
    pred = clf(flat).argmax(-1).reshape(num_classes, n)
    per_class = (pred == torch.arange(num_classes)[:, None]).double().mean(1)
    diversity = within_label_diversity(feats, labels, num_classes)
    return {
        "control_score": per_class.mean().item(),
        "per_class": per_class.tolist(),
        "frechet_distance": frechet_distance(feats, classifier_features(clf, reference.x)),
        "diversity": diversity.mean().item(),
        "per_class_diversity": diversity.tolist(),
        **sharpness(flat),
        JUDGE_KEY: classifier_accuracy(clf, data.test),
        "num_images": int(flat.shape[0]),
    }


@torch.no_grad()
def label_diversity(
    model, data: Dataset, num_samples: int = 50, *, classifier: nn.Module | None = None
) -> dict:
    """Within-label diversity of a label model's samples beside that of the real test images.

    Draws ``num_samples`` images per label (the decoder's means, ``model.sample``) and takes the
    first ``num_samples`` test images of each label, and measures both with
    :func:`within_label_diversity` in the judge's features (:func:`classifier_features`). A model
    whose latent is unused draws near-identical images per label: its figure falls far below the
    real images'.

    Args:
        model: a label-conditioned model of images.
        data: its data set.
        num_samples: images per label (fewer if a label has fewer test images).
        classifier: the judge, e.g. :func:`pyro_cvae.train.train_classifier` of ``data``.
            ``None``: :func:`pyro_cvae.judge.label_diversity` builds it so (cached); in
            :mod:`pyro_cvae.evaluate`, which trains nothing, it is an error.

    Returns:
        ``diversity`` (generated), ``real_diversity`` (test images), ``diversity_samples`` (the
        images per label).
    """
    num_classes = model.config.num_classes
    if not num_classes or not data.is_image:
        raise ValueError("label_diversity needs a label-conditioned model of images")
    test = data.test
    counts = torch.bincount(test.y, minlength=num_classes)
    n = min(num_samples, int(counts.min()))
    if n < 2:
        raise ValueError(
            f"label_diversity needs 2 test images of every label; the rarest has {int(counts.min())}"
        )
    clf = require_judge(classifier, "label_diversity")
    model.eval()
    generated = model.sample(list(range(num_classes)), n).cpu()  # (C, n, C, H, W)
    real = torch.stack([test.x[test.y == c][:n] for c in range(num_classes)]).cpu()
    if next(clf.parameters()).device.type != "cpu":
        clf = copy.deepcopy(clf).cpu()
    labels = torch.arange(num_classes).repeat_interleave(n)
    div = {
        key: within_label_diversity(classifier_features(clf, images.flatten(0, 1)), labels)
        .mean()
        .item()
        for key, images in (("diversity", generated), ("real_diversity", real))
    }
    return {**div, "diversity_samples": n}
