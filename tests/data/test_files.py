"""The user's own data by path (pyro_cvae.data.files): every source loads, splits and fails clearly,
and trains through ``pyro-cvae train --data`` and samples back."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import pyro_cvae as pc
from pyro_cvae.cli import main
from pyro_cvae.data import FILE_SOURCES, DataFileError, detect_source
from pyro_cvae.models import default_likelihood
from pyro_cvae.train import load_run_data
from tests.data import builders
from tests.data.builders import people, write_png

TINY = ["--epochs", "1", "--batch-size", "8", "--hidden", "8", "--latent-dim", "2", "--quiet",
        "--eval-samples", "0"]  # fmt: skip


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of 6x6 grey PNGs, 10 each."""
    return builders.image_folder(tmp_path / "pets", per_class=10, seed_step=10)


@pytest.fixture
def attribute_folder(tmp_path):
    """12 RGB JPEGs and an attribute CSV (file, smiling -1/1, hair, age)."""
    return builders.attribute_folder(tmp_path / "faces", n=12, suffix=".jpg")


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "people.csv"
    people(60).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ detection and the registry


def test_detect_source_names_every_kind(image_folder, attribute_folder, table_csv, tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    people(60).to_parquet(tmp_path / "t.parquet")
    assert detect_source(image_folder) == "image-folder"
    assert detect_source(attribute_folder) == "image-attributes"
    assert detect_source(tmp_path / "a.npz") == "npz"
    assert detect_source(table_csv) == detect_source(tmp_path / "t.parquet") == "table"
    assert set(FILE_SOURCES) == {"image-folder", "image-attributes", "npz", "table"}
    with pytest.raises(DataFileError, match=r"notes\.txt.*unknown kind"):
        (tmp_path / "notes.txt").write_text("x")
        detect_source(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="neither a built-in .* nor an existing path"):
        pc.load_dataset(tmp_path / "missing.csv")


# ------------------------------------------------------------------ image folders


def test_image_folder_loads_grey_classes_with_stratified_seeded_splits(image_folder):
    d = pc.load_dataset(image_folder)
    assert d.image_shape == (1, 6, 6) and d.class_names == ("cat", "dog")
    assert d.binarize == "dynamic" and d.meta["source"] == "image-folder"
    assert len(d.train) + len(d.val) + len(d.test) == 20
    for split in (d.train, d.val, d.test):  # stratified: both classes everywhere
        assert set(split.y.tolist()) == {0, 1}
        assert 0 <= split.x.min() and split.x.max() <= 1
    again, other = pc.load_dataset(image_folder), pc.load_dataset(image_folder, seed=1)
    assert torch.equal(d.test.x, again.test.x)
    assert not torch.equal(d.test.x, other.test.x)
    expected = np.asarray(Image.open(image_folder / "cat" / "0.png"), dtype=np.float32) / 255
    all_x = torch.cat([d.train.x, d.val.x, d.test.x])
    assert any(torch.allclose(x[0], torch.from_numpy(expected)) for x in all_x)


def test_image_folder_mixed_grey_and_rgb_becomes_rgb_and_resizes(image_folder):
    write_png(image_folder / "dog" / "big.jpg", size=(9, 7), mode="RGB")
    with pytest.raises(DataFileError, match=r"different sizes.*big\.jpg is 9x7.*--image-size"):
        pc.load_dataset(image_folder)
    d = pc.load_dataset(image_folder, image_size=4)
    assert d.image_shape == (3, 4, 4)


def test_unreadable_image_is_named(image_folder):
    (image_folder / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataFileError, match=r"broken\.png: cannot read the image"):
        pc.load_dataset(image_folder)


def test_a_flat_folder_or_one_class_is_unlabelled_images(tmp_path):
    """Issue 25, item 19: a plain VAE on unlabelled images (no sub-folders, or one)."""
    (tmp_path / "one" / "only").mkdir(parents=True)
    (tmp_path / "flat").mkdir()
    for i in range(6):
        write_png(tmp_path / "one" / "only" / f"{i}.png", seed=i)
        write_png(tmp_path / "flat" / f"{i}.png", seed=i)
    for folder in ("one", "flat"):
        d = pc.load_dataset(tmp_path / folder)
        assert d.num_classes == 0 and d.class_names == () and d.image_shape == (1, 6, 6)
        assert len(d.train) + len(d.val) + len(d.test) == 6
        assert pc.ModelConfig.for_data(d).cond_width == 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="holds no image"):
        pc.load_dataset(tmp_path / "empty")


