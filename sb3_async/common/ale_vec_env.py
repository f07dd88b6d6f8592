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
from sb3_async.common.validation import check_bool, check_float, check_int

__all__ = ["AleVecEnv", "is_ale_env"]

_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
# SameStep autoresets, final_obs and life_loss_info arrived in ale-py 0.12.
_MIN_ALE_VERSION = (0, 12)


def _import_ale() -> Any:
    try:
        import ale_py
        import ale_py.vector_env
    except ImportError as error:
        raise ImportError("AleVecEnv needs ale-py 0.12 or later: pip install 'sb3-async[atari]' 'ale-py>=0.12'") from error
    version = tuple(int(part) for part in ale_py.__version__.split(".")[:2] if part.isdigit())
    if version < _MIN_ALE_VERSION:
        raise ImportError(f"AleVecEnv needs ale-py 0.12 or later, this is {ale_py.__version__}: pip install 'ale-py>=0.12'")
    gym.register_envs(ale_py)
    return ale_py


def is_ale_env(env_id: str) -> bool:
    """Whether ``env_id`` is a registered Atari environment of ale-py (registering ale-py's ids first)."""
    _import_ale()
    try:
        return gym.spec(env_id).entry_point == _ALE_ENTRY_POINT
    except gym.error.Error:
        return False


