"""Molecules (issue 16): MOSES data with RDKit properties and SELFIES tokens, the sequence CVAE,
its commands. Tiny budgets: a few hundred molecules, tiny GRUs, one or two epochs."""

from __future__ import annotations

import csv
import json
import math

import pyro
import pytest
import torch
from pyro import poutine

pytest.importorskip("rdkit")
pytest.importorskip("selfies")

import pyro_cvae as pc  # noqa: E402
from pyro_cvae.cli import main  # noqa: E402
from pyro_cvae.data.molecules import (  # noqa: E402
    END,
    PAD,
    Vocabulary,
    canonical_smiles,
    moses_file,
    read_molecules,
    smiles_to_tokens,
    split_smiles,
)
from pyro_cvae.evaluate import log_weights  # noqa: E402
from pyro_cvae.evaluate.molecules import (  # noqa: E402
    PROPERTY_TOLERANCES,
    control_on_requests,
    molecule_metrics,
    molecule_nll,
)
from pyro_cvae.infer.objectives import make_objective  # noqa: E402
from pyro_cvae.models import (  # noqa: E402
    MOLECULE_ENCODERS,
    MoleculeConfig,
    MoleculeCVAE,
    build_model,
)
from pyro_cvae.nn.sequence import (  # noqa: E402
    ConvSequenceEncoder,
    SoftTokenPredictor,
    TokenSequence,
)
from pyro_cvae.train import load_run_data, load_schema  # noqa: E402

TINY = dict(latent_dim=4, embed_dim=8, hidden_dim=16)


def _sites(trace) -> list[str]:
    return [k for k, n in trace.nodes.items() if n["type"] == "sample"]


@pytest.fixture(scope="module")
def data():
    try:
        moses_file("train")
    except FileNotFoundError:
        pytest.skip("molsets is not installed (pip install --no-deps molsets)")
    return pc.load_dataset("moses", train_size=300)


@pytest.fixture(scope="module")
def model(data):
    pyro.set_rng_seed(0)
    return MoleculeCVAE(MoleculeConfig.for_data(data, **TINY)).eval()


class TestData:
    def test_splits_tokens_and_schema(self, data):
        assert data.train.x.shape[0] == 300 and data.train.x.dtype == torch.long
        assert data.train.y.shape == (300, data.schema.width)
        assert data.schema.names[:4] == ["logp", "qed", "mw", "tpsa"]
        assert data.train.y.min() >= 0 and data.train.y.max() <= 1  # standardised to the range
        assert (data.train.x == END).sum(1).eq(1).all()  # one end token per molecule
        parsed = data.schema.parse("logp=2.5,qed=0.8")
        assert parsed["logp"] == 2.5 and parsed["qed"] == 0.8

    def test_cached_subset_is_reused(self, data):
        again = pc.load_dataset("moses", train_size=300)
        assert torch.equal(again.train.x, data.train.x)
        assert torch.equal(again.train.y, data.train.y)

    def test_tokeniser_round_trip(self, data):
        vocab = Vocabulary(data.meta["tokens"])
        smiles = split_smiles(data, "train")[:50]
        ids = vocab.encode([smiles_to_tokens(s) for s in smiles], data.image_shape[0])
        back = [canonical_smiles(s) for s in vocab.decode(ids)]
        assert back == smiles and all(smiles)

    def test_unparsable_smiles_names_the_line(self, data, tmp_path):
        path = tmp_path / "mine.csv"
        path.write_text("SMILES\nCCO\nc1ccccc1\nC1CC(\n")
        with pytest.raises(ValueError, match=r"line 4: RDKit cannot parse the SMILES 'C1CC\('"):
            read_molecules(path, data.meta["tokens"], data.image_shape[0], data.schema)

    def test_csv_without_smiles_column(self, data, tmp_path):
        path = tmp_path / "mine.csv"
        path.write_text("smile\nCCO\n")
        with pytest.raises(ValueError, match="no column 'SMILES'"):
            read_molecules(path, data.meta["tokens"], data.image_shape[0], data.schema)

    def test_a_subset_of_properties_is_the_condition_in_the_order_given(self, data, tmp_path):
        full = data.schema.names
        pick = pc.load_dataset("moses", train_size=300, condition="qed,logp")
        assert pick.schema.names == ["qed", "logp"] and pick.meta["condition"] == ["qed", "logp"]
        assert torch.equal(pick.train.x, data.train.x)  # the same molecules and tokens
        cols = [full.index("qed"), full.index("logp")]
        assert torch.equal(pick.train.y, data.train.y[:, cols])  # the same training ranges
        assert torch.equal(pick.test.y, data.test.y[:, cols])
        # a user's molecules are read with the columns of that schema
        path = tmp_path / "mine.csv"
        path.write_text("SMILES\nCCO\nc1ccccc1O\n")
        _, y_all, _ = read_molecules(path, data.meta["tokens"], data.image_shape[0], data.schema)
        _, y, _ = read_molecules(path, pick.meta["tokens"], pick.image_shape[0], pick.schema)
        assert torch.allclose(y, y_all[:, cols])
        for bad in ("logp,logp", "weight", ""):
            with pytest.raises(ValueError, match="must be distinct names of"):
                pc.load_dataset("moses", train_size=300, condition=bad if bad else [])
        with pytest.raises(ValueError, match="image_size and source are for your own data"):
            pc.load_dataset("moses", train_size=300, image_size=8)