def test_cli_trains_a_plain_vae_on_a_flat_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    for i in range(6):
        write_png(tmp_path / "flat" / f"{i}.png", seed=i)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "flat"), "--unconditional", "--out", str(run),
                 *TINY]) == 0  # fmt: skip
    assert main(["sample", "--run", str(run), "-n", "2"]) == 0


# ------------------------------------------------------------------ images with attributes


def test_attribute_folder_gives_schema_conditions(attribute_folder):
    d = pc.load_dataset(attribute_folder)
    assert d.image_shape == (3, 6, 6) and d.condition == "attributes"
    assert d.schema.names == ["smiling", "hair", "age"]
    assert d.schema["smiling"].values == ("-1", "1")  # two values: categorical
    assert (d.schema["age"].low, d.schema["age"].high) == (20.0, 31.0)
    assert d.train.y.shape[1] == d.schema.width == 2 + 3 + 1
    assert d.binarize == "none"
    cfg = pc.ModelConfig.for_data(d)
    assert cfg.condition_dim == d.schema.width and cfg.num_classes == 0


def test_attribute_csv_errors_name_file_row_and_column(attribute_folder):
    csv = attribute_folder / "attributes.csv"
    frame = pd.read_csv(csv)
    frame.loc[3, "hair"] = None
    frame.to_csv(csv, index=False)
    with pytest.raises(
        DataFileError, match=r"attributes\.csv: row 4, column 'hair': missing value"
    ):
        pc.load_dataset(attribute_folder)
    frame.loc[3, "hair"] = "red"
    frame.loc[5, "file"] = "nowhere.jpg"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataFileError, match=r"row 6, column 'file': image 'nowhere\.jpg' is not"):
        pc.load_dataset(attribute_folder)
    frame.loc[5, "file"] = "im5.jpg"
    frame["age"] = frame["age"].astype(object)
    frame.loc[2, "age"] = "old"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataFileError, match=r"row 3, column 'age': 'old' is not a number"):
        pc.load_dataset(attribute_folder)


# ------------------------------------------------------------------ npz


def test_npz_images_with_labels_and_vectors_with_conditions(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", images=(rng.random((30, 5, 5)) * 255).astype(np.uint8),
             labels=np.array([3, 7, 9] * 10))  # fmt: skip
    d = pc.load_dataset(tmp_path / "img.npz")
    assert d.image_shape == (1, 5, 5) and d.class_names == ("3", "7", "9")
    assert d.train.x.max() <= 1 and set(d.test.y.tolist()) == {0, 1, 2}
    np.savez(tmp_path / "vec.npz", x=rng.normal(size=(30, 4)), conditions=rng.random((30, 2)))
    v = pc.load_dataset(tmp_path / "vec.npz")
    assert v.image_shape == (4,) and v.schema.names == ["c0", "c1"]
    # real vectors are standardised as table columns (issue 25, item 3): a learned scale each
    assert default_likelihood(v) == "table" and v.table.names == ["x0", "x1", "x2", "x3"]
    assert (
        v.train.x.mean(0).abs().max() < 1e-5
        and (v.train.x.std(0, unbiased=False) - 1).abs().max() < 1e-4
    )
    assert 0 <= v.train.y.min() and v.train.y.max() <= 1  # encoded by the schema


