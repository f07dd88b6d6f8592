"""rl_zoo3 building Atari environments as :class:`~sb3_async.common.ale_vec_env.AleVecEnv` (``--ale-vec-env``)."""

from typing import Any

import gymnasium as gym

from sb3_async.common.ale_vec_env import AleVecEnv

__all__ = ["use_ale_vec_env"]

_ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
# AtariWrapper's arguments that AleVecEnv takes under the same names.
_SHARED_ARGUMENTS = {"noop_max", "frame_skip", "screen_size", "terminal_on_life_loss", "clip_reward"}


def _atari_wrapper_arguments(env_wrapper: Any) -> dict[str, Any]:
    """The arguments of the entry's ``env_wrapper`` if it is ``AtariWrapper`` alone; a ValueError otherwise."""
    wrappers = env_wrapper if isinstance(env_wrapper, list) else [env_wrapper]
    if len(wrappers) == 1 and wrappers[0] == _ATARI_WRAPPER:
        return {}
    if len(wrappers) == 1 and isinstance(wrappers[0], dict) and list(wrappers[0]) == [_ATARI_WRAPPER]:
        arguments = dict(wrappers[0][_ATARI_WRAPPER] or {})
        unknown = sorted(set(arguments) - _SHARED_ARGUMENTS)
        if not unknown:
            return arguments
        raise ValueError(f"--ale-vec-env: AleVecEnv has no equivalent of AtariWrapper's {unknown}")
    raise ValueError(
        f"--ale-vec-env: the entry's env_wrapper must be {_ATARI_WRAPPER} alone (AleVecEnv does its "
        f"preprocessing), got {env_wrapper!r}"
    )


def use_ale_vec_env(manager: Any = None) -> None:
    """
    Make rl_zoo3's ``ExperimentManager`` ``manager`` (None: every one in this process) build the
    environments of ale-py's Atari games as one :class:`AleVecEnv` (training and evaluation
    alike), from the entry's ``AtariWrapper`` arguments and ``frame_stack``; other environments
    are built as before. The zoo's ``monitor.csv`` is not written for these environments.
    """
    from rl_zoo3.exp_manager import ExperimentManager

    _install(ExperimentManager)
    (ExperimentManager if manager is None else manager).ale_vec_env = True


def _install(ExperimentManager: Any) -> None:
    if getattr(ExperimentManager, "_creates_ale_vec_envs", False):
        return
    preprocess = ExperimentManager._preprocess_hyperparams
    create_envs = ExperimentManager.create_envs

    def keep_env_wrapper(self: Any, hyperparams: dict[str, Any]) -> Any:
        self._env_wrapper_entry = hyperparams.get("env_wrapper")
        return preprocess(self, hyperparams)

    def create_ale_envs(self: Any, n_envs: int, eval_env: bool = False, no_log: bool = False) -> Any:
        if not self.ale_vec_env or gym.spec(self.env_name.gym_id).entry_point != "ale_py.env:AtariEnv":
            return create_envs(self, n_envs, eval_env, no_log)
        for name, value in (("vec_env_wrapper", self.vec_env_wrapper), ("normalize", self.normalize or None)):
            if value is not None:
                raise ValueError(f"--ale-vec-env: the entry's {name} cannot be applied to an AleVecEnv")
        arguments = _atari_wrapper_arguments(getattr(self, "_env_wrapper_entry", None))
        return AleVecEnv(self.env_name.gym_id, n_envs, seed=self.seed, frame_stack=self.frame_stack or 1, **arguments)

    ExperimentManager._preprocess_hyperparams = keep_env_wrapper  # type: ignore[method-assign]
    ExperimentManager.create_envs = create_ale_envs  # type: ignore[method-assign]
    ExperimentManager.ale_vec_env = False
    ExperimentManager._creates_ale_vec_envs = True
