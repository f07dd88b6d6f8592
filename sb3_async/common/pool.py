"""Worker processes: start, global step counter, stop signal, failure reporting and clean-up.

The global step counter ``T`` of the paper is kept lock-free and exact: each worker owns one
slot of a shared int64 array and only ever adds to its own slot; ``T`` is the sum of the slots.
"""

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th

__all__ = ["WorkerContext", "WorkerError", "WorkerPool"]

# How often (in calls to ``should_stop``) a worker checks that its parent is still alive.
_PARENT_CHECK_EVERY = 64


class WorkerError(RuntimeError):
    """A worker process raised an exception or died; the message holds its traceback or exit status."""


class WorkerContext:
    """
    What one worker process knows of the run: its index and seed, the shared counters and
    the channel back to the main process. Created in the main process, used in the worker.

    :param worker_id: index of the worker, from 0
    :param seed: the worker's own seed (distinct from every other worker's)
    :param steps: shared per-worker step counters (one slot each)
    :param flags: shared flags; ``flags[0]`` is the stop request
    :param base_timesteps: value of ``T`` when the workers started
    :param total_timesteps: ``T`` at which training ends
    :param outbox: queue to the main process
    """

    def __init__(
        self,
        worker_id: int,
        seed: int,
        steps: np.ndarray,
        flags: np.ndarray,
        base_timesteps: int,
        total_timesteps: int,
        outbox: Any,
    ) -> None:
        self.worker_id = worker_id
        self.seed = seed
        self._steps = steps
        self._flags = flags
        self.base_timesteps = base_timesteps
        self.total_timesteps = total_timesteps
        self._outbox = outbox
        # Built in the main process: its pid is the workers' parent pid.
        self._parent_pid = os.getpid()
        self._calls = 0

    def add_steps(self, n: int) -> None:
        """Count ``n`` environment steps of this worker into the global counter."""
        self._steps[self.worker_id] += n

    @property
    def global_steps(self) -> int:
        """The global step counter ``T`` (all workers)."""
        return self.base_timesteps + int(self._steps.sum())

    @property
    def progress_remaining(self) -> float:
        """``1 - T / total_timesteps``, the argument of SB3 schedules."""
        return max(0.0, 1.0 - self.global_steps / self.total_timesteps)

    def should_stop(self) -> bool:
        """True once ``T`` reached the budget, the main process asked to stop, or it is gone."""
        self._calls += 1
        if self._calls % _PARENT_CHECK_EVERY == 0 and os.getppid() != self._parent_pid:
            # Orphaned (the main process was killed): leave rather than train forever.
            os._exit(1)
        return bool(self._flags[0]) or self.global_steps >= self.total_timesteps

    def send(self, kind: str, payload: Any = None) -> None:
        """Send a message to the main process (never blocks)."""
        self._outbox.put((kind, self.worker_id, payload))


