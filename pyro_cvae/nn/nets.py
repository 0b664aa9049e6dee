"""Encoders, decoders and a classifier that take the data shape and broadcast over samples.

The data shape is (C, H, W) for images and (D,) for vectors and table rows; the MLP networks
flatten however many trailing dimensions it has.

Every network accepts inputs with extra leading dimensions (vectorized particles, enumerated
labels): ``z`` of shape (..., B, D) and a condition of shape (B, c) are broadcast to a common
(..., B) before they are concatenated, never concatenated blindly.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions.util import broadcast_shape
from torch import nn
from torch.nn import functional as F

__all__ = [
    "broadcast_cat",
    "MLP",
    "Encoder",
    "Decoder",
    "ConvEncoder",
    "ConvDecoder",
    "Classifier",
    "make_encoder",
    "make_decoder",
    "NETS",
    "ACTIVATIONS",
    "MIN_SCALE",
]

#: lower bound on posterior scales: keeps log q finite when an encoder saturates
MIN_SCALE = 1e-4


def broadcast_cat(*tensors: torch.Tensor | None) -> torch.Tensor:
    """Concatenate along the last dimension after broadcasting all leading dimensions.

    ``None`` entries (no condition) are skipped. Shapes (K, B, D) and (B, c) give (K, B, D + c).
    """
    parts = [t for t in tensors if t is not None]
    if len(parts) == 1:
        return parts[0]
    lead = parts[0].shape[:-1]
    if all(t.shape[:-1] == lead for t in parts):  # the training case: nothing to broadcast
        return torch.cat(parts, dim=-1)
    # pyro's broadcast_shape: the same rule as torch.broadcast_shapes, which in recent torch goes
    # through torch._refs and costs ~0.15 ms per call, a visible share of a training step
    batch = broadcast_shape(*(t.shape[:-1] for t in parts))
    return torch.cat([t.expand(batch + t.shape[-1:]) for t in parts], dim=-1)


#: activation name -> module class; ``ModelConfig.activation`` is one of its keys (the IWAE paper
#: uses tanh, most VAE code ReLU)
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(nn.Sequential):
    """Linear layers with ``activation`` (a name of :data:`ACTIVATIONS` or a module class)
    between them (none after the last)."""

    def __init__(self, sizes: list[int], activation: str | type[nn.Module] = "relu"):
        act = ACTIVATIONS[activation] if isinstance(activation, str) else activation
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)


def _loc_scale(h: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw = h.split(latent_dim, dim=-1)
    return loc, F.softplus(raw) + MIN_SCALE


class Encoder(nn.Module):
    """q(z | x, c) as an MLP: (..., B, *shape), (B, c) -> loc, scale of shape (..., B, D)."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu"):  # fmt: skip
        super().__init__()
        self.x_dim = math.prod(image_shape)
        self.event_dim = len(image_shape)
        self.latent_dim = latent_dim
        self.net = MLP([self.x_dim + cond_width, *hidden_dims, 2 * latent_dim], activation)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = x.reshape(x.shape[: x.dim() - self.event_dim] + (self.x_dim,))  # (..., B, C*H*W)
        return _loc_scale(self.net(broadcast_cat(h, c)), self.latent_dim)


class Decoder(nn.Module):
    """The parameters of p(x | z, c) as an MLP: (..., B, D), (B, c) -> (..., B, *shape)."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu"):  # fmt: skip
        super().__init__()
        self.image_shape = tuple(image_shape)
        sizes = [latent_dim + cond_width, *reversed(hidden_dims), math.prod(image_shape)]
        self.net = MLP(sizes, activation)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(broadcast_cat(z, c))
        return out.reshape(out.shape[:-1] + self.image_shape)


class ConvEncoder(nn.Module):
    """Two strided convolutions (28 -> 14 -> 7), then an MLP head that sees the condition."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu"):  # fmt: skip
        super().__init__()
        act = ACTIVATIONS[activation]
        c = image_shape[0]
        self.latent_dim = latent_dim
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), act(), nn.Conv2d(32, 64, 4, 2, 1), act()
        )
        self.head = nn.Sequential(
            nn.Linear(64 * 7 * 7 + cond_width, hidden_dims[0]),
            act(),
            nn.Linear(hidden_dims[0], 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        lead = x.shape[:-3]
        h = self.conv(x.reshape((-1,) + x.shape[-3:])).reshape(lead + (-1,))  # (..., B, 3136)
        return _loc_scale(self.head(broadcast_cat(h, c)), self.latent_dim)


class ConvDecoder(nn.Module):
    """An MLP from (z, c) to a 64x7x7 map, then two transposed convolutions to 28x28."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu"):  # fmt: skip
        super().__init__()
        act = ACTIVATIONS[activation]
        self.image_shape = tuple(image_shape)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_width, hidden_dims[0]),
            act(),
            nn.Linear(hidden_dims[0], 64 * 7 * 7),
            act(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            act(),
            nn.ConvTranspose2d(32, image_shape[0], 4, 2, 1),
        )

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(broadcast_cat(z, c))
        lead = h.shape[:-1]
        out = self.deconv(h.reshape(-1, 64, 7, 7))
        return out.reshape(lead + self.image_shape)


class Classifier(nn.Module):
    """An MLP classifier of images or vectors: (..., *shape) -> logits (..., num_classes)."""

    def __init__(self, image_shape, num_classes: int, hidden_dims=(256,)):
        super().__init__()
        self.x_dim = math.prod(image_shape)
        self.event_dim = len(image_shape)
        self.net = MLP([self.x_dim, *hidden_dims, num_classes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[: x.dim() - self.event_dim] + (self.x_dim,)))


#: network family name -> (encoder class, decoder class); ``ModelConfig.net`` is one of its keys
NETS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (Encoder, Decoder),
    "conv": (ConvEncoder, ConvDecoder),
}


def make_encoder(net: str, image_shape, cond_width, hidden_dims, latent_dim,
                 activation: str = "relu") -> nn.Module:  # fmt: skip
    """Build the encoder of the network family ``net`` (a key of :data:`NETS`)."""
    return NETS[net][0](image_shape, cond_width, hidden_dims, latent_dim, activation)


def make_decoder(net: str, image_shape, cond_width, hidden_dims, latent_dim,
                 activation: str = "relu") -> nn.Module:  # fmt: skip
    """Build the decoder of the network family ``net`` (a key of :data:`NETS`)."""
    return NETS[net][1](image_shape, cond_width, hidden_dims, latent_dim, activation)
