"""Smoke test of experiments/cgan.py (CVAE against a conditional GAN) with a tiny budget."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("exp_cgan", ROOT / "experiments" / "cgan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_flag_has_help():
    parser = _load().build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert any(a.dest == "tiny" for a in flags) and any(a.dest == "budget" for a in flags)
    for action in flags:
        assert action.help and len(action.help) > 3, action.option_strings


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        _load().main(["--help"])
    assert e.value.code == 0 and "--budget" in capsys.readouterr().out


def test_gan_shapes():
    cgan = _load()
    torch.manual_seed(0)
    gan = cgan.ConditionalGAN((1, 8, 8), 10, 4, (16, 8))
    assert [m.out_features for m in gan.generator if hasattr(m, "out_features")] == [16, 8, 64]
    assert [m.out_features for m in gan.discriminator if hasattr(m, "out_features")] == [8, 16, 1]
    x = gan.sample(torch.tensor([3, 7]), 5)
    assert x.shape == (2, 5, 1, 8, 8) and 0 < x.min() and x.max() < 1
    assert gan.critic(x[0], torch.full((5,), 3)).shape == (5,)


def test_tiny_run_writes_results_and_reuses_finished_models(tmp_path):
    cgan = _load()
    args = ["--tiny", "--dataset", "digits", "--out", str(tmp_path / "res"),
            "--runs", str(tmp_path / "runs")]  # fmt: skip
    result = cgan.main(args)
    for ext in ("md", "json", "png"):
        assert (tmp_path / "res" / f"cgan_tiny.{ext}").stat().st_size > 0
    saved = json.loads((tmp_path / "res" / "cgan_tiny.json").read_text())
    assert saved["command"].startswith("python experiments/cgan.py --tiny")
    assert saved["budget"]["budget"] == 1.0 and saved["budget"]["dataset"] == "digits"
    m = saved["metrics"]
    for name in ("cvae", "gan"):
        t = saved["training"][name]
        assert t["steps"] > 0 and 1.0 <= t["seconds"] < 10 and not t["reused"]
        assert 0 <= m[name]["control_score"] <= 1 and len(m[name]["per_class"]) == 10
        assert m[name]["frechet_distance"] >= 0 and m[name]["diversity"] > 0
        assert 0 <= m[name]["midtone_fraction"] <= 1 and 0 <= m[name]["binariness"] <= 1
        assert m[name]["num_images"] == 10 * 5
    assert m["real"]["frechet_distance"] >= 0 and m["real"]["diversity"] > 0
    verdicts = [c["verdict"].split(" ")[0] for c in saved["claims"]]
    assert len(verdicts) == 3 and set(verdicts) <= {"supported", "contradicted", "undecided"}
    md = (tmp_path / "res" / "cgan_tiny.md").read_text()
    assert "Bernoulli means" in md and "--tiny" in md and "shared" in md
    # the budget is CPU time by default (fair on a shared machine), with the elapsed time recorded
    assert "of CPU-time training per model" in md
    assert result["budget"]["clock"] == "cpu" and result["training"]["gan"]["wall_seconds"] > 0
    for name in ("cvae", "gan"):
        assert (tmp_path / "runs" / "digits" / name / "finished.json").exists()
    # a rerun with the same settings reuses both finished models: same numbers, no training
    again = cgan.main(args)
    assert all(again["training"][name]["reused"] for name in ("cvae", "gan"))
    for name in ("cvae", "gan"):
        assert again["metrics"][name] == result["metrics"][name]
