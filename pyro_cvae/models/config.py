"""The architecture of a model: :class:`ModelConfig`, enough to rebuild it with no other input.

It sits with the models (layer 2) because it checks its names against the registries of the
networks, likelihoods and priors below it; it is stored beside every checkpoint. The choices a
model makes from its data are written here too, not in the data layer: the likelihood
(:func:`default_likelihood`) and the binarisation it trains with (:func:`default_binarize`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .._frozen import FrozenConfig
from .._validate import choice, positive_int
from ..data import Dataset, grey_level_images
from ..nn.likelihoods import LIKELIHOOD_CLASSES, TABLE_COLUMN_KINDS
from ..nn.nets import ACTIVATIONS, NETS, unknown_net_message
from ..nn.priors import PRIORS

__all__ = ["ModelConfig", "LIKELIHOODS", "NETS", "default_binarize", "default_likelihood"]

#: names accepted for ``ModelConfig.likelihood``
LIKELIHOODS = tuple(LIKELIHOOD_CLASSES)


def default_likelihood(data: Dataset) -> str:
    """The observation model for ``data`` unless one is asked for: ``"table"`` for a table (its
    columns mix densities and probabilities), ``"gaussian"`` for data outside [0, 1] (a
    Bernoulli's mean must lie in [0, 1]), else ``"bernoulli"``."""
    if data.table is not None:
        return "table"
    x = data.train.x
    if x.numel() and (x.min() < 0 or x.max() > 1):
        return "gaussian"
    return "bernoulli"


def default_binarize(source, likelihood: str | None = None) -> str:
    """The binarisation a model of the data set ``source`` (a built-in name or a path) trains
    with unless one is asked for: ``"dynamic"`` (a new Bernoulli draw per batch, the usual
    reading of grey levels as probabilities) for grey-level images
    (:func:`pyro_cvae.data.grey_level_images`) under a Bernoulli likelihood (``None``: the
    default, Bernoulli), else ``"none"`` (attribute sets, molecules, tables, arrays and every
    other likelihood, which model the values as they are)."""
    if likelihood not in (None, "bernoulli"):
        return "none"
    return "dynamic" if grey_level_images(source) else "none"


@dataclass(frozen=True)
class ModelConfig(FrozenConfig):
    """Architecture of a (conditional) VAE.

    The condition is either a class label (``num_classes > 0``, one-hot encoded inside the
    model) or a real vector of width ``condition_dim``; with both zero the model is a plain VAE.
    ``num_classes`` left out (``None``) means 0 when ``condition_dim`` is given, else 10 (the
    digits); the stored config always holds the resolved number.
    """

    # shape of one data item: (C, H, W) for images, (D,) for vectors and encoded table rows
    image_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int | None = None  # 0: no label; None: 0 with condition_dim, else 10
    condition_dim: int = 0  # width of a real-valued condition vector (exclusive with labels)
    latent_dim: int = 8
    hidden_dims: tuple[int, ...] = (256, 256)
    net: str = "mlp"  # a key of NETS: "mlp", "conv", or a name given to pyro_cvae.register_net
    activation: str = "relu"  # of the hidden layers: relu, tanh (IWAE paper) or softplus (M2)
    # regularisers of the encoder and decoder's hidden layers: dropout probability (0: none) and
    # batch norm (running statistics in eval mode, so evaluation is per item)
    dropout: float = 0.0
    batch_norm: bool = False
    likelihood: str = "bernoulli"
    # Gaussian likelihood only: observation noise scale; learned when learn_x_scale.
    x_scale: float = 0.1
    learn_x_scale: bool = False
    prior: str = "normal"
    prior_options: dict = field(default_factory=dict, hash=False, compare=True)
    # widths of L >= 2 stochastic layers, bottom (z1, next to x) first: a hierarchical model
    # (pyro_cvae.hierarchical); empty: one layer of latent_dim. latent_dim is then latent_dims[0].
    latent_dims: tuple[int, ...] = ()
    # likelihood "table" only: (kind, width) of each column of a row (TableSchema.layout)
    table_columns: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if len(shape) not in (1, 3) or any(
            isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape
        ):
            raise ValueError(
                "image_shape must be three positive integers (C, H, W) for images, or one (D,) "
                f"for vectors and table rows, got {self.image_shape!r}"
            )
        if isinstance(self.condition_dim, bool) or not isinstance(self.condition_dim, int):
            raise ValueError(f"condition_dim must be an integer >= 0, got {self.condition_dim!r}")
        if self.num_classes is None:
            object.__setattr__(self, "num_classes", 0 if self.condition_dim else 10)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(f"num_classes must be an integer >= 0, got {self.num_classes!r}")
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(
                f"num_classes must be 0 (no label) or at least 2, got {self.num_classes}"
            )
        if self.condition_dim < 0:
            raise ValueError(f"condition_dim must be >= 0, got {self.condition_dim}")
        if self.num_classes and self.condition_dim:
            raise ValueError(
                "give either num_classes (label condition) or condition_dim (vector condition), "
                f"not both (got {self.num_classes} and {self.condition_dim})"
            )
        positive_int("latent_dim", self.latent_dim)
        self._check_latent_dims()
        if not self.hidden_dims:
            raise ValueError("hidden_dims must list at least one hidden layer width, e.g. (400,)")
        for h in self.hidden_dims:
            positive_int("each hidden_dims entry", h)
        if self.net not in NETS:
            raise ValueError(unknown_net_message(self.net))
        choice("activation", self.activation, ACTIVATIONS)
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0 <= self.dropout < 1
        ):
            raise ValueError(
                f"dropout must be a probability in [0, 1), got {self.dropout!r}; e.g. 0.1"
            )
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        if self.net == "conv" and shape[1:] != (28, 28):
            raise ValueError(
                f"net='conv' is built for 28x28 images, got image_shape {shape}; use net='mlp'"
            )
        choice("likelihood", self.likelihood, LIKELIHOODS)
        self._check_table_columns()
        if not (isinstance(self.x_scale, (int, float)) and self.x_scale > 0):
            raise ValueError(f"x_scale must be a positive number, got {self.x_scale!r}")
        choice("prior", self.prior, tuple(PRIORS))
        if not isinstance(self.prior_options, dict):
            raise ValueError(f"prior_options must be a dict, got {self.prior_options!r}")
        unknown = sorted(set(self.prior_options) - set(PRIORS[self.prior].OPTIONS))
        if unknown:
            raise ValueError(
                f"prior {self.prior!r} has no option(s) {unknown}; it accepts: "
                f"{', '.join(PRIORS[self.prior].OPTIONS) or 'none'}"
            )

    def _check_table_columns(self) -> None:
        cols = tuple(tuple(c) for c in self.table_columns)
        object.__setattr__(self, "table_columns", cols)
        if self.likelihood != "table":
            if cols:
                raise ValueError(
                    f"table_columns describe the rows of likelihood 'table', but likelihood is "
                    f"{self.likelihood!r}; drop table_columns or use likelihood='table'"
                )
            return
        if not cols:
            raise ValueError(
                "likelihood 'table' needs table_columns ((kind, width) per column); build the "
                "config with ModelConfig.for_data(pc.load_dataset('table.csv'))"
            )
        for c in cols:
            if (
                len(c) != 2
                or c[0] not in TABLE_COLUMN_KINDS
                or not isinstance(c[1], int)
                or c[1] < 1
            ):
                raise ValueError(
                    f"each table column is (kind, width) with kind one of "
                    f"{', '.join(TABLE_COLUMN_KINDS)} and width >= 1, got {c!r}"
                )
        width = sum(w for _, w in cols)
        if self.image_shape != (width,):
            raise ValueError(
                f"table_columns describe rows of width {width} but image_shape is "
                f"{self.image_shape}; set image_shape=({width},)"
            )

    def _check_latent_dims(self) -> None:
        if isinstance(self.latent_dims, (str, int)):
            raise ValueError(
                f"latent_dims must be a tuple of layer widths such as (100, 50), "
                f"got {self.latent_dims!r}"
            )
        dims = tuple(self.latent_dims)
        object.__setattr__(self, "latent_dims", dims)
        if not dims:
            return
        if len(dims) == 1:
            raise ValueError(
                f"latent_dims lists L >= 2 stochastic layers, got {dims}; for one layer use "
                f"latent_dim={dims[0]} and latent_dims=()"
            )
        for d in dims:
            positive_int("each latent_dims entry", d, f"Got latent_dims={dims}; e.g. (100, 50).")
        default = next(f.default for f in dataclasses.fields(self) if f.name == "latent_dim")
        if self.latent_dim not in (default, dims[0]):
            raise ValueError(
                f"latent_dim={self.latent_dim} disagrees with latent_dims={dims}: with layers, "
                f"latent_dim is the bottom layer's width; drop latent_dim or set it to {dims[0]}"
            )
        object.__setattr__(self, "latent_dim", dims[0])

    @classmethod
    def for_data(cls, data: Dataset, *, unconditional: bool = False, **overrides) -> ModelConfig:
        """The default architecture for a data set; keyword ``overrides`` replace fields.

        The data decide the image shape and the condition: ``num_classes`` for class labels,
        ``condition_dim`` for an attribute schema, neither with ``unconditional=True``. Sizes
        follow the data too: 28x28 images (MNIST-like) get ``latent_dim=50`` and one hidden layer
        of 400 units (the IWAE paper's one-layer MLP); smaller images ``latent_dim=8`` and
        (256, 256). The likelihood follows :func:`default_likelihood`: ``"table"`` with
        the table's columns for a table, ``"gaussian"`` for data outside [0, 1], else
        ``"bernoulli"``. ``pyro-cvae train`` builds its model with this, so the command line and
        ``CVAE(ModelConfig.for_data(data))`` give the same model.
        """
        big = data.is_image and data.image_shape[1] >= 28
        schema = data.schema
        # vector conditions: a schema's width, or the width of plain (N, d) condition vectors
        width = schema.width if schema is not None else (
            data.train.y.shape[1] if data.train.y.dim() == 2 else 0
        )  # fmt: skip
        defaults: dict = {
            "likelihood": default_likelihood(data),
            "table_columns": data.table.layout if data.table is not None else (),
            "image_shape": tuple(data.image_shape),
            "num_classes": 0 if (unconditional or width) else data.num_classes,
            "condition_dim": 0 if unconditional else width,
            "hidden_dims": (400,) if big else (256, 256),
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        dims = tuple(overrides.get("latent_dims") or ())
        if "latent_dim" not in overrides:
            defaults["latent_dim"] = dims[0] if dims else (50 if big else 8)
        merged = {**defaults, **overrides}
        mixed = data.table is not None and any(k != "continuous" for k, _ in data.table.layout)
        if mixed and merged["likelihood"] != "table":
            raise ValueError(
                f"{data.name} is a table with binary or categorical columns: its rows are "
                f"modelled by likelihood 'table' (Gaussian, Bernoulli or Categorical per column), "
                f"not {merged['likelihood']!r}; drop likelihood (--likelihood) or pass 'table'"
            )
        if merged["likelihood"] != "table" and "table_columns" not in overrides:
            merged["table_columns"] = ()  # a table modelled with another likelihood
        return cls(**merged)

    @property
    def hierarchical(self) -> bool:
        """Whether the config describes several stochastic layers (``latent_dims``)."""
        return bool(self.latent_dims)

    @property
    def net_options(self) -> dict:
        """The keyword options the encoder and decoder are built with: ``dropout`` and
        ``batch_norm`` where they are set (a network without them is built with none)."""
        opts: dict = {}
        if self.dropout:
            opts["dropout"] = float(self.dropout)
        if self.batch_norm:
            opts["batch_norm"] = True
        return opts

    @property
    def layer_options(self) -> dict:
        """The options of the hierarchy's Gaussian layers (``dropout``, ``batch_norm``)."""
        return self.net_options

    @property
    def cond_width(self) -> int:
        """Width of the condition vector the networks receive (0 for a plain VAE)."""
        return self.num_classes or self.condition_dim

    @property
    def x_dim(self) -> int:
        return math.prod(self.image_shape)

    def __hash__(self) -> int:  # prior_options is a dict; hash on the JSON text instead
        return hash(self.to_json())
