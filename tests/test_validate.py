"""The argument checks of pyro_cvae._validate: each accepts what it should and names the fix."""

import math

import pytest
import torch

from pyro_cvae import _validate as v


@pytest.mark.parametrize("good", [1, 7, 10**6])
def test_positive_int_accepts(good):
    assert v.positive_int("epochs", good) == good


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "3", None])
def test_positive_int_refuses_naming_the_argument_and_fix(bad):
    with pytest.raises(ValueError, match=r"epochs must be a positive integer, got .*try 10"):
        v.positive_int("epochs", bad, "try 10")


def test_choice():
    assert v.choice("prior", "vamp", ("normal", "vamp")) == "vamp"
    with pytest.raises(ValueError, match="unknown prior 'x'; choose one of normal, vamp"):
        v.choice("prior", "x", ("normal", "vamp"))


@pytest.mark.parametrize(
    "value, allow_zero, ok",
    [(0.5, False, True), (3, False, True), (0, False, False), (0, True, True), (-1e-9, True, False),
     (math.inf, False, False), (math.nan, True, False), (True, False, False), ("1", False, False)],
)  # fmt: skip
def test_positive_number(value, allow_zero, ok):
    if ok:
        assert v.positive_number("lr", value, allow_zero=allow_zero) == value
    else:
        bound = ">= 0" if allow_zero else "> 0"
        with pytest.raises(ValueError, match=f"lr must be a finite number {bound}"):
            v.positive_number("lr", value, allow_zero=allow_zero)


def test_num_particles():
    assert v.num_particles(1) == 1 and v.num_particles(5000) == 5000
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"num_particles \(K\) must be an integer >= 1"):
            v.num_particles(bad)


def test_renyi_alpha_refuses_one_and_negative():
    assert v.renyi_alpha(0) == 0 and v.renyi_alpha(0.5) == 0.5 and v.renyi_alpha(2) == 2
    for bad in (1, 1.0, -0.5, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="alpha must be >= 0 and != 1"):
            v.renyi_alpha(bad)


def test_check_images_shape_dtype_range_and_nan():
    ok = torch.rand(3, 1, 8, 8)
    v.check_images(ok, (1, 8, 8), binary_range=True)
    v.check_images(torch.empty(0, 1, 8, 8), (1, 8, 8), binary_range=True)
    v.check_images(ok * 5 - 2, (1, 8, 8), binary_range=False)  # Gaussian data may leave [0, 1]
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        v.check_images(ok.numpy(), (1, 8, 8), binary_range=True)
    with pytest.raises(ValueError, match=r"x.float\(\) / 255"):
        v.check_images((ok * 255).to(torch.uint8), (1, 8, 8), binary_range=True)
    with pytest.raises(
        ValueError, match=r"shape \(N, 1, 8, 8\), got \(3, 64\).*image_shape=\(64,\)"
    ):
        v.check_images(ok.flatten(1), (1, 8, 8), binary_range=True)
    wide = ok.clone()
    wide[0, 0, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"\[0, 1\] for this likelihood, got range \[.*, 2\]"):
        v.check_images(wide, (1, 8, 8), binary_range=True)
    bad = ok.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        v.check_images(bad, (1, 8, 8), binary_range=False)


def test_check_labels():
    v.check_labels(torch.tensor([0, 9, 3]), 10, n=3)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        v.check_labels([0, 1], 10)
    with pytest.raises(
        ValueError, match=r"integer tensor, got dtype torch.float32; use y.long\(\)"
    ):
        v.check_labels(torch.tensor([0.0, 1.0]), 10)
    with pytest.raises(ValueError, match=r"shape \(N,\), got \(2, 1\)"):
        v.check_labels(torch.tensor([[0], [1]]), 10)
    with pytest.raises(ValueError, match="got 2 labels for 3 images"):
        v.check_labels(torch.tensor([0, 1]), 10, n=3)
    with pytest.raises(ValueError, match=r"\[0, 10\), got range \[0, 10\].*num_classes=10"):
        v.check_labels(torch.tensor([0, 10]), 10)


def test_resolve_device():
    assert v.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert v.resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        v.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available; use --device cpu"):
            v.resolve_device("cuda")
