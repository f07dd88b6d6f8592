"""The callback that ties SB3's own rollout collection to the worker's shared state."""

from stable_baselines3.common.callbacks import BaseCallback

from sb3_async.common.local_copy import LocalCopy
from sb3_async.common.pool import WorkerContext
from sb3_async.common.reporting import WorkerReporter

__all__ = ["WorkerRolloutCallback"]


class WorkerRolloutCallback(BaseCallback):
    """
    Handed to SB3's ``collect_rollouts`` inside a worker: refreshes the local parameters from
    the shared ones at the start of every rollout (θ' = θ), adds every step to the global
    counter ``T``, reports finished episodes, and ends the rollout (returning ``False``)
    once ``T`` reaches the budget or the main process asks the workers to stop.
    """

    def __init__(self, context: WorkerContext, local: LocalCopy, reporter: WorkerReporter) -> None:
        super().__init__()
        self._context = context
        self._local = local
        self._reporter = reporter

    def _on_rollout_start(self) -> None:
        self._local.pull()

    def _on_step(self) -> bool:
        self._context.add_steps(len(self.locals["dones"]))
        self._reporter.add_step(self.locals["infos"], self.locals["dones"])
        return not self._context.should_stop()
