"""Callbacks of fit: the hooks' order, "stop" after a checkpointed epoch, early stopping, a CSV
logger and a user's logger across a resume, the progress bar as a callback, and under torchrun
only rank 0's callbacks run while every rank stops together."""

import csv
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.checkpoint import list_checkpoints, load_checkpoint
from pyro_cvae.train import callbacks as callbacks_module
from pyro_cvae.train.callbacks import STOP, ProgressBar

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KW = dict(batch_size=100, lr=3e-3, progress=False)  # 300 training images: 3 steps an epoch
STEPS = 3


def _model():
    torch.manual_seed(0)
    return pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(16,))


class Recorder(pc.Callback):
    """Logs every hook call and keeps the rows it was given."""

    def __init__(self):
        self.calls, self.rows, self.start_rows, self.ended_with = [], [], None, None

    def on_fit_start(self, run):
        self.calls.append("fit_start")
        self.start_rows = [dict(r) for r in run.history.rows]

    def on_epoch_start(self, run, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_step_end(self, run, epoch, step, loss, count):
        self.calls.append(f"step {epoch}.{step}")

    def on_checkpoint(self, path):
        self.calls.append(f"checkpoint {Path(path).name}")

    def on_epoch_end(self, row):
        self.calls.append(f"epoch_end {row['epoch']}")
        self.rows.append(row)

    def on_fit_end(self, history):
        self.calls.append("fit_end")
        self.ended_with = history


class StopAt(pc.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, row):
        return STOP if row["epoch"] == self.epoch else None


def _rows_without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ hooks and stop


def test_hooks_run_in_order_from_fit_start_to_fit_end(digits_small, tmp_path):
    rec = Recorder()
    h = pc.fit(_model(), digits_small, epochs=2, out=tmp_path, callbacks=[rec], **KW)
    epoch = lambda e: [f"epoch_start {e}", *(f"step {e}.{s}" for s in range(1, STEPS + 1)),  # noqa: E731
                       f"checkpoint checkpoint_{(e + 1) * STEPS:06d}.pt", f"epoch_end {e + 1}"]  # fmt: skip
    assert rec.calls == ["fit_start", *epoch(0), *epoch(1), "fit_end"]
    assert rec.start_rows == []
    assert rec.ended_with is h and h.stopped_by is None
    assert rec.rows == h.rows and rec.rows[0] is not h.rows[0]  # copies: the history is the loop's


def test_stop_from_a_callback_ends_after_that_epochs_checkpoint(digits_small, tmp_path):
    rec = Recorder()  # after the stopper: it still receives the row of the last epoch
    h = pc.fit(_model(), digits_small, epochs=5, out=tmp_path, callbacks=[StopAt(2), rec], **KW)
    assert len(h) == 2 and h.stopped_by == "StopAt" and not h.interrupted
    assert [r["epoch"] for r in rec.rows] == [1, 2] and rec.calls[-1] == "fit_end"
    newest = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert (newest["epoch"], newest["step"]) == (2, 0)
    assert len(_read_csv(tmp_path / "metrics.csv")) == 2
    # the stopped run resumes from its checkpoint to the epochs asked for
    again = pc.fit(_model(), digits_small, epochs=4, out=tmp_path, resume=True, **KW)
    assert [r["epoch"] for r in again.rows] == [1, 2, 3, 4] and again.stopped_by is None
    assert again.rows[:2] == h.rows


def test_a_callback_answer_other_than_stop_is_refused(digits_small):
    class Yes(pc.Callback):
        def on_epoch_end(self, row):
            return True

    with pytest.raises(
        ValueError, match=r'Yes.on_epoch_end returned True; return .*STOP \("stop"\)'
    ):
        pc.fit(_model(), digits_small, epochs=2, callbacks=[Yes()], **KW)


def test_callbacks_argument_is_checked_before_training(digits_small, tmp_path):
    with pytest.raises(
        TypeError, match=r"class EarlyStopping, not an instance; pass EarlyStopping\(\)"
    ):
        pc.fit(_model(), digits_small, out=tmp_path, callbacks=[pc.EarlyStopping], **KW)
    with pytest.raises(TypeError, match="has none of the hooks"):
        pc.fit(_model(), digits_small, out=tmp_path, callbacks=[object()], **KW)
    with pytest.raises(TypeError, match="callbacks must be a list"):
        pc.fit(_model(), digits_small, out=tmp_path, callbacks=3, **KW)
    assert not tmp_path.joinpath("config.json").exists() and not list_checkpoints(tmp_path)
    rec = Recorder()  # one callback on its own is taken as a list of one
    pc.fit(_model(), digits_small, epochs=1, callbacks=rec, **KW)
    assert rec.calls[0] == "fit_start" and rec.calls[-1] == "fit_end"


# ---------------------------------------------------------------------------- early stopping


class _FakeRun:
    def __init__(self, rows=(), validate_every=1):
        self.history = pc.History(rows=[dict(r) for r in rows])
        self.config = pc.TrainConfig(validate_every=validate_every)


@pytest.mark.parametrize(
    "mode, values, stops_at",
    [("max", [1.0, 2.0, 2.05, 1.9, 3.0], 4),  # 2.05 is not 0.1 better than 2.0: two waits
     ("min", [3.0, 2.0, 1.95, 2.1, 1.0], 4),
     ("max", [1.0, 2.0, 2.2, 2.0, 2.5], None)],
)  # fmt: skip
def test_early_stopping_counts_checks_without_improvement(mode, values, stops_at):
    es = pc.EarlyStopping("val_elbo", mode=mode, patience=2, min_delta=0.1)
    es.on_fit_start(_FakeRun())
    answers = [es.on_epoch_end({"epoch": i + 1, "val_elbo": v}) for i, v in enumerate(values)]
    stopped = [i + 1 for i, a in enumerate(answers) if a == STOP]
    assert (stopped[0] if stopped else None) == stops_at


def test_early_stopping_skips_epochs_without_validation_and_replays_a_resumed_history():
    es = pc.EarlyStopping("val_elbo", patience=1)
    rows = [{"epoch": 1, "train_loss": 5.0}, {"epoch": 2, "train_loss": 4.0, "val_elbo": -3.0}]
    es.on_fit_start(_FakeRun(rows, validate_every=2))
    assert (es.best, es.best_epoch, es.wait) == (-3.0, 2, 0)
    assert es.on_epoch_end({"epoch": 3, "train_loss": 3.0}) is None  # no validation: no check
    assert es.on_epoch_end({"epoch": 4, "train_loss": 3.0, "val_elbo": -3.5}) == STOP


def test_early_stopping_refuses_bad_options():
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        pc.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        pc.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        pc.EarlyStopping(min_delta=-1.0)


@pytest.mark.parametrize("monitor, overrides", [("val_elbo", {"validate_every": 0}),
                                                ("val_lbo", {})])  # fmt: skip
def test_early_stopping_names_the_keys_when_its_metric_never_comes(
    monitor, overrides, digits_small
):
    es = pc.EarlyStopping(monitor)
    with pytest.raises(ValueError) as e:
        pc.fit(_model(), digits_small, epochs=3, callbacks=[es], **KW, **overrides)
    msg = str(e.value)
    assert f"monitors {monitor!r}, which no epoch row holds" in msg
    assert "'train_loss'" in msg and "validate_every >= 1" in msg


def test_early_stopping_waits_for_a_later_validation(digits_small):
    es = pc.EarlyStopping("val_elbo", patience=1, min_delta=1e9)  # nothing counts as better
    h = pc.fit(_model(), digits_small, epochs=8, validate_every=2, callbacks=[es], **KW)
    # checks at epochs 2 (the first value) and 4 (no improvement: patience 1 runs out)
    assert len(h) == 4 and h.stopped_by == "EarlyStopping" and es.best_epoch == 2


def test_early_stopping_stops_a_run_that_resumes_where_an_uninterrupted_one_stops(
    digits_small, tmp_path
):
    def es():
        return pc.EarlyStopping("train_loss", mode="min", patience=2, min_delta=1e9)

    whole = pc.fit(_model(), digits_small, epochs=6, callbacks=[es()], **KW)
    assert len(whole) == 3 and whole.stopped_by == "EarlyStopping"
    # stopped mid-epoch 2, then resumed with a fresh callback: it stops after the same epoch
    part = pc.fit(_model(), digits_small, epochs=6, out=tmp_path, callbacks=[es()],
                  stop_after_steps=STEPS + 1, **KW)  # fmt: skip
    assert part.interrupted and len(part) == 1
    rest = pc.fit(_model(), digits_small, epochs=6, out=tmp_path, resume=True,
                  callbacks=[es()], **KW)  # fmt: skip
    assert rest.stopped_by == "EarlyStopping"
    assert _rows_without_seconds(rest.rows) == _rows_without_seconds(whole.rows)
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["epoch"] == 3


# ------------------------------------------------------------------------------------ loggers


def test_a_users_logger_and_the_csv_logger_receive_every_epoch_across_a_resume(
    digits_small, tmp_path
):
    out, log = tmp_path / "run", tmp_path / "log.csv"
    first, second = Recorder(), Recorder()
    kw = dict(epochs=4, out=out, validate_every=2, **KW)  # val_elbo only in rows 2 and 4
    part = pc.fit(_model(), digits_small, callbacks=[first, pc.CSVLogger(log)],
                  stop_after_steps=2 * STEPS + 1, **kw)  # fmt: skip
    assert [r["epoch"] for r in first.rows] == [1, 2] and first.ended_with is part
    assert [r["epoch"] for r in _read_csv(log)] == ["1", "2"]
    log.write_text(log.read_text() + "3,stale row of a process killed after its log line\n")
    h = pc.fit(_model(), digits_small, callbacks=[second, pc.CSVLogger(log)], resume=True, **kw)
    assert second.start_rows == part.rows  # the resumed history, in on_fit_start
    assert first.rows + second.rows == h.rows  # every epoch once, in order
    # the logger's file holds exactly what the run folder's metrics.csv holds
    assert log.read_text() == (out / "metrics.csv").read_text()
    assert list(_read_csv(log)[0]) == ["epoch", "train_loss", "kl_scale", "seconds", "val_elbo"]


def test_csv_logger_refuses_a_missing_folder(digits_small, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        pc.fit(_model(), digits_small, epochs=1, callbacks=[pc.CSVLogger(tmp_path / "no" / "l.csv")],
               **KW)  # fmt: skip


# ------------------------------------------------------------------------------- progress bar


@pytest.mark.parametrize("progress", [False, True])
def test_the_progress_bar_is_a_callback_that_progress_false_leaves_out(
    progress, digits_small, monkeypatch
):
    bars = []

    class Spy(callbacks_module.tqdm):
        def __init__(self, *a, **k):
            bars.append(k)
            super().__init__(*a, **k)

    monkeypatch.setattr(callbacks_module, "tqdm", Spy)
    rec = Recorder()
    pc.fit(_model(), digits_small, epochs=2, callbacks=[rec], **{**KW, "progress": progress})
    if progress:
        assert [b["desc"] for b in bars] == ["epoch 1/2", "epoch 2/2"]
        assert all(b["total"] == STEPS for b in bars)
    else:
        assert bars == []
    assert rec.calls[0] == "fit_start"  # the user's callbacks run either way


def test_progress_bar_starts_a_resumed_epoch_where_it_stopped(digits_small, tmp_path, monkeypatch):
    bars = []

    class Spy(callbacks_module.tqdm):
        def __init__(self, *a, **k):
            bars.append(k)
            super().__init__(*a, **k)

    monkeypatch.setattr(callbacks_module, "tqdm", Spy)
    pc.fit(_model(), digits_small, epochs=2, out=tmp_path, stop_after_steps=STEPS + 1,
           callbacks=[ProgressBar()], **KW)  # fmt: skip
    bars.clear()
    pc.fit(_model(), digits_small, epochs=2, out=tmp_path, resume=True, callbacks=[ProgressBar()],
           **KW)  # fmt: skip
    assert [(b["desc"], b["initial"]) for b in bars] == [("epoch 2/2", 1)]


# ---------------------------------------------------------------------------- several processes


def test_under_torchrun_only_rank_0_calls_callbacks_and_every_rank_stops(tmp_path):
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = Path(__file__).with_name("_ddp_stop_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), str(worker), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["epochs"] == r1["epochs"] == 2  # of 4: rank 0's callback stopped both
    assert r0["stopped_by"] == r1["stopped_by"] == "StopAt"
    assert r0["calls"] == [1, 2] and r1["calls"] == []
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["epoch"] == 2


def test_hooks_call_only_what_a_callback_overrides():
    """The per-step hook of a callback that leaves it as Callback's no-op is not called; one
    set on the instance, or on a duck-typed callback, is."""
    calls = []

    class EpochsOnly(pc.Callback):
        def on_epoch_end(self, row):
            calls.append("epoch")

    class Duck:
        def on_step_end(self, run, epoch, step, loss, count):
            calls.append("duck")

    on_instance = pc.Callback()
    on_instance.on_step_end = lambda *a: calls.append("instance")
    hooks = callbacks_module._Hooks([EpochsOnly(), Duck(), on_instance], active=True)
    assert [type(cb).__name__ for cb in hooks.by_hook["on_step_end"]] == ["Duck", "Callback"]
    assert hooks.by_hook["on_fit_start"] == []
    hooks.step_end(None, 0, 1, 0.0, 1)
    assert hooks.epoch_end({"epoch": 1}) is None
    assert calls == ["duck", "instance", "epoch"]
