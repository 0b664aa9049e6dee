import math

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from pyro_cvae.nn.distributions import (
    BernoulliImages,
    DiagonalNormalMixture,
    ReparamNormal,
    StandardNormal,
)


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


def _torch_mixture(logits, loc, scale):
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1)
    )


def test_diagonal_normal_mixture_against_a_closed_form():
    # 0.25 N(z; (0, 0), I) + 0.75 N(z; (1, -2), diag(0.5^2, 2^2)) at z = (1, 1), written out
    logits = torch.tensor([0.25, 0.75]).log()
    loc = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    scale = torch.tensor([[1.0, 1.0], [0.5, 2.0]])
    z = torch.tensor([1.0, 1.0])

    def normal(x, m, s):
        return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    exact = math.log(
        0.25 * normal(1, 0, 1) * normal(1, 0, 1) + 0.75 * normal(1, 1, 0.5) * normal(1, -2, 2)
    )
    assert DiagonalNormalMixture(logits, loc, scale).log_prob(z).item() == pytest.approx(
        exact, abs=1e-6
    )


@pytest.mark.parametrize(
    "own, expand_to, value_lead",
    [
        ((), (7, 4), ()),  # one mixture (the VampPrior without a condition), particles x batch
        ((4,), (7, 4), ()),  # a mixture per image (conditional), expanded by particles
        ((4,), (4,), (3, 1)),  # sample dims on z only, broadcast against the batch
        ((2, 4), (2, 4), ()),
    ],
)
def test_diagonal_normal_mixture_same_values_and_gradients_as_torch(own, expand_to, value_lead):
    P, D = 5, 3
    logits = torch.randn(own + (P,), requires_grad=True)
    loc = torch.randn(own + (P, D), requires_grad=True)
    raw = (0.5 * torch.randn(own + (P, D))).requires_grad_()
    z = torch.randn(value_lead + expand_to + (D,), requires_grad=True)
    out = []
    for make in (DiagonalNormalMixture, _torch_mixture):
        d = make(logits, loc, raw.exp()).expand(torch.Size(expand_to))
        assert d.batch_shape == expand_to and d.event_shape == (D,)
        lp = d.log_prob(z)
        out.append(
            (lp.detach(), torch.autograd.grad((lp * lp.detach()).sum(), (logits, loc, raw, z)))
        )
    (a, ga), (b, gb) = out
    assert a.shape == b.shape == value_lead + expand_to
    assert torch.allclose(a, b, atol=1e-5)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-5)


def test_diagonal_normal_mixture_keeps_precision_with_small_scales():
    # z near a narrow component far from the origin: the expanded square subtracts ~1e8-sized
    # terms, which float32 would get wrong by whole nats; float64 keeps it
    loc = torch.full((3, 4), 100.0) + torch.arange(3.0)[:, None]
    scale = torch.full((3, 4), 1e-3)
    z = loc[1] + 1e-3 * torch.tensor([0.5, -1.0, 0.2, 0.0])
    ref = _torch_mixture(torch.zeros(3), loc.double(), scale.double()).log_prob(z.double())
    lp = DiagonalNormalMixture(torch.zeros(3), loc, scale).log_prob(z)
    assert lp.item() == pytest.approx(ref.item(), abs=1e-3)


def test_diagonal_normal_mixture_samples_like_the_torch_mixture():
    logits, loc, scale = torch.zeros(2), torch.tensor([[-3.0], [3.0]]), torch.full((2, 1), 0.1)
    d = DiagonalNormalMixture(logits, loc, scale).expand((10,))
    z = d.sample((500,))
    assert z.shape == (500, 10, 1)
    assert (z.abs() - 3).abs().max() < 1  # every draw comes from one of the two components
    assert 0.4 < (z > 0).float().mean() < 0.6


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReparamNormal(torch.zeros(4, 3), torch.ones(4, 3)).to_event(1),
        lambda: StandardNormal((4, 3)).to_event(1),
        lambda: BernoulliImages(torch.zeros(4, 1, 2, 2)),
    ],
)
def test_expand_to_the_own_batch_shape_is_the_same_distribution(make):
    """What a plate does to every site on every step costs no new objects; any other shape
    still expands as torch's distributions do."""
    d = make()
    assert d.expand(d.batch_shape) is d
    assert d.expand(list(d.batch_shape)) is d  # Pyro's plates pass lists
    wider = d.expand((2,) + d.batch_shape)
    assert wider is not d and wider.batch_shape == (2,) + d.batch_shape
    assert wider.event_shape == d.event_shape
    value = d.sample()
    assert torch.allclose(wider.log_prob(value), d.log_prob(value).expand(wider.batch_shape))


def test_to_event_of_the_hot_path_distributions_matches_pyros():
    from pyro_cvae.nn.distributions import Independent

    loc, scale = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    ours, ref = ReparamNormal(loc, scale).to_event(1), dist.Normal(loc, scale).to_event(1)
    assert isinstance(ours, Independent) and ours.has_rsample
    assert (ours.batch_shape, ours.event_shape) == (ref.batch_shape, ref.event_shape)
    z = torch.randn(5, 3)
    assert torch.allclose(ours.log_prob(z), ref.log_prob(z))
    assert ReparamNormal(loc, scale).to_event(0).batch_shape == (5, 3)
    both = StandardNormal((5, 3)).to_event()  # None: every batch dim
    assert (both.batch_shape, both.event_shape) == ((), (5, 3))
    with pytest.raises(ValueError, match="Cannot remove event dimensions"):
        StandardNormal((5, 3)).to_event(-1)
