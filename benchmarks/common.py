"""What the benchmark scripts share: a device-aware clock, a timed training step, their flags."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pyro
import torch


def sync(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a clock reads true."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def training_step(loss_fn: Callable[[], torch.Tensor], optimizer) -> Callable[[], None]:
    """One step as a trainer takes it: forward, ``loss.item()``, backward, optimizer step."""

    def run_step():
        loss = loss_fn()
        loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run_step


def median_step_ms(variants: dict[str, Callable[[], None]], steps: int, device, warmup: int = 50):
    """Median milliseconds per call of each variant, the variants taking turns (so that the
    machine's noise hits them alike), after ``warmup`` untimed rounds; Pyro validation off."""
    times = {k: [] for k in variants}
    with pyro.validation_enabled(False):
        for i in range(steps + warmup):
            for name, fn in variants.items():
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _device(name: str) -> str:
    if name not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {name!r}; choose cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("no CUDA GPU is available here; use --device cpu")
    return name


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring and ``--dataset`` and ``--device``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="mnist", help="data set (default mnist)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")
    return p
