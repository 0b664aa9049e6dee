"""Fault tests: kills at chosen steps and inside checkpoint writes, torn writes, disk errors, malformed inputs.

The counts tried here are reported in README's reliability section.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyro_cvae as pc
from pyro_cvae import checkpoint as ckpt_mod
from pyro_cvae.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from pyro_cvae.cli import main
from pyro_cvae.train import CheckpointWriteError

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_kill_worker.py")  # pyro-cvae train, stopped on cue
EPOCHS, STEPS_PER_EPOCH = 4, 10  # the worker's run: 300 images, batches of 30


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), str(out), *flags], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)  # fmt: skip


def _newest(folder: Path) -> dict:
    return load_checkpoint(list_checkpoints(folder)[-1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run in a fresh process, as the interrupted ones are."""
    out = tmp_path_factory.mktemp("ref") / "run"
    p = _run(out)
    assert p.returncode == 0, p.stderr.decode()
    return _newest(out)


def _assert_same_run(out: Path, reference: dict) -> None:
    final = _newest(out)
    assert final["epoch"] == EPOCHS
    assert final["model"].keys() == reference["model"].keys()
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])
    assert [r["train_loss"] for r in final["history"]] == [
        r["train_loss"] for r in reference["history"]
    ]


# (flag, value, epochs in the newest checkpoint the kill leaves behind)
KILLS = [
    ("--sigkill-at-step", 13, 1),  # mid-epoch 2
    ("--sigkill-at-step", 30, 2),  # after the last step of epoch 3, before its checkpoint
    ("--sigkill-in-write", 2, 1),  # inside the write of epoch 2's checkpoint
    ("--sigkill-in-write", 4, 3),  # inside the write of the final checkpoint
]


@pytest.mark.parametrize(("flag", "at", "saved"), KILLS, ids=[f"{f[8:]}-{n}" for f, n, _ in KILLS])
def test_sigkill_then_resume_is_bit_identical(tmp_path, reference, flag, at, saved):
    out = tmp_path / "run"
    p = _run(out, flag, str(at))
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    # every checkpoint left behind is complete and verifiable; the newest is short of the end
    for path in list_checkpoints(out):
        load_checkpoint(path)
    assert _newest(out)["epoch"] == saved < EPOCHS
    if flag == "--sigkill-in-write":  # the kill came between the write and the rename
        assert list(out.glob(".checkpoint_*.tmp"))
    p = _run(out, "--resume")
    assert p.returncode == 0, p.stderr.decode()
    _assert_same_run(out, reference)


def test_ctrl_c_saves_a_checkpoint_and_resume_is_bit_identical(tmp_path, reference):
    out = tmp_path / "run"
    p = _run(out, "--sigint-at-step", "25")
    assert p.returncode == 130 and b"--resume" in p.stderr, p.stderr.decode()
    newest = _newest(out)  # saved at the interruption, half-way through epoch 3
    assert (newest["epoch"], newest["step"]) == (2, 5)
    p = _run(out, "--resume")
    assert p.returncode == 0, p.stderr.decode()
    _assert_same_run(out, reference)


def test_crash_during_a_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_000001.pt"
    ckpt_mod.save_checkpoint(path, {"a": torch.ones(3)})
    before = path.read_bytes()

    def crash(fd):
        raise KeyboardInterrupt  # the process dies between write and rename

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.save_checkpoint(path, {"a": torch.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.999])
def test_truncated_or_flipped_checkpoints_are_detected(tmp_path, cut):
    path = ckpt_mod.save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100)})
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw[: int(len(raw) * cut)]))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_checkpoint_files_cannot_run_code(tmp_path):
    """A pickle with a code payload behind a valid header is refused by weights_only loading."""
    import hashlib
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf, pickle_module=pickle)
    body = buf.getvalue()
    header = b"PYRO_CVAE_CKPT 1 " + hashlib.sha256(body).hexdigest().encode() + b"\n"
    (tmp_path / "evil.pt").write_bytes(header + body)
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(tmp_path / "evil.pt")


def test_disk_full_is_reported_and_earlier_checkpoints_survive(tmp_path, monkeypatch):
    data = pc.load_dataset("digits").subset(120, 30)
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
    pc.fit(model, data, epochs=1, batch_size=60, out=tmp_path, progress=False)
    kept = {p.name: p.read_bytes() for p in list_checkpoints(tmp_path)}

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", full)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*intact"):
        pc.fit(model, data, epochs=2, batch_size=60, out=tmp_path, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in list_checkpoints(tmp_path)} == kept


# ------------------------------------------------------------------ malformed inputs (hypothesis)

DOCUMENTED = (ValueError, TypeError, CheckpointError, FileNotFoundError)
MODEL = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))

shapes = st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple)
dtypes = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool])
fills = st.sampled_from([0.5, -1.0, 2.0, float("nan"), float("inf"), 255.0])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, dtype=dtypes, fill=fills, ylen=st.integers(0, 9), ymax=st.integers(-3, 14))
def test_malformed_images_and_labels_end_in_documented_errors(shape, dtype, fill, ylen, ymax):
    x = (
        torch.full(shape, fill).to(dtype)
        if dtype != torch.bool
        else torch.zeros(shape, dtype=dtype)
    )
    y = torch.randint(min(ymax, 0), max(ymax, 1), (ylen,))
    well_formed = (
        shape[1:] == (1, 8, 8) and dtype in (torch.float32, torch.float64) and 0 <= fill <= 1
        and ylen == shape[0] and (ylen == 0 or (y.min() >= 0 and y.max() < 10))
    )  # fmt: skip
    try:
        MODEL.encode(x, y)
        MODEL.reconstruct(x, y)
    except DOCUMENTED as e:
        assert not well_formed, e
        assert str(e)  # a message, not a bare exception
    else:
        assert well_formed


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    flag=st.sampled_from(
        [
            "--epochs",
            "--batch-size",
            "--lr",
            "--particles",
            "--latent-dim",
            "--hidden",
            "--objective",
            "--prior",
            "--likelihood",
            "--beta",
            "--alpha",
            "--dataset",
            "--train-size",
        ]
    ),  # fmt: skip
    value=st.sampled_from(["0", "-1", "nan", "abc", "1e9999", "", "3,-2", "iwae"]),
)
def test_malformed_cli_flags_never_leave_a_run_folder(tmp_path_factory, flag, value):
    out = tmp_path_factory.mktemp("bad") / "run"
    argv = ["train", "--train-size", "50", "--epochs", "1", "--eval-samples", "0", "--quiet",
            "--out", str(out), flag, value]  # fmt: skip
    try:
        code = main(argv)
    except SystemExit as e:  # argparse rejects the value with exit status 2
        code = e.code
    if code == 0:  # a value that happens to be valid (e.g. --objective iwae) trains normally
        assert list_checkpoints(out)
    else:
        assert code == 2
        assert not list_checkpoints(out)
