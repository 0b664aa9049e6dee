r"""What the experiment scripts share: the resumable row runner, the NLL summary, the writer.

An experiment is a results table whose rows are trained models. Every script used to carry its
own copy of three things, now here once:

* :func:`run_row`: train one row in its run folder with :func:`pyro_cvae.fit` (or a function
  built on it) a few epochs per call, resuming from the folder's checkpoint, and cache the
  evaluated row in a :class:`RowFile` (a JSON file in the run folder) or in the results JSON
  (:class:`ResultsRows`); a row is ``final`` once it has trained its epochs, else still
  training. A second call with the same settings reads the cache instead of training.
* :func:`nll_summary`: the test negative log-likelihood of a row and its standard error,
  :math:`\mathrm{s.e.} = s / \sqrt{n}` with :math:`s` the sample standard deviation
  (``ddof=1``) of the per-image log-likelihoods :math:`\log p(x_i)` over the :math:`n` test
  images: the standard error of a mean of :math:`n` independent terms.
* :func:`write_results`: one writer of a results table as Markdown (``.md``), JSON (``.json``)
  and, when given rows of a table, CSV (``.csv``) under one stem; :func:`markdown_table` writes
  the table lines and :func:`read_markdown_table` reads them back.

The scripts are run as ``python experiments/<name>.py`` (and loaded by path in the tests), so
this module is found beside them, not as a package: each script puts its own folder on
``sys.path`` before importing it. It uses the public API of :mod:`pyro_cvae` only.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pyro_cvae.checkpoint import trained_epochs

__all__ = [
    "RowCache",
    "RowFile",
    "ResultsRows",
    "as_json",
    "markdown_table",
    "nll_summary",
    "read_markdown_table",
    "row_status",
    "run_row",
    "standard_error",
    "write_results",
]


# ---------------------------------------------------------------- the row runner


def as_json(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


class RowCache(Protocol):
    """Where an evaluated row is kept between calls: :meth:`read` it back, :meth:`write` it."""

    def read(self) -> dict | None:
        """The row stored for these settings, or None (none yet, or one of other settings)."""

    def write(self, row: dict) -> None:
        """Store ``row`` (replacing any earlier one of these settings)."""


class RowFile:
    """A row cached as one JSON file, ``{settings_key: settings, **row}``, in its run folder.

    Args:
        path: the JSON file (e.g. ``<run folder>/row.json``).
        settings: what must be equal for the stored row to be reused (compared as JSON).
        settings_key: the field of the file that holds ``settings``.
        same: how two settings are compared (default: equal as JSON); e.g. to ignore fields
            that do not change the row.
    """

    def __init__(
        self,
        path: str | Path,
        settings: dict,
        settings_key: str = "settings",
        same: Callable[[dict, dict], bool] | None = None,
    ):
        self.path, self.settings, self.settings_key = Path(path), settings, settings_key
        self.same = same or (lambda a, b: as_json(a) == as_json(b))

    def read(self) -> dict | None:
        if not self.path.is_file():
            return None
        saved = json.loads(self.path.read_text())
        return saved if self.same(saved.get(self.settings_key) or {}, self.settings) else None

    def write(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({self.settings_key: self.settings, **row}, indent=2))


class ResultsRows:
    """Rows cached in the ``rows`` list of a results dict (the experiment's results JSON).

    A row belongs to this cache when its fields ``key`` match; :meth:`write` drops the older row
    of that key, appends the new one (with the fields of ``key`` it lacks) and calls
    ``save(results)`` so the files are rewritten.

    Args:
        results: the results dict, with a list ``results["rows"]``.
        key: the fields that name the row, e.g. ``{"key": "m2", "seed": 0}``.
        save: writes the results files; called after every :meth:`write`.
    """

    def __init__(self, results: dict, key: dict, save: Callable[[dict], None] | None = None):
        self.results, self.key, self.save = results, key, save

    def _is_mine(self, row: dict) -> bool:
        return all(row.get(k) == v for k, v in self.key.items())

    def read(self) -> dict | None:
        return next((r for r in self.results["rows"] if self._is_mine(r)), None)

    def write(self, row: dict) -> None:
        # the row carries its key (fields it lacks are added), so read() finds it again
        row.update({k: v for k, v in self.key.items() if k not in row})
        self.results["rows"] = [r for r in self.results["rows"] if not self._is_mine(r)] + [row]
        if self.save is not None:
            self.save(self.results)


def _final(row: dict) -> bool:
    # rows cached before rows said so were written only when final
    return bool(row.get("final", True))


def run_row(
    folder: str | Path,
    epochs: int,
    train: Callable[[int], Any],
    evaluate: Callable[[Any], dict],
    cache: RowCache,
    *,
    epochs_per_call: int | None = None,
    evaluate_every_call: bool = False,
    restore_first: bool = False,
    on_call: Callable[[Any], None] | None = None,
    stop: Callable[[], bool] | None = None,
    is_final: Callable[[dict], bool] = _final,
) -> dict | None:
    """Train (or resume) one row of a results table in its run folder and cache it, evaluated.

    A cached row that is final (by ``is_final``: its ``final`` field, true for rows written
    before that field) is returned as it is, nothing trained. Otherwise the row trains from the
    epochs its run folder's checkpoint holds: ``train(epochs_so_far)`` is called with growing
    targets, ``epochs_per_call`` more each time (all at once when None), until ``epochs``;
    ``train`` fits the row's model into ``folder`` with ``resume=True`` and returns its
    :class:`~pyro_cvae.train.History` (``len(history)`` is the epochs trained). A run folder
    that already holds ``epochs`` epochs but no cached row is called once, to restore and
    evaluate it.

    Args:
        folder: the row's run folder (its checkpoints say how far it trained).
        epochs: the row's budget; the row is ``final`` when it trained them.
        train: ``train(target_epochs) -> History``, resuming the run folder.
        evaluate: ``evaluate(history) -> row dict``; called once the row is final, or after
            every call with ``evaluate_every_call`` (rows of long runs, cached with
            ``final=False`` while still training).
        cache: where the evaluated row is kept (:class:`RowFile`, :class:`ResultsRows`).
        epochs_per_call: epochs per call of ``train`` (checkpoints, results and ``stop`` checks
            between calls); None: one call.
        evaluate_every_call: evaluate and cache the row after every call, not only at the end.
        restore_first: when the checkpoint holds some epochs, call ``train`` first with that
            number (restoring, training nothing), so ``on_call`` sees every epoch's model.
        on_call: ``on_call(history)`` after every call of ``train`` (e.g. a per-epoch curve).
        stop: checked before every call; True stops training (the row stays resumable): a row that trained in this call and was not evaluated since is
            evaluated and cached with ``final=False``; otherwise the cached row is returned, or
            None when there is none.
        is_final: whether a cached row is finished (default: its ``final`` field).

    Returns:
        The evaluated row, with ``final`` set (``True`` when it trained ``epochs`` epochs);
        None when ``stop`` stopped it before it trained and no row was cached.
    """
    if epochs < 1:
        raise ValueError(f"a row trains at least one epoch, got epochs={epochs}")
    if epochs_per_call is not None and epochs_per_call < 1:
        raise ValueError(
            f"epochs_per_call must be >= 1 (or None: all at once), got {epochs_per_call}"
        )
    saved = cache.read()
    if saved is not None and is_final(saved):
        return saved
    done = min(trained_epochs(Path(folder)), epochs)
    step = epochs if epochs_per_call is None else epochs_per_call
    targets_first = [done] if restore_first and 0 < done < epochs else []
    history, evaluated = None, True

    def finish(history) -> dict:
        row = evaluate(history)
        row.setdefault("final", len(history) >= epochs)
        cache.write(row)
        return row

    while history is None or done < epochs:
        if stop is not None and stop():
            # what trained so far is a row still training (cached unless it is already)
            return saved if evaluated else finish(history)
        target = targets_first.pop() if targets_first else min(done + step, epochs)
        history = train(target)
        done = len(history)
        if on_call is not None:
            on_call(history)
        evaluated = evaluate_every_call or done >= epochs
        if evaluated:
            saved = finish(history)
    return saved


def row_status(folder: str | Path, epochs: int) -> str:
    """How far a row without a final result got: ``"still training: 3 of 10 epochs"`` or
    ``"not started"``."""
    folder = Path(folder)
    done = trained_epochs(folder) if folder.is_dir() else 0
    return f"still training: {done} of {epochs} epochs" if done else "not started"


# ---------------------------------------------------------------- the NLL


def standard_error(values: Sequence[float] | Any) -> float:
    r"""Standard error of the mean of ``values``: :math:`s / \sqrt{n}`, :math:`s` the sample
    standard deviation with ``ddof=1``; NaN for fewer than two values (no spread to measure)."""
    xs = [float(v) for v in _flat(values)]
    n = len(xs)
    if n < 2:
        return float("nan")
    mean = sum(xs) / n
    return math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1) / n)


def _flat(values) -> list:
    if hasattr(values, "detach"):  # a tensor of any shape
        return values.detach().reshape(-1).tolist()
    if hasattr(values, "ravel"):  # a numpy array
        return values.ravel().tolist()
    return list(values)


def nll_summary(log_px: Sequence[float] | Any) -> dict[str, float]:
    r"""The test NLL of a row from its per-image log-likelihoods :math:`\log p(x_i)`.

    Returns:
        ``{"nll": -mean, "nll_stderr": s.e.}`` in nats per image, the standard error of the mean
        over the test images (:func:`standard_error`).
    """
    xs = _flat(log_px)
    if not xs:
        raise ValueError("nll_summary needs the log-likelihood of at least one test image")
    return {"nll": -sum(float(v) for v in xs) / len(xs), "nll_stderr": standard_error(xs)}


# ---------------------------------------------------------------- the writer


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None
) -> list[str]:
    """The lines of a Markdown table: header, separator, one line per row.

    Args:
        header: the column names.
        rows: the cells of each row, already formatted (anything else is written with ``str``);
            an empty cell is written ``| |``.
        align: per column ``"---"`` (default), ``"---:"`` (right) or ``":---"``.
    """
    align = list(align) if align is not None else ["---"] * len(header)
    if len(align) != len(header):
        raise ValueError(f"{len(align)} alignments for {len(header)} columns; give one per column")

    def line(cells) -> str:  # an empty cell is written "| |"
        return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"

    lines = [line(header), "|" + "|".join(align) + "|"]
    lines += [line(row) for row in rows]
    return lines


def read_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    r"""The first Markdown table in ``text``: (header, rows of cells as text), ``\|`` kept."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and set(lines[i + 1]) <= set("|-: ") and "-" in lines[i + 1]:
            header = _cells(line)
            rows = []
            for ln in lines[i + 2 :]:
                if not ln.startswith("|"):
                    break
                rows.append(_cells(ln))
            return header, rows
    raise ValueError("no Markdown table (a | header |, then a |---| line) in the text")


def _cells(line: str) -> list[str]:
    # split on the pipes that are not escaped (``\|`` inside a cell), drop the outer ones
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def write_results(
    stem: str | Path,
    payload: dict | None = None,
    markdown: str | Sequence[str] | None = None,
    csv_header: Sequence[str] | None = None,
    csv_rows: Iterable[Sequence[Any]] | None = None,
) -> list[Path]:
    """Write a results table under one stem: ``<stem>.json``, ``<stem>.md``, ``<stem>.csv``.

    Args:
        stem: the path without a suffix, e.g. ``experiments/results/priors``; its folder is made.
        payload: the raw numbers, written as indented JSON (skipped when None).
        markdown: the page, as text or lines (joined with newlines as given; skipped when None).
        csv_header, csv_rows: a table for ``.csv`` (skipped when ``csv_rows`` is None).

    Returns:
        The files written.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if payload is not None:
        path = stem.parent / f"{stem.name}.json"
        path.write_text(json.dumps(payload, indent=2))
        written.append(path)
    if csv_rows is not None:
        path = stem.parent / f"{stem.name}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            if csv_header is not None:
                w.writerow(list(csv_header))
            w.writerows(list(r) for r in csv_rows)
        written.append(path)
    if markdown is not None:
        path = stem.parent / f"{stem.name}.md"
        path.write_text(markdown if isinstance(markdown, str) else "\n".join(markdown))
        written.append(path)
    return written
