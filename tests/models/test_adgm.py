"""Tests of the auxiliary deep generative models ADGM and SDGM and their objective."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.infer.traceenum_elbo import _compute_dice_elbo

import pyro_cvae
from pyro_cvae.evaluate import accuracy
from pyro_cvae.infer.auxiliary import (
    AuxiliaryObjective,
    auxiliary_elbo,
    auxiliary_log_px,
)
from pyro_cvae.infer.objectives import enum_objective
from pyro_cvae.infer.semisupervised import iw_bound, label_log_weights
from pyro_cvae.models import ADGM, SDGM, AuxiliaryConfig, ModelConfig
from pyro_cvae.train import (
    AuxiliaryFamily,
    SemiSupervisedConfig,
    SemiSupervisedFamily,
    family_for,
    fit_semisupervised,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = [ADGM, SDGM]


def _tiny(cls, seed=0, latent=2, aux=2):
    """Three classes of 2x2 images: small enough for brute force."""
    torch.manual_seed(seed)
    return cls(image_shape=(1, 2, 2), num_classes=3, latent_dim=latent, aux_dim=aux,
               hidden_dims=(6,))  # fmt: skip


def _digits_model(cls):
    torch.manual_seed(0)
    return cls(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, aux_dim=4, hidden_dims=(16,))


def _images(n, shape=(1, 2, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.5), generator=g)


def _log_joint(m, x, y, z, a):
    """log p(x, y, z, a) from the model's distributions, one label batch."""
    c = m.one_hot(y)
    B = x.shape[0]
    return (
        m.y_dist(B).log_prob(y)
        + m.z_dist(None, (B,)).log_prob(z)
        + m.pa_dist(x, c, z).log_prob(a)
        + m.px_dist(z, c, a).log_prob(x)
    )


def _sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]


# ------------------------------------------------------------------------- building


class TestBuilding:
    @pytest.mark.parametrize("cls", MODELS)
    def test_save_load_roundtrip(self, cls, tmp_path):
        m, x = _digits_model(cls), _images(5, (1, 8, 8))
        m.save(tmp_path / "m.pt")
        back = pyro_cvae.load(tmp_path / "m.pt")
        assert type(back) is cls and back.config == m.config
        assert torch.equal(back.class_probs(x), m.class_probs(x))
        draws = []
        for model in (back, m):
            pyro.set_rng_seed(2)
            draws.append(model.sample(3, 4))
        assert torch.equal(*draws)
        pyro_cvae.save_safetensors(m, tmp_path / "st" / "model.safetensors")
        assert torch.equal(pyro_cvae.load(tmp_path / "st").class_probs(x), m.class_probs(x))

    def test_config(self):
        cfg = AuxiliaryConfig(image_shape=(1, 8, 8), aux_dim=5)
        assert AuxiliaryConfig.from_dict(cfg.to_dict()) == cfg
        assert ADGM(ModelConfig(image_shape=(1, 8, 8))).config.aux_dim == AuxiliaryConfig.aux_dim
        with pytest.raises(ValueError, match="aux_dim must be a positive integer, got 0"):
            AuxiliaryConfig(aux_dim=0)
        with pytest.raises(ValueError, match="num_classes must be >= 2"):
            ADGM(image_shape=(1, 8, 8), num_classes=0, condition_dim=3)

    @pytest.mark.parametrize("cls", MODELS)
    def test_public_methods(self, cls):
        m, x = _digits_model(cls), _images(4, (1, 8, 8))
        probs = m.class_probs(x)
        assert probs.shape == (4, 10) and torch.allclose(probs.sum(-1), torch.ones(4))
        assert torch.equal(m.classify(x), probs.argmax(-1))
        assert m.sample(3, num_samples=5).shape == (5, 1, 8, 8)
        assert m.reconstruct(x).shape == x.shape
        ana = m.analogies(x)
        loc, _ = m.encode(x)
        assert ana.shape == (4, 10, 1, 8, 8)
        assert torch.allclose(ana[:, 7], m.decode(loc, torch.full((4,), 7)))

    def test_the_two_generative_stories(self):
        """ADGM: a reads (x, y, z), x reads (y, z); SDGM: a reads (z, y), x reads (a, z, y)."""
        adgm, sdgm = _tiny(ADGM), _tiny(SDGM)
        for m in (adgm, sdgm):
            tr = poutine.trace(m.model).get_trace(_images(2), torch.tensor([0, 1]))
            assert _sites(tr) == ["y", "z", "a", "x"]
            assert _sites(poutine.trace(m.guide).get_trace(_images(2))) == ["a", "y", "z"]
        assert adgm.aux_decoder.net[0].in_features == 4 + 3 + 2  # x, y, z
        assert sdgm.aux_decoder.net[0].in_features == 2 + 3  # z, y
        assert adgm.decoder.net[0].in_features == 2 + 3  # z, y
        assert sdgm.decoder.net[0].in_features == 2 + 3 + 2  # z, y, a


