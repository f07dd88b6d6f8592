"""The asynchronous value-based methods: target network, exploration, SB3 API, environments."""

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv

from sb3_async import AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa
from sb3_async.common.local_copy import LocalCopy
from sb3_async.q_learning.base import Rollout

ALGOS = [AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa]


def _model(algo, n_envs: int = 2, **kwargs):
    kwargs.setdefault("n_workers", 2)
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("exploration_steps", 1_000)
    return algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), **kwargs)


@pytest.mark.parametrize("algo", ALGOS)
def test_target_network_is_updated_at_the_interval(algo):
    model = _model(algo, target_update_interval=1_000)
    model.learn(10_500)
    # Once per multiple of 1,000 global steps that T passed, by exactly one worker, after the
    # update that passed it (none follows the last steps, which end the budget mid-rollout).
    assert model.num_timesteps == 10_500
    assert model.n_target_updates == 10
    model.learn(5_000, reset_num_timesteps=False)
    assert model.n_target_updates == 15


@pytest.mark.parametrize("algo", ALGOS)
def test_target_network_changes_nowhere_else(algo):
    model = _model(algo, target_update_interval=1_000_000)
    target = [p.detach().clone() for p in model.q_net_target.parameters()]
    online = [p.detach().clone() for p in model.q_net.parameters()]
    model.learn(5_000)
    assert model.n_target_updates == 0
    # The online network trained; the target network (read by the workers from shared memory) did not move.
    assert all(not th.equal(a, b) for a, b in zip(online, model.q_net.parameters()))
    assert all(th.equal(a, b) for a, b in zip(target, model.q_net_target.parameters()))


def test_target_update_copies_the_online_network():
    model = _model(AsyncNStepQ, target_update_interval=500, n_workers=1, n_envs=1)
    model.learn(500)  # one worker, one env: the update is at T = 500, its last step
    assert model.n_target_updates == 1
    # The copy follows the update of the rollout in which T passed 500 (Algorithm S2's order).
    assert all(th.equal(a, b) for a, b in zip(model.q_net.parameters(), model.q_net_target.parameters()))


def test_workers_read_the_shared_target_network():
    model = _model(AsyncOneStepQ)
    assert [(c.source, c.target) for c in model._periodic_copies()] == [("q_net", "q_net_target")]
    local = LocalCopy(model.policy, keep_shared=[c.target for c in model._periodic_copies()])
    assert local.module.q_net_target is model.policy.q_net_target
    assert local.module.q_net is not model.policy.q_net
    assert all(p.is_shared() for p in model.policy.q_net_target.parameters())


def test_exploration_draws_are_reproducible_from_the_seed():
    seeds = _model(AsyncOneStepQ, n_workers=8, seed=7)._worker_seeds()
    draws = _model(AsyncOneStepQ, n_workers=8, seed=7)._draw_final_eps(seeds)
    again = _model(AsyncOneStepQ, n_workers=8, seed=7)._draw_final_eps(seeds)
    assert draws == again
    assert set(draws) <= {0.1, 0.01, 0.5}
    other = _model(AsyncOneStepQ, n_workers=8, seed=8)
    assert other._draw_final_eps(other._worker_seeds()) != draws


def test_exploration_draws_follow_the_given_probabilities():
    model = _model(AsyncOneStepQ)
    draws = collections.Counter(model._draw_final_eps(list(range(6_000))))
    # The paper's {0.1: 0.4, 0.01: 0.3, 0.5: 0.3}; 6,000 draws put each within 0.02.
    assert draws[0.1] / 6_000 == pytest.approx(0.4, abs=0.02)
    assert draws[0.01] / 6_000 == pytest.approx(0.3, abs=0.02)
    assert draws[0.5] / 6_000 == pytest.approx(0.3, abs=0.02)
    custom = _model(AsyncOneStepQ, exploration_final_eps=[0.2, 0.05], exploration_final_eps_probs=[1.0, 0.0])
    assert set(custom._draw_final_eps(list(range(50)))) == {0.2}
    fixed = _model(AsyncOneStepQ, exploration_final_eps=0.05)
    assert set(fixed._draw_final_eps(list(range(50)))) == {0.05}


