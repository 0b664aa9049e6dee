"""Smoke test of experiments/semi_supervised.py with its tiny budget."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "semi_supervised.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load():
    spec = importlib.util.spec_from_file_location("semi_supervised_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load().main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--labels", "--iwae-labels", "--deadline", "--tiny", "--class-weight"):
        assert flag in text


def test_tiny_run_writes_every_result(tmp_path):
    results = _load().main(
        ["--tiny", "--quiet", "--out", str(tmp_path / "res"), "--run-dir", str(tmp_path / "runs")]
    )
    out = tmp_path / "res"
    for name in ("semi_supervised.md", "semi_supervised.json", "semi_supervised_error.png",
                 "semi_supervised_analogies.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "semi_supervised.json").read_text())
    assert saved["finished"] is not None
    methods = sorted(r["method"] for r in saved["rows"])
    assert methods == ["IW-M2 (K=2)", "M2", "supervised"]
    m2 = next(r for r in saved["rows"] if r["method"] == "M2")
    assert m2["epochs"] == 2 and len(m2["curve"]) == 2
    assert 0 <= m2["test_error"] <= 100 and 0 <= m2["generative_error"] <= 100
    assert saved["timing"]["ratio"] > 0
    assert results["rows"] == saved["rows"]
    table = (out / "semi_supervised.md").read_text()
    assert "| 50 | M2 | 2 |" in table and "epochs" in table
    (out / "semi_supervised.md").unlink()
    module = _load()
    again = module.main(["--render-only", "--out", str(out)])
    assert again["rows"] == saved["rows"]
    assert (out / "semi_supervised.md").read_text() == table
    # more epochs continue each run from its checkpoint instead of starting it again
    more = _load().main(
        [
            "--tiny",
            "--quiet",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--run-dir",
            str(tmp_path / "runs"),
        ]
    )
    m2_more = next(r for r in more["rows"] if r["method"] == "M2")
    assert m2_more["epochs"] == 3 and m2_more["curve"][:2] == m2["curve"]


def test_deadline_in_the_past_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has passed"):
        _load()._deadline("00:00")


# ------------------------------------------------------------------ semi_beyond_m2.py (issue 29)

BEYOND = SCRIPT.parent / "semi_beyond_m2.py"


def _load_beyond():
    spec = importlib.util.spec_from_file_location("semi_beyond_m2_experiment", BEYOND)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_beyond_m2_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_beyond().main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--methods", "--particles", "--aux-dim", "--m1-latent-dim", "--tiny",
                 "--render-only", "--max-minutes", "--m1-draws", "--m1-units", "--adam-beta1",
                 "--activation"):  # fmt: skip
        assert flag in text


def test_beyond_m2_tiny_run_rows_budget_and_resume(tmp_path):
    out, runs = tmp_path / "res", tmp_path / "runs"
    common = ["--tiny", "--quiet", "--out", str(out), "--run-dir", str(runs)]
    results = _load_beyond().main(common)
    for name in ("semi_beyond_m2.md", "semi_beyond_m2.json", "semi_beyond_m2_error.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "semi_beyond_m2.json").read_text())
    assert saved == results and saved["budget"]["max_epochs"] == 2
    methods = [r["method"] for r in saved["rows"]]
    assert methods == ["M2", "IW-M2 (K=2)", "M1+M2", "ADGM", "SDGM"]
    assert saved["command"].endswith("--methods m2,iw-m2,m1m2,adgm,sdgm")  # the file's rows
    for r in saved["rows"]:
        assert r["epochs"] == 2 and r["final"] and len(r["curve"]) == 2
        assert 0 <= r["test_error"] <= 100
    table = (out / "semi_beyond_m2.md").read_text()
    assert "| ADGM | 2 |" in table and "final" in table and "400 training images" in table
    (out / "semi_beyond_m2.md").unlink()
    again = _load_beyond().main(["--render-only", "--out", str(out)])
    assert again["rows"] == saved["rows"] and (out / "semi_beyond_m2.md").read_text() == table
    # a larger budget continues every row from its checkpoint; a stop leaves rows unfinished
    partial = _load_beyond().main(common + ["--epochs", "3", "--methods", "adgm,m1m2",
                                            "--max-minutes", "0"])  # fmt: skip
    assert partial["rows"] == []  # stopped before the first call: nothing trained
    more = _load_beyond().main(common + ["--epochs", "3", "--methods", "adgm,m1m2"])
    by_method = {r["method"]: r for r in more["rows"]}
    old = {r["method"]: r for r in saved["rows"]}
    # the command recorded names the flags and the rows of the file, --methods once
    assert more["command"].count("--methods") == 1 and "--epochs 3" in more["command"]
    assert more["command"].endswith("--methods adgm,m1m2")
    for name in ("ADGM", "M1+M2"):
        assert by_method[name]["epochs"] == 3 and by_method[name]["final"]
        assert by_method[name]["curve"][:2] == old[name]["curve"]


def test_beyond_m2_states_what_m1m2s_m2_trains_on(tmp_path):
    out, runs = tmp_path / "res", tmp_path / "runs"
    common = ["--tiny", "--quiet", "--methods", "m1m2", "--epochs", "1", "--run-dir", str(runs)]
    fresh = _load_beyond().main(common + ["--out", str(out / "fresh")])
    once = _load_beyond().main(common + ["--out", str(out / "once"), "--m1-draws", "once",
                                         "--run-dir", str(tmp_path / "runs_once")])  # fmt: skip
    assert "m1_draws" not in fresh["budget"] and once["budget"]["m1_draws"] == "once"
    assert "--m1-draws once" in once["command"]
    text = (out / "fresh" / "semi_beyond_m2.md").read_text()
    assert "trained on a fresh draw z1 ~ q(z1 | x) per batch at every unit of z1" in text
    assert fresh["budget"]["m1_units"] == "all"  # --tiny's M1 has too few active units
    text = (out / "once" / "semi_beyond_m2.md").read_text()
    assert "trained on one draw z1 ~ q(z1 | x) per image" in text
    assert fresh["rows"][0]["curve"] != once["rows"][0]["curve"]


def test_beyond_m2_table_shows_the_papers_number_for_its_labels(tmp_path):
    module = _load_beyond()
    budget = {"dataset": "mnist", "train_images": 50000, "test_images": 10000, "labels": 1000,
              "hidden": [500], "latent_dim": 50, "aux_dim": 100, "m1_latent_dim": 50,
              "m1_epochs": 100, "lr": 1e-3, "batch_size": 100, "max_epochs": 100,
              "particles": 5, "class_weight": "0.1 N"}  # fmt: skip
    row = {"method": "M1+M2", "key": "m1m2", "epochs": 100, "final": True, "test_error": 3.71,
           "val_error": 3.6, "train_seconds": 10.0, "seed": 0, "curve": [5.0, 3.71]}  # fmt: skip
    results = {"command": "c", "updated": "now", "budget": budget, "rows": [row]}
    module.write_results(results, tmp_path / "a")
    text = (tmp_path / "a" / "semi_beyond_m2.md").read_text()
    assert "| M1+M2 | 100 | 3.71 | 3.60 | 10 | 2.40 | 0 | final |" in text  # Kingma's 1000
    assert "M1's z1 50" in text
    adgm = {**row, "method": "ADGM", "key": "adgm"}  # no paper number at 1000 labels
    module.write_results({**results, "rows": [adgm]}, tmp_path / "b")
    text = (tmp_path / "b" / "semi_beyond_m2.md").read_text()
    assert "| ADGM | 100 | 3.71 | 3.60 | 10 | - | 0 | final |" in text
    assert "M1's z1" not in text  # M1+M2's settings only where it has a row


def test_beyond_m2_records_the_optimiser_and_activation_it_ran(tmp_path):
    # Pyro's SS-VAE tutorial recipe: softplus units, Adam beta1 0.95, a per-label class weight
    out, runs = tmp_path / "res", tmp_path / "runs"
    common = ["--tiny", "--quiet", "--methods", "m2", "--epochs", "1", "--class-weight", "46"]
    plain = _load_beyond().main(common + ["--out", str(out / "plain"), "--run-dir", str(runs)])
    recipe = _load_beyond().main(common + ["--out", str(out / "recipe"), "--adam-beta1", "0.95",
                                           "--activation", "softplus",
                                           "--run-dir", str(tmp_path / "runs_recipe")])  # fmt: skip
    # defaults leave the budget as files written before the flags had it, so their rows stay
    assert "adam_beta1" not in plain["budget"] and "activation" not in plain["budget"]
    assert recipe["budget"]["adam_beta1"] == 0.95
    assert recipe["budget"]["activation"] == "softplus"
    text = (out / "recipe" / "semi_beyond_m2.md").read_text()
    assert "hidden [16] (softplus)" in text and "(beta1 0.95)" in text
    assert "hidden [16] (relu)" in (out / "plain" / "semi_beyond_m2.md").read_text()
    assert plain["rows"][0]["curve"] != recipe["rows"][0]["curve"]
    config = json.loads((tmp_path / "runs_recipe" / "digits-m2-50-seed0" / "config.json")
                        .read_text())  # fmt: skip
    assert config["train"]["adam_beta1"] == 0.95
    assert config["model"]["activation"] == "softplus"


@pytest.mark.parametrize("value", ["1", "-0.5", "x"])
def test_beyond_m2_refuses_a_beta1_outside_the_unit_interval(capsys, value):
    with pytest.raises(SystemExit):
        _load_beyond().main(["--adam-beta1", value])
    assert "argument --adam-beta1: expected a number in [0, 1)" in capsys.readouterr().err


def test_beyond_m2_compares_iw_m2_with_m2_at_the_same_epoch():
    module = _load_beyond()
    m2 = {"final": True, "curve": [30.0, 20.0, 12.0, 11.0]}
    iw = {"final": False, "particles": 5, "curve": [25.0, 10.0]}  # still training at epoch 2
    text = module._iw_against_m2(iw, m2, 10000)
    assert "at epoch 2 (a row still training): 10.00% against 20.00%, at or below M2" in text
    assert "mean test error of epochs 1 to 2: 17.50% against 25.00%" in text
    done = module._iw_against_m2({**iw, "final": True, "curve": [25.0, 20.0, 15.0, 11.5]}, m2, 100)
    assert "at epoch 4: 11.50% against 11.00%, above M2" in done and "still" not in done
    assert "epochs 1 to 4: 17.88% against 18.25% (one test image is 1.00%)" in done


def test_beyond_m2_refuses_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        _load_beyond().main(["--methods", "m3"])
    assert "unknown method(s) ['m3']" in capsys.readouterr().err
