"""One source of defaults (issue 28, item 1): ``pyro-cvae train`` and the API write the same run.

Each family is trained once through the command line with the fewest flags and once through
the API with the same explicit arguments and nothing else; their ``config.json`` files (model,
training and data settings) must be equal. A flag given on the command line still wins.
"""

import json

import numpy as np
import pandas as pd
import pyro
import pytest

import pyro_cvae as pc
from pyro_cvae.cli import build_parser, main
from pyro_cvae.data.molecules import moses_file
from pyro_cvae.models import MoleculeConfig, default_binarize

EPOCHS = ["--epochs", "1"]  # every other training setting: the library's default


def _config(out) -> dict:
    return json.loads((out / "config.json").read_text())


def _cli(out, *flags) -> dict:
    argv = ["train", *EPOCHS, "--eval-samples", "0", "--quiet", "--out", str(out), *flags]
    assert main(argv) == 0
    return _config(out)


def _api(out, model, data, config) -> dict:
    pyro.set_rng_seed(config.seed)
    history = pc.fit(model, data, config, out=out, progress=False)
    pc.finish_run(out, model, data, history, eval_samples=0, figures=False)
    return _config(out)


def _table_csv(path):
    rng = np.random.default_rng(0)
    n = 120
    pd.DataFrame({
        "age": rng.integers(20, 60, n), "height": rng.normal(170, 10, n),
        "smoker": rng.choice(["yes", "no"], n), "income": rng.choice(["low", "high"], n),
    }).to_csv(path, index=False)  # fmt: skip
    return path


def _cvae(tmp_path):
    data = pc.load_dataset("digits", train_size=60)
    model = pc.build_model(pc.ModelConfig.for_data(data))
    return ["--dataset", "digits", "--train-size", "60"], model, data, pc.TrainConfig(epochs=1)


def _hierarchical(tmp_path):
    data = pc.load_dataset("digits", train_size=60)
    model = pc.build_model(pc.ModelConfig.for_data(data, latent_dims=(6, 3)))
    assert isinstance(model, pc.HierarchicalCVAE)
    flags = ["--train-size", "60", "--latent-dims", "6,3"]
    return flags, model, data, pc.TrainConfig(epochs=1)


def _semi_supervised(tmp_path):
    # the issue's example: the CLI wrote lr 0.001 and batch_size 128, the API lr 3e-4 and 100
    data = pc.load_dataset("digits", train_size=200)
    model = pc.M2(pc.ModelConfig.for_data(data))
    flags = ["--train-size", "200", "--semi-supervised", "--labels", "50"]
    return flags, model, data, pc.SemiSupervisedConfig(epochs=1, num_labels=50)


def _label_fraction(tmp_path):
    data = pc.load_dataset("digits", train_size=200)
    model = pc.M2(pc.ModelConfig.for_data(data))
    flags = ["--train-size", "200", "--semi-supervised", "--label-fraction", "0.2"]
    config = pc.SemiSupervisedConfig(epochs=1, num_labels=None, label_fraction=0.2)
    return flags, model, data, config


def _attributes(tmp_path):
    data = pc.load_dataset(
        "colored-digits", train_size=60, binarize=default_binarize("colored-digits")
    )
    model = pc.build_model(pc.ModelConfig.for_data(data))
    assert model.config.condition_dim
    return (
        ["--dataset", "colored-digits", "--train-size", "60"],
        model,
        data,
        pc.TrainConfig(epochs=1),
    )


def _table(tmp_path):
    path = _table_csv(tmp_path / "people.csv")
    data = pc.load_dataset(path, condition="income")
    model = pc.build_model(pc.ModelConfig.for_data(data))
    assert model.config.likelihood == "table"
    flags = ["--data", str(path), "--condition", "income"]
    return flags, model, data, pc.TrainConfig(epochs=1)


def _molecules(tmp_path):
    try:
        moses_file("train")
    except FileNotFoundError:
        pytest.skip("molsets is not installed (pip install --no-deps molsets)")
    data = pc.load_dataset("moses", train_size=200)
    model = pc.build_model(MoleculeConfig.for_data(data, latent_dim=4, hidden_dim=16))
    flags = ["--dataset", "moses", "--train-size", "200", "--latent-dim", "4", "--hidden", "16"]
    return flags, model, data, pc.TrainConfig(epochs=1)


