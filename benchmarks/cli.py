"""What the benchmark scripts share in reading their command lines."""

import argparse
from collections.abc import Callable
from typing import Any


def at_least(minimum: int) -> Callable[[str], int]:
    """
    An ``argparse`` type: an integer of at least ``minimum``; argparse names the option in its error.

    :param minimum: the smallest value accepted
    """

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value

    # argparse's message for text that is not a number names the type: "invalid int value".
    parse.__name__ = "int"
    return parse


def positive(text: str) -> float:
    """An ``argparse`` type: a number above 0 (seconds, minutes); argparse names the option in its error."""
    value = float(text)
    # "not >" rather than "<=" so that nan is refused too.
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


positive.__name__ = "float"


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key:value`` overrides read exactly as the zoo reads its ``-params``."""
    from rl_zoo3.utils import StoreDict

    namespace = argparse.Namespace()
    StoreDict(["-params"], "params", nargs="+")(None, namespace, items)
    return namespace.params
