"""Tests of pyro_cvae.applications and its commands: interpolation, transfer, anomaly scores."""

import csv
import math

import numpy as np
import pyro
import pytest
import torch

import pyro_cvae
from pyro_cvae import CVAE, fit
from pyro_cvae.applications import (
    INTERPOLATIONS,
    anomaly_scores,
    auroc,
    interpolate_images,
    interpolate_labels,
    lerp,
    slerp,
    transfer,
)
from pyro_cvae.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(digits_small):
    """A tiny label CVAE trained for a few epochs (weights matter only for being non-trivial)."""
    torch.manual_seed(0)
    model = CVAE(image_shape=(1, 8, 8), num_classes=10, latent_dim=4, hidden_dims=(32,))
    fit(model, digits_small, epochs=3, batch_size=64, progress=False, validate_every=0)
    return model.eval()


@pytest.fixture(scope="module")
def test_split(digits_small):
    return digits_small.eval_split("test")


# ------------------------------------------------------------------------------ paths


class TestPaths:
    def test_lerp_exact_points(self):
        z0, z1 = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
        path = lerp(z0, z1, 5)
        assert path.shape == (5, 2)
        assert torch.equal(path, torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0],
                                               [3.0, -1.0], [4.0, -2.0]]))  # fmt: skip

    def test_slerp_end_points_and_constant_norm(self):
        z0, z1 = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0])
        path = slerp(z0, z1, 7)
        torch.testing.assert_close(path[0], z0)
        torch.testing.assert_close(path[-1], z1)
        # a great circle between vectors of equal norm keeps that norm (a line would not)
        torch.testing.assert_close(path.norm(dim=1), torch.full((7,), 3.0))
        assert lerp(z0, z1, 7)[3].norm() < 2.5
        # the midpoint of a quarter circle is at 45 degrees
        torch.testing.assert_close(path[3], torch.tensor([3 / math.sqrt(2), 0.0, 3 / math.sqrt(2)]))

    def test_slerp_of_parallel_vectors_is_the_line(self):
        z0 = torch.tensor([1.0, 1.0])
        torch.testing.assert_close(slerp(z0, 2 * z0, 4), lerp(z0, 2 * z0, 4))

    @pytest.mark.parametrize("steps", [1, 0, 2.5, True])
    def test_bad_steps(self, steps):
        with pytest.raises(ValueError, match="steps must be an integer >= 2"):
            lerp(torch.zeros(2), torch.ones(2), steps)

    def test_registry(self):
        assert set(INTERPOLATIONS) == {"linear", "spherical"}


# ------------------------------------------------------------------------------ interpolation


class TestInterpolation:
    @pytest.mark.parametrize("method", list(INTERPOLATIONS))
    def test_end_points_are_reconstructions(self, trained, test_split, method):
        x, y = test_split.x, test_split.y
        i, j = torch.nonzero(y == 3).flatten()[:2].tolist()
        images = interpolate_images(trained, x[i], x[j], y[i], y[j], steps=6, method=method)
        assert images.shape == (6, 1, 8, 8)
        recon = trained.reconstruct(x[[i, j]], y[[i, j]])
        torch.testing.assert_close(images[0], recon[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(images[-1], recon[1], atol=1e-6, rtol=0)
        assert not torch.allclose(images[0], images[-1])

    def test_fixed_label_decodes_the_second_latent_too(self, trained, test_split):
        x, y = test_split.x, test_split.y
        i = int(torch.nonzero(y == 1)[0])
        j = int(torch.nonzero(y == 7)[0])
        images = interpolate_images(trained, x[i], x[j], y[i], y[j], label=4, steps=3)
        z1, _ = trained.encode(x[j : j + 1], y[j : j + 1])
        expected = trained.decode(z1, torch.tensor([4]))
        torch.testing.assert_close(images[-1], expected[0], atol=1e-6, rtol=0)

    def test_between_labels_end_points(self, trained):
        z = torch.randn(4)
        images = interpolate_labels(trained, z, 2, 8, steps=5)
        assert images.shape == (5, 1, 8, 8)
        ends = trained.decode(z.expand(2, 4), torch.tensor([2, 8]))
        torch.testing.assert_close(images[[0, -1]], ends, atol=1e-6, rtol=0)

    def test_between_labels_checks(self, trained):
        with pytest.raises(ValueError, match=r"z must have shape \(4,\)"):
            interpolate_labels(trained, torch.zeros(3), 0, 1)
        with pytest.raises(ValueError, match="labels must lie in"):
            interpolate_labels(trained, torch.zeros(4), 0, 10)
        vae = CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(8,))
        with pytest.raises(ValueError, match="needs a conditional model"):
            interpolate_labels(vae, torch.zeros(4), 0, 1)

    def test_unknown_method(self, trained, test_split):
        with pytest.raises(ValueError, match="unknown interpolation 'cubic'.*linear, spherical"):
            interpolate_images(trained, test_split.x[0], test_split.x[1], 0, method="cubic")

    def test_plain_vae(self, test_split):
        vae = CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(8,))
        images = interpolate_images(vae, test_split.x[0], test_split.x[1], steps=4)
        torch.testing.assert_close(images[0], vae.reconstruct(test_split.x[:1])[0])


