"""Smoke test of experiments/molecules.py with its tiny budget."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
if importlib.util.find_spec("moses") is None:
    pytest.skip("molsets is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "exp_molecules", ROOT / "experiments" / "molecules.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_results(tmp_path):
    out = _load().main(["--tiny", "--results-dir", str(tmp_path)])
    assert set(out["models"]) == {"CVAE", "VAE"}
    for m in out["models"].values():
        assert 0 <= m["validity"] <= 1 and "logp_spearman" in m
    assert json.loads((tmp_path / "molecules.tiny.json").read_text())["logp_grid"]
    assert "MOSES VAE" in (tmp_path / "molecules.tiny.md").read_text()
    if out.get("picture"):  # a grid of the CVAE's valid molecules, one row per logP target
        assert (tmp_path / out["picture"]).stat().st_size > 0
        assert out["picture"] in (tmp_path / "molecules.tiny.md").read_text()
    # run again: both models are read from their run folders, not retrained
    again = _load().main(["--tiny", "--results-dir", str(tmp_path)])
    assert again["models"] == out["models"]
    md = (tmp_path / "molecules.tiny.md").read_text()
    assert md.count("| final |") == 2 and "Spearman correlation between requested" in md
    (tmp_path / "molecules.tiny.md").unlink()
    _load().main(["--tiny", "--render-only", "--results-dir", str(tmp_path)])
    assert (tmp_path / "molecules.tiny.md").read_text() == md
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "cvae-n300-seed0", "vae-n300-seed0"]  # fmt: skip


def test_every_flag_has_help():
    parser = _load().build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest


def test_a_run_folder_of_other_settings_is_refused_by_flag(tmp_path):
    """A finished tiny run's folders, then other settings into the same --runs-dir: a clear
    error naming the changed setting and the flag to change, and the run folder untouched."""
    runs = tmp_path / "runs"
    _load().main(["--tiny", "--results-dir", str(tmp_path), "--runs-dir", str(runs)])
    before = sorted(p.name for p in (runs / "cvae-n300-seed0").iterdir())
    with pytest.raises(SystemExit, match=r"(?s)batch_size: 128 -> 64.*pass another --runs-dir"):
        _load().main(["--tiny", "--batch-size", "64", "--results-dir", str(tmp_path / "other"),
                      "--runs-dir", str(runs)])  # fmt: skip
    assert sorted(p.name for p in (runs / "cvae-n300-seed0").iterdir()) == before
