import pytest
import torch

from pyro_cvae.nn.nets import Classifier, broadcast_cat, make_decoder, make_encoder


def test_broadcast_cat_expands_the_condition_to_particles():
    z = torch.randn(5, 3, 4)  # (K, B, D)
    c = torch.randn(3, 2)  # (B, c)
    out = broadcast_cat(z, c)
    assert out.shape == (5, 3, 6)
    assert torch.equal(out[2, :, 4:], c)
    assert torch.equal(broadcast_cat(z, None), z)


@pytest.mark.parametrize(
    "net, shape", [("mlp", (1, 8, 8)), ("mlp", (3, 5, 7)), ("conv", (1, 28, 28))]
)
@pytest.mark.parametrize("cond", [0, 10])
def test_encoder_decoder_shapes_with_leading_sample_dims(net, shape, cond):
    enc = make_encoder(net, shape, cond, (32,), 6)
    dec = make_decoder(net, shape, cond, (32,), 6)
    B = 4
    x = torch.rand(B, *shape)
    c = torch.randn(B, cond) if cond else None
    loc, scale = enc(x, c)
    assert loc.shape == scale.shape == (B, 6) and (scale > 0).all()
    z = torch.randn(7, 2, B, 6)  # (particles, enumerated, B, D)
    out = dec(z, c)
    assert out.shape == (7, 2, B, *shape)
    # the decoder treats each leading index independently
    assert torch.allclose(dec(z[3, 1], c), out[3, 1], atol=1e-6)


def test_classifier_logits_shape():
    clf = Classifier((1, 8, 8), 10, (16,))
    assert clf(torch.rand(2, 5, 1, 8, 8)).shape == (2, 5, 10)


def test_activation_is_one_argument():
    import pyro_cvae as pc

    tanh = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,),
                   activation="tanh")  # fmt: skip
    kinds = {type(m).__name__ for m in tanh.modules()}
    assert "Tanh" in kinds and "ReLU" not in kinds
    layered = pc.build_model(
        pc.ModelConfig(hidden_dims=(8,), latent_dims=(4, 2), activation="tanh")
    )
    assert "ReLU" not in {type(m).__name__ for m in layered.modules()}
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose one of relu, tanh"):
        pc.ModelConfig(activation="gelu")


def test_adam_eps_reaches_the_optimizer(digits_small):
    import pyro_cvae as pc
    from pyro_cvae.infer import make_adam

    w = torch.nn.Parameter(torch.zeros(3))
    assert make_adam([w], 1e-3, 1e-4).defaults["eps"] == 1e-4
    with pytest.raises(ValueError, match="adam_eps must be a finite number > 0"):
        pc.TrainConfig(adam_eps=0.0)
    # the same run with a larger epsilon takes smaller steps early on: the runs differ
    runs = []
    for eps in (1e-8, 1.0):
        torch.manual_seed(0)
        m = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
        pc.fit(m, digits_small, epochs=1, batch_size=100, adam_eps=eps, progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert not torch.equal(runs[0], runs[1])
