"""Something to do once every ``interval`` global steps, whichever worker gets there first."""

import ctypes
import multiprocessing as mp

import numpy as np

__all__ = ["SharedInterval"]


class SharedInterval:
    """
    Fires once each time the global step counter ``T`` passes a multiple of ``interval``
    (the paper's ``T mod I_target == 0``), in exactly one worker. Create it in the main
    process before the workers are forked.

    :param interval: the period, in global steps
    :param start: the value of ``T`` now; the first firing is at the next multiple of ``interval`` above it
    """

    def __init__(self, interval: int, start: int) -> None:
        self.interval = interval
        self._state = np.frombuffer(mp.RawArray(ctypes.c_int64, 2), dtype=np.int64)
        self._state[0] = (start // interval + 1) * interval  # next multiple to pass
        self._lock = mp.get_context("fork").Lock()

    @property
    def count(self) -> int:
        """How many times it fired."""
        return int(self._state[1])

    def claim(self, global_steps: int) -> bool:
        """True, in one caller only, when ``global_steps`` has passed the next multiple."""
        if global_steps < self._state[0]:  # the common case, without the lock
            return False
        with self._lock:
            if global_steps < self._state[0]:
                return False
            self._state[0] = (global_steps // self.interval + 1) * self.interval
            self._state[1] += 1
            return True
