"""sb3-contrib's recurrent rollout buffers, giving a worker's rollout whole and in order.

For truncated backpropagation through time over the t_max-step rollout, each environment's
steps must be replayed from the LSTM state saved at the rollout's start (and from the zero
state after an episode start). sb3-contrib's ``get()`` also cuts the rollout at a random index
(a light shuffle meant for PPO's minibatches), which would start part of it from a state saved
mid-rollout. These buffers return the whole rollout as one batch of sequences, cut only where
an episode starts.
"""

from collections.abc import Generator
from typing import Any

import numpy as np
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer

__all__ = ["WholeRecurrentDictRolloutBuffer", "WholeRecurrentRolloutBuffer"]


class _WholeRollout:
    buffer_size: int
    n_envs: int

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        if batch_size is not None:
            raise ValueError("this buffer yields the whole rollout: batch_size must be None")
        # The parent's first batch lays the data out by environment (its preparation step);
        # that batch itself, cut at a random index, is not used.
        next(super().get(batch_size))  # type: ignore[misc]
        env_change = np.zeros((self.buffer_size, self.n_envs))
        env_change[0, :] = 1.0
        yield self._get_samples(  # type: ignore[attr-defined]
            np.arange(self.buffer_size * self.n_envs),
            self.swap_and_flatten(env_change),  # type: ignore[attr-defined]
        )


class WholeRecurrentRolloutBuffer(_WholeRollout, RecurrentRolloutBuffer):
    """``RecurrentRolloutBuffer`` whose ``get()`` yields the whole rollout in order."""


class WholeRecurrentDictRolloutBuffer(_WholeRollout, RecurrentDictRolloutBuffer):
    """``RecurrentDictRolloutBuffer`` whose ``get()`` yields the whole rollout in order."""
