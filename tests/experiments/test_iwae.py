"""Smoke tests of experiments/iwae_vs_elbo.py and experiments/gradient_snr.py (tiny budgets)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def iwae_vs_elbo():
    return _load("iwae_vs_elbo")


@pytest.fixture(scope="module")
def gradient_snr():
    return _load("gradient_snr")


@pytest.mark.parametrize("script", ["iwae_vs_elbo", "gradient_snr"])
def test_every_flag_has_help(script):
    parser = _load(script).build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 8
    for action in flags:
        assert action.help and len(action.help) > 10, action.option_strings


def test_iwae_vs_elbo_tiny_writes_results_and_resumes(iwae_vs_elbo, tmp_path):
    args = ["--tiny", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")]
    rows = iwae_vs_elbo.main(args)
    assert [(r["method"], r["k"]) for r in rows] == [
        ("iwae", 1), ("vae", 1), ("iwae", 5), ("vae", 5), ("iwae", 50), ("vae", 50),
    ]  # fmt: skip
    by = {(r["method"], r["k"]): r for r in rows}
    # k=1: the IWAE bound with one sample is the ELBO; same seed, same draws, same numbers
    assert by[("iwae", 1)]["nll"] == pytest.approx(by[("vae", 1)]["nll"], abs=1e-3)
    for r in rows:
        assert 0 < r["nll"] < 64 * 0.7  # below the 64 * log 2 nats of a coin per pixel
        assert r["nll"] <= -r["test_elbo"] + 0.5  # the k=50 estimate beats the ELBO
        assert len(r["curve"]) == 1 and 0 <= r["active_units"] <= 8
    res = tmp_path / "res"
    md = (res / "iwae_vs_elbo.md").read_text()
    assert "84.78" in md and "ReLU" in md and "1 epochs per row" in md
    assert "command: `python experiments/iwae_vs_elbo.py --tiny --runs-dir" in md
    raw = json.loads((res / "iwae_vs_elbo.json").read_text())
    assert raw["settings"]["epochs"] == 1 and len(raw["rows"]) == 6 and not raw["pending_rows"]
    assert len((res / "iwae_vs_elbo.csv").read_text().strip().splitlines()) == 1 + 6
    assert (res / "iwae_vs_elbo.png").stat().st_size > 1000

    # a second call with the same settings reads the finished rows instead of retraining
    again = iwae_vs_elbo.main(args)
    assert [r["nll"] for r in again] == [r["nll"] for r in rows]

    # more epochs: the row resumes from its checkpoint, keeping the first epoch's curve point
    more = iwae_vs_elbo.main(args + ["--epochs", "2", "--ks", "1", "--methods", "iwae"])
    assert len(more) == 1 and [p["epoch"] for p in more[0]["curve"]] == [1, 2]
    assert more[0]["curve"][0] == by[("iwae", 1)]["curve"][0]
    # and again from a checkpoint past the first epoch (fit refuses fewer epochs than trained)
    third = iwae_vs_elbo.main(args + ["--epochs", "3", "--ks", "1", "--methods", "iwae"])
    assert [p["epoch"] for p in third[0]["curve"]] == [1, 2, 3]
    assert third[0]["curve"][:2] == more[0]["curve"]


def test_iwae_vs_elbo_bad_flags(iwae_vs_elbo, tmp_path, capsys):
    for flag, value in (("--ks", "0,5"), ("--hidden", "a,b"), ("--latent-dims", "100,-50")):
        with pytest.raises(SystemExit):
            iwae_vs_elbo.main(["--tiny", flag, value, "--results-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert f"argument {flag}: expected" in err and repr(value) in err
        if flag != "--hidden":  # "a,b" is not integers; the others name the fix
            assert "expected positive integers, comma-separated (e.g. 1,5,50)" in err
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(SystemExit, match="unknown method 'wae'"):
        iwae_vs_elbo.main(["--tiny", "--methods", "wae", "--results-dir", str(tmp_path)])


def test_gradient_snr_bad_ks_are_refused_by_flag(gradient_snr, tmp_path, capsys):
    with pytest.raises(SystemExit):
        gradient_snr.main(["--tiny", "--ks", "1,five", "--results-dir", str(tmp_path)])
    assert "argument --ks: expected comma-separated integers" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_gradient_snr_tiny(gradient_snr, tmp_path):
    out = gradient_snr.main(["--tiny", "--results-dir", str(tmp_path)])
    rows = out["rows"]
    assert [(r["estimator"], r["K"]) for r in rows] == [
        ("iwae", 1), ("dreg", 1), ("iwae", 5), ("dreg", 5),
    ]  # fmt: skip
    for i in range(0, 4, 2):
        # the same draws: DReG's decoder gradient is IWAE's, so their SNRs agree exactly
        assert rows[i]["decoder_snr"] == pytest.approx(rows[i + 1]["decoder_snr"], rel=1e-5)
        assert rows[i]["encoder_snr"] != rows[i + 1]["encoder_snr"]
    assert (tmp_path / "gradient_snr.png").stat().st_size > 1000
    assert "| 5 |" in (tmp_path / "gradient_snr.md").read_text()
    assert json.loads((tmp_path / "gradient_snr.json").read_text())["settings"]["tiny"]


def test_gradient_snr_tiny_vamp_prior(gradient_snr, tmp_path):
    out = gradient_snr.main(["--tiny", "--prior", "vamp", "--results-dir", str(tmp_path)])
    by = {(r["estimator"], r["K"]): r for r in out["rows"]}
    assert out["settings"]["prior"] == "vamp" and out["settings"]["pseudo_inputs"] == 10
    for K in (1, 5):
        i, d = by[("iwae", K)], by[("dreg", K)]
        # the same latent samples: the prior's term is the same in both estimators, and
        # DReG's guide part has far less variance than IWAE's
        assert d["encoder_var_prior_term"] == pytest.approx(i["encoder_var_prior_term"], rel=1e-4)
        assert d["encoder_var_guide_part"] < 0.5 * i["encoder_var_guide_part"]
        assert -1 <= i["corr_guide_part_prior_term"] <= 1
    md = (tmp_path / "gradient_snr_vamp.md").read_text()
    assert "VampPrior (10 pseudo-inputs" in md and "| prior term |" in md
    assert (tmp_path / "gradient_snr_vamp.png").stat().st_size > 1000
    assert not (tmp_path / "gradient_snr.md").exists()


def test_snr_definition(gradient_snr):
    g = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])  # columns: SNR 2/sqrt(2), 0 spread
    assert gradient_snr.snr(g) == pytest.approx(2 / 2**0.5)


def test_render_only_lists_finished_and_unfinished_rows(iwae_vs_elbo, tmp_path):
    runs, res = str(tmp_path / "runs"), tmp_path / "res"
    iwae_vs_elbo.main(["--tiny", "--methods", "vae", "--ks", "1", "--runs-dir", runs,
                       "--results-dir", str(tmp_path / "first")])  # fmt: skip
    finished = json.loads(Path(runs, "vae_k1", "final.json").read_text())
    rows = iwae_vs_elbo.main(["--tiny", "--methods", "vae,iwae", "--ks", "1,5", "--runs-dir", runs,
                              "--results-dir", str(res), "--render-only"])  # fmt: skip
    assert [(r["method"], r["k"]) for r in rows] == [("vae", 1)]  # nothing else was trained
    assert rows[0]["nll"] == finished["nll"]
    assert not Path(runs, "iwae_k5").exists()
    md = (res / "iwae_vs_elbo.md").read_text()
    for row in ("IWAE k=1", "IWAE k=5", "VAE k=5"):
        assert f"| {row} | | not finished (not started) |" in md
    assert "Not final: 3 row(s), marked 'not finished' above." in md
    first = (tmp_path / "first" / "iwae_vs_elbo.md").read_text()
    assert "final (trained its 1 epochs, then evaluated). No row is still to do." in first
    assert "![test bound per epoch](iwae_vs_elbo.png)" in md
    # the file names the command that trains its rows, not the one that only redrew it
    assert "--render-only" not in md and "--methods vae,iwae --ks 1,5" in md
    # with a larger budget the finished row is a run still training, and says how far it is
    iwae_vs_elbo.main(["--tiny", "--epochs", "2", "--methods", "vae", "--ks", "1", "--runs-dir",
                       runs, "--results-dir", str(res), "--render-only"])  # fmt: skip
    md = (res / "iwae_vs_elbo.md").read_text()
    assert "| VAE k=1 | | not finished (still training: 1 of 2 epochs) |" in md
    assert json.loads((res / "iwae_vs_elbo.json").read_text())["pending_rows"][0] == {
        "row": "VAE k=1",
        "status": "still training: 1 of 2 epochs",
    }


def test_a_queue_of_calls_keeps_every_finished_row_in_the_table(iwae_vs_elbo, tmp_path):
    """make experiments-long runs the rows in several calls: each call's table keeps the rows
    the earlier calls finished (same settings) and lists started ones as still training."""
    runs, res = str(tmp_path / "runs"), tmp_path / "res"
    common = ["--tiny", "--runs-dir", runs, "--results-dir", str(res)]
    iwae_vs_elbo.main(common + ["--methods", "vae", "--ks", "1"])
    rows = iwae_vs_elbo.main(common + ["--methods", "iwae", "--ks", "5"])
    assert [(r["method"], r["k"]) for r in rows] == [("iwae", 5)]  # this call trained one row
    raw = json.loads((res / "iwae_vs_elbo.json").read_text())
    assert [(r["method"], r["k"]) for r in raw["rows"]] == [("vae", 1), ("iwae", 5)]
    md = (res / "iwae_vs_elbo.md").read_text()
    assert "| VAE | 1 |" in md and "| IWAE | 5 |" in md
    assert "not finished" not in md  # no other row was asked for or started
