"""Tests of pyro_cvae.attributes: condition encoders, schema, coloured digits, sample --condition."""

import json
import re

import numpy as np
import pytest
import torch

import pyro_cvae
from pyro_cvae.applications import train_attribute_model
from pyro_cvae.cli import main
from pyro_cvae.data import (
    ATTRIBUTE_KINDS,
    COLORED_DIGITS_SCHEMA,
    DATASETS,
    PALETTE,
    SCHEMAS,
    AttributeSchema,
    Categorical,
    Continuous,
    colorize,
    dominant_color,
    save_schema,
)
from pyro_cvae.judge import attribute_control
from pyro_cvae.train import load_schema

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SCHEMA = AttributeSchema(
    [
        Categorical("digit", "0123"),
        Categorical("color", ["red", "blue"]),
        Continuous("size", 30, 50),
    ]
)


# ------------------------------------------------------------------------------ encoders


class TestEncoders:
    def test_categorical_one_hot(self):
        a = Categorical("color", ["red", "green", "blue"])
        assert a.width == 3
        assert a.encode("green") == [0.0, 1.0, 0.0]
        assert a.decode(torch.tensor([0.1, 0.2, 0.7])) == "blue"

    def test_continuous_normalised(self):
        a = Continuous("size", 30, 50)
        assert a.width == 1 and a.default == 40
        assert a.encode(42) == [pytest.approx(0.6)]
        assert a.encode("30") == [0.0] and a.encode(50) == [1.0]
        assert a.decode(torch.tensor([0.25])) == pytest.approx(35.0)

    def test_errors_name_the_value(self):
        with pytest.raises(
            ValueError, match=r"color='pink' is not a known value; choose one of red, blue"
        ):
            SCHEMA["color"].parse("pink")
        with pytest.raises(ValueError, match=r"size=60.0 is outside the trained range \[30, 50\]"):
            SCHEMA["size"].parse("60")
        with pytest.raises(ValueError, match="size='big' is not a number"):
            SCHEMA["size"].parse("big")
        with pytest.raises(ValueError, match="at least two distinct values"):
            Categorical("x", ["a", "a"])
        with pytest.raises(ValueError, match="finite low < high"):
            Continuous("x", 1.0, 1.0)

    def test_extrapolate_takes_values_beyond_the_range(self):
        # refused by default, the error naming the way to ask on purpose
        with pytest.raises(ValueError, match="extrapolate=True"):
            SCHEMA.encode({"digit": 1, "color": "red", "size": 60})
        # (v - low) / (high - low) beyond [0, 1] on both sides, exactly
        c = SCHEMA.encode([{"digit": 1, "color": "red", "size": 60},
                           {"digit": 2, "color": "red", "size": 25}], extrapolate=True)  # fmt: skip
        size = SCHEMA.offsets()["size"]
        assert c[:, size].flatten().tolist() == [pytest.approx(1.5), pytest.approx(-0.25)]
        assert SCHEMA.parse("digit=0,color=blue,size=70", extrapolate=True)["size"] == 70.0
        assert SCHEMA["size"].decode(c[0, size]) == pytest.approx(60.0)
        # what extrapolate cannot extend stays refused
        for bad, match in (("size=nan", "not finite"), ("size=inf", "not finite"),
                           ("color=pink", "not a known value")):  # fmt: skip
            with pytest.raises(ValueError, match=match):
                SCHEMA.parse(f"digit=0,color=red,{bad}" if "size" in bad
                             else f"digit=0,{bad},size=40", extrapolate=True)  # fmt: skip

    def test_registry(self):
        assert ATTRIBUTE_KINDS == {"categorical": Categorical, "continuous": Continuous}


