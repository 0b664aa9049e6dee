"""Encoders, decoders and a classifier that take the data shape and broadcast over samples.

The data shape is (C, H, W) for images and (D,) for vectors and table rows; the MLP networks
flatten however many trailing dimensions it has.

Every network accepts inputs with extra leading dimensions (vectorized particles, enumerated
labels): ``z`` of shape (..., B, D) and a condition of shape (B, c) are broadcast to a common
(..., B) before they are concatenated, never concatenated blindly.

The built-in networks take two regularisers as keyword options: ``dropout`` (probability of
zeroing a hidden unit in training) and ``batch_norm`` (normalise each hidden layer). Batch norm
normalises over *all* leading dimensions, (K, B, F) flattened to (K * B, F), and uses its running
statistics in evaluation mode (``model.eval()``), where an item's output no longer depends on the
other items of its batch.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn
from torch.nn import functional as F

from ._common import MIN_SCALE, broadcast_cat
from .sequence import SEQUENCE_NETS

__all__ = [
    "broadcast_cat",
    "BatchNorm",
    "MLP",
    "Encoder",
    "Decoder",
    "ConvEncoder",
    "ConvDecoder",
    "Classifier",
    "make_encoder",
    "make_decoder",
    "register_net",
    "unknown_net_message",
    "NETS",
    "BUILTIN_NETS",
    "ACTIVATIONS",
    "MIN_SCALE",
]

#: activation name -> module class; ``ModelConfig.activation`` is one of its keys (the IWAE paper
#: uses tanh, Kingma et al.'s M2 code and Pyro's SS-VAE tutorial softplus, most VAE code ReLU)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


class BatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the last dimension over every leading one: (..., F) is normalised
    as (N, F) with N the product of the leading sizes (particles K, enumerated labels, batch B).

    In training mode the statistics are those of all N rows (a single row, which has none, is
    normalised with the running statistics); in evaluation mode the running statistics, so each
    row's output depends on that row alone.

    Reference: Ioffe and Szegedy, Batch Normalization, ICML 2015.
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.reshape(-1, h.shape[-1])  # (N, F)
        if self.training and flat.shape[0] == 1:  # BatchNorm1d refuses one row in training
            out = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias,
                               False, 0.0, self.eps)  # fmt: skip
        else:
            out = super().forward(flat)
        return out.reshape(h.shape)


def _activation(activation: str | type[nn.Module]) -> type[nn.Module]:
    return ACTIVATIONS[activation] if isinstance(activation, str) else activation


def _hidden(width: int, act: type[nn.Module], dropout: float, batch_norm: bool,
            conv: bool = False) -> list[nn.Module]:  # fmt: skip
    """What follows a hidden linear or convolutional layer: [batch norm], activation, [dropout].

    With neither option the list is the activation alone, so the ``state_dict`` keys of networks
    without them are those of earlier versions."""
    norm = [(nn.BatchNorm2d(width) if conv else BatchNorm(width))] if batch_norm else []
    drop = [nn.Dropout(dropout)] if dropout else []
    return [*norm, act(), *drop]


class MLP(nn.Sequential):
    """Linear layers with ``activation`` (a name of :data:`ACTIVATIONS` or a module class)
    between them (none after the last); optionally batch norm before and dropout after each
    activation."""

    def __init__(self, sizes: list[int], activation: str | type[nn.Module] = "relu",
                 dropout: float = 0.0, batch_norm: bool = False):  # fmt: skip
        act = _activation(activation)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.extend(_hidden(b, act, dropout, batch_norm))
        super().__init__(*layers)


def _loc_scale(h: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw = h.split(latent_dim, dim=-1)
    return loc, F.softplus(raw) + MIN_SCALE


class Encoder(nn.Module):
    """q(z | x, c) as an MLP: (..., B, *shape), (B, c) -> loc, scale of shape (..., B, D)."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu", *, dropout: float = 0.0,
                 batch_norm: bool = False):  # fmt: skip
        super().__init__()
        self.x_dim = math.prod(image_shape)
        self.event_dim = len(image_shape)
        self.latent_dim = latent_dim
        sizes = [self.x_dim + cond_width, *hidden_dims, 2 * latent_dim]
        self.net = MLP(sizes, activation, dropout, batch_norm)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = x.reshape(x.shape[: x.dim() - self.event_dim] + (self.x_dim,))  # (..., B, C*H*W)
        return _loc_scale(self.net(broadcast_cat(h, c)), self.latent_dim)


