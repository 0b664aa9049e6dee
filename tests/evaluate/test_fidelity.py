"""pyro_cvae.evaluate.fidelity: Fréchet distance, judge features, within-label diversity."""

import pytest
import torch
from scipy import linalg

from pyro_cvae.data import Split
from pyro_cvae.evaluate import (
    classifier_accuracy,
    classifier_features,
    feature_moments,
    frechet_distance,
    gaussian_frechet,
    label_diversity,
    sample_quality,
    sharpness,
    within_label_diversity,
)
from pyro_cvae.models import CVAE, LabelClassifier, ModelConfig


def _random_cov(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


class TestFrechet:
    def test_equal_covariance_is_squared_mean_difference(self):
        sigma = _random_cov(5, 0)
        mu1 = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
        mu2 = torch.tensor([1.0, -1.0, 2.0, 0.5, 4.0], dtype=torch.float64)
        exact = (mu1 - mu2).square().sum().item()  # 1 + 4 + 0 + 6.25 + 0
        assert exact == 11.25
        assert frechet_distance((mu1, sigma), (mu2, sigma)) == pytest.approx(exact, abs=1e-9)

    def test_diagonal_covariances_closed_form(self):
        mu1 = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
        mu2 = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
        s1 = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
        s2 = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
        # sum (sqrt s1 - sqrt s2)^2 + |mu1 - mu2|^2 = (1 + 1 + 6.25) + (1 + 4)
        value = gaussian_frechet(mu1, torch.diag(s1), mu2, torch.diag(s2))
        assert value == pytest.approx(13.25, abs=1e-12)

    def test_matches_scipy_sqrtm_formula(self):
        mu1, mu2 = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
        s1, s2 = _random_cov(6, 1), _random_cov(6, 2)
        covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
        ref = 6.0 + float(s1.trace() + s2.trace()) - 2 * covmean.trace()
        assert gaussian_frechet(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)

    def test_samples_shifted_by_a_constant(self):
        # the sample covariances of a and a + shift are identical: only the mean term remains
        a = torch.randn(400, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        shift = torch.arange(8, dtype=torch.float64) / 4
        assert frechet_distance(a, a + shift) == pytest.approx(shift.square().sum().item(),
                                                               abs=1e-8)  # fmt: skip

    def test_zero_for_identical_sets_and_symmetric(self):
        g = torch.Generator().manual_seed(4)
        a = torch.randn(300, 10, generator=g)
        b = torch.randn(200, 10, generator=g) * 2 + 1
        assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
        ab, ba = frechet_distance(a, b), frechet_distance(b, a)
        assert ab > 1.0 and ab == pytest.approx(ba, rel=1e-10)

    def test_singular_covariance(self):
        # rank-deficient covariances (fewer samples than dimensions) stay finite and >= 0
        a = torch.randn(5, 20, generator=torch.Generator().manual_seed(5))
        assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
        assert frechet_distance(a, a * 0.5) > 0

    def test_moments_and_errors(self):
        x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
        mu, cov = feature_moments(x)
        assert mu.tolist() == [1.0, 2.0] and cov.tolist() == [[2.0, 2.0], [2.0, 2.0]]
        with pytest.raises(ValueError, match="N >= 2"):
            feature_moments(torch.zeros(1, 3))
        with pytest.raises(ValueError, match="covariances"):
            gaussian_frechet(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))


class TestDiversity:
    def test_exact_pairwise_distances(self):
        feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [1.0, 2.0]])
        labels = torch.tensor([0, 0, 1, 1, 1])
        # label 0: one pair at distance 5; label 1: pairs 0, 1, 1 -> mean 2/3
        div = within_label_diversity(feats, labels)
        assert div.tolist() == pytest.approx([5.0, 2 / 3])

    def test_needs_two_per_label(self):
        with pytest.raises(ValueError, match="label 1 has 1 item"):
            within_label_diversity(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
        with pytest.raises(ValueError, match="label 2 has 0 item"):
            within_label_diversity(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), 3)


def test_sharpness_exact():
    x = torch.tensor([0.0, 1.0, 0.5, 0.25])
    s = sharpness(x)
    assert s["binariness"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert s["midtone_fraction"] == 0.5


def test_classifier_features_are_the_penultimate_layer():
    torch.manual_seed(0)
    clf = LabelClassifier(image_shape=(1, 4, 4), num_classes=3, hidden_dims=(7,)).eval()
    x = torch.rand(5, 1, 4, 4)
    feats = classifier_features(clf, x, batch_size=2)
    assert feats.shape == (5, 7) and (feats >= 0).all()  # after the ReLU
    last = clf.net.net[-1]
    assert torch.allclose(last(feats), clf(x), atol=1e-6)


def test_sample_quality_of_real_images(digits):
    """Real test images fed as 'generated' ones, against themselves: zero distance, and a
    control score that is the judge's accuracy on them (an untrained judge: exact either way)."""
    test = digits.test
    n = min(int((test.y == c).sum()) for c in range(10))
    grid = torch.stack([test.x[test.y == c][:n] for c in range(10)])  # (10, n, 1, 8, 8)
    labels = torch.arange(10).repeat_interleave(n)
    same = Split(grid.flatten(0, 1), labels)
    torch.manual_seed(0)
    clf = LabelClassifier(image_shape=(1, 8, 8), num_classes=10).eval()
    q = sample_quality(grid, digits, classifier=clf, reference=same)
    assert q["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert q["control_score"] == pytest.approx(classifier_accuracy(clf, same))
    assert q["judge_test_accuracy"] == classifier_accuracy(clf, test)
    feats = classifier_features(clf, same.x)
    assert q["diversity"] == pytest.approx(within_label_diversity(feats, labels).mean().item())
    assert q["num_images"] == 10 * n and len(q["per_class"]) == 10
    assert q["midtone_fraction"] == sharpness(grid)["midtone_fraction"]
    with pytest.raises(ValueError, match="at least 2 images per label"):
        sample_quality(grid[:, :1], digits, classifier=clf)


def test_label_diversity_is_zero_for_an_unused_latent_and_exact_for_real_images(digits):
    """A model whose latent is always 0 draws one image per label: diversity exactly 0; the real
    figure is the within-label diversity of the first n test images of each label."""
    torch.manual_seed(0)
    clf = LabelClassifier(image_shape=(1, 8, 8), num_classes=10).eval()
    model = CVAE(ModelConfig.for_data(digits))
    model.sample_latents = lambda c, shape, temperature=1.0: torch.zeros(*shape, 8)
    d = label_diversity(model, digits, num_samples=5, classifier=clf)
    assert d["diversity"] == 0.0 and d["diversity_samples"] == 5
    real = torch.cat([digits.test.x[digits.test.y == c][:5] for c in range(10)])
    labels = torch.arange(10).repeat_interleave(5)
    expected = within_label_diversity(classifier_features(clf, real), labels).mean().item()
    assert d["real_diversity"] == pytest.approx(expected)
    vae = CVAE(ModelConfig.for_data(digits, unconditional=True))
    with pytest.raises(ValueError, match="label-conditioned"):
        label_diversity(vae, digits, classifier=clf)
