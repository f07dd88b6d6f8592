"""sb3-contrib's recurrent rollout buffers, giving a worker's rollout whole and in order.

For truncated backpropagation through time over the t_max-step rollout, each environment's
steps must be replayed from the LSTM state saved at the rollout's start (and from the zero
state after an episode start). sb3-contrib's ``get()`` also cuts the rollout at a random index
(a light shuffle meant for PPO's minibatches), which would start part of it from a state saved
mid-rollout. These buffers return the whole rollout as one batch of sequences, cut only where
an episode starts, with the LSTM state of those that start an episode already reset.
"""

from collections.abc import Generator
from typing import Any

import numpy as np
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates

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
        samples = self._get_samples(  # type: ignore[attr-defined]
            np.arange(self.buffer_size * self.n_envs),
            self.swap_and_flatten(env_change),  # type: ignore[attr-defined]
        )
        yield _reset_states_up_front(samples)


def _reset_states_up_front(samples: Any) -> Any:
    """
    The same batch, with the LSTM reset of each sequence that begins an episode done on its
    initial state instead of by its ``episode_starts`` flag.

    Sequences are cut at every episode start, so a start can only be a sequence's first step.
    sb3-contrib's ``_process_sequence`` steps the LSTM one time step at a time whenever any flag
    is set, and runs the whole padded batch in one call when none is: the result is the same.
    """
    n_seq = samples.lstm_states.pi[0].shape[1]
    first_steps = samples.episode_starts.view(n_seq, -1)[:, 0]
    keep = (1.0 - first_steps).view(1, n_seq, 1)
    states = RNNStates(
        (samples.lstm_states.pi[0] * keep, samples.lstm_states.pi[1] * keep),
        (samples.lstm_states.vf[0] * keep, samples.lstm_states.vf[1] * keep),
    )
    episode_starts = samples.episode_starts.clone()
    episode_starts.view(n_seq, -1)[:, 0] = 0.0
    return samples._replace(lstm_states=states, episode_starts=episode_starts)


class WholeRecurrentRolloutBuffer(_WholeRollout, RecurrentRolloutBuffer):
    """``RecurrentRolloutBuffer`` whose ``get()`` yields the whole rollout in order."""


class WholeRecurrentDictRolloutBuffer(_WholeRollout, RecurrentDictRolloutBuffer):
    """``RecurrentDictRolloutBuffer`` whose ``get()`` yields the whole rollout in order."""
