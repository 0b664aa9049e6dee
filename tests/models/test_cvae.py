import pyro
import pyro.poutine as poutine
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.checkpoint import CheckpointError
from pyro_cvae.models import MoleculeConfig
from pyro_cvae.nn.likelihoods import LIKELIHOOD_CLASSES


def _trace_shapes(model, x, y, particles=1):
    elbo = pc.make_objective("iwae", particles=particles)
    mt, gt = next(iter(elbo._get_traces(model.model, model.guide, (x, y), {})))
    return mt, gt


def test_model_and_guide_shapes(small_model):
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6)
    gt = poutine.trace(small_model.guide).get_trace(x, y)
    mt = poutine.trace(poutine.replay(small_model.model, trace=gt)).get_trace(x, y)
    assert gt.nodes["z"]["value"].shape == (6, 4)
    assert mt.nodes["z"]["fn"].batch_shape == (6,) and mt.nodes["z"]["fn"].event_shape == (4,)
    assert mt.nodes["x"]["fn"].batch_shape == (6,)
    assert mt.nodes["x"]["fn"].event_shape == (1, 8, 8)
    assert mt.nodes["x"]["is_observed"]


@pytest.mark.parametrize("K", [1, 5])
def test_vectorized_particles_broadcast_the_condition(small_model, K):
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6)
    mt, gt = _trace_shapes(small_model, x, y, K)
    z = gt.nodes["z"]["value"]
    # a particle plate of size 1 broadcasts instead of expanding
    assert z.shape == ((K, 6, 4) if K > 1 else (6, 4))
    z = z.reshape(K, 6, 4)
    logits = mt.nodes["x"]["fn"].base_dist.logits.reshape(K, 6, 1, 8, 8)
    # particle k of image b is decoded with image b's own label
    c = small_model.condition(y, 6)
    expected = small_model.decoder(z[K - 1, 2], c[2])
    assert torch.allclose(logits[K - 1, 2], expected, atol=1e-5)


def test_plain_vae_is_the_same_class():
    vae = pc.CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=3, hidden_dims=(16,))
    x = torch.rand(4, 1, 8, 8)
    tr = poutine.trace(vae.guide).get_trace(x)
    assert tr.nodes["z"]["value"].shape == (4, 3)
    assert vae.sample(None, 5).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="no condition"):
        vae.model(x, torch.zeros(4, dtype=torch.long))


def test_vector_condition():
    m = pc.CVAE(
        image_shape=(1, 8, 8), num_classes=0, condition_dim=3, latent_dim=2, hidden_dims=(8,)
    )
    x, c = torch.rand(5, 1, 8, 8), torch.randn(5, 3)
    loc, scale = m.encode(x, c)
    assert loc.shape == (5, 2)
    assert m.sample(torch.randn(2, 3), 4).shape == (2, 4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"conditions must have shape \(5, 3\)"):
        m.encode(x, torch.randn(5, 4))


def test_public_methods_shapes_and_ranges(small_model):
    x = torch.rand(3, 1, 8, 8)
    y = torch.tensor([1, 2, 3])
    loc, scale = small_model.encode(x, y)
    assert loc.shape == scale.shape == (3, 4)
    r = small_model.reconstruct(x, y)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
    assert small_model.sample(5, 7).shape == (7, 1, 8, 8)
    s = small_model.sample(torch.tensor([0, 9]), 3, mean=False)
    assert s.shape == (2, 3, 1, 8, 8) and set(s.unique().tolist()) <= {0.0, 1.0}


def _model_and_batch(likelihood: str):
    """A tiny model of each registered likelihood and a batch of 4 data items it scores."""
    torch.manual_seed(0)
    if likelihood == "table":  # a row: continuous, binary, 3-way categorical, continuous
        columns = (("continuous", 1), ("binary", 1), ("categorical", 3), ("continuous", 1))
        m = pc.CVAE(pc.ModelConfig(image_shape=(6,), num_classes=0, latent_dim=2,
                                   hidden_dims=(8,), likelihood="table", table_columns=columns))  # fmt: skip
        cat = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 0]), 3).float()
        x = torch.cat([torch.randn(4, 1), torch.tensor([[0.0], [1], [1], [0]]), cat,
                       torch.randn(4, 1)], -1)  # fmt: skip
        return m, x, None
    if likelihood == "tokens":  # molecules: token ids, conditioned on two properties
        tokens = ("<pad>", "<end>", "<start>", "<unk>", "[C]", "[O]")
        m = pc.build_model(MoleculeConfig(tokens=tokens, max_len=5, condition_dim=2,
                                          latent_dim=2, embed_dim=4, hidden_dim=8))  # fmt: skip
        x = torch.tensor([[4, 5, 1, 0, 0], [4, 4, 4, 1, 0], [5, 1, 0, 0, 0], [4, 1, 0, 0, 0]])
        return m, x, torch.randn(4, 2)
    m = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,),
                likelihood=likelihood, learn_x_scale=likelihood == "gaussian")  # fmt: skip
    return m, torch.rand(4, 1, 8, 8), torch.arange(4)


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOOD_CLASSES))
def test_every_likelihood_gives_a_finite_elbo_and_gradients(likelihood):
    m, x, y = _model_and_batch(likelihood)
    assert isinstance(m.likelihood, LIKELIHOOD_CLASSES[likelihood])
    loss = pyro.infer.Trace_ELBO().differentiable_loss(m.model, m.guide, x, y)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert len(grads) >= 4 and all(torch.isfinite(g).all() for g in grads)
    if likelihood in ("gaussian", "table"):  # the learned noise scales get a gradient
        assert m.likelihood.log_scale.grad is not None


def test_bad_inputs_have_clear_errors(small_model):
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        small_model.encode(torch.rand(3, 1, 28, 28), y)
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        small_model.encode(x, torch.tensor([0, 1, 12]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        small_model.encode(x * float("nan"), y)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        small_model.encode(x + 1, y)
    with pytest.raises(ValueError, match="model is conditional"):
        small_model.encode(x, None)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        small_model.sample(1, 0)
    with pytest.raises(ValueError, match="give either a ModelConfig"):
        pc.CVAE(pc.ModelConfig(), latent_dim=3)


def test_save_load_round_trip_gives_identical_samples(small_model, tmp_path):
    path = small_model.save(tmp_path / "m.pt")
    loaded = pc.load(path)
    assert loaded.config == small_model.config
    torch.manual_seed(7)
    a = small_model.sample(torch.arange(10), 4)
    torch.manual_seed(7)
    b = loaded.sample(torch.arange(10), 4)
    assert torch.equal(a, b)


def test_two_models_in_one_process_share_no_parameters():
    torch.manual_seed(0)
    a = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
    b = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
    before = [p.detach().clone() for p in b.parameters()]
    data = pc.load_dataset("digits").subset(64)
    pc.fit(a, data, epochs=1, batch_size=32, progress=False, validate_every=0)
    assert all(torch.equal(p, q) for p, q in zip(before, b.parameters()))
    assert len(pyro.get_param_store()) == 0  # nothing lives in Pyro's global store


def test_load_errors(small_model, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        pc.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        pc.load(tmp_path)
    path = small_model.save(tmp_path / "m.pt")
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        pc.load(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a pyro_cvae checkpoint"):
        pc.load(tmp_path / "junk.pt")


def test_cvae_refuses_a_hierarchical_config():
    cfg = pc.ModelConfig(latent_dims=(6, 3), hidden_dims=(16,))
    with pytest.raises(ValueError, match="build_model"):
        pc.CVAE(cfg)
    assert isinstance(pc.build_model(cfg), pc.HierarchicalCVAE)
