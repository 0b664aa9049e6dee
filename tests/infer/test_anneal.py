"""The KL weight as an effect handler: scale_latents multiplies the latent sites' log-densities."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_cvae.infer.anneal import ScaleLatentsMessenger, scale_latents


def _model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _log_probs(handler_scale, sites):
    pyro.set_rng_seed(0)
    with scale_latents(handler_scale, sites):
        tr = poutine.trace(_model).get_trace(torch.tensor(0.3))
    tr.compute_log_prob()
    return {name: tr.nodes[name]["log_prob_sum"] for name in ("z", "x")}, tr


def test_scales_only_the_named_latent_sites():
    plain, tr_plain = _log_probs(1.0, ["z"])
    scaled, tr = _log_probs(0.25, ["z"])
    assert tr.nodes["z"]["value"] == tr_plain.nodes["z"]["value"]  # same draw
    torch.testing.assert_close(scaled["z"], 0.25 * plain["z"])
    torch.testing.assert_close(scaled["x"], plain["x"])  # the observed site is untouched


def test_observed_site_named_is_not_scaled_unless_listed():
    plain, _ = _log_probs(1.0, [])
    scaled, _ = _log_probs(0.5, ["x"])  # listing an observed site scales it (by name)
    torch.testing.assert_close(scaled["x"], 0.5 * plain["x"])
    torch.testing.assert_close(scaled["z"], plain["z"])


def test_scale_multiplies_an_existing_scale():
    pyro.set_rng_seed(0)
    with poutine.scale(scale=3.0), scale_latents(0.5, ["z"]):
        tr = poutine.trace(_model).get_trace(torch.tensor(0.0))
    assert tr.nodes["z"]["scale"] == pytest.approx(1.5)
    assert tr.nodes["x"]["scale"] == pytest.approx(3.0)


def test_elbo_with_beta_is_reconstruction_minus_beta_kl():
    """With a guide of the same site, the scaled ELBO is E[log p(x|z)] - beta KL, exactly
    (TraceMeanField_ELBO computes the Gaussian KL analytically)."""

    def guide(x):
        pyro.sample("z", dist.Normal(0.5, 0.7))

    x = torch.tensor(0.3)
    elbo = pyro.infer.TraceMeanField_ELBO(num_particles=1)
    kl = torch.distributions.kl_divergence(dist.Normal(0.5, 0.7), dist.Normal(0.0, 1.0))
    pyro.set_rng_seed(1)
    full = elbo.loss(_model, guide, x)
    for beta in (0.1, 0.6):
        pyro.set_rng_seed(1)  # the same z draw
        with scale_latents(beta, ["z"]):
            loss = elbo.loss(_model, guide, x)
        assert loss == pytest.approx(full - (1 - beta) * kl.item(), rel=1e-5)


def test_weight_one_is_a_no_op_context_and_bad_weights_are_refused():
    assert not isinstance(scale_latents(1.0, ["z"]), ScaleLatentsMessenger)
    assert isinstance(scale_latents(0.5, ["z"]), ScaleLatentsMessenger)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="KL weight must be positive"):
            ScaleLatentsMessenger(bad, ["z"])
