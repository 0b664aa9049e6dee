"""The ELBO with free bits against its formula computed by hand, TraceMeanField_ELBO at 0 nats,
the gradient below the floor, the KL weight, and the refusals."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_cvae import TrainConfig, fit, load_dataset
from pyro_cvae.infer import FreeBitsELBO, make_objective, scale_latents
from pyro_cvae.infer.free_bits import per_coordinate_kl
from pyro_cvae.models import CVAE, ModelConfig
from pyro_cvae.train import SemiSupervisedConfig

B, D = 6, 3
W = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]])  # x = W z + noise, x of 2 coordinates
X = torch.tensor([[0.5, -1.0], [1.2, 0.3], [-0.4, 0.9], [0.0, 0.1], [2.0, -0.7], [-1.1, -0.2]])


def _model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, 1.0).to_event(1), obs=x)


def _guide(x):
    # coordinate 0 follows x closely (a large KL), coordinates 1 and 2 barely (a small one)
    a = pyro.param("a", torch.tensor([[1.5, 0.05, 0.0], [-1.0, 0.0, 0.05]]))
    s = pyro.param("s", torch.tensor([0.3, 0.95, 0.9]), constraint=dist.constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x @ a, s).to_event(1))


@pytest.fixture(autouse=True)
def _fresh_params():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _by_hand(lam: float, beta: float = 1.0) -> torch.Tensor:
    """The negative free-bits objective with the z the guide draws under seed 0."""
    pyro.set_rng_seed(0)
    z = poutine.trace(_guide).get_trace(X).nodes["z"]["value"]  # (B, D)
    recon = dist.Normal(z @ W.T, 1.0).log_prob(X).sum()
    m = X @ pyro.param("a")  # (B, D)
    s = pyro.param("s")
    kl = -torch.log(s) + (s**2 + m**2) / 2 - 0.5  # KL(N(m, s^2) || N(0, 1)) per coordinate
    floor = torch.maximum(kl.mean(0), torch.tensor(lam))
    return -(recon - beta * B * floor.sum())


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.3, 2.0])
def test_the_objective_is_its_formula(lam):
    _guide(X)  # create the parameters
    pyro.set_rng_seed(0)
    loss = FreeBitsELBO(lam).differentiable_loss(_model, _guide, X)
    torch.testing.assert_close(loss, _by_hand(lam))
    pyro.set_rng_seed(0)
    assert FreeBitsELBO(lam).loss(_model, _guide, X) == pytest.approx(loss.item(), rel=1e-6)


def test_zero_nats_is_trace_mean_field_elbo_value_and_gradient():
    _guide(X)
    params = [pyro.param("a").unconstrained(), pyro.param("s").unconstrained()]
    pyro.set_rng_seed(0)
    ours = FreeBitsELBO(0.0).differentiable_loss(_model, _guide, X)
    g_ours = torch.autograd.grad(ours, params)
    pyro.set_rng_seed(0)
    theirs = pyro.infer.TraceMeanField_ELBO().differentiable_loss(_model, _guide, X)
    g_theirs = torch.autograd.grad(theirs, params)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)


def test_no_kl_gradient_below_the_floor():
    _guide(X)
    s = pyro.param("s").unconstrained()
    m = X @ pyro.param("a")
    kl = (-torch.log(pyro.param("s")) + (pyro.param("s") ** 2 + m**2) / 2 - 0.5).mean(0)
    lam = kl[1:].max().item() + 0.01  # above coordinates 1 and 2, below coordinate 0
    assert kl[0] > lam
    pyro.set_rng_seed(0)
    g_floor = torch.autograd.grad(FreeBitsELBO(lam).differentiable_loss(_model, _guide, X), s)[0]
    pyro.set_rng_seed(0)
    g_plain = torch.autograd.grad(FreeBitsELBO(0.0).differentiable_loss(_model, _guide, X), s)[0]

    def recon_only():
        pyro.set_rng_seed(0)
        z = poutine.trace(_guide).get_trace(X).nodes["z"]["value"]
        return -dist.Normal(z @ W.T, 1.0).log_prob(X).sum()

    g_recon = torch.autograd.grad(recon_only(), s)[0]
    # coordinates 1, 2: only the reconstruction's gradient; coordinate 0: the ELBO's
    torch.testing.assert_close(g_floor[1:], g_recon[1:])
    torch.testing.assert_close(g_floor[0], g_plain[0])
    assert not torch.allclose(g_plain[1:], g_recon[1:])


def test_the_kl_weight_scales_the_floored_term():
    _guide(X)
    pyro.set_rng_seed(0)
    with scale_latents(0.4, ["z"]):
        loss = FreeBitsELBO(0.3).differentiable_loss(_model, _guide, X)
    torch.testing.assert_close(loss, _by_hand(0.3, beta=0.4))


def test_per_coordinate_kl_refuses_what_it_cannot_floor():
    normal = dist.Normal(torch.zeros(B, D), 1.0)
    assert per_coordinate_kl(normal.to_event(1), normal.to_event(1)).shape == (B, D)
    with pytest.raises(ValueError, match="to_event"):
        per_coordinate_kl(normal, normal)
    mix = dist.MixtureSameFamily(dist.Categorical(torch.ones(2)),
                                 dist.Normal(torch.zeros(2), 1.0))  # fmt: skip
    with pytest.raises(ValueError, match="closed form.*Gaussian prior"):
        per_coordinate_kl(normal.to_event(1), dist.Independent(mix.expand((B, D)), 1))


def test_refusals_name_the_fix():
    with pytest.raises(ValueError, match="finite number of nats"):
        FreeBitsELBO(-0.1)
    with pytest.raises(ValueError, match="use objective 'elbo' or 'meanfield'"):
        make_objective("iwae", 5, free_bits=0.1)
    assert isinstance(make_objective("meanfield", free_bits=0.1), FreeBitsELBO)
    assert not isinstance(make_objective("elbo"), FreeBitsELBO)
    with pytest.raises(ValueError, match="--objective elbo or meanfield"):
        TrainConfig(objective="iwae", particles=5, free_bits=0.1)
    with pytest.raises(ValueError, match="e.g. --free-bits 0.1"):
        TrainConfig(free_bits=float("nan"))
    with pytest.raises(ValueError, match="semi-supervised objectives take none"):
        SemiSupervisedConfig(free_bits=0.1)


def test_fit_trains_with_free_bits_and_records_it(tmp_path):
    data = load_dataset("digits").subset(300, 50)
    model = CVAE(ModelConfig(image_shape=data.image_shape, num_classes=10, latent_dim=4,
                             hidden_dims=(32,)))  # fmt: skip
    history = fit(model, data, epochs=2, batch_size=128, free_bits=0.5, out=tmp_path / "run",
                  progress=False)  # fmt: skip
    losses = [r["train_loss"] for r in history.rows]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] < losses[0]
    assert '"free_bits": 0.5' in (tmp_path / "run" / "config.json").read_text()
    # a run with a VampPrior is refused at its first step, with no checkpoint written
    vamp = CVAE(ModelConfig(image_shape=data.image_shape, num_classes=10, latent_dim=4,
                            hidden_dims=(32,), prior="vamp"))  # fmt: skip
    with pytest.raises(ValueError, match="Gaussian prior"):
        fit(vamp, data, epochs=1, free_bits=0.5, out=tmp_path / "vamp", progress=False)
    assert not list((tmp_path / "vamp").glob("checkpoint_*.pt"))
