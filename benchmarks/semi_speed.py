"""The enumerated semi-supervised (M2) epoch beside the ELBO epoch of the CVAE, side by side.

Usage: python -m benchmarks.semi_speed [--train-size 10000] [--repeats 3]

Both train on the same MNIST images with the same networks (hidden 400, latent 50) and the same
unlabelled batch size. An M2 epoch is one pass over the unlabelled images; each step also takes
a batch of labelled images (100 labels, cycled). In the unlabelled loss the label is summed out
exactly and in parallel (on ``fit``'s lean path: :func:`pyro_cvae.infer.semisupervised.enumerated_elbo`
of the label log weights, ``TraceEnum_ELBO``'s estimator), so the encoder q(z | x, y) and the
decoder run once per class:
about C = 10 times the work of a CVAE step, plus the classifier and the labelled batch. The
epochs alternate in one process; the medians of ``repeats`` timed epochs after one warm-up are
compared, each epoch timed by the trainers' own clock (training steps only, no evaluation).
"""

from __future__ import annotations

import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

import pyro_cvae as pc
from benchmarks.common import parser
from pyro_cvae.models import M2


def _step_flops(train_one_step) -> int:
    """Matrix-multiply FLOPs (forward and backward) of one optimisation step."""
    with FlopCounterMode(display=False) as counter:
        train_one_step()
    return counter.get_total_flops()


def run(dataset="mnist", repeats=3, hidden=(400,), latent=50, batch_size=128, train_size=10000,
        num_labels=100, labelled_batch_size=100, device="cpu", log=print) -> dict:  # fmt: skip
    data = pc.load_dataset(dataset, binarize="dynamic")
    if train_size:
        data = data.subset(train_size)
    shape, classes = data.image_shape, data.num_classes
    torch.manual_seed(0)
    cvae = pc.CVAE(image_shape=shape, num_classes=classes, latent_dim=latent, hidden_dims=hidden)
    m2 = M2(image_shape=shape, num_classes=classes, latent_dim=latent, hidden_dims=hidden)
    where = torch.device(device).type
    cvae_kw = dict(batch_size=batch_size, validate_every=0, progress=False, device=where)
    m2_kw = dict(batch_size=batch_size, labelled_batch_size=labelled_batch_size,
                 num_labels=num_labels, validate_every=0, progress=False,
                 device=where)  # fmt: skip
    flops_cvae = _step_flops(lambda: pc.fit(cvae, data, epochs=1, stop_after_steps=1, **cvae_kw))
    flops_m2 = _step_flops(
        lambda: pc.fit_semisupervised(m2, data, epochs=1, stop_after_steps=1, **m2_kw)
    )
    times = {"elbo": [], "m2": []}
    for r in range(repeats + 1):  # the first round warms up and is not counted
        h = pc.fit(cvae, data, epochs=1, seed=r, **cvae_kw)
        h2 = pc.fit_semisupervised(m2, data, epochs=1, seed=r, **m2_kw)
        if r:
            times["elbo"].append(h.last["seconds"])
            times["m2"].append(h2.last["seconds"])
    steps = -(-len(data.train) // batch_size)  # CVAE: ceil(N / batch) steps per epoch
    steps_m2 = -(-(len(data.train) - num_labels) // batch_size)  # M2: over the unlabelled
    elbo_s, m2_s = statistics.median(times["elbo"]), statistics.median(times["m2"])
    row = {
        "train_size": len(data.train),
        "elbo_s": elbo_s,
        "m2_s": m2_s,
        "ratio": m2_s / elbo_s,
        "flops_ratio": steps_m2 * flops_m2 / (steps * flops_cvae),  # work per epoch
        "elbo_gflops": steps * flops_cvae / elbo_s / 1e9,
        "m2_gflops": steps_m2 * flops_m2 / m2_s / 1e9,
    }
    log(f"{dataset} {where} semi-supervised M2 (enumerated, {num_labels} labels): "
        f"{m2_s:.2f}s/epoch, CVAE elbo {elbo_s:.2f}s/epoch, ratio {row['ratio']:.2f} (matmul "
        f"work {row['flops_ratio']:.2f}x)")  # fmt: skip
    return row


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per side (3)")
    p.add_argument("--train-size", type=int, default=10000, help="training images (10000)")
    args = p.parse_args(argv)
    run(args.dataset, args.repeats, train_size=args.train_size, device=args.device)


if __name__ == "__main__":
    main()
