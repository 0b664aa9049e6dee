"""The benchmark's references compute the same losses as pyro_cvae, and its reports are whole."""

import re
from argparse import Namespace

import pyro
import pytest
import torch

import pyro_cvae as pc
from benchmarks import common, semi_speed
from benchmarks.plain import PlainCVAE
from pyro_cvae.infer.objectives import make_objective

SHAPE, CLASSES, HIDDEN, LATENT = (1, 8, 8), 10, (32,), 4


def _twins():
    """A CVAE and a PlainCVAE with the same weights (same layer order in both)."""
    torch.manual_seed(0)
    model = pc.CVAE(image_shape=SHAPE, num_classes=CLASSES, latent_dim=LATENT, hidden_dims=HIDDEN)
    plain = PlainCVAE(64, CLASSES, HIDDEN, LATENT)
    plain.enc.load_state_dict(model.encoder.net.state_dict())
    plain.dec.load_state_dict(model.decoder.net.state_dict())
    return model, plain


def _batch():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand((16,) + SHAPE, generator=g) < 0.3).float()
    return x, torch.randint(0, CLASSES, (16,), generator=g)


@pytest.mark.parametrize("k", [1, 5])
def test_the_plain_loop_computes_pyro_cvaes_loss_and_gradient(k):
    model, plain = _twins()
    x, y = _batch()
    objective = make_objective("elbo" if k == 1 else "iwae", particles=k)
    with pyro.validation_enabled(False):
        torch.manual_seed(7)  # the same noise: both draw eps ~ N(0, I) of shape (k, B, D)
        ours = objective.differentiable_loss(model.model, model.guide, x, y)
    torch.manual_seed(7)
    theirs = plain.elbo_loss(x, y) if k == 1 else plain.iwae_loss(x, y, k)
    assert torch.allclose(ours, theirs, rtol=1e-5)
    ours.backward()
    theirs.backward()
    w_ours, w_theirs = model.decoder.net[0].weight.grad, plain.dec[0].weight.grad
    assert torch.allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-5)


def test_plain_elbo_is_the_one_particle_log_weight():
    _, plain = _twins()
    x, y = _batch()
    torch.manual_seed(3)
    lean = plain.elbo_loss(x, y)
    torch.manual_seed(3)
    assert torch.allclose(lean, -plain.log_weights(x, y, 1).sum(), rtol=1e-6)


def test_semi_supervised_benchmark_counts_the_enumerated_work():
    row = semi_speed.run("digits", repeats=1, hidden=HIDDEN, latent=LATENT, batch_size=64,
                         train_size=600, num_labels=100, log=lambda _: None)  # fmt: skip
    assert row["elbo_s"] > 0 and row["m2_s"] > 0
    # the label is enumerated over 10 classes in parallel: encoder and decoder run 10 times per
    # unlabelled image, plus the classifier and the labelled batch
    assert 8 < row["flops_ratio"] < 16


def test_quick_benchmark_measures_mnist_at_its_sizes():
    from benchmarks.__main__ import plan

    quick = plan(Namespace(quick=True, tiny=False, repeats=5, iwae_train_size=10000, fit_rounds=3))
    assert quick["dataset"] == "mnist"
    assert (quick["train_size"], quick["iw_size"], quick["repeats"]) == (2000, 500, 1)


def test_benchmark_writes_every_section(tmp_path):
    """The whole report, through the same measurements as --quick, at --tiny's sizes."""
    from benchmarks.__main__ import main, plan

    out = tmp_path / "results.md"
    main(["--tiny", "--out", str(out)])
    text = out.read_text()
    for heading in (
        "## CPU",
        "### Targets of issues 14 and 30",
        "### One `pc.fit` call against the hand-written loop",
        "### Training",
        "### Semi-supervised",
        "### Evaluation",
        "Where an ELBO",
        "## Streamed image folder",
    ):
        assert heading in text
    tiny = plan(Namespace(quick=False, tiny=True, repeats=5, iwae_train_size=10000, fit_rounds=3))
    n, n_iw = tiny["train_size"], tiny["iw_size"]
    assert n != n_iw  # so that each row's size tells which measurement it came from
    for row in (f"| elbo | {n} |", f"| iwae5 | {n_iw} |", f"| iwae50 | {n_iw} |", "| svi_step |"):
        assert row in text
    # the fit-call row of digits, in its table and in the targets table with the 1.10x
    assert "| digits 1259 images, ELBO, 2 epochs, batch 64 |" in text
    assert re.search(r"one `pc.fit` call, digits 1259 images, .*<= 1.10x .* \| (yes|no) \|", text)


