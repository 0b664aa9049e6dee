"""Finishing a run folder: :func:`finish_run` writes what a trained model leaves behind.

:func:`pyro_cvae.fit` writes the checkpoints, ``config.json`` and ``metrics.csv`` while it trains;
once it returns, :func:`finish_run` writes the rest, the same way for ``pyro-cvae train``, the
molecule runs and :func:`pyro_cvae.applications.train_attribute_model`:

* ``model.pt`` (config, weights, the data it was trained on, and the attribute or table schema)
  and ``model.safetensors`` (the same schemas in its metadata), both read by :func:`pyro_cvae.load`;
* ``attributes.json`` for a model conditioned on an attribute schema, ``table.json`` for a table;
* the figures the model's kind names (:func:`pyro_cvae.models.kind_of`);
* ``metrics.json``: the test metrics of the model's kind (the log-likelihood, control score and
  within-label diversity of a CVAE; the classifier accuracies of M2; the MOSES metrics of a
  molecule model) and the training time.

It sits above the figures and the judge classifier it uses (the layers in :mod:`pyro_cvae`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .checkpoint import save_checkpoint
from .data import Dataset
from .evaluate import semisupervised_metrics
from .evaluate.molecules import evaluate_molecules
from .figures import write_figures
from .judge import evaluate, label_diversity
from .models import kind_of, save_safetensors
from .models.contract import config_dict
from .train import RunFolder
from .train.run_folder import data_schemas

__all__ = ["FinishedRun", "finish_run", "MODEL_FILE", "SAFETENSORS_FILE", "METRICS_FILE"]

MODEL_FILE = "model.pt"
SAFETENSORS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"


@dataclass
class FinishedRun:
    """What :func:`finish_run` wrote.

    Attributes:
        out: the run folder.
        files: every file written, in the order written.
        figures: the figures among them.
        metrics: the test metrics written to ``metrics.json`` (``None`` when not evaluated).
    """

    out: Path
    files: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    metrics: dict | None = None


def _train_settings(out: Path, config) -> dict:
    """The run's training settings: ``config``'s, else those ``fit`` recorded in config.json."""
    if config is not None:
        return config.to_dict()
    folder = RunFolder(out)
    return folder.config().get("train", {}) if folder.has_config() else {}


def _metrics(model, data: Dataset, out: Path, config, eval_samples: int, progress: bool) -> dict:
    """The test metrics of the model's kind (see the module docstring)."""
    kind = kind_of(model)
    if kind.family in ("semi-supervised", "auxiliary"):
        metrics = semisupervised_metrics(model, data)
        train = _train_settings(out, config)
        metrics.update({k: train[k] for k in ("objective", "particles") if k in train})
        return metrics
    if kind.output(model) == "smiles":  # the MOSES metrics on (at most) 500 test molecules
        return evaluate_molecules(model, data, num_samples=eval_samples, max_test=500)
    metrics = evaluate(model, data, num_samples=eval_samples, progress=progress)
    if getattr(getattr(model, "config", None), "num_classes", 0) and data.is_image:
        metrics.update(label_diversity(model, data))  # does the latent carry the style?
    return metrics


def _save_model(model, path: Path, data: Dataset, extra: dict) -> Path:
    spec = {"name": data.name, "binarize": data.binarize}
    if hasattr(model, "save"):
        return model.save(path, data=spec, **extra)
    # a model class of the user's: its state_dict (pyro_cvae.load(path, model=...) reads it)
    payload = {"format": "pyro_cvae.model", "model_class": type(model).__name__,
               "model_config": config_dict(model), "model": model.state_dict(), "data": spec,
               **extra}  # fmt: skip
    return save_checkpoint(path, payload)


def finish_run(
    out: str | Path,
    model: nn.Module,
    data: Dataset,
    history=None,
    *,
    config=None,
    eval_samples: int = 1000,
    figures: bool = True,
    progress: bool = False,
) -> FinishedRun:
    """Write what a trained model leaves in its run folder ``out``, beside what :func:`fit`
    wrote: ``model.pt``, ``model.safetensors`` (with the attribute or table schema in its
    metadata under ``"attributes"`` / ``"table"``, as JSON text), ``attributes.json`` /
    ``table.json``, the figures of the model's kind and ``metrics.json``.

    Under ``torchrun`` call it on rank 0 only (the other ranks hold the same model).

    Args:
        out: the run folder (created if missing).
        model: the trained model.
        data: the data set it was trained on.
        history: the :class:`~pyro_cvae.History` :func:`fit` returned: the training curves and
            the training time in ``metrics.json`` (``None``: neither).
        config: the run's :class:`~pyro_cvae.TrainConfig`; semi-supervised metrics name its
            objective and K (default: the settings ``fit`` recorded in ``out/config.json``).
        eval_samples: K of the importance-sampled test log-likelihood; ``0`` writes no
            ``metrics.json`` (no evaluation).
        figures: write the figures the model's kind names.
        progress: progress bars while evaluating.

    Returns:
        a :class:`FinishedRun`: the files written, the figures and the metrics.

    Example::

        history = pc.fit(model, data, out="runs/mine")
        pc.finish_run("runs/mine", model, data, history)
        pc.load("runs/mine")
    """
    if isinstance(eval_samples, bool) or not isinstance(eval_samples, int) or eval_samples < 0:
        raise ValueError(
            f"eval_samples must be an integer >= 0 (0 skips the test evaluation), got "
            f"{eval_samples!r}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = FinishedRun(out)
    extra = data_schemas(model, data)
    done.files += RunFolder(out).write_schemas(model, data)
    done.files.append(Path(_save_model(model, out / MODEL_FILE, data, extra)))
    done.files.append(save_safetensors(model, out / SAFETENSORS_FILE, metadata=extra))
    rows = history.rows if history is not None else None
    if figures:
        done.figures = write_figures(model, data, out, rows)
        done.files += done.figures
    if eval_samples > 0:
        metrics = _metrics(model, data, out, config, eval_samples, progress)
        if rows is not None:
            metrics["train_seconds"] = sum(r["seconds"] for r in rows)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        done.metrics = metrics
        done.files.append(out / METRICS_FILE)
    return done
