"""One fit for every model family (pyro_cvae.train.loop, pyro_cvae.train.families).

Every family gets the same guarantees from the one loop: bit-identical resume, a non-finite loss
stops training with ``nonfinite.json`` and the last good checkpoint intact, a failed checkpoint
write is a ``CheckpointWriteError``, ``skip_nonfinite`` skips; and the KL weight is an effect
handler whose scaled ELBO is exact.
"""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae import checkpoint as ckpt_mod
from pyro_cvae.checkpoint import list_checkpoints, load_checkpoint
from pyro_cvae.cli import main
from pyro_cvae.infer import scale_latents
from pyro_cvae.models import BaselineNet, QuadrantCVAE
from pyro_cvae.train import (
    CheckpointWriteError,
    ClassifierFamily,
    CompletionFamily,
    ConditionalFamily,
    SemiSupervisedFamily,
    family_for,
    train_classifier,
)

PACKAGE = Path(pc.__file__).resolve().parent
SMALL = dict(latent_dim=3, hidden_dims=(16,))


def _build(kind: str):
    torch.manual_seed(0)
    if kind == "cvae":
        return pc.CVAE(image_shape=(1, 8, 8), num_classes=10, **SMALL), None
    if kind == "hierarchical":
        return pc.HierarchicalCVAE(image_shape=(1, 8, 8), num_classes=10, hidden_dims=(16,),
                                   latent_dims=(4, 2)), None  # fmt: skip
    if kind == "m2":
        model = pc.M2(image_shape=(1, 8, 8), num_classes=10, **SMALL)
        return model, pc.SemiSupervisedConfig(num_labels=50, batch_size=50, labelled_batch_size=20)
    if kind == "quadrants":
        return QuadrantCVAE(image_shape=(1, 8, 8), num_given=2, **SMALL), None
    if kind == "baseline":
        return BaselineNet(image_shape=(1, 8, 8), num_given=2, hidden_dims=(16,)), None
    raise AssertionError(kind)


FAMILIES = ["cvae", "hierarchical", "m2", "quadrants", "baseline"]


def _fit(kind, data, out=None, **kw):
    model, config = _build(kind)
    kw = {"epochs": 3, "progress": False, **kw}
    if config is None:
        kw.setdefault("batch_size", 50)
    pyro.set_rng_seed(0)
    history = pc.fit(model, data, config, out=out, **kw)
    return model, history


@pytest.fixture(scope="module")
def data(digits):
    return digits.subset(200, 50)


def test_family_for_each_model():
    assert isinstance(family_for(_build("cvae")[0]), ConditionalFamily)
    assert isinstance(family_for(_build("hierarchical")[0]), ConditionalFamily)
    assert isinstance(family_for(_build("m2")[0]), SemiSupervisedFamily)
    assert isinstance(family_for(_build("quadrants")[0]), CompletionFamily)
    assert isinstance(family_for(_build("baseline")[0]), CompletionFamily)
    assert isinstance(family_for(pc.models.LabelClassifier()), ClassifierFamily)


@pytest.mark.parametrize("kind", FAMILIES)
def test_training_lowers_the_loss(kind, data):
    _, h = _fit(kind, data, epochs=4, lr=3e-3)
    losses = h.column("train_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]


@pytest.mark.parametrize("kind", FAMILIES)
def test_resume_is_bit_identical(kind, data, tmp_path):
    full, h_full = _fit(kind, data, out=tmp_path / "full")
    part, h_part = _fit(kind, data, out=tmp_path / "cut", stop_after_steps=5)
    assert h_part.interrupted
    newest = load_checkpoint(list_checkpoints(tmp_path / "cut")[-1])
    assert (newest["epoch"], newest["step"]) < (3, 0)  # really short of the end
    resumed, h_resumed = _fit(kind, data, out=tmp_path / "cut", resume=True)
    assert h_resumed.column("train_loss") == h_full.column("train_loss")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("kind", FAMILIES)
def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(kind, data, tmp_path):
    model, config = _build(kind)
    pc.fit(model, data, config, out=tmp_path, epochs=1, progress=False,
           **({} if config else {"batch_size": 50}))  # fmt: skip
    before = list_checkpoints(tmp_path)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(pc.NonFiniteLossError, match="training stopped at epoch 1, step 1"):
        pc.fit(model, data, config, out=tmp_path / "again", epochs=1, progress=False,
               pyro_validation=False, **({} if config else {"batch_size": 50}))  # fmt: skip
    report = json.loads((tmp_path / "again" / "nonfinite.json").read_text())
    assert report["epoch"] == 1 and report["step"] == 1
    assert list_checkpoints(tmp_path) == before  # the earlier run's checkpoints are untouched


@pytest.mark.parametrize("kind", ["cvae", "m2", "quadrants"])
def test_skip_nonfinite_counts_skipped_batches(kind, data):
    model, config = _build(kind)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    h = pc.fit(model, data, config, epochs=1, progress=False, pyro_validation=False,
               skip_nonfinite=True, **({} if config else {"batch_size": 50}))  # fmt: skip
    # every step of the epoch: 200 images in batches of 50 (M2: its 150 unlabelled ones)
    assert h.skipped_batches == (3 if kind == "m2" else 4)
    assert torch.isnan(next(model.parameters())).all()  # no step was taken


@pytest.mark.parametrize("kind", ["cvae", "m2", "quadrants"])
def test_failed_checkpoint_write_is_reported(kind, data, tmp_path, monkeypatch):
    _fit(kind, data, out=tmp_path, epochs=1)
    good = list_checkpoints(tmp_path)

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", full)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*is intact"):
        _fit(kind, data, out=tmp_path, epochs=2, resume=True)
    assert list_checkpoints(tmp_path) == good


