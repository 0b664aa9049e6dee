"""Training: ``fit(model, data, config) -> History``, an SVI loop with checkpoints and resume.

Parameters live in the model (a ``PyroModule``), so training uses one ``torch.optim.Adam`` over
``model.parameters()`` rather than ``pyro.optim``'s one optimizer per parameter and the global
parameter store: :class:`ModuleSVI` is ``pyro.infer.SVI`` with that optimizer. Any objective of
:mod:`pyro_cvae.objectives` is used through its ``differentiable_loss``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, list_checkpoints, load_latest_good, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import Dataset
from .distributed import DataParallel
from .objectives import IMPORTANCE_WEIGHTED, make_objective

__all__ = [
    "fit",
    "History",
    "ModuleSVI",
    "NonFiniteLossError",
    "RunFolderError",
    "CheckpointWriteError",
    "resolve_device",
]


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or infinite during training."""


class RunFolderError(FileExistsError):
    """The output folder already holds another run."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but no CUDA GPU is available; use --device cpu"
        )
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose cpu, cuda or auto")
    return torch.device(name)


class ModuleSVI(SVI):
    """Stochastic variational inference with module-local parameters and one torch optimizer.

    ``step`` computes ``loss.differentiable_loss(model, guide, *args)``, checks that loss and
    gradients are finite (raising :class:`NonFiniteLossError` *before* any parameter changes),
    steps the optimizer and clears the gradients.
    """

    def __init__(self, model, guide, optim: torch.optim.Optimizer, loss, params, parallel=None):
        # SVI.__init__ insists on a PyroOptim (one optimizer per parameter, found through the
        # global parameter store); the attributes it would set are set here instead.
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.params = [p for p in params if p.requires_grad]
        self.parallel = parallel  # a DataParallel: gradients averaged over processes

    def step(self, *args, **kwargs) -> float:
        with warnings.catch_warnings():
            # Pyro warns "Encountered NaN"; we raise NonFiniteLossError with the context instead
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            loss = self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
        if self.parallel is not None:
            return self._parallel_step(loss)
        loss.backward()  # a non-finite loss gives non-finite gradients: cleared below, unused
        # one device-to-host transfer per step: the loss and the gradients' finiteness together
        flags = torch.stack([loss.detach().double(), self._nonfinite_grads(loss.device).double()])
        value, bad_grads = flags.tolist()
        if not math.isfinite(value):
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"the loss is {value}")
        if bad_grads:
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError("a gradient is not finite")
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return value

    def _parallel_step(self, loss: torch.Tensor) -> float:
        value = loss.item()
        finite = math.isfinite(value)
        if finite:
            loss.backward()
        # every rank joins the all-reduce, finite or not, and all agree on the outcome
        finite = self.parallel.average_gradients(self.params, finite)
        if not finite:
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"the loss is {value}")
        if self._nonfinite_grads(loss.device).item():
            self.optim.zero_grad(set_to_none=True)
            raise NonFiniteLossError("a gradient is not finite")
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return value

    @torch.no_grad()
    def _nonfinite_grads(self, device: torch.device) -> torch.Tensor:
        """1.0 if any gradient is NaN or infinite, else 0.0, as a tensor on ``device`` (no
        synchronisation): one fused pass per device and dtype (the check GradScaler uses, with a
        scale of exactly 1), half the cost of a norm per tensor."""
        groups: dict[tuple, list[torch.Tensor]] = {}
        for p in self.params:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        found = torch.zeros((), device=device)
        for (where, _), grads in groups.items():
            flag = torch.zeros((), device=where)
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads, flag, torch.ones((), device=where)
            )
            found = torch.maximum(found, flag.to(device))
        return found

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs) -> float:
        return self.loss.loss(self.model, self.guide, *args, **kwargs)


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


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam over all parameters as one fused kernel (10x faster per step than per-tensor)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without a fused kernel
        return torch.optim.Adam(params, lr=lr, foreach=True)


def kl_weight(config: TrainConfig, epochs_done: float) -> float:
    """beta times the linear warm-up factor min(1, epochs_done / warmup_epochs)."""
    if not config.warmup_epochs:
        return config.beta
    return config.beta * min(1.0, epochs_done / config.warmup_epochs)


def check_data_fits_model(model, data: Dataset) -> None:
    """Refuse a data set whose image shape or number of classes the model was not built for."""
    cfg: ModelConfig = model.config
    if cfg.num_classes and cfg.num_classes != data.num_classes:
        raise ValueError(
            f"the model has num_classes={cfg.num_classes} but data set {data.name!r} has "
            f"{data.num_classes} classes; build the model with num_classes={data.num_classes}"
        )
    if tuple(data.image_shape) != tuple(cfg.image_shape):
        raise ValueError(
            f"the model expects images of shape {cfg.image_shape} but data set {data.name!r} has "
            f"{data.image_shape}; build the model with image_shape={tuple(data.image_shape)}"
        )


def _check_data(model, data: Dataset) -> None:
    cfg: ModelConfig = model.config
    check_data_fits_model(model, data)
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if len(split) == 0:
            if name == "train":
                raise ValueError("the training split is empty")
            continue
        model.check_inputs(split.x, split.y if cfg.cond_width else None)


def _labels(model, y):
    return y if model.config.cond_width else None


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def verify_resumable(path, ckpt: dict, model, config) -> None:
    """Refuse to resume a checkpoint of another model configuration or other settings.

    ``config``'s own class reads the saved settings, so subclasses of :class:`TrainConfig`
    (semi-supervised training) are compared field by field too; only ``epochs`` may change.
    """
    if ckpt.get("model_config") != model.config.to_dict():
        raise CheckpointError(
            f"{path} was written by a model with another configuration; resume with the "
            "same model settings or train into a new --out folder"
        )
    saved_cfg = type(config).from_dict(ckpt["train_config"])
    if saved_cfg.replace(epochs=config.epochs) != config:
        raise CheckpointError(
            f"{path} was trained with other settings ({saved_cfg}); resume with the same "
            "settings (only --epochs may change) or train into a new --out folder"
        )


def start_of(ckpt: dict) -> int:
    """Steps done before a checkpoint (to derive a fresh seed when RNG states do not fit)."""
    return int(ckpt["epoch"]) * 100_000 + int(ckpt["step"])


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    existing = list_checkpoints(out)
    if existing and not (resume or overwrite):
        raise RunFolderError(
            f"{out} already holds a run ({len(existing)} checkpoint(s)); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out"
        )
    if overwrite and not resume:
        for p in existing:
            p.unlink()
        for name in ("metrics.csv", "nonfinite.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def fit(
    model,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyro_validation: bool | None = None,
    stop_after_steps: int | None = None,
    **overrides,
) -> History:
    """Train ``model`` on ``data.train`` with stochastic variational inference.

    Args:
        model: a :class:`~pyro_cvae.CVAE` (or any model with ``model``/``guide``/``config``).
        data: a :class:`~pyro_cvae.data.Dataset`.
        config: a :class:`~pyro_cvae.config.TrainConfig`; keyword ``overrides`` replace fields.
        out: run folder for checkpoints (every epoch and at Ctrl-C) and ``metrics.csv``.
        resume: continue from the newest readable checkpoint in ``out``.
        overwrite: replace a previous run in ``out`` (otherwise refused).
        progress: show tqdm progress bars.
        pyro_validation: check distribution arguments and shapes (slower). Default: off, or
            on when the environment sets ``PYRO_CVAE_VALIDATE=1`` (the test suite does).
        stop_after_steps: stop after this many optimisation steps (for tests of resume).

    Returns:
        the :class:`History` of per-epoch metrics: training loss and validation bound per
        image (nats), seconds, KL weight.
    """
    config = (
        (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    )
    if config.objective in IMPORTANCE_WEIGHTED and (config.beta != 1.0 or config.warmup_epochs):
        raise ValueError(
            f"objective {config.objective!r} is an importance-weighted bound; beta and KL "
            "warm-up apply to the ELBO only. Use --objective elbo, or --beta 1 --warmup-epochs 0"
        )
    _check_data(model, data)
    device = resolve_device(config.device)
    parallel = DataParallel.from_env(device)
    main = parallel is None or parallel.is_main  # only the main process writes files
    out = Path(out) if out is not None else None
    if out is not None and main:
        _prepare_out(out, resume, overwrite)
    if parallel is not None:
        parallel.barrier()

    model.to(device)
    data = data.to(device)
    elbo = make_objective(config.objective, config.particles, config.alpha)
    optimizer = make_adam(model.parameters(), config.lr)
    svi = ModuleSVI(model.model, model.guide, optimizer, elbo, model.parameters(), parallel)

    history = History()
    start_epoch, start_step, run_state = 0, 0, {"loss_sum": 0.0, "n_seen": 0}
    loaded = load_latest_good(out, map_location=device) if (resume and out is not None) else None
    if loaded is not None:
        path, ckpt = loaded
        verify_resumable(path, ckpt, model, config)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if parallel is None and len(ranks) == 1:
            _set_rng_state(ranks[0], device)
        elif parallel is not None and len(ranks) == parallel.world_size:
            _set_rng_state(ranks[parallel.rank], device)
        else:  # another number of processes: the run continues, but not bit for bit
            pyro.set_rng_seed(
                config.seed + 7919 * (parallel.rank if parallel else 0) + start_of(ckpt)
            )
        start_epoch, start_step = ckpt["epoch"], ckpt["step"]
        run_state = dict(ckpt["run_state"])
        history.rows = [dict(r) for r in ckpt["history"]]
        history.skipped_batches = ckpt.get("skipped_batches", 0)
    else:
        pyro.set_rng_seed(config.seed)
        if parallel is not None:  # same start everywhere, then one noise stream per rank
            parallel.broadcast_parameters(model)
            pyro.set_rng_seed(config.seed + 7919 * parallel.rank)
    data_spec = {"name": data.name, "binarize": data.binarize, **data.meta}
    if out is not None and main:
        (out / "config.json").write_text(
            json.dumps(
                {"model": model.config.to_dict(), "train": config.to_dict(), "data": data_spec},
                indent=2,
            )
        )

    shard = parallel.shard() if parallel is not None else None
    world = parallel.world_size if parallel is not None else 1
    steps_per_epoch = math.ceil((len(data.train) // world) / config.batch_size)
    total_steps = 0

    def checkpoint(epoch: int, step: int) -> None:
        if out is None:
            return
        rng_ranks = parallel.gather(_rng_state(device)) if parallel is not None else None
        if not main:
            return
        progress_id = epoch * steps_per_epoch + step
        payload = {
            "format": "pyro_cvae.train",
            "model_class": type(model).__name__,
            "model_config": model.config.to_dict(),
            "train_config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(device),
            "rng_ranks": rng_ranks,
            "epoch": epoch,
            "step": step,
            "run_state": dict(run_state),
            "history": history.rows,
            "skipped_batches": history.skipped_batches,
            "data": data_spec,
        }
        target = out / f"checkpoint_{progress_id:06d}.pt"
        try:
            save_checkpoint(target, payload)
        except OSError as e:
            previous = list_checkpoints(out)
            kept = f"; the previous checkpoint {previous[-1].name} is intact" if previous else ""
            raise CheckpointWriteError(
                f"could not write checkpoint {target}: {e.strerror or e}. Free disk space or fix "
                f"the folder's permissions, or choose another --out{kept}"
            ) from e
        for old in list_checkpoints(out)[: -config.keep_checkpoints]:
            old.unlink(missing_ok=True)

    model.train()
    if pyro_validation is None:
        pyro_validation = os.environ.get("PYRO_CVAE_VALIDATE", "0") == "1"
    with pyro.validation_enabled(pyro_validation), _StopFlag(enabled=parallel is None) as stop:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            batches = data.batches(
                "train",
                config.batch_size,
                shuffle=True,
                generator=order,
                start=start_step,
                shard=shard,
            )
            bar = tqdm(
                batches,
                total=steps_per_epoch,
                initial=start_step,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not (progress and main),
                leave=False,
                dynamic_ncols=True,
            )
            step = start_step
            for x, y in bar:
                model.kl_scale = kl_weight(config, epoch + (step + 1) / steps_per_epoch)
                try:
                    loss = svi.step(x, _labels(model, y))
                except NonFiniteLossError as e:
                    if config.skip_nonfinite:
                        history.skipped_batches += 1
                        step += 1
                        continue
                    if main:
                        _report_nonfinite(out, epoch, step, config, str(e))
                    raise NonFiniteLossError(
                        f"training stopped at epoch {epoch + 1}, step {step + 1}: {e}. Likely "
                        f"causes: a learning rate too high (lr={config.lr}; try a tenth of it) "
                        "or data outside the likelihood's range. The last good checkpoint is "
                        "kept; pass skip_nonfinite=True (--skip-nonfinite) to skip such batches."
                    ) from None
                finally:
                    model.kl_scale = 1.0
                run_state["loss_sum"] += loss
                run_state["n_seen"] += x.shape[0]
                step += 1
                total_steps += 1
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
            validate = config.validate_every and (epoch + 1) % config.validate_every == 0
            if validate and len(data.val) and main:
                from .evaluate import elbo_per_image

                model.eval()
                row["val_elbo"] = elbo_per_image(model, data.eval_split("val")).mean().item()
                model.train()
            history.rows.append(row)
            run_state = {"loss_sum": 0.0, "n_seen": 0}
            start_step = 0
            checkpoint(epoch + 1, 0)
            if out is not None and main:
                history.to_csv(out / "metrics.csv")
            if progress and main:
                msg = f"epoch {epoch + 1}: train loss {row['train_loss']:.3f}"
                if "val_elbo" in row:
                    msg += f", val ELBO {row['val_elbo']:.3f} nats/image"
                tqdm.write(msg + f" ({row['seconds']:.1f}s)")
    if parallel is not None:  # the ranks finish together: rank 0 has written its last files
        parallel.barrier()
    model.eval()
    return history


def _report_nonfinite(out: Path | None, epoch: int, step: int, config: TrainConfig, what: str):
    if out is None:
        return
    (out / "nonfinite.json").write_text(
        json.dumps(
            {"epoch": epoch + 1, "step": step + 1, "what": what, "train_config": config.to_dict()},
            indent=2,
        )
    )
