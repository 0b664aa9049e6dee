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
