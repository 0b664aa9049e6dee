"""Shared fixtures: fresh Pyro state, validation on, data caches in a temporary folder."""

import os

os.environ["PYRO_CVAE_VALIDATE"] = "1"  # fit() checks distributions and shapes in every test

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pyro_cvae  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    threads = torch.get_num_threads()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()
    # experiment scripts pin one thread; later tests compare runs bit for bit across processes
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    old = os.environ.get("PYRO_CVAE_DATA")
    os.environ["PYRO_CVAE_DATA"] = str(tmp_path_factory.mktemp("data_cache"))
    yield
    if old is None:
        os.environ.pop("PYRO_CVAE_DATA", None)
    else:
        os.environ["PYRO_CVAE_DATA"] = old


@pytest.fixture(scope="session")
def digits():
    """The digits data set (dynamic binarisation), loaded once."""
    return pyro_cvae.load_dataset("digits", binarize="dynamic")


@pytest.fixture(scope="session")
def digits_small(digits):
    """A 300-image subset of digits for fast training tests."""
    return digits.subset(300, 100)


@pytest.fixture
def small_model():
    """A tiny label-conditioned CVAE for 8x8 digits."""
    torch.manual_seed(0)
    return pyro_cvae.CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, hidden_dims=(32,))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module whose tests share two cores with other work (restored after).

    Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
