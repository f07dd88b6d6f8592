from sb3_async.q_learning.n_step_q import AsyncNStepQ
from sb3_async.q_learning.one_step_q import AsyncOneStepQ
from sb3_async.q_learning.one_step_sarsa import AsyncOneStepSarsa

__all__ = ["AsyncNStepQ", "AsyncOneStepQ", "AsyncOneStepSarsa"]
