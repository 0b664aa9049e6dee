"""KL weighting from outside the model: an effect handler that scales the latent sample sites.

``with scale_latents(beta, model.latent_sites):`` around a training step multiplies the log-densities of
the latent sites, in model and guide alike, by ``beta``: the ELBO becomes
:math:`E_q[\\log p(x | z)] - \\beta\\, \\mathrm{KL}(q(z | x) \\| p(z))` (beta-VAE, and KL warm-up when
the trainer raises beta from 0 to 1). This is what Pyro's ``examples/dmm.py`` does with its
annealing factor, here applied by the trainer around the step, so models keep no training
state. Observed sites are untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from pyro.poutine.messenger import Messenger

__all__ = ["ScaleLatentsMessenger", "scale_latents"]


class ScaleLatentsMessenger(Messenger):
    """Multiply the ``scale`` of the named sample sites by ``scale``.

    Args:
        scale: a positive number (the KL weight).
        sites: names of the sample sites to scale (``model.latent_sites``).
    """

    def __init__(self, scale: float, sites: Iterable[str]):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"the KL weight must be positive, got {scale!r}")
        self.scale = float(scale)
        self.sites = frozenset(sites)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["scale"] = self.scale * msg["scale"]


def scale_latents(scale: float, sites: Iterable[str]):
    """A handler scaling the sites ``sites`` by ``scale``; a no-op context when ``scale == 1``."""
    if scale == 1.0:
        return contextlib.nullcontext()
    return ScaleLatentsMessenger(scale, sites)
