"""Tests of M1+M2 (pyro_cvae.train.m1m2): M2 on the features of a VAE."""

import json

import pytest
import torch

import pyro_cvae
from pyro_cvae.checkpoint import CheckpointError
from pyro_cvae.evaluate import accuracy
from pyro_cvae.train import M1M2, SemiSupervisedConfig, TrainConfig, fit_m1m2, m1_features
from pyro_cvae.train.m1m2 import M1FeatureFamily, m1_units

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(data, out=None, resume=False, m2_epochs=2, **kwargs):
    return fit_m1m2(
        data, TrainConfig(epochs=2, lr=3e-3),
        SemiSupervisedConfig(epochs=m2_epochs, lr=3e-3, num_labels=50, labelled_batch_size=20),
        m1_latent_dim=6, m2_latent_dim=3, hidden_dims=(16,), out=out, resume=resume,
        progress=False, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("units", ["active", "all"])
def test_the_stacked_classifier_reads_z1_from_the_m1_encoder(digits_small, units):
    data = digits_small.subset(300, 60)
    result = _fit(data, units=units)
    model = result.model
    keep = m1_units(model.m1, data) if units == "active" else torch.arange(6)
    assert torch.equal(model.units, keep) and (units == "all" or len(keep) < 6)
    assert isinstance(model, M1M2) and model.m2.config.image_shape == (len(keep),)
    assert model.m2.config.likelihood == "gaussian" and model.m2.config.learn_x_scale
    assert model.m2.config.x_scale == 1.0  # z1's scale under M1's prior, not the image 0.1
    test = data.eval_split("test")
    loc, _ = model.m1.encode(test.x)
    loc = loc[:, keep]  # M2 sees the units only
    assert torch.equal(model.classify(test.x), model.m2.classify(loc))
    assert torch.allclose(model.class_probs(test.x).sum(-1), torch.ones(60))
    # the accuracy M2's training reports is that of the stacked classifier on the images
    assert result.m2_history.last["test_accuracy"] == accuracy(model, test)
    # M1 saw every training image, M2 its features: one per image, labels kept
    assert result.features.train.x.shape == (300, len(keep))
    assert torch.equal(result.features.train.y, data.train.y)
    assert torch.equal(result.features.test.x, loc)


def test_m1s_active_units_are_those_whose_posterior_mean_varies(digits_small):
    data = digits_small.subset(200, 20)
    m1 = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(16,))
    with torch.no_grad():  # the means vary with x, but unit 1 reads no pixel: a constant
        m1.encoder.net[-1].weight.mul_(20)
        m1.encoder.net[-1].weight[1].zero_()
    loc, _ = m1.encode(data.eval_split("train").x)
    by_hand = torch.nonzero(loc.var(0) > 1e-2).flatten()
    assert torch.equal(m1_units(m1, data), by_hand) and 1 not in by_hand.tolist()
    assert len(by_hand) == 3
    with pytest.raises(ValueError, match="no active unit.*units='all'"):
        m1_units(m1, data, threshold=1e6)
    with pytest.raises(ValueError, match="units must be one of"):
        _fit(data, units="some")


def test_features_are_seeded_draws_of_q(digits_small):
    m1 = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(16,))
    data = digits_small.subset(200, 20)
    a, b, c = m1_features(m1, data, 0), m1_features(m1, data, 0), m1_features(m1, data, 1)
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    loc, scale = m1.encode(pyro_cvae.data.eval_binarize(data.train.x))
    noise = (a.train.x - loc) / scale  # the draw's standard normal noise
    assert noise.abs().max() > 0.5 and abs(noise.mean().item()) < 0.2
    assert abs(noise.std().item() - 1) < 0.1