class TestSchema:
    def test_red_sneakers_size_42(self):
        """The example of the issue: a categorical and a continuous attribute in one vector."""
        c = SCHEMA.encode({"digit": 2, "color": "red", "size": 42})
        assert SCHEMA.width == 7
        torch.testing.assert_close(c, torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.6]]))

    def test_round_trip(self):
        rows = [
            {"digit": "3", "color": "blue", "size": 31.0},
            {"digit": "0", "color": "red", "size": 50.0},
        ]
        back = SCHEMA.decode(SCHEMA.encode(rows))
        assert [r["digit"] for r in back] == ["3", "0"]
        assert [r["color"] for r in back] == ["blue", "red"]
        assert [r["size"] for r in back] == [pytest.approx(31.0), pytest.approx(50.0)]

    def test_parse(self):
        assert SCHEMA.parse("digit=1, color=blue") == {"digit": "1", "color": "blue", "size": 40.0}
        assert SCHEMA.parse("color=red,digit=0,size=33") == {
            "digit": "0",
            "color": "red",
            "size": 33.0,
        }

    @pytest.mark.parametrize(
        "text, message",
        [
            ("digit=1", r"does not give 'color'; add color=<one of red, blue>"),
            (
                "digit=1,color=red,shape=round",
                r"unknown attribute\(s\) \['shape'\]; this model knows digit, color, size",
            ),
            ("digit=1,color", r"cannot read 'color' in condition .*write name=value pairs"),
        ],
    )
    def test_parse_errors(self, text, message):
        with pytest.raises(ValueError, match=message):
            SCHEMA.parse(text)

    def test_decode_checks_width(self):
        with pytest.raises(ValueError, match=r"conditions must have shape \(N, 7\), got \(2, 3\)"):
            SCHEMA.decode(torch.zeros(2, 3))

    def test_json_round_trip(self, tmp_path):
        assert AttributeSchema.from_dict(json.loads(json.dumps(SCHEMA.to_dict()))) == SCHEMA
        save_schema(tmp_path, SCHEMA)
        assert load_schema(tmp_path) == SCHEMA

    def test_unknown_kind(self):
        with pytest.raises(ValueError, match="unknown attribute kind 'ordinal'"):
            AttributeSchema.from_dict({"attributes": [{"kind": "ordinal", "name": "x"}]})

    def test_schema_from_the_data_set_name(self, tmp_path):
        (tmp_path / "config.json").write_text(json.dumps({"data": {"name": "colored-digits"}}))
        assert load_schema(tmp_path) == COLORED_DIGITS_SCHEMA
        (tmp_path / "config.json").write_text(json.dumps({"data": {"name": "digits"}}))
        with pytest.raises(ValueError, match="holds no attributes.json"):
            load_schema(tmp_path)


# ------------------------------------------------------------------------------ coloured digits


@pytest.fixture(scope="module")
def colored():
    return pyro_cvae.load_dataset("colored-digits", binarize="none")


class TestColoredDigits:
    def test_registered(self):
        assert {"colored-digits", "colored-mnist"} <= set(DATASETS) and set(SCHEMAS) <= set(
            DATASETS
        )

    def test_shapes(self, colored, digits):
        assert colored.image_shape == (3, 8, 8)
        assert colored.train.x.shape == (len(digits.train), 3, 8, 8)
        assert colored.train.y.shape == (len(digits.train), COLORED_DIGITS_SCHEMA.width)
        assert COLORED_DIGITS_SCHEMA.width == 17

    def test_digits_are_the_original_labels(self, colored, digits):
        rows = COLORED_DIGITS_SCHEMA.decode(colored.test.y)
        assert [int(r["digit"]) for r in rows] == digits.test.y.tolist()

    def test_color_recovered_from_channel_means(self, colored):
        for split in (colored.train, colored.test):
            rows = COLORED_DIGITS_SCHEMA.decode(split.y)
            want = torch.tensor([list(PALETTE).index(r["color"]) for r in rows])
            assert torch.equal(dominant_color(split.x), want)
            # channel means directly: a channel is lit exactly when the colour has it
            means = split.x.mean(dim=(2, 3))  # (N, 3)
            rgb = torch.tensor([PALETTE[r["color"]] for r in rows])
            assert torch.equal(means > 0, rgb > 0)

    def test_brightness_is_the_brightest_pixel(self, colored):
        rows = COLORED_DIGITS_SCHEMA.decode(colored.val.y)
        b = torch.tensor([r["brightness"] for r in rows])
        torch.testing.assert_close(colored.val.x.amax(dim=(1, 2, 3)), b)
        assert 0.4 <= b.min() and b.max() <= 1.0
        # every colour is used, roughly uniformly
        counts = torch.bincount(dominant_color(colored.train.x), minlength=6)
        assert counts.min() > len(colored.train) / 6 * 0.7

    def test_same_data_every_load(self, colored):
        again = pyro_cvae.load_dataset("colored-digits", binarize="none")
        assert torch.equal(again.train.x, colored.train.x) and torch.equal(
            again.train.y, colored.train.y
        )

    def test_colorize_exact(self):
        grey = torch.tensor([[[[0.0, 0.5], [0.25, 0.5]]]])  # peak 0.5
        out = colorize(grey, torch.tensor([3]), torch.tensor([0.8]))  # yellow
        expected = torch.tensor([[0.0, 0.8], [0.4, 0.8]])
        torch.testing.assert_close(out[0, 0], expected)
        torch.testing.assert_close(out[0, 1], expected)
        assert torch.equal(out[0, 2], torch.zeros(2, 2))

    def test_dominant_color_checks_shape(self):
        with pytest.raises(ValueError, match=r"RGB images \(N, 3, H, W\), got \(2, 1, 8, 8\)"):
            dominant_color(torch.zeros(2, 1, 8, 8))


