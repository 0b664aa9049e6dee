"""Evaluation is pure and sits below training: the judge classifier is an argument of
:mod:`pyro_cvae.evaluate`, a missing one is an error naming the fix, and the package-level
functions (:mod:`pyro_cvae.judge`) build it with ``train_classifier(data)`` when given none."""

import ast
from pathlib import Path

import pytest
import tomllib
import torch

import pyro_cvae
from pyro_cvae import judge
from pyro_cvae.evaluate import (
    JUDGE_KEY,
    attribute_control,
    classifier_accuracy,
    control_score,
    label_diversity,
    sample_quality,
)
from pyro_cvae.evaluate import evaluate as pure_evaluate
from pyro_cvae.evaluate import metrics as pure_metrics
from pyro_cvae.models import LabelClassifier
from pyro_cvae.train import train_classifier

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyro_cvae"
MISSING = r"pass classifier=\.\.\.; pyro_cvae\.train\.train_classifier\(data\) builds one"


def _quick_judge(data):
    """An untrained but fixed judge (an MLP, as fidelity needs): the same for the same data."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LabelClassifier(image_shape=data.image_shape, num_classes=data.num_classes).eval()


def _cvae(num_classes=10):
    torch.manual_seed(0)
    return pyro_cvae.CVAE(
        image_shape=(1, 8, 8), num_classes=num_classes, latent_dim=2, hidden_dims=(16,)
    )


@pytest.fixture
def builds(monkeypatch):
    """pyro_cvae.judge's trainer replaced by a quick judge; the list of data sets it was given."""
    calls = []

    def quick_train_classifier(data):
        calls.append(data)
        return _quick_judge(data)

    monkeypatch.setattr(judge, "train_classifier", quick_train_classifier)
    return calls


class TestEvaluateTakesTheJudge:
    """Inside pyro_cvae.evaluate nothing trains: a function that reads generated images through
    a judge refuses to run without one and says how to build one."""

    def test_control_score(self, digits):
        with pytest.raises(ValueError, match=MISSING):
            control_score(_cvae(), digits, num_per_class=2)

    def test_evaluate_refuses_before_the_costly_metrics(self, digits, monkeypatch):
        def elbo_first(*args, **kwargs):
            raise AssertionError("evaluate computed the ELBO before asking for the judge")

        monkeypatch.setattr(pure_metrics, "elbo_per_image", elbo_first)
        with pytest.raises(ValueError, match=MISSING) as err:
            pure_evaluate(_cvae(), digits, num_samples=2, num_images=10)
        assert "control=False skips it" in str(err.value)

    def test_evaluate_without_control_needs_no_judge(self, digits):
        m = pure_evaluate(_cvae(), digits, num_samples=2, num_images=10, control=False)
        assert "control_score" not in m and m["num_images"] == 10
        vae = pure_evaluate(_cvae(0), digits, num_samples=2, num_images=10)  # nothing to control
        assert "control_score" not in vae

    def test_evaluate_uses_the_judge_it_is_given(self, digits):
        judge_ = _quick_judge(digits)
        m = pure_evaluate(_cvae(), digits, num_samples=2, num_images=10, classifier=judge_)
        assert m[JUDGE_KEY] == classifier_accuracy(judge_, digits.test)

    def test_sample_quality_and_label_diversity(self, digits):
        images = digits.test.x[:20].reshape(10, 2, 1, 8, 8)
        with pytest.raises(ValueError, match=MISSING):
            sample_quality(images, digits)
        with pytest.raises(ValueError, match=MISSING):
            label_diversity(_cvae(), digits, num_samples=2)

    def test_attribute_control_names_the_digit_judge(self, digits):
        with pytest.raises(ValueError, match=r"train_classifier\(intensity_digits\(data\)\)"):
            attribute_control(_cvae(), digits, num_per_condition=2)


