import csv
import json
import subprocess
import sys

import numpy as np
import pyro
import pytest
import torch
from matplotlib.image import imread

import pyro_cvae
from pyro_cvae import plots
from pyro_cvae.checkpoint import list_checkpoints, load_checkpoint
from pyro_cvae.cli import build_parser, main
from pyro_cvae.evaluate import classifier_accuracy
from pyro_cvae.nn.nets import ConvEncoder
from pyro_cvae.train import load_run_data, train_classifier

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
    assert metrics["nll"] > 0


def test_train_control_score_is_the_judges_verdict_on_fresh_samples(run_dir):
    """The control score in metrics.json against a direct count: fresh samples of the saved model
    judged by the same (cached) classifier of real images agree within binomial error."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, data = pyro_cvae.load(run_dir), load_run_data(run_dir)
    judge = train_classifier(data)
    assert metrics["judge_test_accuracy"] == classifier_accuracy(judge, data.test)
    assert metrics["control_score"] == pytest.approx(np.mean(metrics["per_class"]), abs=1e-6)
    n = 100  # control_score's default per class, as train uses it
    pyro.set_rng_seed(12345)
    with torch.no_grad():
        images = model.sample(torch.arange(10), 4 * n)  # (10, 4n, ...)
        hits = (
            judge(images.flatten(0, 1)).argmax(-1).reshape(10, 4 * n) == torch.arange(10)[:, None]
        )
    direct = hits.float().mean().item()
    p = min(max(direct, 0.05), 0.95)
    se = np.sqrt(p * (1 - p) / (10 * n) + p * (1 - p) / (40 * n))  # of the difference
    assert abs(metrics["control_score"] - direct) < 5 * se


def test_sample_writes_png_and_npz(run_dir, tmp_path):
    npz = tmp_path / "five.npz"
    png = tmp_path / "five.png"
    assert main(["sample", "--run", str(run_dir), "--label", "5", "-n", "6", "--out", str(png),
                 "--npz", str(npz)]) == 0  # fmt: skip
    arrays = np.load(npz)
    assert arrays["images"].shape == (6, 1, 8, 8) and arrays["labels"].tolist() == [5] * 6
    assert png.stat().st_size > 0


def _reconstruction_png(run_dir, split, n, path):
    """The reconstruction figure drawn directly from the model (posterior means)."""
    model, data = pyro_cvae.load(run_dir), load_run_data(run_dir)
    s = data.eval_split(split)
    with torch.no_grad():
        plots.reconstructions(s.x[:n], model.reconstruct(s.x[:n], s.y[:n]), n=n, path=path)
    return imread(path)


def test_reconstruct_and_evaluate(run_dir, tmp_path):
    assert main(["reconstruct", "--run", str(run_dir), "-n", "4", "--out",
                 str(tmp_path / "r.png")]) == 0  # fmt: skip
    png = imread(tmp_path / "r.png")
    assert png.ndim == 3 and png.shape[2] in (3, 4)  # an RGB(A) picture ...
    assert png.shape[0] > 50 and png.shape[1] > 2 * 50  # ... of two rows of 4 images
    assert png[..., :3].std() > 0.05  # not blank
    np.testing.assert_array_equal(png, _reconstruction_png(run_dir, "test", 4, tmp_path / "d.png"))
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(run_dir), "--num-samples", "10", "--quiet", "--out",
                 str(out)]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert {"elbo", "nll", "bits_per_dim", "kl", "active_units"} <= metrics.keys()
    assert metrics["nll"] <= -metrics["elbo"] + 1.0  # IS estimate is at least as tight (noise)


def _losses(out):
    with open(out / "metrics.csv") as f:
        return [(r["epoch"], r["train_loss"], r.get("val_elbo")) for r in csv.DictReader(f)]


def test_resume_from_the_cli(tmp_path):
    """2 epochs, then --resume to 3: the same losses and parameters as 3 epochs straight, and
    epochs 1-2 not trained again (a silent restart from scratch rewrites their rows)."""
    three = [a if a != "2" else "3" for a in TINY]
    straight, out = tmp_path / "straight", tmp_path / "r"
    assert main(["train", "--out", str(straight), "--eval-samples", "0", *three]) == 0
    assert main(["train", "--out", str(out), "--eval-samples", "0", *TINY]) == 0
    before = (out / "metrics.csv").read_text().splitlines()
    assert len(before) == 3
    assert main(["train", "--out", str(out), "--eval-samples", "0", "--resume", *three]) == 0
    assert _losses(out) == _losses(straight) and len(_losses(out)) == 3
    # epochs 1-2 were not trained again: their rows, timings included, are the first run's
    assert (out / "metrics.csv").read_text().splitlines()[:3] == before
    a, b = (pyro_cvae.load(d / "model.pt").state_dict() for d in (out, straight))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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


# ------------------------------------------------------------------ flags of the reading commands


def test_evaluate_flags_reach_the_metrics(run_dir, tmp_path):
    """--split val --num-images --classify-samples --max-floats: the JSON is what the API gives
    with the same settings and seed (and differs from the test split's)."""
    out = tmp_path / "e.json"
    argv = ["evaluate", "--run", str(run_dir), "-k", "8", "--split", "val", "--num-images", "30",
            "--classify-samples", "2", "--max-floats", "3000", "--seed", "4", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cli = json.loads(out.read_text())
    assert cli["split"] == "val" and cli["num_images"] == 30 and cli["num_samples"] == 8
    assert round(cli["generative_accuracy"] * 30, 4) == int(round(cli["generative_accuracy"] * 30))
    model, data = pyro_cvae.load(run_dir), load_run_data(run_dir)

    def api(**kw):
        pyro.set_rng_seed(4)
        return pyro_cvae.evaluate(model, data, num_samples=8, num_images=30, classify_samples=2,
                                  max_floats=3000, **kw)  # fmt: skip

    want = api(split="val")
    assert {k: v for k, v in cli.items() if k != "checkpoint"} == want
    assert api(split="test")["elbo"] != cli["elbo"]
    assert "generative_accuracy" not in json.loads((run_dir / "metrics.json").read_text())


def test_sample_draw_gives_binary_pixels_and_temperature_sets_the_spread(run_dir, tmp_path):
    def images(*flags):
        npz = tmp_path / "s.npz"
        argv = ["sample", "--run", str(run_dir), "--label", "3", "-n", "64", "--out",
                str(tmp_path / "s.png"), "--npz", str(npz), *flags]  # fmt: skip
        assert main(argv) == 0
        return np.load(npz)["images"]

    mean, drawn = images(), images("--draw")
    assert set(np.unique(drawn).tolist()) == {0.0, 1.0}
    assert ((mean > 0.01) & (mean < 0.99)).any()  # the mean is grey somewhere
    # temperature scales z: near 0 every image is the decoded prior mean; 1 spreads them
    cold, warm = images("--temperature", "1e-4"), images("--temperature", "1")
    spread = lambda a: a.std(axis=0).mean()  # noqa: E731
    assert spread(cold) < 1e-3 and spread(warm) > 100 * spread(cold)


def test_reconstruct_split_reads_that_split(run_dir, tmp_path):
    for split in ("train", "val"):
        out = tmp_path / f"{split}.png"
        argv = [
            "reconstruct",
            "--run",
            str(run_dir),
            "-n",
            "5",
            "--split",
            split,
            "--out",
            str(out),
        ]
        assert main(argv) == 0
        direct = _reconstruction_png(run_dir, split, 5, tmp_path / f"direct-{split}.png")
        np.testing.assert_array_equal(imread(out), direct)
    assert not np.array_equal(imread(tmp_path / "train.png"), imread(tmp_path / "val.png"))


def test_reader_outputs_default_into_the_run_under_their_own_names(run_dir):
    made = []
    try:
        for _ in range(2):
            assert main(["reconstruct", "--run", str(run_dir), "-n", "3"]) == 0
        made = [run_dir / "reconstruction.png", run_dir / "reconstruction-2.png"]
        assert all(p.exists() for p in made)
        assert imread(made[0]).shape == imread(made[1]).shape
    finally:
        for p in made:
            p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- unconditional


def test_unconditional_train_sample_and_figures(tmp_path):
    out = tmp_path / "vae"
    assert main(["train", "--out", str(out), "--unconditional", "--eval-samples", "10", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_classes"] == 0 and not config["model"].get("condition_dim")
    assert pyro_cvae.load(out).config.cond_width == 0
    for name in ("samples.png", "reconstructions.png", "latent.png", "curves.png"):
        assert imread(out / name)[..., :3].std() > 0.01, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nll"] > 0 and "control_score" not in metrics
    npz = tmp_path / "u.npz"
    assert main(["sample", "--run", str(out), "-n", "6", "--npz", str(npz)]) == 0
    assert (out / "sample.png").exists()
    with np.load(npz) as f:
        assert f["images"].shape == (6, 1, 8, 8) and f["labels"].tolist() == [-1] * 6
        assert np.abs(f["images"][0] - f["images"][1:]).max() > 1e-3  # six different draws
    assert main(["sample", "--run", str(out), "--label", "3"]) == 2
    assert main(["reconstruct", "--run", str(out), "-n", "3"]) == 0
    assert imread(out / "reconstruction.png")[..., :3].std() > 0.05


# ----------------------------------------------------------------------- training flags


def _train(out, *flags, tiny=TINY):
    assert main(["train", "--out", str(out), "--eval-samples", "0", *tiny, *flags]) == 0
    return json.loads((out / "config.json").read_text())


def test_keep_checkpoints_keeps_that_many(tmp_path):
    three = [a if a != "2" else "3" for a in TINY]  # 3 epochs x 4 steps
    config = _train(tmp_path / "k", "--keep-checkpoints", "2", tiny=three)
    assert config["train"]["keep_checkpoints"] == 2
    kept = list_checkpoints(tmp_path / "k")
    assert len(kept) == 2 and kept[-1].name == "checkpoint_000012.pt"


def test_skip_nonfinite_skips_a_poisoned_batch(tmp_path, monkeypatch, capsys):
    """The second decoder call of training returns NaN: --skip-nonfinite skips that batch and
    finishes; without it training stops with nonfinite.json."""
    from pyro_cvae.cli import train as train_cli

    build = train_cli.build_for

    def poisoned(cfg, family="conditional"):
        model = build(cfg, family)
        forward, calls = model.decoder.forward, {"n": 0}

        def once_nan(*args):
            calls["n"] += 1
            out = forward(*args)
            return out * float("nan") if calls["n"] == 2 else out

        model.decoder.forward = once_nan
        return model

    monkeypatch.setattr(train_cli, "build_for", poisoned)
    _train(tmp_path / "skip", "--skip-nonfinite")
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "skip")[-1])
    assert ckpt["skipped_batches"] == 1 and ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert main(["train", "--out", str(tmp_path / "stop"), "--eval-samples", "0", *TINY]) != 0
    assert json.loads((tmp_path / "stop" / "nonfinite.json").read_text())["step"] == 2


def test_net_conv_builds_a_convolutional_encoder(tmp_path):
    tiny = ["--dataset", "mnist", "--train-size", "64", "--epochs", "1", "--batch-size", "32",
            "--latent-dim", "2", "--quiet"]  # fmt: skip
    config = _train(tmp_path / "conv", "--net", "conv", tiny=tiny)
    assert config["model"]["net"] == "conv" and config["data"]["name"] == "mnist"
    model = pyro_cvae.load(tmp_path / "conv")
    assert isinstance(model.encoder, ConvEncoder) and model.config.image_shape[-2:] == (28, 28)


def test_gaussian_likelihood_with_a_learned_scale(tmp_path):
    config = _train(tmp_path / "g", "--likelihood", "gaussian", "--learn-x-scale", "--x-scale",
                    "0.3")  # fmt: skip
    assert config["model"]["likelihood"] == "gaussian" and config["model"]["learn_x_scale"]
    assert config["data"]["binarize"] == "none"  # grey levels for a Gaussian
    model = pyro_cvae.load(tmp_path / "g")
    log_scale = model.likelihood.log_scale
    assert any(p is log_scale for p in model.parameters())
    assert abs(log_scale.item() - np.log(0.3)) > 1e-3  # trained: it moved
    fixed = _train(tmp_path / "f", "--likelihood", "gaussian", "--x-scale", "0.3")
    assert not fixed["model"]["learn_x_scale"]
    model = pyro_cvae.load(tmp_path / "f")
    assert model.likelihood.log_scale.item() == pytest.approx(np.log(0.3))
    assert not any(p is model.likelihood.log_scale for p in model.parameters())


def test_binarize_fixed_trains_on_one_recorded_draw(tmp_path):
    config = _train(tmp_path / "b", "--binarize", "fixed")
    assert config["data"]["binarize"] == "fixed"
    train = load_run_data(tmp_path / "b").train.x
    assert set(torch.unique(train).tolist()) == {0.0, 1.0}
    want = pyro_cvae.load_dataset("digits", binarize="fixed", seed=0, train_size=200)
    assert torch.equal(train, want.train.x)  # the draw training used, not another one
    grey = pyro_cvae.load_dataset("digits", binarize="none", train_size=200).train.x
    assert ((grey > 0) & (grey < 1)).any()  # the draw is not the data itself


def test_binarize_fixed_with_another_seed_is_read_back(tmp_path):
    config = _train(tmp_path / "b3", "--binarize", "fixed", "--seed", "3")
    assert config["data"]["binarize_seed"] == 3
    want = pyro_cvae.load_dataset("digits", binarize="fixed", seed=3, train_size=200)
    seed0 = pyro_cvae.load_dataset("digits", binarize="fixed", seed=0, train_size=200)
    assert not torch.equal(want.train.x, seed0.train.x)  # the seed matters to the draw
    assert torch.equal(load_run_data(tmp_path / "b3").train.x, want.train.x)
    # a config written before the seed was recorded: read back as the seed-0 draw it used
    path = tmp_path / "b3" / "config.json"
    old = json.loads(path.read_text())
    del old["data"]["binarize_seed"]
    path.write_text(json.dumps(old))
    assert torch.equal(load_run_data(tmp_path / "b3").train.x, seed0.train.x)


def test_label_fraction_keeps_that_share_of_labels(tmp_path):
    config = _train(tmp_path / "m2", "--semi-supervised", "--label-fraction", "0.2")
    # round(0.2 * 200 / 10) = 4 images per class
    assert config["num_labelled"] == 40 and config["train"]["label_fraction"] == 0.2
    assert config["model_class"] == "M2"


# ------------------------------------------------------------------ one vocabulary of flags (13)

READERS = ["sample", "reconstruct", "transfer", "interpolate", "score", "evaluate"]


@pytest.mark.parametrize("command", READERS)
def test_every_reading_command_takes_seed_device_quiet(command):
    args = build_parser().parse_args(
        [command, "--run", "r", "--seed", "3", "--device", "auto", "--quiet"]
    )
    assert (args.seed, args.device, args.quiet) == (3, "auto", True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", READERS)
def test_device_reaches_the_model_of_every_command(run_dir, command, capsys):
    """--device is used, not only parsed: cuda on a machine without one is refused by flag."""
    assert main([command, "--run", str(run_dir), "--device", "cuda"]) == 2
    assert "no CUDA GPU is available; use --device cpu" in capsys.readouterr().err


def test_seed_decides_the_draws_of_sample(run_dir, tmp_path):
    def draw(seed, name):
        npz = tmp_path / f"{name}.npz"
        assert main(["sample", "--run", str(run_dir), "--label", "3", "-n", "4", "--draw",
                     "--seed", str(seed), "--out", str(tmp_path / f"{name}.png"),
                     "--npz", str(npz), "--quiet"]) == 0  # fmt: skip
        return np.load(npz)["images"]

    assert np.array_equal(draw(1, "a"), draw(1, "b"))
    assert not np.array_equal(draw(1, "a"), draw(2, "c"))


def test_quiet_hides_the_progress_bar_of_score(run_dir, tmp_path, capsys):
    argv = ["score", "--run", str(run_dir), "-n", "4", "-k", "2", "--out", str(tmp_path / "s.csv")]
    assert main(argv) == 0
    assert "log p(x) K=2" in capsys.readouterr().err
    assert main([*argv, "--quiet"]) == 0
    assert "log p(x) K=2" not in capsys.readouterr().err


def test_pairs_and_files_have_their_own_names_old_spellings_still_work(run_dir, tmp_path, capsys):
    def interpolate(*flags):
        npz = tmp_path / "i.npz"
        assert main(["interpolate", "--run", str(run_dir), "--steps", "3", "--out",
                     str(tmp_path / "i.png"), "--npz", str(npz), *flags]) == 0  # fmt: skip
        return np.load(npz)["images"]

    for new, old, value in [
        ("--image-pair", "--images", "0,5"),
        ("--label-pair", "--labels", "1,7"),
    ]:
        want = interpolate(new, value)
        assert "deprecated" not in capsys.readouterr().err
        assert np.array_equal(interpolate(old, value), want)
        assert f"{old} is deprecated; use {new}" in capsys.readouterr().err
    np.savez(tmp_path / "in.npz", images=np.zeros((3, 1, 8, 8), np.float32))
    csvs = []
    for flag in ("--images-npz", "--images"):
        out = tmp_path / f"s{flag}.csv"
        assert main(["score", "--run", str(run_dir), flag, str(tmp_path / "in.npz"), "-k", "2",
                     "--out", str(out)]) == 0  # fmt: skip
        csvs.append(out.read_text())
    assert csvs[0] == csvs[1]  # same images, same seed: the same scores
    assert "--images is deprecated; use --images-npz" in capsys.readouterr().err
    helps = {c: build_parser()._subparsers._group_actions[0].choices[c].format_help()
             for c in ("interpolate", "score")}  # fmt: skip
    assert "--image-pair" in helps["interpolate"] and "--images " not in helps["interpolate"]
    assert "--labels" not in helps["interpolate"] and "--images-npz" in helps["score"]
    assert "--images " not in helps["score"]


def test_score_binarises_npz_images_as_the_run_trained(run_dir, tmp_path):
    """Grey .npz images against a run trained on binarised digits are scored as one seeded draw
    (as evaluate scores its split); --no-binarize scores the grey levels."""
    grey = np.random.default_rng(0).uniform(size=(4, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "grey.npz", images=grey)
    np.savez(tmp_path / "drawn.npz", images=pyro_cvae.data.eval_binarize(torch.from_numpy(grey)))

    def scores(name, *flags):
        out = tmp_path / f"{name}-{len(flags)}.csv"
        assert main(["score", "--run", str(run_dir), "--images-npz", str(tmp_path / name),
                     "-k", "3", "--out", str(out), *flags]) == 0  # fmt: skip
        return [r["neg_log_px"] for r in csv.DictReader(out.read_text().splitlines())]

    assert scores("grey.npz") == scores("drawn.npz") == scores("grey.npz", "--binarize")
    assert scores("grey.npz", "--no-binarize") != scores("grey.npz")


def test_train_without_out_writes_to_runs_of_its_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = ["--eval-samples", "0", "--train-size", "100", "--epochs", "1", "--batch-size", "50",
           "--latent-dim", "2", "--hidden", "8", "--quiet"]  # fmt: skip
    assert main(["train", "--dataset", "mnist", *one]) == 0
    assert (
        json.loads((tmp_path / "runs" / "mnist" / "config.json").read_text())["data"]["name"]
        == "mnist"
    )
    assert not (tmp_path / "runs" / "digits").exists()
    assert main(["train", *one]) == 0  # the default data set, digits
    assert (tmp_path / "runs" / "digits" / "config.json").exists()


def test_train_warns_when_samples_ignore_the_label(tmp_path, capsys):
    """Two epochs on 200 digits learn a model whose samples ignore the label; train says so,
    with the fix, exactly when metrics.json's control score is at most 1.5 x chance."""
    out = tmp_path / "short"
    assert main(["train", "--out", str(out), "--eval-samples", "5", *TINY]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["control_score"] <= 0.15  # this budget does end there
    assert "warning: the samples ignore the label: control score" in err
    assert "--epochs" in err and "--warmup-epochs" in err
    assert "judge_test_accuracy" in metrics and "classifier_test_accuracy" not in metrics


def test_help_names_real_modules_and_defaults():
    """Issue 25, item 22."""
    import contextlib
    import io

    from pyro_cvae.cli import build_parser

    def help_of(command):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        return " ".join(buf.getvalue().split())

    train, evaluate = help_of("train"), help_of("evaluate")
    assert "pyro_cvae.nn.priors" in train and "pyro_cvae.infer.semisupervised" in train
    assert "see pyro_cvae.priors" not in train and "256,256 / 400" not in train
    assert "(default 1000; 0: skip evaluation)" in train
    assert "default 1000" in evaluate
    import importlib

    for module in ("pyro_cvae.nn.priors", "pyro_cvae.infer.semisupervised"):
        importlib.import_module(module)
