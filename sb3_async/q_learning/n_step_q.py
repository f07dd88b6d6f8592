from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.dqn.policies import DQNPolicy

from sb3_async.common.validation import check_int
from sb3_async.q_learning.base import AsyncQLearning


class AsyncNStepQ(AsyncQLearning):
    """
    Asynchronous n-step Q-learning, Algorithm S2 of Mnih et al. 2016,
    "Asynchronous Methods for Deep Reinforcement Learning" (https://arxiv.org/abs/1602.01783).

    Each worker collects up to ``n_steps`` steps (t_max; the rollout also ends with the episode
    when the worker has one environment), then regresses every step's Q(s, a) towards its
    n-step return ``r_t + gamma r_{t+1} + ... + gamma^k max_a Q(s_{t+k}, a; target)``, cut at
    episode ends (no bootstrap after termination; a time-limit truncation bootstraps from the
    terminal observation).

    :param policy: SB3's DQN policies: MlpPolicy, CnnPolicy, MultiInputPolicy
    :param env: The environment to learn from (an env id, a callable returning an env, an env or a VecEnv)
    :param n_steps: t_max: the number of steps per environment in a worker's rollout
    :param kwargs: The parameters of :class:`~sb3_async.q_learning.base.AsyncQLearning`
        (``learning_rate``, ``target_update_interval``, ``exploration_*``, ``loss``, ``n_workers``, ...)
    """

    def __init__(self, policy: str | type[DQNPolicy], env: GymEnv | str, n_steps: int = 5, **kwargs: Any) -> None:
        super().__init__(policy, env, rollout_length=check_int("n_steps", n_steps, minimum=1), **kwargs)
        self.n_steps = n_steps

    def _bootstrap_needed(self, dones: th.Tensor) -> th.Tensor:
        # The target network is evaluated only where a return starts: the rollout's last state
        # and the states where an episode ended.
        needed = dones.clone()
        needed[-1] = True
        return needed

    def _returns(self, rewards: th.Tensor, dones: th.Tensor, bootstrap: th.Tensor) -> th.Tensor:
        returns = th.zeros_like(rewards)
        running = bootstrap[-1]
        for t in reversed(range(len(rewards))):
            running = th.where(dones[t], bootstrap[t], running) if t < len(rewards) - 1 else running
            running = rewards[t] + self.gamma * running
            returns[t] = running
        return returns
