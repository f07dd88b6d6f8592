"""rl-baselines3-zoo integration: registers sb3-async's algorithms with rl_zoo3.

rl_zoo3 checks ``--algo`` against ``rl_zoo3.utils.ALGOS`` when it builds its argument parser,
so the algorithms must be registered in the process before the zoo's entry point runs:
``python -m sb3_async.zoo train --algo a3c --env CartPole-v1`` does that and then hands its
arguments, untouched, to the zoo (see :mod:`sb3_async.zoo.__main__`). In your own scripts,
call :func:`register` before using rl_zoo3.
"""

import functools
from importlib import resources
from pathlib import Path

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa
from sb3_async.zoo.samplers import convert_async_q_params, sample_a3c_params, sample_async_q_params

__all__ = ["ALGOS", "config_path", "register"]

#: zoo key -> algorithm class
ALGOS = {
    "a3c": A3C,
    # A3C with the LSTM entries (zoo_configs/a3c_lstm.yml), as rl_zoo3's ppo_lstm is RecurrentPPO.
    "a3c_lstm": A3C,
    "async_nstep_q": AsyncNStepQ,
    "async_onestep_q": AsyncOneStepQ,
    "async_onestep_sarsa": AsyncOneStepSarsa,
}

# The constructor argument that the value-based sampler's "rollout" value becomes.
_ROLLOUT_ARGUMENT = {
    "async_nstep_q": "n_steps",
    "async_onestep_q": "async_update_freq",
    "async_onestep_sarsa": "async_update_freq",
}


def config_path(algo: str) -> Path:
    """The hyperparameter file shipped for ``algo`` (``zoo_configs/<algo>.yml``, installed as package data)."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {sorted(ALGOS)}, got {algo!r}")
    return Path(str(resources.files("sb3_async.zoo_configs").joinpath(f"{algo}.yml")))


def register() -> None:
    """Add the algorithms, their optuna samplers and converters to rl_zoo3's tables (idempotent)."""
    from rl_zoo3 import hyperparams_opt, utils
    from rl_zoo3.hyperparams_opt import convert_onpolicy_params

    # In place: every zoo module imported these dicts by name.
    utils.ALGOS.update(ALGOS)
    for algo in ("a3c", "a3c_lstm"):
        hyperparams_opt.HYPERPARAMS_SAMPLER[algo] = sample_a3c_params
        hyperparams_opt.HYPERPARAMS_CONVERTER[algo] = convert_onpolicy_params
    for algo, argument in _ROLLOUT_ARGUMENT.items():
        hyperparams_opt.HYPERPARAMS_SAMPLER[algo] = functools.partial(sample_async_q_params, rollout_name=argument)
        hyperparams_opt.HYPERPARAMS_CONVERTER[algo] = functools.partial(convert_async_q_params, rollout_name=argument)
