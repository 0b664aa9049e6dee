"""RunFolder: what fit writes into a run folder (config.json with the first checkpoint) and what a
reader of the run gets back from it (settings, data spec, the data itself, schema, files)."""

import json

import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.checkpoint import CheckpointError, list_checkpoints
from pyro_cvae.data import COLORED_DIGITS_SCHEMA
from pyro_cvae.train import RunFolder, load_run_data, load_schema, run_binarizes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    data = pc.load_dataset("digits", binarize="fixed", train_size=100, seed=3)
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=3, hidden_dims=(16,))
    pc.fit(model, data, epochs=2, batch_size=50, progress=False, out=out, keep_checkpoints=5)
    return out, data


def test_a_run_folder_reads_back_what_fit_wrote(run):
    out, data = run
    folder = RunFolder.of(list_checkpoints(out)[-1])  # a file in the folder names the folder
    assert folder.path == out and repr(folder) == f"RunFolder({str(out)!r})"
    assert folder.config() == json.loads((out / "config.json").read_text())
    assert folder.config()["model_class"] == "CVAE"
    assert folder.config()["train"]["epochs"] == 2
    assert folder.data_spec["name"] == "digits" and folder.data_spec["binarize_seed"] == 3
    assert folder.binarizes and run_binarizes(out)
    assert folder.checkpoints == list_checkpoints(out) and len(folder.checkpoints) == 2
    assert folder.metrics_path.read_text().count("\n") == 3  # header and two epochs
    assert folder.schema_path == out / "attributes.json" and folder.table_path == out / "table.json"
    assert folder.table() is None
    again = folder.load_data()  # the same images, the fixed binarisation drawn again
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)
    assert torch.equal(load_run_data(out).train.x, data.train.x)


def test_a_folder_without_config_json_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json; was it written by"):
        RunFolder(tmp_path).config()
    with pytest.raises(CheckpointError, match="does not exist"):
        RunFolder.of(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no attributes.json, which names"):
        load_schema(tmp_path)


def test_the_schema_comes_from_the_folder_or_its_built_in_data_set(run, tmp_path):
    out, _ = run
    with pytest.raises(ValueError, match="data set 'digits' has no known attribute schema"):
        RunFolder(out).schema()
    spec = {"data": {"name": "colored-digits", "binarize": "none"}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert RunFolder(tmp_path).schema() == COLORED_DIGITS_SCHEMA
    assert not RunFolder(tmp_path).binarizes