class TestLikelihood:
    def test_padding_leaves_log_prob_exactly_unchanged(self, data, model):
        x, y = data.test.x[:6], data.test.y[:6]
        padded = torch.cat([x, torch.full((6, 9), PAD)], 1)
        z = torch.randn(3, 6, model.config.latent_dim)  # (K, B, D)
        zc = torch.cat([z, y.expand(3, -1, -1)], -1)  # (K, B, D + C)
        logits = model.decoder.logits(padded, zc)  # teacher forcing: (K, B, L + 9, V)
        short = TokenSequence(logits[..., : x.shape[1], :], END).log_prob(x)
        long = TokenSequence(logits, END).log_prob(padded)
        assert torch.equal(short, long)
        # the model's likelihood p(x | z, c) is that masked sum of the teacher-forced logits
        assert torch.equal(model.x_dist(z, y).log_prob(padded), long)
        # past the end, neither the tokens nor the logits count
        garbage = padded.clone()
        garbage[:, x.shape[1] :] = END
        assert torch.equal(TokenSequence(logits, END).log_prob(garbage), long)

    def test_padding_leaves_model_and_guide_unchanged(self, data, model):
        x, y = data.test.x[:6], data.test.y[:6]
        padded = torch.cat([x, torch.full((6, 9), PAD)], 1)
        pyro.set_rng_seed(1)
        a = log_weights(model, x, y, 4)
        pyro.set_rng_seed(1)
        b = log_weights(model, padded, y, 4)
        assert torch.allclose(a, b, atol=1e-4, rtol=0)

    def test_iwae_bound_at_or_above_elbo_per_molecule(self, data, model):
        pyro.set_rng_seed(2)
        lw = log_weights(model, data.test.x[:20], data.test.y[:20], 50)  # (K, B)
        iwae = torch.logsumexp(lw, 0) - torch.log(torch.tensor(50.0))
        assert (iwae >= lw.mean(0) - 1e-5).all()
        nll = molecule_nll(model, data.test.x[:20], data.test.y[:20], num_samples=50)
        assert nll.shape == (20,) and torch.isfinite(nll).all()

    def test_bad_tokens_are_refused(self, data, model):
        with pytest.raises(ValueError, match="token ids must lie in"):
            model.check_inputs(data.test.x[:2] + 1000, data.test.y[:2])
        with pytest.raises(ValueError, match="integer token ids"):
            model.check_inputs(data.test.x[:2].float(), data.test.y[:2])


class TestTraining:
    @pytest.mark.parametrize("objective,particles,warmup", [("elbo", 1, 1), ("iwae", 3, 0)])
    def test_tiny_run_lowers_the_loss_and_reloads(
        self, data, tmp_path, objective, particles, warmup
    ):
        pyro.set_rng_seed(0)
        model = build_model(MoleculeConfig.for_data(data, **TINY))
        history = pc.fit(model, data, epochs=2, batch_size=32, lr=3e-3, objective=objective,
                         particles=particles, warmup_epochs=warmup, out=tmp_path / "run",
                         progress=False)  # fmt: skip
        loss = history.column("train_loss")
        assert loss[1] < loss[0]
        again = pc.load(tmp_path / "run")
        assert isinstance(again, MoleculeCVAE) and again.config == model.config
        pyro.set_rng_seed(3)
        a = log_weights(model, data.test.x[:5], data.test.y[:5], 2)
        pyro.set_rng_seed(3)
        b = log_weights(again, data.test.x[:5], data.test.y[:5], 2)
        assert torch.equal(a, b)

    def test_unconditional_model_and_generation(self, data):
        pyro.set_rng_seed(0)
        model = MoleculeCVAE(MoleculeConfig.for_data(data, unconditional=True, **TINY)).eval()
        ids = model.sample(None, 7)
        assert ids.shape == (7, data.image_shape[0])
        with pytest.raises(ValueError, match="has no condition"):
            model.sample(data.test.y[0], 2)
        metrics = molecule_metrics(model.smiles(ids), split_smiles(data, "train"))
        assert 0 <= metrics["validity"] <= 1 and metrics["generated"] == 7

    def test_conditional_sample_shapes(self, data, model):
        assert model.sample(data.test.y[0], 3).shape == (3, data.image_shape[0])
        assert model.sample(data.test.y[:2], 3).shape == (2, 3, data.image_shape[0])
        with pytest.raises(ValueError, match="conditional"):
            model.sample(None, 2)

    def test_config_errors_name_the_value(self):
        with pytest.raises(ValueError, match="word_dropout must be in"):
            MoleculeConfig(word_dropout=1.5)
        with pytest.raises(ValueError, match="special tokens"):
            MoleculeConfig(tokens=("[C]",))
        assert json.loads(MoleculeConfig().to_json())["__class__"] == "MoleculeConfig"


@pytest.fixture(scope="module")
def conv(data):
    pyro.set_rng_seed(0)
    return MoleculeCVAE(MoleculeConfig.for_data(data, encoder="conv", **TINY)).eval()