def test_npz_errors(tmp_path):
    x = np.zeros((10, 3))
    x[4, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(DataFileError, match=r"nan\.npz: array 'x', row 5, column 3: missing"):
        pc.load_dataset(tmp_path / "nan.npz")
    np.savez(tmp_path / "nox.npz", foo=np.zeros((3, 2)))
    with pytest.raises(DataFileError, match="no array of data; name it one of x, images"):
        pc.load_dataset(tmp_path / "nox.npz")
    np.savez(tmp_path / "rows.npz", x=np.zeros((10, 3)), labels=np.zeros(9))
    with pytest.raises(DataFileError, match="'labels' has 9 rows, 'x' has 10"):
        pc.load_dataset(tmp_path / "rows.npz")


# ------------------------------------------------------------------ tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_columns_become_data_and_conditions(tmp_path, suffix):
    path = tmp_path / f"people{suffix}"
    frame = people(60)
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    d = pc.load_dataset(path, condition="income")
    assert d.table.names == ["age", "height", "smoker", "city"]
    assert d.table.layout == (("continuous", 1), ("continuous", 1), ("binary", 1),
                              ("categorical", 3))  # fmt: skip
    assert d.image_shape == (6,) and d.schema.names == ["income"]
    for split in (d.train, d.val, d.test):  # stratified on the one categorical condition
        assert split.y.shape[1] == 2 and set(split.y.argmax(1).tolist()) == {0, 1}
    cfg = pc.ModelConfig.for_data(d)
    assert cfg.likelihood == "table" and cfg.table_columns == d.table.layout
    assert pc.load_dataset(path).schema is None  # no condition: a VAE of the rows


def test_table_errors_name_file_row_and_column(tmp_path, table_csv):
    frame = pd.read_csv(table_csv)
    with pytest.raises(DataFileError, match=r"no column\(s\) \['wealth'\]"):
        pc.load_dataset(table_csv, condition="wealth")
    bad = frame.copy()
    bad["height"] = bad["height"].astype(object)
    bad.loc[7, "height"] = "tall"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        DataFileError, match=r"bad\.csv: row 8, column 'height': 'tall' is not a num"
    ):
        pc.load_dataset(tmp_path / "bad.csv")
    gap = frame.copy()
    gap.loc[2, "city"] = None
    gap.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataFileError, match=r"gap\.csv: row 3, column 'city': missing value"):
        pc.load_dataset(tmp_path / "gap.csv", condition="income")
    with pytest.raises(DataFileError, match="image_size"):
        pc.load_dataset(table_csv, image_size=8)


# ------------------------------------------------------------------ the command line


def test_image_folder_trains_through_cli_and_samples_back(image_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--image-size", "4", "--out", str(run),
                 *TINY]) == 0  # fmt: skip
    assert main(["sample", "--run", str(run), "--label", "1", "-n", "3",
                 "--out", str(tmp_path / "s.png"), "--npz", str(tmp_path / "s.npz")]) == 0  # fmt: skip
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (3, 1, 4, 4)
    again = load_run_data(run)
    assert again.image_shape == (1, 4, 4) and again.class_names == ("cat", "dog")


def test_attribute_folder_trains_through_cli_and_samples_back(attribute_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(attribute_folder), "--out", str(run), *TINY]) == 0
    assert main(["sample", "--run", str(run), "--condition", "smiling=1,hair=red,age=25",
                 "-n", "2", "--npz", str(tmp_path / "s.npz")]) == 0  # fmt: skip
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (2, 3, 6, 6)


