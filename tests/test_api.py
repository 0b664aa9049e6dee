"""The public API for the three condition kinds (issue 13): labels, vectors, none."""

import pytest
import torch

import pyro_cvae as pc

SMALL = dict(image_shape=(1, 8, 8), latent_dim=2, hidden_dims=(8,))


def _labels():
    torch.manual_seed(0)
    return pc.CVAE(num_classes=10, **SMALL)


def _vectors():
    torch.manual_seed(0)
    return pc.CVAE(condition_dim=3, **SMALL)


def _plain():
    torch.manual_seed(0)
    return pc.CVAE(num_classes=0, **SMALL)


def test_condition_dim_alone_builds_a_vector_model():
    model = pc.CVAE(image_shape=(1, 8, 8), condition_dim=3)
    assert model.config.num_classes == 0 and model.config.condition_dim == 3
    assert pc.ModelConfig().num_classes == 10  # labels stay the default
    assert pc.ModelConfig(condition_dim=3).to_dict()["num_classes"] == 0  # stored resolved
    with pytest.raises(ValueError, match="not both"):
        pc.ModelConfig(num_classes=10, condition_dim=3)


def test_sample_shapes_follow_one_rule_for_labels_and_vectors():
    labels, vectors, plain = _labels(), _vectors(), _plain()
    assert labels.sample(5, 4).shape == (4, 1, 8, 8)  # one label
    assert labels.sample(torch.tensor(5), 4).shape == (4, 1, 8, 8)
    assert labels.sample([5], 4).shape == (1, 4, 1, 8, 8)  # M = 1 labels
    assert labels.sample(torch.tensor([1, 2]), 4).shape == (2, 4, 1, 8, 8)
    c = torch.tensor([0.0, 1.0, 0.5])
    assert vectors.sample(c, 4).shape == (4, 1, 8, 8)  # one vector, like one label
    assert vectors.sample(c[None], 4).shape == (1, 4, 1, 8, 8)
    assert vectors.sample(c.double().expand(2, 3), 4).shape == (2, 4, 1, 8, 8)
    assert vectors.sample([1, 0, 0], 2).shape == (2, 1, 8, 8)  # integers are converted
    assert plain.sample(None, 3).shape == (3, 1, 8, 8)
    assert plain.sample(num_samples=3).shape == (3, 1, 8, 8)


def test_sample_refuses_what_it_cannot_read_clearly():
    with pytest.raises(ValueError, match="has no condition.*sample\\(None, num_samples\\)"):
        _plain().sample(3)
    with pytest.raises(ValueError, match="vectors of width 3.*shape \\(3,\\)"):
        _vectors().sample(5)
    with pytest.raises(ValueError, match="vectors of width 3"):
        _vectors().sample(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="got str '5'"):
        _labels().sample("5")
    with pytest.raises(ValueError, match="conditional"):
        _vectors().sample(None)
    with pytest.raises(ValueError, match="num_samples"):
        _labels().sample(5, "3")


def test_float64_inputs_are_converted():
    model, data = _labels(), pc.load_dataset("digits").subset(20, 20)
    x, y = data.test.x[:4], data.test.y[:4]
    loc, scale = model.encode(x.double(), y)
    assert loc.dtype == torch.float32
    assert torch.allclose(loc, model.encode(x, y)[0])
    assert model.reconstruct(x.double(), y).dtype == torch.float32
    assert model.decode(loc.double(), y).dtype == torch.float32
    vec = _vectors()
    c = torch.rand(4, 3, dtype=torch.float64)
    assert vec.encode(x.double(), c)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="floating point"):
        model.encode((x * 255).to(torch.uint8), y)
