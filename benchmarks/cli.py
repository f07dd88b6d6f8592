"""What the benchmark scripts share in reading their command lines."""

import argparse
from collections.abc import Callable


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
