"""rl_zoo3 building Atari environments as :class:`~sb3_async.common.ale_vec_env.AleVecEnv` (``--ale-vec-env``)."""

import warnings
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_async.common.ale_vec_env import AleVecEnv, is_ale_env

__all__ = ["use_ale_vec_env"]

_ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
# AtariWrapper's arguments that AleVecEnv takes under the same names.
_SHARED_ARGUMENTS = {"noop_max", "frame_skip", "screen_size", "terminal_on_life_loss", "clip_reward"}
# The env_kwargs of ale-py's Atari environments that AleVecEnv takes under the same names.
_ENV_KWARGS = {"repeat_action_probability", "full_action_space"}
_NOT_READ = object()


def _atari_wrapper_arguments(env_wrapper: Any) -> dict[str, Any]:
    """The arguments of the entry's ``env_wrapper`` if it is ``AtariWrapper`` alone; a ValueError otherwise."""
    wrappers = env_wrapper if isinstance(env_wrapper, list) else [env_wrapper]
    if len(wrappers) == 1 and wrappers[0] == _ATARI_WRAPPER:
        return {}
    if len(wrappers) == 1 and isinstance(wrappers[0], dict) and list(wrappers[0]) == [_ATARI_WRAPPER]:
        arguments = dict(wrappers[0][_ATARI_WRAPPER] or {})
        # AtariWrapper's own sticky actions, off by default: only "off" has an equivalent here.
        if arguments.get("action_repeat_probability", 0.0) == 0.0:
            arguments.pop("action_repeat_probability", None)
        unknown = sorted(set(arguments) - _SHARED_ARGUMENTS)
        if not unknown:
            return arguments
        raise ValueError(
            f"--ale-vec-env: AleVecEnv has no equivalent of AtariWrapper's {unknown} (for sticky actions, "
            "pass env_kwargs repeat_action_probability)"
        )
    raise ValueError(
        f"--ale-vec-env: the entry's env_wrapper must be {_ATARI_WRAPPER} alone (AleVecEnv does its "
        f"preprocessing), got {env_wrapper!r}"
    )


def _ale_vec_env(manager: Any, n_envs: int, eval_env: bool) -> AleVecEnv:
    """The AleVecEnv for what ``manager``'s entry and command line ask, or a ValueError naming what it cannot do."""
    entry = getattr(manager, "_env_wrapper_entry", _NOT_READ)
    if entry is _NOT_READ:
        raise ValueError("use_ale_vec_env(manager) must be called before manager.setup_experiment()")
    env_kwargs = dict((manager.eval_env_kwargs if eval_env else manager.env_kwargs) or {})
    other_env_kwargs = sorted(set(env_kwargs) - _ENV_KWARGS)
    refused = {
        "the entry's vec_env_wrapper": manager.vec_env_wrapper is not None,
        "the entry's normalize": bool(manager.normalize),
        f"env_kwargs {other_env_kwargs}": bool(other_env_kwargs),
        "--vec-env subproc": not issubclass(manager.vec_env_class, DummyVecEnv),
        "vec_env_kwargs": bool(manager.vec_env_kwargs),
        "monitor_kwargs": bool(manager.monitor_kwargs),
    }
    for what, given in refused.items():
        if given:
            raise ValueError(f"--ale-vec-env: {what} cannot be applied to an AleVecEnv")
    arguments = {**_atari_wrapper_arguments(entry), **env_kwargs}
    return AleVecEnv(manager.env_name.gym_id, n_envs, seed=manager.seed, frame_stack=manager.frame_stack or 1, **arguments)


def use_ale_vec_env(manager: Any = None) -> None:
    """
    Make rl_zoo3's ``ExperimentManager`` ``manager`` (None: every one in this process) build the
    environments of ale-py's Atari games as one :class:`AleVecEnv` (training and evaluation
    alike), from the entry's ``AtariWrapper`` arguments and ``frame_stack``, and the
    ``env_kwargs`` ``repeat_action_probability`` and ``full_action_space``; other environments
    are built as before (with a warning). Call it before ``manager.setup_experiment()``. What
    ``AleVecEnv`` cannot do (other wrappers, ``normalize``, other ``env_kwargs``, ``--vec-env
    subproc``) raises a ``ValueError``. The zoo's ``monitor.csv`` is not written for these
    environments.
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
        if not self.ale_vec_env:
            return create_envs(self, n_envs, eval_env, no_log)
        if not is_ale_env(self.env_name.gym_id):
            warnings.warn(
                f"--ale-vec-env: {self.env_name.gym_id} is not an Atari game of ale-py; built as usual", stacklevel=2
            )
            return create_envs(self, n_envs, eval_env, no_log)
        return _ale_vec_env(self, n_envs, eval_env)

    ExperimentManager._preprocess_hyperparams = keep_env_wrapper  # type: ignore[method-assign]
    ExperimentManager.create_envs = create_ale_envs  # type: ignore[method-assign]
    ExperimentManager.ale_vec_env = False
    ExperimentManager._creates_ale_vec_envs = True
