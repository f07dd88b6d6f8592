"""The callback that ties SB3's own rollout collection to the worker's shared state."""

from stable_baselines3.common.callbacks import BaseCallback

from sb3_async.common.worker import Worker, check_finite_step

__all__ = ["WorkerRolloutCallback"]


class WorkerRolloutCallback(BaseCallback):
    """
    Handed to SB3's ``collect_rollouts`` inside a worker: refreshes the local parameters from
    the shared ones at the start of every rollout (θ' = θ), stops on NaN or infinity in what the
    environment returned, reports finished episodes, and
    reserves each next step of the rollout before SB3 takes it, ending the rollout (returning
    ``False``) when the worker must stop. The caller reserves the rollout's first step.

    :param worker: the worker
    :param n_rollout_steps: steps per environment in a rollout
    """

    def __init__(self, worker: Worker, n_rollout_steps: int) -> None:
        super().__init__()
        self._worker = worker
        self._n_rollout_steps = n_rollout_steps

    def _on_rollout_start(self) -> None:
        self._worker.pull()
        model = self.model
        if model.use_sde:
            # SB3 drew the rollout's gSDE noise before this call, from the parameters before the pull.
            model.policy.reset_noise(model.env.num_envs)

    def _on_step(self) -> bool:
        dones = self.locals["dones"]
        check_finite_step(self.locals["new_obs"], self.locals["rewards"])
        self._worker.record_step(self.locals["infos"], dones)
        # SB3 counts this step in `n_steps` after the callback: is another step of this rollout to come?
        if self.locals["n_steps"] + 1 < self._n_rollout_steps:
            return self._worker.reserve(len(dones))
        return True
