"""pyro_cvae.runs.finish_run: one function finishes every run folder (issue 28, item 3)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

import pyro_cvae as pc
from pyro_cvae.checkpoint import load_checkpoint
from pyro_cvae.data import read_table
from pyro_cvae.train import load_schema

FILES = ("model.pt", "model.safetensors")


def _safetensors_metadata(out) -> dict:
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        return f.metadata()


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "attributes"
    data = pc.load_dataset("colored-digits", binarize="none", train_size=60)
    model = pc.CVAE(pc.ModelConfig.for_data(data, latent_dim=3, hidden_dims=(16,)))
    history = pc.fit(model, data, epochs=1, batch_size=30, out=out, progress=False)
    done = pc.finish_run(out, model, data, history, eval_samples=0)
    return out, model, data, done


def test_an_attribute_run_holds_every_file_and_loads_back(attribute_run):
    out, model, data, done = attribute_run
    for name in (*FILES, "attributes.json", "config.json", "metrics.csv"):
        assert (out / name).is_file(), name
    assert not (out / "metrics.json").exists() and done.metrics is None  # eval_samples=0
    figures = [p.name for p in done.figures]
    assert figures == ["samples.png", "reconstructions.png", "latent.png", "curves.png"]
    assert set(done.files) == {out / n for n in ("attributes.json", *FILES, *figures)}
    for path in (out, out / "model.pt", out / "model.safetensors"):
        again = pc.load(path)
        assert again.config == model.config and _same_weights(again, model)
    assert load_schema(out).to_dict() == data.schema.to_dict()
    payload = load_checkpoint(out / "model.pt")
    assert payload["attributes"] == data.schema.to_dict()
    assert payload["data"] == {"name": data.name, "binarize": "none"}


def test_the_safetensors_metadata_carries_the_attribute_schema(attribute_run):
    out, model, data, _ = attribute_run
    meta = _safetensors_metadata(out)
    assert json.loads(meta["attributes"]) == data.schema.to_dict()
    assert pc.ModelConfig.from_dict(json.loads(meta["model_config"])) == model.config
    assert "table" not in meta


def test_a_table_run_stores_its_columns(tmp_path):
    rng = np.random.default_rng(0)
    n = 90
    path = tmp_path / "people.csv"
    pd.DataFrame({"height": rng.normal(170, 10, n), "smoker": rng.choice(["yes", "no"], n),
                  "city": rng.choice(["a", "b", "c"], n)}).to_csv(path, index=False)  # fmt: skip
    data = pc.load_dataset(path)
    model = pc.CVAE(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(8,)))
    out = tmp_path / "run"
    history = pc.fit(model, data, epochs=1, batch_size=30, out=out, progress=False)
    assert read_table(out).to_dict() == data.table.to_dict()  # fit wrote it with config.json
    (out / "table.json").unlink()
    done = pc.finish_run(out, model, data, history, eval_samples=0, figures=False)
    assert done.figures == [] and not (out / "curves.png").exists()
    assert set(done.files) == {out / n for n in ("table.json", *FILES)}
    assert read_table(out).to_dict() == data.table.to_dict()
    assert json.loads(_safetensors_metadata(out)["table"]) == data.table.to_dict()
    assert "attributes" not in _safetensors_metadata(out)  # a table without conditions
    again = pc.load(out / "model.safetensors")
    assert again.config == model.config and _same_weights(again, model)


def test_metrics_of_a_label_model(tmp_path, digits):
    data = digits.subset(100)
    model = pc.CVAE(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(16,)))
    out = tmp_path / "run"
    history = pc.fit(model, data, epochs=1, batch_size=50, out=out, progress=False)
    done = pc.finish_run(out, model, data, history, eval_samples=3)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == done.metrics and out / "metrics.json" in done.files
    assert saved["nll"] > 0 and "control_score" in saved and "diversity" in saved
    assert saved["train_seconds"] == pytest.approx(sum(r["seconds"] for r in history.rows))
    assert "attributes" not in _safetensors_metadata(out)  # labels need no schema
    assert not (out / "attributes.json").exists()


def test_semi_supervised_metrics_name_the_recorded_objective(tmp_path, digits):
    data = digits.subset(100)
    model = pc.M2(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(16,)))
    out = tmp_path / "run"
    config = pc.SemiSupervisedConfig(epochs=1, num_labels=20, objective="iwae", particles=2)
    history = pc.fit(model, data, config, out=out, progress=False)
    done = pc.finish_run(out, model, data, history, eval_samples=1, figures=False)  # no config
    assert done.metrics["objective"] == "iwae" and done.metrics["particles"] == 2
    assert "test_accuracy" in done.metrics
    assert type(pc.load(out)) is pc.M2


def test_a_negative_eval_samples_is_refused(tmp_path, digits):
    model = pc.CVAE(pc.ModelConfig.for_data(digits))
    with pytest.raises(ValueError, match="eval_samples must be an integer >= 0"):
        pc.finish_run(tmp_path, model, digits, eval_samples=-1)
    assert not (tmp_path / "model.pt").exists()