# ------------------------------------------------------------------------------ model and CLI


class _TintOracle:
    """A stand-in model whose ``sample(c, n)`` tints real test digits of the requested digit
    with the requested colour and brightness (digit and colour + ``shift`` when set)."""

    def __init__(self, test, shift=0):
        self.device = torch.device("cpu")
        self.grey = test.x.amax(dim=1, keepdim=True)  # intensity, as the judge sees it
        self.digit = torch.tensor([int(r["digit"]) for r in COLORED_DIGITS_SCHEMA.decode(test.y)])
        self.shift = shift

    def sample(self, c, n):
        out = []
        for row in COLORED_DIGITS_SCHEMA.decode(c):
            digit = (int(row["digit"]) + self.shift) % 10
            color = (list(PALETTE).index(row["color"]) + self.shift) % len(PALETTE)
            grey = self.grey[self.digit == digit][:n]
            out.append(colorize(grey, torch.full((n,), color), torch.full((n,), row["brightness"])))
        return torch.stack(out)


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("colored_run")
    model, data, _ = train_attribute_model(
        out, epochs=1, hidden_dims=(32,), latent_dim=4, train_size=200
    )
    return out, model, data


class TestAttributeModel:
    def test_run_folder_stores_the_schema(self, attribute_run):
        out, model, _ = attribute_run
        assert model.config.condition_dim == 17 and model.config.num_classes == 0
        assert load_schema(out) == COLORED_DIGITS_SCHEMA
        assert json.loads((out / "attributes.json").read_text())["attributes"][1]["name"] == "color"

    def test_attribute_control_counts(self, attribute_run):
        _, model, data = attribute_run
        m = attribute_control(model, data, num_per_condition=2)
        assert m["num_images"] == 10 * 6 * 3 * 2
        assert m["judge_test_accuracy"] > 0.5  # the digit checker itself works

    def test_attribute_control_of_an_oracle(self, attribute_run):
        """Real test digits tinted as asked score full colour accuracy, zero brightness error
        and about the digit judge's accuracy; shifted colours and digits score about 0."""
        _, _, data = attribute_run
        faithful = attribute_control(_TintOracle(data.test), data, num_per_condition=2)
        assert faithful["color_accuracy"] == 1.0
        assert faithful["brightness_mae"] < 1e-6
        acc = faithful["judge_test_accuracy"]
        assert acc > 0.5 and abs(faithful["digit_control_score"] - acc) < 0.15
        wrong = attribute_control(_TintOracle(data.test, shift=1), data, num_per_condition=2)
        assert wrong["color_accuracy"] == 0.0
        assert wrong["digit_control_score"] < 0.25
        assert wrong["brightness_mae"] < 1e-6

    def test_sample_condition(self, attribute_run, tmp_path):
        out, model, _ = attribute_run
        npz, png = tmp_path / "s.npz", tmp_path / "s.png"
        argv = ["sample", "--run", str(out), "--condition", "digit=5,color=red", "--condition",
                "digit=3,color=cyan,brightness=0.5", "-n", "4", "--npz", str(npz), "--out", str(png)]  # fmt: skip
        assert main(argv) == 0
        assert png.stat().st_size > 0
        with np.load(npz) as f:
            assert f["images"].shape == (8, 3, 8, 8)
            want = COLORED_DIGITS_SCHEMA.encode(
                [{"digit": 5, "color": "red"}] * 4
                + [{"digit": 3, "color": "cyan", "brightness": 0.5}] * 4
            )
            np.testing.assert_allclose(f["conditions"], want.numpy())

    @pytest.mark.parametrize(
        "extra, message",
        [
            ([], r"conditioned on attributes \(digit, color, brightness\); pass --condition"),
            (["--condition", "digit=5,colour=red"], r"unknown attribute\(s\) \['colour'\]"),
            (["--condition", "digit=5,color=pink"], "color='pink' is not a known value"),
            (
                ["--condition", "digit=5,color=red", "--label", "5"],
                "takes --condition, not --label",
            ),
        ],
    )
    def test_sample_condition_errors(self, attribute_run, capsys, extra, message):
        out, _, _ = attribute_run
        assert main(["sample", "--run", str(out), *extra]) == 2
        assert re.search(message, capsys.readouterr().err)

    def test_condition_on_a_label_model_is_refused(self, tmp_path, capsys):
        model = pyro_cvae.CVAE(
            image_shape=(1, 8, 8), num_classes=10, latent_dim=2, hidden_dims=(8,)
        )
        model.save(tmp_path / "checkpoint_000001.pt")
        assert main(["sample", "--run", str(tmp_path), "--condition", "digit=5"]) == 2
        assert "this model is conditioned on labels, use --label" in capsys.readouterr().err

    def test_transfer_and_interpolate_with_conditions(self, attribute_run, tmp_path):
        out, _, _ = attribute_run
        npz = tmp_path / "t.npz"
        assert main(["transfer", "--run", str(out), "-n", "3", "--condition", "digit=1,color=blue",
                     "--condition", "digit=2,color=green", "--out", str(tmp_path / "t.png"),
                     "--npz", str(npz)]) == 0  # fmt: skip
        with np.load(npz) as f:
            assert f["images"].shape == (3, 2, 3, 8, 8)
        assert main(["interpolate", "--run", str(out), "--condition", "digit=1,color=blue",
                     "--condition", "digit=1,color=red", "--steps", "5", "--out",
                     str(tmp_path / "i.png"), "--npz", str(npz)]) == 0  # fmt: skip
        with np.load(npz) as f:
            assert f["images"].shape == (5, 3, 8, 8)

    def test_score_uses_the_condition_vectors(self, attribute_run, tmp_path):
        out, _, _ = attribute_run
        csv_path = tmp_path / "s.csv"
        assert main(["score", "--run", str(out), "-n", "5", "-k", "2", "--out", str(csv_path)]) == 0
        lines = csv_path.read_text().splitlines()
        assert lines[0] == "index,label,neg_log_px" and len(lines) == 6
        assert all(np.isfinite(float(line.split(",")[2])) for line in lines[1:])

    def test_wrong_conditions_score_worse(self, tmp_path):
        """The score is -log p(x | c): the same test images with another colour and digit in
        their condition vectors (the CLI's --images npz labels) score higher on average, by
        several standard errors, under a model trained a little longer (20 epochs)."""
        out = tmp_path / "run"
        _, data, _ = train_attribute_model(
            out, epochs=20, hidden_dims=(32,), latent_dim=4, train_size=600
        )
        n = 100
        x, c = data.test.x[:n], data.test.y[:n]
        rows = COLORED_DIGITS_SCHEMA.decode(c)
        names = list(PALETTE)
        for row in rows:  # another colour and digit, same brightness
            row["color"] = names[(names.index(row["color"]) + 3) % len(names)]
            row["digit"] = str((int(row["digit"]) + 5) % 10)
        wrong = COLORED_DIGITS_SCHEMA.encode(rows)

        def scores(cond, name):
            npz = tmp_path / f"{name}.npz"
            np.savez(npz, images=x.numpy(), labels=cond.numpy())
            csv_path = tmp_path / f"{name}.csv"
            argv = ["score", "--run", str(out), "--images-npz", str(npz), "-k", "4", "--out",
                    str(csv_path)]  # fmt: skip
            assert main(argv) == 0
            return np.array([float(r.split(",")[2]) for r in csv_path.read_text().splitlines()[1:]])

        right, bad = scores(c, "right"), scores(wrong, "wrong")
        diff = bad - right
        assert diff.mean() > 4 * diff.std() / np.sqrt(n)  # about 10 standard errors over seeds


def test_a_condition_giving_an_attribute_twice_is_refused():
    """Issue 25, item 20: the last value does not silently win."""
    schema = AttributeSchema([Categorical("shape", ["square", "hbar"]), Continuous("size", 0, 2)])
    with pytest.raises(ValueError, match="gives 'shape' twice"):
        schema.parse("shape=square,shape=hbar")
    with pytest.raises(ValueError, match=r"give e\.g\. size=1$"):
        schema.parse("shape=square,size=big")
