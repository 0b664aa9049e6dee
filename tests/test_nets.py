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
