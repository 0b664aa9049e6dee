"""Training: ``fit(model, data, config) -> History``, one SVI loop for every model family.

The loop reads top to bottom: check the data, prepare the run folder, build the objective and
the optimizer, restore a checkpoint when resuming, then for each epoch take the family's batches,
step, record, checkpoint. What differs between model families (which batches a step receives,
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
import json
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyro
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._validate import resolve_device
from ..checkpoint import latest_checkpoint, load_latest_good
from ..data import Dataset
from ..infer.anneal import scale_latents
from ..infer.svi import ModuleSVI, NonFiniteLossError, ObjectiveModule, make_adam
from ..models.contract import check_model, config_dict, latent_sites
from .config import TrainConfig
from .distributed import DataParallel
from .families import Family, family_for
from .run_folder import (
    TENSORBOARD_DIR,
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
        progress: show tqdm progress bars.
        pyro_validation: check distribution arguments and shapes (slower). Default: off, or
            on when the environment sets ``PYRO_CVAE_VALIDATE=1`` (the test suite does).
        stop_after_steps: stop after this many optimisation steps, with a checkpoint (for tests
            of resume).
        tensorboard: also log every step's loss and every epoch's metrics for TensorBoard
            (``torch.utils.tensorboard``, needs the ``tensorboard`` package) into
            ``out/tensorboard``.

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
    device = resolve_device(config.device)
    parallel = DataParallel.from_env(device)
    main = parallel is None or parallel.is_main  # only the main process writes files
    out = Path(out) if out is not None else None
    if out is not None and hasattr(model, "check_saveable"):  # before any file is written
        model.check_saveable(f"train into the run folder {out}")
    if out is not None and main:
        prepare_out(out, resume, overwrite)
    if parallel is not None:
        parallel.barrier()

    model.to(device)
    data = data.to(device)
    family.setup(data, config)
    if pyro_validation is None:
        pyro_validation = os.environ.get("PYRO_CVAE_VALIDATE", "0") == "1"
    # the lean path where the family has one; validation checks shapes on the full Pyro path
    objective = family.objective(config, lean=config.lean and not pyro_validation)
    model_fn, guide_fn = family.fns(model)
    optimizer = make_adam(model.parameters(), config.lr, config.adam_eps)

    data_spec = {"name": data.name, "binarize": data.binarize, **data.meta}
    history = History()
    start_epoch, start_step, run_state = 0, 0, {"loss_sum": 0.0, "n_seen": 0}
    loaded = load_latest_good(out, map_location=device) if (resume and out is not None) else None
    if loaded is not None:
        path, ckpt = loaded
        newest = latest_checkpoint(out)
        if newest != path:  # a torn write: say which checkpoint the run goes on from
            warnings.warn(
                f"{newest} is truncated or corrupted; resuming from the newest good checkpoint "
                f"{path.name} instead (the epochs after it are trained again)",
                stacklevel=2,
            )
        verify_resumable(path, ckpt, model, config)
        verify_same_data(path, ckpt, data_spec)
        family.check_resume(path, ckpt)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, start_step = ckpt["epoch"], ckpt["step"]
        run_state = dict(ckpt["run_state"])
        history.rows = [dict(r) for r in ckpt["history"]]
        history.skipped_batches = ckpt.get("skipped_batches", 0)
    else:
        pyro.set_rng_seed(config.seed)
    loss_fn = None
    if parallel is not None:  # DDP starts every rank from rank 0's parameters
        loss_fn = DistributedDataParallel(ObjectiveModule(model, objective, model_fn, guide_fn))
    if loaded is not None:
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if parallel is None and len(ranks) == 1:
            set_rng_state(ranks[0], device)
        elif parallel is not None and len(ranks) == parallel.world_size:
            set_rng_state(ranks[parallel.rank], device)
        else:  # another number of processes: the run continues, but not bit for bit
            pyro.set_rng_seed(
                config.seed + 7919 * (parallel.rank if parallel else 0) + start_of(ckpt)
            )
    elif parallel is not None:  # one noise stream per rank
        pyro.set_rng_seed(config.seed + 7919 * parallel.rank)
    svi = ModuleSVI(model_fn, guide_fn, optimizer, objective, model.parameters(), loss_fn)

    written = {"config": False}

    def write_config() -> None:
        # with the first checkpoint, not before: a run whose first step fails leaves no
        # config.json behind, so a retry into the same folder is not refused as another run
        if out is None or not main or written["config"]:
            return
        (out / "config.json").write_text(
            json.dumps(
                {
                    "model_class": type(model).__name__,
                    "model": config_dict(model),
                    "train": config.to_dict(),
                    "data": data_spec,
                    **family.run_info(),
                },
                indent=2,
            )
        )
        written["config"] = True

    board = _board(out, main, tensorboard)
    shard = parallel.shard() if parallel is not None else None
    world = parallel.world_size if parallel is not None else 1
    steps_per_epoch = family.steps_per_epoch(config, world)
    total_steps = 0

    def checkpoint(epoch: int, step: int) -> None:
        if out is None:
            return
        write_config()
        rng_ranks = parallel.gather(rng_state(device)) if parallel is not None else None
        if not main:
            return
        payload = {
            "format": "pyro_cvae.train",
            "model_class": type(model).__name__,
            "model_config": config_dict(model),
            "train_config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(device),
            "rng_ranks": rng_ranks,
            "epoch": epoch,
            "step": step,
            "run_state": dict(run_state),
            "history": history.rows,
            "skipped_batches": history.skipped_batches,
            "data": data_spec,
            **family.checkpoint_state(),
        }
        write_checkpoint(out, epoch * steps_per_epoch + step, payload, config.keep_checkpoints)

    sites = None  # the latent sites a KL weight scales, found on the first batch that needs them
    model.train()
    with pyro.validation_enabled(pyro_validation), _StopFlag(enabled=parallel is None) as stop:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            bar = tqdm(
                family.batches(model, config, epoch, start_step, shard),
                total=steps_per_epoch,
                initial=start_step,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not (progress and main),
                leave=False,
                dynamic_ncols=True,
            )
            step = start_step
            for args, count in bar:
                beta = kl_weight(config, epoch + (step + 1) / steps_per_epoch)
                if sites is None and beta != 1.0:
                    sites = latent_sites(model, *args[:2])
                try:
                    with scale_latents(beta, sites or ()):
                        loss = svi.step(*args)
                except NonFiniteLossError as e:
                    if config.skip_nonfinite:
                        history.skipped_batches += 1
                        step += 1
                        continue
                    if main:
                        report_nonfinite(out, epoch, step, config, str(e))
                    raise NonFiniteLossError(
                        f"training stopped at epoch {epoch + 1}, step {step + 1}: {e}. Likely "
                        f"causes: a learning rate too high (lr={config.lr}; try a tenth of it) "
                        "or data outside the likelihood's range. The last good checkpoint is "
                        "kept; pass skip_nonfinite=True (--skip-nonfinite) to skip such batches."
                    ) from None
                run_state["loss_sum"] += loss
                run_state["n_seen"] += count
                step += 1
                total_steps += 1
                if board is not None:
                    board.add_scalar("train/loss", loss / count, epoch * steps_per_epoch + step)
                if progress and step % 10 == 0:
                    bar.set_postfix(
                        loss=f"{run_state['loss_sum'] / max(run_state['n_seen'], 1):.2f}"
                    )
                if stop.requested or (
                    stop_after_steps is not None and total_steps >= stop_after_steps
                ):
                    bar.close()
                    checkpoint(epoch, step)
                    history.interrupted = True
                    if stop.requested:
                        raise KeyboardInterrupt(
                            f"interrupted at epoch {epoch + 1}, step {step}; checkpoint saved, "
                            "continue with --resume"
                        )
                    return history
            bar.close()
            if parallel is not None:
                run_state["loss_sum"], run_state["n_seen"] = parallel.all_sum(
                    [run_state["loss_sum"], run_state["n_seen"]]
                )
            row = {
                "epoch": epoch + 1,
                "train_loss": run_state["loss_sum"] / max(run_state["n_seen"], 1),
                "kl_scale": kl_weight(config, epoch + 1),
                "seconds": time.perf_counter() - t0,
            }
            if main:
                model.eval()
                row.update(family.epoch_metrics(model, config, epoch))
                model.train()
            history.rows.append(row)
            run_state = {"loss_sum": 0.0, "n_seen": 0}
            start_step = 0
            checkpoint(epoch + 1, 0)
            if out is not None and main:
                history.to_csv(out / "metrics.csv")
            if board is not None:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, float):
                        board.add_scalar(f"epoch/{key}", value, epoch + 1)
                board.flush()
            if progress and main:
                tqdm.write(family.describe(row))
    if board is not None:
        board.close()
    if parallel is not None:  # the ranks finish together: rank 0 has written its last files
        parallel.barrier()
    model.eval()
    return history


def _board(out: Path | None, main: bool, enabled: bool):
    """A TensorBoard ``SummaryWriter`` into ``out/tensorboard`` (main process only), or None."""
    if not enabled:
        return None
    if out is None:
        raise ValueError("tensorboard=True writes into the run folder: give out= (--out)")
    if not main:
        return None
    try:  # optional heavy dependency: imported only when asked for
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard"
        ) from e
    return SummaryWriter(str(out / TENSORBOARD_DIR))