# ------------------------------------------------------------------------------ transfer


class TestTransfer:
    def test_latent_is_the_encoder_output(self, trained, test_split):
        x, y = test_split.x[:5], test_split.y[:5]
        seen = []
        handle = trained.decoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
        try:
            result = transfer(trained, x, y)
        finally:
            handle.remove()
        loc, _ = trained.encoder(x, torch.nn.functional.one_hot(y, 10).float())
        assert len(seen) == 1
        z_in = seen[0]  # (N, 1, D), broadcast against the 10 labels
        torch.testing.assert_close(z_in[:, 0], loc)
        torch.testing.assert_close(result.z, loc)
        assert result.images.shape == (5, 10, 1, 8, 8)
        # image i decoded with its own label is its reconstruction
        own = result.images[torch.arange(5), y]
        torch.testing.assert_close(own, trained.reconstruct(x, y), atol=1e-6, rtol=0)

    def test_chosen_labels(self, trained, test_split):
        result = transfer(trained, test_split.x[:3], test_split.y[:3], torch.tensor([0, 9]))
        assert result.images.shape == (3, 2, 1, 8, 8)
        assert result.labels.tolist() == [0, 9]

    def test_needs_a_condition(self, test_split):
        vae = CVAE(image_shape=(1, 8, 8), num_classes=0, latent_dim=4, hidden_dims=(8,))
        with pytest.raises(ValueError, match="needs a conditional model"):
            transfer(vae, test_split.x[:2], None)


# ------------------------------------------------------------------------------ anomaly


class TestAnomaly:
    def test_marginal_scores_finite_and_consistent(self, trained, test_split):
        x = test_split.x[:6]
        pyro.set_rng_seed(1)
        scores = anomaly_scores(trained, x, num_samples=8)
        assert scores.shape == (6,) and torch.isfinite(scores).all()
        pyro.set_rng_seed(1)
        _, marginal = pyro_cvae.log_marginal(trained, x, 8)
        torch.testing.assert_close(scores, -marginal)
        # by hand, with the same draws (one conditional log-likelihood per label, in label
        # order): p(x) = (1/10) sum_y p(x | y), summed in float64 from the exponentials
        pyro.set_rng_seed(1)
        cond = torch.stack(
            [
                pyro_cvae.log_likelihood(trained, x, torch.full((6,), c, dtype=torch.long), 8)
                for c in range(10)
            ]
        ).double()  # (10, 6): log p(x | y)
        shift = cond.max(0).values
        by_hand = -(shift + ((cond - shift).exp().sum(0) / 10).log())
        torch.testing.assert_close(scores.double(), by_hand, rtol=1e-6, atol=1e-5)
        # p(x) lies between the best label's p(x | y) / 10 and that p(x | y) itself
        best = -cond.max(0).values.float()
        assert (scores >= best - 1e-5).all() and (scores <= best + math.log(10) + 1e-5).all()

    def test_given_labels_is_the_conditional(self, trained, test_split):
        x, y = test_split.x[:4], test_split.y[:4]
        pyro.set_rng_seed(2)
        scores = anomaly_scores(trained, x, y, num_samples=5)
        pyro.set_rng_seed(2)
        torch.testing.assert_close(scores, -pyro_cvae.log_likelihood(trained, x, y, 5))

    @pytest.mark.parametrize(
        "normal, anomalous, expected",
        [
            ([0.0, 1.0, 2.0], [3.0, 4.0], 1.0),
            ([3.0, 4.0], [0.0, 1.0, 2.0], 0.0),
            ([0.0, 3.0], [1.0, 2.0], 0.5),
            ([1.0, 1.0], [1.0], 0.5),  # ties count one half
            ([0.1, 0.4], [0.35, 0.8], 0.75),  # 3 of 4 pairs ordered correctly
        ],
    )
    def test_auroc_exact(self, normal, anomalous, expected):
        assert auroc(torch.tensor(normal), np.array(anomalous)) == pytest.approx(expected)

    def test_auroc_errors(self):
        with pytest.raises(ValueError, match="0 normal and 2 anomalous"):
            auroc([], [1.0, 2.0])
        with pytest.raises(ValueError, match="NaN or Inf"):
            auroc([0.0, float("nan")], [1.0])


