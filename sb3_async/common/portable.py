"""Pickling an algorithm and its environment for workers on other machines (the Ray backend).

Forked workers inherit the environment; a worker in another process of another machine needs a
copy sent to it. Three things in an SB3 environment stand in the way, and are handled here:

- a ``VecEnvWrapper`` keeps its class's members (``class_attributes``), which cannot be pickled
  (``_abc_data``): sent without them, recomputed on arrival;
- ``Monitor`` writes its CSV through an open file: the copy does not write one (the episodes reach
  the main process's logger and callbacks anyway);
- a ``PerWorkerSubprocVecEnv`` holds sub-processes: the copy starts sub-processes of its own from
  the environment factories.

Anything else that cannot be pickled raises a ``ValueError`` saying what, and what to pass instead.
"""

import inspect
import io
import pickle
from typing import Any

import cloudpickle
from stable_baselines3.common.monitor import ResultsWriter
from stable_baselines3.common.vec_env import VecEnvWrapper

from sb3_async.common.envs import PerWorkerSubprocVecEnv

__all__ = ["dumps", "loads"]


def _rebuild_wrapper(cls: type, state: dict[str, Any]) -> VecEnvWrapper:
    wrapper = cls.__new__(cls)
    wrapper.__dict__.update(state)
    wrapper.class_attributes = dict(inspect.getmembers(cls))
    return wrapper


def _rebuild_per_worker(env_fns: list[Any], start_method: str | None) -> PerWorkerSubprocVecEnv:
    return PerWorkerSubprocVecEnv(env_fns, start_method)


def _no_writer() -> None:
    return None


class _Pickler(cloudpickle.CloudPickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, PerWorkerSubprocVecEnv):
            return _rebuild_per_worker, (obj.env_fns, None)
        if isinstance(obj, VecEnvWrapper):
            state = {key: value for key, value in obj.__dict__.items() if key != "class_attributes"}
            return _rebuild_wrapper, (type(obj), state)
        if isinstance(obj, ResultsWriter):
            return _no_writer, ()
        return super().reducer_override(obj)


def dumps(obj: Any, what: str) -> bytes:
    """
    ``obj`` pickled for another process (cloudpickle, with the rules of this module).

    :param what: what ``obj`` is, for the error message
    :raises ValueError: if something in ``obj`` cannot be sent
    """
    try:
        return _dump(obj)
    except Exception as error:
        culprit = _unpicklable_attribute(obj)
        if culprit == "_env_source":
            raise ValueError(
                f"the callable that builds the environment cannot be sent to workers in other processes "
                f"({type(error).__name__}: {error}): it may only refer to what can be pickled (no locks, open files "
                "or environments built already), or use backend='local'"
            ) from error
        if culprit is not None and culprit not in _ENV_ATTRIBUTES:
            raise ValueError(
                f"{what} cannot be sent to workers in other processes: its attribute {culprit!r} cannot be pickled "
                f"({type(error).__name__}: {error}); make it picklable (no locks or open files), "
                "or use backend='local'"
            ) from error
        raise ValueError(
            f"{what} cannot be sent to workers in other processes ({type(error).__name__}: {error}). "
            "With backend='ray', pass the environment as an env id or as a callable that builds it "
            "(e.g. lambda: make_vec_env(...)), or use backend='local'"
        ) from error


# The attributes of an algorithm that hold its environment.
_ENV_ATTRIBUTES = ("env", "_vec_normalize_env")


def _dump(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _unpicklable_attribute(obj: Any) -> str | None:
    """The name of the first attribute of ``obj`` that cannot be pickled, if any."""
    for name, value in getattr(obj, "__dict__", {}).items():
        try:
            _dump(value)
        except Exception:
            return name
    return None


def loads(data: bytes) -> Any:
    """The object :func:`dumps` pickled."""
    return pickle.loads(data)
