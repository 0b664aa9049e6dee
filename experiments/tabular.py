r"""Synthetic tables: our CVAE (row likelihood ``"table"``) against ctgan's TVAE and CTGAN.

Tables that ship inside scikit-learn, conditioned on their class column: ``wine`` (178 rows,
13 continuous columns, 3 classes) and ``breast_cancer`` (569 rows, 30 continuous columns, 2
classes). Each is split once, seeded and stratified, into 70% training and 30% held-out rows.
Every model gets the same budget of training seconds (``--budget``, preprocessing included):
the number of epochs is set from short timed calibration fits so that the final fit takes
about the budget; the seconds it really took are reported beside it.

* **CVAE**: ``pc.CVAE(ModelConfig.for_data(...))`` with the class as its label condition, the
  data columns modelled by the ``"table"`` likelihood, trained with the ELBO by ``pc.fit``;
  rows for class k are ``model.sample(k, n, mean=False)`` decoded with the table's schema.
* **TVAE**, **CTGAN** (the ``ctgan`` package, Xu et al. [1]): fit on the training rows with
  the class as a discrete column; CTGAN samples rows for class k with its conditional vector
  (``condition_column``), TVAE cannot condition, so its rows are drawn unconditionally; the rows
  of both carry the class column they generated (CTGAN's conditional vector does not fix it). Without ``ctgan`` installed their rows say so.

Measured on as many synthetic rows as there are training rows, in the training rows' class
proportions:

* **ML efficacy**: a random forest trained on synthetic rows, accuracy on the real held-out rows,
  against the same forest trained on the real training rows (first line of each table);
* **column fidelity**: the mean Kolmogorov-Smirnov statistic over continuous columns against
  the real training rows, the total variation distance of the class column, and the mean absolute
  difference of the Pearson correlation matrices (off-diagonal entries);
* **conditional fidelity**: the fraction of rows generated for class k that a random forest
  trained on the real training rows assigns to k;
* **training seconds** and **rows per second** when sampling ``--sample-rows`` rows.

Every (table, model) cell is cached under ``--work-dir``: stop and start again with the same
arguments to continue. Results are rewritten after each cell into ``--results-dir`` as
``tabular.json`` and ``tabular.md`` (``tabular.tiny.*`` with ``--tiny``). One torch thread.

Usage::

    pip install pyro_cvae[bench]                  # ctgan; it needs pandas < 3
    python experiments/tabular.py --budget 40     # the committed results (about 12 minutes)
    python experiments/tabular.py --tiny          # seconds, CVAE on wine (smoke test)

References:
    [1] Xu, Skoularidou, Cuesta-Infante and Veeramachaneni, Modeling Tabular Data using
        Conditional GAN, NeurIPS 2019 (CTGAN and TVAE).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp
from sklearn import datasets as sk_datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import pyro_cvae as pc
from pyro_cvae.data import Split
from pyro_cvae.data.tables import TableSchema

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # experiments/_common.py, whether run as a script or loaded by path
from _common import markdown_table  # noqa: E402
from _common import write_results as write_files  # noqa: E402

TARGET = "class"
#: table name -> scikit-learn loader
TABLES = {"wine": sk_datasets.load_wine, "breast_cancer": sk_datasets.load_breast_cancer}
MODELS = ("CVAE", "TVAE", "CTGAN")
PEERS = ("TVAE", "CTGAN")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default=None, help="comma-separated tables (default: all)")
    p.add_argument("--models", default=None, help="comma-separated models (default: all)")
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per model")
    p.add_argument("--sample-rows", type=int, default=5000, help="rows timed at sampling")
    p.add_argument("--seed", type=int, default=0, help="split, training and sampling seed")
    p.add_argument("--results-dir", default=str(HERE / "results"), help="where results go")
    p.add_argument("--work-dir", default=str(HERE / "runs" / "tabular"), help="cached cells")
    p.add_argument("--tiny", action="store_true", help="smoke-test budget: CVAE on wine, 1 s")
    return p


# ---------------------------------------------------------------- data


def load_table(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows), the class column ``class`` as text, stratified split."""
    bunch = TABLES[name](as_frame=True)
    frame = bunch.frame.rename(columns={"target": TARGET})
    frame[TARGET] = [str(bunch.target_names[i]) for i in frame[TARGET]]
    train, test = train_test_split(frame, test_size=0.3, random_state=seed,
                                   stratify=frame[TARGET])  # fmt: skip
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _as_dataset(name: str, train: pd.DataFrame, classes: list[str], seed: int) -> pc.Dataset:
    features = train.drop(columns=[TARGET])
    schema = TableSchema.infer(features, name)
    x = schema.encode(features, name)  # (N, width)
    y = torch.tensor([classes.index(c) for c in train[TARGET]])
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    val = order[: max(2, len(x) // 10)]  # a validation slice for fit's per-epoch bound
    return pc.Dataset(name, Split(x, y), Split(x[val], y[val]), Split(x[val], y[val]),
                      num_classes=len(classes), class_names=tuple(classes), table=schema)  # fmt: skip


def class_counts(train: pd.DataFrame, n: int) -> dict[str, int]:
    """``n`` rows shared out in the training rows' class proportions."""
    freq = train[TARGET].value_counts(normalize=True).sort_index()
    counts = np.floor(freq.to_numpy() * n).astype(int)
    counts[: n - counts.sum()] += 1
    return dict(zip(freq.index, counts.tolist()))


# ---------------------------------------------------------------- generators


class CVAEGenerator:
    name = "CVAE"

    def __init__(self, table: str, seed: int):
        self.table, self.seed = table, seed

    def fit(self, train: pd.DataFrame, epochs: int) -> None:
        self.classes = sorted(train[TARGET].unique())
        self.data = _as_dataset(self.table, train, self.classes, self.seed)
        cfg = pc.ModelConfig.for_data(self.data, latent_dim=8, hidden_dims=(128, 128))
        torch.manual_seed(self.seed)
        self.model = pc.CVAE(cfg)
        pc.fit(self.model, self.data, epochs=epochs, batch_size=64, lr=1e-3, seed=self.seed,
               validate_every=0, progress=False)  # fmt: skip

    def sample(self, counts: dict[str, int]) -> pd.DataFrame:
        parts = []
        for cls, n in counts.items():
            if n == 0:
                continue
            x = self.model.sample(self.classes.index(cls), n, mean=False)  # (n, width)
            rows = self.data.table.decode(x)
            rows[TARGET] = cls
            parts.append(rows)
        return pd.concat(parts, ignore_index=True)


class CTGANGenerator:
    """ctgan's TVAE (unconditional sampling) or CTGAN (sampling by class)."""

    def __init__(self, name: str, seed: int):
        self.name, self.seed = name, seed

    def fit(self, train: pd.DataFrame, epochs: int) -> None:
        import ctgan  # optional: the benchmark extra (pip install pyro_cvae[bench])

        torch.manual_seed(self.seed)
        cls = ctgan.TVAE if self.name == "TVAE" else ctgan.CTGAN
        self.model = cls(epochs=epochs, enable_gpu=False)
        self.model.fit(train, discrete_columns=[TARGET])

    def sample(self, counts: dict[str, int]) -> pd.DataFrame:
        torch.manual_seed(self.seed)
        n = sum(counts.values())
        if self.name == "TVAE":
            return self.model.sample(n)
        parts = [self.model.sample(k, condition_column=TARGET, condition_value=c)
                 for c, k in counts.items() if k]  # fmt: skip
        return pd.concat(parts, ignore_index=True)


def make_generator(name: str, table: str, seed: int):
    return CVAEGenerator(table, seed) if name == "CVAE" else CTGANGenerator(name, seed)


_WARM: set[str] = set()


def _timed_fit(name: str, table: str, train: pd.DataFrame, epochs: int, seed: int):
    gen = make_generator(name, table, seed)
    t0 = time.perf_counter()
    gen.fit(train, epochs)
    return gen, time.perf_counter() - t0


def train_to_budget(name: str, table: str, train: pd.DataFrame, budget: float, seed: int):
    """Fit with the number of epochs that fills ``budget`` seconds: (generator, epochs, secs).

    Timed calibration fits of 1 and b epochs (b grown fourfold until the difference is a fifth
    of the budget, so timing noise does not dominate) give the seconds per epoch and the fixed
    cost (setup, ctgan's per-column mode fitting), after one untimed warm-up fit per model and
    process; the final fit takes ``(budget - fixed) / per epoch`` epochs, at least one."""
    if name not in _WARM:  # the first fit in a process pays one-off costs (lazy imports, JIT)
        _timed_fit(name, table, train, 1, seed)
        _WARM.add(name)
    ta = _timed_fit(name, table, train, 1, seed)[1]
    b = 4
    while True:
        tb = _timed_fit(name, table, train, b, seed)[1]
        if tb - ta >= 0.2 * budget or tb >= budget:
            break
        b *= 4
    per_epoch = max(1e-4, (tb - ta) / (b - 1))
    fixed = max(0.0, ta - per_epoch)
    epochs = max(1, int((budget - fixed) / per_epoch))
    gen, seconds = _timed_fit(name, table, train, epochs, seed)
    return gen, epochs, seconds


# ---------------------------------------------------------------- metrics


def _forest(frame: pd.DataFrame, seed: int) -> RandomForestClassifier:
    clf = RandomForestClassifier(n_estimators=100, random_state=seed)
    return clf.fit(frame.drop(columns=[TARGET]).to_numpy(float), frame[TARGET].astype(str))


def _accuracy(clf, frame: pd.DataFrame) -> float:
    pred = clf.predict(frame.drop(columns=[TARGET]).to_numpy(float))
    return float((pred == frame[TARGET].astype(str).to_numpy()).mean())


def fidelity(real: pd.DataFrame, synth: pd.DataFrame) -> dict:
    """Mean KS over continuous columns, TVD of the class column, mean |corr difference|."""
    cols = [c for c in real.columns if c != TARGET]
    ks = [ks_2samp(real[c].to_numpy(float), synth[c].to_numpy(float)).statistic for c in cols]
    p = real[TARGET].value_counts(normalize=True)
    q = synth[TARGET].astype(str).value_counts(normalize=True)
    tvd = 0.5 * float(p.sub(q, fill_value=0).abs().sum())
    cr = np.nan_to_num(real[cols].astype(float).corr().to_numpy())
    cs = np.nan_to_num(synth[cols].astype(float).corr().to_numpy())
    off = ~np.eye(len(cols), dtype=bool)
    return {"ks_mean": float(np.mean(ks)), "class_tvd": tvd,
            "corr_diff": float(np.abs(cr - cs)[off].mean())}  # fmt: skip


def evaluate_cell(name: str, table: str, train, test, budget: float, args) -> dict:
    gen, epochs, seconds = train_to_budget(name, table, train, budget, args.seed)
    synth = gen.sample(class_counts(train, len(train)))
    synth = synth[train.columns]
    real_clf = _forest(train, args.seed)
    t0 = time.perf_counter()
    gen.sample(class_counts(train, args.sample_rows))
    rate = args.sample_rows / (time.perf_counter() - t0)
    return {
        "budget_s": budget,
        "train_s": round(seconds, 2),
        "epochs": epochs,
        "ml_efficacy": _accuracy(_forest(synth, args.seed), test),
        "conditional_fidelity": _accuracy(real_clf, synth),
        **fidelity(train, synth),
        "rows_per_s": round(rate, 1),
    }


# ---------------------------------------------------------------- the run


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.tiny:  # wine and the CVAE unless other tables / models are named
        args.tables, args.models = args.tables or "wine", args.models or "CVAE"
        args.budget, args.sample_rows = 1.0, 200
    args.tables, args.models = args.tables or ",".join(TABLES), args.models or ",".join(MODELS)
    torch.set_num_threads(1)
    tables = [t for t in args.tables.split(",") if t]
    models = [m for m in args.models.split(",") if m]
    for t in tables:
        if t not in TABLES:
            raise SystemExit(f"unknown table {t!r}; choose from {', '.join(TABLES)}")
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    have_ctgan = importlib.util.find_spec("ctgan") is not None
    suffix = ".tiny" if args.tiny else ""
    work = Path(args.work_dir) / f"budget{args.budget:g}_seed{args.seed}{suffix}"
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"budget_s": args.budget, "seed": args.seed, "threads": 1,
                 "sample_rows": args.sample_rows, "tables": {}}  # fmt: skip
    if have_ctgan:
        from importlib.metadata import version

        out["ctgan_version"] = version("ctgan")
    for t in tables:
        train, test = load_table(t, args.seed)
        real = _forest(train, args.seed)
        rows: dict = {"real": {"ml_efficacy": _accuracy(real, test),
                               "conditional_fidelity": _accuracy(real, train)}}  # fmt: skip
        out["tables"][t] = {"train_rows": len(train), "test_rows": len(test),
                            "columns": train.shape[1] - 1, "classes": int(train[TARGET].nunique()),
                            "rows": rows}  # fmt: skip
        for m in models:
            cell = work / f"{t}.{m}.json"
            if m in PEERS and not have_ctgan:
                rows[m] = {"skipped": "ctgan is not installed (pip install pyro_cvae[bench])"}
            elif cell.is_file():  # finished in an earlier run
                rows[m] = json.loads(cell.read_text())
            else:
                rows[m] = evaluate_cell(m, t, train, test, args.budget, args)
                cell.write_text(json.dumps(rows[m], indent=2))
            print(t, m, json.dumps(rows[m]), flush=True)
            _write(out, Path(args.results_dir), suffix)
    _write(out, Path(args.results_dir), suffix)
    return out


def _write(out: dict, folder: Path, suffix: str) -> None:
    write_files(folder / f"tabular{suffix}", out, markdown(out))


def _fmt(v, digits=3) -> str:
    if isinstance(v, float) and v >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def markdown(out: dict) -> str:
    b = out["budget_s"]
    lines = [
        "# Synthetic tables: CVAE against TVAE and CTGAN",
        "",
        f"Written by `experiments/tabular.py`. Budget: **{b:g} training seconds per model** "
        f"(epochs set by timed calibration fits, preprocessing included), one torch thread, "
        f"2 shared CPU cores, seed {out['seed']}; ctgan {out.get('ctgan_version', 'not installed')}. "
        "Synthetic rows: as many as training rows, in their class proportions. ML efficacy: "
        "random forest trained on the rows, accuracy on real held-out rows (the `real` line: "
        "trained on real rows). KS: mean over continuous columns vs real training rows (lower is "
        "better). Class TVD: total variation distance of the class column (the CVAE's rows carry "
        "the class they were generated for, so 0; TVAE and CTGAN rows carry the class they "
        "generated: CTGAN is asked per class through its conditional vector, which does not fix "
        "it). Corr diff: mean absolute difference of "
        "the off-diagonal Pearson correlations. Conditional fidelity: rows whose class column is k "
        "that a forest trained on real rows calls k (`real`: on its own training rows). "
        f"Rows/s: sampling {out['sample_rows']} rows.",
    ]
    for t, info in out["tables"].items():
        lines += [
            "",
            f"## {t} ({info['train_rows']} training / {info['test_rows']} held-out rows, "
            f"{info['columns']} columns, {info['classes']} classes)",
            "",
        ]
        table = []
        for m, r in info["rows"].items():
            if "skipped" in r:
                table.append([m, f"{b:g}", r["skipped"], *[""] * 7])
                continue
            cells = [r.get(k, "") for k in ("budget_s", "train_s", "epochs", "ml_efficacy",
                                              "ks_mean", "class_tvd", "corr_diff",
                                              "conditional_fidelity", "rows_per_s")]  # fmt: skip
            if m == "real":
                cells[0] = "-"
            table.append([m, *(_fmt(c) for c in cells)])
        lines += markdown_table(
            ["model", "budget s", "train s", "epochs", "ML efficacy", "KS mean", "class TVD",
             "corr diff", "cond. fidelity", "rows/s"], table,
        )  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
