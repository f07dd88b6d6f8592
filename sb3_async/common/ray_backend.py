"""The Ray backend: workers as Ray actors, on the machines of a Ray cluster; the main process learns.

Semantics stay those of the paper: each worker pulls the latest parameters, collects a rollout,
computes the gradient on its copy and pushes it; the main process (the learner) applies every
gradient with the one optimizer as soon as it arrives, never waiting for the others, and sends
the newest parameters back. The global step counter ``T``, the schedules and the periodic copies
(target networks) follow the main process's count. A gradient's staleness (parameter versions
applied between its pull and its application) is logged as ``train/staleness``.

The channel of a worker is one Ray call at a time: ``exchange(reply) -> messages``. The worker's
training loop runs in a thread of its actor and posts messages (a gradient with its rollout's
steps and episodes; a request for more steps; its end; its error); ``exchange`` hands the main
process what was posted and the worker what the main process replied (parameters when newer, a
grant of steps, ``T``, the stop request). Steps are granted about two rollouts ahead, so a worker
waits neither for a grant nor for parameters in the steady state; it waits when it has two
gradients not yet applied (which bounds staleness) and when its grant is spent.
"""

import multiprocessing.util
import os
import queue
import threading
import time
import traceback
import warnings
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecNormalize

from sb3_async.common import portable
from sb3_async.common.backend import WorkerGroup
from sb3_async.common.envs import vec_env_chain
from sb3_async.common.hogwild import copy_module
from sb3_async.common.pool import die_with_parent
from sb3_async.common.reporting import WorkerReporter
from sb3_async.common.worker import PeriodicCopy, Worker, WorkerError, check_finite_gradients

__all__ = ["RayGroup", "RayWorker", "require_ray"]

# Gradients a worker may have sent and not yet seen applied before it waits.
_MAX_IN_FLIGHT = 2
# Rollouts' worth of steps granted ahead to each worker.
_GRANT_AHEAD = 2
# Seconds workers get to end after the stop request before their actors are killed.
STOP_GRACE_SECONDS = 10.0


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("backend='ray' needs Ray: pip install 'sb3-async[ray]' (or pip install 'ray>=2.10')") from error
    return ray


def _numpy(tensors: list[th.Tensor]) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in tensors]


# --- in the worker's actor ---------------------------------------------------------------------


class _Mailbox:
    """Between the worker's training thread and its actor's ``exchange`` calls."""

    def __init__(self) -> None:
        self.outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.sent_updates = 0

    def post(self, message: dict[str, Any]) -> None:
        self.outbox.put(message)

    def deliver(self, reply: dict[str, Any]) -> None:
        self._replies.put(reply)

    def collect(self) -> list[dict[str, Any]]:
        """Everything posted, waiting for at least one message."""
        messages = [self.outbox.get()]
        while True:
            try:
                messages.append(self.outbox.get_nowait())
            except queue.Empty:
                return messages

    def next_reply(self, block: bool) -> dict[str, Any] | None:
        try:
            return self._replies.get(block=block)
        except queue.Empty:
            return None


class RayOptimizer:
    """
    Stands in for ``policy.optimizer`` in a worker's actor: ``step`` checks the gradients and sends
    them to the main process (with what the update changed in the buffers), which applies them.
    """

    def __init__(
        self, worker: "RayWorker", param_groups: list[dict[str, Any]], parameters: list[tuple[str, th.Tensor]]
    ) -> None:
        self._worker = worker
        self.param_groups = param_groups
        self._parameters = parameters

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, param in self._parameters:
            param.grad = None

    def step(self, closure: Any = None) -> None:
        named = [(name, p.grad) for name, p in self._parameters if p.grad is not None]
        check_finite_gradients(named)
        grads = [
            np.zeros(tuple(p.shape), np.float32) if p.grad is None else p.grad.numpy().copy() for _, p in self._parameters
        ]
        self._worker.send_update(grads)

    def state_dict(self) -> dict[str, Any]:
        return {}


