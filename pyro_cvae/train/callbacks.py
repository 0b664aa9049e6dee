"""Callbacks: what :func:`pyro_cvae.fit` calls at the start, at each step and epoch, at each
checkpoint and at the end of a run, so that progress bars, loggers and early stopping live
outside the loop.

A callback is an object with some of the hooks of :class:`Callback` (subclass it and override
the ones you need; each default does nothing)::

    on_fit_start(run)                       before the first step (after a resume's restore)
    on_epoch_start(run, epoch)              before an epoch's first step
    on_step_end(run, epoch, step, loss, count)   after each optimisation step
    on_checkpoint(path)                     after a checkpoint file is written
    on_epoch_end(row) -> None | STOP        after the epoch's row is recorded and checkpointed
    on_fit_end(history)                     when fit returns (also after stop_after_steps
                                            and before Ctrl-C's KeyboardInterrupt)

``on_epoch_end`` returning :data:`STOP` (``"stop"``) ends training after that epoch: the epoch's
checkpoint is already written, every callback still receives the row, and
:attr:`~pyro_cvae.train.History.stopped_by` names the callback. A resumed run (``resume=True``)
goes on from that checkpoint; :class:`EarlyStopping` and :class:`CSVLogger` read the resumed
history in ``on_fit_start``, so an interrupted run continues as if it had not been interrupted.

Multi-process training (``torchrun``): only the main process (rank 0) calls callbacks, and a
:data:`STOP` there stops every rank after the same epoch (the decision is sent to all ranks).

``fit(progress=True)`` adds :class:`ProgressBar` and ``fit(tensorboard=True)`` adds
:class:`TensorBoard`; users pass their own with ``fit(..., callbacks=[...])``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from tqdm.auto import tqdm

from .run_folder import TENSORBOARD_DIR

__all__ = ["STOP", "Callback", "EarlyStopping", "CSVLogger", "ProgressBar", "TensorBoard"]

#: what ``on_epoch_end`` returns to end training after that epoch
STOP = "stop"

HOOKS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_checkpoint", "on_epoch_end",
         "on_fit_end")  # fmt: skip


class Callback:
    """Hooks :func:`pyro_cvae.fit` calls; override the ones you need (each default does nothing).

    ``run`` (in ``on_fit_start``, ``on_epoch_start``, ``on_step_end``) is the state of the fit
    call, read-only for callbacks: ``run.model``, ``run.data``, ``run.config`` (the
    :class:`~pyro_cvae.TrainConfig`), ``run.family``, ``run.out`` (the run folder or ``None``),
    ``run.history`` (the rows so far, those of a resumed run included), ``run.start_epoch``,
    ``run.steps_per_epoch``, ``run.step`` (steps done in the current epoch) and
    ``run.run_state`` (the epoch's ``loss_sum`` and ``n_seen`` so far).
    """

    def on_fit_start(self, run) -> None:
        """Before the first step; on a resume, after the checkpoint was restored."""

    def on_epoch_start(self, run, epoch: int) -> None:
        """Before the first step of ``epoch`` (0-based; a resumed epoch starts at ``run.step``)."""

    def on_step_end(self, run, epoch: int, step: int, loss: float, count: int) -> None:
        """After a step: ``step`` steps of ``epoch`` done, ``loss`` summed over ``count`` images
        (nats). Skipped non-finite batches (``skip_nonfinite``) call no hook."""

    def on_checkpoint(self, path: Path) -> None:
        """After the checkpoint ``path`` was written (only when ``fit`` has ``out=``)."""

    def on_epoch_end(self, row: dict) -> str | None:
        """After an epoch: ``row`` is its entry of the history (``epoch`` 1-based, ``train_loss``,
        ``kl_scale``, ``seconds`` and the family's metrics, e.g. ``val_elbo``). Return
        :data:`STOP` to end training after this epoch, else ``None``."""
        return None

    def on_fit_end(self, history) -> None:
        """When ``fit`` returns its :class:`~pyro_cvae.train.History` (or is interrupted)."""


class _Hooks:
    """Calls every callback's hook in order; none in a process other than the main one."""

    def __init__(self, callbacks, active: bool):
        self.callbacks = list(callbacks) if active else []
        # per hook, the callbacks that do something there: a hook left as Callback's no-op is
        # not called (on_step_end runs every step)
        self.by_hook = {
            hook: [cb for cb in self.callbacks if _overrides(cb, hook)] for hook in HOOKS
        }

    def _call(self, hook: str, *args) -> list:
        return [(cb, getattr(cb, hook)(*args)) for cb in self.by_hook[hook]]

    def fit_start(self, run) -> None:
        self._call("on_fit_start", run)

    def epoch_start(self, run, epoch: int) -> None:
        self._call("on_epoch_start", run, epoch)

    def step_end(self, run, epoch: int, step: int, loss: float, count: int) -> None:
        self._call("on_step_end", run, epoch, step, loss, count)

    def checkpoint(self, path: Path) -> None:
        self._call("on_checkpoint", path)

    def epoch_end(self, row: dict) -> str | None:
        """The name of the first callback that asked to stop, else ``None``."""
        stopped_by = None
        for cb, answer in self._call("on_epoch_end", dict(row)):  # a copy: history stays as is
            if answer is None:
                continue
            if answer != STOP:
                raise ValueError(
                    f"{type(cb).__name__}.on_epoch_end returned {answer!r}; return "
                    f'pyro_cvae.train.callbacks.STOP ("stop") to end training, or None to go on'
                )
            stopped_by = stopped_by or type(cb).__name__
        return stopped_by

    def fit_end(self, history) -> None:
        self._call("on_fit_end", history)


def _overrides(cb, hook: str) -> bool:
    """Whether ``cb`` has ``hook`` other than :class:`Callback`'s default, which does nothing."""
    if hook in getattr(cb, "__dict__", {}):  # set on the instance
        return True
    method = getattr(type(cb), hook, None)
    if method is None:  # a duck-typed callback without the hook
        return False
    return method is not getattr(Callback, hook, None)


def check_callbacks(callbacks) -> list:
    """``callbacks`` as a list: ``None``, one callback, or an iterable of callback objects."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(
            f"callbacks must be a list of callbacks, e.g. callbacks=[EarlyStopping()], got "
            f"{type(callbacks).__name__}"
        ) from None
    for cb in callbacks:
        if isinstance(cb, type):
            raise TypeError(
                f"callbacks holds the class {cb.__name__}, not an instance; pass {cb.__name__}()"
            )
        if not any(hasattr(cb, hook) for hook in HOOKS):
            raise TypeError(
                f"{cb!r} in callbacks has none of the hooks {', '.join(HOOKS)}; subclass "
                "pyro_cvae.Callback and override the ones you need"
            )
    return callbacks


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss, and a summary line after each epoch
    (``fit(progress=True)``, the default)."""

    def __init__(self, postfix_every: int = 10):
        self.postfix_every = postfix_every
        self.run = self.bar = None

    def on_fit_start(self, run) -> None:
        self.run = run

    def on_epoch_start(self, run, epoch: int) -> None:
        self.bar = tqdm(total=run.steps_per_epoch, initial=run.step, leave=False,
                        desc=f"epoch {epoch + 1}/{run.config.epochs}", dynamic_ncols=True)  # fmt: skip

    def on_step_end(self, run, epoch: int, step: int, loss: float, count: int) -> None:
        self.bar.update(step - self.bar.n)
        if step % self.postfix_every == 0:
            mean = run.run_state["loss_sum"] / max(run.run_state["n_seen"], 1)
            # refresh=False: the bar redraws at tqdm's own pace (mininterval), not every 10 steps
            self.bar.set_postfix(loss=f"{mean:.2f}", refresh=False)
        if step == run.steps_per_epoch:  # the validation that follows is not the bar's
            self._close()

    def on_checkpoint(self, path: Path) -> None:
        self._close()  # an interruption's checkpoint: the bar stops here

    def on_epoch_end(self, row: dict) -> None:
        self._close()
        tqdm.write(self.run.family.describe(row))

    def on_fit_end(self, history) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoard(Callback):
    """Every step's loss per image (``train/loss``) and every epoch's float metrics
    (``epoch/<name>``) as TensorBoard scalars (``fit(tensorboard=True)``).

    Args:
        log_dir: where the event files go; default ``out/tensorboard`` of the run folder.

    Needs the ``tensorboard`` package (``torch.utils.tensorboard``).
    """

    def __init__(self, log_dir: str | Path | None = None):
        self.log_dir = log_dir
        self.board = None

    def on_fit_start(self, run) -> None:
        log_dir = self.log_dir
        if log_dir is None:
            if run.out is None:
                raise ValueError("tensorboard=True writes into the run folder: give out= (--out)")
            log_dir = run.out / TENSORBOARD_DIR
        try:  # optional heavy dependency: imported only when asked for
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ValueError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard"
            ) from e
        self.board = SummaryWriter(str(log_dir))

    def on_step_end(self, run, epoch: int, step: int, loss: float, count: int) -> None:
        self.board.add_scalar("train/loss", loss / count, epoch * run.steps_per_epoch + step)

    def on_epoch_end(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float):
                self.board.add_scalar(f"epoch/{key}", value, row["epoch"])
        self.board.flush()

    def on_fit_end(self, history) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None


class EarlyStopping(Callback):
    """Stop training when a metric of the epoch rows has not improved for ``patience`` checks.

    An epoch whose row lacks ``monitor`` (validation runs every ``validate_every`` epochs) is
    not a check. On a resume the rows of the resumed history are replayed, so the run stops
    where an uninterrupted one would.

    Args:
        monitor: the key of the history row (``val_elbo``, ``train_loss``, M2's
            ``val_accuracy``, ...).
        mode: ``"max"`` when larger is better (ELBO, accuracy), ``"min"`` for a loss.
        patience: checks without improvement before stopping (>= 1).
        min_delta: an improvement must beat the best value by more than this (>= 0).

    Raises:
        ValueError: for a bad ``mode``, ``patience`` or ``min_delta``; during ``fit`` when no
            row holds ``monitor`` by the time validation has run (naming the keys the rows
            have: a validation metric needs ``validate_every >= 1``).
    """

    def __init__(self, monitor: str = "val_elbo", mode: str = "max", patience: int = 3,
                 min_delta: float = 0.0):  # fmt: skip
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self._seen = False
        self._validate_every = 1

    def on_fit_start(self, run) -> None:
        self.best, self.best_epoch, self.wait, self._seen = None, None, 0, False
        self._validate_every = getattr(run.config, "validate_every", 1)
        for row in run.history.rows:  # a resumed run: pick up where it was
            self._update(row)

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def _update(self, row: dict) -> bool:
        """Count ``row``; whether patience has run out."""
        if self.monitor not in row:
            return False
        self._seen = True
        value = float(row[self.monitor])
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, row.get("epoch"), 0
        else:
            self.wait += 1
        return self.wait >= self.patience

    def on_epoch_end(self, row: dict) -> str | None:
        if self.monitor not in row and not self._seen:
            every = self._validate_every
            if not every or row.get("epoch", 0) >= every:  # validation has had its chance
                raise ValueError(
                    f"EarlyStopping monitors {self.monitor!r}, which no epoch row holds; the "
                    f"rows have {', '.join(repr(k) for k in row)}. Monitor one of those, or, for "
                    "a validation metric (val_elbo), train with validate_every >= 1 (the "
                    f"validation runs every validate_every epochs; it is {every!r})"
                )
        return STOP if self._update(row) else None


class CSVLogger(Callback):
    """Append each epoch's row to a CSV file (a logger that needs no run folder).

    The file holds this run's rows, one per epoch: a fresh run starts it anew; a resumed run
    rewrites the resumed history first, so every epoch appears once even when the previous
    process was killed between its checkpoint and its log line. A row with a new column (a
    validation metric every few epochs) rewrites the file with the wider header.

    Args:
        path: the CSV file (its folder must exist).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.fields: list[str] = []

    def on_fit_start(self, run) -> None:
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"CSVLogger cannot write {self.path}: the folder {self.path.parent} does not "
                "exist; create it first"
            )
        self.rows = [dict(r) for r in run.history.rows]
        self._rewrite()

    def on_epoch_end(self, row: dict) -> None:
        self.rows.append(dict(row))
        if set(row) - set(self.fields):
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)

    def _rewrite(self) -> None:
        self.fields = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.path, "w", newline="") as f:
            if self.fields:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(self.rows)
