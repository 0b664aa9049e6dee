"""Smoke tests of experiments/{colored_digits,anomaly,augmentation}.py with tiny budgets."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import pyro_cvae
from pyro_cvae.applications import anomaly_scores
from pyro_cvae.judge import attribute_control

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["colored_digits", "anomaly", "augmentation", "quadrants"]


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"exp_{name}", ROOT / "experiments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help(script):
    parser = _load(script).build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert any(a.dest == "tiny" for a in flags)
    for action in flags:
        assert action.help and len(action.help) > 3, action.option_strings


def test_colored_digits_tiny(tmp_path):
    result = _load("colored_digits").main(
        ["--tiny", "--out", str(tmp_path / "res"), "--runs", str(tmp_path / "runs")]
    )
    assert result["budget"]["epochs"] == 2 and result["budget"]["conditions"] == 180
    # recomputed from the run folder the script left: same model, data, seed, count
    run = tmp_path / "runs" / "colored-digits"
    data = pyro_cvae.load_dataset("colored-digits", binarize="none").subset(300)
    model = pyro_cvae.load(run)  # (building it draws random numbers: before the seed)
    torch.manual_seed(0)
    again = attribute_control(model, data, num_per_condition=2)
    assert again["num_images"] == 180 * 2
    for key in ("color_accuracy", "digit_control_score", "brightness_mae"):
        assert result["runs"][0][key] == again[key], key
        assert result["summary"][key] == {"mean": again[key], "std": 0.0}
    for ext in ("json", "md"):
        assert (tmp_path / "res" / f"colored_digits_tiny.{ext}").stat().st_size > 0
    assert (tmp_path / "res" / "colored_digits.png").stat().st_size > 0
    assert (tmp_path / "runs" / "colored-digits" / "attributes.json").exists()


def test_without_class_renumbers_labels(digits):
    anomaly = _load("anomaly")
    nine = anomaly.without_class(digits, 3)
    assert nine.num_classes == 9 and "3" not in nine.class_names
    kept = digits.train.y[digits.train.y != 3]
    assert torch.equal(nine.train.y, kept - (kept > 3).long())
    assert nine.train.y.max() == 8 and len(nine.test) == int((digits.test.y != 3).sum())


def test_anomaly_tiny(tmp_path):
    anomaly = _load("anomaly")
    result = anomaly.main(["--tiny", "--out", str(tmp_path)])
    assert [r["class"] for r in result["per_class"]] == [0, 1]
    # class 0 recomputed: the same tiny models and scores; AUROC by brute force over pairs
    data = pyro_cvae.load_dataset("digits", binarize="dynamic").subset(300, 100)
    test = data.eval_split("test")
    cfg = dict(anomaly.DEFAULTS["digits"], k=2, hidden=(32,))
    nine = anomaly.without_class(data, 0)
    models = {"cvae": anomaly._train(nine, 9, cfg, 1, 0), "vae": anomaly._train(nine, 0, cfg, 1, 0)}
    normal, anomalous = test.x[test.y != 0][:30], test.x[test.y == 0][:30]
    row = result["per_class"][0]
    assert (row["num_normal"], row["num_anomalous"]) == (len(normal), len(anomalous))
    torch.manual_seed(0)
    for name, model in models.items():
        s_n = anomaly_scores(model, normal, num_samples=2)
        s_a = anomaly_scores(model, anomalous, num_samples=2)
        pairs = (s_a[:, None] > s_n[None, :]).double() + 0.5 * (s_a[:, None] == s_n[None, :])
        assert row[f"{name}_auroc"] == pytest.approx(pairs.mean().item(), abs=1e-12)
        assert row[f"{name}_mean_score_anomalous"] == pytest.approx(s_a.mean().item())
    saved = json.loads((tmp_path / "anomaly.digits-tiny.json").read_text())
    assert saved["budget"]["tiny"] is True and saved["summary"] == result["summary"]
    assert (tmp_path / "anomaly.digits-tiny.png").stat().st_size > 0
    assert (tmp_path / "anomaly.md").exists()


def test_few_labels_exact_counts():
    augmentation = _load("augmentation")
    y = torch.arange(10).repeat(7)
    split = pyro_cvae.Split(torch.rand(70, 1, 2, 2), y)
    few = augmentation.few_labels(split, 3, 10, seed=0)
    assert torch.equal(torch.bincount(few.y, minlength=10), torch.full((10,), 3))
    assert torch.equal(few.x, augmentation.few_labels(split, 3, 10, seed=0).x)
    with pytest.raises(ValueError, match="class 0 has only 7 images, fewer than n=8"):
        augmentation.few_labels(split, 8, 10, seed=0)


def test_augmentation_tiny(tmp_path):
    result = _load("augmentation").main(["--tiny", "--out", str(tmp_path)])
    assert len(result["rows"]) == 1
    row = result["rows"][0]
    assert row["n"] == 5
    # recomputed: the classifier of the 50 real images, counted on the first 100 test images
    augmentation = _load("augmentation")
    data = pyro_cvae.load_dataset("digits", binarize="none")
    test = data.test.subset(100)
    real = augmentation.few_labels(data.train, 5, 10, 0)
    clf = augmentation.train_classifier(real.x, real.y, data.image_shape, 10, 0)
    with torch.no_grad():
        hits = sum(int(clf(x[None]).argmax()) == int(y) for x, y in zip(test.x, test.y))
    assert row["real"] == pytest.approx(hits / 100, abs=1e-6)
    assert row["augmented"] * 100 == pytest.approx(round(row["augmented"] * 100), abs=1e-4)
    saved = json.loads((tmp_path / "augmentation_tiny.json").read_text())
    assert saved["digits"]["budget"]["generated"] == 5


# ------------------------------------------------------------------------------ quadrants


@pytest.fixture(scope="module")
def quadrant_models(digits):
    from pyro_cvae.train import train_quadrants

    x = digits.train.x[:200]
    return train_quadrants(x, 2, epochs=2, latent_dim=3, hidden_dims=(16,), seed=0)


class TestQuadrants:
    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_mask_counts_and_bottom_right_always_missing(self, k):
        from pyro_cvae.models import quadrant_mask

        m = quadrant_mask((1, 8, 8), k)
        assert m.shape == (1, 8, 8) and int(m.sum()) == 16 * k
        assert m[0, 4:, :4].all()  # the bottom-left quadrant is always given
        assert not m[0, 4:, 4:].any()  # the bottom-right one is always predicted

    def test_mask_errors(self):
        from pyro_cvae.models import quadrant_mask

        with pytest.raises(ValueError, match="num_given must be 1, 2 or 3 quadrants, got 4"):
            quadrant_mask((1, 8, 8), 4)

    def test_mask_image(self):
        from pyro_cvae.models import mask_image, quadrant_mask

        x = torch.rand(2, 1, 8, 8)
        m = quadrant_mask((1, 8, 8), 1)
        c = mask_image(x, m)
        assert torch.equal(c[:, m], x[:, m]) and (c[:, ~m] == -1).all()

    def test_baseline_nll_is_masked_cross_entropy(self, quadrant_models, digits):
        from pyro_cvae.evaluate import baseline_nll
        from pyro_cvae.models import mask_image, quadrant_mask

        baseline, _ = quadrant_models
        x = digits.test.x[:5]
        m = quadrant_mask((1, 8, 8), 2)
        p = torch.sigmoid(baseline(mask_image(x, m)))
        by_hand = -(x * p.log() + (1 - x) * (1 - p).log())[:, ~m].sum(1)
        torch.testing.assert_close(baseline_nll(baseline, x, 2), by_hand, atol=1e-4, rtol=1e-4)

    def test_one_sample_estimate_averages_to_the_elbo(self, quadrant_models, digits):
        """K = 1 importance sampling is the ELBO; compare with Pyro's Trace_ELBO."""
        from pyro.infer import Trace_ELBO

        from pyro_cvae.evaluate import conditional_nll
        from pyro_cvae.models import mask_image

        _, cvae = quadrant_models
        x = digits.test.x[:100]
        c = mask_image(x, cvae.given)
        with torch.no_grad():
            neg_elbo = Trace_ELBO(num_particles=200).loss(cvae.model, cvae.guide, c, x) / 100
        ours = torch.stack([conditional_nll(cvae, x, 1) for _ in range(200)]).mean().item()
        assert ours == pytest.approx(neg_elbo, rel=0.01)
        # more samples give a tighter (smaller) estimate of -log p(y | c)
        assert conditional_nll(cvae, x, 200).mean().item() < ours

    def test_completion_keeps_the_given_pixels(self, quadrant_models, digits):
        from pyro_cvae.models import mask_image

        _, cvae = quadrant_models
        x = digits.test.x[:3]
        out = cvae.complete(mask_image(x, cvae.given), 2)
        assert out.shape == (2, 3, 1, 8, 8)
        assert torch.equal(out[:, :, cvae.given], x[:, cvae.given].expand(2, -1, -1))
        assert ((out >= 0) & (out <= 1)).all()


def test_quadrants_tiny(tmp_path):
    result = _load("quadrants").main(["--tiny", "--out", str(tmp_path)])
    assert [r["given_quadrants"] for r in result["rows"]] == [1, 2, 3]
    for r in result["rows"]:
        assert r["baseline_nll"] > 0 and r["cvae_nll"] > 0 and r["pyro_baseline"] > 0
    assert (tmp_path / "quadrants_tiny.md").read_text().count("\n| ") >= 4
    assert (tmp_path / "quadrants_tiny.png").stat().st_size > 0