def test_npz_trains_through_cli_and_samples_back(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", x=rng.normal(size=(40, 3)), labels=np.array([0, 1] * 20))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "v.npz"), "--out", str(run), *TINY]) == 0
    assert main(["sample", "--run", str(run), "-n", "4", "--out", str(tmp_path / "v.csv")]) == 0
    rows = pd.read_csv(tmp_path / "v.csv")
    assert list(rows.columns) == ["label", "x0", "x1", "x2"] and len(rows) == 8


def test_table_trains_through_cli_and_samples_rows_back(table_csv, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(table_csv), "--condition", "income", "--out", str(run),
                 *TINY]) == 0  # fmt: skip
    out = tmp_path / "rows.csv"
    assert main(["sample", "--run", str(run), "--condition", "income=high", "-n", "50",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["age", "height", "smoker", "city", "income"]
    assert len(rows) == 50 and set(rows["income"]) == {"high"}
    assert set(rows["smoker"]) <= {"yes", "no"} and set(rows["city"]) <= {"a", "b", "c"}
    assert rows["age"].dtype == np.int64 and rows["height"].dtype == np.float64
    assert main(["evaluate", "--run", str(run), "--num-samples", "5", "--quiet"]) == 0


def test_cli_refuses_dataset_and_data_together(table_csv, tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--data", str(table_csv),
                 "--out", str(tmp_path / "r"), *TINY]) != 0  # fmt: skip
    assert "either --dataset" in capsys.readouterr().err


# ------------------------------------------------------------------ issue 25: trusted own data


def test_npz_real_vectors_are_standardised_and_samples_follow_the_label(tmp_path):
    """Item 3: vectors outside [0, 1] are standardised with the training rows' statistics, the
    scale is learned, and samples come back in the data's units, their class means following
    the label."""
    rng = np.random.default_rng(0)
    centres = np.array([[-0.3, -0.3, -0.2, 0.0, 1.0], [5.0, -4.9, 10.0, 3.0, -2.0]])
    y = np.array([0, 1] * 100)
    np.savez(tmp_path / "v.npz", x=centres[y] + 0.3 * rng.normal(size=(200, 5)), labels=y)
    data = pc.load_dataset(tmp_path / "v.npz")
    train = data.train.x
    assert train.mean(0).abs().max() < 1e-5  # the training split's statistics
    torch.manual_seed(0)
    model = pc.CVAE(pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(32,)))
    pc.fit(model, data, epochs=15, batch_size=16, lr=3e-3, progress=False, pyro_validation=False)
    rows = pc.sample_rows(model, 200, table=data.table, labels=[0, 1])
    for label in (0, 1):
        mean = rows[rows["label"] == label][data.table.names].to_numpy().mean(0)
        assert np.abs(mean - centres[label]).max() < 1.0, (label, mean)


def test_table_standardisation_uses_the_training_rows_and_samples_stay_in_range(tmp_path):
    """Items 5 and 6: mean and std of the training split only; generated integer and
    non-negative columns clipped to the training range, recorded in the schema."""
    frame = pd.DataFrame({"age": np.arange(60) + 20, "children": np.arange(60) % 4,
                          "x": np.linspace(-1, 1, 60) ** 3})  # fmt: skip
    frame.to_csv(tmp_path / "t.csv", index=False)
    d = pc.load_dataset(tmp_path / "t.csv")
    parts = pc.data.files.split_indices(60, None, 0)
    age = d.table.columns[0]
    assert age.mean == pytest.approx(frame["age"].iloc[parts[0]].mean())
    assert age.mean != pytest.approx(frame["age"].mean())
    assert (age.low, age.high) == (frame["age"].iloc[parts[0]].min(),
                                   frame["age"].iloc[parts[0]].max())  # fmt: skip
    assert pc.data.TableSchema.from_dict(d.table.to_dict()) == d.table  # recorded in table.json
    rows = d.table.decode(torch.randn(500, d.table.width) * 10)
    assert rows["age"].between(age.low, age.high).all() and rows["age"].dtype == np.int64
    assert rows["children"].min() >= 0


