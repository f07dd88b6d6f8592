"""Argument checks that raise early, naming the argument and what was expected."""

import math
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Check",
    "check_bool",
    "check_float",
    "check_int",
    "check_learning_rate",
    "check_optional",
    "check_path",
    "check_settings",
]

#: A check of one setting: called with its name and value, raises if the value is not accepted.
Check = Callable[[str, Any], object]


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Return ``value`` if it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """
    Return ``value`` as a float if it is a real number within ``[low, high]`` (``(low, high]`` if
    ``low_open``), finite unless ``allow_inf``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        low_text = "-inf" if low is None else low
        high_text = "inf" if high is None else high
        raise ValueError(f"{name} must be in {left}{low_text}, {high_text}], got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_learning_rate(name: str, value: Any, allow_zero: bool = False) -> None:
    """
    A positive number (or 0 with ``allow_zero``: a loaded model that is only evaluated), or a
    schedule: a callable of the progress remaining (1 to 0).
    """
    if callable(value):
        return
    check_float(name, value, low=0.0, low_open=not allow_zero)


def check_path(name: str, value: Any) -> None:
    """A path: a string or an ``os.PathLike``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (a string), got {value!r} ({type(value).__name__})")


def check_optional(check: Check) -> Check:
    """``check``, which also accepts None."""

    def check_or_none(name: str, value: Any) -> object:
        return None if value is None else check(name, value)

    return check_or_none


def check_settings(checks: Mapping[str, Check], values: Mapping[str, Any]) -> None:
    """Check each of ``values`` that has a check in ``checks`` (by name)."""
    for name, value in values.items():
        check = checks.get(name)
        if check is not None:
            check(name, value)
