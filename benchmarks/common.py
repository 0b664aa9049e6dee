"""What the benchmark scripts share: a device-aware clock and their command-line basics."""

from __future__ import annotations

import argparse

import torch


def sync(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a clock reads true."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring and ``--dataset`` and ``--device``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="mnist", help="data set (default mnist)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    return p
