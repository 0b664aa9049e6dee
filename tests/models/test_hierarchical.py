"""The L-layer model: structure, shapes, an exact marginal likelihood, objectives, save/load."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyro_cvae
from pyro_cvae import ModelConfig
from pyro_cvae.evaluate import log_likelihood, log_weights
from pyro_cvae.infer import ModuleSVI
from pyro_cvae.infer.objectives import OBJECTIVES, make_objective
from pyro_cvae.models import CVAE, MODEL_CLASSES, HierarchicalCVAE, LayerNormal, build_model

MEANFIELD_WARNING = "mean field restriction"


def _model(dims=(6, 4, 3), **kw) -> HierarchicalCVAE:
    torch.manual_seed(0)
    cfg = ModelConfig(
        image_shape=(1, 8, 8), num_classes=10, latent_dims=dims, hidden_dims=(16,), **kw
    )
    return build_model(cfg)


@pytest.fixture
def batch(digits_small):
    return digits_small.train.x[:12], digits_small.train.y[:12]


# ---------------------------------------------------------------------------- structure


def test_build_model_picks_the_class_and_load_knows_it():
    assert type(build_model(ModelConfig(image_shape=(1, 8, 8)))) is CVAE
    assert type(_model()) is HierarchicalCVAE
    assert MODEL_CLASSES["HierarchicalCVAE"] is HierarchicalCVAE


def test_iwae_two_layer_architecture():
    """Burda et al. (2016): stochastic 100 and 50, deterministic 100-100 and 50-50 between."""
    cfg = ModelConfig(
        image_shape=(1, 28, 28), num_classes=0, hidden_dims=(100, 100), latent_dims=(100, 50)
    )
    m = build_model(cfg)

    def widths(module):
        return [
            (l.in_features, l.out_features)
            for l in module.modules()
            if isinstance(l, torch.nn.Linear)
        ]

    assert widths(m.encoder) == [(784, 100), (100, 100), (100, 200)]  # q(z1 | x): loc, scale
    assert widths(m.q_layers) == [(100, 50), (50, 50), (50, 100)]  # q(z2 | z1)
    assert widths(m.p_layers) == [(50, 50), (50, 50), (50, 200)]  # p(z1 | z2)
    assert widths(m.decoder) == [(100, 100), (100, 100), (100, 784)]  # p(x | z1)
    assert m.prior.latent_dim == 50 and cfg.latent_dim == 100


def test_sites_and_shapes_through_every_layer(batch):
    x, y = batch
    model = _model()
    guide = poutine.trace(model.guide).get_trace(x, y)
    trace = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, y)
    for tr, names in ((guide, ["z1", "z2", "z3"]), (trace, ["z3", "z2", "z1", "x"])):
        sites = [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"]
        assert sites == names
        for n in sites:
            assert [f.name for f in tr.nodes[n]["cond_indep_stack"]] == ["data"]
    assert [guide.nodes[f"z{l}"]["value"].shape for l in (1, 2, 3)] == [(12, 6), (12, 4), (12, 3)]
    assert trace.nodes["x"]["fn"].batch_shape == (12,)


def test_vectorized_particles(batch):
    x, y = batch
    model = _model()
    elbo = make_objective("iwae", particles=7)
    model_trace, guide_trace = next(iter(elbo._get_traces(model.model, model.guide, (x, y), {})))
    assert [guide_trace.nodes[f"z{l}"]["value"].shape for l in (1, 2, 3)] == [
        (7, 12, 6), (7, 12, 4), (7, 12, 3)
    ]  # fmt: skip
    assert model_trace.nodes["x"]["log_prob"].shape == (7, 12)
    assert log_weights(model, x, y, 7).shape == (7, 12)


def test_joint_distributions_are_the_sum_of_the_sites(batch):
    x, y = batch
    model = _model()
    c = model.condition(y, 12)
    guide = poutine.trace(model.guide).get_trace(x, y)
    trace = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, y)
    guide.compute_log_prob()
    trace.compute_log_prob()
    z = torch.cat([guide.nodes[f"z{l}"]["value"] for l in (1, 2, 3)], -1)  # (12, 13)
    log_q = sum(guide.nodes[f"z{l}"]["log_prob"] for l in (1, 2, 3))
    log_p = sum(trace.nodes[f"z{l}"]["log_prob"] for l in (1, 2, 3))
    torch.testing.assert_close(model.q_dist(x, c).log_prob(z), log_q)
    torch.testing.assert_close(model.z_dist(c, (12,)).log_prob(z), log_p)
    assert model.q_dist(x, c).sample((5,)).shape == (5, 12, 13)
    assert model.z_dist(c, (5, 12)).sample().shape == (5, 12, 13)


def test_sample_encode_reconstruct_shapes(batch):
    x, y = batch
    model = _model()
    images = model.sample(torch.tensor([1, 2]), 3)
    assert images.shape == (2, 3, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert model.sample(4, 2, temperature=0.5).shape == (2, 1, 8, 8)
    loc, scale = model.encode(x, y)
    assert loc.shape == scale.shape == (12, 6)  # the bottom layer
    assert model.reconstruct(x, y).shape == x.shape
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        model.sample(1, 2, temperature=0)


def test_evaluate_runs_unchanged(digits_small):
    model = _model().eval()
    out = pyro_cvae.evaluate(model, digits_small.subset(20, 20), num_samples=5, control=False)
    assert math.isfinite(out["nll"]) and math.isfinite(out["kl"]) and out["latent_dim"] == 6
    # the k=5 bound is above the ELBO up to sampling noise; the joint KL over layers is positive
    assert out["nll"] < -out["elbo"] + 1.0 and out["kl"] > 0


# ---------------------------------------------------------------------------- exact likelihood


class LinearGaussian(HierarchicalCVAE):
    r"""z2 ~ N(0, 1), z1 | z2 ~ N(A z2 + a, S1), x | z1 ~ N(W z1 + b, S2) (S1, S2 diagonal).

    The guide is the exact posterior p(z1 | x) p(z2 | z1) (x is independent of z2 given z1),
    optionally with its means shifted so that importance sampling has work to do.
    """

    A = torch.tensor([[1.5], [-0.5]])
    a = torch.tensor([0.3, -0.2])
    s1 = torch.tensor([0.8, 0.5])
    W = torch.tensor([[1.0, 0.4], [-0.7, 1.2]])
    b = torch.tensor([0.1, 0.2])
    s2 = torch.tensor([0.6, 0.9])

    def __init__(self, shift: float = 0.0):
        super().__init__(
            image_shape=(1, 1, 2), num_classes=0, latent_dims=(2, 1), hidden_dims=(4,),
            likelihood="gaussian",
        )  # fmt: skip
        self.shift = shift

    def layer_dist(self, l, z_above, c):
        loc = z_above @ self.A.T + self.a
        return LayerNormal(dist.Normal(loc, self.s1.expand(loc.shape)), 1)

    def x_dist(self, z, c):
        loc = (z @ self.W.T + self.b).reshape(z.shape[:-1] + (1, 1, 2))
        return dist.Normal(loc, self.s2.reshape(1, 1, 2).expand(loc.shape)).to_event(3)

    def q_layer_dist(self, l, below, c):
        if l == 1:
            x = below.reshape(below.shape[:-3] + (2,))
            P1 = self.A @ self.A.T + torch.diag(self.s1**2)
            S2inv = torch.diag(self.s2**-2)
            cov = torch.linalg.inv(torch.linalg.inv(P1) + self.W.T @ S2inv @ self.W)
            mean = (torch.linalg.solve(P1, self.a) + (x - self.b) @ S2inv @ self.W) @ cov
            return dist.MultivariateNormal(mean + self.shift, cov)
        S1inv = torch.diag(self.s1**-2)
        var = 1.0 / (1.0 + self.A.T @ S1inv @ self.A)  # (1, 1)
        mean = (below - self.a) @ S1inv @ self.A @ var  # (..., 1)
        return dist.Normal(mean + self.shift, var.sqrt().reshape(1).expand(mean.shape)).to_event(1)

    @classmethod
    def marginal(cls) -> dist.MultivariateNormal:
        P1 = cls.A @ cls.A.T + torch.diag(cls.s1**2)
        return dist.MultivariateNormal(
            cls.W @ cls.a + cls.b, cls.W @ P1 @ cls.W.T + torch.diag(cls.s2**2)
        )


def _linear_data(n: int = 6) -> torch.Tensor:
    return LinearGaussian.marginal().sample((n,)).reshape(n, 1, 1, 2)


def test_log_likelihood_is_exact_with_the_exact_posterior():
    model = LinearGaussian()
    x = _linear_data()
    exact = LinearGaussian.marginal().log_prob(x.reshape(-1, 2))
    estimate = log_likelihood(model, x, None, num_samples=3)
    torch.testing.assert_close(estimate, exact, atol=1e-4, rtol=0)
    # every single importance weight is p(x): the guide is the posterior
    torch.testing.assert_close(
        log_weights(model, x, None, 4), exact.expand(4, -1), atol=1e-4, rtol=0
    )


def test_log_likelihood_converges_with_a_shifted_guide():
    model = LinearGaussian(shift=0.1)
    x = _linear_data()
    exact = LinearGaussian.marginal().log_prob(x.reshape(-1, 2))
    elbo = log_weights(model, x, None, 2000).mean(0)
    assert (elbo < exact - 0.05).all()  # the bound is strictly loose for this guide
    estimate = log_likelihood(model, x, None, num_samples=20000, max_floats=2**18)
    torch.testing.assert_close(estimate, exact, atol=0.01, rtol=0)


# ---------------------------------------------------------------------------- objectives


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_every_objective_trains(objective, batch):
    x, y = batch
    model = _model()
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    svi = ModuleSVI(
        model.model, model.guide, optim, make_objective(objective, 2), model.parameters()
    )
    before = [p.detach().clone() for p in model.q_layers.parameters()]
    if objective == "meanfield":  # Pyro cannot verify a bottom-up guide is mean-field
        with pytest.warns(UserWarning, match=MEANFIELD_WARNING):
            losses = [svi.step(x, y) for _ in range(2)]
    else:
        losses = [svi.step(x, y) for _ in range(2)]
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    assert not all(torch.equal(b, p) for b, p in zip(before, model.q_layers.parameters()))


def test_meanfield_samples_every_term_whose_prior_depends_on_a_latent(batch):
    """With a top prior that has no closed-form KL, the mean-field ELBO equals the ELBO exactly:
    p(z1 | z2) is not given an analytic KL at the guide's z2 (that would be biased)."""
    x, y = batch
    model = _model(prior="mixture", prior_options={"components": 2})
    pyro.set_rng_seed(5)
    with pytest.warns(UserWarning, match=MEANFIELD_WARNING):
        meanfield = TraceMeanField_ELBO().loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(5)
    elbo = Trace_ELBO().loss(model.model, model.guide, x, y)
    assert meanfield == pytest.approx(elbo, rel=1e-6)


