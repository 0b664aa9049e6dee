"""Tests of pyro_cvae.evaluate: chunked log-likelihoods, ELBO per image, active units,
the marginal likelihood and generative classifier, bits per dimension, bad input."""

import math
from types import SimpleNamespace

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import pyro_cvae
from pyro_cvae.evaluate import (
    active_units,
    bits_per_dim,
    control_score,
    elbo_per_image,
    generative_classify,
    log_likelihood,
    log_marginal,
    log_weights,
)


@pytest.fixture(scope="module")
def trained(digits):
    """A small CVAE trained for a few seconds on digits (shared by the tests that need one)."""
    torch.manual_seed(0)
    model = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, hidden_dims=(64,))
    with pyro.validation_enabled(False):
        pyro_cvae.fit(model, digits, epochs=5, batch_size=64, lr=3e-3, progress=False,
                      validate_every=0)  # fmt: skip
    return model.eval()


def _test_batch(digits, n):
    s = digits.eval_split("test")
    return s.x[:n], s.y[:n]


class TestLogLikelihood:
    def test_chunked_equals_one_chunk_within_monte_carlo_error(self, trained, digits):
        x, y = _test_batch(digits, 6)
        K = 3000
        pyro.set_rng_seed(0)
        one = log_likelihood(trained, x, y, K, max_floats=10**9)
        pyro.set_rng_seed(1)
        many = log_likelihood(trained, x, y, K, max_floats=6 * 64 * 37)  # chunks of 37
        # Monte Carlo error of one estimate, from the spread of K-sample log weights
        lw = log_weights(trained, x, y, K)
        w = torch.exp(lw - lw.max(0).values)
        se = (w.std(0) / w.mean(0) / math.sqrt(K)).max().item()
        assert (one - many).abs().max().item() < 5 * math.sqrt(2) * se + 1e-6
        assert se < 0.05  # tolerance is tight: the guide is good and K large

    def test_memory_bounded_chunk_count_grows_with_K(self, small_model, digits):
        x, y = _test_batch(digits, 10)
        shapes = []
        handle = small_model.decoder.register_forward_hook(
            lambda mod, inp, out: shapes.append(tuple(out.shape))
        )
        budget = 10 * 64 * 25  # 25 particles of a 10-image batch of 64 pixels
        try:
            for K in (25, 100, 400):
                shapes.clear()
                log_likelihood(small_model, x, y, K, batch_size=10, max_floats=budget)
                assert len(shapes) == K // 25  # one decoder call per chunk of 25 particles
                assert max(math.prod(s) for s in shapes) <= budget
        finally:
            handle.remove()

    def test_importance_estimate_is_above_elbo_and_rises_with_K(self, trained, digits):
        x, y = _test_batch(digits, 100)
        lw = log_weights(trained, x, y, 500).double()  # (K, N): one set of draws, grouped
        elbo = lw.mean(0)
        ll10 = (torch.logsumexp(lw.view(50, 10, -1), 1) - math.log(10)).mean(0)
        ll500 = torch.logsumexp(lw, 0) - math.log(500)
        # Jensen on the same weights: ELBO <= mean of K=10 bounds <= K=500 bound, per image
        assert (elbo < ll10).all() and (ll10 < ll500).all()
        assert (ll500 - elbo).mean() > 0.1  # a visible gap: the bounds differ
        # log_likelihood is unbiased for these expectations: 20 fresh draws of each image
        R = 20
        xr, yr = x.repeat(R, 1, 1, 1), y.repeat(R)
        for K, expected in ((1, elbo), (10, ll10)):
            est = log_likelihood(trained, xr, yr, K).double().view(R, -1).mean(0)
            d = est - expected
            se = d.std().item() / math.sqrt(len(d))
            assert 4 * se < 0.25  # so a 0.5-nat bias would fail the next line
            assert abs(d.mean().item()) < 4 * se, (K, d.mean().item(), se)
        per_image = elbo_per_image(trained, pyro_cvae.Split(xr, yr), num_samples=1)
        d = per_image.double().view(R, -1).mean(0) - elbo
        se = d.std().item() / math.sqrt(len(d))
        assert 4 * se < 0.25 and abs(d.mean().item()) < 4 * se

    @pytest.mark.parametrize("K", [0, -1, 2.0, True])
    def test_bad_num_samples(self, small_model, digits, K):
        x, y = _test_batch(digits, 2)
        with pytest.raises(ValueError, match=r"num_samples \(K\) must be an integer >= 1, got"):
            log_likelihood(small_model, x, y, K)

    def test_bad_images_are_refused_before_sampling(self, small_model, digits):
        x, y = _test_batch(digits, 2)
        with pytest.raises(ValueError):
            log_likelihood(small_model, x * float("nan"), y, 5)