class Decoder(nn.Module):
    """The parameters of p(x | z, c) as an MLP: (..., B, D), (B, c) -> (..., B, *shape)."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu", *, dropout: float = 0.0,
                 batch_norm: bool = False):  # fmt: skip
        super().__init__()
        self.image_shape = tuple(image_shape)
        sizes = [latent_dim + cond_width, *reversed(hidden_dims), math.prod(image_shape)]
        self.net = MLP(sizes, activation, dropout, batch_norm)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(broadcast_cat(z, c))
        return out.reshape(out.shape[:-1] + self.image_shape)


class ConvEncoder(nn.Module):
    """Two strided convolutions (28 -> 14 -> 7), then an MLP head that sees the condition."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu", *, dropout: float = 0.0,
                 batch_norm: bool = False):  # fmt: skip
        super().__init__()
        act = ACTIVATIONS[activation]
        c = image_shape[0]
        self.latent_dim = latent_dim
        self.conv = nn.Sequential(  # (N, C, 28, 28) -> (N, 64, 7, 7), N = all leading dims
            nn.Conv2d(c, 32, 4, 2, 1), *_hidden(32, act, dropout, batch_norm, conv=True),
            nn.Conv2d(32, 64, 4, 2, 1), *_hidden(64, act, dropout, batch_norm, conv=True),
        )  # fmt: skip
        sizes = [64 * 7 * 7 + cond_width, hidden_dims[0], 2 * latent_dim]
        self.head = MLP(sizes, act, dropout, batch_norm)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        lead = x.shape[:-3]
        h = self.conv(x.reshape((-1,) + x.shape[-3:])).reshape(lead + (-1,))  # (..., B, 3136)
        return _loc_scale(self.head(broadcast_cat(h, c)), self.latent_dim)


class ConvDecoder(nn.Module):
    """An MLP from (z, c) to a 64x7x7 map, then two transposed convolutions to 28x28."""

    def __init__(self, image_shape, cond_width: int, hidden_dims, latent_dim: int,
                 activation: str = "relu", *, dropout: float = 0.0,
                 batch_norm: bool = False):  # fmt: skip
        super().__init__()
        act = ACTIVATIONS[activation]
        self.image_shape = tuple(image_shape)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_width, hidden_dims[0]),
            *_hidden(hidden_dims[0], act, dropout, batch_norm),
            nn.Linear(hidden_dims[0], 64 * 7 * 7),
            *_hidden(64 * 7 * 7, act, dropout, batch_norm),
        )
        self.deconv = nn.Sequential(  # (N, 64, 7, 7) -> (N, C, 28, 28), N = all leading dims
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            *_hidden(32, act, dropout, batch_norm, conv=True),
            nn.ConvTranspose2d(32, image_shape[0], 4, 2, 1),
        )

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(broadcast_cat(z, c))
        lead = h.shape[:-1]
        out = self.deconv(h.reshape(-1, 64, 7, 7))
        return out.reshape(lead + self.image_shape)


class Classifier(nn.Module):
    """An MLP classifier of images or vectors: (..., *shape) -> logits (..., num_classes)."""

    def __init__(self, image_shape, num_classes: int, hidden_dims=(256,), activation="relu"):
        super().__init__()
        self.x_dim = math.prod(image_shape)
        self.event_dim = len(image_shape)
        self.net = MLP([self.x_dim, *hidden_dims, num_classes], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[: x.dim() - self.event_dim] + (self.x_dim,)))


#: network family name -> (encoder class, decoder class); ``ModelConfig.net`` is one of its keys.
#: :func:`register_net` adds a user's own pair for this process.
NETS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (Encoder, Decoder),
    "conv": (ConvEncoder, ConvDecoder),
    # token sequences (molecules): GRU or 1-D convolution encoder, autoregressive GRU decoder
    **SEQUENCE_NETS,
}

#: the families that ship with the package (never replaced by :func:`register_net`)
BUILTIN_NETS = tuple(NETS)


