"""An SB3 ``VecEnv`` over ale-py's own vectorised Atari environment (emulation and preprocessing in C++)."""

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_async.common.envs import RebuiltPerWorker

__all__ = ["AleVecEnv"]


def _ale_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        import ale_py
        import ale_py.vector_env
    except ImportError as error:
        raise ImportError("AleVecEnv needs ale-py 0.12 or later: pip install 'sb3-async[atari]' 'ale-py>=0.12'") from error
    gym.register_envs(ale_py)
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        raise ValueError(f"env_id: {env_id!r} is not a registered environment ({error})") from None
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise ValueError(f"env_id: {env_id!r} is not an Atari environment of ale-py (its entry point is {spec.entry_point!r})")
    return spec


class AleVecEnv(RebuiltPerWorker, VecEnv):
    """
    ``n_envs`` Atari games stepped by ale-py's ``AtariVectorEnv`` (ale-py 0.12 or later), which emulates and preprocesses
    in C++; a faster stand-in for ``make_atari_env(env_id, n_envs)`` wrapped in ``VecFrameStack``
    and ``VecTransposeImage``, with the same preprocessing as SB3's ``AtariWrapper``: no-op starts,
    4-frame action repeat with a max over the last two frames, 84x84 greyscale, a terminal at
    every lost life (the game goes on), fire on reset, rewards clipped to their sign, and
    ``frame_stack`` frames stacked, channels first (``(frame_stack, 84, 84)``, uint8).

    As with ``Monitor``, ``info["episode"]`` holds the whole game's unclipped return, its length in
    steps and the time since the env started, at the step where the game ends; ``evaluate_policy``
    reads it. Each worker of an asynchronous algorithm builds a copy of its own.

    What differs from ``AtariWrapper``: ALE converts to greyscale from its palette and resizes in
    its own code, so pixel values may differ slightly from OpenCV's; after a lost life the game
    goes on without the extra no-op and fire steps ``AtariWrapper`` takes; games are cut at
    ``max_episode_frames`` emulator frames (``info["TimeLimit.truncated"]``).

    :param env_id: an Atari id of ale-py (``"PongNoFrameskip-v4"``, ``"ALE/Breakout-v5"``, ...):
        it names the game, its sticky-action probability and action set; frame skipping is
        ``frame_skip`` whatever the id says
    :param n_envs: number of games
    :param seed: seed of the first game (the others get ``seed + 1``, ...); ``seed()`` also sets it
    :param frame_stack: frames stacked in each observation
    :param noop_max: at most this many no-op actions at the start of a game
    :param frame_skip: emulator frames per action (the max is taken over the last two)
    :param screen_size: height and width of the resized frames
    :param terminal_on_life_loss: end an episode (``done``) at every lost life
    :param clip_reward: give the sign of the reward (``info["episode"]`` keeps the true return)
    :param max_episode_frames: emulator frames after which a game is truncated
    :param num_threads: threads ale-py steps the games with (1: one worker, one core)
    """

    def __init__(
        self,
        env_id: str,
        n_envs: int = 1,
        seed: int | None = None,
        *,
        frame_stack: int = 4,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        terminal_on_life_loss: bool = True,
        clip_reward: bool = True,
        max_episode_frames: int = 108_000,
        num_threads: int = 1,
    ) -> None:
        spec = _ale_spec(env_id)
        for name, value, minimum in (
            ("n_envs", n_envs, 1),
            ("frame_stack", frame_stack, 1),
            ("noop_max", noop_max, 0),
            ("frame_skip", frame_skip, 1),
            ("screen_size", screen_size, 1),
            ("max_episode_frames", max_episode_frames, 1),
            ("num_threads", num_threads, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed: expected an integer or None, got {seed!r}")
        self._arguments: dict[str, Any] = dict(
            env_id=env_id,
            n_envs=n_envs,
            frame_stack=frame_stack,
            noop_max=noop_max,
            frame_skip=frame_skip,
            screen_size=screen_size,
            terminal_on_life_loss=terminal_on_life_loss,
            clip_reward=clip_reward,
            max_episode_frames=max_episode_frames,
            num_threads=num_threads,
        )
        self.env_id = env_id
        self.terminal_on_life_loss = terminal_on_life_loss
        self.clip_reward = clip_reward
        from ale_py.vector_env import AtariVectorEnv

        self._games = AtariVectorEnv(
            spec.kwargs["game"],
            n_envs,
            num_threads=num_threads,
            repeat_action_probability=spec.kwargs.get("repeat_action_probability", 0.0),
            full_action_space=spec.kwargs.get("full_action_space", False),
            max_num_frames_per_episode=max_episode_frames,
            autoreset_mode="SameStep",
            img_height=screen_size,
            img_width=screen_size,
            stack_num=frame_stack,
            frameskip=frame_skip,
            noop_max=noop_max,
            # A terminal at each lost life without a reset, as SB3's EpisodicLifeEnv; ale-py's
            # episodic_life would restart the whole game instead.
            episodic_life=False,
            life_loss_info=terminal_on_life_loss,
            # Clipped here, so that the episode's return can be the game's true score.
            reward_clipping=False,
        )
        self.render_mode = None  # read by VecEnv's constructor
        super().__init__(n_envs, self._games.single_observation_space, self._games.single_action_space)
        self._actions = np.zeros(n_envs, dtype=np.int64)
        self._returns = np.zeros(n_envs)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._lives = np.zeros(n_envs, dtype=np.int64)
        self._started = time.time()
        if seed is not None:
            self.seed(seed)

    def fresh_copy(self) -> "AleVecEnv":
        return AleVecEnv(**self._arguments)

    def reset(self) -> VecEnvObs:
        seeds = None
        if any(seed is not None for seed in self._seeds):
            # ale-py takes one seed per game or none, each a C int (the zoo's seeds go up to 2**32).
            seeds = np.array([np.random.randint(2**31) if seed is None else int(seed) % 2**31 for seed in self._seeds])
        observations, info = self._games.reset(seed=seeds)
        self._reset_seeds()
        self._returns[:] = 0
        self._lengths[:] = 0
        self._lives[:] = info["lives"]
        self.reset_infos = [{"lives": int(lives)} for lives in info["lives"]]
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, terminated, truncated, info = self._games.step(self._actions)
        self._returns += rewards
        self._lengths += 1
        dones = terminated | truncated
        lives = info["lives"]
        # A lost life lowers the lives; after a game over they are those of the next game.
        game_over = truncated | (terminated & (lives >= self._lives)) if self.terminal_on_life_loss else dones
        self._lives[:] = lives
        final_observations = info.get("final_obs", observations)
        infos: list[dict[str, Any]] = [{"lives": int(n)} for n in lives]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = final_observations[i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if game_over[i]:
                elapsed = round(time.time() - self._started, 6)
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed}
                self._returns[i] = 0
                self._lengths[i] = 0
        if self.clip_reward:
            rewards = np.sign(rewards)
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self._games.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"AleVecEnv: the games have no attribute to set ({attr_name!r})")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"AleVecEnv: the games have no methods to call ({method_name!r})")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # The episodes are reported as Monitor reports them, so evaluate_policy reads whole games.
        return [wrapper_class is Monitor] * len(self._get_indices(indices))

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def __getstate__(self) -> dict[str, Any]:
        # The C++ games cannot be pickled: a copy (on a Ray node, say) starts games of its own.
        return dict(self._arguments, seed=None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        AleVecEnv.__init__(self, **state)
