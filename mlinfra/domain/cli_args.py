"""argparse types that refuse what no real plan needs: NaN, infinity, overflowing and absurd numbers.

Each returns a ``type=`` callable for ``add_argument``; a bad value raises ``argparse.ArgumentTypeError`` whose
message names the argument, the value and what is allowed, so the command exits 2 with a usage error (never a
traceback, never a plan for 10^30 GPUs, never ``Infinity`` in JSON). Pure: no AWS, no CDK.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable

__all__ = ["number", "parsed"]


def number(name: str, *, minimum: float, maximum: float, integer: bool = False,
           exclusive_minimum: bool = False) -> Callable[[str], Any]:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``exclusive_minimum``)."""
    low = "(" if exclusive_minimum else "["
    allowed = f"{'a whole number' if integer else 'a finite number'} in {low}{minimum:g}, {maximum:g}]"

    def convert(text: str) -> Any:
        try:
            value: float | int = int(text, 10) if integer else float(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, got: {text[:40]!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, got: {text[:40]!r}")
        too_low = value <= minimum if exclusive_minimum else value < minimum
        if too_low or value > maximum:
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, got: {text[:40]!r}")
        return value

    convert.__name__ = name.lstrip("-").replace("-", "_")
    return convert


def parsed(name: str, parse: Callable[[str], Any], *, minimum: float, maximum: float, unit: str) -> Callable[[str], Any]:
    """``parse(text)`` (a unit-aware parser raising ValueError), then finite and within ``[minimum, maximum]``
    (in the parser's base ``unit``)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except (ValueError, OverflowError, ArithmeticError) as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None
        if not math.isfinite(float(value)) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {minimum:g} and {maximum:g} {unit}, got: {text[:40]!r}")
        return text

    convert.__name__ = name.lstrip("-").replace("-", "_")
    return convert