class TestThePackageLevelFunctionsBuildIt:
    """pc.evaluate, pc.control_score and pyro_cvae.judge's functions build the judge with
    train_classifier(data) when given none, and only where one is needed."""

    def test_control_score_and_evaluate_build_the_judge_of_their_data(self, digits, builds):
        model = _cvae()
        torch.manual_seed(1)
        built = pyro_cvae.control_score(model, digits, num_per_class=3)
        assert [d is digits for d in builds] == [True]
        torch.manual_seed(1)  # the same draws, judged by the same judge
        given = control_score(model, digits, num_per_class=3, classifier=_quick_judge(digits))
        assert built == given
        m = pyro_cvae.evaluate(model, digits, num_samples=2, num_images=10)
        assert len(builds) == 2 and builds[1] is digits
        assert m[JUDGE_KEY] == classifier_accuracy(_quick_judge(digits), digits.test)

    def test_no_judge_is_built_where_none_is_needed(self, digits, builds):
        pyro_cvae.evaluate(_cvae(), digits, num_samples=2, num_images=10, control=False)
        pyro_cvae.evaluate(_cvae(0), digits, num_samples=2, num_images=10)
        given = _quick_judge(digits)
        pyro_cvae.evaluate(_cvae(), digits, num_samples=2, num_images=10, classifier=given)
        pyro_cvae.control_score(_cvae(), digits, num_per_class=2, classifier=given)
        assert builds == []
        with pytest.raises(ValueError, match="label-conditioned"):  # the model, not the judge
            pyro_cvae.control_score(_cvae(0), digits)
        assert builds == []

    def test_fidelity_functions_build_it(self, digits, builds):
        images = digits.test.x[:20].reshape(10, 2, 1, 8, 8)
        q = judge.sample_quality(images, digits)
        d = judge.label_diversity(_cvae(), digits, num_samples=2)
        assert len(builds) == 2 and all(b is digits for b in builds)
        assert q[JUDGE_KEY] == classifier_accuracy(_quick_judge(digits), digits.test)
        assert d["diversity_samples"] == 2

    def test_the_real_judge_is_train_classifier_of_the_data(self, digits_small):
        """Without a stand-in: pc.control_score scores with train_classifier(data) (cached)."""
        model = _cvae()
        torch.manual_seed(2)
        built = pyro_cvae.control_score(model, digits_small, num_per_class=4)
        torch.manual_seed(2)
        given = control_score(
            model, digits_small, num_per_class=4, classifier=train_classifier(digits_small)
        )
        assert built == given


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules one source file imports (relative imports resolved)."""
    package = list(path.relative_to(ROOT).parts[:-1])  # a module's or an __init__'s package
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


class TestEvaluateSitsBelowTraining:
    def test_no_evaluate_module_imports_training_or_above(self):
        above = ("pyro_cvae.train", "pyro_cvae.judge", "pyro_cvae.applications",
                 "pyro_cvae.figures", "pyro_cvae.cli")  # fmt: skip
        files = sorted((PACKAGE / "evaluate").glob("*.py"))
        assert len(files) >= 8
        for path in files:
            bad = sorted(n for n in _imports(path) if n.startswith(above) or n == "pyro_cvae")
            assert not bad, f"{path.name} imports {bad}"

    def test_the_import_resolver_sees_relative_imports(self):
        """The check above can fail: train/families.py is seen importing from evaluate."""
        names = _imports(PACKAGE / "train" / "families.py")
        assert "pyro_cvae.evaluate.bounds.elbo_per_image" in names
        assert "pyro_cvae.evaluate.semisupervised.accuracy" in names
        assert "pyro_cvae.evaluate.control" in _imports(PACKAGE / "evaluate" / "fidelity.py")

    def test_the_layers_contract_puts_train_above_evaluate(self):
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
        (contract,) = config["tool"]["importlinter"]["contracts"]
        layers = [layer.replace(" ", "").split("|") for layer in contract["layers"]]
        index = {name: i for i, layer in enumerate(layers) for name in layer}
        assert index["pyro_cvae.judge"] < index["pyro_cvae.train"] < index["pyro_cvae.evaluate"]
        assert index["pyro_cvae.evaluate"] < index["pyro_cvae.infer"]

    def test_the_trainers_validation_metrics_are_evaluates(self):
        from pyro_cvae.evaluate import bounds, semisupervised
        from pyro_cvae.train import families

        assert families.elbo_per_image is bounds.elbo_per_image
        assert families.accuracy is semisupervised.accuracy
        for name in ("elbo_per_image", "log_weights", "accuracy", "generative_posterior"):
            assert not hasattr(pyro_cvae.infer, name), f"pyro_cvae.infer still has {name}"
