"""Training: ``fit(model, data, config) -> History``, one SVI loop for every model family.

The loop reads top to bottom in :func:`fit`: check the data, prepare the run folder, build the
objective and the optimizer, restore a checkpoint when resuming, seed the ranks, then for each
epoch train on the family's batches, record the epoch's row, checkpoint, report. Each step is a
method of one private state object (``_Run``); progress bars, TensorBoard and the user's
loggers or early stopping are callbacks (:mod:`pyro_cvae.train.callbacks`) the loop calls at
named points, so none of them is woven into it. What differs between model families (which batches a step receives,
what an epoch reports, what a resume must check) is a :class:`~pyro_cvae.train.families.Family`;
the KL weight (beta, warm-up) is an effect handler around the step
(:func:`~pyro_cvae.infer.anneal.scale_latents`), so models hold no training state. Multi-process
training (``torchrun``) wraps the objective in ``DistributedDataParallel``.

Parameters live in the model (a ``PyroModule``), so training uses one ``torch.optim.Adam`` over
``model.parameters()``: :class:`~pyro_cvae.infer.svi.ModuleSVI` is ``pyro.infer.SVI`` with that
optimizer. This module is the only one of the package that runs a training step.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyro
from torch.nn.parallel import DistributedDataParallel

from .._validate import resolve_device
from ..checkpoint import latest_checkpoint, load_latest_good
from ..data import Dataset
from ..infer.anneal import scale_latents
from ..infer.svi import ModuleSVI, NonFiniteLossError, ObjectiveModule, make_adam
from ..models.contract import check_model, config_dict, latent_sites
from .callbacks import Callback, ProgressBar, TensorBoard, _Hooks, check_callbacks
from .config import TrainConfig
from .distributed import DataParallel
from .families import Family, family_for
from .run_folder import (
    RunFolder,
    prepare_out,
    report_nonfinite,
    rng_state,
    set_rng_state,
    start_of,
    verify_resumable,
    verify_same_data,
    write_checkpoint,
)

__all__ = ["fit", "History", "kl_weight"]


@dataclass
class History:
    """Per-epoch metrics of a run (one dict per epoch)."""

    rows: list[dict] = field(default_factory=list)
    interrupted: bool = False
    skipped_batches: int = 0
    #: the callback whose ``on_epoch_end`` returned ``"stop"`` (its class name), else ``None``
    stopped_by: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    @property
    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}

    def to_csv(self, path: str | Path) -> None:
        if not self.rows:
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = Path(str(path) + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(path)


class _StopFlag:
    """Turns SIGINT into a flag checked between steps, so a checkpoint is never half a step.

    Off in multi-process runs, where ``torchrun`` stops all ranks together.
    """

    def __init__(self, enabled: bool = True):
        self.requested = False
        self.enabled = enabled
        self._old = None

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def kl_weight(config: TrainConfig, epochs_done: float) -> float:
    """beta times the linear warm-up factor min(1, epochs_done / warmup_epochs)."""
    if not config.warmup_epochs:
        return config.beta
    return config.beta * min(1.0, epochs_done / config.warmup_epochs)


def fit(
    model,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    family: Family | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyro_validation: bool | None = None,
    stop_after_steps: int | None = None,
    tensorboard: bool = False,
    callbacks: Sequence[Callback] | Callback | None = None,
    **overrides,
) -> History:
    """Train ``model`` on ``data.train`` with stochastic variational inference.

    Args:
        model: any model of the contract :class:`~pyro_cvae.models.contract.PyroModel`: a
            module with ``model(x, y=None)`` and ``guide(x, y=None)`` whose parameters are its
            own: the library's models (CVAE, hierarchical CVAE, M2, the molecule CVAE, the
            quadrant models, a label classifier) or one written from scratch in Pyro. Optional
            capabilities (``latent_sites``, ``check_inputs``, ``config``) are used where offered
            and discovered otherwise (the latent sites from one trace of the guide).
        data: a :class:`~pyro_cvae.data.Dataset`.
        config: a :class:`~pyro_cvae.TrainConfig` (a :class:`~pyro_cvae.SemiSupervisedConfig`
            for M2); keyword ``overrides`` replace fields. Default: the family's default config.
        family: what differs for this model family (default :func:`family_for` the model; e.g.
            ``SemiSupervisedFamily(labelled=mask)`` to choose M2's labelled images).
        out: run folder for checkpoints (every epoch and at Ctrl-C) and ``metrics.csv``.
        resume: continue from the newest readable checkpoint in ``out``.
        overwrite: replace a previous run in ``out`` (otherwise refused).
        progress: show tqdm progress bars (the :class:`~pyro_cvae.train.callbacks.ProgressBar`
            callback).
        pyro_validation: check distribution arguments and shapes (slower). Default: off, or
            on when the environment sets ``PYRO_CVAE_VALIDATE=1`` (the test suite does).
        stop_after_steps: stop after this many optimisation steps, with a checkpoint (for tests
            of resume).
        tensorboard: also log every step's loss and every epoch's metrics for TensorBoard
            (``torch.utils.tensorboard``, needs the ``tensorboard`` package) into
            ``out/tensorboard`` (the :class:`~pyro_cvae.train.callbacks.TensorBoard` callback).
        callbacks: :class:`~pyro_cvae.train.callbacks.Callback` objects whose hooks run at the
            start, after each step and epoch, after each checkpoint and at the end (main process
            only); ``on_epoch_end`` returning ``"stop"`` ends training after that epoch's
            checkpoint (:class:`~pyro_cvae.EarlyStopping`, :class:`~pyro_cvae.CSVLogger`).

    The objectives ``elbo``, ``iwae`` and ``renyi`` (and M2's) run on the lean path of
    :mod:`pyro_cvae.infer.lean` (the same loss and gradient without Pyro's traces) when the model
    qualifies, ``config.lean`` is on and Pyro validation is off.

    Returns:
        the :class:`History` of per-epoch metrics: training loss per image (nats), seconds, KL
        weight, and the family's metrics (validation ELBO; M2's classifier accuracies).
    """
    check_model(model, "train it")
    family = family if family is not None else family_for(model)
    config = family.config(config)
    if overrides:
        config = config.replace(**overrides)
    family.check(model, data, config)
    callbacks = _callbacks(progress, tensorboard, out, callbacks)
    if pyro_validation is None:
        pyro_validation = os.environ.get("PYRO_CVAE_VALIDATE", "0") == "1"

    run = _Run(model, data, config, family, out)
    run.prepare_folder(resume, overwrite)
    # the lean path where the family has one; validation checks shapes on the full Pyro path
    run.build(lean=config.lean and not pyro_validation)
    ckpt = run.restore() if resume else None
    run.seed_ranks(ckpt)
    hooks = _Hooks(callbacks, active=run.is_main)
    hooks.fit_start(run)

    model.train()
    with pyro.validation_enabled(pyro_validation), _StopFlag(enabled=run.parallel is None) as flag:
        for epoch in range(run.start_epoch, config.epochs):
            if run.train_epoch(epoch, hooks, flag, stop_after_steps):  # Ctrl-C or enough steps
                return run.interrupt(epoch, hooks, flag)
            row = run.record_epoch(epoch)
            run.checkpoint(epoch + 1, 0, hooks)
            run.write_metrics()
            if run.agree_to_stop(hooks.epoch_end(row)):
                break
    hooks.fit_end(run.history)
    if run.parallel is not None:  # the ranks finish together: rank 0 has written its last files
        run.parallel.barrier()
    model.eval()
    return run.history


def _callbacks(progress: bool, tensorboard: bool, out, callbacks) -> list:
    """The built-in callbacks that ``progress`` and ``tensorboard`` ask for, then the user's."""
    if tensorboard and out is None:  # on every rank, before anything is written
        raise ValueError("tensorboard=True writes into the run folder: give out= (--out)")
    built_in = [ProgressBar()] if progress else []
    built_in += [TensorBoard()] if tensorboard else []
    return built_in + check_callbacks(callbacks)


class _Run:
    """One call of :func:`fit`: what it trains, where it writes, how far it is, and its steps.

    The steps, in the order ``fit`` calls them: :meth:`prepare_folder`, :meth:`build` (model and
    data on the device, objective, optimizer), :meth:`restore` (a resume), :meth:`seed_ranks`
    (random streams, the DDP wrapper, the SVI step), then per epoch :meth:`train_epoch`,
    :meth:`record_epoch`, :meth:`checkpoint`, :meth:`write_metrics`, :meth:`agree_to_stop`.
    Callbacks receive it as ``run`` (see :class:`~pyro_cvae.train.callbacks.Callback`).
    """

    def __init__(self, model, data: Dataset, config: TrainConfig, family: Family, out) -> None:
        self.model, self.data, self.config, self.family = model, data, config, family
        self.device = resolve_device(config.device)
        self.parallel = DataParallel.from_env(self.device)
        self.is_main = self.parallel is None or self.parallel.is_main  # only it writes files
        self.out = Path(out) if out is not None else None
        self.folder = RunFolder(self.out) if self.out is not None else None
        self.history = History()
        self.start_epoch, self.step, self.run_state = 0, 0, {"loss_sum": 0.0, "n_seen": 0}
        self.total_steps = 0  # steps of this call (stop_after_steps)
        self.sites = (
            None  # the latent sites a KL weight scales, found on the first batch needing them
        )
        self._config_written = False

    def prepare_folder(self, resume: bool, overwrite: bool) -> None:
        """Refuse a model that cannot be saved, and guard the run folder (main process)."""
        if self.out is not None and hasattr(self.model, "check_saveable"):  # before any file
            self.model.check_saveable(f"train into the run folder {self.out}")
        if self.out is not None and self.is_main:
            prepare_out(self.out, resume, overwrite)
        if self.parallel is not None:
            self.parallel.barrier()

    def build(self, lean: bool) -> None:
        """Model and data on the device, the family set up, the objective and the optimizer."""
        self.model.to(self.device)
        self.data = self.data.to(self.device)
        self.family.setup(self.data, self.config)
        self.objective = self.family.objective(self.config, lean=lean)
        self.model_fn, self.guide_fn = self.family.fns(self.model)
        self.optimizer = make_adam(
            self.model.parameters(), self.config.lr, self.config.adam_eps, self.config.adam_beta1
        )
        self.data_spec = {"name": self.data.name, "binarize": self.data.binarize, **self.data.meta}
        world = self.parallel.world_size if self.parallel is not None else 1
        self.shard = self.parallel.shard() if self.parallel is not None else None
        self.steps_per_epoch = self.family.steps_per_epoch(self.config, world)

    def restore(self) -> dict | None:
        """Load the newest good checkpoint of the run folder, after checking it continues this
        run (same model, settings, data, family); ``None`` when there is none."""
        loaded = (
            load_latest_good(self.out, map_location=self.device) if self.out is not None else None
        )
        if loaded is None:
            return None
        path, ckpt = loaded
        newest = latest_checkpoint(self.out)
        if newest != path:  # a torn write: say which checkpoint the run goes on from
            warnings.warn(
                f"{newest} is truncated or corrupted; resuming from the newest good checkpoint "
                f"{path.name} instead (the epochs after it are trained again)",
                stacklevel=3,
            )
        verify_resumable(path, ckpt, self.model, self.config)
        verify_same_data(path, ckpt, self.data_spec)
        self.family.check_resume(path, ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.start_epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.run_state = dict(ckpt["run_state"])
        self.history.rows = [dict(r) for r in ckpt["history"]]
        self.history.skipped_batches = ckpt.get("skipped_batches", 0)
        return ckpt

    def seed_ranks(self, ckpt: dict | None) -> None:
        """The random streams (the seed, a checkpoint's states, one stream per rank), the DDP
        wrapper of the objective, and the SVI step."""
        parallel, seed = self.parallel, self.config.seed
        if ckpt is None:
            pyro.set_rng_seed(seed)
        loss_fn = None
        if parallel is not None:  # DDP starts every rank from rank 0's parameters
            loss_fn = DistributedDataParallel(
                ObjectiveModule(self.model, self.objective, self.model_fn, self.guide_fn)
            )
        if ckpt is not None:
            ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
            if parallel is None and len(ranks) == 1:
                set_rng_state(ranks[0], self.device)
            elif parallel is not None and len(ranks) == parallel.world_size:
                set_rng_state(ranks[parallel.rank], self.device)
            else:  # another number of processes: the run continues, but not bit for bit
                pyro.set_rng_seed(seed + 7919 * (parallel.rank if parallel else 0) + start_of(ckpt))
        elif parallel is not None:  # one noise stream per rank
            pyro.set_rng_seed(seed + 7919 * parallel.rank)
        self.svi = ModuleSVI(self.model_fn, self.guide_fn, self.optimizer, self.objective,
                             self.model.parameters(), loss_fn)  # fmt: skip

    def train_epoch(self, epoch: int, hooks: _Hooks, flag: _StopFlag, stop_after) -> bool:
        """Step through the family's batches of ``epoch``; ``True`` when interrupted (Ctrl-C,
        or ``stop_after`` steps taken by this call)."""
        self.t0 = time.perf_counter()
        hooks.epoch_start(self, epoch)
        for args, count in self.family.batches(self.model, self.config, epoch, self.step,
                                               self.shard):  # fmt: skip
            loss = self._step(epoch, args)
            self.step += 1
            if loss is None:  # a non-finite batch, skipped
                continue
            self.run_state["loss_sum"] += loss
            self.run_state["n_seen"] += count
            self.total_steps += 1
            hooks.step_end(self, epoch, self.step, loss, count)
            if flag.requested or (stop_after is not None and self.total_steps >= stop_after):
                return True
        return False

    def _step(self, epoch: int, args: tuple) -> float | None:
        """One SVI step under the KL weight of this point of training; ``None`` for a skipped
        non-finite batch (``skip_nonfinite``), else the summed loss."""
        config = self.config
        beta = kl_weight(config, epoch + (self.step + 1) / self.steps_per_epoch)
        if self.sites is None and beta != 1.0:
            self.sites = latent_sites(self.model, *args[:2])
        try:
            with scale_latents(beta, self.sites or ()):
                return self.svi.step(*args)
        except NonFiniteLossError as e:
            if config.skip_nonfinite:
                self.history.skipped_batches += 1
                return None
            if self.is_main:
                report_nonfinite(self.out, epoch, self.step, config, str(e))
            raise NonFiniteLossError(
                f"training stopped at epoch {epoch + 1}, step {self.step + 1}: {e}. Likely "
                f"causes: a learning rate too high (lr={config.lr}; try a tenth of it) "
                "or data outside the likelihood's range. The last good checkpoint is "
                "kept; pass skip_nonfinite=True (--skip-nonfinite) to skip such batches."
            ) from None

    def interrupt(self, epoch: int, hooks: _Hooks, flag: _StopFlag) -> History:
        """Checkpoint mid-epoch and end: raise ``KeyboardInterrupt`` after Ctrl-C, else return."""
        self.checkpoint(epoch, self.step, hooks)
        self.history.interrupted = True
        hooks.fit_end(self.history)
        if flag.requested:
            raise KeyboardInterrupt(
                f"interrupted at epoch {epoch + 1}, step {self.step}; checkpoint saved, "
                "continue with --resume"
            )
        return self.history

    def record_epoch(self, epoch: int) -> dict:
        """The epoch's row (loss over all ranks, KL weight, seconds, the family's metrics),
        appended to the history; the next epoch starts from step 0."""
        run_state, config = self.run_state, self.config
        if self.parallel is not None:
            run_state["loss_sum"], run_state["n_seen"] = self.parallel.all_sum(
                [run_state["loss_sum"], run_state["n_seen"]]
            )
        row = {
            "epoch": epoch + 1,
            "train_loss": run_state["loss_sum"] / max(run_state["n_seen"], 1),
            "kl_scale": kl_weight(config, epoch + 1),
            "seconds": time.perf_counter() - self.t0,
        }
        if self.is_main:
            self.model.eval()
            row.update(self.family.epoch_metrics(self.model, config, epoch))
            self.model.train()
        self.history.rows.append(row)
        self.run_state, self.step = {"loss_sum": 0.0, "n_seen": 0}, 0
        return row

    def checkpoint(self, epoch: int, step: int, hooks: _Hooks) -> None:
        """Write a checkpoint of ``epoch``/``step`` (with ``config.json`` and the data's schemas the
        first time)."""
        if self.out is None:
            return
        if self.is_main and not self._config_written:
            self.folder.write_config({
                "model_class": type(self.model).__name__, "model": config_dict(self.model),
                "train": self.config.to_dict(), "data": self.data_spec, **self.family.run_info(),
            })  # fmt: skip
            self.folder.write_schemas(self.model, self.data)
            self._config_written = True
        rng_ranks = self.parallel.gather(rng_state(self.device)) if self.parallel else None
        if not self.is_main:
            return
        payload = {
            "format": "pyro_cvae.train",
            "model_class": type(self.model).__name__,
            "model_config": config_dict(self.model),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.device),
            "rng_ranks": rng_ranks,
            "epoch": epoch,
            "step": step,
            "run_state": dict(self.run_state),
            "history": self.history.rows,
            "skipped_batches": self.history.skipped_batches,
            "data": self.data_spec,
            **self.family.checkpoint_state(),
        }
        progress_id = epoch * self.steps_per_epoch + step
        hooks.checkpoint(
            write_checkpoint(self.out, progress_id, payload, self.config.keep_checkpoints)
        )

    def write_metrics(self) -> None:
        """``metrics.csv``: the history so far (main process)."""
        if self.folder is not None and self.is_main:
            self.history.to_csv(self.folder.metrics_path)

    def agree_to_stop(self, stopped_by: str | None) -> bool:
        """Whether a callback ended training; under DDP rank 0's callbacks decide for all ranks."""
        if self.parallel is not None:
            stopped_by = self.parallel.gather(stopped_by)[0]
        self.history.stopped_by = stopped_by
        return stopped_by is not None
