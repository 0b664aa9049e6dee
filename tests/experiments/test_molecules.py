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


ROWS = {"VAE", "CVAE", "CVAE p(z|c)", "CVAE p(z|c) + property loss (w=10)"}
FOUR = ["--variants", "VAE,CVAE,CVAE p(z|c),CVAE p(z|c) + property loss"]


def test_tiny_run_writes_results(tmp_path):
    out = _load().main(["--tiny", *FOUR, "--results-dir", str(tmp_path)])
    assert set(out["models"]) == ROWS
    for m in out["models"].values():
        assert 0 <= m["moses"]["valid"] <= 1 and "FCD/Test" in m["moses"]
        assert {"IntDiv", "IntDiv2", "SNN/Test", "Frag/Test", "Scaf/Test", "Novelty"} <= set(
            m["moses"]
        )
        for p in ("logp", "qed", "mw", "tpsa"):  # control (a) and (b) per property
            assert 0 <= m["control"][f"{p}_success"] <= 1 and f"{p}_success" in m["single"]
        assert "logp_spearman" in m["grid"] or m["grid"] == {"logp_achieved_mean": [None] * 3}
        assert m["epochs"] == m["of_epochs"] == 1
    assert json.loads((tmp_path / "molecules.tiny.json").read_text())["logp_grid"]
    md = (tmp_path / "molecules.tiny.md").read_text()
    assert "MOSES VAE" in md and "0.099" in md  # the published FCD/Test beside ours
    # real training molecules scored the same way: what FCD and the rest give at this size
    assert out["reference"]["valid"] == 1 and "| reference |" in md
    if out.get("picture"):  # a grid of the CVAE's valid molecules, one row per logP target
        assert (tmp_path / out["picture"]).stat().st_size > 0
        assert out["picture"] in md
    # run again: every row is read from its run folder, not retrained
    again = _load().main(["--tiny", *FOUR, "--results-dir", str(tmp_path)])
    assert again["models"] == json.loads(json.dumps(out["models"], default=float))
    md = (tmp_path / "molecules.tiny.md").read_text()
    # four rows final in each of the five tables ((d): the logP x QED grid)
    assert md.count("| final |") == 5 * len(ROWS) and "Spearman correlation between requested" in md
    for m in out["models"].values():
        g = m["grid2d"]  # 3 logP x 3 QED targets at the tiny budget
        assert len(g["achieved"]) == len(g["logp"]) == 3 and len(g["achieved"][0]) == 3
    assert (tmp_path / out["grid_picture"]).stat().st_size > 0 and out["grid_picture"] in md
    (tmp_path / "molecules.tiny.md").unlink()
    _load().main(["--tiny", "--render-only", "--results-dir", str(tmp_path)])
    assert (tmp_path / "molecules.tiny.md").read_text() == md
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "cvae-cond-n300-seed0", "cvae-cond-prop10-n300-seed0", "cvae-n300-seed0",
        "vae-n300-seed0"]  # fmt: skip


def test_a_row_still_training_is_marked_and_continued(tmp_path):
    """--epochs-per-call 1 of 2 epochs: the row is written 'still training', then the same
    command finishes it."""
    argv = ["--tiny", "--epochs", "2", "--epochs-per-call", "1", "--variants", "CVAE",
            "--results-dir", str(tmp_path)]  # fmt: skip
    first = _load().main(argv)
    assert first["models"]["CVAE"]["epochs"] == 1
    assert "still training (1 of 2 epochs" in (tmp_path / "molecules.tiny.md").read_text()
    second = _load().main(argv)
    assert second["models"]["CVAE"]["epochs"] == 2
    assert "still training" not in (tmp_path / "molecules.tiny.md").read_text()


