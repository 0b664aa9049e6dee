"""Layer 1, networks and distributions: encoders and decoders (a registry by family), the
distributions the models sample from, the likelihoods p(x | z, y) and the priors p(z | y).

Imports nothing of the package above layer 0.
"""

from .distributions import BernoulliImages, DiagonalNormalMixture, ReparamNormal, StandardNormal
from .likelihoods import LIKELIHOOD_CLASSES, Likelihood, make_likelihood
from .nets import (
    MIN_SCALE,
    MLP,
    NETS,
    Classifier,
    broadcast_cat,
    make_decoder,
    make_encoder,
    register_net,
)
from .priors import PRIORS, Prior, make_prior

__all__ = [
    "BernoulliImages",
    "Classifier",
    "DiagonalNormalMixture",
    "LIKELIHOOD_CLASSES",
    "Likelihood",
    "MIN_SCALE",
    "MLP",
    "NETS",
    "PRIORS",
    "Prior",
    "ReparamNormal",
    "StandardNormal",
    "broadcast_cat",
    "make_decoder",
    "make_encoder",
    "make_likelihood",
    "make_prior",
    "register_net",
]