class TestConvEncoder:
    """The 1-D convolution encoder (``MoleculeConfig(encoder="conv")``): the bounds, the
    log-likelihood and training work with it as with the GRU."""

    def test_registered_and_validated(self, conv):
        assert MOLECULE_ENCODERS["conv"] is ConvSequenceEncoder
        assert isinstance(conv.encoder, ConvSequenceEncoder)
        with pytest.raises(ValueError, match="encoder must be one of"):
            MoleculeConfig(encoder="lstm")
        assert MoleculeConfig().encoder == "gru"  # older runs load as before

    def test_padding_leaves_the_guide_unchanged(self, data, conv):
        x, y = data.test.x[:6], data.test.y[:6]
        padded = torch.cat([x, torch.full((6, 9), PAD)], 1)
        garbage = padded.clone()
        garbage[:, x.shape[1] :] = END  # tokens past the first end do not count either
        loc, scale = conv.encoder(x, y)
        for other in (padded, garbage):
            loc2, scale2 = conv.encoder(other, y)
            assert torch.allclose(loc, loc2, atol=1e-6) and torch.allclose(scale, scale2, atol=1e-6)

    def test_elbo_iwae_and_log_likelihood(self, data, conv):
        x, y = data.test.x[:20], data.test.y[:20]
        pyro.set_rng_seed(2)
        lw = log_weights(conv, x, y, 50)  # (K, B)
        assert lw.shape == (50, 20) and torch.isfinite(lw).all()
        iwae = torch.logsumexp(lw, 0) - torch.log(torch.tensor(50.0))
        assert (iwae >= lw.mean(0) - 1e-5).all()
        for name, k in (("elbo", 1), ("iwae", 5)):
            loss = make_objective(name, k).differentiable_loss(conv.model, conv.guide, x, y)
            assert torch.isfinite(loss) and loss > 0
        ll = pc.log_likelihood(conv, x, y, num_samples=50)
        assert ll.shape == (20,) and torch.isfinite(ll).all()
        assert ll.mean() >= lw.mean() - 1.0  # K=50 bound above the ELBO (up to noise)

    @pytest.mark.parametrize("objective,particles", [("elbo", 1), ("iwae", 3)])
    def test_tiny_run_lowers_the_loss_and_reloads(self, data, tmp_path, objective, particles):
        pyro.set_rng_seed(0)
        model = build_model(MoleculeConfig.for_data(data, encoder="conv", **TINY))
        history = pc.fit(model, data, epochs=2, batch_size=32, lr=3e-3, objective=objective,
                         particles=particles, out=tmp_path / "run", progress=False)  # fmt: skip
        loss = history.column("train_loss")
        assert loss[1] < loss[0]
        again = pc.load(tmp_path / "run")
        assert isinstance(again.encoder, ConvSequenceEncoder) and again.config == model.config
        pyro.set_rng_seed(3)
        a = log_weights(model, data.test.x[:5], data.test.y[:5], 2)
        pyro.set_rng_seed(3)
        b = log_weights(again, data.test.x[:5], data.test.y[:5], 2)
        assert torch.equal(a, b)


