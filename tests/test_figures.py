"""write_figures: the pictures each kind of model gets, written as readable PNG files."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from matplotlib.image import imread
from pyro.nn import PyroModule
from torch import nn

import pyro_cvae as pc
from pyro_cvae.figures import write_figures

ROWS = [
    {"epoch": 1, "train_loss": 50.0, "val_elbo": -48.0},
    {"epoch": 2, "train_loss": 40.0, "val_elbo": -41.0},
]


@pytest.fixture(scope="module")
def data(digits):
    return digits.subset(120, 40)


def _names(paths):
    return sorted(p.name for p in paths)


def _readable(paths):
    for p in paths:
        assert p.is_file(), p
        img = imread(p)
        assert img.ndim == 3 and min(img.shape[:2]) > 50  # a real picture, not an empty file


def test_a_label_cvae_gets_samples_reconstructions_latent_and_curves(data, tmp_path):
    torch.manual_seed(0)
    model = pc.build_model(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(16,)))
    paths = write_figures(model, data, tmp_path / "run", ROWS)
    assert _names(paths) == ["curves.png", "latent.png", "reconstructions.png", "samples.png"]
    _readable(paths)


def test_without_rows_no_curves_and_m2_adds_analogies(data, tmp_path):
    torch.manual_seed(0)
    model = pc.M2(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(16,)))
    paths = write_figures(model, data, tmp_path)
    assert _names(paths) == ["analogies.png", "latent.png", "reconstructions.png", "samples.png"]
    _readable(paths)


def test_an_unconditional_vae_and_a_hierarchical_cvae(data, tmp_path):
    torch.manual_seed(0)
    vae = pc.build_model(pc.ModelConfig.for_data(data, unconditional=True, latent_dim=2,
                                                 hidden_dims=(16,)))  # fmt: skip
    assert "samples.png" in _names(write_figures(vae, data, tmp_path / "vae"))
    deep = pc.build_model(pc.ModelConfig.for_data(data, latent_dims=(3, 2), hidden_dims=(16,)))
    paths = write_figures(deep, data, tmp_path / "deep", ROWS)
    assert _names(paths) == ["curves.png", "latent.png", "reconstructions.png", "samples.png"]
    _readable(paths)


class _OwnVAE(PyroModule):
    def __init__(self):
        super().__init__()
        self.dec = nn.Linear(2, 64)

    def model(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            logits = self.dec(z).reshape(*z.shape[:-1], 1, 8, 8)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(3), obs=x)

    def guide(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))


def test_a_model_of_the_users_own_class_gets_the_curves_only(data, tmp_path):
    paths = write_figures(_OwnVAE(), data, tmp_path, ROWS)
    assert _names(paths) == ["curves.png"]
    _readable(paths)
    assert write_figures(_OwnVAE(), data, tmp_path / "none") == []  # no rows: nothing to draw