FAMILIES = {
    "cvae": _cvae,
    "hierarchical": _hierarchical,
    "semi-supervised": _semi_supervised,
    "label-fraction": _label_fraction,
    "attributes": _attributes,
    "table": _table,
    "molecules": _molecules,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cli_and_api_write_the_same_config(family, tmp_path):
    flags, model, data, config = FAMILIES[family](tmp_path)
    api = _api(tmp_path / "api", model, data, config)
    cli = _cli(tmp_path / "cli", *flags)
    assert cli["model_class"] == api["model_class"] == type(model).__name__
    for part in ("model", "train", "data"):
        assert cli[part] == api[part], part
    assert cli == api  # num_labelled and anything else the family records


def test_the_issue_example_trains_with_m2s_defaults(tmp_path):
    train = _cli(tmp_path / "m2", "--train-size", "200", "--semi-supervised", "--labels", "50")[
        "train"
    ]
    assert train["lr"] == pc.SemiSupervisedConfig.lr == 3e-4
    assert train["batch_size"] == pc.SemiSupervisedConfig.batch_size == 100
    assert train["num_labels"] == 50


def test_a_flag_given_explicitly_wins(tmp_path):
    flags = ["--train-size", "200", "--semi-supervised", "--labels", "50", "--lr", "0.002",
             "--batch-size", "64", "--seed", "3", "--hidden", "32", "--activation", "tanh",
             "--adam-beta1", "0.95"]  # fmt: skip
    cli = _cli(tmp_path / "cli", *flags)
    assert cli["train"]["lr"] == 0.002 and cli["train"]["batch_size"] == 64
    assert cli["train"]["adam_beta1"] == 0.95
    assert cli["train"]["seed"] == cli["train"]["label_seed"] == 3  # --seed draws the labels too
    assert cli["model"]["hidden_dims"] == [32] and cli["model"]["activation"] == "tanh"
    data = pc.load_dataset("digits", train_size=200, seed=3)
    model = pc.M2(pc.ModelConfig.for_data(data, hidden_dims=(32,), activation="tanh"))
    config = pc.SemiSupervisedConfig(epochs=1, num_labels=50, lr=0.002, batch_size=64, seed=3,
                                     label_seed=3, adam_beta1=0.95)  # fmt: skip
    assert _api(tmp_path / "api", model, data, config) == cli


def test_boolean_flags_given_win(tmp_path):
    cli = _cli(tmp_path / "cli", "--train-size", "60", "--batch-norm", "--no-lean",
               "--skip-nonfinite")  # fmt: skip
    assert cli["model"]["batch_norm"] is True
    assert cli["train"]["lean"] is False and cli["train"]["skip_nonfinite"] is True


def test_help_shows_the_library_defaults():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert all(a.default is None for a in train._actions if a.dest in ("lr", "batch_size",
                                                                        "epochs", "net"))  # fmt: skip
    lr, semi_lr = pc.TrainConfig.lr, pc.SemiSupervisedConfig.lr
    assert f"default {lr}; {semi_lr} with --semi-supervised" in helps["lr"]
    batch, semi_batch = pc.TrainConfig.batch_size, pc.SemiSupervisedConfig.batch_size
    assert f"default {batch}; {semi_batch} with --semi-supervised" in helps["batch_size"]
    assert f"default {pc.TrainConfig.epochs})" in helps["epochs"]
    assert f"default {pc.ModelConfig.net})" in helps["net"]
    assert f"default {pc.SemiSupervisedConfig.num_labels} " in helps["labels"]


def test_semi_supervised_molecules_are_refused_in_flags(tmp_path, capsys):
    try:
        moses_file("train")
    except FileNotFoundError:
        pytest.skip("molsets is not installed (pip install --no-deps molsets)")
    argv = ["train", "--dataset", "moses", "--train-size", "200", "--semi-supervised",
            "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "drop --semi-supervised" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_keeps_the_settings_the_run_recorded(tmp_path, capsys):
    """A run started with other settings than today's defaults (the old command line wrote
    lr 0.001 and batch size 128 for M2) continues with them under ``--resume`` without repeating
    the flags; a flag that is given and differs is still refused."""
    out = tmp_path / "m2"
    flags = ["--train-size", "200", "--semi-supervised", "--labels", "50"]
    _cli(out, *flags, "--lr", "0.001", "--batch-size", "128")
    argv = ["train", "--epochs", "2", "--eval-samples", "0", "--quiet", "--out", str(out)]
    assert main([*argv, *flags, "--resume"]) == 0
    cfg = _config(out)["train"]
    assert (cfg["lr"], cfg["batch_size"]) == (0.001, 128)
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header and both epochs: the run went on from epoch 1
    capsys.readouterr()
    assert main([*argv, "--epochs", "3", *flags, "--resume", "--lr", "0.002"]) == 2
    assert "lr: 0.001 -> 0.002" in capsys.readouterr().err
