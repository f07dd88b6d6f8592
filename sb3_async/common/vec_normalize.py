"""One set of ``VecNormalize`` statistics for all workers.

Each worker steps its own copy of the environment, so each would otherwise keep its own
running mean and variance and normalize observations differently from the others. While
workers run, every ``VecNormalize`` in the chain gets running statistics held in shared memory:
each worker merges its batches into them under a lock and normalizes with the common values.
The main process sees the same statistics (for ``EvalCallback`` and for saving).
"""

import ctypes
import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_async.common.envs import vec_env_chain

__all__ = ["SharedRunningMeanStd", "shared_normalization"]


class SharedRunningMeanStd(RunningMeanStd):
    """
    ``RunningMeanStd`` whose ``mean``, ``var`` and ``count`` live in shared memory; ``update``
    holds a lock across processes. Pickles (and deep-copies) as a plain ``RunningMeanStd``.

    :param source: statistics to start from
    :param lock: a multiprocessing lock shared by all processes that update these statistics
    """

    def __init__(self, source: RunningMeanStd, lock: Any) -> None:
        shape = np.shape(source.mean)
        size = int(np.prod(shape))
        self._mean = np.frombuffer(mp.RawArray(ctypes.c_double, size), dtype=np.float64).reshape(shape)
        self._var = np.frombuffer(mp.RawArray(ctypes.c_double, size), dtype=np.float64).reshape(shape)
        self._count = np.frombuffer(mp.RawArray(ctypes.c_double, 1), dtype=np.float64)
        self._lock = lock
        self.mean, self.var, self.count = source.mean, source.var, source.count

    @property  # type: ignore[override]
    def mean(self) -> np.ndarray:
        return self._mean

    @mean.setter
    def mean(self, value: np.ndarray) -> None:
        self._mean[...] = value

    @property  # type: ignore[override]
    def var(self) -> np.ndarray:
        return self._var

    @var.setter
    def var(self, value: np.ndarray) -> None:
        self._var[...] = value

    @property  # type: ignore[override]
    def count(self) -> float:
        return float(self._count[0])

    @count.setter
    def count(self, value: float) -> None:
        self._count[0] = value

    def update(self, arr: np.ndarray) -> None:
        with self._lock:
            super().update(arr)

    def to_local(self) -> RunningMeanStd:
        """A plain (process-local) copy of the current statistics."""
        return RunningMeanStd.copy(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.to_local().__reduce__()


_STATISTICS = ("obs_rms", "ret_rms")


def _share(rms: Any, lock: Any) -> Any:
    if isinstance(rms, dict):
        return {key: _share(value, lock) for key, value in rms.items()}
    return SharedRunningMeanStd(rms, lock)


def _unshare(rms: Any) -> Any:
    if isinstance(rms, dict):
        return {key: _unshare(value) for key, value in rms.items()}
    return rms.to_local() if isinstance(rms, SharedRunningMeanStd) else rms


@contextmanager
def shared_normalization(env: VecEnv | None) -> Iterator[None]:
    """
    Within the block, every ``VecNormalize`` in ``env``'s wrapper chain keeps its statistics in
    shared memory; on exit they become plain (picklable) statistics holding the final values.
    Enter before forking the workers.
    """
    normalizers = [wrapper for wrapper in vec_env_chain(env) if isinstance(wrapper, VecNormalize)] if env else []
    if not normalizers:
        yield
        return
    lock = mp.get_context("fork").Lock()
    # VecNormalize(norm_obs=False) has no obs_rms; vars(), not getattr: a VecEnvWrapper forwards
    # unknown attributes to the env it wraps.
    statistics = [(normalizer, name) for normalizer in normalizers for name in _STATISTICS if name in vars(normalizer)]
    for normalizer, name in statistics:
        setattr(normalizer, name, _share(getattr(normalizer, name), lock))
    try:
        yield
    finally:
        for normalizer, name in statistics:
            setattr(normalizer, name, _unshare(getattr(normalizer, name)))
