"""Priors: one interface, exact checks (normalisation, KL, mixtures), every prior x objective."""

import copy
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

import pyro_cvae
from pyro_cvae import CVAE, ModelConfig
from pyro_cvae.infer import ModuleSVI
from pyro_cvae.infer.objectives import OBJECTIVES, make_objective
from pyro_cvae.nn.priors import PRIORS, make_prior

#: small options per registry entry, plus the per-class variants
VARIANTS = {
    "normal": ("normal", {}),
    "conditional": ("conditional", {}),
    "mixture": ("mixture", {"components": 3}),
    "mixture/class": ("mixture", {"components": 2, "per_class": True}),
    "vamp": ("vamp", {"pseudo_inputs": 4}),
    "vamp/class": ("vamp", {"pseudo_inputs": 2, "per_class": True}),
    "flow": ("flow", {"layers": 2, "hidden": 8}),
}


def test_variants_cover_the_registry():
    assert {name for name, _ in VARIANTS.values()} == set(PRIORS)


def _model(variant: str, latent_dim: int = 2, num_classes: int = 3, image=(1, 4, 4)) -> CVAE:
    name, options = VARIANTS[variant]
    torch.manual_seed(0)
    return CVAE(
        image_shape=image, num_classes=num_classes, latent_dim=latent_dim, hidden_dims=(8,),
        prior=name, prior_options=options,
    )  # fmt: skip


