"""experiments/_common.py: the resumable row runner, the NLL summary, the results writer; and
the public argument types of pyro_cvae.cli.types that the experiment scripts parse with."""

import argparse
import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_cvae
from pyro_cvae.cli import types

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("_common", ROOT / "experiments" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    return pyro_cvae.load_dataset("digits").subset(120, 30)


class TinyRow:
    """One row: a small unconditional VAE fitted with pc.fit into ``folder``; counts calls."""

    def __init__(self, folder: Path, data):
        self.folder, self.data, self.targets, self.evaluated = folder, data, [], 0
        cfg = pyro_cvae.ModelConfig(image_shape=tuple(data.image_shape), num_classes=0,
                                    latent_dim=2, hidden_dims=(8,))  # fmt: skip
        torch.manual_seed(0)
        self.model = pyro_cvae.build_model(cfg)
        self.cfg = pyro_cvae.TrainConfig(epochs=1, batch_size=40, seed=0, validate_every=0)

    def train(self, epochs: int):
        self.targets.append(epochs)
        return pyro_cvae.fit(self.model, self.data, self.cfg.replace(epochs=epochs),
                             out=self.folder, resume=True, progress=False)  # fmt: skip

    def evaluate(self, history) -> dict:
        self.evaluated += 1
        return {"epochs": len(history), "train_loss": history.last["train_loss"]}


# ---------------------------------------------------------------- the row runner


class TestRunRow:
    def test_a_row_trains_and_a_second_call_reads_the_cache(self, common, data, tmp_path):
        folder, settings = tmp_path / "row", {"epochs": 2, "hidden": (8,)}
        first = TinyRow(folder, data)
        row = common.run_row(folder, 2, first.train, first.evaluate,
                             common.RowFile(folder / "row.json", settings), epochs_per_call=1)  # fmt: skip
        assert first.targets == [1, 2] and first.evaluated == 1
        assert row["final"] is True and row["epochs"] == 2
        saved = json.loads((folder / "row.json").read_text())
        assert saved["settings"] == {"epochs": 2, "hidden": [8]} and saved["epochs"] == 2

        again = TinyRow(folder, data)
        cached = common.run_row(folder, 2, again.train, again.evaluate,
                                common.RowFile(folder / "row.json", settings), epochs_per_call=1)  # fmt: skip
        assert again.targets == [] and again.evaluated == 0  # nothing trained or evaluated
        assert cached["train_loss"] == row["train_loss"]

    def test_other_settings_are_not_read_from_the_cache(self, common, data, tmp_path):
        folder = tmp_path / "row"
        first = TinyRow(folder, data)
        common.run_row(folder, 1, first.train, first.evaluate,
                       common.RowFile(folder / "row.json", {"lr": 1e-3}))  # fmt: skip
        other = TinyRow(folder, data)
        common.run_row(folder, 1, other.train, other.evaluate,
                       common.RowFile(folder / "row.json", {"lr": 3e-3}))  # fmt: skip
        assert other.evaluated == 1  # evaluated again (from the run folder's checkpoint)

    def test_a_stopped_row_is_cached_not_final_and_resumes_from_its_checkpoint(
        self, common, data, tmp_path
    ):
        folder = tmp_path / "row"
        results = {"rows": []}
        saves = []
        first = TinyRow(folder, data)
        row = common.run_row(
            folder, 3, first.train, first.evaluate,
            common.ResultsRows(results, {"key": "vae"}, saves.append),
            epochs_per_call=1, stop=lambda: len(first.targets) >= 1,
        )  # fmt: skip
        assert first.targets == [1] and row["final"] is False and row["epochs"] == 1
        assert results["rows"] == [row] and len(saves) == 1

        more = TinyRow(folder, data)
        row = common.run_row(folder, 3, more.train, more.evaluate,
                             common.ResultsRows(results, {"key": "vae"}, saves.append),
                             epochs_per_call=1)  # fmt: skip
        assert more.targets == [2, 3]  # from the checkpoint's epoch 1, not from scratch
        assert row["final"] is True and row["epochs"] == 3
        assert [r["epochs"] for r in results["rows"]] == [3]  # the row replaced, not added

    def test_every_call_can_be_cached_and_restore_first_sees_every_epoch(
        self, common, data, tmp_path
    ):
        folder = tmp_path / "row"
        first = TinyRow(folder, data)
        common.run_row(folder, 1, first.train, first.evaluate,
                       common.RowFile(folder / "row.json", {"epochs": 1}))  # fmt: skip
        seen = []
        more = TinyRow(folder, data)
        common.run_row(folder, 3, more.train, more.evaluate,
                       common.RowFile(folder / "row.json", {"epochs": 3}), epochs_per_call=1,
                       evaluate_every_call=True, restore_first=True,
                       on_call=lambda h: seen.append(len(h)))  # fmt: skip
        assert more.targets == [1, 2, 3] and seen == [1, 2, 3] and more.evaluated == 3

    def test_refuses_a_budget_of_no_epochs(self, common, tmp_path):
        cache = common.RowFile(tmp_path / "row.json", {})
        with pytest.raises(ValueError, match="at least one epoch"):
            common.run_row(tmp_path, 0, None, None, cache)
        with pytest.raises(ValueError, match="epochs_per_call must be >= 1"):
            common.run_row(tmp_path, 2, None, None, cache, epochs_per_call=0)

    def test_row_status(self, common, data, tmp_path):
        assert common.row_status(tmp_path / "none", 5) == "not started"
        row = TinyRow(tmp_path / "row", data)
        row.train(1)
        assert common.row_status(tmp_path / "row", 5) == "still training: 1 of 5 epochs"


# ---------------------------------------------------------------- the NLL


class TestNLL:
    LOG_PX = [-90.0, -85.5, -88.25, -92.0, -86.0]

    def test_standard_error_is_the_sample_std_over_root_n(self, common):
        expected = np.std(self.LOG_PX, ddof=1) / math.sqrt(len(self.LOG_PX))
        assert common.standard_error(self.LOG_PX) == pytest.approx(expected, rel=1e-12)
        # by hand: mean -88.35, squared deviations sum 29.7, s^2 = 7.425, s.e.^2 = 7.425 / 5
        assert common.standard_error(self.LOG_PX) == pytest.approx(math.sqrt(1.485), rel=1e-12)

    def test_nll_summary_of_a_tensor(self, common):
        s = common.nll_summary(torch.tensor(self.LOG_PX, dtype=torch.float64))
        assert s["nll"] == pytest.approx(88.35, rel=1e-12)
        assert s["nll_stderr"] == pytest.approx(
            np.std(self.LOG_PX, ddof=1) / math.sqrt(5), rel=1e-12
        )
        # the formula of the rows before experiments/_common (torch's std is ddof=1)
        t = torch.tensor(self.LOG_PX, dtype=torch.float64)
        assert s["nll_stderr"] == pytest.approx((t.std() / math.sqrt(5)).item(), rel=1e-12)

    def test_one_image_has_no_standard_error(self, common):
        s = common.nll_summary([-90.0])
        assert s["nll"] == 90.0 and math.isnan(s["nll_stderr"])
        with pytest.raises(ValueError, match="at least one test image"):
            common.nll_summary([])


# ---------------------------------------------------------------- the writer


class TestWriter:
    def test_markdown_json_csv_round_trip(self, common, tmp_path):
        header = ["method", "k", "NLL", "test error q(y\\|x) %"]
        rows = [["VAE", 1, "86.76", "-"], ["IWAE", 50, "84.78", ""]]
        lines = ["# Title", "", *common.markdown_table(header, rows, ["---", "---:", "---:", "---"]),
                 "", "text after"]  # fmt: skip
        payload = {"settings": {"ks": [1, 50]}, "rows": [{"k": 1, "nll": 86.76}]}
        written = common.write_results(tmp_path / "res" / "table.tiny", payload, lines,
                                       ["method", "k"], [["VAE", 1], ["IWAE", 50]])  # fmt: skip
        assert sorted(p.name for p in written) == ["table.tiny.csv", "table.tiny.json",
                                                   "table.tiny.md"]  # fmt: skip
        assert json.loads((tmp_path / "res" / "table.tiny.json").read_text()) == payload
        with open(tmp_path / "res" / "table.tiny.csv", newline="") as f:
            assert list(csv.reader(f)) == [["method", "k"], ["VAE", "1"], ["IWAE", "50"]]
        md = (tmp_path / "res" / "table.tiny.md").read_text()
        assert md == "\n".join(lines)
        got_header, got_rows = common.read_markdown_table(md)
        assert got_header == header
        assert got_rows == [[str(c) for c in r] for r in rows]
        assert "|---|---:|---:|---|" in md

    def test_only_what_is_given_is_written(self, common, tmp_path):
        written = common.write_results(tmp_path / "x", markdown="# only a page\n")
        assert [p.name for p in written] == ["x.md"] and not (tmp_path / "x.json").exists()

    def test_markdown_table_refuses_alignments_of_another_width(self, common):
        with pytest.raises(ValueError, match="one per column"):
            common.markdown_table(["a", "b"], [], ["---"])
        with pytest.raises(ValueError, match="no Markdown table"):
            common.read_markdown_table("no table here")


# ---------------------------------------------------------------- pyro_cvae.cli.types


class TestArgumentTypes:
    def test_values(self):
        assert types.int_list("1,5, 50") == (1, 5, 50)
        assert types.nonnegative_int_list("0,1,2") == (0, 1, 2)
        assert types.nonnegative_int_list("") == ()
        assert types.float_list("0.5,1,2e-3") == (0.5, 1.0, 0.002)
        assert types.key_value("components=10") == ("components", 10)
        assert types.key_value("name=flow") == ("name", "flow")
        assert types.positive_int("28") == 28
        assert types.index_pair("0,5") == (0, 5)
        assert types.comma_list("age, income") == ("age", "income")

    @pytest.mark.parametrize(
        "parse, text, message",
        [
            (types.int_list, "0,5", "positive integers"),
            (types.int_list, "a", "comma-separated integers"),
            (types.nonnegative_int_list, "-1", "integers >= 0"),
            (types.float_list, "x", "comma-separated numbers"),
            (types.float_list, "", "at least one number"),
            (types.positive_int, "0", "positive integer"),
            (types.index_pair, "1", "two comma-separated"),
            (types.key_value, "novalue", "KEY=VALUE"),
            (types.comma_list, " , ", "comma-separated names"),
        ],
    )
    def test_refusals_name_the_text(self, parse, text, message):
        with pytest.raises(argparse.ArgumentTypeError, match=message) as e:
            parse(text)
        assert repr(text) in str(e.value)

    def test_the_package_commands_still_import_them_from_common(self):
        from pyro_cvae.cli import _common

        assert _common.int_list is types.int_list and _common.positive_int is types.positive_int