class AleVecEnv(RebuiltPerWorker, VecEnv):
    """
    ``n_envs`` Atari games stepped by ale-py's ``AtariVectorEnv`` (ale-py 0.12 or later), which
    emulates and preprocesses in C++; a faster stand-in for ``make_atari_env(env_id, n_envs)``
    wrapped in ``VecFrameStack`` and ``VecTransposeImage``, with the same preprocessing as SB3's
    ``AtariWrapper``: no-op starts, 4-frame action repeat with a max over the last two frames,
    84x84 greyscale, a terminal at every lost life (the game goes on), fire at the start, rewards
    clipped to their sign, and ``frame_stack`` frames stacked, channels first
    (``(frame_stack, 84, 84)``, uint8).

    As ``Monitor`` below ``AtariWrapper`` does, ``info["episode"]`` holds the whole game's
    unclipped return, its length in emulator frames and the time since the env started, at the
    step where the game ends; ``evaluate_policy`` reads it. Each worker of an asynchronous
    algorithm builds a copy of its own.

    What differs from ``AtariWrapper``: ALE converts to greyscale from its palette and resizes in
    its own code, so pixel values may differ by a few grey levels from OpenCV's; a game starts
    with one FIRE frame (``FireResetEnv`` takes a FIRE step and a step of action 2); after a lost
    life the game goes on without the extra no-op and fire steps ``AtariWrapper`` takes, and the
    stacked frames are not cleared (``VecFrameStack`` clears them at every ``done``); games are cut
    at ``max_episode_frames`` emulator frames (``info["TimeLimit.truncated"]``). Otherwise, given
    the same actions, the game is ``AtariWrapper``'s frame for frame (tested on Pong and Breakout).

    :param env_id: an Atari id of ale-py (``"PongNoFrameskip-v4"``, ``"ALE/Breakout-v5"``, ...):
        it names the game and its defaults for sticky actions and the action set; frame skipping
        is ``frame_skip`` whatever the id says
    :param n_envs: number of games
    :param seed: seed of the first game (the others get ``seed + 1``, ...); ``seed()`` also sets it
    :param frame_stack: frames stacked in each observation
    :param noop_max: at most this many no-op actions at the start of a game
    :param frame_skip: emulator frames per action (the max is taken over the last two)
    :param screen_size: height and width of the resized frames
    :param terminal_on_life_loss: end an episode (``done``) at every lost life
    :param clip_reward: give the sign of the reward (``info["episode"]`` keeps the true return)
    :param max_episode_frames: emulator frames after which a game is truncated
    :param repeat_action_probability: sticky actions (None: the env id's, 0 for ``NoFrameskip-v4``)
    :param full_action_space: all 18 actions (None: the env id's)
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
        repeat_action_probability: float | None = None,
        full_action_space: bool | None = None,
        num_threads: int = 1,
    ) -> None:
        if not isinstance(env_id, str) or not is_ale_env(env_id):
            raise ValueError(
                f"env_id: expected the id of an Atari environment of ale-py (e.g. 'PongNoFrameskip-v4'), got {env_id!r}"
            )
        spec_kwargs = gym.spec(env_id).kwargs
        if seed is not None:
            seed = check_int("seed", seed, 0)
        if repeat_action_probability is None:
            repeat_action_probability = spec_kwargs.get("repeat_action_probability", 0.0)
        if full_action_space is None:
            full_action_space = bool(spec_kwargs.get("full_action_space", False))
        # check_int returns Python ints: ale-py refuses NumPy integers.
        self._arguments: dict[str, Any] = dict(
            env_id=env_id,
            n_envs=check_int("n_envs", n_envs, 1),
            frame_stack=check_int("frame_stack", frame_stack, 1),
            noop_max=check_int("noop_max", noop_max, 0),
            frame_skip=check_int("frame_skip", frame_skip, 1),
            screen_size=check_int("screen_size", screen_size, 1),
            terminal_on_life_loss=check_bool("terminal_on_life_loss", terminal_on_life_loss),
            clip_reward=check_bool("clip_reward", clip_reward),
            max_episode_frames=check_int("max_episode_frames", max_episode_frames, 1),
            repeat_action_probability=check_float("repeat_action_probability", repeat_action_probability, 0.0, 1.0),
            full_action_space=check_bool("full_action_space", full_action_space),
            num_threads=check_int("num_threads", num_threads, 1),
        )
        arguments = self._arguments
        self.env_id = env_id
        self.terminal_on_life_loss = terminal_on_life_loss
        self.clip_reward = clip_reward
        self._frame_skip = arguments["frame_skip"]
        self._games = _import_ale().vector_env.AtariVectorEnv(
            spec_kwargs["game"],
            arguments["n_envs"],
            num_threads=arguments["num_threads"],
            repeat_action_probability=arguments["repeat_action_probability"],
            full_action_space=arguments["full_action_space"],
            max_num_frames_per_episode=arguments["max_episode_frames"],
            autoreset_mode="SameStep",
            img_height=arguments["screen_size"],
            img_width=arguments["screen_size"],
            stack_num=arguments["frame_stack"],
            frameskip=arguments["frame_skip"],
            noop_max=arguments["noop_max"],
            # A terminal at each lost life without a reset, as SB3's EpisodicLifeEnv; ale-py's
            # episodic_life would restart the whole game instead.
            episodic_life=False,
            life_loss_info=terminal_on_life_loss,
            # Clipped here, so that the episode's return can be the game's true score.
            reward_clipping=False,
        )
        self.render_mode = None  # read by VecEnv's constructor
        super().__init__(arguments["n_envs"], self._games.single_observation_space, self._games.single_action_space)
        self._actions = np.zeros(self.num_envs, dtype=np.int64)
        self._returns = np.zeros(self.num_envs)
        self._lives = np.zeros(self.num_envs, dtype=np.int64)
        self._frames = np.zeros(self.num_envs, dtype=np.int64)  # emulator frames of each game so far
        self._started = time.time()
        if seed is not None:
            self.seed(seed)

    def fresh_copy(self) -> "AleVecEnv":
        return type(self)(**self._arguments)

    def reset(self) -> VecEnvObs:
        if any(self._options):
            raise ValueError("AleVecEnv.reset takes no options (set_options)")
        seeds = None
        if self._seeds[0] is not None:
            # ale-py takes C ints; the zoo draws seeds up to 2**32.
            seeds = np.array(self._seeds, dtype=np.int64) % 2**31
        observations, info = self._games.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0
        self._lives[:] = info["lives"]
        self._frames[:] = info["episode_frame_number"]
        self.reset_infos = [{"lives": int(lives)} for lives in info["lives"]]
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, terminated, truncated, info = self._games.step(self._actions)
        self._returns += rewards
        dones = terminated | truncated
        lives, frames = info["lives"], info["episode_frame_number"]
        # At a lost life the game goes on: fewer lives, its frame count still growing. Any other
        # done restarted the game, and the info is the new game's.
        life_lost = terminated & ~truncated & (lives < self._lives) & (frames > self._frames)
        restarted = dones & ~life_lost
        game_frames = self._frames + self._frame_skip
        self._lives[:] = lives
        self._frames[:] = frames
        final_observations = info.get("final_obs")
        infos: list[dict[str, Any]] = [{"lives": int(n)} for n in lives]
        for i in np.flatnonzero(dones):
            # ale-py fills final_obs only for the games it restarted.
            infos[i]["terminal_observation"] = final_observations[i] if restarted[i] else observations[i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if restarted[i]:
                elapsed = round(time.time() - self._started, 6)
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(game_frames[i]), "t": elapsed}
                self._returns[i] = 0
                self.reset_infos[i] = {"lives": int(lives[i])}
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
        return dict(self._arguments)

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, **state)
