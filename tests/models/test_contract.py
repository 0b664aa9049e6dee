"""The model contract (pyro_cvae.models.contract): the library's trainer, bounds and evaluator on
models written from scratch in Pyro, with no base class of this library.

The models below are what a researcher writes after Pyro's VAE tutorial: a ``PyroModule`` (or a
``torch.nn.Module`` whose methods call ``pyro.module``) with ``model(x, y)`` and ``guide(x, y)``,
its sample sites inside ``pyro.plate("data")``.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

import pyro_cvae as pc
from pyro_cvae.checkpoint import CheckpointError
from pyro_cvae.models.contract import (
    MissingCapabilityError,
    PyroModel,
    check_model,
    condition_of,
    latent_means,
    latent_sites,
)
from pyro_cvae.nn.nets import Decoder, Encoder

D_X, C = 64, 10  # digits: 8 x 8 pixels, 10 labels


class OneLatentVAE(PyroModule):
    """A conditional VAE of one latent layer: q(z | x, y), p(z) p(x | z, y)."""

    def __init__(self, latent=4, hidden=32):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(
            nn.Linear(D_X + C, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent)
        )
        self.dec = nn.Sequential(nn.Linear(latent + C, hidden), nn.ReLU(), nn.Linear(hidden, D_X))

    def model(self, x, y=None):
        B, c = x.shape[0], F.one_hot(y, C).float()
        with pyro.plate("data", B):
            prior = dist.Normal(x.new_zeros(B, self.latent), 1.0).to_event(1)
            z = pyro.sample("z", prior)  # (B, d) or (K, B, d)
            logits = self.dec(torch.cat([z, c.expand(*z.shape[:-1], C)], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits.reshape(*logits.shape[:-1], 1, 8, 8))
                        .to_event(3), obs=x)  # fmt: skip

    def guide(self, x, y=None):
        B, c = x.shape[0], F.one_hot(y, C).float()
        with pyro.plate("data", B):
            loc, raw = self.enc(torch.cat([x.reshape(B, -1), c], -1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1))


class TutorialVAE(nn.Module):
    """Pyro's VAE tutorial style: a plain nn.Module whose model and guide call pyro.module, and
    an unconditional model that ignores y."""

    def __init__(self, latent=3, hidden=32):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Linear(D_X, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent)
        )
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, D_X))

    def model(self, x, y=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(
                "z", dist.Normal(0.0, 1.0).expand([x.shape[0], self.latent]).to_event(1)
            )
            probs = torch.sigmoid(self.decoder(z)).reshape(*z.shape[:-1], 1, 8, 8)
            pyro.sample("x", dist.Bernoulli(probs).to_event(3), obs=x)

    def guide(self, x, y=None):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.encoder(x.reshape(x.shape[0], -1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.clamp(-6, 3).exp()).to_event(1))


class TwoLayerCVAE(PyroModule):
    """Two stochastic layers: p(z2) p(z1 | z2, y) p(x | z1, y); q(z1 | x, y) q(z2 | z1)."""

    def __init__(self, d1=4, d2=2, hidden=32, gaussian=False):
        super().__init__()
        self.d2, self.gaussian = d2, gaussian
        self.q1 = nn.Sequential(nn.Linear(D_X + C, hidden), nn.ReLU(), nn.Linear(hidden, 2 * d1))
        self.q2 = nn.Sequential(nn.Linear(d1, hidden), nn.ReLU(), nn.Linear(hidden, 2 * d2))
        self.p1 = nn.Sequential(nn.Linear(d2 + C, hidden), nn.ReLU(), nn.Linear(hidden, 2 * d1))
        self.px = nn.Sequential(nn.Linear(d1 + C, hidden), nn.ReLU(), nn.Linear(hidden, D_X))
        self.log_sigma = nn.Parameter(torch.tensor(-1.0))

    @staticmethod
    def _normal(h):
        loc, raw = h.chunk(2, -1)
        return dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

    def model(self, x, y=None):
        B, c = x.shape[0], F.one_hot(y, C).float()
        with pyro.plate("data", B):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(B, self.d2), 1.0).to_event(1))
            z1 = pyro.sample(
                "z1", self._normal(self.p1(torch.cat([z2, c.expand(*z2.shape[:-1], C)], -1)))
            )
            out = self.px(torch.cat([z1, c.expand(*z1.shape[:-1], C)], -1))
            out = out.reshape(*out.shape[:-1], 1, 8, 8)
            if self.gaussian:
                px = dist.Normal(torch.sigmoid(out), self.log_sigma.exp()).to_event(3)
            else:
                px = dist.Bernoulli(logits=out).to_event(3)
            pyro.sample("x", px, obs=x)

    def guide(self, x, y=None):
        B, c = x.shape[0], F.one_hot(y, C).float()
        with pyro.plate("data", B):
            z1 = pyro.sample("z1", self._normal(self.q1(torch.cat([x.reshape(B, -1), c], -1))))
            pyro.sample("z2", self._normal(self.q2(z1)))


class GlobalLatentVAE(OneLatentVAE):
    """A site outside the data plate: the importance-weighted bounds must refuse it."""

    def model(self, x, y=None):
        pyro.sample("shift", dist.Normal(0.0, 1.0))
        super().model(x, y)

    def guide(self, x, y=None):
        pyro.sample("shift", dist.Normal(torch.zeros(()), 1.0))
        super().guide(x, y)


def _params(model):
    return [p.detach().clone() for p in model.state_dict().values()]


@pytest.fixture
def data(digits):
    return digits.subset(200, 60)


KW = dict(epochs=2, batch_size=50, lr=3e-3, progress=False)


class TestContract:
    def test_models_written_from_scratch_meet_the_protocol(self):
        for m in (OneLatentVAE(), TutorialVAE(), TwoLayerCVAE(), pc.CVAE()):
            assert isinstance(m, PyroModel)
            check_model(m)

    def test_something_else_is_refused_naming_what_is_missing(self, data):
        class NoGuide(nn.Module):
            def model(self, x, y=None):
                pass

        with pytest.raises(TypeError, match="has no guide method"):
            pc.fit(NoGuide(), data, **KW)
        with pytest.raises(TypeError, match="must be a torch.nn.Module"):
            pc.log_likelihood(type("Pair", (), {"model": print, "guide": print})(), data.test.x)

    def test_latent_sites_are_found_in_one_trace_of_the_guide(self, data):
        x, y = data.train.x[:5], data.train.y[:5]
        assert latent_sites(TwoLayerCVAE(), x, y) == ("z1", "z2")
        assert latent_sites(OneLatentVAE(), x, y) == ("z",)
        assert latent_sites(pc.CVAE(latent_dim=2), x, y) == ("z",)  # the model's own attribute

    def test_condition_is_passed_unless_the_model_says_otherwise(self):
        y = torch.arange(3)
        assert condition_of(OneLatentVAE(), y) is y
        assert condition_of(pc.CVAE(num_classes=0), y) is None  # a library VAE reads no y
        unconditional = TutorialVAE()
        unconditional.conditional = False
        assert condition_of(unconditional, y) is None

    def test_posterior_means_are_the_guide_distribution_means(self, data):
        torch.manual_seed(0)
        model = pc.CVAE(latent_dim=3, hidden_dims=(16,))
        x, y = data.test.x[:7], data.test.y[:7]
        loc, _ = model.encode(x, y)
        assert torch.allclose(latent_means(model, x, y), loc)


class TestTraining:
    @pytest.mark.parametrize("objective", ["elbo", "iwae", "dreg"])
    def test_trains_under_each_objective(self, data, objective):
        torch.manual_seed(0)
        model = TwoLayerCVAE()
        before = pc.elbo_per_image(model, data.eval_split("val")).mean().item()
        particles = 1 if objective == "elbo" else 3
        h = pc.fit(model, data, objective=objective, particles=particles, epochs=4,
                   batch_size=50, lr=3e-3, progress=False)  # fmt: skip
        after = pc.elbo_per_image(model, data.eval_split("val")).mean().item()
        assert len(h) == 4 and all(math.isfinite(v) for v in h.column("train_loss"))
        assert after > before + 3.0  # nats per image
        assert "val_elbo" in h.last  # the conditional family's validation ELBO

    def test_tutorial_module_with_pyro_module_calls_trains(self, data):
        torch.manual_seed(0)
        model = TutorialVAE()
        h = pc.fit(model, data, epochs=3, batch_size=50, lr=3e-3, progress=False)
        losses = h.column("train_loss")
        assert losses[-1] < losses[0]

    def test_gaussian_likelihood_model_trains_its_noise_scale(self, data):
        torch.manual_seed(0)
        model = TwoLayerCVAE(gaussian=True)
        h = pc.fit(model, data, epochs=3, batch_size=50, lr=1e-2, progress=False)
        losses = h.column("train_loss")
        assert losses[-1] < losses[0]
        # a parameter outside the networks is the module's: the trainer's optimizer moved it
        assert abs(model.log_sigma.item() + 1.0) > 0.05

    def test_kl_warm_up_scales_the_discovered_sites(self, data):
        seen = []

        class Spy(TwoLayerCVAE):
            def model(self, x, y=None):
                with pyro.poutine.trace() as tr:
                    super().model(x, y)
                seen.append(
                    {n: s["scale"] for n, s in tr.trace.nodes.items() if s["type"] == "sample"}
                )

        torch.manual_seed(0)
        pc.fit(Spy(), data.subset(50, 10), epochs=1, batch_size=50, warmup_epochs=2,
               progress=False)  # fmt: skip
        steps = [s for s in seen if s["z1"] != 1.0]  # training steps (not the validation ELBO)
        assert steps and all(s["z1"] == s["z2"] < 1.0 and s["x"] == 1.0 for s in steps)

    def test_resume_is_bit_identical(self, data, tmp_path):
        kw = dict(epochs=3, batch_size=64, seed=2, progress=False)
        torch.manual_seed(3)
        full = TwoLayerCVAE()
        h_full = pc.fit(full, data, out=tmp_path / "full", **kw)
        torch.manual_seed(3)
        h_part = pc.fit(TwoLayerCVAE(), data, out=tmp_path / "part", stop_after_steps=5, **kw)
        assert h_part.interrupted
        torch.manual_seed(99)  # other initial weights: everything comes from the checkpoint
        again = TwoLayerCVAE()
        h_again = pc.fit(again, data, out=tmp_path / "part", resume=True, **kw)
        assert h_again.column("train_loss") == h_full.column("train_loss")
        assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(again)))

    def test_resume_refuses_other_sizes_or_another_class(self, data, tmp_path):
        pc.fit(TwoLayerCVAE(), data, out=tmp_path, **KW)
        with pytest.raises(CheckpointError, match="of other sizes"):
            pc.fit(TwoLayerCVAE(d1=5), data, out=tmp_path, resume=True, **KW)
        with pytest.raises(CheckpointError, match="not a OneLatentVAE"):
            pc.fit(OneLatentVAE(), data, out=tmp_path, resume=True, **KW)

    def test_run_folder_loads_into_the_users_class(self, data, tmp_path):
        torch.manual_seed(0)
        model = OneLatentVAE()
        pc.fit(model, data, out=tmp_path, tensorboard=True, **KW)
        assert (tmp_path / "tensorboard").is_dir()
        with pytest.raises(CheckpointError, match=r"model=OneLatentVAE\(\.\.\.\)"):
            pc.load(tmp_path)
        again = pc.load(tmp_path, model=OneLatentVAE())
        assert all(torch.equal(a, b) for a, b in zip(_params(model), _params(again)))

    def test_importance_weighted_bounds_refuse_a_site_outside_the_data_plate(self, data):
        with pytest.raises(
            ValueError,
            match=r"sample site 'shift' of the (guide|model) is outside pyro.plate\('data'\)",
        ):
            pc.fit(GlobalLatentVAE(), data, objective="iwae", particles=2, **KW)


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model = TwoLayerCVAE()
    pc.fit(model, digits.subset(300, 60), epochs=5, batch_size=50, lr=3e-3, progress=False)
    return model


class TestEvaluation:
    def test_log_likelihood_is_per_image_and_rises_with_k(self, trained, digits):
        test = digits.subset(300, 60).eval_split("test")
        x, y = test.x[:40], test.y[:40]
        pyro.set_rng_seed(0)
        means = [
            pc.log_likelihood(trained, x, y, num_samples=k).mean().item() for k in (1, 10, 200)
        ]
        one = pc.log_likelihood(trained, x, y, num_samples=10)
        assert one.shape == (40,)
        assert means[0] < means[1] < means[2]

    def test_evaluate_reports_its_nll(self, trained, digits):
        m = pc.evaluate(trained, digits.subset(300, 60), num_samples=50)
        assert math.isfinite(m["nll"]) and m["nll"] < -m["elbo"] + 0.5
        assert m["kl"] > 0 and m["latent_dim"] == 4 and 0 <= m["active_units"] <= 4
        assert "control_score" not in m  # it has no sample method: skipped by default
        with pytest.raises(MissingCapabilityError, match="sample"):
            pc.evaluate(trained, digits.subset(300, 60), num_samples=5, control=True)

    def test_log_likelihood_equals_the_library_cvae_with_the_same_networks(self, digits):
        torch.manual_seed(0)
        lib = pc.CVAE(image_shape=(1, 8, 8), num_classes=C, latent_dim=3, hidden_dims=(16,)).eval()

        class Same(PyroModule):
            """The CVAE's own networks, in a model/guide written here."""

            def __init__(self):
                super().__init__()
                self.encoder = Encoder((1, 8, 8), C, (16,), 3)
                self.decoder = Decoder((1, 8, 8), C, (16,), 3)

            def model(self, x, y=None):
                c = F.one_hot(y, C).float()
                with pyro.plate("data", x.shape[0]):
                    z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 3), 1.0).to_event(1))
                    pyro.sample("x", dist.Bernoulli(logits=self.decoder(z, c)).to_event(3), obs=x)

            def guide(self, x, y=None):
                with pyro.plate("data", x.shape[0]):
                    loc, scale = self.encoder(x, F.one_hot(y, C).float())
                    pyro.sample("z", dist.Normal(loc, scale).to_event(1))

        mine = Same()
        mine.load_state_dict(
            {k: v for k, v in lib.state_dict().items() if k.split(".")[0] in ("encoder", "decoder")}
        )
        test = digits.eval_split("test")
        x, y = test.x[:30], test.y[:30]
        pyro.set_rng_seed(5)
        a = pc.log_likelihood(lib, x, y, num_samples=2000)
        pyro.set_rng_seed(5)
        b = pc.log_likelihood(mine, x, y, num_samples=2000)
        # same estimator, draws from two Normal implementations: equal up to Monte Carlo noise
        assert torch.allclose(a, b, atol=0.05)


class TestLatentMeansErrors:
    def test_unknown_site_and_a_guide_without_latents_are_named(self, data):
        x, y = data.test.x[:3], data.test.y[:3]
        with pytest.raises(
            ValueError, match=r"no latent site 'w'; its latent sites: \['z1', 'z2'\]"
        ):
            latent_means(TwoLayerCVAE(), x, y, site="w")

        class NoLatent(OneLatentVAE):
            def guide(self, x, y=None):
                pass

        with pytest.raises(MissingCapabilityError, match="has no latent sample site"):
            pc.active_units(NoLatent(), x, y)
