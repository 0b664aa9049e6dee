r"""Evaluation: bounds, importance-sampled log-likelihoods, active units, control score.

All functions are ``@torch.no_grad()`` and work in chunks so memory stays bounded.

The importance-sampled estimate of :math:`\log p(x | y)` with K samples from the guide,

.. math:: \hat{\mathcal L}_K(x) = \log \frac1K \sum_{k=1}^K
          \frac{p(x, z_k | y)}{q(z_k | x, y)}, \quad z_k \sim q(z | x, y),

is a stochastic lower bound that rises to :math:`\log p(x|y)` as K grows [1]; K = 5000 is the
test estimate of the IWAE paper. Active units [1]: latent dimensions with
:math:`\mathrm{Cov}_x(\mathbb E_{q(z|x)}[z_i]) > 0.01`.

References:
    [1] Burda, Grosse and Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

from __future__ import annotations

import copy
import hashlib
import math

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import Dataset, Split, default_data_dir
from .nets import Classifier
from .objectives import ImportanceWeightedELBO, importance_log_weights

__all__ = [
    "log_weights",
    "importance_log_likelihood",
    "bits_per_dim",
    "elbo_per_image",
    "log_likelihood",
    "log_marginal",
    "generative_classify",
    "active_units",
    "train_classifier",
    "control_score",
    "evaluate",
]


def _labels(model, y):
    return y if model.config.cond_width else None


@torch.no_grad()
def log_weights(model, x: torch.Tensor, y: torch.Tensor | None, num_samples: int) -> torch.Tensor:
    """log p(x, z_k | y) - log q(z_k | x, y) for K = ``num_samples`` draws: shape (K, B)."""
    _check_num_samples(num_samples)
    elbo = ImportanceWeightedELBO(num_particles=num_samples)
    log_w, _, _ = importance_log_weights(elbo, model.model, model.guide, x, y)
    return log_w


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


@torch.no_grad()
def elbo_per_image(model, split: Split, batch_size: int = 1000, num_samples: int = 1):
    """The ELBO of every image (nats), averaged over ``num_samples`` draws: shape (N,)."""
    out = []
    y_all = _labels(model, split.y)
    for s in _batches(len(split), batch_size):
        y = None if y_all is None else y_all[s]
        out.append(log_weights(model, split.x[s], y, num_samples).mean(0))
    return torch.cat(out) if out else torch.zeros(0)


#: floats of decoder output per chunk of particles in :func:`log_likelihood` (16 MiB). Chunks
#: this size keep the elementwise log-density work in cache: on a 2-core CPU, MNIST at K = 5000
#: runs about 1.5x as fast as with 2^25 in a fraction of the memory (benchmarks/results.md).
DEFAULT_MAX_FLOATS = 2**22


def _chunk_size(num_samples: int, batch: int, x_dim: int, budget: int) -> int:
    """Particles per chunk so that one chunk's decoder output has at most ``budget`` floats."""
    return max(1, min(num_samples, budget // max(1, batch * x_dim)))


def _check_num_samples(num_samples) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"num_samples (K) must be an integer >= 1, got {num_samples!r}; e.g. 5000 for a "
            "test log-likelihood"
        )


@torch.no_grad()
def importance_log_likelihood(
    model_fn,
    guide_fn,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 5000,
    *,
    batch_size: int = 100,
    max_floats: int = DEFAULT_MAX_FLOATS,
    progress: bool = False,
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x | y)` for any Pyro model/guide pair.

    The lower-level form of :func:`log_likelihood`: ``model_fn(x, y)`` and ``guide_fn(x, y)``
    are Pyro callables whose sample sites sit inside ``pyro.plate("data")`` over the first
    dimension of ``x``. Particles are drawn in chunks of at most ``max_floats / (batch * x_dim)``
    and combined with a running log-sum-exp, so memory does not grow with K.

    Returns:
        a tensor of shape (N,) in nats.

    Raises:
        ValueError: for K < 1, or when an estimate is NaN or infinite.
    """
    _check_num_samples(num_samples)
    x_dim = math.prod(x.shape[1:])
    results = []
    slices = list(_batches(x.shape[0], batch_size))
    for s in tqdm(slices, desc=f"log p(x) K={num_samples}", disable=not progress, leave=False):
        xb = x[s]
        yb = None if y is None else y[s]
        chunk = _chunk_size(num_samples, xb.shape[0], x_dim, max_floats)
        acc = torch.full((xb.shape[0],), -math.inf, device=x.device)
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            elbo = ImportanceWeightedELBO(num_particles=k)
            lw, _, _ = importance_log_weights(elbo, model_fn, guide_fn, xb, yb)  # (k, B)
            acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
            done += k
        est = acc - math.log(num_samples)
        bad = (~torch.isfinite(est)).nonzero().flatten()
        if len(bad):
            raise ValueError(
                f"the log-likelihood estimate is {est[bad[0]].item()} for {len(bad)} image(s), "
                f"first image index {s.start + bad[0].item()}; expected a finite number. The "
                "model or guide gave NaN or infinite log-densities: check the images are finite "
                "and in the likelihood's range and the checkpoint has not diverged"
            )
        results.append(est)
    return torch.cat(results) if results else torch.zeros(0)


@torch.no_grad()
def log_likelihood(
    model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 5000,
    *,
    batch_size: int = 100,
    max_floats: int = DEFAULT_MAX_FLOATS,
    progress: bool = False,
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x | y)` of each image with K = ``num_samples``.

    Particles are drawn in chunks and combined with a running log-sum-exp, so peak memory is set
    by ``batch_size`` and ``max_floats`` (floats of decoder output per chunk, default 2^22,
    i.e. 16 MiB), not by K or the number of images.

    Returns:
        a tensor of shape (N,) in nats.
    """
    _check_num_samples(num_samples)
    model.check_inputs(x, y)
    return importance_log_likelihood(
        model.model, model.guide, x, y, num_samples,
        batch_size=batch_size, max_floats=max_floats, progress=progress,
    )  # fmt: skip


def bits_per_dim(nats_per_image: float | torch.Tensor, num_dims: int):
    """Convert a negative log-likelihood in nats per image to bits per dimension."""
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer (e.g. 784), got {num_dims!r}")
    return nats_per_image / (num_dims * math.log(2))


@torch.no_grad()
def log_marginal(model, x: torch.Tensor, num_samples: int = 1000, *, prior=None, **kw):
    r"""Per-class :math:`\log p(x|y) + \log p(y)` (N, C) and :math:`\log p(x)` (N,).

    :math:`\log p(x) = \log \sum_y p(y)\, p(x | y)`, with a uniform :math:`p(y)` unless
    ``prior`` (C,) is given.
    """
    C = model.config.num_classes
    if not C:
        raise ValueError("log_marginal needs a label-conditioned model (num_classes > 0)")
    log_py = (
        torch.full((C,), -math.log(C), device=x.device)
        if prior is None
        else torch.as_tensor(prior, device=x.device).log()
    )
    cols = []
    for c in range(C):
        y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
        cols.append(log_likelihood(model, x, y, num_samples, **kw) + log_py[c])
    joint = torch.stack(cols, dim=-1)  # (N, C)
    return joint, torch.logsumexp(joint, dim=-1)


@torch.no_grad()
def generative_classify(model, x: torch.Tensor, num_samples: int = 100, **kw) -> torch.Tensor:
    """p(y | x) by Bayes' rule from the conditional likelihoods: (N, C) probabilities."""
    joint, marginal = log_marginal(model, x, num_samples, **kw)
    return (joint - marginal[:, None]).exp()


@torch.no_grad()
def active_units(model, x: torch.Tensor, y=None, threshold: float = 1e-2, batch_size: int = 1000):
    r"""Number of latent dimensions with :math:`\mathrm{Cov}_x(E_q[z_i]) >` ``threshold``."""
    means = []
    for s in _batches(x.shape[0], batch_size):
        c = model.condition(None if y is None else y[s], s.stop - s.start)
        loc, _ = model.encoder(x[s], c)
        means.append(loc)
    m = torch.cat(means)
    return int((m.var(dim=0) > threshold).sum().item()), m.var(dim=0)


# --------------------------------------------------------------------------- control score

_CLASSIFIERS: dict[str, nn.Module] = {}


def _classifier_key(data: Dataset) -> str:
    h = hashlib.sha256()
    h.update(data.name.encode())
    h.update(str(tuple(data.train.x.shape)).encode())
    h.update(data.train.x[:: max(1, len(data.train) // 64)].cpu().numpy().tobytes())
    return f"{data.name}-{h.hexdigest()[:12]}"


def train_classifier(
    data: Dataset, *, epochs: int | None = None, seed: int = 0, cache: bool = True
):
    """A small MLP classifier of the real training images (cached in memory and on disk).

    Used to check that images generated for a label look like that label.
    """
    key = _classifier_key(data)
    if cache and key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    clf = Classifier(data.image_shape, data.num_classes, (256,))
    path = default_data_dir() / "classifiers" / f"{key}.pt"
    if cache and path.exists():
        try:
            clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            _CLASSIFIERS[key] = clf.eval()
            return clf
        except Exception:  # noqa: BLE001 - a bad cache file is retrained and replaced
            pass
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(seed)
        clf = Classifier(data.image_shape, data.num_classes, (256,))
        opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
        x, y = data.train.x.cpu(), data.train.y.cpu()
        n = x.shape[0]
        epochs = epochs or max(3, min(60, 60000 // n))
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, 64):
                idx = perm[i : i + 64]
                loss = F.cross_entropy(clf(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    clf.eval()
    if cache:
        _CLASSIFIERS[key] = clf
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            import io

            from .checkpoint import atomic_write_bytes

            buf = io.BytesIO()
            torch.save(clf.state_dict(), buf)
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass
    return clf


@torch.no_grad()
def classifier_accuracy(clf: nn.Module, split: Split) -> float:
    """Accuracy of ``clf`` on a split, computed on the classifier's device."""
    device = next(clf.parameters()).device
    return (clf(split.x.to(device)).argmax(-1) == split.y.to(device)).float().mean().item()


@torch.no_grad()
def control_score(model, data: Dataset, num_per_class: int = 100, classifier=None) -> dict:
    """Fraction of images generated for each label that a classifier of real images labels so.

    Returns:
        ``{"control_score": overall, "per_class": [..], "classifier_test_accuracy": acc}``.
    """
    if not model.config.num_classes:
        raise ValueError("the control score needs a label-conditioned model (num_classes > 0)")
    clf = classifier or train_classifier(data)  # trained once on the CPU and cached
    device = model.device
    if next(clf.parameters()).device != device:  # judge on the model's device; cache untouched
        clf = copy.deepcopy(clf).to(device)
    labels = torch.arange(model.config.num_classes, device=device)
    images = model.sample(labels, num_per_class)  # (C, n, ...)
    pred = clf(images.flatten(0, 1)).argmax(-1).reshape(len(labels), num_per_class)
    per_class = (pred == labels[:, None]).float().mean(1)
    return {
        "control_score": per_class.mean().item(),
        "per_class": per_class.tolist(),
        "classifier_test_accuracy": classifier_accuracy(clf, data.test),
    }


@torch.no_grad()
def evaluate(
    model,
    data: Dataset,
    *,
    num_samples: int = 1000,
    split: str = "test",
    control: bool = True,
    classify_samples: int = 0,
    progress: bool = False,
    num_images: int | None = None,
    max_floats: int = DEFAULT_MAX_FLOATS,
) -> dict:
    """All test metrics of a model as a dict (nats per image unless stated).

    Keys: ``elbo``, ``nll`` (importance-sampled, K = ``num_samples``), ``bits_per_dim``,
    ``kl``, ``active_units``, and for labelled models ``control_score``; with
    ``classify_samples > 0`` also the generative classifier's accuracy.

    ``num_images`` evaluates the first N images of the split only (all when ``None``);
    ``max_floats`` bounds the memory of the log-likelihood (see :func:`log_likelihood`).
    """
    model.eval()
    device = model.device
    s = data.eval_split(split).to(device)
    if num_images is not None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(
                f"num_images must be a positive integer (first N images of the {split} split), "
                f"got {num_images!r}; pass None to evaluate all {len(s)}"
            )
        s = s.subset(num_images)
    y = _labels(model, s.y)
    elbo = elbo_per_image(model, s)
    ll = log_likelihood(model, s.x, y, num_samples, progress=progress, max_floats=max_floats)
    kl = _kl_per_image(model, s)
    n_active, _ = active_units(model, s.x, y)
    dims = math.prod(data.image_shape)
    out = {
        "split": split,
        "num_images": len(s),
        "num_samples": num_samples,
        "elbo": elbo.mean().item(),
        "nll": -ll.mean().item(),
        "bits_per_dim": bits_per_dim(-ll.mean().item(), dims),
        "kl": kl,
        "active_units": n_active,
        "latent_dim": model.config.latent_dim,
    }
    if control and model.config.num_classes:
        out.update(control_score(model, data))
    if classify_samples and model.config.num_classes:
        probs = generative_classify(model, s.x, classify_samples)
        out["generative_accuracy"] = (probs.argmax(-1) == s.y).float().mean().item()
    return out


@torch.no_grad()
def _kl_per_image(model, split: Split, num_samples: int = 10) -> float:
    """Monte Carlo KL(q(z|x,y) || p(z|y)) averaged over images (single-latent models)."""
    y = _labels(model, split.y)
    total = 0.0
    for s in _batches(len(split), 1000):
        yb = None if y is None else y[s]
        c = model.condition(yb, s.stop - s.start)
        q = model.q_dist(split.x[s], c)
        z = q.sample((num_samples,))  # (S, B, D)
        p = model.z_dist(c, z.shape[:-1])
        total += (q.log_prob(z) - p.log_prob(z)).mean(0).sum().item()
    return total / max(1, len(split))