# ------------------------------------------------------------------------------ commands


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--out", str(out), "--epochs", "2", "--train-size", "200", "--hidden",
               "32", "--latent-dim", "4", "--eval-samples", "0", "--quiet"])  # fmt: skip
    assert rc == 0
    return out


class TestCommands:
    def test_transfer(self, run_dir, tmp_path):
        npz = tmp_path / "t.npz"
        png = tmp_path / "t.png"
        assert main(["transfer", "--run", str(run_dir), "-n", "3", "--out", str(png),
                     "--npz", str(npz)]) == 0  # fmt: skip
        assert png.stat().st_size > 0
        with np.load(npz) as f:
            assert f["images"].shape == (3, 10, 1, 8, 8)
            assert f["z"].shape == (3, 4)

    def test_transfer_chosen_labels_and_bad_label(self, run_dir, tmp_path, capsys):
        npz = tmp_path / "t.npz"
        assert main(["transfer", "--run", str(run_dir), "-n", "2", "--label", "1", "--label",
                     "8", "--out", str(tmp_path / "t.png"), "--npz", str(npz)]) == 0  # fmt: skip
        with np.load(npz) as f:
            assert f["images"].shape == (2, 2, 1, 8, 8)
        assert main(["transfer", "--run", str(run_dir), "--label", "12"]) == 2
        assert "--label 12 is out of range: labels are 0..9" in capsys.readouterr().err

    @pytest.mark.parametrize("method", ["linear", "spherical"])
    def test_interpolate_images(self, run_dir, tmp_path, method):
        npz, png = tmp_path / "i.npz", tmp_path / "i.png"
        assert main(["interpolate", "--run", str(run_dir), "--image-pair", "0,5", "--steps", "7",
                     "--method", method, "--out", str(png), "--npz", str(npz)]) == 0  # fmt: skip
        assert png.stat().st_size > 0
        with np.load(npz) as f:
            assert f["images"].shape == (7, 1, 8, 8)

    def test_interpolate_labels(self, run_dir, tmp_path):
        npz = tmp_path / "l.npz"
        assert main(["interpolate", "--run", str(run_dir), "--label-pair", "1,7", "--steps", "4",
                     "--out", str(tmp_path / "l.png"), "--npz", str(npz)]) == 0  # fmt: skip
        with np.load(npz) as f:
            assert f["images"].shape == (4, 1, 8, 8)

    def test_interpolate_bad_index(self, run_dir, capsys):
        assert main(["interpolate", "--run", str(run_dir), "--image-pair", "0,100000"]) == 2
        assert "--image-pair index 100000 is out of range" in capsys.readouterr().err

    def test_score(self, run_dir, tmp_path, capsys):
        out = tmp_path / "scores.csv"
        assert main(["score", "--run", str(run_dir), "-n", "12", "-k", "3",
                     "--out", str(out)]) == 0  # fmt: skip
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 12
        assert [r["index"] for r in rows] == [str(i) for i in range(12)]
        assert all(math.isfinite(float(r["neg_log_px"])) and float(r["neg_log_px"]) > 0
                   for r in rows)  # fmt: skip
        assert out.with_suffix(".png").stat().st_size > 0
        assert "12 images: mean -log p(x)" in capsys.readouterr().out

    def test_score_npz_input(self, run_dir, tmp_path):
        x = np.random.default_rng(0).uniform(size=(5, 1, 8, 8)).astype(np.float32)
        np.savez(tmp_path / "in.npz", images=x, labels=np.arange(5))
        out = tmp_path / "s.csv"
        assert main(["score", "--run", str(run_dir), "--images-npz", str(tmp_path / "in.npz"),
                     "-k", "2", "--given-label", "--out", str(out)]) == 0  # fmt: skip
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert [r["label"] for r in rows] == ["0", "1", "2", "3", "4"]

    def test_score_npz_without_labels(self, run_dir, tmp_path, capsys):
        np.savez(tmp_path / "in.npz", images=np.zeros((2, 1, 8, 8), np.float32))
        assert main(["score", "--run", str(run_dir), "--images-npz", str(tmp_path / "in.npz"),
                     "--given-label"]) == 2  # fmt: skip
        assert "has no array 'labels'" in capsys.readouterr().err