class TestCommands:
    def test_train_sample_score(self, data, tmp_path, capsys):
        run = tmp_path / "run"
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--eval-samples", "3", "--out", str(run), "--quiet"]) == 0  # fmt: skip
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0 <= metrics["validity"] <= 1 and "logp_spearman" in metrics
        assert isinstance(pc.load(run), MoleculeCVAE)

        out = tmp_path / "mols.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=2.5,qed=0.8", "-n", "12",
                     "--out", str(out)]) == 0  # fmt: skip
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert len(rows) == 12 and {"smiles", "valid", "logp", "requested_logp"} <= set(rows[0])
        assert float(rows[0]["requested_logp"]) == 2.5
        if any(r["valid"] == "True" for r in rows):
            assert out.with_suffix(".png").exists()

        # issue 25, item 9: score reads the lowercase smiles column that sample writes
        assert "smiles" in rows[0] and "SMILES" not in rows[0]
        (tmp_path / "lower.csv").write_text("smiles\nCCO\nc1ccccc1O\n")
        assert main(["score", "--run", str(run), "--molecules", str(tmp_path / "lower.csv"),
                     "-k", "2", "--out", str(tmp_path / "own.csv")]) == 0  # fmt: skip
        # item 24: without a condition the properties used are said, in short numbers
        capsys.readouterr()
        assert main(["sample", "--run", str(run), "-n", "2", "--out", str(tmp_path / "m.csv")]) == 0
        said = capsys.readouterr().out
        assert "unconditional" not in said and "at the training median" in said
        assert all(len(part.split("=")[1]) <= 6 for part in said.split(" (")[0].split(","))

        mine = tmp_path / "mine.csv"
        mine.write_text("SMILES\nCCO\nc1ccccc1O\n")
        assert main(["score", "--run", str(run), "--molecules", str(mine), "-k", "4"]) == 0
        scores = list(csv.DictReader((run / "scores.csv").read_text().splitlines()))
        assert [r["smiles"] for r in scores] == ["CCO", "c1ccccc1O"]
        assert all(float(r["neg_log_px"]) > 0 for r in scores)

        mine.write_text("SMILES\nCCO\nC1CC(\n")
        capsys.readouterr()
        assert main(["score", "--run", str(run), "--molecules", str(mine)]) == 2
        assert "line 3: RDKit cannot parse the SMILES 'C1CC('" in capsys.readouterr().err
        assert main(["sample", "--run", str(run), "--condition", "logp=99"]) == 2
        err = capsys.readouterr().err
        assert "outside the trained range" in err and "--extrapolate" in err
        # asked beyond the range on purpose: the request is taken and recorded as given
        beyond = tmp_path / "beyond.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=99", "--extrapolate",
                     "-n", "3", "--out", str(beyond)]) == 0  # fmt: skip
        rows = list(csv.DictReader(beyond.read_text().splitlines()))
        assert len(rows) == 3 and all(float(r["requested_logp"]) == 99 for r in rows)
        assert "logp=99" in capsys.readouterr().out

    def test_a_run_that_only_fit_samples_with_its_properties(self, data, tmp_path, capsys):
        # experiments/molecules.py trains with pc.fit alone (no finish_run): the run folder
        # still knows the property ranges a request is scaled over
        run = tmp_path / "fit-only"
        pyro.set_rng_seed(0)
        model = MoleculeCVAE(MoleculeConfig.for_data(data, **TINY))
        pc.fit(model, data, epochs=1, batch_size=64, out=run, progress=False)
        assert load_schema(run) == data.schema  # fit wrote attributes.json with config.json
        (run / "attributes.json").unlink()  # a run trained before fit wrote it
        assert load_schema(run) == data.schema  # recomputed from the run's data spec
        out = tmp_path / "mols.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=1.5", "-n", "4",
                     "--out", str(out)]) == 0  # fmt: skip
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert len(rows) == 4 and float(rows[0]["requested_logp"]) == 1.5
        assert "holds no attributes.json" not in capsys.readouterr().err

    def test_word_dropout_embed_dim_and_encoder_flags(self, data, tmp_path, capsys):
        run = tmp_path / "run"
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--embed-dim", "12", "--word-dropout", "0.4", "--encoder", "conv",
                     "--eval-samples", "0",
                     "--out", str(run), "--quiet"]) == 0  # fmt: skip
        model = pc.load(run)
        assert model.config.embed_dim == 12 and model.config.word_dropout == 0.4
        assert model.decoder.embed.embedding_dim == 12
        assert model.config.encoder == "conv" and isinstance(model.encoder, ConvSequenceEncoder)
        # unset: the library's defaults
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--latent-dim", "4", "--hidden", "16", "--eval-samples", "0",
                     "--out", str(tmp_path / "plain"), "--quiet"]) == 0  # fmt: skip
        plain = pc.load(tmp_path / "plain").config
        assert (plain.embed_dim, plain.word_dropout, plain.encoder) == (
            MoleculeConfig.embed_dim,
            MoleculeConfig.word_dropout,
            MoleculeConfig.encoder,
        )
        capsys.readouterr()
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--word-dropout", "1.5", "--out", str(tmp_path / "bad"), "--quiet"]) == 2  # fmt: skip
        assert "word_dropout must be in [0, 1)" in capsys.readouterr().err
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--embed-dim", "8",
                     "--out", str(tmp_path / "digits"), "--quiet"]) == 2  # fmt: skip
        assert "--dataset moses only" in capsys.readouterr().err

    def test_condition_flag_picks_the_properties_and_the_run_keeps_them(
        self, data, tmp_path, capsys
    ):
        run = tmp_path / "logp"
        flags = ["train", "--dataset", "moses", "--train-size", "300", "--batch-size", "64",
                 "--latent-dim", "4", "--hidden", "16", "--eval-samples", "0", "--quiet",
                 "--out", str(run)]  # fmt: skip
        assert main([*flags, "--epochs", "1", "--condition", "logp"]) == 0
        model = pc.load(run)
        assert model.config.condition_dim == 1
        assert json.loads((run / "config.json").read_text())["data"]["condition"] == ["logp"]
        assert load_run_data(run).schema.names == ["logp"]
        # --resume without --dataset or --condition takes both from the run
        assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet",
                     "--latent-dim", "4", "--hidden", "16", "--eval-samples", "0"]) == 0  # fmt: skip
        assert pc.load(run).config.condition_dim == 1
        out = tmp_path / "s.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=2.5", "-n", "3",
                     "--out", str(out)]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["sample", "--run", str(run), "--condition", "qed=0.5"]) == 2
        assert "qed" in capsys.readouterr().err
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--condition", "logp",
                     "--out", str(tmp_path / "d"), "--quiet"]) == 2  # fmt: skip
        assert "for --dataset moses, --condition picks the properties" in capsys.readouterr().err
        assert main(["train", "--dataset", "moses", "--image-size", "8", "--epochs", "1",
                     "--out", str(tmp_path / "m"), "--quiet"]) == 2  # fmt: skip
        assert "--image-size and --condition describe your own data" in capsys.readouterr().err
        assert not (tmp_path / "m").exists()

    def test_property_weight_flag(self, data, tmp_path, capsys):
        run = tmp_path / "run"
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--prior", "conditional", "--property-weight", "10", "--eval-samples", "0",
                     "--out", str(run), "--quiet"]) == 0  # fmt: skip
        model = pc.load(run)
        assert model.config.property_weight == 10.0 and model.property_net is not None
        capsys.readouterr()
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--unconditional", "--property-weight", "10",
                     "--out", str(tmp_path / "vae"), "--quiet"]) == 2  # fmt: skip
        assert "needs a conditional model" in capsys.readouterr().err
        assert not (tmp_path / "vae").exists()
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--property-weight", "1",
                     "--out", str(tmp_path / "digits"), "--quiet"]) == 2  # fmt: skip
        assert "--property-weight and --condition-dropout describe the molecule model" in (
            capsys.readouterr().err
        )

    def test_condition_dropout_and_guidance_flags(self, data, tmp_path, capsys):
        run = tmp_path / "run"
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--condition-dropout", "0.3", "--eval-samples", "0",
                     "--out", str(run), "--quiet"]) == 0  # fmt: skip
        assert pc.load(run).config.condition_dropout == 0.3
        out = tmp_path / "g.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=2.5", "-n", "4",
                     "--guidance", "2", "--out", str(out)]) == 0  # fmt: skip
        with open(out) as f:
            assert len(list(csv.DictReader(f))) == 4
        plain = tmp_path / "plain"
        assert main(["train", "--dataset", "moses", "--train-size", "300", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--eval-samples", "0", "--out", str(plain), "--quiet"]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["sample", "--run", str(plain), "--condition", "logp=2.5",
                     "--guidance", "2"]) == 2  # fmt: skip
        assert "--condition-dropout 0.2" in capsys.readouterr().err
        digits = tmp_path / "digits"
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(digits),
                     "--quiet", "--eval-samples", "0", "--train-size", "100"]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["sample", "--run", str(digits), "--guidance", "1"]) == 2
        assert "drop --guidance" in capsys.readouterr().err


