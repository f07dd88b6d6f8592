"""Episode results and training statistics, batched in the workers and merged in the main process."""

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.logger import Logger

__all__ = ["ReportAggregator", "WorkerReporter"]

# SB3 algorithms record their own running update count; the main process counts updates itself.
_WORKER_LOCAL_KEYS = frozenset({"train/n_updates"})


class WorkerReporter:
    """
    Collects, in a worker, finished episodes and the values that training code records with
    ``logger.record``, and sends them to the main process in batches: after an update when an
    episode ended (at most every ``min_interval`` seconds), and at least every ``interval``
    seconds. One message per batch keeps the channel cheap at thousands of steps per second,
    while the main process hears of an episode's end within about one rollout (callbacks such
    as ``StopTrainingOnMaxEpisodes`` act on it).

    :param send: sends one report to the main process
    :param worker_id: index of the worker, added to (a copy of) each episode's ``Monitor`` dict as
        ``"worker"``, replacing any value of that key (with per-worker settings such as the Q
        methods' final epsilons, results differ by worker)
    :param interval: the longest a collected value waits before it is sent, in seconds
    :param min_interval: the shortest time between two messages, in seconds
    """

    def __init__(
        self, send: Callable[[dict[str, Any]], None], worker_id: int, interval: float = 0.2, min_interval: float = 0.005
    ) -> None:
        self._send = send
        self._worker_id = worker_id
        self._interval = interval
        self._min_interval = min_interval
        self._last_send = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self._episodes: list[dict[str, Any]] = []
        self._successes: list[bool] = []
        self._stats: dict[str, list[float]] = {}
        self._n_updates = 0

    def add_step(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        """Record the episodes that ended at this step (from ``Monitor``'s ``info["episode"]``)."""
        for info, done in zip(infos, dones):
            episode = info.get("episode")
            if episode is not None:
                self._episodes.append({**episode, "worker": self._worker_id})
            if done and info.get("is_success") is not None:
                self._successes.append(bool(info["is_success"]))
        if time.monotonic() - self._last_send >= self._interval:
            self.send()

    def add_update(self, logger: Logger) -> None:
        """Record one gradient update and take (and clear) what was recorded in ``logger``."""
        self._n_updates += 1
        for key, value in logger.name_to_value.items():
            if key in _WORKER_LOCAL_KEYS or not np.isscalar(value):
                continue
            total = self._stats.setdefault(key, [0.0, 0])
            total[0] += float(value)
            total[1] += 1
        logger.dump()  # a logger without outputs: this only clears it
        since = time.monotonic() - self._last_send
        if since >= self._interval or (self._episodes and since >= self._min_interval):
            self.send()

    def send(self) -> None:
        """Send what was collected since the last message, if anything."""
        self._last_send = time.monotonic()
        if self._episodes or self._successes or self._n_updates:
            self._send(self.collect())

    def collect(self) -> dict[str, Any]:
        """What was collected since the last message, as one report (and start afresh)."""
        report = {"episodes": self._episodes, "successes": self._successes, "stats": self._stats, "n_updates": self._n_updates}
        self._reset()
        return report


class ReportAggregator:
    """
    Merges worker reports in the main process: episodes go to the algorithm's info buffers and
    to the callbacks, training statistics are averaged over all updates since the last dump.
    """

    def __init__(self) -> None:
        self.pending_episodes: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._stats: dict[str, list[float]] = {}
        self.n_updates = 0

    def add(self, report: dict[str, Any], ep_info_buffer: deque, ep_success_buffer: deque) -> None:
        ep_info_buffer.extend(report["episodes"])
        ep_success_buffer.extend(report["successes"])
        self.pending_episodes.extend(report["episodes"])
        self.n_updates += report["n_updates"]
        for key, (total, count) in report["stats"].items():
            mine = self._stats.setdefault(key, [0.0, 0])
            mine[0] += total
            mine[1] += count

    def take_step_infos(self, n_envs: int, everything: bool = False) -> tuple[list[dict[str, Any]], np.ndarray]:
        """
        ``infos`` and ``dones`` for one callback step: up to ``n_envs`` finished episodes, or,
        with ``everything``, all that are waiting (more entries than ``n_envs`` if need be).
        """
        size = max(n_envs, len(self.pending_episodes)) if everything else n_envs
        infos: list[dict[str, Any]] = [{} for _ in range(size)]
        dones = np.zeros(size, dtype=bool)
        for i in range(min(size, len(self.pending_episodes))):
            infos[i] = {"episode": self.pending_episodes.popleft()}
            dones[i] = True
        return infos, dones

    def record_stats(self, logger: Logger) -> None:
        """Record the mean of every statistic since the last call, then start afresh."""
        for key, (total, count) in self._stats.items():
            if count:
                logger.record(key, total / count)
        self._stats = {}