# ------------------------------------------------------------------------- the bound


class TestEnumeratedBound:
    @pytest.mark.parametrize("cls", MODELS)
    def test_trace_enum_is_the_exact_sum_over_labels(self, cls):
        """TraceEnum_ELBO == sum_y q(y|a,x) [log p(x,y,z_y,a) - log q(z_y|a,y,x) - log q(y|a,x)]
        - log q(a|x), label by label in Python, with the guide's draws of a and z."""
        m, x, C, B = _tiny(cls), _images(5), 3, 5
        elbo = enum_objective(1)
        guide = config_enumerate(m.guide, "parallel", expand=False)
        model_trace, guide_trace = next(iter(elbo._get_traces(m.model, guide, (x,), {})))
        value = _compute_dice_elbo(model_trace, guide_trace).detach()
        a = guide_trace.nodes["a"]["value"]  # (B, A): one draw per image, shared by the labels
        z = guide_trace.nodes["z"]["value"].reshape(C, B, 2)  # one draw per label and image
        log_q = torch.log_softmax(m.classifier(x, a), -1)  # (B, C)
        by_hand = -m.qa_dist(x).log_prob(a)
        for y in range(C):
            labels = torch.full((B,), y)
            c = m.one_hot(labels)
            term = _log_joint(m, x, labels, z[y], a) - m.zq_dist(x, c, a).log_prob(z[y])
            by_hand = by_hand + log_q[:, y].exp() * (term - log_q[:, y])
        assert torch.allclose(value, by_hand.sum().detach(), rtol=1e-6, atol=1e-5)

    @pytest.mark.parametrize("cls", MODELS)
    @pytest.mark.parametrize("labelled", [False, True])
    def test_lean_path_equals_trace_enum(self, cls, labelled):
        """Same seed, same estimator: equal values and gradients."""
        m, x = _tiny(cls), _images(6)
        y = torch.tensor([0, 1, 2, 0, 1, 2]) if labelled else None
        results = []
        for lean in (False, True):
            pyro.set_rng_seed(4)
            obj = AuxiliaryObjective(lean=lean)
            loss = obj.labelled(m, x, y) if labelled else obj.unlabelled(m, x)
            grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
            results.append((loss, grads))
        (full, g_full), (lean, g_lean) = results
        assert torch.allclose(full, lean, atol=1e-5)
        for a, b in zip(g_full, g_lean, strict=True):
            assert (a is None) == (b is None)  # q(y|a,x) is unused where the label is given
            assert a is None or torch.allclose(a, b, atol=1e-5)

    @pytest.mark.parametrize("cls", MODELS)
    def test_below_exact_log_marginal(self, cls):
        """log p(x) by quadrature over (a, z) (both one-dimensional) and the sum over labels:
        E U(x) lies below it, and the importance-sampling estimate reaches it."""
        m, x = _tiny(cls, latent=1, aux=1), _images(4)
        with torch.no_grad():  # proposals wider than the posteriors: light-tailed weights
            for net in (m.aux_encoder.net, m.encoder.net):
                net[-1].bias[1:] += 1.5
        n, half = 321, 8.0
        g = torch.linspace(-half, half, n)
        h = (g[1] - g[0]).item()
        az = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
        a, z = az[:, :1], az[:, 1:]
        G = az.shape[0]
        exact = torch.empty(4)
        with torch.no_grad():
            for b in range(4):
                xb = x[b].expand((G,) + x.shape[1:])
                per_label = [
                    torch.logsumexp(_log_joint(m, xb, torch.full((G,), y), z, a), 0)
                    for y in range(3)
                ]
                exact[b] = torch.logsumexp(torch.stack(per_label), 0) + 2 * math.log(h)
        R = 2000
        with torch.no_grad():
            draws = auxiliary_elbo(m, x.repeat(R, 1, 1, 1)).reshape(R, 4).double()
        mean, se = draws.mean(0), draws.std(0) / math.sqrt(R)
        assert (mean + 3 * se < exact).all(), (mean, exact)
        pyro.set_rng_seed(0)
        estimate = auxiliary_log_px(m, x, 20000)
        assert torch.allclose(estimate, exact, atol=0.03), (estimate, exact)
        # M2's label-by-label weights (a drawn per label, y given) are a valid sampler too: the
        # generative classifier p(y | x) of accuracy(generative=K) applies to these models
        pyro.set_rng_seed(0)
        with torch.no_grad():
            per_label = iw_bound(label_log_weights(m, x, 20000))
        assert torch.allclose(per_label, exact, atol=0.03), (per_label, exact)