def _perturb(prior, scale: float = 0.3) -> None:
    """Move the prior away from its initialisation (which is N(0, I) for some priors)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _onehot(n: int = 3) -> torch.Tensor:
    return torch.eye(n)


@pytest.mark.parametrize("variant", list(VARIANTS))
class TestInterface:
    def test_sample_and_log_prob_shapes(self, variant):
        prior = _model(variant).prior
        c = _onehot()  # (3, 3): one condition per column of the batch
        z = prior.sample(c, torch.Size([5, 3]))
        assert z.shape == (5, 3, 2)
        assert prior.log_prob(z, c).shape == (5, 3)
        d = prior.dist(c, torch.Size([5, 3]))
        assert d.batch_shape == (5, 3) and d.event_shape == (2,)

    def test_log_prob_integrates_to_one_on_a_grid(self, variant):
        prior = _model(variant).prior
        _perturb(prior)
        c = _onehot()
        g = torch.linspace(-20.0, 20.0, 401)
        grid = torch.cartesian_prod(g, g)  # (G, 2)
        with torch.no_grad():
            lp = prior.log_prob(grid[:, None, :].expand(-1, 3, 2), c)  # (G, 3)
        cell = (g[1] - g[0]).item() ** 2
        total = torch.logsumexp(lp, dim=0).exp() * cell  # one integral per condition
        assert torch.allclose(total, torch.ones(3), atol=2e-3), total

    def test_analytic_kl_flag_is_honest_and_agrees_with_monte_carlo(self, variant):
        prior = _model(variant).prior
        _perturb(prior)
        c = _onehot()
        p = prior.dist(c, torch.Size([3]))
        loc, scale = torch.tensor([0.5, -0.3]).expand(3, 2), torch.tensor([0.7, 1.3])
        q = dist.Normal(loc, scale).to_event(1)
        if not prior.analytic_kl:
            with pytest.raises(NotImplementedError):
                kl_divergence(q, p)
            return
        exact = kl_divergence(q, p)  # (3,)
        z = q.sample((200_000,))
        mc = q.log_prob(z) - p.log_prob(z)  # (S, 3)
        se = mc.std(0) / math.sqrt(z.shape[0])
        assert ((mc.mean(0) - exact).abs() < 4 * se + 1e-4).all(), (mc.mean(0), exact)

    def test_gradients_reach_every_parameter(self, variant):
        model = _model(variant)
        prior = model.prior
        _perturb(prior)
        c = _onehot()
        z = torch.randn(4, 3, 2)
        params = dict(prior.named_parameters())
        if variant == "normal":  # nothing to learn
            assert params == {} and not prior.log_prob(z, c).requires_grad
            return
        prior.log_prob(z, c).sum().backward()
        for name, p in params.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        if variant.startswith("vamp"):  # the prior is also a function of the encoder
            assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_prior_trains_with_every_objective(variant, objective, digits_small):
    name, options = VARIANTS[variant]
    torch.manual_seed(0)
    model = CVAE(
        image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(16,), prior=name,
        prior_options=options,
    )  # fmt: skip
    before = [p.detach().clone() for p in model.prior.parameters()]
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    svi = ModuleSVI(
        model.model, model.guide, optim, make_objective(objective, 2), model.parameters()
    )
    x, y = digits_small.train.x[:16], digits_small.train.y[:16]
    losses = [svi.step(x, y) for _ in range(2)]
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    # the objective's gradient reached the prior: all its parameters moved
    for b, p in zip(before, model.prior.parameters()):
        assert not torch.equal(b, p.detach())


@pytest.mark.parametrize("variant", [v for v in VARIANTS if not PRIORS[VARIANTS[v][0]].analytic_kl])
def test_meanfield_falls_back_to_the_sampled_kl_term(variant, digits_small):
    """Without a closed-form KL, TraceMeanField_ELBO uses log p(z) - log q(z): the ELBO itself."""
    name, options = VARIANTS[variant]
    model = CVAE(
        image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(16,), prior=name,
        prior_options=options,
    )  # fmt: skip
    x, y = digits_small.train.x[:16], digits_small.train.y[:16]
    pyro.set_rng_seed(3)
    meanfield = TraceMeanField_ELBO().loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(3)
    elbo = Trace_ELBO().loss(model.model, model.guide, x, y)
    assert meanfield == pytest.approx(elbo, rel=1e-6)


def test_meanfield_uses_the_analytic_kl_when_there_is_one(digits_small):
    model = CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(16,))
    x, y = digits_small.train.x[:16], digits_small.train.y[:16]
    pyro.set_rng_seed(3)
    meanfield = TraceMeanField_ELBO().loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(3)
    elbo = Trace_ELBO().loss(model.model, model.guide, x, y)
    # same z draw, so the difference is exactly KL(q || p) - (log q(z) - log p(z)), summed
    c = model.condition(y, 16)
    q = model.q_dist(x, c)
    pyro.set_rng_seed(3)
    z = q.sample()
    p = model.z_dist(c, (16,))
    expected = (kl_divergence(q, p) - (q.log_prob(z) - p.log_prob(z))).sum().item()
    assert meanfield - elbo == pytest.approx(expected, abs=1e-3)


# ---------------------------------------------------------------------------- exact structure


def test_per_class_mixture_selects_the_class_table():
    prior = _model("mixture/class").prior
    _perturb(prior)
    y = torch.tensor([2, 0, 1, 2])
    d = prior.dist(_onehot()[y], torch.Size([4]))
    torch.testing.assert_close(d.component_distribution.base_dist.loc, prior.locs[y])
    torch.testing.assert_close(
        d.mixture_distribution.logits, torch.log_softmax(prior.logits[y], -1)
    )


@pytest.mark.parametrize("variant", ["vamp", "vamp/class"])
def test_vamp_is_the_average_of_encoder_posteriors_at_the_pseudo_inputs(variant):
    model = _model(variant)
    prior = model.prior
    _perturb(prior, 1.0)
    y = torch.tensor([0, 2, 1])
    c = _onehot()[y]
    z = torch.randn(5, 3, 2)
    u = torch.sigmoid(prior.pseudo_logits)  # (P, ...) or (classes, P, ...)
    expected = []
    for b in range(3):
        ub = u[y[b]] if variant == "vamp/class" else u  # (P, 1, 4, 4)
        loc, scale = model.encoder(ub, c[b].expand(ub.shape[0], 3))  # (P, 2)
        comp = dist.Normal(loc, scale).to_event(1).log_prob(z[:, b, None, :])  # (5, P)
        expected.append(torch.logsumexp(comp, -1) - math.log(ub.shape[0]))
    torch.testing.assert_close(prior.log_prob(z, c), torch.stack(expected, -1))


def test_vamp_follows_the_encoder_of_its_own_model_after_a_copy():
    model = _model("vamp")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.encoder.parameters():
            p.add_(1.0)
    z, c = torch.randn(2, 3, 2), _onehot()
    assert not torch.allclose(model.prior.log_prob(z, c), twin.prior.log_prob(z, c))
    assert model.prior.log_prob(z, c).equal(_model("vamp").prior.log_prob(z, c))
    assert "prior.pseudo_logits" in model.state_dict()
    assert not any(k.startswith("prior.encoder") for k in model.state_dict())


def test_conditional_flow_depends_on_the_label():
    prior = _model("flow").prior
    _perturb(prior)
    z = torch.randn(6, 2)
    a = prior.log_prob(z[:, None, :], _onehot()[:1])
    b = prior.log_prob(z[:, None, :], _onehot()[1:2])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_save_and_load_keep_the_prior(variant, tmp_path):
    model = _model(variant)
    _perturb(model.prior)
    model.save(tmp_path / "m.pt")
    loaded = pyro_cvae.load(tmp_path / "m.pt")
    z, c = torch.randn(2, 3, 2), _onehot()
    torch.testing.assert_close(loaded.prior.log_prob(z, c), model.prior.log_prob(z, c))


# ---------------------------------------------------------------------------- bad input


def test_unknown_prior_name_is_refused():
    with pytest.raises(ValueError, match="unknown prior 'gamma'; choose one of normal"):
        ModelConfig(prior="gamma")
    with pytest.raises(ValueError, match="unknown prior 'gamma'"):
        make_prior("gamma", 2, 0)


def test_vamp_with_zero_pseudo_inputs_is_refused():
    with pytest.raises(ValueError, match="at least one pseudo-input, got pseudo_inputs=0"):
        CVAE(image_shape=(1, 4, 4), latent_dim=2, prior="vamp", prior_options={"pseudo_inputs": 0})


def test_conditional_prior_without_a_condition_is_refused():
    with pytest.raises(ValueError, match="prior 'conditional' needs a condition.*num_classes > 0"):
        CVAE(image_shape=(1, 4, 4), num_classes=0, latent_dim=2, prior="conditional")


@pytest.mark.parametrize("name", ["mixture", "vamp"])
def test_per_class_without_a_condition_is_refused(name):
    with pytest.raises(ValueError, match="per_class=True needs a condition"):
        CVAE(
            image_shape=(1, 4, 4), num_classes=0, latent_dim=2, prior=name,
            prior_options={"per_class": True},
        )  # fmt: skip


def test_unknown_and_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"prior 'mixture' has no option\(s\) \['pseudo_inputs'\]"):
        ModelConfig(prior="mixture", prior_options={"pseudo_inputs": 3})
    with pytest.raises(ValueError, match="option components must be an integer >= 1, got 0"):
        make_prior("mixture", 2, 3, {"components": 0})
    with pytest.raises(ValueError, match="per_class must be true or false, got 'yes'"):
        make_prior("mixture", 2, 3, {"per_class": "yes"})
    with pytest.raises(ValueError, match="needs latent_dim >= 2, got 1"):
        make_prior("flow", 1, 3)