class TestOneCVAE:
    """The molecule model is the CVAE with sequence parts: priors, hierarchy and objectives apply."""

    def test_it_is_a_cvae_with_cvaes_model_and_guide(self, data, model):
        assert isinstance(model, pc.CVAE)
        assert type(model).guide is pc.CVAE.guide
        # the model is CVAE's (MoleculeCVAE.model adds only the property loss's factor, which
        # is off by default): the same sites and log-densities, in training mode too
        x, y = data.train.x[:8], data.train.y[:8]
        for mode in (model.train, model.eval):
            mode()
            traces = []
            for fn in (model.model, lambda *a: pc.CVAE.model(model, *a)):
                pyro.set_rng_seed(3)
                traces.append(poutine.trace(fn).get_trace(x, y))
                traces[-1].compute_log_prob()
            a, b = traces
            assert _sites(a) == _sites(b) == ["data", "z", "x"]
            assert all(torch.equal(a.nodes[k]["log_prob"], b.nodes[k]["log_prob"])
                       for k in ("z", "x"))  # fmt: skip
        model.eval()

    @pytest.mark.parametrize("prior", ["conditional", "mixture", "flow"])
    def test_priors_apply_with_one_argument(self, data, prior):
        pyro.set_rng_seed(0)
        m = build_model(MoleculeConfig.for_data(data, prior=prior, **TINY))
        assert m.config.prior == prior
        h = pc.fit(m, data.subset(64, 16), epochs=1, batch_size=32, objective="iwae",
                   particles=2, progress=False)  # fmt: skip
        assert math.isfinite(h.last["train_loss"])
        ll = pc.log_likelihood(m, data.test.x[:4], data.test.y[:4], num_samples=3)
        assert ll.shape == (4,) and torch.isfinite(ll).all()
        assert m.sample(data.test.y[0], 2).shape == (2, data.image_shape[0])

    def test_a_conditional_prior_reads_the_properties(self, data):
        m = build_model(MoleculeConfig.for_data(data, prior="conditional", **TINY))
        with torch.no_grad():
            m.prior.net.weight.normal_()
        c = m.condition(data.test.y[:2], 2)
        p = m.z_dist(c, (2,)).base_dist
        assert not torch.allclose(p.loc[0], p.loc[1])  # p(z | c) differs between molecules

    def test_fields_set_from_the_molecule_fields_are_refused_when_they_disagree(self, data):
        with pytest.raises(
            ValueError, match="hidden_dims=.* disagrees with hidden_dim=16.*drop hidden_dims"
        ):
            MoleculeConfig.for_data(data, hidden_dims=(32,), **TINY)
        with pytest.raises(ValueError, match="net='mlp' disagrees with encoder='gru'"):
            MoleculeConfig.for_data(data, net="mlp", **TINY)
        with pytest.raises(ValueError, match="likelihood must be 'tokens'"):
            MoleculeConfig.for_data(data, likelihood="bernoulli", **TINY)

    def test_the_vamp_prior_is_refused_naming_the_ones_that_work(self, data):
        with pytest.raises(ValueError, match="use normal, conditional, mixture or flow"):
            MoleculeConfig.for_data(data, prior="vamp", **TINY)

    def test_hierarchy_over_z(self, data):
        pyro.set_rng_seed(0)
        m = build_model(MoleculeConfig.for_data(data, latent_dims=(4, 2), **TINY))
        assert m.latent_sites == ("z1", "z2") and isinstance(m, MoleculeCVAE)
        pc.fit(m, data.subset(64, 16), epochs=1, batch_size=32, progress=False)
        assert m.sample(data.test.y[:2], 3).shape == (2, 3, data.image_shape[0])

    def test_a_checkpoint_of_the_molecule_model_before_it_was_a_cvae_loads(self, data, model,
                                                                           tmp_path):  # fmt: skip
        from pyro_cvae.checkpoint import save_checkpoint

        old_config = {k: v for k, v in model.config.to_dict().items()
                      if k in ("tokens", "max_len", "condition_dim", "latent_dim", "embed_dim",
                               "hidden_dim", "word_dropout", "encoder")}  # fmt: skip
        old_config["__class__"] = "MoleculeConfig"
        weights = dict(model.state_dict())
        weights["zero"] = weights.pop("prior.zero")  # the old model kept N(0, I)'s zero there
        save_checkpoint(tmp_path / "model.pt", {"format": "pyro_cvae.model",
                                                "model_class": "MoleculeCVAE",
                                                "model_config": old_config, "model": weights})  # fmt: skip
        again = pc.load(tmp_path / "model.pt")
        assert again.config == model.config
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                    again.state_dict().values()))  # fmt: skip

    def test_train_with_a_conditional_prior_and_sample(self, data, tmp_path):
        run = tmp_path / "run"
        assert main(["train", "--dataset", "moses", "--train-size", "200", "--epochs", "1",
                     "--batch-size", "64", "--latent-dim", "4", "--hidden", "16",
                     "--prior", "conditional", "--eval-samples", "0", "--out", str(run),
                     "--quiet"]) == 0  # fmt: skip
        model = pc.load(run)
        assert model.config.prior == "conditional" and isinstance(model, MoleculeCVAE)
        out = tmp_path / "mols.csv"
        assert main(["sample", "--run", str(run), "--condition", "logp=2.5", "-n", "5",
                     "--out", str(out)]) == 0  # fmt: skip
        assert len(out.read_text().strip().splitlines()) == 6


