"""Run folders (issue 13): what loads a run, what `train` may write into, what reading commands
write, and what a resume accepts."""

import json
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file

import pyro_cvae as pc
from pyro_cvae.checkpoint import list_checkpoints
from pyro_cvae.cli import main

TINY = ["--train-size", "200", "--epochs", "2", "--batch-size", "50", "--latent-dim", "3",
        "--hidden", "16", "--quiet", "--eval-samples", "5"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished CLI run; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- 1. loading a run


def test_train_exports_safetensors_readable_by_the_ecosystem(run):
    weights = load_file(str(run / "model.safetensors"))
    model = pc.load(run)
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model_class"] == "CVAE" and pc.ModelConfig.from_dict(cfg["model"]) == model.config
    assert _same_weights(pc.load(run / "model.safetensors"), model)


def test_a_folder_with_model_pt_and_config_but_no_checkpoint_loads(run):
    reference = pc.load(run / "model.pt")
    for p in list_checkpoints(run):
        p.unlink()
    model = pc.load(run)
    assert _same_weights(model, reference) and model.loaded_from.endswith("model.pt")
    (run / "model.pt").unlink()  # only the exported model left
    model = pc.load(run)
    assert _same_weights(model, reference) and model.loaded_from.endswith("model.safetensors")
    assert main(["sample", "--run", str(run), "--label", "3", "-n", "2"]) == 0
    assert main(["evaluate", "--run", str(run), "-k", "2", "--num-images", "5", "--quiet"]) == 0


def test_safetensors_weights_only_use_the_config_json_beside_them(run, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    model = pc.load(run)
    weights = load_file(str(run / "model.safetensors"))
    from safetensors.torch import save_file  # weights without our metadata, as a hub tool would

    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(pc.CheckpointError, match="config.json"):
        pc.load(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))  # a flat config
    assert _same_weights(pc.load(folder / "model.safetensors"), model)
    assert _same_weights(pc.load(folder), model)


def test_save_safetensors_round_trip_for_a_vector_condition_model(tmp_path):
    model = pc.CVAE(image_shape=(1, 8, 8), condition_dim=3, latent_dim=2, hidden_dims=(8,),
                    prior="vamp", prior_options={"pseudo_inputs": 4})  # fmt: skip
    path = pc.save_safetensors(model, tmp_path / "m.safetensors")
    back = pc.load(path)
    assert back.config == model.config and _same_weights(back, model)
    with pytest.raises(ValueError, match=".safetensors"):
        pc.save_safetensors(model, tmp_path / "m.pt")


def test_a_truncated_newest_checkpoint_falls_back_with_a_warning(run):
    ckpts = list_checkpoints(run)
    raw = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(raw[: len(raw) // 2])
    with pytest.warns(UserWarning, match="truncated or corrupted.*" + ckpts[-2].name):
        model = pc.load(run)
    assert model.loaded_from == str(ckpts[-2])
    with pytest.raises(pc.CheckpointError, match="truncated or corrupted"):
        pc.load(ckpts[-1])  # a file named explicitly is never replaced by another
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["sample", "--run", str(run), "--label", "1", "-n", "2"]) == 0
        assert main(["evaluate", "--run", str(run), "-k", "2", "--num-images", "5",
                     "--quiet"]) == 0  # fmt: skip


def test_an_empty_folder_says_what_it_lacks(tmp_path):
    with pytest.raises(pc.CheckpointError, match="holds no checkpoint, model.pt or model.safe"):
        pc.load(tmp_path)


def test_sample_on_a_truncated_run_in_a_subprocess(run):
    ckpts = list_checkpoints(run)
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])
    r = subprocess.run([sys.executable, "-m", "pyro_cvae", "sample", "--run", str(run), "-n", "2"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "truncated or corrupted" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- 2. the run folder's life cycle


def test_train_refuses_a_folder_with_files_but_no_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own numbers\n")
    assert main(["train", "--out", str(mine), *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds files but no run" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert (mine / "metrics.csv").read_text() == "my own numbers\n"


def test_train_refuses_an_existing_file_in_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = subprocess.run([sys.executable, "-m", "pyro_cvae", "train", "--out", str(afile), *TINY],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is an existing file, not a folder" in r.stderr and len(r.stderr.splitlines()) == 1
    assert afile.read_text() == "x"


def test_train_out_with_a_trailing_slash_is_a_folder(tmp_path):
    assert main(["train", "--out", str(tmp_path / "outfolder") + "/", "--eval-samples", "0",
                 *TINY[:-2]]) == 0  # fmt: skip
    assert (tmp_path / "outfolder" / "model.safetensors").is_file()
    assert not (tmp_path / "outfolder.png").exists()


def test_a_run_without_checkpoints_is_still_a_run(run, capsys):
    for p in list_checkpoints(run):
        p.unlink()
    assert main(["train", "--out", str(run), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_overwrite_removes_the_previous_runs_files(run):
    for name in ("transfer.png", "scores.csv", "scores.png", "nonfinite.json", "sample-2.png",
                 "evaluation.json", "analogies.png"):  # fmt: skip
        (run / name).write_text("old")
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(run), "--overwrite", *TINY[:-2], "--eval-samples",
                 "0"]) == 0  # fmt: skip
    left = {p.name for p in run.iterdir()}
    assert not left & {
        "metrics.json",
        "transfer.png",
        "scores.csv",
        "scores.png",
        "nonfinite.json",
        "sample-2.png",
        "evaluation.json",
        "analogies.png",
    }
    assert "notes.txt" in left and "model.safetensors" in left  # not the run's: kept


def test_reading_commands_never_replace_the_training_outputs(run, tmp_path):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = str(run)
    assert main(["sample", "--run", r, "-n", "2"]) == 0
    assert main(["sample", "--run", r, "-n", "2"]) == 0
    assert main(["reconstruct", "--run", r, "-n", "2"]) == 0
    assert main(["evaluate", "--run", r, "-k", "2", "--num-images", "4", "--quiet"]) == 0
    assert main(["interpolate", "--run", r, "--steps", "3"]) == 0
    assert main(["interpolate", "--run", r, "--steps", "3"]) == 0
    assert main(["transfer", "--run", r, "-n", "2"]) == 0
    assert main(["score", "--run", r, "-n", "3", "-k", "2"]) == 0
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert all(after[name] == data for name, data in before.items())
    new = set(after) - set(before)
    assert new == {"sample.png", "sample-2.png", "reconstruction.png", "evaluation.json",
                   "interpolation.png", "interpolation-2.png", "transfer.png", "scores.csv",
                   "scores.png"}  # fmt: skip
    assert "train_seconds" in json.loads((run / "metrics.json").read_text())
    # --out says where: a file, or a folder (existing, or named with a trailing slash)
    assert main(["sample", "--run", r, "-n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["sample", "--run", r, "-n", "2", "--out", str(tmp_path / "pics") + "/"]) == 0
    assert (tmp_path / "pics" / "sample.png").is_file()
    assert main(["evaluate", "--run", r, "-k", "2", "--num-images", "4", "--quiet", "--out",
                 str(tmp_path / "pics")]) == 0  # fmt: skip
    assert (tmp_path / "pics" / "evaluation.json").is_file()


def test_out_in_a_missing_folder_is_refused(run, tmp_path, capsys):
    missing = tmp_path / "missing" / "x.png"
    assert main(["sample", "--run", str(run), "-n", "2", "--out", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.parent.exists()


# ---------------------------------------------------------------- 4. resume


def _tiny(**kw):
    torch.manual_seed(0)
    return pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,), **kw)


@pytest.fixture
def small_data():
    return pc.load_dataset("digits", binarize="dynamic").subset(100, 50)


def test_resume_names_each_changed_setting_with_old_and_new_value(small_data, tmp_path):
    kw = dict(batch_size=50, out=tmp_path, progress=False)
    pc.fit(_tiny(), small_data, epochs=1, **kw)
    with pytest.raises(pc.CheckpointError, match=r"lr: 0\.001 -> 0\.1") as e:
        pc.fit(_tiny(), small_data, epochs=2, lr=0.1, resume=True, **kw)
    assert "TrainConfig(" not in str(e.value)
    with pytest.raises(pc.CheckpointError, match=r"latent_dim: 2 -> 4"):
        torch.manual_seed(0)
        model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, hidden_dims=(8,))
        pc.fit(model, small_data, epochs=2, resume=True, **kw)


def test_resume_with_fewer_epochs_is_an_error_and_more_continue(small_data, tmp_path, capsys):
    kw = dict(batch_size=50, out=tmp_path, progress=False)
    pc.fit(_tiny(), small_data, epochs=2, **kw)
    with pytest.raises(pc.CheckpointError, match="epochs=1 is fewer than the 2 epochs"):
        pc.fit(_tiny(), small_data, epochs=1, resume=True, **kw)
    history = pc.fit(_tiny(), small_data, epochs=3, resume=True, **kw)
    assert history.column("epoch") == [1, 2, 3]


def test_cli_resume_with_fewer_epochs_exits_2(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    argv = ["train", "--out", str(run), "--resume", *TINY]
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fewer than the 2 epochs" in err and len(err.splitlines()) == 1
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--latent-dim") + 1] = "4"
    assert main(argv) == 2
    assert "latent_dim: 3 -> 4" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 25


def test_reading_commands_refuse_an_out_that_names_a_training_file(run, capsys):
    """Item 1: --out naming a file training wrote is refused; nothing changes."""
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = str(run)
    for argv in (["score", "--run", r, "-n", "3", "-k", "2", "--out", str(run / "metrics.csv")],
                 ["evaluate", "--run", r, "-k", "2", "--num-images", "4", "--quiet", "--out",
                  str(run / "metrics.json")],
                 ["sample", "--run", r, "-n", "2", "--out", str(run / "samples.png")],
                 ["reconstruct", "--run", r, "-n", "2", "--out", str(run / "curves.png")],
                 ["sample", "--run", r, "-n", "2", "--out", str(run / "config.json")]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "is a file training wrote" in err and len(err.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before


def test_resume_on_other_data_is_refused_and_without_data_reuses_the_recorded(tmp_path, capsys):
    """Items 2 and 21: another folder of the same shape is a changed setting; --resume without
    --data continues on the recorded data, not on digits."""
    import numpy as np
    from PIL import Image

    for root, seed in (("a", 0), ("b", 1)):
        for k in ("cat", "dog"):
            (tmp_path / root / k).mkdir(parents=True)
            for i in range(5):
                rng = np.random.default_rng(seed * 100 + i + (k == "dog") * 10)
                Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8), "L").save(
                    tmp_path / root / k / f"{i}.png"
                )
    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--batch-size", "4", "--latent-dim", "2", "--hidden", "4", "--quiet",
            "--eval-samples", "0", "--out", str(run)]  # fmt: skip
    assert main(["train", "--data", str(tmp_path / "a"), *tiny]) == 0
    config = (run / "config.json").read_text()
    assert main(["train", "--data", str(tmp_path / "b"), "--resume", *tiny]) == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and "path:" in err and "fingerprint:" in err
    assert len(err.strip().splitlines()) == 1 and (run / "config.json").read_text() == config
    assert main(["train", "--data", str(tmp_path / "a"), "--image-size", "4", "--resume",
                 *tiny]) == 2  # fmt: skip
    assert "image_size: None -> 4" in capsys.readouterr().err
    argv = ["train", "--resume", *tiny]
    argv[argv.index("--epochs") + 1] = "2"
    assert main(argv) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["path"] == str((tmp_path / "a").resolve()) and cfg["train"]["epochs"] == 2


def test_overwrite_removes_the_old_tensorboard_events(run):
    """Item 8."""
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out.tfevents.1").write_text("old")
    argv = ["train", "--out", str(run), "--overwrite", *TINY]
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 0
    assert not (run / "tensorboard").exists()


def test_a_first_step_that_fails_leaves_no_run_and_the_retry_starts(small_data, tmp_path):
    """Item 27: no config.json before the first checkpoint; the API's refusal in API words."""

    class Boom(pc.CVAE):
        def model(self, x, y=None):
            raise RuntimeError("boom")

    torch.manual_seed(0)
    bad = Boom(image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,))
    with pytest.raises(RuntimeError, match="boom"):
        pc.fit(bad, small_data, epochs=1, batch_size=50, out=tmp_path, progress=False)
    assert not (tmp_path / "config.json").exists()
    pc.fit(_tiny(), small_data, epochs=1, batch_size=50, out=tmp_path, progress=False)
    assert (tmp_path / "config.json").exists()
    with pytest.raises(pc.RunFolderError, match=r"resume=True.*overwrite=True"):
        pc.fit(_tiny(), small_data, epochs=1, batch_size=50, out=tmp_path, progress=False)
