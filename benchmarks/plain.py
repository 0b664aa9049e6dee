"""Hand-written PyTorch references: the same networks and losses as the Pyro CVAE, no Pyro.

These are written to be fast (one fused optimizer, no per-item Dataset, no Python loop over
particles), so the ratios in the benchmark are against a serious baseline.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class PlainCVAE(nn.Module):
    """The MLP CVAE of ``pyro_cvae.nn.nets`` (ReLU MLPs, softplus scale) written directly."""

    def __init__(self, x_dim: int, num_classes: int, hidden: tuple[int, ...], latent: int):
        super().__init__()
        self.num_classes, self.latent = num_classes, latent
        enc, dec = [], []
        sizes = [x_dim + num_classes, *hidden, 2 * latent]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            enc += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        sizes = [latent + num_classes, *reversed(hidden), x_dim]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            dec += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.enc, self.dec = nn.Sequential(*enc), nn.Sequential(*dec)

    def log_weights(self, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x, z_k | y) - log q(z_k | x, y) for k reparameterized draws: (k, B)."""
        c = F.one_hot(y, self.num_classes).to(x.dtype)
        xf = x.flatten(1)
        loc, raw = self.enc(torch.cat([xf, c], -1)).chunk(2, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.randn((k,) + loc.shape, dtype=x.dtype, device=x.device)
        z = loc + scale * eps  # (k, B, D)
        logits = self.dec(torch.cat([z, c.expand(k, -1, -1)], -1))  # (k, B, x_dim)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, xf.expand(k, -1, -1), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * (z**2).sum(-1) - 0.5 * self.latent * math.log(2 * math.pi)
        log_qz = (
            -0.5 * (eps**2).sum(-1)
            - scale.log().sum(-1)
            - 0.5 * self.latent * math.log(2 * math.pi)
        )
        return log_px + log_pz - log_qz

    def elbo_loss(self, x, y):
        """-ELBO summed over the batch, one particle: the leanest form of ``log_weights``."""
        c = F.one_hot(y, self.num_classes).to(x.dtype)
        xf = x.flatten(1)
        loc, raw = self.enc(torch.cat([xf, c], -1)).chunk(2, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        logits = self.dec(torch.cat([z, c], -1))
        # -log p(x|z) - log p(z) + log q(z|x); the log(2 pi) terms of p(z) and q(z|x) cancel
        nll = F.binary_cross_entropy_with_logits(logits, xf, reduction="sum")
        return nll + 0.5 * (z.pow(2).sum() - eps.pow(2).sum()) - scale.log().sum()

    def iwae_loss(self, x, y, k):
        lw = self.log_weights(x, y, k)
        return -(torch.logsumexp(lw, 0) - math.log(k)).sum()


def plain_epoch(model: PlainCVAE, opt, x, y, batch_size: int, k: int = 0, seed: int = 0) -> float:
    """One epoch of the hand-written loop (dynamic binarisation, shuffled); returns the loss."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    order = order.to(x.device)
    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        idx = order[i : i + batch_size]
        xb = x[idx]
        xb = (torch.rand_like(xb) < xb).to(xb.dtype)  # dynamic binarisation (faster than bernoulli)
        loss = model.elbo_loss(xb, y[idx]) if k == 0 else model.iwae_loss(xb, y[idx], k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
    return total / x.shape[0]
