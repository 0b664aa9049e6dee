import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from pyro_cvae.nn.distributions import BernoulliImages, ReparamNormal, StandardNormal


def test_standard_normal_matches_normal():
    z = torch.randn(4, 3, 5)
    d = StandardNormal((3, 5))
    ref = dist.Normal(torch.zeros(3, 5), torch.ones(3, 5))
    assert torch.allclose(d.log_prob(z), ref.log_prob(z), atol=1e-6)
    assert d.expand((2, 3, 5)).batch_shape == (2, 3, 5)
    assert d.rsample((7,)).shape == (7, 3, 5)
    assert torch.allclose(d.entropy(), ref.entropy())


def test_reparam_normal_same_value_and_gradient_as_normal():
    loc = torch.randn(6, 4, requires_grad=True)
    raw = torch.randn(6, 4, requires_grad=True)
    grads = []
    for cls in (ReparamNormal, dist.Normal):
        torch.manual_seed(3)
        d = cls(loc, raw.exp())
        z = d.rsample((5,))
        lp = d.log_prob(z)
        # a downstream use of z, so the path through z matters as in an ELBO
        total = (lp + (z**2).sin()).sum()
        grads.append((lp.detach(), torch.autograd.grad(total, (loc, raw))))
    (lp_a, g_a), (lp_b, g_b) = grads
    assert torch.allclose(lp_a, lp_b, atol=1e-5)
    for a, b in zip(g_a, g_b):
        assert torch.allclose(a, b, atol=1e-5)


def test_reparam_normal_other_values_use_the_formula():
    d = ReparamNormal(torch.zeros(3), torch.ones(3) * 2)
    z = d.rsample()
    other = z.clone()  # not the sampled tensor itself
    ref = dist.Normal(torch.zeros(3), torch.ones(3) * 2)
    assert torch.allclose(d.log_prob(other), ref.log_prob(other))
    assert torch.allclose(d.log_prob(z), ref.log_prob(z), atol=1e-6)


@pytest.mark.parametrize("event", [False, True])
def test_analytic_kl_against_standard_normal(event):
    loc, scale = torch.randn(5, 3), torch.rand(5, 3) + 0.5
    p, q = ReparamNormal(loc, scale), StandardNormal((5, 3))
    ref = kl_divergence(dist.Normal(loc, scale), dist.Normal(torch.zeros(5, 3), 1.0))
    if event:
        p, q, ref = p.to_event(1), q.to_event(1), ref.sum(-1)
    assert torch.allclose(kl_divergence(p, q), ref, atol=1e-6)


@pytest.mark.parametrize("lead", [(), (5,), (3, 1)])
def test_bernoulli_images_matches_torch_bernoulli_to_event_3(lead):
    torch.manual_seed(0)
    logits = (4 * torch.randn(lead + (6, 1, 4, 4))).requires_grad_()
    for value in ((torch.rand(6, 1, 4, 4) < 0.5).float(), torch.rand(6, 1, 4, 4)):  # soft too
        ours = BernoulliImages(logits).log_prob(value)
        ref = dist.Bernoulli(logits=logits, validate_args=False).to_event(3).log_prob(value)
        assert ours.shape == ref.shape == torch.Size(lead + (6,))
        assert torch.allclose(ours, ref, atol=1e-4)
        g_ours = torch.autograd.grad(ours.sum(), logits)[0]
        g_ref = torch.autograd.grad(ref.sum(), logits)[0]
        assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_bernoulli_images_expands_and_samples_like_the_plate_needs():
    d = BernoulliImages(torch.zeros(6, 1, 4, 4)).expand((2, 6))
    assert isinstance(d, BernoulliImages)
    assert d.batch_shape == (2, 6) and d.event_shape == (1, 4, 4)
    assert d.sample().shape == (2, 6, 1, 4, 4)
    assert torch.allclose(
        d.log_prob(torch.ones(6, 1, 4, 4)), torch.full((2, 6), 16 * -0.6931), atol=1e-3
    )
