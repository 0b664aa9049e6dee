import json

import pyro
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.cli import main
from pyro_cvae.nn.nets import BatchNorm, Classifier, broadcast_cat, make_decoder, make_encoder


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
    tanh = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,),
                   activation="tanh")  # fmt: skip
    kinds = {type(m).__name__ for m in tanh.modules()}
    assert "Tanh" in kinds and "ReLU" not in kinds
    layered = pc.build_model(
        pc.ModelConfig(hidden_dims=(8,), latent_dims=(4, 2), activation="tanh")
    )
    assert "ReLU" not in {type(m).__name__ for m in layered.modules()}
    softplus = pc.M2(pc.ModelConfig(image_shape=(1, 8, 8), num_classes=10, latent_dim=2,
                                    hidden_dims=(8,), activation="softplus"))  # fmt: skip
    kinds = {type(m).__name__ for m in softplus.modules()}
    assert "Softplus" in kinds and "ReLU" not in kinds
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose one of relu, tanh, "
                       "softplus"):  # fmt: skip
        pc.ModelConfig(activation="gelu")


def test_adam_eps_reaches_the_optimizer(digits_small):
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


def test_adam_beta1_reaches_the_optimizer(digits_small):
    from pyro_cvae.infer import make_adam

    w = torch.nn.Parameter(torch.zeros(3))
    assert make_adam([w], 1e-3).defaults["betas"] == (0.9, 0.999)  # torch's
    assert make_adam([w], 1e-3, beta1=0.95).defaults["betas"] == (0.95, 0.999)
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=r"adam_beta1 must be a number in \[0, 1\)"):
            pc.TrainConfig(adam_beta1=bad)
    assert pc.TrainConfig(adam_beta1=0.0).adam_beta1 == 0.0  # plain RMSprop-like Adam is allowed
    # the first moment's decay changes the steps after the first: the runs differ
    runs = []
    for beta1 in (0.9, 0.5):
        torch.manual_seed(0)
        m = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
        pc.fit(m, digits_small, epochs=1, batch_size=100, adam_beta1=beta1, progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert not torch.equal(runs[0], runs[1])


# ---------------------------------------------------------------- dropout and batch norm


def test_batch_norm_normalises_over_all_leading_dims():
    bn = BatchNorm(3)
    h = torch.randn(5, 4, 3) * 2 + 1  # (K, B, F)
    out = bn(h)
    flat = out.reshape(-1, 3)  # the statistics are those of all K * B rows
    assert torch.allclose(flat.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.var(0, unbiased=False), torch.ones(3), atol=1e-3)
    bn.eval()  # running statistics: each row on its own
    assert torch.allclose(bn(h)[2, 1], bn(h[2, 1:2])[0], atol=1e-6)
    bn.train()
    assert torch.isfinite(bn(torch.randn(1, 3))).all()  # one row: running statistics, no error


@pytest.mark.parametrize("net, shape", [("mlp", (1, 8, 8)), ("conv", (1, 28, 28))])
def test_options_add_dropout_and_batch_norm_layers(net, shape):
    plain = make_encoder(net, shape, 10, (16,), 4)
    both = make_encoder(net, shape, 10, (16,), 4, dropout=0.3, batch_norm=True)
    kinds = [type(m).__name__ for m in both.modules()]
    assert "Dropout" in kinds and ("BatchNorm" in kinds)
    assert not {"Dropout", "BatchNorm", "BatchNorm2d"} & {type(m).__name__ for m in plain.modules()}
    if net == "conv":
        assert "BatchNorm2d" in kinds
    # without the options the parameter names are those of earlier versions (checkpoints load)
    names = ("net.0", "net.2") if net == "mlp" else ("conv.0", "conv.2", "head.0", "head.2")
    assert set(plain.state_dict()) == {f"{n}.{w}" for n in names for w in ("weight", "bias")}


def test_dropout_and_batch_norm_config_checks():
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\), got 1.0"):
        pc.ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="batch_norm must be True or False, got 'yes'"):
        pc.ModelConfig(batch_norm="yes")
    cfg = pc.ModelConfig(dropout=0.2, batch_norm=True)
    assert pc.ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert pc.ModelConfig.from_dict({"net": "mlp"}).net_options == {}  # configs saved before


