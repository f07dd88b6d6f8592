"""Worker processes on one machine: start, step budget, stop signal, failure reporting and clean-up.

Everything a forked worker shares with the main process lives in :class:`StepBudget` (the global
step counter ``T``, the step limit the main process allows, the stop flag) and one queue back to
the main process. Nothing a worker starts outlives it, and no worker outlives the main process:
on Linux each worker, and each process a worker forks (its environments' sub-processes), is
killed by the kernel when its parent dies (``PR_SET_PDEATHSIG``); elsewhere a worker that finds
itself orphaned closes its environments and exits.
"""

import ctypes
import ctypes.util
import faulthandler
import multiprocessing as mp
import multiprocessing.util
import os
import queue
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from sb3_async.common.inbox import Inbox
from sb3_async.common.signals import deferred_signals, die_with_parent
from sb3_async.common.stop_clock import StopClock
from sb3_async.common.worker import WorkerError

__all__ = ["StepBudget", "WorkerContext", "WorkerPool"]

# How often (in calls to ``reserve``) a worker checks that its parent is still alive.
_PARENT_CHECK_EVERY = 64
# Seconds a worker sleeps between two looks at the step limit while it waits for the main process.
_WAIT_SLEEP = 0.0005
# Seconds a dead worker's last messages (its traceback) get to come through before it is reported without them.
_LAST_WORDS_SECONDS = 2.0


class _Orphaned(BaseException):
    """Raised in a worker whose main process is gone: unwinds (closing environments) and exits."""


class StepBudget:
    """
    The global step counter ``T``, the count of steps already taken, the limit up to which the main
    process lets workers step (it follows the callbacks, so that workers do not run ahead of them
    by more than ``slack`` steps) and the stop flag, in shared memory. ``T`` grows under a lock,
    by reservations made before the steps are taken, so that it never passes the budget by more
    than one ``VecEnv`` step however many workers race for the last steps; the steps taken are
    counted after each step, without a lock (one slot per worker), for the callbacks to follow.

    :param context: the multiprocessing context the workers are started with
    :param n_workers: the number of workers
    :param start: ``T`` now
    :param total: ``T`` at which training ends
    :param slack: how many steps beyond what the main process has handled workers may take
    """

    _T, _ALLOWED, _STOP = 0, 1, 2

    def __init__(self, context: Any, n_workers: int, start: int, total: int, slack: int) -> None:
        self._values = np.frombuffer(context.RawArray(ctypes.c_int64, 3), dtype=np.int64)
        self._taken = np.frombuffer(context.RawArray(ctypes.c_int64, n_workers), dtype=np.int64)
        self._lock = context.Lock()
        self.start = start
        self.total = total
        self.slack = slack
        self._values[self._T] = start
        self._values[self._ALLOWED] = start + slack

    @property
    def global_steps(self) -> int:
        """``T``: the steps reserved (taken, or being taken)."""
        return int(self._values[self._T])

    @property
    def steps_taken(self) -> int:
        """The steps whose environment step has returned."""
        return self.start + int(self._taken.sum())

    def taken_by_worker(self) -> list[int]:
        """The steps each worker has taken."""
        return self._taken.tolist()

    def count_taken(self, worker_id: int, n_steps: int) -> None:
        self._taken[worker_id] += n_steps

    @property
    def stopped(self) -> bool:
        return bool(self._values[self._STOP])

    def stop(self) -> None:
        self._values[self._STOP] = 1

    def allow_up_to(self, handled: int) -> None:
        """The main process has handled the steps up to ``handled``: let workers go ``slack`` further."""
        self._values[self._ALLOWED] = handled + self.slack

    def try_reserve(self, n_steps: int) -> bool | None:
        """True: ``n_steps`` were added to ``T``; False: stop; None: wait for the main process."""
        with self._lock:
            steps = int(self._values[self._T])
            if self._values[self._STOP] or steps >= self.total:
                return False
            if steps >= self._values[self._ALLOWED]:
                return None
            self._values[self._T] = steps + n_steps
            return True


