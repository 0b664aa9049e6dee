"""The choices a model makes from its data (models/config.py): likelihood and binarisation."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import pyro_cvae as pc
from pyro_cvae.data import Dataset, Split
from pyro_cvae.models import default_binarize, default_likelihood


def _vectors(x) -> Dataset:
    x = torch.as_tensor(x, dtype=torch.float32)
    split = Split(x, torch.zeros(len(x), dtype=torch.long))
    return Dataset("v", split, split, split, num_classes=2)


def test_the_likelihood_follows_the_data_range(digits):
    assert default_likelihood(digits) == "bernoulli"
    assert default_likelihood(_vectors([[0.0, 1.0], [0.5, 0.2]])) == "bernoulli"
    assert default_likelihood(_vectors([[0.0, 1.5], [0.5, 0.2]])) == "gaussian"
    assert default_likelihood(_vectors([[-0.1, 0.5], [0.5, 0.2]])) == "gaussian"
    assert pc.ModelConfig.for_data(_vectors([[0.0, 2.0], [1.0, 3.0]])).likelihood == "gaussian"


def test_a_table_is_modelled_by_the_table_likelihood(tmp_path):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["x", "y"], 60)}).to_csv(path)
    data = pc.load_dataset(path)
    assert default_likelihood(data) == "table" == pc.ModelConfig.for_data(data).likelihood


@pytest.mark.parametrize(
    "source, likelihood, expected",
    [("digits", None, "dynamic"), ("mnist", "bernoulli", "dynamic"),
     ("digits", "gaussian", "none"), ("digits", "continuous_bernoulli", "none"),
     ("colored-digits", None, "none"), ("moses", None, "none")],
)  # fmt: skip
def test_binarize_built_in_sets(source, likelihood, expected):
    assert default_binarize(source, likelihood) == expected


def test_binarize_own_files(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(
                tmp_path / "img" / c / f"{i}.png"
            )
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    assert default_binarize(tmp_path / "img") == "dynamic"
    assert default_binarize(tmp_path / "img", "gaussian") == "none"
    assert default_binarize(tmp_path / "a.npz") == "none"
