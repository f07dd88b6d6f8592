"""The main process's side of a backend: what :class:`~sb3_async.common.base.AsyncAlgorithm` drives.

A backend runs ``n_workers`` workers, each calling ``algorithm._run_worker(worker)`` with its own
:class:`~sb3_async.common.worker.Worker`; the main process reads the global step counter, the
workers' reports and failures, lets workers run ahead of the callbacks by a bounded number of
steps, and stops them. ``"local"`` (the default): forked processes on this machine updating one
model in shared memory (Hogwild); ``"ray"``: Ray actors, possibly on other machines, sending
gradients to the main process, which applies them (see :mod:`sb3_async.common.ray_backend`).
"""

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["BACKENDS", "WorkerGroup", "make_worker_group"]

#: The values of the algorithms' ``backend`` argument.
BACKENDS = ("local", "ray")


class WorkerGroup(ABC):
    """
    Workers running one ``learn`` call. A context manager: entering starts them, leaving stops and
    removes every one of them (and everything they started), also after an exception.
    """

    @abstractmethod
    def __enter__(self) -> "WorkerGroup": ...

    @abstractmethod
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """
        Reports that arrived within ``timeout`` seconds (episodes, training statistics, update counts).

        :raises WorkerError: if a worker raised an exception or died
        """

    @property
    @abstractmethod
    def global_steps(self) -> int:
        """The global step counter ``T``: steps reserved by the workers (taken, or being taken)."""

    @property
    @abstractmethod
    def steps_taken(self) -> int:
        """Steps whose environment step has returned, with the episodes they ended (callbacks follow these)."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True when every worker has ended normally."""

    @property
    @abstractmethod
    def overdue(self) -> bool:
        """True when some workers still run well after they were asked to stop (or the budget was spent)."""

    @abstractmethod
    def allow_up_to(self, handled: int) -> None:
        """The main process handled the steps up to ``handled``; workers may go a bounded slack beyond."""

    @abstractmethod
    def request_stop(self) -> None:
        """Ask every worker to stop before its next environment step."""

    @property
    @abstractmethod
    def copies_done(self) -> dict[str, int]:
        """How many times each periodic copy (by target name) was made during this run."""


def make_worker_group(
    backend: str, algorithm: Any, seeds: list[int], base_timesteps: int, total_timesteps: int, slack: int
) -> WorkerGroup:
    """The :class:`WorkerGroup` of ``backend`` for one ``learn`` call of ``algorithm``."""
    if backend == "local":
        from sb3_async.common.hogwild import HogwildGroup

        return HogwildGroup(algorithm, seeds, base_timesteps, total_timesteps, slack)
    if backend == "ray":
        from sb3_async.common.ray_backend import RayGroup

        return RayGroup(algorithm, seeds, base_timesteps, total_timesteps, slack)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
