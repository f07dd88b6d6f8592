"""How long workers get to stop, once asked to or once the budget is spent, before they count as hung."""

import time
from collections.abc import Sequence

__all__ = ["STOP_GRACE_SECONDS", "StopClock"]

#: The shortest grace period, in seconds.
STOP_GRACE_SECONDS = 10.0
# A worker's last step may be as slow as its slowest so far (an environment whose resets take long):
# the grace period is at least this many times the longest a worker has gone between two steps.
_GRACE_PER_LONGEST_GAP = 3.0


class StopClock:
    """
    When the workers were asked to stop (or the budget was spent), and how long they may take from
    then: ``STOP_GRACE_SECONDS``, or longer for workers seen to go long between two steps.

    :param n_workers: the number of workers
    """

    def __init__(self, n_workers: int) -> None:
        self._taken = [0] * n_workers
        self._last_step: list[float | None] = [None] * n_workers
        #: The longest time, in seconds, a worker has gone between two steps (the start is not counted).
        self.longest_gap = 0.0
        #: When the workers were asked to stop (``time.monotonic()``), or None.
        self.since: float | None = None

    def observe(self, taken: Sequence[int]) -> None:
        """Note the steps each worker has taken so far (called as the main process polls)."""
        now = time.monotonic()
        for worker_id, steps in enumerate(taken):
            if steps != self._taken[worker_id]:
                last = self._last_step[worker_id]
                if last is not None:
                    self.longest_gap = max(self.longest_gap, now - last)
                self._taken[worker_id] = int(steps)
                self._last_step[worker_id] = now

    def start(self) -> None:
        """The workers were asked to stop, or the budget was spent (only the first call counts)."""
        if self.since is None:
            self.since = time.monotonic()

    @property
    def grace(self) -> float:
        """Seconds the workers may take to stop."""
        return max(STOP_GRACE_SECONDS, _GRACE_PER_LONGEST_GAP * self.longest_gap)

    @property
    def deadline(self) -> float:
        """When the grace period ends (from now, if the clock has not started)."""
        return (time.monotonic() if self.since is None else self.since) + self.grace

    @property
    def overdue(self) -> bool:
        """True when the workers were asked to stop more than the grace period ago."""
        return self.since is not None and time.monotonic() > self.since + self.grace
