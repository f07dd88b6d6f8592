"""Signals and process lifetimes: what stops training, and what dies with what.

- :func:`die_with_parent`: a process the kernel kills when its parent dies (Linux);
- :func:`deferred_signals`: Ctrl-C and SIGTERM held back over a block that must not be cut;
- :func:`sigterm_stops_training`: SIGTERM unwinds ``learn`` as Ctrl-C does;
- :func:`one_learn_at_a_time`: a second concurrent ``learn`` on one model is an error.
"""

import ctypes
import ctypes.util
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deferred_signals", "die_with_parent", "one_learn_at_a_time", "sigterm_stops_training"]


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


@contextmanager
def deferred_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[list[int]]:
    """
    Hold back Ctrl-C (and SIGTERM) until the block is left; the block may look at the list it is
    given to see whether one arrived. A ``KeyboardInterrupt`` raised inside ``Queue.get`` between
    reading a message's length and its body would leave the queue's pipe out of step, and one
    raised inside ``os.fork`` is swallowed by the fork handlers; the clean-up that follows either
    would wait for ever, or train on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []  # only the main thread receives signals
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in signals}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # Here, not after the block: the block often ends with queue.Empty, and the
        # interrupt must replace it.
        for signum in dict.fromkeys(received):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


_learning_models: set[int] = set()
_learning_lock = threading.Lock()


@contextmanager
def one_learn_at_a_time(model: Any) -> Iterator[None]:
    """One ``learn`` at a time per model: a second, from another thread, is an error, not a second set of workers."""
    with _learning_lock:
        if id(model) in _learning_models:
            raise RuntimeError(
                f"learn() is already running on this {type(model).__name__} (in another thread); "
                "wait for it to return, or train a second model"
            )
        _learning_models.add(id(model))
    try:
        yield
    finally:
        with _learning_lock:
            _learning_models.discard(id(model))


@contextmanager
def sigterm_stops_training() -> Iterator[None]:
    """
    While training, SIGTERM (what a job scheduler sends) unwinds like Ctrl-C, as ``SystemExit(143)``,
    so that every worker is stopped and reaped; afterwards the previous handler is back. Left alone
    when the program installed a handler of its own, or outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
