import json

import pyro
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from pyro_cvae.infer import ModuleSVI, scale_latents
from pyro_cvae.train import kl_weight


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, hidden_dims=(32,))
    cfg.update(kw)
    return pc.CVAE(**cfg)


def _params(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def test_elbo_improves_over_a_few_epochs(digits_small):
    model = _model()
    h = pc.fit(model, digits_small, epochs=6, batch_size=32, lr=3e-3, progress=False)
    losses, val = h.column("train_loss"), h.column("val_elbo")
    assert losses[-1] < losses[0] - 3.0
    assert val[-1] > val[0] + 3.0  # ELBO (log-scale) goes up


def test_same_seed_same_run(digits_small):
    runs = []
    for _ in range(2):
        pyro.set_rng_seed(1)
        model = _model(1)
        h = pc.fit(model, digits_small, epochs=2, batch_size=50, seed=4, progress=False)
        runs.append((h.column("train_loss"), _params(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_resume_after_interruption_matches_an_uninterrupted_run(digits_small, tmp_path):
    kw = dict(epochs=3, batch_size=64, seed=2, progress=False)
    full = _model(3)
    h_full = pc.fit(full, digits_small, out=tmp_path / "full", **kw)

    part = _model(3)
    h_part = pc.fit(part, digits_small, out=tmp_path / "part", stop_after_steps=7, **kw)
    assert h_part.interrupted and len(h_part) == 1  # stopped in the middle of epoch 2
    again = _model(99)  # different initial weights: everything must come from the checkpoint
    h_again = pc.fit(again, digits_small, out=tmp_path / "part", resume=True, **kw)
    assert h_again.column("train_loss") == h_full.column("train_loss")
    assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(again)))


def test_resume_refuses_another_configuration(digits_small, tmp_path):
    pc.fit(_model(), digits_small, epochs=1, out=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another configuration"):
        pc.fit(_model(latent_dim=5), digits_small, epochs=2, out=tmp_path, resume=True,
               progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="other settings"):
        pc.fit(_model(), digits_small, epochs=2, lr=0.1, out=tmp_path, resume=True,
               progress=False)  # fmt: skip


def test_resume_reads_a_checkpoint_written_before_config_fields_were_added(digits_small, tmp_path):
    """A field added to a config since (the model's dropout, batch_norm; training's adam_beta1)
    reads as its default."""
    pc.fit(_model(), digits_small, epochs=1, out=tmp_path, progress=False)
    path = list_checkpoints(tmp_path)[-1]
    ckpt = load_checkpoint(path)
    for name in ("dropout", "batch_norm"):
        del ckpt["model_config"][name]
    del ckpt["train_config"]["adam_beta1"]
    save_checkpoint(path, ckpt)
    h = pc.fit(_model(), digits_small, epochs=2, out=tmp_path, resume=True, progress=False)
    assert len(h) == 2
    with pytest.raises(CheckpointError, match="dropout: 0.0 -> 0.1"):
        pc.fit(_model(dropout=0.1), digits_small, epochs=3, out=tmp_path, resume=True,
               progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="adam_beta1: 0.9 -> 0.95"):
        pc.fit(_model(), digits_small, epochs=3, out=tmp_path, resume=True, adam_beta1=0.95,
               progress=False)  # fmt: skip


def test_run_folder_is_never_overwritten_silently(digits_small, tmp_path):
    pc.fit(_model(), digits_small, epochs=1, out=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in list_checkpoints(tmp_path)}
    with pytest.raises(pc.RunFolderError, match="--overwrite"):
        pc.fit(_model(), digits_small, epochs=1, out=tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in list_checkpoints(tmp_path)} == before
    pc.fit(_model(), digits_small, epochs=1, out=tmp_path, overwrite=True, progress=False)


def test_checkpoints_keep_the_last_n_and_metrics_csv(digits_small, tmp_path):
    pc.fit(_model(), digits_small, epochs=5, out=tmp_path, keep_checkpoints=2, progress=False)
    ckpts = list_checkpoints(tmp_path)
    assert len(ckpts) == 2
    assert load_checkpoint(ckpts[-1])["epoch"] == 5
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 6
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["data"]["name"] == "digits" and cfg["train"]["epochs"] == 5


def test_resume_skips_a_corrupted_latest_checkpoint(digits_small, tmp_path):
    kw = dict(epochs=2, batch_size=64, seed=0, progress=False)
    pc.fit(_model(), digits_small, out=tmp_path, **kw)
    latest = list_checkpoints(tmp_path)[-1]
    latest.write_bytes(latest.read_bytes()[:1000])  # a torn write
    resumed = _model()
    with pytest.warns(UserWarning, match=f"{latest.name} is truncated or corrupted; resuming"):
        h = pc.fit(resumed, digits_small, out=tmp_path, resume=True, **{**kw, "epochs": 3})
    assert len(h) == 3  # resumed from epoch 1's checkpoint, trained epochs 2 and 3
    # the same run as three epochs in one go: not a silent restart from scratch
    straight = _model()
    h3 = pc.fit(straight, digits_small, **{**kw, "epochs": 3})
    assert h.column("train_loss") == h3.column("train_loss")
    assert all(torch.equal(v, straight.state_dict()[k]) for k, v in resumed.state_dict().items())


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(digits_small, tmp_path):
    model = _model()
    pc.fit(model, digits_small, epochs=1, batch_size=64, out=tmp_path, progress=False)
    good = list_checkpoints(tmp_path)[-1]
    good_bytes = good.read_bytes()
    forward = model.decoder.forward
    calls = {"n": 0}

    def poisoned(z, c=None):
        calls["n"] += 1
        out = forward(z, c)
        return out * float("nan") if calls["n"] > 3 else out

    model.decoder.forward = poisoned
    with pytest.raises(pc.NonFiniteLossError, match=r"epoch 2, step 4.*learning rate"):
        pc.fit(model, digits_small, epochs=2, batch_size=64, out=tmp_path, resume=True,
               progress=False)  # fmt: skip
    assert good.read_bytes() == good_bytes
    assert list_checkpoints(tmp_path)[-1] == good
    assert json.loads((tmp_path / "nonfinite.json").read_text())["step"] == 4
    # parameters were not touched by the bad step
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_nonfinite_counts_skipped_batches(digits_small):
    model = _model()
    forward = model.decoder.forward
    calls = {"n": 0}

    def sometimes_nan(z, c=None):
        calls["n"] += 1
        out = forward(z, c)
        return out * float("nan") if calls["n"] % 4 == 0 else out

    model.decoder.forward = sometimes_nan
    h = pc.fit(model, digits_small, epochs=1, batch_size=32, skip_nonfinite=True,
               validate_every=0, progress=False)  # fmt: skip
    assert h.skipped_batches == 2  # 10 batches, every fourth decoder call poisoned
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_kl_warmup_schedule():
    cfg = pc.TrainConfig(beta=2.0, warmup_epochs=4)
    assert kl_weight(cfg, 1) == 0.5
    assert kl_weight(cfg, 10) == 2.0
    assert kl_weight(pc.TrainConfig(beta=0.5), 0.1) == 0.5


def test_beta_scales_the_latent_term(digits_small):
    model = _model()
    x, y = digits_small.train.x[:16], digits_small.train.y[:16]
    elbo = pyro.infer.Trace_ELBO()
    pyro.set_rng_seed(0)
    full = elbo.loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(0)
    with scale_latents(0.0001, model.latent_sites):  # the trainer's KL weight, from outside
        tiny = elbo.loss(model.model, model.guide, x, y)
    # with the KL nearly removed, the loss is (almost) the reconstruction term alone
    pyro.set_rng_seed(0)
    gt = pyro.poutine.trace(model.guide).get_trace(x, y)
    mt = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=gt)).get_trace(x, y)
    recon = -mt.nodes["x"]["fn"].log_prob(x).sum().item()
    assert abs(tiny - recon) < 0.01 * abs(full - recon) + 1e-3
    assert full != tiny


def test_data_model_mismatch_is_refused(digits_small):
    model = pc.CVAE(image_shape=(1, 28, 28), num_classes=10, latent_dim=2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="image_shape=\\(1, 8, 8\\)"):
        pc.fit(model, digits_small, epochs=1, progress=False)
    model = pc.CVAE(image_shape=(1, 8, 8), num_classes=5, latent_dim=2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="num_classes=10"):
        pc.fit(model, digits_small, epochs=1, progress=False)


def test_importance_weighted_objectives_refuse_beta(digits_small):
    with pytest.raises(ValueError, match="beta and KL warm-up apply to the ELBO only"):
        pc.fit(_model(), digits_small, epochs=1, objective="iwae", particles=3, beta=0.5,
               progress=False)  # fmt: skip


@pytest.mark.parametrize("objective", sorted(pc.OBJECTIVES))
def test_every_objective_trains(digits_small, objective):
    model = _model()
    h = pc.fit(model, digits_small.subset(128, 32), epochs=2, batch_size=64, objective=objective,
               particles=3, progress=False)  # fmt: skip
    assert all(torch.isfinite(torch.tensor(h.column("train_loss"))))
    assert h.column("train_loss")[1] < h.column("train_loss")[0]  # it learns
    assert not torch.equal(model.decoder.net[-1].weight, _model().decoder.net[-1].weight)


class _SqrtAtZero:
    """An objective whose value is finite (0) but whose gradient is infinite: d sqrt(u)/du at 0."""

    def differentiable_loss(self, model, guide, w):
        return torch.sqrt(w - w.detach()).sum()


def test_a_non_finite_gradient_stops_the_step_before_any_parameter_changes():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    svi = ModuleSVI(None, None, opt, _SqrtAtZero(), [w])
    with pytest.raises(pc.NonFiniteLossError, match="a gradient is not finite"):
        svi.step(w)
    assert torch.equal(w.detach(), torch.ones(3)) and w.grad is None
    # a finite gradient passes the same check and steps
    svi.loss.differentiable_loss = lambda model, guide, w: (w**2).sum()
    svi.step(w)
    assert torch.all(w.detach() < 1.0)


def test_train_classifier_leaves_the_callers_random_state(digits_small, monkeypatch):
    """Trained, or read from its disk cache: the caller's torch RNG is where it was."""
    from pyro_cvae.train import classifier as clf_module

    for _ in ("train and write the cache", "read the disk cache"):
        monkeypatch.setattr(clf_module, "_CLASSIFIERS", {})
        torch.manual_seed(0)
        before = torch.get_rng_state()
        clf_module.train_classifier(digits_small, epochs=1)
        assert torch.equal(torch.get_rng_state(), before)
