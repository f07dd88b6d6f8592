"""Optuna samplers for ``-optimize`` (rl_zoo3's signature: ``(trial, n_actions, n_envs, additional_args)``).

Each returns constructor arguments; the matching converter turns a trial's raw values
(``trial.params``) into the same arguments, for when the zoo reloads a study's best trial.
The ranges follow the paper where it gives one (learning rate LogUniform(1e-4, 1e-2),
t_max around 5) and SB3's zoo otherwise.
"""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params
from torch import nn

__all__ = ["convert_async_q_params", "sample_a3c_params", "sample_async_q_params"]

_NET_ARCH = {"tiny": [64], "small": [64, 64], "medium": [256, 256]}
_ACTIVATION = {"tanh": nn.Tanh, "relu": nn.ReLU}


def sample_a3c_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """A3C: A2C's hyperparameters with the paper's short rollouts and learning-rate range."""
    sampled = {
        "n_steps": trial.suggest_categorical("n_steps", [5, 8, 16, 32]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    return convert_onpolicy_params(sampled)


def sample_async_q_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict, rollout_name: str
) -> dict[str, Any]:
    """
    The value-based methods; ``rollout`` becomes ``rollout_name``: ``n_steps`` (t_max of n-step Q)
    or ``async_update_freq`` (I_AsyncUpdate of the one-step methods). Bind it with ``functools.partial``.
    """
    sampled = {
        "rollout": trial.suggest_categorical("rollout", [5, 10, 20]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [500, 1000, 2000, 5000, 10000]),
        "exploration_steps": trial.suggest_categorical("exploration_steps", [10_000, 50_000, 100_000, 500_000]),
        "loss": trial.suggest_categorical("loss", ["huber", "mse"]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.5, 40.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["tiny", "small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    return convert_async_q_params(sampled, rollout_name)


def convert_async_q_params(sampled: dict[str, Any], rollout_name: str) -> dict[str, Any]:
    """Constructor arguments from :func:`sample_async_q_params`'s values."""
    params = dict(sampled)
    params["gamma"] = 1 - params.pop("one_minus_gamma")
    params[rollout_name] = params.pop("rollout")
    params["policy_kwargs"] = {
        "net_arch": _NET_ARCH[params.pop("net_arch")],
        "activation_fn": _ACTIVATION[params.pop("activation_fn")],
    }
    return params