class _TrackedRunningMeanStd(RunningMeanStd):
    """``RunningMeanStd`` that also keeps the batches it took since they were last sent."""

    def __init__(self, source: RunningMeanStd) -> None:
        super().__init__(shape=np.shape(source.mean))
        self.mean, self.var, self.count = source.mean.copy(), source.var.copy(), source.count
        self._reset_pending()

    def _reset_pending(self) -> None:
        self.pending = RunningMeanStd(shape=np.shape(self.mean))
        self.pending.count = 0.0

    def update(self, arr: np.ndarray) -> None:
        super().update(arr)
        self.pending.update(arr)

    def take(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The moments of the batches taken since the last call (None if none)."""
        if self.pending.count < 1:
            return None
        moments = (self.pending.mean.copy(), self.pending.var.copy(), float(self.pending.count))
        self._reset_pending()
        return moments

    def set(self, mean: np.ndarray, var: np.ndarray, count: float) -> None:
        """The main process's merged statistics, plus what this worker took since it last sent."""
        self.mean, self.var, self.count = mean.copy(), var.copy(), count
        if self.pending.count >= 1:
            self.update_from_moments(self.pending.mean, self.pending.var, self.pending.count)


class RayWorker(Worker):
    """A worker in a Ray actor (see :class:`~sb3_async.common.worker.Worker`)."""

    def __init__(self, algorithm: Any, mailbox: _Mailbox, worker_id: int, seed: int, total_timesteps: int) -> None:
        super().__init__(worker_id, seed, total_timesteps)
        self._algorithm = algorithm
        self._mailbox = mailbox
        policy = algorithm.policy
        self._state = list(policy.state_dict(keep_vars=True).values())
        parameter_ids = {id(p) for p in policy.parameters()}
        self._buffers = [(t, t.detach().clone()) for t in self._state if id(t) not in parameter_ids]
        names = {id(p): name for name, p in policy.named_parameters()}
        parameters = [(names[id(p)], p) for group in policy.optimizer.param_groups for p in group["params"]]
        groups = [{key: value for key, value in group.items() if key != "params"} for group in policy.optimizer.param_groups]
        policy.optimizer = RayOptimizer(self, groups, parameters)
        self._version = -1
        self._newest: tuple[int, Any] | None = None
        self._grant = 0
        self._global_steps = 0
        self._stop_requested = False
        self._budget_spent = False
        self._acknowledged = 0
        self._taken = 0
        # Reports ride on this worker's messages: the reporter never sends on its own.
        self._reporter = WorkerReporter(lambda report: None, interval=float("inf"), min_interval=float("inf"))
        self._normalizers = self._track_normalization(algorithm.env)

    @staticmethod
    def _track_normalization(env: Any) -> list[tuple[Any, str, _TrackedRunningMeanStd]]:
        tracked = []
        for normalizer in vec_env_chain(env):
            if isinstance(normalizer, VecNormalize):
                for name in ("obs_rms", "ret_rms"):
                    rms = vars(normalizer).get(name)
                    if rms is None:
                        continue
                    if isinstance(rms, dict):
                        raise ValueError("backend='ray' does not share the statistics of a VecNormalize of Dict observations")
                    wrapper = _TrackedRunningMeanStd(rms)
                    setattr(normalizer, name, wrapper)
                    tracked.append((normalizer, name, wrapper))
        return tracked

    # -- the Worker interface --

    def pull(self) -> None:
        self._read_replies(block=False)
        if self._newest is None or self._newest[0] <= self._version:
            return
        version, ref = self._newest
        import ray

        state = ray.get(ref)
        with th.no_grad():
            for tensor, value in zip(self._state, state):
                tensor.copy_(th.from_numpy(value))
        for local, pulled in self._buffers:
            pulled.copy_(local)
        self._version = version

    def reserve(self, n_steps: int) -> bool:
        self._read_replies(block=False)
        while not self._stop_requested and self._grant < n_steps:
            if self._budget_spent:
                return False
            self._post("grant")
            self._read_replies(block=True)
        if self._stop_requested:
            return False
        self._grant -= n_steps
        self._global_steps += n_steps
        return True

    def record_step(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        self._taken += len(dones)
        self._reporter.add_step(infos, dones)

    def record_update(self, logger: Logger) -> None:
        self._reporter.add_update(logger)

    @property
    def global_steps(self) -> int:
        return self._global_steps

    # -- messages --

    def send_update(self, grads: list[np.ndarray]) -> None:
        deltas = []
        with th.no_grad():
            for local, pulled in self._buffers:
                deltas.append((local - pulled).numpy().copy())
                pulled.copy_(local)
        self._post("update", grads=grads, buffers=deltas)
        self._mailbox.sent_updates += 1
        # Bound the staleness: wait while too many of this worker's gradients are not yet applied.
        while self._mailbox.sent_updates - self._acknowledged > _MAX_IN_FLIGHT:
            self._read_replies(block=True)

    def _post(self, kind: str, **content: Any) -> None:
        stats = self._reporter.collect()
        normalization = [wrapper.take() for _, _, wrapper in self._normalizers]
        self._mailbox.post(
            dict(kind=kind, version=self._version, taken=self._taken, report=stats, normalization=normalization, **content)
        )
        self._taken = 0

    def _read_replies(self, block: bool) -> None:
        reply = self._mailbox.next_reply(block)
        while reply is not None:
            self._apply_reply(reply)
            reply = self._mailbox.next_reply(False)

    def _apply_reply(self, reply: dict[str, Any]) -> None:
        if reply.get("params") is not None and (self._newest is None or reply["version"] > self._newest[0]):
            self._newest = (reply["version"], reply["params"][0])
        self._grant += reply["grant"]
        self._global_steps = max(self._global_steps, reply["global_steps"])
        self._stop_requested = self._stop_requested or reply["stop"]
        self._budget_spent = reply["budget_spent"]
        self._acknowledged = reply["acknowledged"]
        for (_, _, wrapper), stats in zip(self._normalizers, reply.get("normalization") or []):
            if stats is not None:
                wrapper.set(*stats)

    def finish(self) -> None:
        self._post("done")


class _WorkerActorBody:
    """What each worker actor runs (wrapped with ``ray.remote`` when the group starts)."""

    def __init__(self, payload: bytes, worker_id: int, seed: int, total_timesteps: int) -> None:
        # Parameters arrive read-only from Ray's object store; they are only ever read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        # An environment's sub-processes die with the actor.
        multiprocessing.util.register_after_fork(die_with_parent, lambda _: die_with_parent())
        th.set_num_threads(1)
        self._algorithm = portable.loads(payload)
        if self._algorithm.env is None:
            self._algorithm._build_env_from_source()
        self._mailbox = _Mailbox()
        self._worker = RayWorker(self._algorithm, self._mailbox, worker_id, seed, total_timesteps)
        self._thread: threading.Thread | None = None

    def _train(self) -> None:
        try:
            self._algorithm._run_worker(self._worker)
            self._worker.finish()
        except BaseException:
            self._mailbox.post(dict(kind="error", traceback=traceback.format_exc()))

    def exchange(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        self._mailbox.deliver(reply)
        if self._thread is None:
            self._thread = threading.Thread(target=self._train, name="sb3_async-training", daemon=True)
            self._thread.start()
        return self._mailbox.collect()

    def where(self) -> str:
        """The node (host name, process) this worker runs in."""
        return f"{os.uname().nodename}:{os.getpid()}"

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


# --- in the main process -----------------------------------------------------------------------


class _MonitorFiles:
    """
    The main process's ``Monitor`` CSV files (rl_zoo3's plots read them): forked workers write to
    them directly; actors cannot, so the main process writes the episodes they report.
    """

    def __init__(self, env: Any) -> None:
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        self._monitors = []
        for vec_env in vec_env_chain(env):
            if isinstance(vec_env, DummyVecEnv):
                for inner in vec_env.envs:
                    while not isinstance(inner, Monitor) and hasattr(inner, "env"):
                        inner = inner.env
                    if isinstance(inner, Monitor) and inner.results_writer is not None:
                        self._monitors.append(inner)
        self._next = 0

    def write(self, episodes: list[dict[str, Any]]) -> None:
        for episode in episodes:
            if not self._monitors:
                return
            monitor = self._monitors[self._next % len(self._monitors)]
            self._next += 1
            assert monitor.results_writer is not None
            row = {key: value for key, value in episode.items() if key in ("r", "l")}
            monitor.results_writer.write_row({**row, "t": round(time.time() - monitor.t_start, 6)})


class RayGroup(WorkerGroup):
    """
    The main process's side of the Ray backend: starts the actors, applies their gradients, grants
    steps, merges reports. Uses the Ray runtime already initialized (``ray.init(address=...)``) if
    there is one, and never shuts that down; otherwise starts a local one, left running for later
    ``learn`` calls (it ends with the Python process).
    """

    def __init__(self, algorithm: Any, seeds: list[int], base_timesteps: int, total_timesteps: int, slack: int) -> None:
        self._ray = require_ray()
        self._algorithm = algorithm
        self._seeds = seeds
        self._base = base_timesteps
        self._total = total_timesteps
        self._slack = slack
        self._rollout = algorithm._rollout_steps()
        self._n_envs = algorithm.n_envs
        policy = algorithm.policy
        self._state = list(policy.state_dict().values())
        parameter_ids = {id(p) for p in policy.parameters()}
        self._buffers = [t for t in policy.state_dict(keep_vars=True).values() if id(t) not in parameter_ids]
        self._parameters = [p for group in policy.optimizer.param_groups for p in group["params"]]
        self._copies: list[tuple[PeriodicCopy, int]] = []
        self._copies_done: dict[str, int] = {}
        self._actors: list[Any] = []
        self._outstanding: dict[Any, int] = {}
        self._granted = [0] * len(seeds)
        self._taken = [0] * len(seeds)
        self._acknowledged = [0] * len(seeds)
        self._sent_version = [-1] * len(seeds)
        self._done: set[int] = set()
        self._version = 0
        self._params_ref: tuple[int, Any] | None = None
        self._stop = False
        self._stopping_since: float | None = None
        self._allowed = base_timesteps + slack
        self._normalizers = [n for n in vec_env_chain(algorithm.env) if isinstance(n, VecNormalize)]
        self._monitor_files = _MonitorFiles(algorithm.env)
        #: Updates applied, bytes received (gradients) and sent (parameters) in this run.
        self.n_applied = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.apply_seconds = 0.0

    # -- start and stop --

    def __enter__(self) -> "RayGroup":
        ray = self._ray
        # Gradients arrive read-only from Ray's object store; the optimizer only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if not ray.is_initialized():
            ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=True)
        try:
            self._start()
        except BaseException:
            self._kill()
            raise
        return self

    def _start(self) -> None:
        ray = self._ray
        for copy in self._algorithm._periodic_copies():
            self._copies.append((copy, (self._base // copy.interval + 1) * copy.interval))
            self._copies_done[copy.target] = 0
        payload = self._payload()
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(_WorkerActorBody)
        for worker_id, seed in enumerate(self._seeds):
            actor = actor_class.options(scheduling_strategy="SPREAD", name=None).remote(payload, worker_id, seed, self._total)
            self._actors.append(actor)
        for worker_id in range(len(self._actors)):
            self._send(worker_id)

    def _payload(self) -> bytes:
        """
        The algorithm, pickled for the actors (without what belongs to the main process only). When
        the environment was given as an env id or a callable, that travels instead of the env, and
        each actor builds its own.
        """
        algorithm = self._algorithm
        left_out = ["_logger", "_custom_logger"]
        if algorithm._env_source is not None:
            left_out += ["env", "_vec_normalize_env"]
        kept = {name: algorithm.__dict__[name] for name in left_out if name in algorithm.__dict__}
        for name in kept:
            algorithm.__dict__[name] = None
        try:
            return portable.dumps(algorithm, "the algorithm with its environment")
        finally:
            algorithm.__dict__.update(kept)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.request_stop()
        deadline = (self._stopping_since or time.monotonic()) + STOP_GRACE_SECONDS
        try:
            while exc is None and self._outstanding and len(self._done) < len(self._actors) and time.monotonic() < deadline:
                self.poll(0.05)
        except WorkerError:
            pass
        finally:
            self._kill()

    def _kill(self) -> None:
        """Kill every actor and wait until Ray reports each one dead (its calls fail)."""
        ray = self._ray
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._outstanding.clear()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for actor in self._actors:
            while time.monotonic() < deadline:
                try:
                    ray.get(actor.where.remote(), timeout=max(0.1, deadline - time.monotonic()))
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    break
                except Exception:
                    break
                time.sleep(0.05)

    # -- the WorkerGroup interface --

    @property
    def global_steps(self) -> int:
        return self._base + sum(self._granted)

    @property
    def steps_taken(self) -> int:
        return self._base + sum(self._taken)

    @property
    def finished(self) -> bool:
        return len(self._done) == len(self._actors)

    @property
    def overdue(self) -> bool:
        return self._stopping_since is not None and time.monotonic() > self._stopping_since + STOP_GRACE_SECONDS

    def allow_up_to(self, handled: int) -> None:
        self._allowed = handled + self._slack

    def request_stop(self) -> None:
        self._stop = True
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()

    @property
    def copies_done(self) -> dict[str, int]:
        return dict(self._copies_done)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        ray = self._ray
        if not self._outstanding:
            time.sleep(timeout)
            return []
        ready, _ = ray.wait(list(self._outstanding), num_returns=1, timeout=timeout)
        if ready:
            more, _ = ray.wait(list(self._outstanding), num_returns=len(self._outstanding), timeout=0)
            ready = list(dict.fromkeys([*ready, *more]))
        reports = []
        answered = []
        for ref in ready:
            worker_id = self._outstanding.pop(ref)
            try:
                messages = ray.get(ref)
            except self._ray.exceptions.RayActorError as error:
                raise WorkerError(f"Worker {worker_id} failed: its Ray actor died ({error})") from error
            for message in messages:
                report = self._handle(worker_id, message)
                if report is not None:
                    reports.append(report)
            answered.append(worker_id)
        if self.global_steps >= self._total and self._stopping_since is None:
            self._stopping_since = time.monotonic()
        for worker_id in answered:
            if worker_id not in self._done:
                self._send(worker_id)
        return reports

    # -- messages --

    def _handle(self, worker_id: int, message: dict[str, Any]) -> dict[str, Any] | None:
        kind = message["kind"]
        if kind == "error":
            raise WorkerError(f"Worker {worker_id} failed:\n{message['traceback']}")
        self._taken[worker_id] += message["taken"]
        self._merge_normalization(message.get("normalization") or [])
        report = message.get("report")
        if report is not None:
            self._monitor_files.write(report["episodes"])
        if kind == "update":
            self._apply(message, report)
            self._acknowledged[worker_id] += 1
        elif kind == "done":
            self._done.add(worker_id)
        return report

    def _apply(self, message: dict[str, Any], report: dict[str, Any] | None) -> None:
        start = time.perf_counter()
        algorithm = self._algorithm
        for param, grad in zip(self._parameters, message["grads"]):
            param.grad = th.from_numpy(grad)
            self.bytes_in += grad.nbytes
        progress = max(0.0, 1.0 - self.global_steps / self._total)
        update_learning_rate(algorithm.policy.optimizer, algorithm.lr_schedule(progress))
        algorithm.policy.optimizer.step()
        for param in self._parameters:
            param.grad = None
        with th.no_grad():
            for buffer, delta in zip(self._buffers, message["buffers"]):
                buffer.add_(th.from_numpy(delta))
        # After the update, as in Algorithm S2; T may have passed the multiple during the rollout.
        for index, (copy, next_multiple) in enumerate(self._copies):
            if self.global_steps >= next_multiple:
                policy = algorithm.policy
                copy_module(policy.get_submodule(copy.source), policy.get_submodule(copy.target))
                self._copies[index] = (copy, (self.global_steps // copy.interval + 1) * copy.interval)
                self._copies_done[copy.target] += 1
        staleness = self._version - message["version"]
        self._version += 1
        self.n_applied += 1
        total = report["stats"].setdefault("train/staleness", [0.0, 0]) if report is not None else [0.0, 0]
        total[0] += staleness
        total[1] += 1
        self.apply_seconds += time.perf_counter() - start

    def _merge_normalization(self, increments: list[Any]) -> None:
        statistics = self._normalization_statistics()
        for (_, _, rms), moments in zip(statistics, increments):
            if moments is not None:
                rms.update_from_moments(*moments)

    def _normalization_statistics(self) -> list[tuple[Any, str, Any]]:
        found = []
        for normalizer in self._normalizers:
            for name in ("obs_rms", "ret_rms"):
                rms = vars(normalizer).get(name)
                if rms is not None:
                    found.append((normalizer, name, rms))
        return found

    def _grant_for(self, worker_id: int) -> int:
        """Steps to grant: about two rollouts ahead, within the budget and the callbacks' slack, in VecEnv steps."""
        if self._stop:
            return 0
        n_envs = self._n_envs
        outstanding = self._granted[worker_id] - self._taken[worker_id]
        wanted = _GRANT_AHEAD * self._rollout - outstanding
        # As SB3, the last VecEnv step may pass a budget that is not a multiple of n_envs.
        budget_room = -(-(self._total - self.global_steps) // n_envs) * n_envs
        callback_room = self._allowed - self.global_steps
        grant = min(wanted, budget_room, callback_room)
        return max(0, grant - grant % n_envs)

    def _send(self, worker_id: int) -> None:
        grant = self._grant_for(worker_id)
        self._granted[worker_id] += grant
        params = None
        if self._sent_version[worker_id] < self._version:
            if self._params_ref is None or self._params_ref[0] != self._version:
                state = _numpy(self._state)
                self._params_ref = (self._version, self._ray.put(state))
                self._state_bytes = sum(a.nbytes for a in state)
            params = [self._params_ref[1]]  # in a list: Ray hands the worker the reference, not the value
            self._sent_version[worker_id] = self._version
            self.bytes_out += self._state_bytes
        reply = dict(
            params=params,
            version=self._version,
            grant=grant,
            global_steps=self.global_steps,
            stop=self._stop,
            budget_spent=self.global_steps >= self._total,
            acknowledged=self._acknowledged[worker_id],
            normalization=[
                (rms.mean.copy(), rms.var.copy(), float(rms.count)) for _, _, rms in self._normalization_statistics()
            ],
        )
        ref = self._actors[worker_id].exchange.remote(reply)
        self._outstanding[ref] = worker_id

    _state_bytes = 0