def test_resume_continues_both_stages(digits_small, tmp_path):
    data = digits_small.subset(300, 60)
    straight = _fit(data, tmp_path / "a", m2_epochs=3)
    _fit(data, tmp_path / "b", m2_epochs=2)
    resumed = _fit(data, tmp_path / "b", resume=True, m2_epochs=3)
    assert resumed.m1_history.column("train_loss") == straight.m1_history.column("train_loss")
    assert resumed.m2_history.column("train_loss") == straight.m2_history.column("train_loss")
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert type(pyro_cvae.load(tmp_path / "b" / "m2")) is pyro_cvae.M2


def test_the_initial_scale_of_m2s_likelihood_is_an_argument(digits_small):
    data = digits_small.subset(100, 20)
    result = fit_m1m2(
        data, TrainConfig(epochs=1, lr=3e-3), SemiSupervisedConfig(epochs=1, lr=1e-6, num_labels=20),
        m1_latent_dim=4, m2_latent_dim=2, hidden_dims=(8,), m2_x_scale=0.1, progress=False,
    )  # fmt: skip
    assert result.model.m2.config.x_scale == 0.1
    # at a learning rate of 1e-6 the learned scale is still where it started
    assert result.model.m2.likelihood.log_scale.exp().item() == pytest.approx(0.1, rel=1e-3)


def test_m2_trains_on_a_fresh_draw_of_z1_per_batch(digits_small):
    data = digits_small.subset(200, 20)
    m1 = pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(16,))
    features = m1_features(m1, data, 0)
    family = M1FeatureFamily(None, m1, data)
    family.check(_m2(4), features, SemiSupervisedConfig(num_labels=20))
    family.setup(features, SemiSupervisedConfig(num_labels=20))
    assert family.x_l.shape == (20, 1, 8, 8) and family.x_u.shape == (180, 1, 8, 8)
    x = family.x_u[:50]
    torch.manual_seed(0)
    a, b = family.draw(x), family.draw(x)
    assert a.shape == (50, 4) and not torch.equal(a, b)  # a new z1 at every step
    # the draws are z1 ~ q(z1 | x) of freshly binarised images: their mean over many draws is
    # the mean over binarisations of M1's loc, their spread M1's scale and the binarisations'
    torch.manual_seed(1)
    draws = torch.stack([family.draw(x) for _ in range(4000)])
    locs, scales = zip(*(m1.encode(pyro_cvae.data.binarize_draw(x)) for _ in range(4000)))
    locs, scales = torch.stack(locs), torch.stack(scales)
    assert torch.allclose(draws.mean(0), locs.mean(0), atol=0.06)
    var = (scales**2).mean(0) + locs.var(0)  # the law of total variance
    assert torch.allclose(draws.var(0), var, rtol=0.12)


def _m2(width):
    return pyro_cvae.M2(pyro_cvae.ModelConfig(image_shape=(width,), num_classes=10, latent_dim=2,
                                              hidden_dims=(8,), likelihood="gaussian"))  # fmt: skip


def test_one_draw_per_image_is_an_argument_and_is_not_resumed_as_fresh(digits_small, tmp_path):
    data = digits_small.subset(300, 60)
    once = fit_m1m2(
        data, TrainConfig(epochs=2, lr=3e-3),
        SemiSupervisedConfig(epochs=1, lr=3e-3, num_labels=50, labelled_batch_size=20),
        m1_latent_dim=6, m2_latent_dim=3, hidden_dims=(16,), resample=False, out=tmp_path,
        progress=False,
    )  # fmt: skip
    fresh = _fit(data, m2_epochs=1)
    assert once.m2_history.column("train_loss") != fresh.m2_history.column("train_loss")
    config = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert "m1_features" not in config
    with pytest.raises(CheckpointError, match="resample=False"):
        _fit(data, tmp_path, resume=True, m2_epochs=2)
    saved = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert saved == config  # the refused resume wrote nothing


def test_a_fresh_draw_run_records_its_features(digits_small, tmp_path):
    result = _fit(digits_small.subset(300, 60), tmp_path, m2_epochs=1)
    config = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert config["m1_features"] == "a fresh draw per batch"
    assert config["m1_units"] == result.model.units.tolist()
