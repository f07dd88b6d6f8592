from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.dqn.policies import DQNPolicy

from sb3_async.common.validation import Check, check_int
from sb3_async.q_learning.base import AsyncQLearning, Rollout


class AsyncOneStepQ(AsyncQLearning):
    """
    Asynchronous one-step Q-learning, Algorithm 1 of Mnih et al. 2016,
    "Asynchronous Methods for Deep Reinforcement Learning" (https://arxiv.org/abs/1602.01783).

    Each step's target is ``r + gamma * max_a' Q(s', a'; target)`` (``r`` alone where the episode
    terminated; a time-limit truncation bootstraps from the terminal observation). The gradients
    of ``async_update_freq`` steps of each of the worker's environments are accumulated and then
    applied to the shared network (the paper also applies them at an episode's end).

    :param policy: SB3's DQN policies: MlpPolicy, CnnPolicy, MultiInputPolicy
    :param env: The environment to learn from (an env id, a callable returning an env, an env or a VecEnv)
    :param async_update_freq: I_AsyncUpdate: steps per environment whose gradients are accumulated
        before they are applied
    :param kwargs: The parameters of :class:`~sb3_async.q_learning.base.AsyncQLearning`
        (``learning_rate``, ``target_update_interval``, ``exploration_*``, ``loss``, ``n_workers``, ...)
    """

    _rollout_length_setting = "async_update_freq"
    _setting_checks: ClassVar[dict[str, Check]] = {
        **AsyncQLearning._setting_checks,
        "async_update_freq": partial(check_int, minimum=1),
    }

    def __init__(self, policy: str | type[DQNPolicy], env: GymEnv | str, async_update_freq: int = 5, **kwargs: Any) -> None:
        self.async_update_freq = check_int("async_update_freq", async_update_freq, minimum=1)
        super().__init__(policy, env, rollout_length=async_update_freq, **kwargs)

    def _targets(self, rollout: Rollout) -> th.Tensor:
        values = th.zeros(rollout.rewards.size)
        rows = np.flatnonzero(~rollout.terminated.reshape(-1))
        if len(rows):
            values[rows] = self._next_values(rollout, rows)
        return th.as_tensor(rollout.rewards.reshape(-1)) + self.gamma * values

    def _next_values(self, rollout: Rollout, rows: np.ndarray) -> th.Tensor:
        """The value of the next state of each given (flattened) step: max_a' Q(s', a'; θ⁻)."""
        return self._target_q_values(rollout, rows).max(dim=1).values
