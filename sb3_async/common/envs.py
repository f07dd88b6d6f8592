"""Environment helpers: what a worker can step, and how the given ``env`` argument is read."""

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecEnvWrapper

__all__ = ["check_worker_env", "is_env_factory", "vec_env_chain"]


def vec_env_chain(env: VecEnv | None) -> Iterator[VecEnv]:
    """Yield ``env`` and every VecEnv it wraps, outermost first."""
    while env is not None:
        yield env
        env = env.venv if isinstance(env, VecEnvWrapper) else None


def is_env_factory(env: Any) -> bool:
    """True for a callable that builds an environment (an env id or instance is not one)."""
    return callable(env) and not isinstance(env, (str, gym.Env, VecEnv))


def check_worker_env(env: VecEnv) -> None:
    """
    Raise a ``ValueError`` if the workers cannot each step their own copy of ``env``.

    Workers are forked and step the copy of the environment they inherit. The sub-processes
    of a ``SubprocVecEnv`` cannot be copied that way: every worker would drive the same ones.
    """
    for wrapper in vec_env_chain(env):
        if isinstance(wrapper, SubprocVecEnv):
            raise ValueError(
                "env: a SubprocVecEnv cannot be given to an asynchronous algorithm, because its "
                "sub-processes would be shared by all workers. Each worker is already a process of its "
                "own: pass a DummyVecEnv (e.g. make_vec_env(env_id, n_envs=...)), an env id or a "
                "callable that returns an env."
            )
