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

import math

import torch
from tqdm.auto import tqdm

from .._validate import num_particles
from ..data import eval_binarize
from ..infer.objectives import ImportanceWeightedELBO, importance_log_weights
from ..models.contract import check_inputs, check_model, latent_means, num_classes_of
from ..nn.likelihoods import BernoulliLikelihood

__all__ = [
    "DEFAULT_MAX_FLOATS",
    "importance_log_likelihood",
    "log_likelihood",
    "bits_per_dim",
    "log_marginal",
    "generative_classify",
    "active_units",
]


#: floats of decoder output per chunk of particles in :func:`log_likelihood` (16 MiB). Chunks
#: this size keep the elementwise log-density work in cache: on a 2-core CPU, MNIST at K = 5000
#: runs about 1.5x as fast as with 2^25 in a fraction of the memory (benchmarks/results.md).
DEFAULT_MAX_FLOATS = 2**22


def _chunk_size(num_samples: int, batch: int, x_dim: int, budget: int) -> int:
    """Particles per chunk so that one chunk's decoder output has at most ``budget`` floats."""
    return max(1, min(num_samples, budget // max(1, batch * x_dim)))


def _check_num_samples(num_samples) -> None:
    num_particles(num_samples, "num_samples (K)", "; e.g. 5000 for a test log-likelihood")


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
    n = x.shape[0]
    slices = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
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
    binarize: bool | None = None,
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x | y)` of each image with K = ``num_samples``.

    ``model`` is any model of the contract :class:`~pyro_cvae.models.contract.PyroModel`
    (``model(x, y)`` and ``guide(x, y)``, every sample site in ``pyro.plate("data")``): the
    library's own, or one written from scratch; its ``check_inputs`` runs where it has one.

    Particles are drawn in chunks and combined with a running log-sum-exp, so peak memory is set
    by ``batch_size`` and ``max_floats`` (floats of decoder output per chunk, default 2^22,
    i.e. 16 MiB), not by K or the number of images.

    A Bernoulli likelihood's support is {0, 1}. Grey-level images under it are refused unless
    ``binarize`` says what to score: ``True``, one seeded Bernoulli draw of ``x``
    (:func:`pyro_cvae.data.eval_binarize`, the draw :meth:`Dataset.eval_split` and
    :func:`pyro_cvae.evaluate` score); ``False``, the grey levels as soft targets (what a model
    trained with ``binarize="none"`` saw; not a likelihood of the images). Binary images and
    other likelihoods need no choice.

    Returns:
        a tensor of shape (N,) in nats.

    Raises:
        ValueError: grey-level images under a Bernoulli likelihood with ``binarize=None``.
    """
    _check_num_samples(num_samples)
    check_model(model, "estimate its log-likelihood")
    x = _support(model, x, binarize)
    check_inputs(model, x, y)
    return importance_log_likelihood(
        model.model, model.guide, x, y, num_samples,
        batch_size=batch_size, max_floats=max_floats, progress=progress,
    )  # fmt: skip


def _support(model, x: torch.Tensor, binarize: bool | None) -> torch.Tensor:
    """``x`` as it is to be scored: binarised when asked, refused when ambiguous."""
    if binarize is not None and not isinstance(binarize, bool):
        raise ValueError(f"binarize must be True, False or None, got {binarize!r}")
    if binarize:
        return eval_binarize(x)
    if binarize is None and isinstance(getattr(model, "likelihood", None), BernoulliLikelihood):
        grey = ((x > 0) & (x < 1)).flatten(1).any(1).nonzero().flatten()
        if len(grey):
            i = grey[0].item()
            v = x[i][(x[i] > 0) & (x[i] < 1)][0].item()
            raise ValueError(
                f"x holds grey levels ({len(grey)} of {x.shape[0]} images, e.g. {v:.4g} in image "
                f"{i}) but the model's likelihood is Bernoulli, whose support is {{0, 1}}; "
                "evaluate() scores one seeded binarisation instead (data.eval_split('test').x). "
                "Pass binarize=True to score that draw of x, or binarize=False to score the grey "
                "levels as soft targets (as a model trained with binarize='none' saw them)"
            )
    return x


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
    C = num_classes_of(model)
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
def active_units(model, x: torch.Tensor, y=None, threshold: float = 1e-2, batch_size: int = 1000,
                 site: str | None = None):  # fmt: skip
    r"""Number of latent dimensions with :math:`\mathrm{Cov}_x(E_q[z_i]) >` ``threshold``, and
    the variances (width,).

    The posterior means are those of the guide's distribution at ``site`` (default: its first
    latent site, ``"z"`` or ``"z1"``; :func:`~pyro_cvae.models.contract.latent_means`), so any
    model of the contract qualifies. ``y`` is what the guide receives (``None`` for a VAE).
    """
    means = []
    for i in range(0, x.shape[0], batch_size):
        s = slice(i, min(i + batch_size, x.shape[0]))
        means.append(latent_means(model, x[s], None if y is None else y[s], site))
    m = torch.cat(means)  # (N, width)
    return int((m.var(dim=0) > threshold).sum().item()), m.var(dim=0)
