"""Tests of pyro_cvae.objectives: exact answers on linear-Gaussian models, equalities between
estimators for the same random draws, DReG's unbiasedness and variance, and bad input."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import RenyiELBO, Trace_ELBO
from torch import nn

import pyro_cvae
from pyro_cvae.evaluate import importance_log_likelihood
from pyro_cvae.infer import scale_latents
from pyro_cvae.infer.objectives import (
    OBJECTIVES,
    DReGELBO,
    ImportanceWeightedELBO,
    importance_log_weights,
    make_objective,
)

# --------------------------------------------------------------------------- linear-Gaussian


class LinearGaussian(nn.Module):
    """A linear-Gaussian model with one or two stochastic layers, and a Gaussian guide.

    layers=1:  z1 ~ N(0, I),  x | z1 ~ N(W z1 + b, s^2 I)
    layers=2:  z1 ~ N(0, I),  z2 | z1 ~ N(C z1, t^2 I),  x | z2 ~ N(W z2 + b, s^2 I)

    Guide: q(z1 | x) = N(A1 x + c1, L1 L1^T) and, with two layers,
    q(z2 | z1, x) = N(E z1 + F x + f, L2 L2^T). It can represent the exact posterior (the
    chain rule of a Gaussian), so :meth:`set_exact_guide` makes every importance weight equal
    to p(x). Everything is float64 so "exact" means to ~1e-10.
    """

    def __init__(self, layers=1, d=2, D=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
        self.layers, self.d, self.D = layers, d, D
        self.s, self.t = 0.7, 0.8
        self.W = nn.Parameter(r(D, d))
        self.b = nn.Parameter(r(D))
        self.C = nn.Parameter(r(d, d) * 0.8)
        eye = torch.eye(d, dtype=torch.float64)
        self.A1 = nn.Parameter(r(d, D) * 0.3)
        self.c1 = nn.Parameter(r(d) * 0.3)
        self.L1 = nn.Parameter(eye * 0.6)
        self.E = nn.Parameter(r(d, d) * 0.3)
        self.F = nn.Parameter(r(d, D) * 0.3)
        self.f = nn.Parameter(r(d) * 0.3)
        self.L2 = nn.Parameter(eye * 0.6)

    def model(self, x, y=None):
        d = self.d
        zero, eye = x.new_zeros(d), torch.eye(d, dtype=x.dtype)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z1", dist.MultivariateNormal(zero, scale_tril=eye))
            if self.layers == 2:
                z = pyro.sample("z2", dist.Normal(z @ self.C.T, self.t).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample(
                "z1",
                dist.MultivariateNormal(x @ self.A1.T + self.c1, scale_tril=self.L1.tril()),
            )
            if self.layers == 2:
                loc = z1 @ self.E.T + x @ self.F.T + self.f
                pyro.sample("z2", dist.MultivariateNormal(loc, scale_tril=self.L2.tril()))

    # exact answers -----------------------------------------------------------------------

    def _joint(self):
        """Prior covariance of u = (z1[, z2]) and the map H with E[x | u] = H u + b."""
        d = self.d
        eye = torch.eye(d, dtype=torch.float64)
        W, C = self.W.detach(), self.C.detach()
        if self.layers == 1:
            return eye, W
        cov = torch.cat([torch.cat([eye, C.T], 1), torch.cat([C, C @ C.T + self.t**2 * eye], 1)], 0)
        return cov, torch.cat([torch.zeros(self.D, d, dtype=torch.float64), W], 1)

    def exact_log_px(self, x):
        cov_u, H = self._joint()
        cov_x = H @ cov_u @ H.T + self.s**2 * torch.eye(self.D, dtype=torch.float64)
        return dist.MultivariateNormal(self.b.detach(), cov_x).log_prob(x)

    @torch.no_grad()
    def set_exact_guide(self):
        """Set the guide's parameters to the exact posterior p(z1[, z2] | x)."""
        cov_u, H = self._joint()
        S = torch.linalg.inv(torch.linalg.inv(cov_u) + H.T @ H / self.s**2)
        G = S @ H.T / self.s**2  # posterior mean = G (x - b)
        d = self.d
        self.A1.copy_(G[:d])
        self.c1.copy_(-G[:d] @ self.b)
        self.L1.copy_(torch.linalg.cholesky(S[:d, :d]))
        if self.layers == 2:
            R = S[d:, :d] @ torch.linalg.inv(S[:d, :d])  # regression of z2 on z1
            self.E.copy_(R)
            self.F.copy_(G[d:] - R @ G[:d])
            self.f.copy_(-(G[d:] - R @ G[:d]) @ self.b)
            self.L2.copy_(torch.linalg.cholesky(S[d:, d:] - R @ S[:d, d:]))
        return self

    @torch.no_grad()
    def set_near_exact_guide(self):
        """The exact posterior with widened scales and shifted means: a good, inexact guide."""
        self.set_exact_guide()
        for L in (self.L1, self.L2):
            L.mul_(1.1)
        self.c1.add_(0.05)
        self.f.add_(-0.05)
        return self

    def guide_params(self):
        names = ["A1", "c1", "L1"] + (["E", "F", "f", "L2"] if self.layers == 2 else [])
        return [getattr(self, n) for n in names]

    def model_params(self):
        return [self.W, self.b] + ([self.C] if self.layers == 2 else [])