class WorkerContext:
    """
    What one worker process knows of the run: its index and seed, the shared step budget and the
    channel back to the main process. Created in the main process, used in the worker.

    :param worker_id: index of the worker, from 0
    :param seed: the worker's own seed (distinct from every other worker's)
    :param budget: the shared step budget
    :param outbox: queue to the main process
    :param stack_file: where the worker writes its stack when the main process asks (SIGUSR1)
    """

    def __init__(self, worker_id: int, seed: int, budget: StepBudget, outbox: Any, stack_file: str) -> None:
        self.worker_id = worker_id
        self.seed = seed
        self.budget = budget
        self.stack_file = stack_file
        self._outbox = outbox
        # Built in the main process: its pid is the workers' parent pid.
        self._parent_pid = os.getpid()
        self._calls = 0

    @property
    def global_steps(self) -> int:
        """The global step counter ``T`` (all workers)."""
        return self.budget.global_steps

    def reserve(self, n_steps: int, on_wait: Callable[[], None]) -> bool:
        """
        Add ``n_steps`` to ``T`` before taking them; False if the worker must stop instead. While
        the main process lags behind by more than the slack, wait, after calling ``on_wait`` once.
        """
        waited = False
        while True:
            self._calls += 1
            if self._calls % _PARENT_CHECK_EVERY == 0 and os.getppid() != self._parent_pid:
                raise _Orphaned
            verdict = self.budget.try_reserve(n_steps)
            if verdict is not None:
                return verdict
            if not waited:
                waited = True
                on_wait()
            time.sleep(_WAIT_SLEEP)

    def count_taken(self, n_steps: int) -> None:
        """Count ``n_steps`` steps that this worker has taken (after they returned)."""
        self.budget.count_taken(self.worker_id, n_steps)

    def send(self, kind: str, payload: Any = None) -> None:
        """Send a message to the main process (never blocks)."""
        self._outbox.put((kind, self.worker_id, payload))

    def flush(self) -> None:
        """Wait until everything sent has been handed to the pipe (before the process exits)."""
        self._outbox.close()
        self._outbox.join_thread()


def _worker_entry(target: Callable[[WorkerContext], None], context: WorkerContext) -> None:
    die_with_parent()
    if os.getppid() != context._parent_pid:  # the main process died before the line above
        os._exit(1)
    # Whatever this worker forks (its environments' sub-processes) dies with it too.
    multiprocessing.util.register_after_fork(die_with_parent, lambda _: die_with_parent())
    # Ctrl-C reaches the whole process group; the main process alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (close() ending a worker that did not stop): unwind, closing the environments.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    stack_file = open(context.stack_file, "w")
    faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    # A crash in native code (a simulator's segfault) leaves its stack for the main process's report.
    faulthandler.enable(file=stack_file, all_threads=True)
    # Must come before the first torch op: a forked child hangs in intra-op parallel code
    # if the parent already used its thread pool, and one thread per worker avoids
    # oversubscribing the cores.
    th.set_num_threads(1)
    try:
        target(context)
    except _Orphaned:
        os._exit(1)
    except BaseException:
        context.send("error", traceback.format_exc())
        # Flush the queue before exiting so the traceback reaches the main process.
        context.flush()
        sys.exit(1)
    context.send("done")