def test_the_logp_only_and_word_dropout_rows(tmp_path):
    """A row conditioned on logP alone is measured on logP only; a word-dropout row trains
    the same model with the other word dropout."""
    argv = ["--tiny", "--variants", "CVAE p(z|c) (logP only),CVAE p(z|c) (word dropout 0)",
            "--results-dir", str(tmp_path)]  # fmt: skip
    out = _load().main(argv)
    logp = out["models"]["CVAE p(z|c) (logP only)"]
    assert "logp_success" in logp["control"] and "qed_spearman" not in logp["control"]
    assert set(logp["single"]) == {"logp_spearman", "logp_mae", "logp_success"}
    assert "qed_spearman" in out["models"]["CVAE p(z|c) (word dropout 0)"]["control"]
    assert "grid2d" not in logp and out["models"]["CVAE p(z|c) (word dropout 0)"]["grid2d"]
    runs = tmp_path / "runs"
    cfg = json.loads((runs / "cvae-cond-logp-n300-seed0" / "config.json").read_text())
    assert cfg["model"]["condition_dim"] == 1 and cfg["data"]["condition"] == ["logp"]
    cfg = json.loads((runs / "cvae-cond-wd0-n300-seed0" / "config.json").read_text())
    assert cfg["model"]["word_dropout"] == 0.0 and cfg["model"]["prior"] == "conditional"
    md = (tmp_path / "molecules.tiny.md").read_text()
    assert "| CVAE p(z\\|c) (logP only) |" in md
    # the command recorded writes every row of the file: the same flags, every variant
    assert out["command"] == f"python experiments/molecules.py --tiny --results-dir {tmp_path}"


def test_guidance_rows_share_one_trained_model(tmp_path):
    argv = ["--tiny", "--variants",
            "CVAE p(z|c) (cond. dropout 0.2),CVAE p(z|c) (cond. dropout 0.2; guidance 3)",
            "--results-dir", str(tmp_path)]  # fmt: skip
    out = _load().main(argv)
    plain = out["models"]["CVAE p(z|c) (cond. dropout 0.2)"]
    guided = out["models"]["CVAE p(z|c) (cond. dropout 0.2; guidance 3)"]
    assert plain["control"] != guided["control"]  # the same model, sampled two ways
    run = tmp_path / "runs" / "cvae-cond-cd20-n300-seed0"
    assert sorted(p.name for p in tmp_path.joinpath("runs").iterdir()) == [run.name]
    assert (run / "result.json").exists() and (run / "result-guidance3.json").exists()
    assert json.loads((run / "config.json").read_text())["model"]["condition_dropout"] == 0.2


def test_the_free_bits_row_trains_with_its_floor_and_reports_the_latent_code(tmp_path):
    argv = ["--tiny", "--variants", "CVAE p(z|c) (free bits 0.25)", "--results-dir", str(tmp_path)]
    out = _load().main(argv)
    row = out["models"]["CVAE p(z|c) (free bits 0.25)"]
    run = tmp_path / "runs" / "cvae-cond-fb25-n300-seed0"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["free_bits"] == 0.25 and cfg["model"]["prior"] == "conditional"
    assert "free_bits" not in cfg["model"]  # a training option, not the model's
    lat = row["latent"]  # KL per molecule and active coordinates of the tiny model (4 of them)
    assert lat["kl"] >= 0 and 0 <= lat["active"] <= lat["of"] == 4
    md = (tmp_path / "molecules.tiny.md").read_text()
    assert f"{lat['kl']:.3f} | {lat['active']}/4 |" in md
    # a cached row evaluated before the KL was measured gets it when it is read again
    saved = json.loads((run / "result.json").read_text())
    del saved["metrics"]["latent"]
    (run / "result.json").write_text(json.dumps(saved))
    again = _load().main(argv)
    assert again["models"]["CVAE p(z|c) (free bits 0.25)"]["latent"] == lat
    assert "latent" in json.loads((run / "result.json").read_text())["metrics"]


def test_an_unknown_row_is_refused_naming_the_choices():
    with pytest.raises(SystemExit, match=r"unknown rows \['GAN'\]; choose from"):
        _load().main(["--tiny", "--variants", "GAN"])


def test_every_flag_has_help():
    parser = _load().build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest


def test_a_run_folder_of_other_settings_is_refused_by_flag(tmp_path):
    """A finished tiny run's folders, then other settings into the same --runs-dir: a clear
    error naming the changed setting and the flag to change, and the run folder untouched."""
    runs = tmp_path / "runs"
    _load().main(["--tiny", "--variants", "CVAE", "--results-dir", str(tmp_path),
                  "--runs-dir", str(runs)])  # fmt: skip
    before = sorted(p.name for p in (runs / "cvae-n300-seed0").iterdir())
    with pytest.raises(SystemExit, match=r"(?s)batch_size: 128 -> 64.*pass another --runs-dir"):
        _load().main(["--tiny", "--variants", "CVAE", "--batch-size", "64",
                      "--results-dir", str(tmp_path / "other"), "--runs-dir", str(runs)])  # fmt: skip
    assert sorted(p.name for p in (runs / "cvae-n300-seed0").iterdir()) == before
