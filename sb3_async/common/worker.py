"""What an algorithm's actor-learner loop sees of the run, whichever backend runs its workers.

An algorithm implements ``_worker_loop(worker)``; a backend (worker processes sharing memory on
one machine, or Ray actors on a cluster) calls it in each worker with a :class:`Worker`, after
making ``self.policy`` the worker's local copy θ' of the shared model: ``policy.optimizer.step()``
then applies the gradients of θ' to the shared θ, with the shared optimizer statistics.
"""

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.logger import Logger

__all__ = ["NonFiniteError", "PeriodicCopy", "Worker", "WorkerError", "check_finite_gradients", "check_finite_step"]


class WorkerError(RuntimeError):
    """A worker raised an exception, died or hung; the message holds its traceback or what happened."""


class NonFiniteError(FloatingPointError):
    """NaN or infinity in what an environment returned, or in a gradient: the worker stops before it spreads."""


def _non_finite_envs(values: Any) -> list[int]:
    if isinstance(values, dict):
        return sorted({i for value in values.values() for i in _non_finite_envs(value)})
    values = np.asarray(values)
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return []
    return np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)).tolist()


def check_finite_step(observations: Any, rewards: np.ndarray) -> None:
    """Raise :class:`NonFiniteError` if an environment returned NaN or infinity in its observation or reward."""
    for what, values in (("observations", observations), ("rewards", rewards)):
        envs = _non_finite_envs(values)
        if envs:
            raise NonFiniteError(
                f"the environment returned NaN or infinity in its {what} (environments {envs} of this worker's VecEnv); "
                "training stopped before it reached the model"
            )


def check_finite_gradients(named_gradients: list[tuple[str, th.Tensor]]) -> None:
    """
    Raise :class:`NonFiniteError`, naming the parameters, if a gradient holds NaN or infinity (one
    sum over all gradients is cheap, and turns any NaN or infinity in them into NaN or infinity).
    """
    if not named_gradients or th.isfinite(th.stack([g.sum() for _, g in named_gradients]).sum()):
        return
    names = [name for name, g in named_gradients if not g.isfinite().all()]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise NonFiniteError(
        f"the gradient of this update holds NaN or infinity (in {shown}); the update was not applied. "
        "The loss became NaN or infinite: a learning rate too high, or extreme rewards or observations"
    )


class PeriodicCopy:
    """
    A module of the shared policy that is copied from another one each time the global step
    counter ``T`` passes a multiple of ``interval`` (a target network: the paper's
    ``T mod I_target == 0``), by the backend, right after the update that crossed it.
    Workers read the copy from the shared model and never train it.

    :param source: name of the policy's submodule that is copied (e.g. ``"q_net"``)
    :param target: name of the policy's submodule that receives it (e.g. ``"q_net_target"``)
    :param interval: the period, in global steps
    """

    def __init__(self, source: str, target: str, interval: int) -> None:
        self.source = source
        self.target = target
        self.interval = interval

    def __repr__(self) -> str:
        return f"PeriodicCopy({self.source!r} -> {self.target!r} every {self.interval} steps)"


class Worker(ABC):
    """
    One worker of a run, as its actor-learner loop uses it.

    :param worker_id: index of the worker, from 0
    :param seed: the worker's own seed (distinct from every other worker's)
    :param total_timesteps: ``T`` at which training ends
    """

    def __init__(self, worker_id: int, seed: int, total_timesteps: int) -> None:
        self.worker_id = worker_id
        self.seed = seed
        self.total_timesteps = total_timesteps

    @abstractmethod
    def pull(self) -> None:
        """θ' = θ: refresh the local copy (parameters and buffers) from the shared model."""

    @abstractmethod
    def reserve(self, n_steps: int) -> bool:
        """
        Claim ``n_steps`` environment steps before taking them (they count in ``T`` from now on).
        False when the worker must stop instead: the budget is spent, or training was stopped.
        May wait while the main process catches up with the workers (callbacks).
        """

    @abstractmethod
    def record_step(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        """Count a step as taken and report the episodes that ended at it (``Monitor``'s ``info["episode"]``)."""

    @abstractmethod
    def record_update(self, logger: Logger) -> None:
        """Report one gradient update, with (and clearing) what training code recorded in ``logger``."""

    @property
    @abstractmethod
    def global_steps(self) -> int:
        """The global step counter ``T`` (environment steps of all workers)."""

    @property
    def progress_remaining(self) -> float:
        """``1 - T / total_timesteps``, the argument of SB3 schedules."""
        return max(0.0, 1.0 - self.global_steps / self.total_timesteps)