class WorkerPool:
    """
    Runs ``target(context)`` in ``len(seeds)`` forked processes and reports on them.

    Use as a context manager: leaving the block stops and reaps every worker, whether the
    block ended normally, by an exception or by ``KeyboardInterrupt``. A worker that does not stop
    within the grace period of :class:`~sb3_async.common.stop_clock.StopClock` is ended and reported
    (with the stack it hung in) as a :class:`WorkerError`.

    :param target: the worker's main function; runs in the child, with the parent's state forked
    :param seeds: one seed per worker
    :param base_timesteps: value of ``T`` at start
    :param total_timesteps: ``T`` at which workers stop on their own
    :param slack: steps workers may take beyond those the main process has handled (``allow_up_to``)
    """

    def __init__(
        self,
        target: Callable[[WorkerContext], None],
        seeds: list[int],
        base_timesteps: int,
        total_timesteps: int,
        slack: int,
    ) -> None:
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError(
                "sb3_async needs the 'fork' start method (Linux, macOS): workers inherit the shared "
                "model and the environment, which may not be picklable"
            )
        self._mp = mp.get_context("fork")
        self.n_workers = len(seeds)
        self.budget = StepBudget(self._mp, len(seeds), base_timesteps, total_timesteps, slack)
        self._queue = self._mp.Queue()
        self._inbox = Inbox(self._queue)
        self._target = target
        self._seeds = seeds
        self._processes: list[Any] = []
        self._finished: set[int] = set()
        self._errors: dict[int, str] = {}
        # Workers whose error has been raised to the user (close() reports the others).
        self._reported: set[int] = set()
        # A message that could not be read (unpickled) in this process, and whether it was raised.
        self._unreadable: str | None = None
        self._unreadable_reported = False
        self._stack_dir = tempfile.mkdtemp(prefix="sb3_async-")
        # When the workers were asked to stop, or the budget was spent: they have a grace period from then.
        self._stop_clock = StopClock(self.n_workers)

    def __enter__(self) -> "WorkerPool":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        problems = self.close()
        if problems and exc is None:
            raise WorkerError("\n\n".join(problems))
        for problem in problems:
            print(problem, file=sys.stderr)

    def start(self) -> None:
        """Fork the workers (Ctrl-C during the forks stops after the current one)."""
        # Anything left in the parent's stdio buffers would be flushed again by every child.
        sys.stdout.flush()
        sys.stderr.flush()
        with deferred_signals() as received:
            for worker_id, seed in enumerate(self._seeds):
                if received:
                    break
                stack_file = os.path.join(self._stack_dir, f"worker-{worker_id}.stack")
                context = WorkerContext(worker_id, seed, self.budget, self._queue, stack_file)
                # Not daemonic: a worker may start processes of its own (PerWorkerSubprocVecEnv).
                process = self._mp.Process(
                    target=_worker_entry, args=(self._target, context), name=f"sb3_async-worker-{worker_id}", daemon=False
                )
                process.start()
                self._processes.append(process)
        self._inbox.start()

    @property
    def global_steps(self) -> int:
        """The global step counter ``T``."""
        return self.budget.global_steps

    @property
    def steps_taken(self) -> int:
        """The steps whose environment step has returned (callbacks follow these)."""
        return self.budget.steps_taken

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def request_stop(self) -> None:
        """Ask every worker to stop before its next environment step."""
        self.budget.stop()
        self._note_stopping()

    def _note_stopping(self) -> None:
        self._stop_clock.start()

    @property
    def overdue(self) -> bool:
        """True when workers were asked to stop (or the budget was spent) longer than the grace period ago."""
        return self._stop_clock.overdue

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
        self._stop_clock.observe(self.budget.taken_by_worker())
        if self.budget.stopped or self.budget.global_steps >= self.budget.total:
            self._note_stopping()
        if not self._errors:
            messages += self._detect_deaths()
        if self._errors:
            worker_id, text = min(self._errors.items())
            self._reported.update(self._errors)
            raise WorkerError(f"Worker {worker_id} failed:\n{text}")
        if self._unreadable is not None and not self._unreadable_reported:
            self._unreadable_reported = True
            raise WorkerError(self._unreadable)
        return messages

    def _drain(self, timeout: float) -> list[tuple[str, int, Any]]:
        messages = []
        while True:
            try:
                with deferred_signals():
                    message = self._inbox.get(timeout)
            except queue.Empty:
                return messages
            except Exception:
                if self._unreadable is None:
                    self._unreadable = f"A message from a worker could not be read:\n{traceback.format_exc()}"
                continue
            timeout = 0
            kind, worker_id, payload = message
            if kind == "done":
                self._finished.add(worker_id)
            elif kind == "error":
                self._errors[worker_id] = payload
            else:
                messages.append(message)

    def _detect_deaths(self) -> list[tuple[str, int, Any]]:
        """Record an error for each worker that exited without saying why; returns the messages read meanwhile."""
        dead = [
            (i, p)
            for i, p in enumerate(self._processes)
            if p.exitcode is not None and i not in self._finished and i not in self._errors
        ]
        messages: list[tuple[str, int, Any]] = []
        if not dead:
            return messages
        # A worker that raised or finished says so before exiting: give it time to come through the inbox.
        deadline = time.monotonic() + _LAST_WORDS_SECONDS
        while time.monotonic() < deadline and any(i not in self._finished and i not in self._errors for i, _ in dead):
            messages += self._drain(0.05)
        for worker_id, process in dead:
            if worker_id in self._finished or worker_id in self._errors:
                continue
            code = process.exitcode
            if code is not None and code < 0:
                reason = f"was killed by signal {signal.Signals(-code).name}"
                stack = self._read_stack(worker_id)
                if stack:
                    reason += f"; its stack:\n{stack}"
            else:
                reason = f"exited with code {code} without reporting an error"
            self._errors[worker_id] = f"worker process {process.pid} {reason}"
        return messages

    def close(self) -> list[str]:
        """
        Stop every worker and wait for it. Workers still running a grace period after they were
        asked to stop (or the budget was spent) are ended: SIGTERM, then SIGKILL. Returns a
        description of each worker that had to be ended (with the stack it hung in) and of each
        error not yet raised (a worker that failed while stopping).
        """
        self.request_stop()
        problems = []
        with deferred_signals():
            deadline = self._stop_clock.deadline
            while any(p.is_alive() for p in self._processes) and time.monotonic() < deadline:
                # Keep reading: a worker cannot exit while its queue feeder still has data to write.
                self._drain(0.05)
            failed_before = set(self._errors)
            ended = set()
            for worker_id, process in enumerate(self._processes):
                if process.is_alive():
                    problems.append(self._end_hung_worker(worker_id, process))
                    ended.add(worker_id)
            inbox_stopped = self._inbox.stop()
            self._drain(0)
            self._finished.update(ended)  # reported above: not again as a death
            self._detect_deaths()
            # What an ended worker sent after it was ended is the SystemExit of its SIGTERM: reported above.
            problems += [
                f"Worker {worker_id} failed:\n{text}"
                for worker_id, text in sorted(self._errors.items())
                if worker_id not in self._reported and (worker_id not in ended or worker_id in failed_before)
            ]
            self._reported.update(self._errors)
            if self._unreadable is not None and not self._unreadable_reported:
                problems.append(self._unreadable)
                self._unreadable_reported = True
        if inbox_stopped:
            self._queue.close()
            self._queue.join_thread()
        for name in os.listdir(self._stack_dir):
            os.unlink(os.path.join(self._stack_dir, name))
        os.rmdir(self._stack_dir)
        return problems

    def _read_stack(self, worker_id: int) -> str:
        """What the worker's fault handler wrote (the stack it was dumped or crashed in), or ''."""
        try:
            with open(os.path.join(self._stack_dir, f"worker-{worker_id}.stack")) as f:
                return f.read().strip()
        except OSError:
            return ""

    def _end_hung_worker(self, worker_id: int, process: Any) -> str:
        stack = ""
        try:
            os.kill(process.pid, signal.SIGUSR1)
            time.sleep(0.2)
            stack = self._read_stack(worker_id)
        except OSError:
            pass
        process.terminate()
        process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join()
        where = f"; it was at:\n{stack}" if stack else ""
        return (
            f"Worker {worker_id} (process {process.pid}) did not stop within {self._stop_clock.grace:.3g} s of the end "
            f"of training and was ended{where}"
        )