def _worker_entry(target: Callable[[WorkerContext], None], context: WorkerContext) -> None:
    # Ctrl-C reaches the whole process group; the main process alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Must come before the first torch op: a forked child hangs in intra-op parallel code
    # if the parent already used its thread pool, and one thread per worker avoids
    # oversubscribing the cores.
    th.set_num_threads(1)
    try:
        target(context)
    except BaseException:
        context.send("error", traceback.format_exc())
        # Flush the queue before exiting so the traceback reaches the main process.
        context._outbox.close()
        context._outbox.join_thread()
        sys.exit(1)
    context.send("done")


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """
    Hold back Ctrl-C until the block is left. A ``KeyboardInterrupt`` raised inside
    ``Queue.get`` between reading a message's length and its body would leave the queue's
    pipe out of step, and the clean-up that follows would wait for ever on it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        # Here, not after the block: the block often ends with queue.Empty, and the
        # interrupt must replace it.
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


class WorkerPool:
    """
    Runs ``target(context)`` in ``len(seeds)`` forked processes and reports on them.

    Use as a context manager: leaving the block stops and reaps every worker, whether the
    block ended normally, by an exception or by ``KeyboardInterrupt``.

    :param target: the worker's main function; runs in the child, with the parent's state forked
    :param seeds: one seed per worker
    :param base_timesteps: value of ``T`` at start
    :param total_timesteps: ``T`` at which workers stop on their own
    """

    def __init__(
        self,
        target: Callable[[WorkerContext], None],
        seeds: list[int],
        base_timesteps: int,
        total_timesteps: int,
    ) -> None:
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError(
                "sb3_async needs the 'fork' start method (Linux, macOS): workers inherit the shared "
                "model and the environment, which may not be picklable"
            )
        self._mp = mp.get_context("fork")
        n_workers = len(seeds)
        self.n_workers = n_workers
        self._steps = np.frombuffer(self._mp.RawArray(ctypes.c_int64, n_workers), dtype=np.int64)
        self._flags = np.frombuffer(self._mp.RawArray(ctypes.c_int64, 1), dtype=np.int64)
        self._queue = self._mp.Queue()
        self.base_timesteps = base_timesteps
        self.total_timesteps = total_timesteps
        self._target = target
        self._seeds = seeds
        self._processes: list[Any] = []
        self._finished: set[int] = set()
        self._errors: dict[int, str] = {}

    def __enter__(self) -> "WorkerPool":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        """Fork the workers."""
        # Anything left in the parent's stdio buffers would be flushed again by every child.
        sys.stdout.flush()
        sys.stderr.flush()
        for worker_id, seed in enumerate(self._seeds):
            context = WorkerContext(
                worker_id, seed, self._steps, self._flags, self.base_timesteps, self.total_timesteps, self._queue
            )
            # Not daemonic: a worker may start processes of its own (PerWorkerSubprocVecEnv);
            # close() reaps the workers whatever happens.
            process = self._mp.Process(
                target=_worker_entry, args=(self._target, context), name=f"sb3_async-worker-{worker_id}", daemon=False
            )
            process.start()
            self._processes.append(process)

    @property
    def global_steps(self) -> int:
        """The global step counter ``T``."""
        return self.base_timesteps + int(self._steps.sum())

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def request_stop(self) -> None:
        """Ask every worker to stop at its next environment step."""
        self._flags[0] = 1

    @property
    def finished(self) -> bool:
        """True when every worker has ended normally."""
        return len(self._finished) == self.n_workers

    def poll(self, timeout: float) -> list[tuple[str, int, Any]]:
        """
        Wait up to ``timeout`` seconds for messages and return them all (``"done"`` and
        ``"error"`` messages are handled here and not returned).

        :raises WorkerError: if a worker raised an exception or died
        """
        messages = self._drain(timeout)
        if not self._errors:
            self._detect_deaths()
        if self._errors:
            worker_id, text = next(iter(sorted(self._errors.items())))
            raise WorkerError(f"Worker {worker_id} failed:\n{text}")
        return messages

    def _drain(self, timeout: float) -> list[tuple[str, int, Any]]:
        messages = []
        block = timeout > 0
        while True:
            try:
                with _sigint_deferred():
                    message = self._queue.get(block, timeout) if block else self._queue.get_nowait()
            except queue.Empty:
                return messages
            block = False
            kind, worker_id, payload = message
            if kind == "done":
                self._finished.add(worker_id)
            elif kind == "error":
                self._errors[worker_id] = payload
            else:
                messages.append(message)

    def _detect_deaths(self) -> None:
        dead = [
            (i, p)
            for i, p in enumerate(self._processes)
            if p.exitcode is not None and i not in self._finished and i not in self._errors
        ]
        if not dead:
            return
        # A worker that raised sends its traceback before exiting; give it time to arrive.
        self._drain(0.5)
        for worker_id, process in dead:
            if worker_id in self._finished or worker_id in self._errors:
                continue
            code = process.exitcode
            if code is not None and code < 0:
                reason = f"was killed by signal {signal.Signals(-code).name}"
            else:
                reason = f"exited with code {code} without reporting an error"
            self._errors[worker_id] = f"worker process {process.pid} {reason}"

    def close(self, timeout: float = 10.0) -> None:
        """Stop every worker and wait for it; terminate (then kill) those that do not stop."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self._processes) and time.monotonic() < deadline:
            # Keep reading: a worker cannot exit while its queue feeder still has data to write.
            self._drain(0.05)
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()
        self._drain(0)
        self._queue.close()
        self._queue.join_thread()