def test_m2_resume_refuses_another_labelled_subset(data, tmp_path):
    model, config = _build("m2")
    first, other = torch.zeros(200, dtype=torch.bool), torch.zeros(200, dtype=torch.bool)
    first[:40], other[40:80] = True, True
    pc.fit(model, data, config, family=SemiSupervisedFamily(first), out=tmp_path, epochs=1,
           progress=False)  # fmt: skip
    with pytest.raises(pc.CheckpointError, match="another labelled subset"):
        pc.fit(model, data, config, family=SemiSupervisedFamily(other), out=tmp_path, epochs=2,
               resume=True, progress=False)  # fmt: skip


def test_wrong_config_kind_for_the_family_is_refused(data):
    with pytest.raises(ValueError, match="SemiSupervisedFamily trains with a SemiSupervisedConfig"):
        pc.fit(_build("m2")[0], data, pc.TrainConfig(epochs=1), progress=False)


# ------------------------------------------------------------------------- KL weight


@pytest.mark.parametrize("beta", [0.0001, 0.5, 3.0])
def test_scale_latents_weighs_exactly_the_latent_term(beta, digits_small):
    """Same draw: the scaled ELBO is log p(x|z) + beta (log p(z) - log q(z|x))."""
    model, _ = _build("hierarchical")
    x, y = digits_small.train.x[:16], digits_small.train.y[:16]
    pyro.set_rng_seed(3)
    with scale_latents(beta, model.latent_sites):
        loss = pyro.infer.Trace_ELBO().loss(model.model, model.guide, x, y)
    pyro.set_rng_seed(3)
    gt = pyro.poutine.trace(model.guide).get_trace(x, y)
    mt = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=gt)).get_trace(x, y)
    gt.compute_log_prob()
    mt.compute_log_prob()
    recon = mt.nodes["x"]["log_prob"].sum()
    latent = sum(mt.nodes[s]["log_prob"].sum() - gt.nodes[s]["log_prob"].sum()
                 for s in model.latent_sites)  # fmt: skip
    assert loss == pytest.approx(-(recon + beta * latent).item(), rel=1e-5)


def test_warmup_weight_is_applied_per_step_and_models_keep_no_state(data, monkeypatch):
    seen = []
    real = scale_latents

    def spy(scale, sites):
        seen.append((scale, tuple(sites)))
        return real(scale, sites)

    monkeypatch.setattr("pyro_cvae.train.loop.scale_latents", spy)
    model, _ = _build("cvae")
    h = pc.fit(model, data, epochs=2, batch_size=50, warmup_epochs=2, beta=0.5, progress=False)
    steps = 4  # 200 images, batches of 50
    want = [0.5 * min(1.0, (i + 1) / steps / 2) for i in range(2 * steps)]
    assert [s for s, _ in seen] == pytest.approx(want)
    assert {sites for _, sites in seen} == {("z",)}
    assert h.column("kl_scale") == pytest.approx([0.25, 0.5])
    assert not any("kl" in name for name in vars(model))  # no training state on the model


# ------------------------------------------------------------------------- one loop, one config


