"""Environment helpers: what a worker can step, and how the given ``env`` argument is read."""

import multiprocessing.connection
import multiprocessing.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecEnvWrapper

__all__ = [
    "PerWorkerSubprocVecEnv",
    "RebuiltPerWorker",
    "check_worker_env",
    "is_env_factory",
    "rebuild_per_worker_envs",
    "vec_env_chain",
]


class _Tee:
    """Writes to a stream and to a file (an environment process's stderr, kept for its parent)."""

    def __init__(self, stream: Any, path: str) -> None:
        self._stream = stream
        self._file = open(path, "w")

    def write(self, text: str) -> int:
        self._file.write(text)
        self._file.flush()
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RebuiltPerWorker:
    """
    A VecEnv that a forked worker cannot step as it inherits it (its environments live in
    sub-processes or threads of the process that built it): each worker steps a
    :meth:`fresh_copy` instead, and leaves the inherited one alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.creator_pid = os.getpid()
        super().__init__(*args, **kwargs)

    def fresh_copy(self) -> VecEnv:
        """A new VecEnv like this one, with environments of the calling process's own."""
        raise NotImplementedError


class _WatchedConnection:
    """
    One end of a pipe to an environment process, watched by ``owner``: ``recv`` returns only
    once there is data (``owner._wait_for`` raises when an environment process dies first), and a
    broken pipe in ``send`` or ``recv`` asks ``owner._raise_for_a_dead_process`` for the cause.
    """

    def __init__(self, connection: multiprocessing.connection.Connection, owner: "PerWorkerSubprocVecEnv") -> None:
        self._connection = connection
        self._owner = owner

    def send(self, message: Any) -> None:
        try:
            self._connection.send(message)
        except OSError:
            self._owner._raise_for_a_dead_process()
            raise

    def recv(self) -> Any:
        self._owner._wait_for(self._connection)
        try:
            return self._connection.recv()
        except (OSError, EOFError):
            self._owner._raise_for_a_dead_process()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[Any]]:
        # SB3 hands each environment process its parent's end too (to close it): it travels as the
        # plain connection (with "spawn" and "forkserver", pickled).
        return _same, (self._connection,)


def _same(value: Any) -> Any:
    return value


