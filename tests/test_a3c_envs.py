"""Every way to give an environment, every action space, image and dict observations, Atari as the zoo builds it."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from sb3_async import A3C
from sb3_async.common.envs import PerWorkerSubprocVecEnv


def test_env_id():
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=2, seed=0)
    model.learn(500)


def test_callable_env():
    model = A3C("MlpPolicy", lambda: gym.make("CartPole-v1"), n_workers=2, seed=0)
    assert model.n_envs == 1
    model.learn(500)


def test_vec_env_gives_its_num_envs_to_each_worker():
    env = make_vec_env("CartPole-v1", n_envs=3)
    model = A3C("MlpPolicy", env, n_workers=2, seed=0, n_steps=4)
    model.learn(1_000)
    # Each update is one worker's rollout over its own 3 environments.
    assert model.rollout_buffer.buffer_size == 4 and model.rollout_buffer.n_envs == 3


def test_per_worker_subproc_vec_env():
    """Each worker starts sub-processes of its own; the main process keeps the original ones."""
    # The main process's sub-processes with the default start method (forkserver where available).
    env = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=PerWorkerSubprocVecEnv)
    try:
        model = A3C("MlpPolicy", env, n_workers=2, seed=0)
        model.learn(1_000)
        assert model.num_timesteps >= 1_000
        # The main process's sub-processes still answer (no worker closed them).
        assert env.reset().shape == (2, 4)
    finally:
        env.close()


def test_subproc_vec_env_is_refused_with_a_clear_error():
    env = SubprocVecEnv([lambda: gym.make("CartPole-v1")] * 2, start_method="fork")
    try:
        with pytest.raises(ValueError, match="SubprocVecEnv"):
            A3C("MlpPolicy", env)
        model = A3C("MlpPolicy", "CartPole-v1")
        with pytest.raises(ValueError, match="SubprocVecEnv"):
            model.set_env(env)
    finally:
        env.close()


def test_workers_have_distinct_reproducible_seeds():
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=4, seed=123)
    seeds = model._worker_seeds()
    assert len(set(seeds)) == 4
    again = A3C("MlpPolicy", "CartPole-v1", n_workers=4, seed=123)
    assert again._worker_seeds() == seeds
    # A later learn call draws new seeds, reproducibly too.
    assert model._worker_seeds() == again._worker_seeds() != seeds
    assert A3C("MlpPolicy", "CartPole-v1", n_workers=4, seed=124)._worker_seeds() != seeds


class FirstObservation(gym.Wrapper):
    """Adds the first observation of every episode to Monitor's ``info["episode"]``."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.first = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "episode" in info:
            info["episode"]["first"] = self.first.tolist()
        return obs, reward, terminated, truncated, info


def test_workers_step_different_environments():
    model = A3C("MlpPolicy", lambda: FirstObservation(Monitor(gym.make("CartPole-v1"))), n_workers=2, seed=0)
    model.learn(1_000)
    firsts = [tuple(ep["first"]) for ep in model.ep_info_buffer]
    assert len(set(firsts)) == len(firsts), "no two episodes may start alike: the workers share no RNG stream"


@pytest.mark.parametrize(
    "env_class",
    [IdentityEnv, IdentityEnvBox, IdentityEnvMultiDiscrete, IdentityEnvMultiBinary],
    ids=["Discrete", "Box", "MultiDiscrete", "MultiBinary"],
)
def test_action_spaces(env_class):
    env = env_class(dim=2) if env_class is not IdentityEnvBox else env_class()
    model = A3C("MlpPolicy", env, n_workers=2, seed=0)
    model.learn(300)
    model.predict(env.observation_space.sample())


def test_gsde():
    model = A3C("MlpPolicy", "Pendulum-v1", n_workers=2, seed=0, use_sde=True, sde_sample_freq=4)
    model.learn(500)


def test_gsde_noise_of_a_rollout_is_drawn_from_the_parameters_just_pulled():
    from sb3_async.common.callbacks import WorkerRolloutCallback

    model = A3C("MlpPolicy", "Pendulum-v1", n_workers=1, use_sde=True)
    policy = model.policy

    class PullingWorker:
        def pull(self):  # the shared log_std moved since the last rollout
            with th.no_grad():
                policy.log_std += 1.0

    drawn_with = []
    reset_noise = policy.reset_noise
    policy.reset_noise = lambda n_envs=1: (drawn_with.append(policy.log_std.detach().clone()), reset_noise(n_envs))
    callback = WorkerRolloutCallback(PullingWorker(), n_rollout_steps=5)
    callback.init_callback(model)
    before = policy.log_std.detach().clone()
    callback.on_rollout_start()
    assert len(drawn_with) == 1 and th.equal(drawn_with[0], before + 1.0)


def test_cnn_policy_on_an_image_env():
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1)
    model = A3C("CnnPolicy", env, n_workers=2, seed=0, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)))
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(300)
    assert all(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))


def test_multi_input_policy():
    model = A3C("MultiInputPolicy", SimpleMultiObsEnv(random_start=True), n_workers=2, seed=0)
    model.learn(300)


def _zoo_atari_env(n_envs: int) -> VecTransposeImage:
    """What rl_zoo3 builds for Atari: VecTransposeImage(VecFrameStack(DummyVecEnv([...AtariWrapper...])))."""
    import ale_py

    gym.register_envs(ale_py)

    def make():
        return AtariWrapper(Monitor(gym.make("PongNoFrameskip-v4")))

    return VecTransposeImage(VecFrameStack(DummyVecEnv([make] * n_envs), n_stack=4))


def test_zoo_style_atari_vec_env_trains():
    env = _zoo_atari_env(n_envs=2)
    with pytest.raises(Exception):  # noqa: B017 - the point: it cannot be pickled, workers must inherit it
        pickle.dumps(env)
    model = A3C("CnnPolicy", env, n_workers=2, seed=0, n_steps=5)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(3_000)
    assert model.num_timesteps >= 3_000
    assert all(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs = env.reset()
    assert obs.shape == (2, 4, 84, 84)
    model.predict(obs, deterministic=True)


def test_vec_normalize_of_rewards_only():
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2), norm_obs=False)
    model = A3C("MlpPolicy", env, n_workers=2, seed=0)
    model.learn(1_000)
    assert env.ret_rms.count >= 1_000 and "obs_rms" not in vars(env)


def test_vec_normalize_statistics_are_shared_between_workers():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2), gamma=0.99)
    model = A3C("MlpPolicy", env, n_workers=2, seed=0)
    count_before = env.obs_rms.count
    model.learn(2_000)
    # One set of statistics saw every worker's observations (the resets included).
    assert env.obs_rms.count - count_before >= 2_000
    assert env.ret_rms.count - count_before >= 2_000
    # After learn they are plain statistics again: picklable, as VecNormalize.save needs.
    restored = pickle.loads(pickle.dumps(env.obs_rms))
    np.testing.assert_array_equal(restored.mean, env.obs_rms.mean)
    assert type(env.obs_rms).__name__ == "RunningMeanStd"
