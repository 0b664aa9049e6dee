"""Smoke test of experiments/priors.py at its tiny budget."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "priors.py"


def _load():
    spec = importlib.util.spec_from_file_location("experiments_priors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load().main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--tiny",
        "--epochs",
        "--rows",
        "--eval-samples",
        "--pseudo-inputs",
        "--results-dir",
    ):
        assert flag in text


def test_tiny_run_writes_table_numbers_and_figure(tmp_path):
    priors = _load()
    out = tmp_path / "results"
    rows = "normal,mixture/class,vamp/class,flow,vamp VAE"
    argv = [
        "--tiny",
        "--rows",
        rows,
        "--runs-dir",
        str(tmp_path / "runs"),
        "--results-dir",
        str(out),
    ]
    assert priors.main(argv) == 0
    data = json.loads((out / "priors.json").read_text())
    assert list(data["rows"]) == rows.split(",")
    assert data["settings"]["eval_samples"] == 20 and data["settings"]["tiny"] is True
    for name, row in data["rows"].items():
        assert math.isfinite(row["nll"]) and row["nll"] > 0, name
        assert row["nll"] <= -row["elbo"] + 1.0, name  # k=20 bound is not far below the ELBO's
        assert 0 <= row["active_units"] <= row["latent_dim"]
        assert ("control_score" in row) == row["conditional"]
    table = (out / "priors.md").read_text()
    assert "| vamp VAE | vamp | pseudo_inputs=5 | none |" in table
    assert (out / "priors.png").stat().st_size > 1000
    # a second call reuses the finished rows instead of training them again
    assert priors.main(argv) == 0
    assert json.loads((out / "priors.json").read_text())["rows"] == data["rows"]
    assert "No row is still to do." in table
    # beside the paper's numbers (MNIST only), a subset of the test set is named as such
    m = data["rows"]["vamp VAE"]
    text = "\n".join(priors._comparison({"vamp VAE": {**m, "epochs_trained": 1}}))
    assert "measured on the first 10 test images, not all 10,000" in text
    full = {**m, "epochs_trained": 1, "log_px": [0.0] * 10000}
    assert "expected to be higher" in "\n".join(priors._comparison({"vamp VAE": full}))
    # a KL warm-up is a setting of its own (its own runs folder), and the budget says so
    warm = tmp_path / "warm"
    argv_warm = ["--tiny", "--rows", "vamp VAE", "--warmup-epochs", "1",
                 "--runs-dir", str(tmp_path / "runs_warm"), "--results-dir", str(warm)]  # fmt: skip
    assert priors.main(argv_warm) == 0
    assert json.loads((warm / "priors.json").read_text())["settings"]["warmup_epochs"] == 1
    assert "with a KL warm-up over 1 epochs" in (warm / "priors.md").read_text()


def test_unknown_row_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown row"):
        _load().main(["--tiny", "--rows", "gamma", "--results-dir", str(tmp_path)])


def test_negative_warmup_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--warmup-epochs must be >= 0"):
        _load().main(["--tiny", "--warmup-epochs", "-1", "--results-dir", str(tmp_path)])


def test_bad_hidden_widths_are_refused_by_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _load().main(["--tiny", "--hidden", "300,0", "--results-dir", str(tmp_path)])
    assert "argument --hidden: expected positive integers" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