class TestElboPerImage:
    def test_equals_trace_elbo_loss_on_the_same_batch(self, small_model, digits):
        x, y = _test_batch(digits, 20)
        pyro.set_rng_seed(3)
        ours = elbo_per_image(small_model, pyro_cvae.Split(x, y), batch_size=100)
        pyro.set_rng_seed(3)
        ref = Trace_ELBO().loss(small_model.model, small_model.guide, x, y)
        assert ours.shape == (20,)
        assert ours.sum().item() == pytest.approx(-ref, rel=1e-6)


class TestActiveUnits:
    def test_counts_dims_whose_posterior_mean_varies(self, small_model, digits):
        x, y = _test_batch(digits, 200)
        head = small_model.encoder.net[2]  # last layer: rows 0..3 are loc, 4..7 the scales
        with torch.no_grad():
            head.weight[:2] = 0.0  # dims 0, 1: constant mean, inactive
            head.bias[:2] = 0.7
            _, v = active_units(small_model, x, y)
            for dim, target in ((2, 0.02), (3, 0.005)):  # just above and just below 0.01
                head.weight[dim] *= math.sqrt(target / v[dim].item())
                head.bias[dim] = 0.0
        n, variances = active_units(small_model, x, y)
        assert variances[:2].tolist() == [0.0, 0.0]
        torch.testing.assert_close(variances[2:], torch.tensor([0.02, 0.005]), rtol=1e-4, atol=0)
        assert n == 1
        assert active_units(small_model, x, y, threshold=0.001)[0] == 2


class TestMarginalAndClassifier:
    def test_probabilities_sum_to_one_and_beat_chance(self, trained, digits):
        x, y = _test_batch(digits, 100)
        pyro.set_rng_seed(0)
        joint, marginal = log_marginal(trained, x, num_samples=20)
        assert joint.shape == (100, 10) and marginal.shape == (100,)
        # brute force on the same draws: each class's log p(x | y = c), then Bayes' rule
        pyro.set_rng_seed(0)
        lik = torch.stack(
            [log_likelihood(trained, x, torch.full((100,), c), 20) for c in range(10)], -1
        ).double()
        p_xy = lik.exp()  # 8x8 digits: p(x | y) is far from underflow
        torch.testing.assert_close(joint.double(), lik - math.log(10))
        torch.testing.assert_close(marginal.double(), (p_xy.sum(-1) / 10).log())
        pyro.set_rng_seed(0)
        probs = generative_classify(trained, x, num_samples=20)
        torch.testing.assert_close(
            probs.double(), p_xy / p_xy.sum(-1, keepdim=True), atol=1e-5, rtol=1e-4
        )
        acc = (probs.argmax(-1) == y).float().mean().item()
        assert acc > 0.5, acc  # chance is 0.1

    def test_prior_over_labels_shifts_the_posterior(self, trained, digits):
        x, _ = _test_batch(digits, 5)
        prior = torch.full((10,), 1e-3)
        prior[3] = 1 - 9e-3
        pyro.set_rng_seed(0)
        flat = generative_classify(trained, x, 10)
        pyro.set_rng_seed(0)
        tilted = generative_classify(trained, x, 10, prior=prior)
        assert (tilted[:, 3] > flat[:, 3]).all()

    def test_unconditional_model_refused(self, digits):
        vae = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=2, hidden_dims=(8,))
        with pytest.raises(ValueError, match="needs a label-conditioned model"):
            log_marginal(vae, _test_batch(digits, 2)[0])


