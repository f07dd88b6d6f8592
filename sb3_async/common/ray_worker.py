"""The worker side of the Ray backend: what runs in each worker's actor.

The algorithm's own loop runs in a thread of the actor (:class:`RayWorker` is its
:class:`~sb3_async.common.worker.Worker`); the actor's ``exchange`` method hands the main
process what the loop posted and the loop what the main process replied. See
:mod:`sb3_async.common.ray_backend` for the protocol.
"""

import multiprocessing.util
import os
import queue
import threading
import traceback
import warnings
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

from sb3_async.common import portable
from sb3_async.common.buffer_changes import BufferChanges
from sb3_async.common.envs import vec_env_chain
from sb3_async.common.local_copy import distinct_state
from sb3_async.common.reporting import WorkerReporter
from sb3_async.common.signals import die_with_parent
from sb3_async.common.worker import Worker, check_finite_gradients

__all__ = ["RayOptimizer", "RayWorker", "WorkerActorBody"]

# Gradients a worker may have sent and not yet seen applied before it waits.
_MAX_IN_FLIGHT = 2


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
        self._state = [tensor for _, tensor in distinct_state(policy)]
        parameter_ids = {id(p) for p in policy.parameters()}
        self._buffer_changes = BufferChanges(policy, [t for t in self._state if id(t) not in parameter_ids])
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
        self._reporter = WorkerReporter(lambda report: None, worker_id, interval=float("inf"), min_interval=float("inf"))
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
        self._buffer_changes.mark()
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
        buffers = [(decay, offset.numpy().copy()) for decay, offset in self._buffer_changes.take()]
        self._post("update", grads=grads, buffers=buffers)
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


class WorkerActorBody:
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
