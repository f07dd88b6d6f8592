"""What the benchmark scripts share in reading their command lines."""

import argparse
import math
from collections.abc import Callable
from typing import Any


def at_least(minimum: int) -> Callable[[str], int]:
    """
    An ``argparse`` type: a whole number of at least ``minimum``, written as an integer or, for
    step budgets, in float notation (``1e7``); argparse names the option in its error.

    :param minimum: the smallest value accepted
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            number = float(text)  # a ValueError here is argparse's "invalid int value"
            if not number.is_integer():
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text}") from None
            value = int(number)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value

    # argparse's message for text that is not a number names the type: "invalid int value".
    parse.__name__ = "int"
    return parse


def positive(text: str) -> float:
    """
    An ``argparse`` type: a finite number above 0 (seconds, minutes); argparse names the option in its error.

    :param text: the option's value as given
    """
    value = float(text)
    if not (value > 0 and math.isfinite(value)):  # "not >" also refuses nan
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


positive.__name__ = "float"


def parse_params(items: list[str]) -> dict[str, Any]:
    """
    ``key:value`` overrides read exactly as the zoo reads its ``-params``.

    :param items: the ``key:value`` items
    :raises ValueError: an item is not ``key:value`` with a value Python can evaluate
    """
    from rl_zoo3.utils import StoreDict

    for item in items:
        key, colon, value = item.partition(":")
        if not key or not colon or not value:
            raise ValueError(f"-params: expected key:value items such as n_workers:4, got {item!r}")
    namespace = argparse.Namespace()
    try:
        StoreDict(["-params"], "params", nargs="+")(None, namespace, items)
    except Exception as error:  # the zoo evaluates each value as Python
        raise ValueError(f"-params: a value of {' '.join(items)!r} is not a Python expression ({error})") from error
    return namespace.params


def params_option(parser: argparse.ArgumentParser, items: list[str] | None) -> dict[str, Any]:
    """
    A script's ``-params`` read by :func:`parse_params`; a bad item ends the script with the parser's error.

    :param parser: the script's parser
    :param items: the ``key:value`` items given (None or empty: no overrides)
    """
    try:
        return parse_params(items or [])
    except ValueError as error:
        parser.error(str(error))