class TestBitsPerDim:
    def test_conversion(self):
        assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
        assert bits_per_dim(torch.tensor([0.0, 64 * math.log(2) * 3]), 64).tolist() == [0, 3]

    @pytest.mark.parametrize("dims", [0, -4, 2.5])
    def test_bad_dims(self, dims):
        with pytest.raises(ValueError, match="num_dims must be a positive integer"):
            bits_per_dim(1.0, dims)

    def test_evaluate_reports_consistent_numbers(self, trained, digits):
        pyro.set_rng_seed(0)
        m = pyro_cvae.evaluate(trained, digits.subset(50, 60), num_samples=50, control=False)
        assert m["bits_per_dim"] == pytest.approx(m["nll"] / (64 * math.log(2)))
        assert m["nll"] < -m["elbo"]  # the importance-sampled estimate is the tighter one
        assert 0 <= m["active_units"] <= m["latent_dim"] == 4
        assert "generative_accuracy" not in m  # only with classify_samples > 0

    def test_kl_matches_the_analytic_kl(self, trained, digits):
        m = pyro_cvae.evaluate(trained, digits, num_samples=1, control=False, num_images=300)
        s = digits.eval_split("test").subset(300)
        loc, scale = trained.encode(s.x, s.y)  # q(z | x, y); the prior is N(0, I)
        analytic = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1).mean().item()
        assert analytic > 0.2  # a non-trivial posterior
        assert m["kl"] == pytest.approx(analytic, rel=0.15)  # ~4 standard errors

    def test_generative_accuracy_with_classify_samples(self, trained, digits):
        m = pyro_cvae.evaluate(trained, digits, num_samples=2, control=False, num_images=50,
                               classify_samples=10)  # fmt: skip
        acc = m["generative_accuracy"]
        assert acc * 50 == pytest.approx(round(acc * 50))  # a fraction of the 50 images
        assert acc > 0.5  # chance is 0.1

    def test_evaluate_on_the_first_images_only(self, trained, digits):
        m = pyro_cvae.evaluate(trained, digits, num_samples=5, control=False, num_images=20)
        assert m["num_images"] == 20
        with pytest.raises(ValueError, match="num_images must be a positive integer"):
            pyro_cvae.evaluate(trained, digits, num_samples=5, control=False, num_images=0)


class _Oracle:
    """A stand-in "model" whose ``sample(labels, n)`` returns real test images of each label
    (of label + ``shift`` mod 10 when ``shift`` is set)."""

    def __init__(self, split, shift=0):
        self.config = SimpleNamespace(num_classes=10)
        self.device = torch.device("cpu")
        self.split, self.shift = split, shift

    def sample(self, labels, n):
        return torch.stack(
            [self.split.x[self.split.y == (c + self.shift) % 10][:n] for c in labels.tolist()]
        )


class _NearestMean(torch.nn.Module):
    """A quick judge: the class whose mean training image is nearest."""

    def __init__(self, train):
        super().__init__()
        means = torch.stack([train.x[train.y == c].mean(0).flatten() for c in range(10)])
        self.means = torch.nn.Parameter(means, requires_grad=False)

    def forward(self, x):
        return -torch.cdist(x.flatten(1), self.means)