def test_condition_columns_come_back_with_their_own_types(tmp_path):
    """Item 4: int and bool condition columns are ints and bools in generated rows."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(20, 60, 40), "smoker": rng.random(40) < 0.5,
                          "charges": rng.normal(100, 10, 40)})  # fmt: skip
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"t{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        d = pc.load_dataset(path, condition="age,smoker")
        model = pc.CVAE(pc.ModelConfig.for_data(d, latent_dim=2, hidden_dims=(8,)))
        rows = pc.sample_rows(model, 3, table=d.table, schema=d.schema,
                              conditions=[d.schema.parse("age=30,smoker=True")])  # fmt: skip
        assert rows["age"].tolist() == [30] * 3 and rows["smoker"].tolist() == [True] * 3
        assert rows["age"].dtype == np.int64 and rows["smoker"].dtype == bool


def test_attribute_csv_refuses_blank_and_repeated_file_names(attribute_folder):
    """Items 6 and 15: a file listed twice, or a blank name, names the rows."""
    csv = attribute_folder / "attributes.csv"
    frame = pd.read_csv(csv)
    frame.loc[3, "file"] = frame.loc[1, "file"]
    frame.to_csv(csv, index=False)
    with pytest.raises(DataFileError, match=r"rows 2 and 4, column 'file': image 'im1\.jpg' is "
                                            "listed twice"):  # fmt: skip
        pc.load_dataset(attribute_folder)
    frame.loc[3, "file"] = ""
    frame.to_csv(csv, index=False)
    with pytest.raises(DataFileError, match=r"row 4, column 'file': the image file name is empty"):
        pc.load_dataset(attribute_folder)


def test_header_without_rows_is_refused(attribute_folder, tmp_path):
    """Item 11: an attribute CSV, CSV or Parquet table with a header and no rows."""
    pd.DataFrame(columns=["file", "smiling"]).to_csv(attribute_folder / "attributes.csv",
                                                     index=False)  # fmt: skip
    with pytest.raises(DataFileError, match="has no rows"):
        pc.load_dataset(attribute_folder)
    empty = pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype=str)})
    empty.to_csv(tmp_path / "e.csv", index=False)
    empty.to_parquet(tmp_path / "e.parquet")
    for name in ("e.csv", "e.parquet"):
        with pytest.raises(DataFileError, match="has no rows"):
            pc.load_dataset(tmp_path / name, condition="b")
        with pytest.raises(DataFileError, match="has no rows"):
            pc.load_dataset(tmp_path / name)


def test_npz_float_labels_and_a_file_that_is_not_npz(tmp_path):
    """Items 12 and 13."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x=rng.random((30, 3)), y=rng.random(30))
    with pytest.raises(DataFileError, match="must be integer classes.*'conditions'"):
        pc.load_dataset(tmp_path / "f.npz")
    np.savez(tmp_path / "i.npz", x=rng.random((30, 3)), y=np.array([0.0, 1.0] * 15))
    assert pc.load_dataset(tmp_path / "i.npz").num_classes == 2  # whole numbers are classes
    (tmp_path / "bad.npz").write_text("a,b\n1,2\n")
    with pytest.raises(DataFileError, match=r"bad\.npz is not a valid \.npz"):
        pc.load_dataset(tmp_path / "bad.npz")


def test_a_condition_column_given_twice_is_refused(table_csv, capsys):
    """Item 14."""
    with pytest.raises(DataFileError, match=r"\['income'\] are given twice"):
        pc.load_dataset(table_csv, condition="income,income")
    assert main(["train", "--data", str(table_csv), "--condition", "income,income", *TINY]) == 2
    err = capsys.readouterr().err
    assert "given twice" in err and len(err.strip().splitlines()) == 1


def test_a_constant_column_is_named_plainly(tmp_path):
    """Item 26: the value is shown as 0.0, not np.float64(0.0)."""
    pd.DataFrame({"a": [0.0] * 10, "b": np.arange(10.0)}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataFileError, match=r"holds one value only \(0\.0\)"):
        pc.load_dataset(tmp_path / "c.csv")