class PerWorkerSubprocVecEnv(RebuiltPerWorker, SubprocVecEnv):
    """
    A ``SubprocVecEnv`` that keeps its environment factories, so that every worker can start
    sub-processes of its own: pass it (or ``vec_env_cls=PerWorkerSubprocVecEnv`` to
    ``make_vec_env``) where a ``SubprocVecEnv`` is wanted. The main process keeps the original.

    When an environment process dies (its environment raised while being built, reset or
    stepped), the call waiting for it raises a ``RuntimeError`` holding that process's traceback,
    instead of SB3's bare ``EOFError`` or ``ConnectionResetError`` (or waiting for ever: the pipe of
    a dead process stays open while the other environment processes hold a copy of it).

    :param env_fns: callables that each build one environment
    :param start_method: the multiprocessing start method of the sub-processes
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str | None = None) -> None:
        self.env_fns = list(env_fns)
        self.start_method = start_method
        self._stderr_dir = tempfile.mkdtemp(prefix="sb3_async-env-")
        # Runs in each process forked from now on (with "fork": this one's sub-processes).
        multiprocessing.util.register_after_fork(self, PerWorkerSubprocVecEnv._keep_stderr)
        try:
            super().__init__(self.env_fns, start_method)
        except BaseException:
            shutil.rmtree(self._stderr_dir, ignore_errors=True)  # what it held is in the exception
            raise

    # SubprocVecEnv's __init__ sets ``remotes`` and already waits on them (the spaces, ``render_mode``):
    # every connection is watched from the moment it is set.
    @property  # type: ignore[override]
    def remotes(self) -> list["_WatchedConnection"]:
        return self._watched_remotes

    @remotes.setter
    def remotes(self, connections: Sequence[multiprocessing.connection.Connection]) -> None:
        self._watched_remotes = [_WatchedConnection(connection, self) for connection in connections]

    def fresh_copy(self) -> "PerWorkerSubprocVecEnv":
        # fork: a forked worker inherits the main process's forkserver bookkeeping, which
        # it cannot use (the server is not its child), and spawn would re-import everything.
        return PerWorkerSubprocVecEnv(self.env_fns, "fork")

    def _keep_stderr(self) -> None:
        sys.stderr = _Tee(sys.stderr, os.path.join(self._stderr_dir, f"{os.getpid()}.err"))

    def _wait_for(self, *connections: multiprocessing.connection.Connection, timeout: float | None = None) -> None:
        """Wait until one of ``connections`` has data (or ``timeout``); raise if an environment process dies first."""
        sentinels = {process.sentinel: process for process in self.processes}
        for ready in multiprocessing.connection.wait([*connections, *sentinels], timeout):
            if ready in sentinels:
                self._raise_for_dead_process(sentinels[ready])

    def _raise_for_a_dead_process(self, wait: float = 5.0) -> None:
        """After a broken pipe: raise for the environment process that died, once it is seen dead (within ``wait`` s)."""
        if not self.closed:  # used after close(): SB3's own error
            self._wait_for(timeout=wait)

    def _raise_for_dead_process(self, process: Any) -> None:
        process.join(1.0)
        index = self.processes.index(process)
        try:
            with open(os.path.join(self._stderr_dir, f"{process.pid}.err")) as f:
                text = f.read()
        except OSError:
            text = ""
        start = text.rfind("Traceback (most recent call last)")
        output = text[start:] if start >= 0 else text[-4000:]
        self.closed = True  # SB3's close() would wait for the dead process's answer
        for other in self.processes:
            other.terminate()
        raise RuntimeError(
            f"the process of environment {index} (pid {process.pid}) died with exit code {process.exitcode}"
            + (f"; its error:\n{output.strip()}" if output.strip() else "")
        )

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._stderr_dir, ignore_errors=True)


def rebuild_per_worker_envs(env: VecEnv) -> tuple[VecEnv, list[VecEnv]]:
    """
    In a worker: replace each :class:`RebuiltPerWorker` VecEnv of ``env``'s chain (a
    :class:`PerWorkerSubprocVecEnv`, an ``AleVecEnv``) by its fresh copy, with environments of
    the worker's own (the inherited one belongs to the main process: it is left untouched, not
    closed). Returns the (possibly new) outermost env and the envs created.
    """
    created: list[VecEnv] = []
    parent: VecEnv | None = None
    for wrapper in list(vec_env_chain(env)):
        if isinstance(wrapper, RebuiltPerWorker) and wrapper.creator_pid != os.getpid():
            fresh = wrapper.fresh_copy()
            created.append(fresh)
            if parent is None:
                env = fresh
            else:
                parent.venv = fresh  # type: ignore[attr-defined]
        parent = wrapper
    return env, created


def vec_env_chain(env: VecEnv | None) -> Iterator[VecEnv]:
    """Yield ``env`` and every VecEnv it wraps, outermost first."""
    while env is not None:
        yield env
        env = env.venv if isinstance(env, VecEnvWrapper) else None


def is_env_factory(env: Any) -> bool:
    """True for a callable that builds an environment (an env id or instance is not one)."""
    return callable(env) and not isinstance(env, (str, gym.Env, VecEnv))


def check_worker_env(env: VecEnv) -> None:
    """
    Raise a ``ValueError`` if the workers cannot each step their own copy of ``env``.

    Workers are forked and step the copy of the environment they inherit. The sub-processes
    of a ``SubprocVecEnv`` cannot be copied that way: every worker would drive the same ones
    (a :class:`PerWorkerSubprocVecEnv` is rebuilt in each worker instead).
    """
    for wrapper in vec_env_chain(env):
        if isinstance(wrapper, SubprocVecEnv) and not isinstance(wrapper, PerWorkerSubprocVecEnv):
            raise ValueError(
                "env: a SubprocVecEnv cannot be given to an asynchronous algorithm, because its "
                "sub-processes would be shared by all workers. Each worker is already a process of its "
                "own: pass a DummyVecEnv (e.g. make_vec_env(env_id, n_envs=...)), an env id, a callable "
                "that returns an env, or, to step each worker's environments in sub-processes, "
                "make_vec_env(..., vec_env_cls=sb3_async.common.envs.PerWorkerSubprocVecEnv)."
            )