class TestControlScore:
    def test_real_images_score_the_judges_accuracy_and_wrong_labels_zero(self, digits):
        judge = _NearestMean(digits.train)
        test = digits.test  # the images the judge's accuracy is measured on
        real = control_score(_Oracle(test), digits, num_per_class=25, classifier=judge)
        with torch.no_grad():  # brute force: the judge's hits on the same 25 images per class
            hits = [
                (judge(test.x[test.y == c][:25]).argmax(-1) == c).float().mean().item()
                for c in range(10)
            ]
        assert real["per_class"] == pytest.approx(hits)
        assert real["judge_test_accuracy"] > 0.8
        assert real["control_score"] == pytest.approx(real["judge_test_accuracy"], abs=0.06)
        shifted = control_score(_Oracle(test, 1), digits, num_per_class=25, classifier=judge)
        assert shifted["control_score"] < 0.05

    def test_unconditional_model_refused(self, digits):
        vae = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=2, hidden_dims=(8,))
        with pytest.raises(ValueError, match="label-conditioned"):
            control_score(vae, digits)


class TestBernoulliSupport:
    """Grey levels under a Bernoulli likelihood: refused unless binarize says what to score."""

    def test_grey_levels_are_refused_with_the_fix(self, trained, digits):
        x, y = digits.test.x[:4], digits.test.y[:4]
        with pytest.raises(ValueError, match=r"grey levels \(4 of 4 images.*binarize=True"):
            log_likelihood(trained, x, y, 2)
        with pytest.raises(ValueError, match="binarize=False"):
            pyro_cvae.log_marginal(trained, x, 2)
        with pytest.raises(ValueError, match="binarize must be True, False or None, got 1"):
            log_likelihood(trained, x, y, 2, binarize=1)

    def test_binarize_true_scores_the_draw_evaluate_scores(self, trained, digits):
        grey, drawn = digits.test, digits.eval_split("test")  # the whole split: the same draw
        pyro.set_rng_seed(4)
        want = log_likelihood(trained, drawn.x, drawn.y, 3)  # binary: no choice needed
        pyro.set_rng_seed(4)
        assert torch.equal(log_likelihood(trained, grey.x, grey.y, 3, binarize=True), want)
        pyro.set_rng_seed(4)
        soft = log_likelihood(trained, grey.x, grey.y, 3, binarize=False)
        assert torch.isfinite(soft).all() and not torch.equal(soft, want)

    def test_evaluate_still_binarises_first(self, trained, digits):
        pyro.set_rng_seed(5)
        m = pyro_cvae.evaluate(trained, digits, num_samples=2, control=False, num_images=20)
        s = digits.eval_split("test").subset(20)
        pyro.set_rng_seed(5)
        pyro_cvae.elbo_per_image(trained, s)  # evaluate draws the ELBO's particles first
        assert m["nll"] == -log_likelihood(trained, s.x, s.y, 2).mean().item()


class TestConditionIgnored:
    def test_control_score_at_most_one_and_a_half_times_chance(self):
        from pyro_cvae.evaluate import condition_ignored

        assert condition_ignored({"control_score": 0.15}, 10).startswith(
            "the samples ignore the label: control score 0.150 <= 1.5 x chance (1/10) = 0.150"
        )
        assert condition_ignored({"control_score": 0.1501, "kl": 0.0}, 10) is None
        assert "0.300" in condition_ignored({"control_score": 0.3}, 5)
        judged = condition_ignored({"control_score": 0.1, "judge_test_accuracy": 0.96}, 10)
        assert "the judge scores 0.96 on real test images" in judged

    def test_kl_without_a_control_score(self):
        from pyro_cvae.evaluate import condition_ignored

        assert "posterior collapse" in condition_ignored({"kl": 0.05})
        assert condition_ignored({"kl": 0.1}) is None and condition_ignored({}) is None

    def test_judge_accuracy_reads_results_written_under_the_old_key(self):
        from pyro_cvae.evaluate import judge_accuracy

        assert judge_accuracy({"classifier_test_accuracy": 0.9}) == 0.9
        assert judge_accuracy({"judge_test_accuracy": 0.8, "classifier_test_accuracy": 0.9}) == 0.8
        assert judge_accuracy({}) is None
