"""The mixture priors' log-density: ``DiagonalNormalMixture`` against torch's ``MixtureSameFamily``.

Two measurements, both sides in one process taking turns:

* ``log_prob`` alone at the VampPrior's shapes (P = 500 components, D = 40): one training step's
  (forward and backward, 100 images) and one chunk of a K = 5000 evaluation (forward only,
  53 particles x 100 images, the chunk ``log_likelihood`` draws for MNIST), with the peak growth
  of memory of the evaluation chunk;
* ``log_likelihood`` at K = 5000 of a VampPrior VAE (the ``vamp VAE`` row of
  ``experiments/priors.py``: hidden 300-300, latent 40, 500 pseudo-inputs), the whole
  evaluation, with the prior's mixture built either way.

Usage: ``python -m benchmarks.mixture`` (writes ``benchmarks/results_mixture.md``);
``--tiny`` runs in seconds on the digits.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import pyro.distributions as dist
import torch

import pyro_cvae as pc
import pyro_cvae.nn.priors as priors_module
from benchmarks.common import median_step_ms
from benchmarks.eval_speed import peak_memory_growth
from pyro_cvae.nn.distributions import DiagonalNormalMixture

RESULTS = Path(__file__).resolve().parent / "results_mixture.md"


def torch_mixture(logits, loc, scale):
    """The mixture as torch builds it (what the priors used before)."""
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1)
    )


BUILDERS = {
    "DiagonalNormalMixture": DiagonalNormalMixture,
    "torch MixtureSameFamily": torch_mixture,
}


def log_prob_times(P: int, D: int, B: int, K: int, steps: int) -> dict:
    """Median ms of a training step's and an evaluation chunk's ``log_prob``, and the chunk's
    peak memory growth (MiB), for each builder."""
    torch.manual_seed(0)
    loc = torch.randn(P, D, requires_grad=True)
    scale = torch.rand(P, D).add(0.1).requires_grad_()
    logits = torch.zeros(P)
    z_train = torch.randn(B, D)
    z_eval = torch.randn(K, B, D)

    def train_step(make):
        def run():
            lp = make(logits, loc, scale).expand((B,)).log_prob(z_train)
            lp.sum().backward()

        return run

    def eval_chunk(make):
        def run():
            with torch.no_grad():
                return make(logits, loc, scale).expand((K, B)).log_prob(z_eval)

        return run

    train = median_step_ms({k: train_step(m) for k, m in BUILDERS.items()}, steps, "cpu", 3)
    chunk = median_step_ms({k: eval_chunk(m) for k, m in BUILDERS.items()}, steps, "cpu", 1)
    memory = {k: peak_memory_growth(eval_chunk(m))[1] for k, m in BUILDERS.items()}
    same = torch.allclose(
        *(eval_chunk(m)() for m in BUILDERS.values()), rtol=1e-5, atol=1e-3
    )  # fmt: skip
    return {"train_ms": train, "chunk_ms": chunk, "chunk_mib": memory, "same_values": same}


def likelihood_times(dataset: str, images: int, k: int, hidden, latent: int, P: int) -> dict:
    """Seconds of ``log_likelihood`` of an (untrained) VampPrior VAE with each builder, and the
    largest difference of the two estimates (same seed, so the same particles)."""
    data = pc.load_dataset(dataset, binarize="dynamic")
    test = data.eval_split("test")
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=data.image_shape, num_classes=0, latent_dim=latent,
                    hidden_dims=hidden, prior="vamp",
                    prior_options={"pseudo_inputs": P}).eval()  # fmt: skip
    seconds, estimates = {}, {}
    for name, make in BUILDERS.items():
        old = priors_module.DiagonalNormalMixture
        priors_module.DiagonalNormalMixture = make  # the prior builds its mixture this way
        try:
            torch.manual_seed(1)
            t0 = time.perf_counter()
            estimates[name] = pc.log_likelihood(model, test.x[:images], num_samples=k)
            seconds[name] = time.perf_counter() - t0
        finally:
            priors_module.DiagonalNormalMixture = old
    a, b = estimates.values()
    return {"seconds": seconds, "max_diff": (a - b).abs().max().item()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--images", type=int, default=20, help="test images of the log_likelihood run (20)"
    )
    p.add_argument(
        "--steps", type=int, default=20, help="timed calls per log_prob measurement (20)"
    )
    p.add_argument("--tiny", action="store_true", help="seconds, on the digits (the tests' check)")
    p.add_argument("--out", default=str(RESULTS), help="Markdown file to write")
    args = p.parse_args(argv)
    if args.images < 1 or args.steps < 1:
        p.error("--images and --steps must be >= 1")
    if args.tiny:
        sizes = {"P": 20, "D": 4, "B": 10, "K": 5, "steps": 2}
        ll = {"dataset": "digits", "images": 3, "k": 20, "hidden": (16,), "latent": 4, "P": 20}
    else:
        sizes = {"P": 500, "D": 40, "B": 100, "K": 53, "steps": args.steps}
        ll = {"dataset": "mnist", "images": args.images, "k": 5000, "hidden": (300, 300),
              "latent": 40, "P": 500}  # fmt: skip
    lp = log_prob_times(**sizes)
    llt = likelihood_times(**ll)
    ours, theirs = BUILDERS
    lines = [
        "# Mixture priors' log-density",
        "",
        f"Written by `python -m benchmarks.mixture{' --tiny' if args.tiny else ''}` on "
        f"{datetime.date.today()} (torch {torch.__version__}, {torch.get_num_threads()} torch "
        f"threads, CPU). Both sides in one process, taking turns; medians of {sizes['steps']} calls.",
        "",
        f"`log_prob` of a mixture of P = {sizes['P']} diagonal Gaussians in D = {sizes['D']} "
        f"dimensions (the VampPrior's shapes):",
        "",
        f"| | {ours} | {theirs} | ratio |",
        "|---|---|---|---|",
    ]
    for key, what in [("train_ms", f"training step, {sizes['B']} images, forward + backward (ms)"),
                      ("chunk_ms", f"evaluation chunk, {sizes['K']} x {sizes['B']} particles, forward (ms)"),
                      ("chunk_mib", "evaluation chunk, peak memory growth (MiB)")]:  # fmt: skip
        a, b = lp[key][ours], lp[key][theirs]
        lines.append(f"| {what} | {a:.1f} | {b:.1f} | {b / max(a, 1e-9):.1f}x |")
    s = llt["seconds"]
    lines += [
        "",
        f"Same values: {'yes' if lp['same_values'] else 'NO'} (evaluation chunk, rtol 1e-5).",
        "",
        f"`log_likelihood` with K = {ll['k']} of an untrained VampPrior VAE ({ll['dataset']}, "
        f"hidden {'-'.join(map(str, ll['hidden']))}, latent {ll['latent']}, {ll['P']} "
        f"pseudo-inputs) on {ll['images']} test images: {s[ours]:.1f} s with {ours}, "
        f"{s[theirs]:.1f} s with {theirs}: **{s[theirs] / s[ours]:.1f}x** faster; the two "
        f"estimates differ by at most {llt['max_diff']:.1e} nats.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
