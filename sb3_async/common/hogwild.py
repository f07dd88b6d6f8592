"""The local backend: forked worker processes updating one model in shared memory, without locks.

The main process puts the policy and its optimizer's statistics in shared memory before forking;
each worker trains a private copy θ' and applies its gradients to the shared θ (Hogwild), makes
the periodic copies (target networks) when ``T`` passes their interval, and steps its own copy of
the environment (``VecNormalize`` statistics are shared while the workers run).
"""

from contextlib import ExitStack
from typing import Any

import torch as th
from torch import nn

from sb3_async.common.backend import WorkerGroup
from sb3_async.common.interval import SharedInterval
from sb3_async.common.local_copy import LocalCopy
from sb3_async.common.pool import WorkerContext, WorkerPool
from sb3_async.common.reporting import WorkerReporter
from sb3_async.common.vec_normalize import shared_normalization
from sb3_async.common.worker import PeriodicCopy, Worker

__all__ = ["HogwildGroup", "HogwildWorker", "copy_module"]


@th.no_grad()
def copy_module(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s parameters and buffers into ``target``'s tensors, in place."""
    for from_tensor, to_tensor in zip(source.state_dict().values(), target.state_dict().values()):
        to_tensor.copy_(from_tensor)


class HogwildWorker(Worker):
    """A worker process of the local backend (see :class:`~sb3_async.common.worker.Worker`)."""

    def __init__(self, context: WorkerContext, local: LocalCopy, reporter: WorkerReporter) -> None:
        super().__init__(context.worker_id, context.seed, context.budget.total)
        self._context = context
        self._local = local
        self._reporter = reporter

    def pull(self) -> None:
        self._local.pull()

    def reserve(self, n_steps: int) -> bool:
        return self._context.reserve(n_steps, on_wait=self._on_wait)

    def _on_wait(self) -> None:
        # The main process must hear of finished episodes before it can let this worker go on.
        self._reporter.send()
        self._context.send("wait")

    def record_step(self, infos: list[dict[str, Any]], dones: Any) -> None:
        self._context.count_taken(len(dones))
        self._reporter.add_step(infos, dones)

    def record_update(self, logger: Any) -> None:
        self._reporter.add_update(logger)

    @property
    def global_steps(self) -> int:
        return self._context.global_steps

    def flush(self) -> None:
        self._reporter.send()


class HogwildGroup(WorkerGroup):
    """
    The main process's side of the local backend.

    :param algorithm: the algorithm; its policy and optimizer state must be in shared memory
    :param seeds: one seed per worker
    :param base_timesteps: ``T`` now
    :param total_timesteps: ``T`` at which training ends
    :param slack: steps workers may take beyond those the main process has handled
    """

    def __init__(self, algorithm: Any, seeds: list[int], base_timesteps: int, total_timesteps: int, slack: int) -> None:
        self._algorithm = algorithm
        self._copies: list[PeriodicCopy] = algorithm._periodic_copies()
        self._intervals = [SharedInterval(copy.interval, base_timesteps) for copy in self._copies]
        self._pool = WorkerPool(self._worker_main, seeds, base_timesteps, total_timesteps, slack)
        self._stack = ExitStack()

    def __enter__(self) -> "HogwildGroup":
        with ExitStack() as stack:
            stack.enter_context(shared_normalization(self._algorithm.env))
            stack.enter_context(self._pool)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        return [payload for kind, _, payload in self._pool.poll(timeout) if kind == "report"]

    @property
    def global_steps(self) -> int:
        return self._pool.global_steps

    @property
    def steps_taken(self) -> int:
        return self._pool.steps_taken

    @property
    def finished(self) -> bool:
        return self._pool.finished

    @property
    def overdue(self) -> bool:
        return self._pool.overdue

    def allow_up_to(self, handled: int) -> None:
        self._pool.budget.allow_up_to(handled)

    def request_stop(self) -> None:
        self._pool.request_stop()

    @property
    def copies_done(self) -> dict[str, int]:
        return {copy.target: interval.count for copy, interval in zip(self._copies, self._intervals)}

    # --- in the worker process (forked: ``self`` and the algorithm are the worker's copies) -----

    def _worker_main(self, context: WorkerContext) -> None:
        algorithm = self._algorithm
        shared = algorithm.policy
        pairs = [(shared.get_submodule(c.source), shared.get_submodule(c.target)) for c in self._copies]

        def after_update() -> None:
            # After the update, as in Algorithm S2; T may have passed the multiple during the rollout.
            for (source, target), interval in zip(pairs, self._intervals):
                if interval.claim(context.global_steps):
                    copy_module(source, target)

        local = LocalCopy(shared, keep_shared=[c.target for c in self._copies], after_step=after_update)
        algorithm.policy = local.module
        reporter = WorkerReporter(lambda report: context.send("report", report), context.worker_id)
        worker = HogwildWorker(context, local, reporter)
        algorithm._run_worker(worker)
        worker.flush()
