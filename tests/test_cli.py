import json
import subprocess
import sys

import numpy as np
import pytest

from pyro_cvae.cli import build_parser, main

TINY = ["--train-size", "200", "--epochs", "2", "--batch-size", "50", "--latent-dim", "3",
        "--hidden", "16", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), "--eval-samples", "20", *TINY]) == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    for name in ("config.json", "metrics.csv", "model.pt", "metrics.json", "samples.png",
                 "reconstructions.png", "latent.png", "curves.png"):  # fmt: skip
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["nll"] > 0 and 0 <= metrics["control_score"] <= 1


def test_sample_writes_png_and_npz(run_dir, tmp_path):
    npz = tmp_path / "five.npz"
    png = tmp_path / "five.png"
    assert main(["sample", "--run", str(run_dir), "--label", "5", "-n", "6", "--out", str(png),
                 "--npz", str(npz)]) == 0  # fmt: skip
    arrays = np.load(npz)
    assert arrays["images"].shape == (6, 1, 8, 8) and arrays["labels"].tolist() == [5] * 6
    assert png.stat().st_size > 0


def test_reconstruct_and_evaluate(run_dir, tmp_path):
    assert main(["reconstruct", "--run", str(run_dir), "-n", "4", "--out",
                 str(tmp_path / "r.png")]) == 0  # fmt: skip
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(run_dir), "--num-samples", "10", "--quiet", "--out",
                 str(out)]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert {"elbo", "nll", "bits_per_dim", "kl", "active_units"} <= metrics.keys()
    assert metrics["nll"] <= -metrics["elbo"] + 1.0  # IS estimate is at least as tight (noise)


def test_resume_from_the_cli(run_dir, tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--eval-samples", "0", *TINY]) == 0
    args = ["train", "--out", str(out), "--eval-samples", "0", "--resume", *TINY]
    args[args.index("--epochs") + 1] = "3"
    assert main(args) == 0
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--run", "RUN", "--label", "11"], "out of range"),
        (["sample", "--run", "nowhere"], "does not exist"),
        (["train", "--out", "RUN", *TINY], "--overwrite"),
        (["train", "--out", "NEW", "--lr", "-1", *TINY], "lr must be a positive"),
        (["train", "--out", "NEW", "--objective", "iwae", "--beta", "2", *TINY], "ELBO only"),
        (["train", "--out", "NEW", "--resume", *TINY], "holds no checkpoint"),
    ],
)
def test_errors_exit_2_with_a_message(run_dir, tmp_path, capsys, argv, message):
    argv = [
        str(run_dir) if a == "RUN" else str(tmp_path / "new") if a == "NEW" else a for a in argv
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "new" / "config.json").exists()  # nothing half-written


def test_every_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_bad_flag_values_are_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0"])
    assert "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--prior", "laplace"])


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "pyro_cvae", "--help"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "train" in out.stdout and "evaluate" in out.stdout


def test_train_and_sample_an_attribute_dataset(tmp_path):
    """colored-digits: the condition is a vector; the schema travels with the run."""
    out = tmp_path / "colored"
    assert main(["train", "--dataset", "colored-digits", "--out", str(out), "--eval-samples",
                 "0", *TINY]) == 0  # fmt: skip
    assert (out / "attributes.json").exists() and (out / "samples.png").exists()
    npz = tmp_path / "red5.npz"
    assert main(["sample", "--run", str(out), "--condition", "digit=5,color=red", "-n", "3",
                 "--out", str(tmp_path / "red5.png"), "--npz", str(npz)]) == 0  # fmt: skip
    assert np.load(npz)["images"].shape == (3, 3, 8, 8)
