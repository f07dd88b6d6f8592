"""What SB3's own test files check of an algorithm, checked of ours.

Written for sb3-async (not copied): each test names the SB3 test file whose contract it
checks, with A3C where SB3 uses A2C or PPO and the value-based methods where it uses DQN.
Where an asynchronous algorithm cannot give SB3's exact figure (two workers take twice the
steps of one process), the test states the bound that does hold and why.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    BaseCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa
from sb3_async.common.local_copy import LocalCopy

Q_ALGOS = [AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa]


# --- test_identity.py: the defaults learn the identity task ---------------------------------


# What SB3's fixed seed gives A2C is not what every seed gives it. Scores of 36 seeds
# (A2C: A2C("MlpPolicy", env, gamma=0.4, seed=s).learn(3500); A3C the same with n_workers=2):
# Discrete and MultiDiscrete: all 100 for both. MultiBinary: a policy right for 14, 15 or 16 of
# the 16 observations scores about 87.5, 93.75 or 100; A2C reached 90 at 72% of the seeds
# (lowest 86.8), A3C at 44% (lowest 83.2), so "the median of three seeds >= 90" failed about
# half the time. The defaults that did not learn (RMSpropTFLike, epsilon 1e-5) scored 6 to 81.
IDENTITY_THRESHOLDS = {IdentityEnv: 90, IdentityEnvMultiDiscrete: 90, IdentityEnvMultiBinary: 85}


@pytest.mark.slow
@pytest.mark.parametrize("env_class", list(IDENTITY_THRESHOLDS))
def test_identity_a3c_with_its_defaults(env_class):
    """SB3: A2C("MlpPolicy", env, gamma=0.4, seed=1).learn(3500) scores >= 90 of 100."""
    env = DummyVecEnv([lambda: env_class(4)])
    scores = []
    # Hogwild runs differ from run to run even with one seed; the median of three seeds is what holds.
    for seed in (1, 2, 3):
        model = A3C("MlpPolicy", env, gamma=0.4, seed=seed, n_workers=2).learn(3_500)
        scores.append(evaluate_policy(model, env, n_eval_episodes=20)[0])
    assert np.median(scores) >= IDENTITY_THRESHOLDS[env_class], scores
    assert np.shape(model.predict(env.reset())[0]) == (1, *env.action_space.shape)


@pytest.mark.slow
@pytest.mark.parametrize("algo", Q_ALGOS, ids=lambda algo: algo.__name__)
def test_identity_value_based_with_their_defaults(algo):
    """SB3: DQN("MlpPolicy", env, gamma=0.4, seed=1, learning_starts=0).learn(4000) scores >= 90."""
    env = DummyVecEnv([lambda: IdentityEnv(4)])
    scores = []
    for seed in (1, 2, 3):
        model = algo("MlpPolicy", env, gamma=0.4, seed=seed, n_workers=2).learn(4_000)
        scores.append(evaluate_policy(model, env, n_eval_episodes=20)[0])
    assert np.median(scores) >= 90, scores


# --- test_train_eval_mode.py: BatchNorm statistics, training and evaluation modes ------------


class BatchNormExtractor(BaseFeaturesExtractor):
    """A features extractor with BatchNorm: its running statistics must follow training."""

    def __init__(self, observation_space: gym.Space):
        super().__init__(observation_space, features_dim=8)
        self.net = nn.Sequential(nn.Linear(int(np.prod(observation_space.shape)), 8), nn.BatchNorm1d(8), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations.flatten(1))


def _batch_norms(model):
    network = getattr(model.policy, "q_net", model.policy)
    return [m for m in network.modules() if isinstance(m, nn.BatchNorm1d)]


@pytest.mark.parametrize("algo", [A3C, *Q_ALGOS], ids=lambda algo: algo.__name__)
def test_batch_norm_statistics_reach_the_shared_model_and_acting_is_in_eval_mode(algo):
    # One environment per worker: a BatchNorm layer in training mode fails on a batch of one.
    model = algo(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=1, seed=0),
        n_workers=2,
        seed=0,
        policy_kwargs=dict(features_extractor_class=BatchNormExtractor, net_arch=[]),
    )
    (norm, *_) = _batch_norms(model)
    assert norm.num_batches_tracked == 0 and th.equal(norm.running_mean, th.zeros(8))
    model.learn(2_000)
    # Every update of every worker is counted (updates are counted in the main process too). The
    # workers add to the shared buffers without a lock, as they update the parameters: two adds at
    # the same moment can lose one (CI saw 399 of 400 once), never create one.
    assert 0.9 * model._n_updates <= norm.num_batches_tracked <= model._n_updates
    assert model._n_updates > 0
    assert not th.allclose(norm.running_mean, th.zeros(8))
    # predict() is in evaluation mode: an observation's action does not depend on its batch.
    observations = np.stack([model.observation_space.sample() for _ in range(16)])
    batch = model.predict(observations, deterministic=True)[0]
    one = np.array([model.predict(obs[None], deterministic=True)[0][0] for obs in observations])
    np.testing.assert_array_equal(batch, one)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum 0.1", "cumulative average"])
def test_a_stale_worker_update_keeps_the_shared_running_variance_positive(momentum):
    policy_kwargs = dict(features_extractor_class=BatchNormExtractor)
    model = A3C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), seed=0, policy_kwargs=policy_kwargs)
    (shared_norm,) = _batch_norms(model)
    shared_norm.momentum = momentum
    worker = LocalCopy(model.policy)
    with th.no_grad():
        shared_norm.running_var.fill_(100.0)
        shared_norm.num_batches_tracked.fill_(10)
        worker.pull()
        (local_norm,) = [m for m in worker.module.modules() if isinstance(m, nn.BatchNorm1d)]
        # Three training batches of (nearly) constant observations: the worker's variance decays
        # towards 0 from the 100 it pulled, to 100 * decay.
        local_norm.train()
        for _ in range(3):
            local_norm(th.ones(4, 8) + 1e-3 * th.randn(4, 8))
        decay = 0.9**3 if momentum is not None else 10 / 13
        assert th.allclose(local_norm.running_var, th.full((8,), 100 * decay), atol=0.01)
        # Meanwhile other workers lowered the shared variance to 1.
        shared_norm.running_var.fill_(1.0)
        worker.push_buffers()
    # Adding the worker's change (100 * (decay - 1)) would make it negative, NaN in evaluation; its
    # three batches averaged into the shared 1 give the decay, plus the batches' small share.
    assert th.allclose(shared_norm.running_var, th.full((8,), decay), atol=0.01)
    assert shared_norm.num_batches_tracked == 13
    model.policy.set_training_mode(False)
    assert th.isfinite(shared_norm(th.randn(4, 8))).all()


# --- test_save_load.py: load with the policy_kwargs the model was built with ---------------


@pytest.mark.parametrize("algo", [A3C, *Q_ALGOS], ids=lambda algo: algo.__name__)
def test_load_with_the_policy_kwargs_it_was_built_with(algo, tmp_path):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    kwargs = dict(policy_kwargs=dict(net_arch=[32], features_extractor_kwargs=dict(features_dim=32)))
    model = algo("CnnPolicy", env, n_workers=2, seed=0, **kwargs)
    model.learn(200)
    observations = np.stack([env.observation_space.sample() for _ in range(8)])
    actions = model.predict(observations, deterministic=True)[0]
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=env, **kwargs)
    np.testing.assert_array_equal(actions, loaded.predict(observations, deterministic=True)[0])
    with pytest.raises(ValueError, match="policy kwargs"):
        algo.load(tmp_path / "model", policy_kwargs=dict(net_arch=[64]))
    loaded.learn(100)


# --- test_callbacks.py: budgets and stops -----------------------------------------------------


@pytest.mark.parametrize("n_envs, total", [(1, 64), (2, 1_000), (4, 1_000)])
def test_learn_ends_at_its_budget(n_envs, total):
    """SB3 ends at the first VecEnv step at or beyond the budget: so do the workers, all together."""
    model = A3C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), n_workers=2, n_steps=64, seed=0)
    model.learn(total)
    assert model.num_timesteps == total
    model.learn(500, reset_num_timesteps=False)
    assert model.num_timesteps == total + 500


def test_stop_training_on_max_episodes_stops_within_about_one_rollout_per_worker():
    """
    SB3: two 100-step Pendulum envs stop A2C after 200 steps (each env ran one episode). With two
    workers, each steps its own two envs, so their first episodes end after 2 x 2 x 100 steps in
    all; the stop reaches the workers within about one rollout (n_steps x n_envs) each.
    """
    env = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=100), n_envs=2, seed=0)
    model = A3C("MlpPolicy", env, n_workers=2, seed=0, policy_kwargs=dict(net_arch=[32]))
    callback = StopTrainingOnMaxEpisodes(max_episodes=1)
    model.learn(100_000, callback=callback)
    assert callback.n_episodes >= 2
    one_rollout_each = model.n_workers * model.n_steps * model.n_envs
    assert model.num_timesteps <= 2 * 2 * 100 + one_rollout_each + model.n_workers * model.n_envs


@pytest.mark.parametrize("algo", [A3C, AsyncNStepQ], ids=lambda algo: algo.__name__)
def test_eval_callback_stop_reaches_the_workers_within_about_one_rollout(algo):
    model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_workers=2, seed=0)
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1.0)  # met by the first evaluation
    evaluation = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1), eval_freq=16, n_eval_episodes=1, callback_on_new_best=stop
    )
    model.learn(100_000, callback=evaluation)
    assert evaluation.n_calls == 16  # SB3 evaluates at the 16th call, after 32 steps
    rollout = getattr(model, "n_steps", 5) * model.n_envs
    assert model.num_timesteps <= 32 + model.n_workers * (rollout + model.n_envs)


def test_eval_callback_syncs_the_vec_normalize_statistics_of_the_end_of_training():
    """SB3's test_eval_friendly_error: the evaluation at the last step sees the final statistics."""
    train_env = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    eval_env = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]), training=False, norm_reward=False)
    train_env.reset()
    original_obs = train_env.get_original_obs()
    model = A3C("MlpPolicy", train_env, n_steps=50, n_workers=2, seed=0)
    model.learn(100, callback=EvalCallback(eval_env, eval_freq=100, warn=False))
    assert model.num_timesteps == 100
    assert np.allclose(train_env.normalize_obs(original_obs), eval_env.normalize_obs(original_obs))
    with pytest.warns(Warning), pytest.raises(AssertionError):
        model.learn(100, callback=EvalCallback(gym.make("CartPole-v1"), eval_freq=100, warn=False))


class OneStepEpisodes(gym.Env):
    """Every step ends an episode: the workers' reports of episodes lag behind their steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), 1.0, True, False, {}


@pytest.mark.parametrize("algo", [A3C, AsyncNStepQ], ids=lambda algo: algo.__name__)
def test_callbacks_are_given_every_episode_the_workers_finished(algo):
    class CountEpisodes(BaseCallback):
        episodes = 0

        def _on_step(self) -> bool:
            self.episodes += int(np.sum(self.locals["dones"]))
            assert sum("episode" in info for info in self.locals["infos"]) == np.sum(self.locals["dones"])
            return True

    model = algo("MlpPolicy", make_vec_env(OneStepEpisodes, n_envs=3), n_workers=2, seed=0)
    callback = CountEpisodes()
    model.learn(3_000, callback=callback)
    assert callback.episodes == model._episode_num == model.num_timesteps