def lg_data(m, n=5, seed=1):
    """Draws from the model itself, so the posterior is well inside the prior."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, m.d, generator=g, dtype=torch.float64)
    if m.layers == 2:
        z = z @ m.C.detach().T + m.t * torch.randn(n, m.d, generator=g, dtype=torch.float64)
    noise = m.s * torch.randn(n, m.D, generator=g, dtype=torch.float64)
    return z @ m.W.detach().T + m.b.detach() + noise


def iw_bound(log_w):
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


class TestLinearGaussian:
    def test_exact_marginal_matches_brute_force_integral(self):
        # the closed form itself: a 2-d grid integral of p(x, z) over z
        m = LinearGaussian(layers=1)
        x = lg_data(m, 2)
        g = torch.linspace(-6, 6, 401, dtype=torch.float64)
        z = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)
        lp = dist.Normal(0, 1).log_prob(z).sum(-1) + dist.Normal(
            z @ m.W.detach().T + m.b.detach(), m.s
        ).log_prob(x).sum(-1)
        grid = torch.logsumexp(lp, 0) + 2 * math.log(g[1] - g[0])
        torch.testing.assert_close(grid, m.exact_log_px(x), atol=1e-6, rtol=0)

    @pytest.mark.parametrize("layers", [1, 2])
    def test_log_likelihood_estimate_matches_exact(self, layers):
        m = LinearGaussian(layers).set_near_exact_guide()
        x = lg_data(m, 4)
        exact = m.exact_log_px(x)
        # max_floats forces many chunks: K = 20000 is drawn 600 particles at a time
        est = importance_log_likelihood(m.model, m.guide, x, None, 20000, max_floats=600 * 4 * 3)
        assert est.shape == (4,)
        torch.testing.assert_close(est, exact, atol=0.005, rtol=0)
        assert ((est - exact).abs() > 1e-6).all()  # the guide is not exact: a real estimate

    def test_iwae_bound_increases_with_K_and_stays_below_log_px(self):
        m = LinearGaussian(layers=1)
        x = lg_data(m, 3)
        exact = m.exact_log_px(x).sum().item()
        R = 400  # replicates of each K-sample bound
        means, errs = [], []
        for K in (1, 4, 16, 64):
            lw, _, _ = importance_log_weights(ImportanceWeightedELBO(R * K), m.model, m.guide, x)
            b = iw_bound(lw.detach().reshape(K, R, -1)).sum(-1)  # (R,) bound of the batch
            means.append(b.mean().item())
            errs.append(b.std().item() / math.sqrt(R))
        for i in range(3):
            gap = means[i + 1] - means[i]
            assert gap > 4 * math.hypot(errs[i], errs[i + 1]), (means, errs)
        assert means[-1] < exact - 4 * errs[-1]

    @pytest.mark.parametrize("layers", [1, 2])
    @pytest.mark.parametrize("name", sorted(OBJECTIVES))
    def test_exact_posterior_every_bound_equals_log_px(self, name, layers):
        m = LinearGaussian(layers).set_exact_guide()
        x = lg_data(m, 5)
        exact = m.exact_log_px(x).sum()
        if name == "meanfield":
            # the analytic KL leaves E_q[log p(x | z)] sampled: not zero variance, but its mean
            # is log p(x) at the exact posterior (the ELBO's gap is KL(q || p(z | x)) = 0)
            draws = []
            for seed in range(20):
                pyro.set_rng_seed(seed)
                draws.append(make_objective(name, particles=50).loss(m.model, m.guide, x))
            draws = torch.tensor(draws, dtype=torch.float64)
            se = draws.std().item() / math.sqrt(len(draws))
            assert se > 0 and abs(draws.mean().item() + exact.item()) < 4 * se + 1e-9
            return
        for seed in (0, 1):  # zero variance: any draw gives the same value
            pyro.set_rng_seed(seed)
            loss = make_objective(name, particles=7, alpha=0.5).loss(m.model, m.guide, x)
            assert loss == pytest.approx(-exact.item(), abs=1e-9)

    @pytest.mark.parametrize("layers", [1, 2])
    def test_dreg_guide_gradient_vanishes_at_exact_posterior(self, layers):
        # log w is constant in z at the exact posterior, so the DReG guide gradient is exactly
        # zero on every draw; the IWAE gradient keeps a score term that is zero only on average.
        # With two layers this fails unless log q(z2 | z1) keeps its dependence on z1.
        m = LinearGaussian(layers).set_exact_guide()
        x = lg_data(m, 5)
        for name, zero in (("dreg", True), ("iwae", False)):
            m.zero_grad()
            pyro.set_rng_seed(0)
            make_objective(name, particles=6).differentiable_loss(m.model, m.guide, x).backward()
            norm = torch.cat([p.grad.flatten() for p in m.guide_params()]).norm().item()
            assert (norm < 1e-9) if zero else (norm > 1e-2), (name, norm)

    def test_dreg_holds_param_store_parameters_fixed(self):
        # a guide written as a function with pyro.param: its parameters are held fixed too
        m = LinearGaussian(1).set_exact_guide()
        x = lg_data(m, 4)

        def guide(x, y=None):
            A1 = pyro.param("A1", m.A1.detach().clone())
            c1 = pyro.param("c1", m.c1.detach().clone())
            L1 = pyro.param("L1", m.L1.detach().clone())
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z1", dist.MultivariateNormal(x @ A1.T + c1, scale_tril=L1.tril()))

        for name, zero in (("dreg", True), ("iwae", False)):
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            make_objective(name, 6).differentiable_loss(m.model, guide, x).backward()
            grads = [p.grad.flatten() for _, p in pyro.get_param_store().named_parameters()]
            assert len(grads) == 3
            norm = torch.cat(grads).norm().item()
            assert (norm < 1e-9) if zero else (norm > 1e-2), (name, norm)


# --------------------------------------------------------------------------- equalities


_DIGITS = {}


def _digits_batch(n=6):
    if not _DIGITS:  # loaded once per session (the conftest fixture is not visible here)
        _DIGITS["test"] = pyro_cvae.load_dataset("digits", binarize="dynamic").eval_split("test")
    s = _DIGITS["test"]
    return s.x[:n], s.y[:n]


def _loss_and_grads(obj, model, x, y, seed):
    model.zero_grad()
    pyro.set_rng_seed(seed)
    loss = obj.differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


class TestEqualities:
    @pytest.mark.parametrize(
        "name,kw",
        [("iwae", {}), ("renyi", {"alpha": 0.5}), ("renyi", {"alpha": 2.0}), ("dreg", {})],
    )
    def test_one_particle_equals_elbo_in_value_and_gradient(self, small_model, name, kw):
        x, y = _digits_batch()
        ref, ref_g = _loss_and_grads(Trace_ELBO(), small_model, x, y, seed=3)
        val, g = _loss_and_grads(make_objective(name, 1, **kw), small_model, x, y, seed=3)
        assert val == pytest.approx(ref, rel=1e-6)
        if name == "dreg":  # K=1 DReG is the path-derivative estimator: no score term
            enc = len(list(small_model.encoder.parameters()))
            assert any((a - b).abs().max() > 1e-4 for a, b in zip(g[:enc], ref_g[:enc]))
            g, ref_g = g[enc:], ref_g[enc:]
        for a, b in zip(g, ref_g):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    def test_tracegraph_equals_elbo_on_cvae(self, small_model):
        x, y = _digits_batch()
        for K in (1, 3):
            ref, ref_g = _loss_and_grads(make_objective("elbo", K), small_model, x, y, seed=4)
            val, g = _loss_and_grads(make_objective("tracegraph", K), small_model, x, y, seed=4)
            assert val == pytest.approx(ref, rel=1e-6)
            for a, b in zip(g, ref_g):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    def test_dreg_value_equals_iwae(self, small_model):
        x, y = _digits_batch()
        for K in (1, 5):
            pyro.set_rng_seed(5)
            a = make_objective("iwae", K).differentiable_loss(
                small_model.model, small_model.guide, x, y
            )
            pyro.set_rng_seed(5)
            b = make_objective("dreg", K).differentiable_loss(
                small_model.model, small_model.guide, x, y
            )
            assert b.item() == pytest.approx(a.item(), rel=1e-6)

    def test_batch_value_is_sum_of_per_image_values_with_shared_noise(self, small_model):
        x, y = _digits_batch(5)
        K = 8
        elbo = ImportanceWeightedELBO(K)
        pyro.set_rng_seed(6)
        log_w, _, guide_trace = importance_log_weights(
            elbo, small_model.model, small_model.guide, x, y
        )
        z = guide_trace.nodes["z"]["value"].detach()  # (K, B, D): the shared noise
        batch = elbo.bound_per_datapoint(log_w).detach()
        for i in range(5):  # each image alone, with its own K draws fed to the guide
            cond = {"z": z[:, i : i + 1]}
            model = poutine.condition(small_model.model, cond)
            guide = poutine.condition(small_model.guide, cond)
            with pyro.validation_enabled(False):  # "z" is observed in both, on purpose
                alone = ImportanceWeightedELBO(K).loss(model, guide, x[i : i + 1], y[i : i + 1])
            assert -alone == pytest.approx(batch[i].item(), abs=1e-4)
        assert batch.std() > 0.1  # the images differ: the check is not trivially satisfied

    def test_pyro_renyi_elbo_is_per_image_when_all_sites_in_data_plate(self, small_model):
        x, y = _digits_batch(6)
        for K in (1, 5):
            pyro.set_rng_seed(7)
            ours = make_objective("iwae", K).loss(small_model.model, small_model.guide, x, y)
            pyro.set_rng_seed(7)
            theirs = RenyiELBO(
                alpha=0.0, num_particles=K, vectorize_particles=True, max_plate_nesting=1
            ).loss(small_model.model, small_model.guide, x, y)
            assert theirs == pytest.approx(ours, rel=1e-6)


class GlobalLatent(nn.Module):
    """A site outside the data plate: g ~ N(0, 1); z_n ~ N(g, 1); x_n ~ N(z_n, 1)."""

    def __init__(self):
        super().__init__()
        self.g_loc = nn.Parameter(torch.tensor(0.3))
        self.z_shift = nn.Parameter(torch.tensor(0.1))

    def model(self, x, y=None):
        g = pyro.sample("g", dist.Normal(torch.zeros(1), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(g, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x, y=None):
        pyro.sample("g", dist.Normal(self.g_loc.reshape(1), 0.5).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x * 0.5 + self.z_shift, 0.8).to_event(1))


class TestGlobalSite:
    def test_importance_weighted_bounds_refuse_a_site_outside_the_data_plate(self):
        m = GlobalLatent()
        x = torch.randn(4, 1)
        for name in ("iwae", "renyi", "dreg"):
            with pytest.raises(
                ValueError, match=r"site 'g' of the model is outside pyro.plate\('data'\)"
            ):
                make_objective(name, 3).loss(m.model, m.guide, x)
        # the ELBO has no per-image log-mean-exp and accepts the model
        assert math.isfinite(make_objective("elbo", 3).loss(m.model, m.guide, x))

    @pytest.mark.parametrize("B", [1, 4])
    def test_pyro_renyi_elbo_takes_one_log_mean_exp_of_the_whole_batch(self, B):
        m = GlobalLatent()
        K = 6
        x = torch.randn(B, 1, generator=torch.Generator().manual_seed(B))
        renyi = RenyiELBO(alpha=0.0, num_particles=K, vectorize_particles=True, max_plate_nesting=1)
        pyro.set_rng_seed(8)
        loss = renyi.loss(m.model, m.guide, x)
        pyro.set_rng_seed(8)  # the same draws, traced
        mt, gt = next(renyi._get_traces(m.model, m.guide, (x,), {}))
        glob, local = 0.0, 0.0  # (K,) global terms, (K, B) per-image terms of log w
        for tr, sign in ((mt, 1), (gt, -1)):
            for s in tr.nodes.values():
                if s["type"] == "sample" and s["name"] == "g":
                    glob = glob + sign * s["log_prob"].reshape(K)
                elif s["type"] == "sample":
                    local = local + sign * s["log_prob"].reshape(K, B)
        whole = iw_bound(glob + local.sum(-1)).item()  # one log-mean-exp of the batch's weight
        assert -loss == pytest.approx(whole, abs=1e-5)
        # a sum of per-image log-mean-exps (global terms shared out) is a different number
        # unless the batch has one image
        per_image = iw_bound(local + glob[:, None] / B).sum().item()
        if B == 1:
            assert per_image == pytest.approx(whole, abs=1e-6)
        else:
            assert abs(per_image - whole) > 1e-2


# --------------------------------------------------------------------------- DReG


def _grad_draws(m, name, x, K, groups, copies, params):
    """``groups`` gradient estimates, each the mean of ``copies`` independent draws.

    The bound is a sum over images, so a batch holding ``copies`` copies of ``x`` gives the
    sum of that many independent draws in one backward pass.
    """
    xs = x.repeat(copies, *[1] * (x.dim() - 1))
    out = []
    obj = make_objective(name, K)
    for _ in range(groups):
        m.zero_grad()
        obj.differentiable_loss(m.model, m.guide, xs).backward()
        out.append(torch.cat([p.grad.flatten() for p in params]) / copies)
    return torch.stack(out)  # (groups, P)


def _encoder_draws(digits, prior, seed=0):
    """Encoder-gradient draws of iwae and dreg (K=5) for a VAE trained briefly on digits: 32
    groups, each the mean of 100 independent draws on 4 test images. Deterministic seeds."""
    data = digits.subset(500, 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    m = pyro_cvae.CVAE(
        image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(32,), prior=prior,
        prior_options={"pseudo_inputs": 20} if prior == "vamp" else {},
    )  # fmt: skip
    pyro_cvae.fit(
        m, data, epochs=4, batch_size=50, seed=seed, progress=False, validate_every=0,
    )  # fmt: skip
    x = data.eval_split("test").x[:4]
    enc = list(m.encoder.parameters())
    kw = dict(K=5, groups=32, copies=100, params=enc)
    pyro.set_rng_seed(9)
    out = {name: _grad_draws(m, name, x, **kw) for name in ("dreg", "iwae")}
    if prior == "vamp":
        with m.prior.encoder_held_fixed(m.encoder):
            out["dreg_prior_held"] = _grad_draws(m, "dreg", x, **kw)
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def vamp_draws(digits):
    return _encoder_draws(digits, "vamp")


@pytest.fixture(scope="module")
def normal_draws(digits):
    return _encoder_draws(digits, "normal")


class TestDReG:
    @pytest.mark.parametrize("layers", [1, 2])
    def test_gradients_unbiased_for_the_iwae_objective(self, layers):
        m = LinearGaussian(layers)  # guide not exact: the gradients are far from zero
        x = lg_data(m, 2)
        params = m.guide_params() + m.model_params()
        pyro.set_rng_seed(9)
        d = _grad_draws(m, "dreg", x, K=4, groups=16, copies=400, params=params)
        i = _grad_draws(m, "iwae", x, K=4, groups=16, copies=400, params=params)
        live = i.var(0) > 0  # the upper triangles of L1, L2 get no gradient
        d, i = d[:, live], i[:, live]
        se = torch.sqrt(d.var(0) / 16 + i.var(0) / 16)
        z = (d.mean(0) - i.mean(0)) / se
        assert z.abs().max() < 4.5, z
        # and the test has power: most average gradients are many standard errors from zero
        assert (i.mean(0).abs() / se).median() > 5, i.mean(0).abs() / se

    def test_dreg_guide_variance_lower_than_iwae_at_large_K(self, small_model):
        x, y = _digits_batch(4)
        enc = list(small_model.encoder.parameters())
        var = {}
        for name in ("iwae", "dreg"):
            obj = make_objective(name, 50)
            pyro.set_rng_seed(10)
            draws = []
            for _ in range(25):
                small_model.zero_grad()
                obj.differentiable_loss(small_model.model, small_model.guide, x, y).backward()
                draws.append(torch.cat([p.grad.flatten() for p in enc]))
            var[name] = torch.stack(draws).var(0).sum().item()
        assert var["dreg"] < 0.5 * var["iwae"], var

    def test_dreg_unbiased_under_the_vamp_prior(self, vamp_draws):
        # The VampPrior computes p(z) with the encoder: DReG must keep the prior's direct
        # dependence on the encoder's parameters (only the guide's score term is replaced).
        d, i, held = vamp_draws["dreg"], vamp_draws["iwae"], vamp_draws["dreg_prior_held"]
        live = i.var(0) > 0
        G = len(d)

        def z_scores(a):
            se = torch.sqrt(a.var(0) / G + i.var(0) / G)[live]
            return (a.mean(0) - i.mean(0))[live] / se, se

        z, se = z_scores(d)
        assert z.abs().max() < 5 and (z**2).mean() < 1.5, (z.abs().max(), (z**2).mean())
        # the test has power: most average gradients are many standard errors from zero, and
        # DReG with the prior's encoder dependence held fixed (the bug to guard against) is
        # rejected by a wide margin
        assert (i.mean(0)[live].abs() / se).median() > 5
        zb, _ = z_scores(held)
        assert zb.abs().max() > 20 and (zb**2).mean() > 10, (zb.abs().max(), (zb**2).mean())

    def test_dreg_encoder_variance_depends_on_whether_the_prior_shares_the_encoder(
        self, normal_draws, vamp_draws
    ):
        # documented in DReGELBO: with p(z) = N(0, I) DReG's encoder variance is far below
        # IWAE's; under the VampPrior the prior's own score-like term, which in IWAE largely
        # cancels the guide's score term, stays whole, and DReG's variance is above IWAE's
        def ratio(draws, name):
            return (draws[name].var(0).sum() / draws["iwae"].var(0).sum()).item()

        assert ratio(normal_draws, "dreg") < 0.5, ratio(normal_draws, "dreg")
        assert ratio(vamp_draws, "dreg") > 1.2, ratio(vamp_draws, "dreg")
        # the excess is the prior's term: without it DReG's variance is a fraction of IWAE's
        assert ratio(vamp_draws, "dreg_prior_held") < 0.5, ratio(vamp_draws, "dreg_prior_held")

    def test_dreg_trains_the_cvae(self, small_model, digits_small):
        hist = pyro_cvae.fit(
            small_model, digits_small, objective="dreg", particles=3, epochs=2, batch_size=50,
            progress=False, validate_every=0,
        )  # fmt: skip
        loss = hist.column("train_loss")
        assert all(math.isfinite(v) for v in loss) and loss[1] < loss[0]


# --------------------------------------------------------------------------- bad input


class TestBadInput:
    def test_unknown_objective(self):
        with pytest.raises(ValueError, match=r"unknown objective 'iwea'; choose one of elbo"):
            make_objective("iwea")
        with pytest.raises(ValueError, match="unknown objective 'iwea'"):
            pyro_cvae.TrainConfig(objective="iwea")

    @pytest.mark.parametrize("K", [0, -3, 2.5, True])
    def test_particles_below_one(self, K):
        for name in OBJECTIVES:
            with pytest.raises(ValueError, match=r"particles \(K\) must be an integer >= 1, got"):
                make_objective(name, K)
        with pytest.raises(ValueError, match="num_particles"):
            DReGELBO(K)
        with pytest.raises(ValueError, match="particles must be a positive integer"):
            pyro_cvae.TrainConfig(particles=K)

    @pytest.mark.parametrize("alpha", [1.0, -0.5, float("nan"), float("inf"), "half"])
    def test_alpha_out_of_range(self, alpha, small_model, digits_small):
        with pytest.raises(ValueError, match=r"alpha must be >= 0 and != 1 .*got"):
            make_objective("renyi", 3, alpha=alpha)
        with pytest.raises(ValueError, match="alpha must be >= 0 and != 1"):
            ImportanceWeightedELBO(2, alpha=alpha)
        with pytest.raises(ValueError, match="alpha must be >= 0 and != 1"):
            pyro_cvae.fit(
                small_model, digits_small, objective="renyi", alpha=alpha, epochs=1,
                progress=False,
            )  # fmt: skip

    def test_nan_bound_is_a_clear_error(self, small_model):
        x, y = _digits_batch(3)
        with torch.no_grad():
            small_model.decoder.net[0].weight[0, 0] = float("nan")
        nan_warning = pytest.warns(UserWarning, match="Encountered NaN")  # Pyro's validation
        for name in ("iwae", "renyi", "dreg"):
            with (
                nan_warning,
                pytest.raises(ValueError, match=rf"the '{name}' bound is nan for 3 of 3"),
            ):
                make_objective(name, 2).loss(small_model.model, small_model.guide, x, y)
        with (
            nan_warning,
            pytest.raises(ValueError, match="log-likelihood estimate is nan for 3 image"),
        ):
            pyro_cvae.log_likelihood(small_model, x, y, num_samples=4)

    def test_nan_during_training_stops_with_nonfinite_error(self, small_model, digits_small):
        with torch.no_grad():
            small_model.encoder.net[0].bias[0] = float("nan")
        with pytest.raises(pyro_cvae.NonFiniteLossError, match="the loss is nan"):
            pyro_cvae.fit(
                small_model, digits_small, objective="iwae", particles=2, epochs=1,
                progress=False, pyro_validation=False,  # validation would refuse the NaN first
            )  # fmt: skip

    def test_kl_weight_refused_inside_importance_weighted_bounds(self, small_model):
        x, y = _digits_batch(3)
        with (
            scale_latents(0.5, small_model.latent_sites),
            pytest.raises(ValueError, match="KL weight .* has no meaning inside it"),
        ):
            make_objective("iwae", 2).loss(small_model.model, small_model.guide, x, y)

    def test_non_reparameterized_guide_site_refused(self):
        def model(x, y=None):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample("c", dist.Bernoulli(0.5 * torch.ones(x.shape[0])))
                pyro.sample("x", dist.Normal(c, 1.0), obs=x)

        def guide(x, y=None):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("c", dist.Bernoulli(0.3 * torch.ones(x.shape[0])))

        with pytest.raises(ValueError, match="guide site 'c' is not reparameterizable"):
            make_objective("iwae", 2).loss(model, guide, torch.zeros(3))
