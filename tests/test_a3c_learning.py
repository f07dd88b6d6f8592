"""A3C actually learns: score thresholds on real environments, with 2 workers.

Hogwild training is not deterministic even with a fixed seed (the workers' updates
interleave differently each run), so the budgets below leave a wide margin over what the
runs measured for the issue notes needed (README / docs).
"""

import pytest
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_async import A3C


def _train_until(model: A3C, eval_env, threshold: float, budget: int, eval_freq: int) -> EvalCallback:
    evaluation = EvalCallback(
        eval_env,
        callback_on_new_best=StopTrainingOnRewardThreshold(threshold),
        eval_freq=eval_freq,
        n_eval_episodes=10,
        verbose=0,
    )
    model.learn(budget, callback=evaluation)
    return evaluation


@pytest.mark.slow
def test_cartpole_reaches_475():
    """Measured: 10k-150k steps, 20-60 s on 2 cores (the zoo's CartPole-v1 settings)."""
    model = A3C(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=8, seed=1),
        n_workers=2,
        learning_rate=1.5e-3,
        ent_coef=0.0,
        seed=1,
    )
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=101)
    evaluation = _train_until(model, eval_env, threshold=475, budget=400_000, eval_freq=1_250)
    assert evaluation.best_mean_reward >= 475, (
        f"best evaluation {evaluation.best_mean_reward} after {model.num_timesteps} steps"
    )
    # The policy that scored 475 over 10 episodes is not held fixed: the workers update it until
    # the stop reaches them, and 20 more episodes of a good policy vary. Measured over 10 runs:
    # 455-500 over 20 episodes (mean 488). A policy that did not learn scores below 100.
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=20)
    assert mean >= 400, f"after stopping at {model.num_timesteps} steps the policy scores {mean} over 20 episodes"


@pytest.mark.slow
def test_pendulum_better_than_minus_400():
    """
    Continuous actions, with VecNormalize statistics shared by the workers and gSDE.
    Measured: 330k-360k steps, about 30 s on 2 cores (the zoo's Pendulum-v1 settings).
    """
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=8, seed=2), gamma=0.9)
    model = A3C(
        "MlpPolicy",
        env,
        n_workers=2,
        n_steps=8,
        gamma=0.9,
        gae_lambda=0.9,
        vf_coef=0.4,
        ent_coef=0.0,
        learning_rate=1e-3,
        use_sde=True,
        policy_kwargs=dict(log_std_init=-2, ortho_init=False),
        seed=2,
    )
    # The evaluation env takes the training statistics from EvalCallback (sync_envs_normalization).
    eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=102), training=False, norm_reward=False)
    evaluation = _train_until(model, eval_env, threshold=-400, budget=1_000_000, eval_freq=2_500)
    assert evaluation.best_mean_reward > -400, (
        f"best evaluation {evaluation.best_mean_reward} after {model.num_timesteps} steps"
    )
