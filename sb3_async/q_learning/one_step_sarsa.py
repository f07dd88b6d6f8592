import torch as th

from sb3_async.q_learning.one_step_q import AsyncOneStepQ


class AsyncOneStepSarsa(AsyncOneStepQ):
    """
    Asynchronous one-step Sarsa, Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement
    Learning" (https://arxiv.org/abs/1602.01783): one-step Q-learning (same parameters as
    :class:`~sb3_async.AsyncOneStepQ`) with the target ``r + gamma * Q(s', a'; target)``, where
    ``a'`` is the action the worker actually takes in ``s'`` (after a time-limit truncation, an
    ε-greedy choice in the terminal state).
    """

    _uses_next_action = True

    def _next_state_values(self, next_q_values: th.Tensor, next_actions: th.Tensor | None) -> th.Tensor:
        assert next_actions is not None
        return next_q_values.gather(1, next_actions.long().view(-1, 1)).flatten()
