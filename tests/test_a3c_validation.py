"""Bad input fails early, naming the argument and what was expected."""

import pytest
import torch as th

from sb3_async import A3C


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n_workers=0), ValueError, "n_workers must be >= 1"),
        (dict(n_workers=1.5), TypeError, "n_workers must be an integer"),
        (dict(n_workers=True), TypeError, "n_workers must be an integer"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(gamma=1.5), ValueError, r"gamma must be in \[0.0, 1.0\]"),
        (dict(gae_lambda=-0.1), ValueError, "gae_lambda must be in"),
        (dict(ent_coef=-1.0), ValueError, "ent_coef must be in"),
        (dict(vf_coef="0.5"), TypeError, "vf_coef must be a number"),
        (dict(max_grad_norm=0.0), ValueError, r"max_grad_norm must be in \(0.0"),
        (dict(learning_rate=0.0), ValueError, "learning_rate must be in"),
        (dict(learning_rate="lin_7e-4"), TypeError, "learning_rate must be a number"),
        (dict(learning_rate=float("inf")), ValueError, "learning_rate must be finite"),
        (dict(ent_coef=float("inf")), ValueError, "ent_coef must be finite"),
        (dict(tensorboard_log=123), TypeError, "tensorboard_log must be a path"),
        (dict(rms_prop_eps=float("nan")), ValueError, "rms_prop_eps must not be NaN"),
        (dict(use_rms_prop="yes"), TypeError, "use_rms_prop must be True or False"),
        (dict(normalize_advantage=1), TypeError, "normalize_advantage must be True or False"),
        (dict(stats_window_size=0), ValueError, "stats_window_size must be >= 1"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(verbose=-1), ValueError, "verbose must be >= 0"),
        (dict(device="cuda"), ValueError, "device='cuda'"),
        (dict(policy_kwargs=[1]), TypeError, "policy_kwargs must be a dict"),
        (dict(policy_kwargs=dict(optimizer_class=th.optim.Adagrad)), ValueError, "optimizer_class"),
    ],
)
def test_invalid_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        A3C("MlpPolicy", "CartPole-v1", **kwargs)


def test_optimizer_kwargs_without_an_optimizer_class_adjust_a2cs_rmsprop():
    optimizer_kwargs = dict(alpha=0.5, weight_decay=1e-3)
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=1, policy_kwargs=dict(optimizer_kwargs=optimizer_kwargs))
    group = model.policy.optimizer.param_groups[0]
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)
    assert (group["alpha"], group["weight_decay"], group["eps"]) == (0.5, 1e-3, 1e-5)
    with pytest.raises(ValueError, match="epsilon is given twice"):
        A3C("MlpPolicy", "CartPole-v1", rms_prop_eps=1e-3, policy_kwargs=dict(optimizer_kwargs=dict(eps=0.5)))


def test_arguments_that_would_be_ignored_are_reported():
    with pytest.warns(UserWarning, match="rms_prop_eps are not used"):
        A3C("MlpPolicy", "CartPole-v1", rms_prop_eps=0.1, policy_kwargs=dict(optimizer_class=th.optim.Adam))
    with pytest.warns(UserWarning, match="use_rms_prop=False selects Adam"):
        model = A3C("MlpPolicy", "CartPole-v1", use_rms_prop=False, rms_prop_eps=0.1)
    assert isinstance(model.policy.optimizer, th.optim.Adam)


def test_unknown_policy_and_wrong_policy_for_dict_observations():
    with pytest.raises(ValueError, match="Policy LstmPolicy unknown"):
        A3C("LstmPolicy", "CartPole-v1")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(total_timesteps=0), ValueError, "total_timesteps must be >= 1"),
        (dict(total_timesteps=1e4), TypeError, "total_timesteps must be an integer"),
        (dict(total_timesteps=10, log_interval=0), ValueError, "log_interval must be >= 1"),
        (dict(total_timesteps=10, tb_log_name=3), TypeError, "tb_log_name must be a string"),
        (dict(total_timesteps=10, reset_num_timesteps=None), TypeError, "reset_num_timesteps must be True or False"),
        (dict(total_timesteps=10, progress_bar="no"), TypeError, "progress_bar must be True or False"),
    ],
)
def test_invalid_learn_arguments(kwargs, error, message):
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=1)
    with pytest.raises(error, match=message):
        model.learn(**kwargs)


def test_learn_without_env_explains_what_to_do(tmp_path):
    A3C("MlpPolicy", "CartPole-v1", n_workers=1).save(tmp_path / "m")
    model = A3C.load(tmp_path / "m")
    with pytest.raises(ValueError, match="set_env"):
        model.learn(100)


def test_unsupported_action_space():
    import gymnasium as gym
    from gymnasium import spaces

    class TupleActions(gym.Env):
        observation_space = spaces.Box(-1, 1, (2,))
        action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])

    with pytest.raises(AssertionError, match="only supports"):
        A3C("MlpPolicy", TupleActions())
