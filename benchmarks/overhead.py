"""Where a training step's time goes: plain PyTorch, the same model without Pyro, then with Pyro.

Usage: python -m benchmarks.overhead [--steps 500]

Four versions of one ELBO training step on the same MNIST batch (MLP hidden 400, latent 50,
batch 128), each a forward pass, ``loss.item()``, backward and a fused Adam step, run in turn so
that the machine's noise hits them alike (medians over ``steps``):

1. ``plain``: the hand-written loop of ``benchmarks/plain.py``;
2. ``modules``: pyro_cvae's networks and distributions called directly, no Pyro tracing
   (the cost of our modules and ``torch.distributions`` objects);
3. ``trace_elbo``: ``Trace_ELBO.differentiable_loss`` of the model and guide (Pyro's full
   tracing: the path before the lean one, and still the reference);
4. ``lean``: the same loss through :class:`pyro_cvae.infer.lean.LeanObjective` (one recording
   effect handler instead of Pyro's traces; the path ``fit`` takes);
5. ``svi_step``: :class:`pyro_cvae.infer.ModuleSVI.step` on the lean path (adds the finite loss
   and gradient checks): one training step of ``fit``.
"""

from __future__ import annotations

import torch

import pyro_cvae as pc
from benchmarks.common import median_step_ms, parser, training_step
from benchmarks.plain import PlainCVAE
from pyro_cvae.infer import ModuleSVI
from pyro_cvae.infer.lean import LeanObjective
from pyro_cvae.infer.objectives import make_objective


def run(dataset="mnist", steps=500, hidden=(400,), latent=50, batch_size=128, device="cpu",
        log=print) -> dict:  # fmt: skip
    data = pc.load_dataset(dataset, binarize="dynamic")
    x, y = data.train.x[:batch_size].to(device), data.train.y[:batch_size].to(device)
    x = (torch.rand_like(x) < x).to(x.dtype)
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=data.image_shape, num_classes=data.num_classes,
                    latent_dim=latent, hidden_dims=hidden).to(device)  # fmt: skip
    plain = PlainCVAE(x[0].numel(), data.num_classes, hidden, latent).to(device)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-4, fused=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    elbo = make_objective("elbo")
    lean = LeanObjective(make_objective("elbo"))
    svi = ModuleSVI(model.model, model.guide, opt, lean, model.parameters())

    def modules():  # the model's own computation, without Pyro
        c = model.condition(y, batch_size)
        q = model.q_dist(x, c)
        z = q.rsample()
        log_w = model.x_dist(z, c).log_prob(x) + model.z_dist(c, (batch_size,)).log_prob(z)
        return -(log_w - q.log_prob(z)).sum()

    variants = {
        "plain": training_step(lambda: plain.elbo_loss(x, y), opt_plain),
        "modules": training_step(modules, opt),
        "trace_elbo": training_step(
            lambda: elbo.differentiable_loss(model.model, model.guide, x, y), opt
        ),
        "lean": training_step(
            lambda: lean.differentiable_loss(model.model, model.guide, x, y), opt
        ),
        "svi_step": lambda: svi.step(x, y),
    }
    ms = median_step_ms(variants, steps, device, warmup=max(5, steps // 10))
    log(
        f"one ELBO step ({torch.device(device).type}), median ms: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
    )
    return ms


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=500, help="timed steps per version (500)")
    args = p.parse_args(argv)
    run(args.dataset, args.steps, device=args.device)


if __name__ == "__main__":
    main()