def test_vamp_prior_sits_on_the_top_layer(batch):
    x, y = batch
    model = _model(prior="vamp", prior_options={"pseudo_inputs": 3})
    c = model.condition(y, 12)
    loc, scale = model.prior_encoder(x, c)
    assert loc.shape == scale.shape == (12, 3)
    assert model.prior.pseudo_inputs.shape == (3, 1, 8, 8)
    assert model.prior.log_prob(torch.randn(2, 12, 3), c).shape == (2, 12)
    assert math.isfinite(Trace_ELBO().loss(model.model, model.guide, x, y))


def test_save_and_load_round_trip(tmp_path, batch):
    x, y = batch
    model = _model(prior="flow", prior_options={"layers": 2, "hidden": 8})
    model.save(tmp_path / "h.pt")
    loaded = pyro_cvae.load(tmp_path / "h.pt")
    assert type(loaded) is HierarchicalCVAE and loaded.config == model.config
    pyro.set_rng_seed(1)
    a = log_weights(model, x, y, 3)
    pyro.set_rng_seed(1)
    torch.testing.assert_close(log_weights(loaded, x, y, 3), a)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "dims, message",
    [
        ((50,), r"latent_dims lists L >= 2 stochastic layers, got \(50,\); for one layer use"),
        ((100, 0), "each latent_dims entry must be a positive integer, got 0"),
        ((100, -5), "each latent_dims entry must be a positive integer, got -5"),
        ("100,50", "latent_dims must be a tuple of layer widths"),
    ],
)
def test_bad_latent_dims_are_refused(dims, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(latent_dims=dims)


def test_empty_latent_dims_and_conflicts_are_refused():
    with pytest.raises(
        ValueError, match=r"HierarchicalCVAE needs latent_dims .* got latent_dims=\(\)"
    ):
        HierarchicalCVAE(ModelConfig(latent_dims=()))
    with pytest.raises(ValueError, match="latent_dim=20 disagrees with latent_dims=\\(100, 50\\)"):
        ModelConfig(latent_dim=20, latent_dims=(100, 50))
    assert ModelConfig(latent_dims=(100, 50)).latent_dim == 100


def test_cli_trains_a_hierarchical_model(tmp_path, capsys):
    from pyro_cvae.cli import main

    out = tmp_path / "run"
    argv = ["train", "--train-size", "60", "--epochs", "1", "--latent-dims", "6,3",
            "--hidden", "16", "--prior", "mixture", "--prior-option", "components=2",
            "--out", str(out), "--quiet", "--eval-samples", "0"]  # fmt: skip
    assert main(argv) == 0
    model = pyro_cvae.load(out / "model.pt")
    assert type(model) is HierarchicalCVAE
    assert model.config.latent_dims == (6, 3) and model.config.prior_options == {"components": 2}
    with pytest.raises(SystemExit):
        main(["train", "--latent-dims", "6,0", "--out", str(tmp_path / "bad")])
    assert "expected positive integers" in capsys.readouterr().err
