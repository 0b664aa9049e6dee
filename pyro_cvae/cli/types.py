"""Argument types of the command line, public so that scripts parse their flags the same way.

Each is an :mod:`argparse` ``type=`` callable: it takes the text of a flag and returns its value,
or raises :class:`argparse.ArgumentTypeError` with a message that names the text and what was
expected (argparse prints it as ``argument --flag: <message>``)::

    from pyro_cvae.cli.types import int_list

    p.add_argument("--hidden", type=int_list, default="200,200")

Parsing only; nothing here knows a model or a data set.
"""

from __future__ import annotations

import argparse
import json

__all__ = [
    "comma_list",
    "float_list",
    "index_pair",
    "int_list",
    "key_value",
    "nonnegative_int_list",
    "positive_int",
]


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, at least one: ``"1,5,50"`` -> ``(1, 5, 50)``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected positive integers, comma-separated (e.g. 1,5,50), got {text!r}"
        )
    return values


def nonnegative_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 0, possibly none: ``"0,1,2"`` -> ``(0, 1, 2)``, ``""`` ->
    ``()`` (seeds, or a list that may be empty)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected integers >= 0, comma-separated (e.g. 0,1,2), got {text!r}"
        )
    return values


def float_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, at least one: ``"0.5,1,2e-3"`` -> ``(0.5, 1.0, 0.002)``."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.5,1,2e-3, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected at least one number, comma-separated (e.g. 0.5,1), got {text!r}"
        )
    return values


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (10, 0.5, true), else as text:
    ``"components=10"`` -> ``("components", 10)``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as components=10, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def positive_int(text: str) -> int:
    """An integer >= 1: ``"28"`` -> ``28``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def index_pair(text: str) -> tuple[int, int]:
    """Two comma-separated integers >= 0: ``"0,5"`` -> ``(0, 5)``."""
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two comma-separated integers such as 0,5, got {text!r}"
        ) from None
    if a < 0 or b < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return a, b


def comma_list(text: str) -> tuple[str, ...]:
    """Comma-separated names, at least one: ``"age, income"`` -> ``("age", "income")``."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values