def test_exploration_is_annealed_over_global_steps_and_logged(tmp_path, capsys):
    model = _model(
        AsyncNStepQ, exploration_steps=4_000, exploration_final_eps=0.1, exploration_final_eps_probs=None, verbose=1
    )
    assert model._epsilon(0.1, 0) == 1.0
    assert model._epsilon(0.1, 2_000) == pytest.approx(0.55)
    assert model._epsilon(0.1, 10_000) == pytest.approx(0.1)
    model.learn(6_000, log_interval=100)
    out = capsys.readouterr().out
    assert "Final exploration rate of each worker: [0.1, 0.1]" in out
    assert "exploration_rate" in out and "n_target_updates" in out and "loss" in out
    assert model.worker_final_eps == [0.1, 0.1]
    assert model.exploration_rate == pytest.approx(0.1)


def test_each_worker_keeps_its_final_epsilon_over_learn_calls_and_a_reload(tmp_path):
    """The paper's threads keep their final ε for the whole run: a run resumed in chunks too."""
    model = _model(AsyncOneStepQ, exploration_final_eps=[0.1, 0.01, 0.5], exploration_final_eps_probs=[0.4, 0.3, 0.3])
    model.learn(1_000)
    # Seed 0's next learn() would draw [0.1, 0.1] for the workers: a kept draw stays [0.5, 0.5].
    model.worker_final_eps = [0.5, 0.5]
    model.learn(2_000, reset_num_timesteps=False)
    assert model.worker_final_eps == [0.5, 0.5]
    assert model.exploration_rate == pytest.approx(0.5)
    model.save(tmp_path / "model")
    loaded = AsyncOneStepQ.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
    loaded.learn(1_000, reset_num_timesteps=False)
    assert loaded.worker_final_eps == [0.5, 0.5]
    # Other choices than those drawn from: drawn again.
    loaded.exploration_final_eps, loaded.exploration_final_eps_probs = (0.2,), (1.0,)
    loaded.learn(500)
    assert loaded.worker_final_eps == [0.2, 0.2]


@pytest.mark.parametrize("algo", ALGOS)
def test_save_load_gives_identical_predictions(algo, tmp_path):
    model = _model(algo)
    model.learn(2_000)
    observations = np.stack([gym.make("CartPole-v1").observation_space.sample() for _ in range(64)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model")
    assert loaded.replay_buffer is None
    np.testing.assert_array_equal(actions, loaded.predict(observations, deterministic=True)[0])
    for a, b in zip(model.q_net_target.parameters(), loaded.q_net_target.parameters()):
        assert th.equal(a, b)
    assert loaded.worker_final_eps == model.worker_final_eps
    loaded.set_env(make_vec_env("CartPole-v1", n_envs=2))
    loaded.learn(1_000)


def test_no_replay_buffer_is_allocated():
    model = _model(AsyncOneStepQ)
    assert model.replay_buffer is None
    model.learn(500)
    assert model.replay_buffer is None


@pytest.mark.parametrize("algo", ALGOS)
def test_multi_env_and_single_env(algo):
    for n_envs in (1, 4):
        model = _model(algo, n_envs=n_envs)
        model.learn(1_000)
        assert model.num_timesteps >= 1_000


@pytest.mark.parametrize("algo", ALGOS)
def test_cnn_policy_smoke(algo):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    model = algo("CnnPolicy", env, n_workers=2, seed=0, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)))
    before = [p.detach().clone() for p in model.q_net.parameters()]
    model.learn(300)
    assert all(not th.equal(a, b) for a, b in zip(before, model.q_net.parameters()))


def _rollout(rewards, dones, terminated=None, n_actions=2, epsilon=0.0):
    """A rollout of CartPole-shaped observations whose next observations encode (step, env) in their first entry."""
    rewards = np.array(rewards, dtype=np.float32)
    length, n_envs = rewards.shape
    dones = np.array(dones)
    terminated = dones.copy() if terminated is None else np.array(terminated)
    observations = [np.zeros((n_envs, 4), dtype=np.float32) for _ in range(length)]
    next_observations = [np.array([[t * n_envs + e, 0, 0, 0] for e in range(n_envs)], dtype=np.float32) for t in range(length)]
    actions = np.zeros((length, n_envs), dtype=np.int64)
    return Rollout(observations, actions, rewards, dones, terminated, next_observations, next_observations[-1], epsilon)


