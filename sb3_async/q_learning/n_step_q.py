from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.dqn.policies import DQNPolicy

from sb3_async.common.validation import Check, check_int
from sb3_async.q_learning.base import AsyncQLearning, Rollout


class AsyncNStepQ(AsyncQLearning):
    """
    Asynchronous n-step Q-learning, Algorithm S2 of Mnih et al. 2016,
    "Asynchronous Methods for Deep Reinforcement Learning" (https://arxiv.org/abs/1602.01783).

    Each worker collects ``n_steps`` steps (t_max) of each of its environments, then regresses
    every step's Q(s, a) towards its n-step return
    ``r_t + gamma r_{t+1} + ... + gamma^k max_a Q(s_{t+k}, a; target)``, cut at episode ends
    (no bootstrap after termination; a time-limit truncation bootstraps from the terminal
    observation). The paper's rollout stops at an episode's end; here rollouts have a fixed
    length and cross episode ends, as A3C's (and A2C's) do: the returns are the same.

    :param policy: SB3's DQN policies: MlpPolicy, CnnPolicy, MultiInputPolicy
    :param env: The environment to learn from (an env id, a callable returning an env, an env or a VecEnv)
    :param n_steps: t_max: the number of steps per environment in a worker's rollout
    :param kwargs: The parameters of :class:`~sb3_async.q_learning.base.AsyncQLearning`
        (``learning_rate``, ``target_update_interval``, ``exploration_*``, ``loss``, ``n_workers``, ...)
    """

    _rollout_length_setting = "n_steps"
    _setting_checks: ClassVar[dict[str, Check]] = {**AsyncQLearning._setting_checks, "n_steps": partial(check_int, minimum=1)}

    def __init__(self, policy: str | type[DQNPolicy], env: GymEnv | str, n_steps: int = 5, **kwargs: Any) -> None:
        super().__init__(policy, env, rollout_length=check_int("n_steps", n_steps, minimum=1), **kwargs)
        # After the base class, which sets its own n_steps (SB3's n-step replay, unused here).
        self.n_steps = n_steps

    def _targets(self, rollout: Rollout) -> th.Tensor:
        # A return starts from the target network's value at the rollout's last state and where an
        # episode was cut by a time limit; it starts from 0 where one terminated.
        starts = rollout.dones.copy()
        starts[-1] = True
        bootstrap = th.zeros(rollout.rewards.shape)
        rows = np.flatnonzero((starts & ~rollout.terminated).reshape(-1))
        if len(rows):
            bootstrap.view(-1)[rows] = self._target_q_values(rollout, rows).max(dim=1).values
        rewards = th.as_tensor(rollout.rewards, dtype=th.float32)
        returns = th.zeros_like(rewards)
        running = bootstrap[-1]
        for t in reversed(range(rollout.length)):
            running = th.where(th.as_tensor(starts[t]), bootstrap[t], running)
            running = rewards[t] + self.gamma * running
            returns[t] = running
        return returns.flatten()
