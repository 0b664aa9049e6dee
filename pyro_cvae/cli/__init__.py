"""Command line: ``pyro-cvae train | sample | reconstruct | evaluate | transfer | interpolate | score``.

Layer 6: one module per command, each with ``add_parser(sub)`` and ``run(args)``; they parse,
call the public API and print. Every run writes into one folder (``--out``); commands that use a
trained model take that folder or a checkpoint file (``--run``). ``python -m pyro_cvae`` is the
same program.
"""

from __future__ import annotations

import argparse
import sys

from ..infer.svi import NonFiniteLossError
from ..train import CheckpointWriteError, RunFolderError
from . import evaluate, interpolate, reconstruct, sample, score, train, transfer

__all__ = ["main", "build_parser", "COMMANDS"]

#: command name -> its module (``add_parser(sub)``, ``run(args)``), in the order of ``--help``
COMMANDS = {
    "train": train,
    "sample": sample,
    "reconstruct": reconstruct,
    "evaluate": evaluate,
    "transfer": transfer,
    "interpolate": interpolate,
    "score": score,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-cvae`` (every flag documented)."""
    parser = argparse.ArgumentParser(
        prog="pyro-cvae",
        description="Conditional variational autoencoders in Pyro: train, sample, reconstruct, "
        "evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyro-cvae``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        RunFolderError,
        NonFiniteLossError,
        CheckpointWriteError,
    ) as e:
        print(f"pyro-cvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"pyro-cvae {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