def test_images_that_would_not_fit_in_memory_are_refused_before_loading(image_folder, capsys):
    """Item 10: the memory is estimated from the headers, before any image is decoded."""
    with pytest.raises(DataFileError, match=r"--image-size 100000.*need about .* GiB"):
        pc.load_dataset(image_folder, image_size=100000)
    assert main(["train", "--data", str(image_folder), "--image-size", "100000", *TINY]) == 2
    err = capsys.readouterr().err
    assert "GiB of memory" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A tiny table run conditioned on a text column, and an .npz vector run with conditions."""
    root = tmp_path_factory.mktemp("own")
    people(60).to_csv(root / "people.csv", index=False)
    assert main(["train", "--data", str(root / "people.csv"), "--condition", "income",
                 "--out", str(root / "table"), *TINY]) == 0  # fmt: skip
    rng = np.random.default_rng(0)
    np.savez(root / "c.npz", x=rng.normal(size=(30, 3)), conditions=rng.random((30, 2)))
    assert main(["train", "--data", str(root / "c.npz"), "--out", str(root / "vec"), *TINY]) == 0
    return root


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_reconstruct_on_rows_writes_a_csv(table_run):
    """Item 7: each row beside its reconstruction, in the table's columns."""
    for run, cols in (("table", ["age", "height", "smoker", "city"]), ("vec", ["x0", "x1", "x2"])):
        assert main(["reconstruct", "--run", str(table_run / run), "-n", "3"]) == 0
        rows = pd.read_csv(table_run / run / "reconstruction.csv")
        assert list(rows.columns) == ["row", "which", *cols] and len(rows) == 6
        assert rows["which"].tolist() == ["data", "reconstruction"] * 3


def test_sample_messages_on_row_runs(table_run, tmp_path, capsys):
    """Items 17, 18, 20, 23: an example for continuous conditions, a repeated key, a model file
    out of its folder, --npz on rows."""
    vec, table = str(table_run / "vec"), str(table_run / "table")
    assert main(["sample", "--run", vec]) == 2
    err = _one_line_error(capsys, "--condition c0=")
    assert "--condition \n" not in err
    assert main(["sample", "--run", table, "--condition", "income=high,income=low"]) == 2
    _one_line_error(capsys, "'income' twice")
    assert main(["sample", "--run", table, "--condition", "income=high", "--npz", "x.npz"]) == 2
    _one_line_error(capsys, "drop --npz")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "model.safetensors").write_bytes(
        (table_run / "table" / "model.safetensors").read_bytes()
    )
    assert main(["sample", "--run", str(tmp_path / "only" / "model.safetensors"),
                 "--condition", "income=high"]) == 2  # fmt: skip
    _one_line_error(capsys, "table.json", "beside the model file")


def test_table_likelihood_and_units(table_run, capsys):
    """Items 16 and 26: --likelihood bernoulli on a table names the table likelihood; tables
    are scored per row, without bits per dim."""
    assert main(["train", "--data", str(table_run / "people.csv"), "--likelihood", "bernoulli",
                 "--out", str(table_run / "bad"), *TINY]) == 2  # fmt: skip
    _one_line_error(capsys, "likelihood 'table'")
    assert not (table_run / "bad").exists()
    run = str(table_run / "table")
    assert main(["evaluate", "--run", run, "-k", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nats per row" in out and "bits_per_dim" not in out
    assert main(["score", "--run", run, "-k", "2", "--quiet"]) == 0
    assert " rows: mean" in capsys.readouterr().out


def test_sample_label_takes_class_names(image_folder, tmp_path, capsys):
    """Item 25: --label cat or 0; unknown ones listed; rows titled by name."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--label", "dog", "--label", "0", "-n", "2",
                 "--npz", str(tmp_path / "s")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 's.npz'}" in out  # item 23: the name numpy writes
    with np.load(tmp_path / "s.npz") as f:
        assert f["labels"].tolist() == [1, 1, 0, 0]
    assert main(["sample", "--run", str(run), "--label", "cow"]) == 2
    _one_line_error(capsys, "cat", "dog")