class _TableQ(th.nn.Module):
    """Q(s', ·) looked up by the row index stored in the observation's first entry."""

    def __init__(self, table):
        super().__init__()
        self.table = th.as_tensor(table, dtype=th.float32)

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def test_n_step_returns():
    model = _model(AsyncNStepQ, gamma=0.5)
    # Next-state values by flattened (step, env): the last states are worth 8; env 1 terminated at step 0.
    model.q_net_target = _TableQ([[0, 0], [0, 0], [0, 0], [0, 0], [8, 1], [8, 2]])
    rollout = _rollout([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], [[False, True], [False, False], [False, False]])
    expected = th.tensor(
        [1 + 0.5 * (1 + 0.5 * (1 + 0.5 * 8)), 1.0, 1 + 0.5 * (1 + 0.5 * 8), 1 + 0.5 * (1 + 0.5 * 8), 5.0, 5.0]
    )
    assert th.allclose(model._targets(rollout), expected)
    # A time-limit truncation bootstraps from the terminal observation's value (row 1: worth 3 here).
    model.q_net_target = _TableQ([[0, 0], [3, 0], [0, 0], [0, 0], [8, 1], [8, 2]])
    truncated = _rollout(
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], [[False, True], [False, False], [False, False]], np.zeros((3, 2), bool)
    )
    assert model._targets(truncated)[1] == pytest.approx(1 + 0.5 * 3)


def test_one_step_targets_and_sarsa_next_action():
    q = _model(AsyncOneStepQ, gamma=0.5)
    sarsa = _model(AsyncOneStepSarsa, gamma=0.5)
    table = _TableQ([[1.0, 3.0], [2.0, -1.0]])
    q.q_net_target = sarsa.q_net_target = table
    rollout = _rollout([[1.0], [2.0]], [[False], [True]])
    # max_a' Q(s', a') = 3 after step 0; step 1 terminated: no bootstrap.
    assert th.allclose(q._targets(rollout), th.tensor([1 + 0.5 * 3, 2.0]))
    # Sarsa: the action taken next. After step 0 it is step 1's action (0): Q = 1.
    rollout.actions[:] = [[1], [0]]
    assert th.allclose(sarsa._targets(rollout), th.tensor([1 + 0.5 * 1.0, 2.0]))
    # The action chosen for the rollout's last state is the one the next rollout starts with.
    chosen = sarsa._chosen_actions
    assert chosen is not None and np.array_equal(sarsa._first_actions(rollout.last_observations, 0.0), chosen)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(target_update_interval=0), ValueError, "target_update_interval must be >= 1"),
        (dict(exploration_final_eps=1.5), ValueError, "exploration_final_eps must be in"),
        (dict(exploration_final_eps=[0.1, 0.2], exploration_final_eps_probs=[1.0]), ValueError, "one probability per value"),
        (dict(exploration_final_eps=[0.1, 0.2], exploration_final_eps_probs=[0.6, 0.6]), ValueError, "must sum to 1"),
        (dict(exploration_final_eps=0.1, exploration_final_eps_probs=[1.0]), ValueError, "must be None when exploration"),
        (dict(exploration_final_eps="0.1"), TypeError, "exploration_final_eps must be a number or a non-empty sequence"),
        (dict(exploration_steps=-1), ValueError, "exploration_steps must be >= 0"),
        (dict(loss="l1"), ValueError, "loss must be one of"),
        (dict(loss=["huber"]), ValueError, "loss must be one of"),
        (dict(exploration_final_eps=[0.1, 0.2], exploration_final_eps_probs="ab"), TypeError, "must be a sequence of numbers"),
        (dict(n_workers=0), ValueError, "n_workers must be >= 1"),
        (dict(async_update_freq=0), ValueError, "async_update_freq must be >= 1"),
    ],
)
def test_invalid_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        AsyncOneStepQ("MlpPolicy", "CartPole-v1", **kwargs)


def test_final_eps_probabilities_default_to_the_papers_for_its_values_and_uniform_otherwise():
    def probs(**kwargs):
        return AsyncOneStepQ("MlpPolicy", "CartPole-v1", n_workers=1, **kwargs).exploration_final_eps_probs

    assert probs() == (0.4, 0.3, 0.3)
    assert probs(exploration_final_eps=[0.1, 0.05]) == (0.5, 0.5)
    assert probs(exploration_final_eps=(0.2, 0.3, 0.4)) == pytest.approx((1 / 3,) * 3)
    # NumPy values, as a config or a sampler may give them.
    assert probs(exploration_final_eps=np.float32(0.05)) == (1.0,)
    assert probs(exploration_final_eps=np.array([0.1, 0.2]), exploration_final_eps_probs=np.array([0.25, 0.75])) == (
        0.25,
        0.75,
    )


def test_invalid_n_steps_and_action_space():
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        AsyncNStepQ("MlpPolicy", "CartPole-v1", n_steps=0)
    with pytest.raises(AssertionError, match="only supports"):
        AsyncNStepQ("MlpPolicy", "Pendulum-v1")
