import pytest

from pyro_cvae.models import ModelConfig
from pyro_cvae.train import TrainConfig, config_from_dict


def test_model_config_json_round_trip():
    cfg = ModelConfig(image_shape=(1, 28, 28), num_classes=10, latent_dim=50, hidden_dims=(400,))
    again = config_from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg
    assert again.cond_width == 10 and again.x_dim == 784


def test_train_config_round_trip_and_replace():
    cfg = TrainConfig(epochs=3, objective="iwae", particles=5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(epochs=7).epochs == 7 and cfg.epochs == 3  # frozen


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_shape=(8, 8)), "three positive integers"),
        (dict(num_classes=1), "num_classes must be 0"),
        (dict(num_classes=10, condition_dim=3), "not both"),
        (dict(latent_dim=0), "latent_dim must be a positive integer"),
        (dict(hidden_dims=()), "at least one hidden layer"),
        (dict(net="resnet"), "network 'resnet' is not registered in this process"),
        (dict(net="conv"), "built for 28x28"),
        (dict(likelihood="poisson"), "unknown likelihood 'poisson'"),
        (dict(prior="laplace"), "unknown prior 'laplace'"),
        (dict(x_scale=0.0), "x_scale must be a positive"),
    ],
)
def test_model_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(batch_size=-1), "batch_size must be a positive integer"),
        (dict(lr=0.0), "lr must be a positive finite number"),
        (dict(lr=float("nan")), "lr must be a positive finite number"),
        (dict(objective="elbow"), "unknown objective 'elbow'"),
        (dict(particles=0), "particles must be a positive integer"),
        (dict(beta=-1.0), "beta must be a finite number > 0"),
        (dict(device="tpu"), "unknown device 'tpu'"),
        (dict(seed=-3), "seed must be a non-negative integer"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_field_in_saved_config_is_explained():
    data = ModelConfig().to_dict()
    data["flux_capacitor"] = 1
    with pytest.raises(ValueError, match="no field"):
        ModelConfig.from_dict(data)