def test_benchmark_flags_refuse_an_unknown_or_absent_device(capsys):
    p = common.parser("doc")
    assert p.parse_args(["--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        p.parse_args(["--device", "gpu"])
    assert "unknown device 'gpu'; choose cpu or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            p.parse_args(["--device", "cuda"])
        assert "no CUDA GPU is available here; use --device cpu" in capsys.readouterr().err


def test_mixture_benchmark_compares_the_two_mixtures_on_the_same_values(tmp_path):
    from benchmarks import mixture
    from pyro_cvae.nn import priors
    from pyro_cvae.nn.distributions import DiagonalNormalMixture

    out = tmp_path / "mixture.md"
    mixture.main(["--tiny", "--out", str(out)])
    text = out.read_text()
    assert "Same values: yes" in text
    assert "| training step" in text and "| evaluation chunk, peak memory" in text
    # the whole log_likelihood with either mixture: the same particles give the same estimate
    line = next(s for s in text.splitlines() if s.startswith("`log_likelihood`"))
    assert float(re.search(r"differ by at most ([0-9.e+-]+) nats", line).group(1)) < 1e-3
    assert priors.DiagonalNormalMixture is DiagonalNormalMixture  # put back after timing torch's


@pytest.mark.parametrize("flag", ["--images", "--steps"])
def test_mixture_benchmark_refuses_a_count_below_one(flag, capsys, tmp_path):
    from benchmarks import mixture

    with pytest.raises(SystemExit):
        mixture.main([flag, "0", "--out", str(tmp_path / "m.md")])
    assert "--images and --steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "m.md").exists()


def test_fit_ab_refuses_an_other_that_is_not_a_checkout(tmp_path, capsys):
    from benchmarks import fit_ab

    with pytest.raises(SystemExit):
        fit_ab.main(["--other", str(tmp_path)])
    assert "is not a pyro_cvae checkout" in capsys.readouterr().err


def test_streaming_benchmark_measures_both_modes_and_writes_its_section(tmp_path):
    from benchmarks import streaming

    rows = []
    for n in (20, 40):
        folder = streaming.generate(tmp_path / f"png{n}", n, classes=2, size=8)
        for mode in ("memory", "stream"):
            row = streaming.child(str(folder), mode, workers=0)
            assert row["images"] == len(pc.load_dataset(folder).train) and row["peak_mb"] > 0
            rows.append({"files": n, "mode": mode, "workers": 0, **row})
    lines = streaming.section(rows, wall_s=1.0)
    assert lines[0] == streaming.HEADING and sum(line.count("| stream |") for line in lines) == 2
    out = tmp_path / "results.md"
    out.write_text("# Benchmarks\n\n## CPU\n\nfigures\n")
    streaming.write_section(out, lines)
    streaming.write_section(out, lines)  # a second run replaces its section, keeps the others
    text = out.read_text()
    assert text.count(streaming.HEADING) == 1 and "## CPU\n\nfigures" in text


def test_fit_call_rows_time_both_sides_of_one_case():
    from benchmarks import fit_speed

    rows = fit_speed.run(("digits",), rounds=1, log=lambda _: None,
                         sizes={"epochs": 1, "hidden": (32,), "latent": 4})  # fmt: skip
    (row,) = rows
    assert row["case"] == "digits" and row["images"] == 1259 and row["epochs"] == 1
    assert row["plain_s"] > 0 and row["pyro_s"] > 0
    assert row["ratio"] == pytest.approx(row["pyro_s"] / row["plain_s"])
    assert row["target"] == 1.10


@pytest.mark.parametrize("case", ["digits", "10k-elbo"])
def test_fit_call_sides_train_the_same_architecture(case):
    from benchmarks import fit_speed

    data = pc.load_dataset("digits")  # the 28x28 cases' sizes are given, so digits serve
    model, plain = fit_speed._models(data, fit_speed.CASES[case], "cpu")
    sizes = sorted(p.numel() for p in model.parameters())
    assert sizes == sorted(p.numel() for p in plain.parameters())
    if case == "digits":  # the demo's model: ModelConfig.for_data's default
        assert model.config == pc.ModelConfig.for_data(data)


def test_fit_speed_refuses_an_unknown_case(capsys):
    from benchmarks import fit_speed

    with pytest.raises(SystemExit):
        fit_speed.main(["--cases", "digits,20k"])
    assert "unknown case '20k'; choose from digits, 10k-elbo" in capsys.readouterr().err