@pytest.mark.parametrize("net, shape", [("mlp", (1, 8, 8)), ("conv", (1, 28, 28))])
def test_batch_normed_log_likelihood_does_not_depend_on_the_other_images(net, shape):
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=shape, num_classes=10, latent_dim=3, hidden_dims=(16,), net=net,
                    batch_norm=True, dropout=0.2)  # fmt: skip
    x = torch.rand(12, *shape).bernoulli()
    y = torch.arange(12) % 10
    with torch.no_grad():  # running statistics away from their initial (0, 1)
        for _ in range(3):
            model.encoder(x, model.condition(y, 12))
            model.decoder(torch.randn(4, 12, 3), model.condition(y, 12))
    a = torch.cat([x[:1], x[1:6]])
    b = torch.cat([x[:1], x[6:11]])  # same first image, other companions, same batch size
    ya, yb = torch.cat([y[:1], y[1:6]]), torch.cat([y[:1], y[6:11]])

    def first(xs, ys):
        pyro.set_rng_seed(1)  # the same particle noise for both batches
        return pc.log_likelihood(model, xs, ys, num_samples=50)[0]

    model.eval()
    assert torch.allclose(first(a, ya), first(b, yb), atol=1e-5)
    model.train()  # batch statistics: the estimate moves with the companions (the test can fail)
    assert not torch.allclose(first(a, ya), first(b, yb), atol=1e-3)
    model.eval()


@pytest.mark.parametrize("objective", list(pc.OBJECTIVES))
def test_every_objective_trains_a_model_with_dropout_and_batch_norm(digits_small, objective):
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(16,),
                    dropout=0.2, batch_norm=True)  # fmt: skip
    before = model.encoder.net[1].running_mean.clone()
    hist = pc.fit(model, digits_small, epochs=1, batch_size=64, objective=objective, particles=3,
                  progress=False)  # fmt: skip
    assert torch.isfinite(torch.tensor(hist.rows[-1]["train_loss"]))
    assert not torch.equal(model.encoder.net[1].running_mean, before)  # statistics were kept
    assert not model.training  # fit leaves the model in evaluation mode


def test_m2_and_hierarchy_train_with_batch_norm(digits_small):
    """Enumerated labels (M2: leading dims (C, B)) and several stochastic layers."""
    torch.manual_seed(0)
    m2 = pc.M2(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(16,),
               batch_norm=True, dropout=0.1)  # fmt: skip
    hist = pc.fit_semisupervised(m2, digits_small, epochs=1, batch_size=64, num_labels=50,
                                 labelled_batch_size=20, progress=False)  # fmt: skip
    assert torch.isfinite(torch.tensor(hist.rows[-1]["train_loss"]))
    layered = pc.build_model(pc.ModelConfig(hidden_dims=(16,), latent_dims=(4, 2),
                                            batch_norm=True, dropout=0.1))  # fmt: skip
    hist = pc.fit(layered, digits_small, epochs=1, batch_size=64, objective="iwae", particles=2,
                  progress=False)  # fmt: skip
    assert torch.isfinite(torch.tensor(hist.rows[-1]["train_loss"]))


def test_cli_dropout_and_batch_norm_flags(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--train-size", "100", "--epochs", "1",
                 "--batch-size", "50", "--latent-dim", "2", "--hidden", "8", "--quiet",
                 "--eval-samples", "0", "--dropout", "0.25", "--batch-norm"]) == 0  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())["model"]
    assert cfg["dropout"] == 0.25 and cfg["batch_norm"] is True
    model = pc.load(out)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Dropout", "BatchNorm"} <= kinds and not model.training


# ---------------------------------------------------------------- registered and user networks


class TinyEncoder(torch.nn.Module):
    """A user's encoder with the built-ins' constructor: one linear layer to (loc, scale)."""

    def __init__(self, data_shape, cond_width, hidden_dims, latent_dim, activation):
        super().__init__()
        self.event_dim, self.latent_dim = len(data_shape), latent_dim
        self.lin = torch.nn.Linear(
            int(torch.tensor(data_shape).prod()) + cond_width, 2 * latent_dim
        )

    def forward(self, x, c=None):
        h = x.flatten(-self.event_dim)  # (..., B, x_dim)
        loc, raw = self.lin(broadcast_cat(h, c)).split(self.latent_dim, -1)
        return loc, torch.nn.functional.softplus(raw) + 1e-4


class TinyDecoder(torch.nn.Module):
    def __init__(self, data_shape, cond_width, hidden_dims, latent_dim, activation):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.lin = torch.nn.Linear(latent_dim + cond_width, int(torch.tensor(data_shape).prod()))

    def forward(self, z, c=None):
        out = self.lin(broadcast_cat(z, c))
        return out.reshape(out.shape[:-1] + self.data_shape)  # (..., B, *data_shape)