def register_net(name: str, encoder: type[nn.Module], decoder: type[nn.Module], *,
                 replace: bool = False) -> None:  # fmt: skip
    """Register a user's encoder and decoder classes as the network family ``name``.

    Afterwards ``ModelConfig(net=name)`` (``pyro-cvae train --net`` in a script that registers
    first) builds them, a run records ``name`` in its ``config.json`` and :func:`pyro_cvae.load`
    rebuilds them, provided the same registration has run in the loading process: checkpoints
    store weights and the name, never code.

    Both classes are called as the built-ins are::

        encoder(data_shape, cond_width, hidden_dims, latent_dim, activation)
        decoder(data_shape, cond_width, hidden_dims, latent_dim, activation)

    with ``data_shape`` the shape of one item ((C, H, W) images, (D,) vectors and table rows),
    ``cond_width`` the width of the condition vector (0 for a plain VAE), ``hidden_dims`` a
    tuple of widths, ``latent_dim`` the width of z and ``activation`` a key of
    :data:`ACTIVATIONS`; ``dropout=p`` and ``batch_norm=True`` are passed as keywords only when
    the config sets them. Their forward methods:

    * ``encoder(x, c) -> (loc, scale)``: x ``(..., B, *data_shape)``, c ``(B, cond_width)`` or
      ``None``; loc and scale ``(..., B, latent_dim)``, scale > 0;
    * ``decoder(z, c) -> params``: z (..., B, latent_dim); the likelihood's parameters, e.g.
      logits of shape ``(..., B, *data_shape)`` for ``"bernoulli"``.

    Leading dimensions (particles, enumerated labels) must be broadcast, not assumed away:
    :func:`broadcast_cat` concatenates z and c that way.

    Raises:
        ValueError: for a name that is empty, a built-in one (``mlp``, ``conv``), or already
            registered to other classes without ``replace=True``; TypeError for a class that is
            not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a network name is a non-empty string, got {name!r}; e.g. 'resnet'")
    if name in BUILTIN_NETS:
        raise ValueError(
            f"{name!r} is a built-in network family ({', '.join(BUILTIN_NETS)}); register yours "
            "under another name"
        )
    for role, cls in (("encoder", encoder), ("decoder", decoder)):
        if not callable(cls):
            raise TypeError(
                f"the {role} of network {name!r} must be an nn.Module class (or a callable "
                f"building one), got {cls!r}"
            )
    if name in NETS and NETS[name] != (encoder, decoder) and not replace:
        old = ", ".join(_qualname(c) for c in NETS[name])
        raise ValueError(
            f"network {name!r} is already registered to {old}; pass replace=True to replace it"
        )
    NETS[name] = (encoder, decoder)


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def unknown_net_message(name: str) -> str:
    """Why ``name`` cannot be built, and how to make it buildable."""
    return (
        f"network {name!r} is not registered in this process (registered: {', '.join(NETS)}); "
        f"checkpoints store no code: import your encoder and decoder classes and call "
        f"pyro_cvae.register_net({name!r}, EncoderClass, DecoderClass) before building or "
        "loading the model"
    )


def _build(net: str, role: int, args: tuple, options: dict) -> nn.Module:
    if net not in NETS:
        raise ValueError(unknown_net_message(net))
    cls = NETS[net][role]
    if options and net not in BUILTIN_NETS:
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):  # no signature to read: let the call decide
            params = {}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        missing = [k for k in options if k not in params and not takes_any]
        if params and missing:
            raise ValueError(
                f"network {net!r} ({_qualname(cls)}) takes no keyword option(s) "
                f"{', '.join(missing)}; drop them from the config, or accept them in its "
                "constructor"
            )
    return cls(*args, **options)


def make_encoder(net: str, image_shape, cond_width, hidden_dims, latent_dim,
                 activation: str = "relu", **options) -> nn.Module:  # fmt: skip
    """Build the encoder of the network family ``net`` (a key of :data:`NETS`); ``options``
    (``dropout``, ``batch_norm``) are passed on as keywords."""
    args = (image_shape, cond_width, hidden_dims, latent_dim, activation)
    return _build(net, 0, args, options)


def make_decoder(net: str, image_shape, cond_width, hidden_dims, latent_dim,
                 activation: str = "relu", **options) -> nn.Module:  # fmt: skip
    """Build the decoder of the network family ``net`` (a key of :data:`NETS`); ``options``
    (``dropout``, ``batch_norm``) are passed on as keywords."""
    args = (image_shape, cond_width, hidden_dims, latent_dim, activation)
    return _build(net, 1, args, options)