class TestPropertyLoss:
    """property_weight (issue 26): a predictor of the properties from tokens, trained on the real
    molecules, and the decoder's soft output from z ~ p(z | c) scored by the frozen predictor."""

    @pytest.fixture
    def prop(self, data):
        pyro.set_rng_seed(0)
        return MoleculeCVAE(MoleculeConfig.for_data(data, property_weight=10.0, **TINY))

    @pytest.mark.parametrize("straight_through", [True, False])
    def test_soft_generation_is_a_distribution_per_position(self, data, prop, straight_through):
        zc = torch.randn(3, 4 + data.schema.width)
        probs, alive = prop.decoder.soft_generate(zc, straight_through=straight_through)
        L = data.image_shape[0]
        assert probs.shape == (3, L, prop.config.vocab_size) and alive.shape == (3, L)
        assert torch.allclose(probs.sum(-1), torch.ones(3, L))
        assert (probs[..., [PAD, 2, 3]] == 0).all()  # padding, start and unknown never drawn
        assert (alive[:, 0] == 1).all() and (alive[:, 1:] <= alive[:, :-1] + 1e-6).all()
        assert torch.allclose(alive[:, 1], 1 - probs[:, 0, END])
        if straight_through:  # the forward pass is a drawn sequence: one-hot rows, 0/1 mask
            assert torch.allclose(probs.max(-1).values, torch.ones(3, L))
            # 0 or 1 up to the rounding of hard + soft - soft.detach() (a few ulp of 1)
            assert torch.allclose(alive, alive.round(), atol=1e-6, rtol=0)
            assert set(alive.round().unique().tolist()) <= {0.0, 1.0}

    def test_straight_through_rows_are_sequences_the_generator_could_draw(self, data, prop):
        """No padding before the end, at most one end token: a sequence of the generator."""
        zc = torch.randn(4, 4 + data.schema.width)
        prop.eval()
        with torch.no_grad():
            ids = prop.decoder.generate(zc)
            probs, alive = prop.decoder.soft_generate(zc)
        drawn = probs.argmax(-1)
        inside = alive > 0  # up to and including each sequence's end token
        # the generator uses torch's Categorical, the relaxation Gumbel-max: the same law,
        # not the same draws, so compare what both guarantee: a valid sequence with one end
        assert (drawn[inside] != PAD).all() and (ids[:, 0] != PAD).all()
        assert ((drawn == END) & inside).sum(-1).le(1).all()

    def test_the_predictor_reads_one_hot_rows_up_to_the_end(self):
        pyro.set_rng_seed(0)
        net = SoftTokenPredictor(6, 4, 8, 2)
        x = torch.nn.functional.one_hot(torch.tensor([[4, 5, 1, 0, 0]]), 6).float()
        other = x.clone()
        other[0, 3:] = torch.nn.functional.one_hot(torch.tensor([4, 5]), 6).float()
        w = torch.tensor([[1.0, 1, 1, 0, 0]])
        assert torch.allclose(net(x, w), net(other, w))  # what follows the end does not count
        assert net(x, w).shape == (1, 2)

    def test_a_factor_in_training_mode_only_and_its_gradients(self, data, prop):
        x, y = data.train.x[:8], data.train.y[:8]
        prop.train()
        tr = poutine.trace(prop.model).get_trace(x, y)
        assert _sites(tr) == ["data", "z", "x", "properties"]
        assert tr.nodes["properties"]["fn"].batch_shape == (8,)
        prop.eval()  # evaluation: the model's log p(x | c) alone
        assert "properties" not in poutine.trace(prop.model).get_trace(x, y).nodes
        # the real term trains the predictor; the generated term trains the decoder, not it
        prop.zero_grad()
        c = prop.condition(y, 8)
        probs, alive = prop.decoder.soft_generate(torch.cat([torch.randn(8, 4), c], -1))
        frozen = {k: v.detach() for k, v in prop.property_net.named_parameters()}
        fake = torch.func.functional_call(prop.property_net, frozen, (probs, alive))
        ((fake - c) ** 2).sum().backward()
        assert all(p.grad is None for p in prop.property_net.parameters())
        assert prop.decoder.out.weight.grad.abs().sum() > 0
        prop.zero_grad()
        prop.property_loss(x, y).sum().backward()
        assert prop.property_net.head[-1].weight.grad.abs().sum() > 0

    def test_trains_saves_and_reloads(self, data, tmp_path):
        pyro.set_rng_seed(0)
        m = MoleculeCVAE(MoleculeConfig.for_data(data, property_weight=10.0, **TINY))
        h = pc.fit(m, data.subset(64, 16), epochs=2, batch_size=32, out=tmp_path / "run",
                   progress=False)  # fmt: skip
        assert all(math.isfinite(r["train_loss"]) for r in h.rows)
        again = pc.load(tmp_path / "run")
        assert again.config.property_weight == 10.0 and again.property_net is not None
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                    again.state_dict().values()))  # fmt: skip

    def test_config_errors_name_the_value_and_the_fix(self, data):
        with pytest.raises(ValueError, match="property_weight must be a number >= 0, got -1"):
            MoleculeConfig.for_data(data, property_weight=-1, **TINY)
        with pytest.raises(ValueError, match="needs a conditional model.*condition_dim=0"):
            MoleculeConfig.for_data(data, unconditional=True, property_weight=1.0, **TINY)
        with pytest.raises(ValueError, match="latent_dims=.4, 2.; set property_weight=0"):
            MoleculeConfig.for_data(data, latent_dims=(4, 2), property_weight=1.0, **TINY)
        assert MoleculeCVAE(MoleculeConfig.for_data(data, **TINY)).property_net is None


