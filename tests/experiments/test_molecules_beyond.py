"""experiments/molecules_beyond.py: requests beyond the training range, at its tiny budget."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("selfies")
if importlib.util.find_spec("moses") is None:
    pytest.skip("molsets is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "exp_molecules_beyond", ROOT / "experiments" / "molecules_beyond.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ladder_of_targets_by_hand():
    beyond = _load()
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan])  # sd = sqrt(2)
    t = beyond.targets(values)
    sd = np.sqrt(2.0)
    assert t["median"] == 2.0 and t["min"] == 0.0 and t["max"] == 4.0
    assert t["p99"] == pytest.approx(3.96)
    assert t["max + 1 sd"] == pytest.approx(4 + sd, abs=1e-3)
    assert t["min - 2 sd"] == pytest.approx(-2 * sd, abs=1e-3)


def test_measure_counts_requests_met_beyond_the_range():
    beyond = _load()
    rows = [{"valid": True, "logp": 5.0}, {"valid": True, "logp": 3.0},
            {"valid": False, "logp": float("nan")}, {"valid": True, "logp": -1.0}]  # fmt: skip
    high = beyond.measure(rows, "logp", "high", 0.0, 4.0)
    # one request of four is met above the range; the invalid one counts as a request
    assert high == {"valid": 0.75, "achieved_mean": pytest.approx(7 / 3), "beyond_share": 0.25,
                    "extreme": 5.0}  # fmt: skip
    assert beyond.measure(rows, "logp", "low", 0.0, 4.0)["extreme"] == -1.0
    assert beyond.measure(rows, "logp", None, 0.0, 4.0)["beyond_share"] == 0.5


def test_tiny_run_asks_beyond_the_range(tmp_path):
    out = _load().main(["--tiny", "--results-dir", str(tmp_path)])
    assert set(out["ranges"]) == {"logp", "mw", "tpsa"}
    # every property x target x guidance once
    assert len(out["rows"]) == 3 * 8 * 2
    for rng in out["ranges"].values():
        t = rng["targets"]
        assert t["min - 2 sd"] < t["min - 1 sd"] < t["min"] <= t["median"] <= t["max"]
        assert t["max"] < t["max + 1 sd"] < t["max + 2 sd"]
        assert t["min"] == pytest.approx(rng["min"], abs=1e-3)
    for r in out["rows"]:
        assert 0 <= r["valid"] <= 1 and 0 <= r["beyond_share"] <= r["valid"]
    saved = json.loads((tmp_path / "beyond.tiny.json").read_text())
    assert saved["rows"] == out["rows"]
    md = (tmp_path / "beyond.tiny.md").read_text()
    assert md.count("| logp |") == 16 and "Beyond the range, best of each property" in md
    assert (tmp_path / out["picture"]).stat().st_size > 0


def test_guidance_needs_a_model_trained_with_condition_dropout(tmp_path):
    import pyro_cvae as pc
    from pyro_cvae.models import MoleculeConfig, MoleculeCVAE

    data = pc.load_dataset("moses", train_size=300)
    run = tmp_path / "plain"
    cfg = MoleculeConfig.for_data(data, latent_dim=4, hidden_dim=16)
    pc.fit(MoleculeCVAE(cfg), data, epochs=1, batch_size=64, out=run, progress=False)
    with pytest.raises(SystemExit, match="trained without condition dropout"):
        _load().main(["--run", str(run), "--train-size", "300", "--guidance", "0,3",
                      "--results-dir", str(tmp_path / "r")])  # fmt: skip
    with pytest.raises(SystemExit, match="no such run folder"):
        _load().main(["--run", str(tmp_path / "nothing"), "--train-size", "300"])
    assert not (tmp_path / "r").exists()  # nothing written on a refusal
