"""Does compilation speed up a Pyro training step? Eager against two compiled variants.

Usage: python -m benchmarks.compilation [--steps 300] [--device cpu]

One ELBO step (MNIST batch of 128, MLP hidden 400, latent 50; forward, ``loss.item()``,
backward, fused Adam), median ms over ``steps``, the variants taking turns:

1. ``eager``: ``Trace_ELBO.differentiable_loss`` as the trainer runs it;
2. ``compiled_nets``: the same with the encoder and decoder compiled by ``torch.compile``
   (TorchDynamo cannot trace Pyro's effect handlers themselves: their messages are TypedDicts);
3. ``jit_trace``: the whole loss traced once by ``torch.jit.trace``, the module's parameters
   passed as inputs (what ``JitTrace_ELBO`` does with Pyro's parameter store); checked here to
   give the eager loss and gradients for the same noise before it is timed.

Not part of ``python -m benchmarks``: compiling takes tens of seconds on a small CPU.
"""

from __future__ import annotations

import time
import warnings

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.util import ignore_jit_warnings
from torch.nn.utils.stateless import _reparametrize_module

import pyro_cvae as pc
from benchmarks.common import median_step_ms, parser, training_step


def _model(data, hidden, latent, device):
    torch.manual_seed(0)
    return pc.CVAE(image_shape=data.image_shape, num_classes=data.num_classes,
                   latent_dim=latent, hidden_dims=hidden).to(device)  # fmt: skip


def run(dataset="mnist", steps=300, hidden=(400,), latent=50, batch_size=128, device="cpu",
        log=print) -> dict:  # fmt: skip
    data = pc.load_dataset(dataset, binarize="dynamic")
    x, y = data.train.x[:batch_size].to(device), data.train.y[:batch_size].to(device)
    x = (torch.rand_like(x) < x).to(x.dtype)
    elbo = Trace_ELBO()
    eager, nets, traced = (_model(data, hidden, latent, device) for _ in range(3))
    nets.encoder.compile()
    nets.decoder.compile()
    names = [n for n, _ in traced.named_parameters()]
    params = tuple(traced.parameters())

    def traced_loss(x, y, *values):
        with _reparametrize_module(traced, dict(zip(names, values))):
            return elbo.differentiable_loss(traced.model, traced.guide, x, y)

    with pyro.validation_enabled(False), warnings.catch_warnings(), ignore_jit_warnings():
        warnings.simplefilter("ignore")
        jit_loss = torch.jit.trace(traced_loss, (x, y) + params, check_trace=False)
        torch.manual_seed(1)
        a = jit_loss(x, y, *params)
        torch.manual_seed(1)
        b = elbo.differentiable_loss(traced.model, traced.guide, x, y)
        same_grad = all(
            torch.allclose(u, v, rtol=1e-5, atol=1e-6)
            for u, v in zip(torch.autograd.grad(a, params), torch.autograd.grad(b, params))
        )
    if not (torch.allclose(a, b, rtol=1e-6) and same_grad):
        raise RuntimeError("the traced loss differs from the eager one; its timing would mislead")

    def step(model, loss_fn):
        return training_step(loss_fn, torch.optim.Adam(model.parameters(), lr=1e-4, fused=True))

    variants = {
        "eager": step(eager, lambda: elbo.differentiable_loss(eager.model, eager.guide, x, y)),
        "compiled_nets": step(nets, lambda: elbo.differentiable_loss(nets.model, nets.guide, x, y)),
        "jit_trace": step(traced, lambda: jit_loss(x, y, *params)),
    }
    with pyro.validation_enabled(False):
        t0 = time.perf_counter()
        variants["compiled_nets"]()  # the first call compiles
        log(f"torch.compile of encoder and decoder: {time.perf_counter() - t0:.1f} s")
    ms = median_step_ms(variants, steps, device, warmup=20)
    log(f"one ELBO step ({torch.device(device).type}), median ms: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))  # fmt: skip
    return ms


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=300, help="timed steps per variant (300)")
    args = p.parse_args(argv)
    run(args.dataset, args.steps, device=args.device)


if __name__ == "__main__":
    main()