class TestGuidance:
    """condition_dropout and classifier-free guidance (issue 26): the decoder learns p(x | z, c)
    and p(x | z); sample(guidance=w) draws from (1 + w) log p(. | z, c) - w log p(. | z)."""

    @pytest.fixture
    def cfg_model(self, data):
        pyro.set_rng_seed(0)
        return MoleculeCVAE(MoleculeConfig.for_data(data, condition_dropout=0.5, **TINY))

    def test_training_drops_the_condition_of_some_molecules_evaluation_of_none(
        self, data, cfg_model
    ):
        dec, C = cfg_model.decoder, cfg_model.config.condition_dim
        c = torch.rand(2000, C) + 0.1
        torch.manual_seed(0)
        dec.train()
        got = dec.condition_input(c)  # (B, C + 1): [c * keep, keep]
        keep = got[:, -1]
        assert got.shape == (2000, C + 1) and set(keep.tolist()) == {0.0, 1.0}
        assert abs(keep.mean().item() - 0.5) < 0.05  # the dropout probability
        assert torch.equal(got[:, :C], c * keep[:, None])
        dec.eval()
        assert torch.equal(dec.condition_input(c), torch.cat([c, torch.ones(2000, 1)], -1))
        # without condition dropout the decoder reads c itself (checkpoints keep their shapes)
        plain = MoleculeCVAE(MoleculeConfig.for_data(data, **TINY)).decoder
        assert plain.condition_input(c) is c
        assert plain.init.in_features == dec.init.in_features - 1

    def test_the_property_loss_decodes_with_the_condition(self, data, monkeypatch):
        m = MoleculeCVAE(MoleculeConfig.for_data(data, condition_dropout=0.9,
                                                 property_weight=1.0, **TINY)).train()  # fmt: skip
        seen = []
        real = m.decoder.soft_generate
        monkeypatch.setattr(m.decoder, "soft_generate", lambda zc: seen.append(zc) or real(zc))
        m.property_loss(data.train.x[:64], data.train.y[:64])
        assert torch.equal(seen[0][:, -1], torch.ones(64))  # no molecule's condition dropped

    def test_guidance_tilts_every_step_as_the_formula_says(self, cfg_model):
        dec = cfg_model.decoder.eval()
        torch.manual_seed(1)
        D, C = cfg_model.config.latent_dim, cfg_model.config.condition_dim
        zc = torch.cat([torch.randn(64, D), torch.rand(64, C), torch.ones(64, 1)], -1)
        z0 = torch.cat([zc[:, :D], torch.zeros(64, C + 1)], -1)
        w = 2.0
        dec.guidance = w
        try:
            ids = dec.generate(zc, greedy=True)  # (64, L)
        finally:
            dec.guidance = 0.0
        # the greedy path by hand: each token the argmax of the tilted log-probabilities
        h, h0 = dec.initial_state(zc), dec.initial_state(z0)
        token = torch.full((64,), dec.start, dtype=torch.long)
        for t in range(3):
            lc, h = dec.step(token, zc, h)
            lu, h0 = dec.step(token, z0, h0)
            tilted = (1 + w) * lc.log_softmax(-1) - w * lu.log_softmax(-1)
            tilted[:, list(dec.banned)] = -torch.inf
            token = tilted.argmax(-1)
            alive = (ids[:, :t] != dec.end).all(1) if t else torch.ones(64, dtype=torch.bool)
            assert torch.equal(ids[alive, t], token[alive])
        assert not torch.equal(ids, dec.generate(zc, greedy=True))  # w = 0 differs

    def test_guidance_zero_is_the_models_own_sampling(self, data, cfg_model):
        c = data.train.y[:5]
        pyro.set_rng_seed(3)
        a = cfg_model.eval().sample(c, 4)
        pyro.set_rng_seed(3)
        b = cfg_model.sample(c, 4, guidance=0.0)
        assert torch.equal(a, b) and cfg_model.decoder.guidance == 0.0
        pyro.set_rng_seed(3)
        g = cfg_model.sample(c, 4, guidance=3.0)
        assert g.shape == a.shape and cfg_model.decoder.guidance == 0.0  # restored
        pyro.set_rng_seed(3)
        with cfg_model.guided(3.0):  # sample() without guidance= keeps the block's
            assert torch.equal(cfg_model.sample(c, 4), g)

    def test_it_trains_saves_and_reloads(self, data, cfg_model, tmp_path):
        pc.fit(cfg_model, data, epochs=1, batch_size=64, out=tmp_path / "run", progress=False)
        again = pc.load(tmp_path / "run")
        assert again.config.condition_dropout == 0.5
        assert all(torch.equal(a, b) for a, b in zip(cfg_model.state_dict().values(),
                                                    again.state_dict().values()))  # fmt: skip
        assert again.sample(data.train.y[:2], 2, guidance=1.0).shape[:2] == (2, 2)

    def test_refusals_name_the_fix(self, data, model):
        with pytest.raises(ValueError, match="needs a model trained with condition_dropout > 0"):
            model.sample(data.train.y[:2], 1, guidance=1.0)
        with pytest.raises(ValueError, match="guidance must be a number >= 0, got -1"):
            model.sample(data.train.y[:2], 1, guidance=-1)
        with pytest.raises(ValueError, match="condition_dropout must be in .0, 1., got 1"):
            MoleculeConfig.for_data(data, condition_dropout=1, **TINY)
        with pytest.raises(ValueError, match="this one has none .condition_dim=0.; set"):
            MoleculeConfig.for_data(data, unconditional=True, condition_dropout=0.2, **TINY)
        dec = MoleculeCVAE(MoleculeConfig.for_data(data, **TINY)).decoder
        dec.guidance = 1.0
        with pytest.raises(ValueError, match="only a decoder trained with condition_dropout"):
            dec.generate(torch.randn(2, 4 + data.schema.width))


