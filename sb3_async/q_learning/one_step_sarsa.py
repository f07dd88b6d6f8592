import numpy as np
import torch as th

from sb3_async.q_learning.base import Rollout, select_rows
from sb3_async.q_learning.one_step_q import AsyncOneStepQ


class AsyncOneStepSarsa(AsyncOneStepQ):
    """
    Asynchronous one-step Sarsa, Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement
    Learning" (https://arxiv.org/abs/1602.01783): one-step Q-learning (same parameters as
    :class:`~sb3_async.AsyncOneStepQ`) with the target ``r + gamma * Q(s', a'; target)``, where
    ``a'`` is the action the worker actually takes in ``s'`` (after a time-limit truncation, an
    ε-greedy choice in the terminal state).
    """

    # In a worker: the actions already chosen for the first step of the next rollout.
    _chosen_actions: np.ndarray | None = None

    def _first_actions(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        chosen, self._chosen_actions = self._chosen_actions, None
        return self._act(obs, epsilon) if chosen is None else chosen

    def _next_values(self, rollout: Rollout, rows: np.ndarray) -> th.Tensor:
        following = self._following_actions(rollout).reshape(-1)[rows]
        return self._target_q_values(rollout, rows).gather(1, th.as_tensor(following, dtype=th.long).view(-1, 1)).flatten()

    def _following_actions(self, rollout: Rollout) -> np.ndarray:
        """
        The action taken after each step: the next step's; after the rollout's last step, the one
        chosen now (with θ' before the update, ε as in the rollout) and taken first in the next
        rollout; after an episode's end, an ε-greedy choice in the terminal state.
        """
        self._chosen_actions = self._act(rollout.last_observations, rollout.epsilon)
        following = np.concatenate([rollout.actions[1:], self._chosen_actions[None]])
        for t in np.flatnonzero(rollout.dones.any(axis=1)):
            ended = np.flatnonzero(rollout.dones[t])
            following[t, ended] = self._act(select_rows(rollout.next_observations[t], ended), rollout.epsilon)
        return following