@pytest.fixture
def tiny_net():
    pc.register_net("tiny", TinyEncoder, TinyDecoder)
    yield "tiny"
    pc.NETS.pop("tiny", None)


def test_a_registered_net_trains_saves_and_loads_by_name(tiny_net, digits_small, tmp_path):
    cfg = pc.ModelConfig(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, net=tiny_net)
    model = pc.CVAE(cfg)
    assert isinstance(model.encoder, TinyEncoder) and isinstance(model.decoder, TinyDecoder)
    pc.fit(model, digits_small, epochs=1, batch_size=100, out=tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["net"] == "tiny"
    loaded = pc.load(tmp_path / "run")
    assert isinstance(loaded.decoder, TinyDecoder)
    assert torch.equal(loaded.decoder.lin.weight, model.decoder.lin.weight)
    assert loaded.sample(3, num_samples=4).shape == (4, 1, 8, 8)
    model.save(tmp_path / "m.pt")
    pc.NETS.pop(tiny_net)  # a new process that has not registered it
    msg = r"network 'tiny' is not registered.*pyro_cvae\.register_net\('tiny', EncoderClass"
    with pytest.raises(pc.CheckpointError, match=msg):
        pc.load(tmp_path / "run")
    with pytest.raises(pc.CheckpointError, match=msg):
        pc.load(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=msg):
        pc.ModelConfig(net="tiny")


def test_register_net_refusals(tiny_net):
    with pytest.raises(ValueError, match="'mlp' is a built-in network family"):
        pc.register_net("mlp", TinyEncoder, TinyDecoder)
    with pytest.raises(ValueError, match="already registered to .*TinyEncoder.*replace=True"):
        pc.register_net(tiny_net, TinyDecoder, TinyEncoder)
    pc.register_net(tiny_net, TinyEncoder, TinyDecoder)  # the same pair again: a no-op
    with pytest.raises(TypeError, match="encoder of network 'x' must be an nn.Module class"):
        pc.register_net("x", 3, TinyDecoder)
    with pytest.raises(ValueError, match="a network name is a non-empty string"):
        pc.register_net("", TinyEncoder, TinyDecoder)
    cfg = pc.ModelConfig(net=tiny_net, dropout=0.1)  # the options the classes do not take
    with pytest.raises(ValueError, match="network 'tiny' .* takes no keyword option.s. dropout"):
        pc.CVAE(cfg)


def test_modules_passed_to_cvae_train_and_sample_but_refuse_to_save(digits_small, tmp_path):
    cfg = pc.ModelConfig(image_shape=(1, 8, 8), num_classes=10, latent_dim=2)
    enc, dec = TinyEncoder((1, 8, 8), 10, (), 2, "relu"), TinyDecoder((1, 8, 8), 10, (), 2, "relu")
    model = pc.CVAE(cfg, encoder=enc, decoder=dec)
    assert model.encoder is enc and model.decoder is dec
    before = dec.lin.weight.clone()
    for objective in ("elbo", "iwae"):
        pc.fit(model, digits_small, epochs=1, batch_size=100, objective=objective, particles=2,
               progress=False)  # fmt: skip
    assert not torch.equal(dec.lin.weight, before)  # the user's modules were trained
    assert model.sample([1, 2], num_samples=3).shape == (2, 3, 1, 8, 8)
    assert pc.log_likelihood(
        model, digits_small.test.x[:4].round(), digits_small.test.y[:4], 10
    ).shape == (4,)
    msg = r"TinyDecoder was passed to CVAE directly.*register_net\('mynet'"
    with pytest.raises(ValueError, match=msg):
        model.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=msg):
        pc.save_safetensors(model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="cannot train into the run folder"):
        pc.fit(model, digits_small, epochs=1, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.pt").exists()
    only_dec = pc.CVAE(cfg, decoder=TinyDecoder((1, 8, 8), 10, (), 2, "relu"))
    assert only_dec.unregistered_nets == (f"decoder {__name__}.TinyDecoder",)
    with pytest.raises(
        TypeError, match="encoder must be an nn.Module instance .built, not its class"
    ):
        pc.CVAE(cfg, encoder=TinyEncoder)


def test_broadcast_cat_refuses_a_list_naming_the_call():
    """Issue 25, item 27: a list is not passed through to fail inside Linear."""
    from pyro_cvae.nn.nets import broadcast_cat

    x, c = torch.zeros(2, 3), torch.ones(2, 1)
    assert broadcast_cat(x, c).shape == (2, 4)
    with pytest.raises(TypeError, match=r"broadcast_cat\(x, c\)"):
        broadcast_cat([x, c])
