"""ModuleSVI: one torch optimizer over a module's parameters, finite checks before any update."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyro_cvae.infer.svi import ModuleSVI, NonFiniteLossError, ObjectiveModule, make_adam


class _Gauss(PyroModule):
    """x ~ N(mu, 1) with a point-mass guide free of latents: the loss is -log N(x | mu, 1)."""

    def __init__(self):
        super().__init__()
        self.mu = PyroParam(torch.tensor(0.0))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(self.mu, 1.0), obs=x)

    def guide(self, x):
        pass


def _svi(net, lr=0.1):
    opt = make_adam(net.parameters(), lr)
    return ModuleSVI(net.model, net.guide, opt, pyro.infer.Trace_ELBO(), net.parameters()), opt


def test_step_returns_the_loss_and_moves_the_parameter_towards_the_data():
    net = _Gauss()
    svi, _ = _svi(net)
    x = torch.full((4,), 2.0)
    expected = -dist.Normal(0.0, 1.0).log_prob(x).sum().item()
    assert svi.step(x) == pytest.approx(expected, rel=1e-6)
    assert 0.0 < net.mu.item() <= 0.1 + 1e-6  # Adam's first step is lr in the gradient's sign
    for _ in range(200):
        svi.step(x)
    assert net.mu.item() == pytest.approx(2.0, abs=0.05)
    assert all(p.grad is None for p in net.parameters())  # cleared after each step


def test_evaluate_loss_changes_nothing():
    net = _Gauss()
    svi, _ = _svi(net)
    x = torch.full((3,), 1.0)
    before = net.mu.item()
    assert svi.evaluate_loss(x) == pytest.approx(-dist.Normal(0.0, 1.0).log_prob(x).sum().item())
    assert net.mu.item() == before


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nonfinite_loss_raises_before_the_parameters_change(bad):
    net = _Gauss()
    svi, opt = _svi(net)
    svi.step(torch.ones(2))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    steps = opt.state_dict()["state"][0]["step"].item()
    with pyro.validation_enabled(False), pytest.raises(NonFiniteLossError, match="the loss is"):
        svi.step(torch.tensor([1.0, bad]))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert opt.state_dict()["state"][0]["step"].item() == steps  # Adam did not step
    assert all(p.grad is None for p in net.parameters())


def test_a_nonfinite_gradient_with_a_finite_loss_is_caught():
    net = _Gauss()
    opt = make_adam(net.parameters(), 0.1)

    class _Objective:  # a finite loss (0) whose gradient is infinite
        def differentiable_loss(self, model, guide, x):
            return _InfGrad.apply(net.mu)

    svi = ModuleSVI(net.model, net.guide, opt, _Objective(), net.parameters())
    with pytest.raises(NonFiniteLossError, match="gradient is not finite"):
        svi.step(torch.ones(1))
    assert net.mu.item() == 0.0


class _InfGrad(torch.autograd.Function):
    """Value 0, gradient +inf."""

    @staticmethod
    def forward(ctx, x):
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("inf"))


def test_objective_module_returns_the_objectives_loss():
    net = _Gauss()
    x = torch.full((5,), 0.5)
    elbo = pyro.infer.Trace_ELBO()
    module = ObjectiveModule(net, elbo, net.model, net.guide)
    assert list(module.parameters()) == list(net.parameters())
    torch.testing.assert_close(module(x), elbo.differentiable_loss(net.model, net.guide, x))
    svi = ModuleSVI(net.model, net.guide, make_adam(net.parameters(), 0.1), elbo,
                    net.parameters(), loss_fn=module)  # fmt: skip
    assert svi.step(x) == pytest.approx(-dist.Normal(0.0, 1.0).log_prob(x).sum().item(), rel=1e-6)


def test_make_adam_holds_every_parameter():
    net = torch.nn.Linear(3, 2)
    opt = make_adam(net.parameters(), 1e-3, eps=1e-6)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["eps"] == 1e-6
    assert sum(len(g["params"]) for g in opt.param_groups) == 2