def test_exactly_one_module_runs_a_training_step():
    steps, backwards, updates = set(), set(), set()
    for f in PACKAGE.rglob("*.py"):
        text, name = f.read_text(), f.relative_to(PACKAGE).as_posix()
        if re.search(r"\bsvi\.step\(", text):
            steps.add(name)
        if re.search(r"\.backward\(\)", text):
            backwards.add(name)
        if re.search(r"\boptim\w*\.step\(", text):
            updates.add(name)
    assert steps == {"train/loop.py"}
    # the SVI step itself (called only by the loop), and Pyro's ELBO.loss_and_grads contract
    # of the objectives (the registry's and the free-bits ELBO)
    assert backwards == {"infer/svi.py", "infer/objectives.py", "infer/free_bits.py"}
    assert updates == {"infer/svi.py"}


def test_judge_classifier_is_trained_by_fit(digits_small):
    clf = train_classifier(digits_small, epochs=3, cache=False)
    assert isinstance(clf, pc.models.LabelClassifier)
    acc = (clf(digits_small.test.x).argmax(-1) == digits_small.test.y).float().mean().item()
    assert acc > 0.5  # ten classes: chance is 0.1


@pytest.mark.parametrize(
    "dataset, flags",
    [("digits", []), ("digits", ["--unconditional"]), ("colored-digits", []),
     ("digits", ["--latent-dims", "6,3", "--hidden", "20"])],
)  # fmt: skip
def test_cli_and_api_build_the_same_model(dataset, flags, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--dataset", dataset, "--train-size", "60", "--epochs", "1",
                 "--eval-samples", "0", "--quiet", "--out", str(out), *flags])  # fmt: skip
    assert code == 0
    saved = json.loads((out / "config.json").read_text())["model"]
    data = pc.load_dataset(dataset, train_size=60)
    overrides = {}
    if "--latent-dims" in flags:
        overrides = {"latent_dims": (6, 3), "hidden_dims": (20,)}
    api = pc.ModelConfig.for_data(data, unconditional="--unconditional" in flags, **overrides)
    assert pc.ModelConfig.from_dict(saved) == api
    assert type(pc.load(out)) is type(pc.build_model(api))


def test_m2_trains_on_two_processes_with_ddp(tmp_path):
    """The semi-supervised family under torchrun: identical weights, one shard per rank."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = Path(__file__).with_name("_ddp_family_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), str(worker), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["loss"] == r1["loss"] and r0["loss"][-1] < r0["loss"][0]
    # 150 unlabelled images, 75 per rank in batches of 25: 3 steps per epoch each, other images
    assert len(r0["seen"]) == len(r1["seen"]) == 9
    assert r0["seen"] != r1["seen"]
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["epoch"] == 3


def test_tensorboard_logs_every_step_and_epoch(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, _ = _build("cvae")
    h = pc.fit(model, data, epochs=2, batch_size=50, out=tmp_path, tensorboard=True,
               progress=False)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps = events.Scalars("train/loss")
    assert [e.step for e in steps] == list(range(1, 9))  # 4 steps per epoch, 2 epochs
    epoch_loss = [e.value for e in events.Scalars("epoch/train_loss")]
    assert epoch_loss == pytest.approx(h.column("train_loss"))
    # the epoch's loss is the mean of its steps' per-image losses (equal batches of 50)
    first = sum(e.value for e in steps[:4]) / 4
    assert first == pytest.approx(h.column("train_loss")[0], rel=1e-5)
    with pytest.raises(ValueError, match="give out="):
        pc.fit(model, data, epochs=1, batch_size=50, tensorboard=True, progress=False)


@pytest.mark.parametrize(
    "flags, message",
    [(["--epochs", "2", "--warmup-epochs", "5"], "--warmup-epochs 5 is longer than --epochs 2"),
     (["--eval-samples", "-1"], "--eval-samples must be >= 0")],
)  # fmt: skip
def test_train_refuses_inconsistent_flags_before_writing(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--train-size", "60", "--quiet", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_validation_binarises_the_split_once_per_run(data, monkeypatch):
    """The seeded binarisation of the validation split is made at the first validation and
    scored every epoch after it (it is the same draw each time)."""
    calls = []
    eval_split = pc.Dataset.eval_split
    monkeypatch.setattr(pc.Dataset, "eval_split",
                        lambda self, split: calls.append(split) or eval_split(self, split))  # fmt: skip
    _, history = _fit("cvae", data, epochs=3, validate_every=1)
    assert calls == ["val"]
    monkeypatch.setattr(pc.Dataset, "eval_split", eval_split)
    _, again = _fit("cvae", data, epochs=3, validate_every=1)
    assert history.column("val_elbo") == again.column("val_elbo")
    assert len(set(history.column("val_elbo"))) == 3  # one score per epoch, of the model then
