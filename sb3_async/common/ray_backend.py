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

import time
import warnings
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecNormalize

from sb3_async.common import portable
from sb3_async.common.backend import WorkerGroup
from sb3_async.common.buffer_changes import apply_buffer_changes
from sb3_async.common.envs import vec_env_chain
from sb3_async.common.hogwild import copy_module
from sb3_async.common.local_copy import distinct_state
from sb3_async.common.ray_worker import WorkerActorBody
from sb3_async.common.stop_clock import STOP_GRACE_SECONDS, StopClock
from sb3_async.common.worker import PeriodicCopy, WorkerError

__all__ = ["RayGroup", "require_ray"]

# Rollouts' worth of steps granted ahead to each worker.
_GRANT_AHEAD = 2


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("backend='ray' needs Ray: pip install 'sb3-async[ray]' (or pip install 'ray>=2.10')") from error
    return ray


def _numpy(tensors: list[th.Tensor]) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in tensors]


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
        self._rollout = algorithm._rollout_steps()
        # Grants run ahead of the steps taken: without room for one worker's grants on top, a worker
        # hung while holding them would leave the others none, and the run would wait forever.
        self._slack = slack + _GRANT_AHEAD * self._rollout
        self._n_envs = algorithm.n_envs
        policy = algorithm.policy
        self._state = [tensor for _, tensor in distinct_state(policy)]
        parameter_ids = {id(p) for p in policy.parameters()}
        self._buffers = [t for t in self._state if id(t) not in parameter_ids]
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
        # Workers whose actors have sent anything: they started.
        self._heard: set[int] = set()
        self._version = 0
        self._params_ref: tuple[int, Any] | None = None
        self._stop = False
        self._stop_clock = StopClock(len(seeds))
        self._allowed = base_timesteps + self._slack
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
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < len(self._seeds):
            warnings.warn(
                f"n_workers={len(self._seeds)} but the Ray cluster has {cpus:g} CPUs: each worker's actor takes one, "
                "and workers without one start only when one is free (or never)"
            )
        payload = self._payload()
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(WorkerActorBody)
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
        deadline = self._stop_clock.deadline
        failure: WorkerError | None = None
        try:
            while exc is None and self._outstanding and len(self._done) < len(self._actors) and time.monotonic() < deadline:
                self.poll(0.05)
        except WorkerError as error:
            failure = error
        finally:
            self._kill()
        if exc is not None:
            return
        if failure is not None:
            raise failure
        unfinished = [worker_id for worker_id in range(len(self._actors)) if worker_id not in self._done]
        if unfinished:
            raise WorkerError("\n\n".join(self._unfinished(worker_id) for worker_id in unfinished))

    def _unfinished(self, worker_id: int) -> str:
        """Why an actor that did not finish was ended (its stack cannot be had from Ray)."""
        grace = f"{self._stop_clock.grace:.3g} s"
        if worker_id not in self._heard:
            return (
                f"Worker {worker_id} never started within {grace} of the end of training and its Ray actor was "
                "ended: the cluster had no free CPU for it, or building it (its environment) took that long"
            )
        return f"Worker {worker_id} did not stop within {grace} of the end of training and its Ray actor was ended"

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
        return self._stop_clock.overdue

    def allow_up_to(self, handled: int) -> None:
        self._allowed = handled + self._slack

    def request_stop(self) -> None:
        self._stop = True
        self._stop_clock.start()

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
            self._heard.add(worker_id)  # it answered: its actor was built
            for message in messages:
                report = self._handle(worker_id, message)
                if report is not None:
                    reports.append(report)
            answered.append(worker_id)
        self._stop_clock.observe(self._taken)
        if self.global_steps >= self._total:
            self._stop_clock.start()
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
        apply_buffer_changes(self._buffers, [(decay, th.from_numpy(offset)) for decay, offset in message["buffers"]])
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