class TestControlOnRequests:
    def test_requests_are_test_molecules_and_success_is_counted_per_request(self, data, model):
        pyro.set_rng_seed(0)
        out = control_on_requests(model, data, num_requests=30)
        assert out["requests"] == 30 and 0 <= out["valid"] <= 1
        for name in PROPERTY_TOLERANCES:
            assert 0 <= out[f"{name}_success"] <= out["valid"]
        assert out["success_all"] <= min(out[f"{n}_success"] for n in PROPERTY_TOLERANCES)
        # infinitely wide tolerances: every valid molecule meets every request
        wide = control_on_requests(model, data, num_requests=30,
                                   tolerances=dict.fromkeys(PROPERTY_TOLERANCES, math.inf))  # fmt: skip
        assert wide["success_all"] == wide["valid"]
        with pytest.raises(ValueError, match=r"no tolerance for \['sa'\]"):
            control_on_requests(model, data, names=("logp", "sa"))

    def test_a_model_that_returns_the_requested_molecule_succeeds_everywhere(self, data, model):
        """A stand-in whose samples are the test molecules themselves: every request met."""

        class Oracle:
            config, device, smiles = model.config, model.device, model.smiles

            def sample(self, y, n, temperature=1.0):
                assert torch.equal(y, data.eval_split("test").y[: len(y)])
                return data.eval_split("test").x[: len(y)].unsqueeze(1)

        out = control_on_requests(Oracle(), data, num_requests=20)
        assert out["valid"] == 1 and out["success_all"] == 1
        assert out["logp_mae"] < 1e-6 and out["logp_spearman"] == pytest.approx(1)
