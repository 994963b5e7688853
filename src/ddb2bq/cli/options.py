"""Numeric command-line options, checked for type and range before any work starts.

``float("nan")``, ``float("inf")`` and ``1e12`` all parse: an option that takes a number names
its range, and argparse answers anything outside it with a usage error (exit 2). Example::

    parser.add_argument("--workers", type=whole(1, 256), default=4)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(low: int, high: int) -> Callable[[str], int]:
    """A parser for a whole number from ``low`` to ``high``, both included."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return value

    return parse


def number(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """A parser for a finite number from ``low`` (excluded when ``above``) to ``high``."""

    def parse(text: str) -> float:
        value = _finite(text)
        if value > high or value < low or (above and value == low):
            floor = f"above {low:g}" if above else f"from {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a number {floor} to {high:g}")
        return value

    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
