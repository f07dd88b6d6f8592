"""Asynchronous methods for deep reinforcement learning (Mnih et al. 2016) for Stable-Baselines3."""

from importlib.metadata import PackageNotFoundError, version

from sb3_async.a3c import A3C
from sb3_async.common.pool import WorkerError
from sb3_async.q_learning import AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa

try:
    __version__ = version("sb3-async")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["A3C", "AsyncNStepQ", "AsyncOneStepQ", "AsyncOneStepSarsa", "WorkerError", "__version__"]
