"""Streamed data (pyro_cvae.data.stream): the same splits, batches and training as in memory, on
an image folder, an attribute folder and a CSV / Parquet table; exact resume mid-epoch; any number
of workers; clear refusals."""

import numpy as np
import pyro
import pytest
import torch

import pyro_cvae as pc
from pyro_cvae.cli import main
from pyro_cvae.data import StreamDataset, StreamedDataError, StreamSplit
from pyro_cvae.data.stream import ImageItems
from pyro_cvae.train import load_run_data
from tests.data import builders
from tests.data.builders import people

TINY = ["--epochs", "1", "--batch-size", "8", "--hidden", "8", "--latent-dim", "2", "--quiet",
        "--eval-samples", "0"]  # fmt: skip


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of 6x6 grey PNGs, 25 each."""
    return builders.image_folder(tmp_path / "pets", per_class=25, seed_step=100)


@pytest.fixture
def attribute_folder(tmp_path):
    """30 RGB PNGs and an attribute CSV (file, smiling -1/1, hair, age)."""
    return builders.attribute_folder(tmp_path / "faces", n=30, suffix=".png")


@pytest.fixture(params=["csv", "parquet"])
def table(tmp_path, request):
    path = tmp_path / f"people.{request.param}"
    frame = people(150)
    frame.to_csv(path, index=False) if request.param == "csv" else frame.to_parquet(path)
    return path


def _same_splits(a, b):
    assert isinstance(b, StreamDataset) and isinstance(b.train, StreamSplit)
    assert b.image_shape == a.image_shape and b.num_classes == a.num_classes
    assert b.class_names == a.class_names and b.binarize == a.binarize
    assert torch.equal(a.train.y, b.train.y) and len(a.train) == len(b.train)
    assert torch.equal(a.train.x, b.train.materialize().x)  # the same items, in the same order
    for name in ("val", "test"):
        assert torch.equal(getattr(a, name).x, getattr(b, name).x)
        assert torch.equal(getattr(a, name).y, getattr(b, name).y)


def _train(data, epochs=2, **kw):
    pyro.set_rng_seed(0)
    model = pc.CVAE(pc.ModelConfig.for_data(data, hidden_dims=(8,), latent_dim=2))
    history = pc.fit(model, data, pc.TrainConfig(epochs=epochs, batch_size=8), progress=False,
                     **kw)  # fmt: skip
    return history, model.state_dict()


def _same_training(one, two):
    (h1, w1), (h2, w2) = one, two
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in h1.rows] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in h2.rows
    ]
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)


# ------------------------------------------------------------------ same splits, same training


def test_an_image_folder_streams_the_splits_and_training_of_memory(image_folder):
    memory = pc.load_dataset(image_folder)
    streamed = pc.load_dataset(image_folder, stream=True)
    assert memory.binarize == streamed.binarize == "dynamic"
    _same_splits(memory, streamed)
    assert streamed.meta["stream"] and streamed.meta["split_seed"] == 0
    _same_training(_train(memory), _train(streamed))


def test_an_attribute_folder_streams_the_same_splits(attribute_folder):
    memory = pc.load_dataset(attribute_folder, seed=3)
    streamed = pc.load_dataset(attribute_folder, seed=3, stream=True)
    assert (
        streamed.schema.to_dict() == memory.schema.to_dict() and streamed.condition == "attributes"
    )
    _same_splits(memory, streamed)
    _same_training(_train(memory, epochs=1), _train(streamed, epochs=1))


def test_a_table_streams_the_schema_splits_and_training_of_memory(table):
    memory = pc.load_dataset(table, condition="income", seed=1)
    streamed = pc.load_dataset(table, condition="income", seed=1, stream=True)
    assert streamed.table == memory.table and streamed.schema.to_dict() == memory.schema.to_dict()
    _same_splits(memory, streamed)
    _same_training(_train(memory), _train(streamed))
    again = pc.load_dataset(table, condition="income", seed=1, stream=True)  # from the cache
    assert again.meta["stream_fingerprint"] == streamed.meta["stream_fingerprint"]
    assert torch.equal(again.test.x, memory.test.x)


def test_a_table_without_condition_columns_streams(table):
    memory, streamed = pc.load_dataset(table), pc.load_dataset(table, stream=True)
    assert streamed.table == memory.table
    _same_splits(memory, streamed)


def test_another_seed_gives_another_split_in_both(image_folder):
    a = pc.load_dataset(image_folder, seed=0, stream=True)
    b = pc.load_dataset(image_folder, seed=5, stream=True)
    assert not torch.equal(a.train.positions, b.train.positions)
    _same_splits(pc.load_dataset(image_folder, seed=5), b)


# ------------------------------------------------------------------ batches: workers, shards, start


def _batches(data, **kw):
    g = torch.Generator().manual_seed(11)
    torch.manual_seed(4)  # the dynamic binarisation's draws
    return list(data.batches("train", 7, shuffle=True, generator=g, **kw))


def _equal(b1, b2):
    assert len(b1) == len(b2)
    for (x1, y1), (x2, y2) in zip(b1, b2):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_two_workers_give_the_batches_of_none_and_of_memory(image_folder):
    memory = pc.load_dataset(image_folder)
    none = _batches(pc.load_dataset(image_folder, stream=True))
    two = _batches(pc.load_dataset(image_folder, stream=True, workers=2))
    _equal(none, two)
    _equal(none, _batches(memory))


def test_a_loader_moves_no_global_random_state(image_folder):
    streamed = pc.load_dataset(image_folder, stream=True, binarize="none", workers=1)
    torch.manual_seed(9)
    before = torch.get_rng_state()
    list(streamed.batches("train", 8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("rank", [0, 1])
def test_shards_are_the_shards_of_memory(image_folder, rank):
    memory, streamed = pc.load_dataset(image_folder), pc.load_dataset(image_folder, stream=True)
    _equal(_batches(streamed, shard=(rank, 2)), _batches(memory, shard=(rank, 2)))


def test_start_skips_batches_without_reading_them(image_folder, monkeypatch):
    memory, streamed = pc.load_dataset(image_folder), pc.load_dataset(image_folder, stream=True)
    read = []
    original = ImageItems.__getitems__
    monkeypatch.setattr(ImageItems, "__getitems__", lambda self, idx: read.extend(idx) or
                        original(self, idx))  # fmt: skip
    rest = _batches(streamed, start=3)
    assert len(read) == len(streamed.train) - 3 * 7  # the skipped items were never read
    _equal(rest, _batches(memory, start=3))


def test_fixed_binarisation_is_one_seeded_draw_per_item(image_folder):
    a = pc.load_dataset(image_folder, stream=True, binarize="fixed", seed=2)
    b = pc.load_dataset(image_folder, stream=True, binarize="fixed", seed=2, workers=2)
    xa, xb = a.train.materialize().x, b.train.materialize().x
    assert torch.equal(xa, xb) and set(xa.unique().tolist()) == {0.0, 1.0}
    assert a.meta["binarize_seed"] == 2
    # the same item draws the same pixels wherever it is read
    assert torch.equal(a.train.x[[5, 2]], xa[[5, 2]])


def test_subset_keeps_the_first_items(image_folder):
    memory = pc.load_dataset(image_folder, train_size=10)
    streamed = pc.load_dataset(image_folder, train_size=10, stream=True)
    assert len(streamed.train) == 10 and streamed.meta["train_size"] == 10
    _same_splits(memory, streamed)


# ------------------------------------------------------------------ resume


def test_resuming_mid_epoch_equals_the_uninterrupted_run(image_folder, tmp_path):
    whole = _train(pc.load_dataset(image_folder, stream=True, workers=1), out=tmp_path / "a")
    _train(pc.load_dataset(image_folder, stream=True), out=tmp_path / "b", stop_after_steps=7)
    rest = _train(pc.load_dataset(image_folder, stream=True, workers=1), out=tmp_path / "b",
                  resume=True)  # fmt: skip
    _same_training(whole, rest)
    _same_training(whole, _train(pc.load_dataset(image_folder)))  # and the in-memory run


# ------------------------------------------------------------------ the command line


def test_train_streams_a_folder_from_the_command_line(image_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--stream", "--workers", "1",
                 "--out", str(run), *TINY]) == 0  # fmt: skip
    assert load_run_data(run).meta["path"] == str(image_folder.resolve())
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", *TINY[2:]]) == 0
    assert main(["sample", "--run", str(run), "--label", "1", "-n", "2"]) == 0


def test_train_streams_a_table_from_the_command_line(tmp_path):
    path = tmp_path / "people.csv"
    people(150).to_csv(path, index=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--condition", "income", "--stream",
                 "--out", str(run), *TINY]) == 0  # fmt: skip


# ------------------------------------------------------------------ refusals


def _refused(args, capsys) -> str:
    assert main(args) != 0
    return capsys.readouterr().err


def test_nothing_to_stream_in_a_built_in_data_set(capsys):
    with pytest.raises(ValueError, match="nothing to stream.*'digits'.*--data PATH"):
        pc.load_dataset("digits", stream=True)
    err = _refused(["train", "--dataset", "digits", "--stream", *TINY], capsys)
    assert "--stream with --dataset digits: nothing to stream" in err and "--data PATH" in err


def test_workers_without_stream_are_refused(image_folder, capsys):
    with pytest.raises(ValueError, match="stream=True"):
        pc.load_dataset(image_folder, workers=2)
    err = _refused(["train", "--data", str(image_folder), "--workers", "2", *TINY], capsys)
    assert "add --stream" in err
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        pc.load_dataset(image_folder, stream=True, workers=-1)


def test_an_npz_is_not_streamed(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.random.default_rng(0).random((20, 3)))
    with pytest.raises(ValueError, match="read whole.*without stream=True"):
        pc.load_dataset(tmp_path / "v.npz", stream=True)


def test_semi_supervised_training_refuses_a_streamed_split(image_folder, capsys):
    args = ["train", "--data", str(image_folder), "--stream", "--semi-supervised", *TINY]
    assert "drop --stream" in _refused(args, capsys)
    streamed = pc.load_dataset(image_folder, stream=True)
    with pytest.raises(StreamedDataError, match="without stream=True"):
        streamed.train.x[torch.ones(len(streamed.train), dtype=torch.bool)]


def test_a_missing_cell_is_named_as_in_memory(tmp_path):
    frame = people(30).astype({"age": float})
    frame.loc[7, "height"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(pc.data.DataFileError) as memory:
        pc.load_dataset(path)
    with pytest.raises(pc.data.DataFileError) as streamed:
        pc.load_dataset(path, stream=True)
    assert str(streamed.value) == str(memory.value) and "row 8, column 'height'" in str(
        memory.value
    )