# ------------------------------------------------------------------------- training


class TestTraining:
    def test_family(self):
        m = _tiny(ADGM)
        assert type(family_for(m)) is AuxiliaryFamily
        assert type(family_for(pyro_cvae.M2(image_shape=(1, 2, 2), num_classes=3))) is (
            SemiSupervisedFamily
        )

    def test_wrong_family_or_objective_is_refused(self, digits_small):
        m = _digits_model(ADGM)
        with pytest.raises(ValueError, match="does not train ADGM: ADGM and SDGM train with"):
            pyro_cvae.fit(m, digits_small, SemiSupervisedConfig(epochs=1, num_labels=50),
                          family=SemiSupervisedFamily(), progress=False)  # fmt: skip
        with pytest.raises(ValueError, match="train with the enumerated ELBO, objective 'elbo'"):
            fit_semisupervised(m, digits_small, objective="iwae", num_labels=50, progress=False)

    @pytest.mark.parametrize("cls", MODELS)
    def test_training_reduces_the_loss(self, cls, digits_small):
        data = digits_small.subset(300, 50)
        m = _digits_model(cls)
        x = data.train.x[:200]

        def loss():
            with torch.no_grad():
                pyro.set_rng_seed(0)
                return -torch.stack([auxiliary_elbo(m, x).mean() for _ in range(5)]).mean()

        before = loss()
        cfg = SemiSupervisedConfig(epochs=8, lr=3e-3, num_labels=50, labelled_batch_size=20)
        history = pyro_cvae.fit(m, data, cfg, progress=False)
        assert history.column("train_loss")[-1] < history.column("train_loss")[0]
        assert loss() < before - 1.0, (loss(), before)
        assert history.last["test_accuracy"] == accuracy(m, data.eval_split("test"))

    @pytest.mark.parametrize("cls", MODELS)
    def test_resume_equals_uninterrupted(self, cls, digits_small, tmp_path):
        data = digits_small.subset(300, 50)
        cfg = SemiSupervisedConfig(epochs=2, num_labels=50, labelled_batch_size=20)
        full = _digits_model(cls)
        h_full = fit_semisupervised(full, data, cfg, out=tmp_path / "a", progress=False)
        part = _digits_model(cls)
        h = fit_semisupervised(part, data, cfg, out=tmp_path / "b", progress=False,
                               stop_after_steps=3)  # fmt: skip
        assert h.interrupted
        resumed = _digits_model(cls)
        h_res = fit_semisupervised(resumed, data, cfg, out=tmp_path / "b", resume=True,
                                   progress=False)  # fmt: skip
        assert h_res.column("train_loss") == h_full.column("train_loss")
        for k, v in full.state_dict().items():
            assert torch.equal(v, resumed.state_dict()[k]), k
        assert type(pyro_cvae.load(tmp_path / "b")) is cls

    def test_non_finite_loss_is_caught(self, digits_small):
        m = _digits_model(SDGM)
        forward, calls = m.decoder.forward, {"n": 0}

        def poisoned(z, c=None):
            calls["n"] += 1
            out = forward(z, c)
            return out * float("nan") if calls["n"] > 3 else out

        m.decoder.forward = poisoned
        with pytest.raises(pyro_cvae.NonFiniteLossError, match="epoch 1, step"):
            fit_semisupervised(m, digits_small, epochs=1, num_labels=50, progress=False)
        assert all(torch.isfinite(p).all() for p in m.parameters())
