"""Bad inputs and misuse get a clear error that says what is wrong (issue 11's sweep)."""

import struct
import threading
import zipfile

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ
from sb3_async.common.cpus import MAX_WORKERS_PER_CPU, usable_cpus


def test_far_more_workers_than_cpus_is_refused_and_more_than_cpus_warned():
    cpus = usable_cpus()
    with pytest.raises(ValueError, match=rf"n_workers={MAX_WORKERS_PER_CPU * cpus + 1} is more than"):
        A3C("MlpPolicy", "CartPole-v1", n_workers=MAX_WORKERS_PER_CPU * cpus + 1)
    with pytest.raises(ValueError, match="n_workers=10000"):
        AsyncNStepQ("MlpPolicy", "CartPole-v1", n_workers=10_000)
    with pytest.warns(UserWarning, match="more than the .* usable CPUs"):
        A3C("MlpPolicy", "CartPole-v1", n_workers=cpus + 1)


class _StopWhenAsked(BaseCallback):
    def __init__(self, started: threading.Event, stop: threading.Event):
        super().__init__()
        self.started, self.stop = started, stop

    def _on_step(self) -> bool:
        self.started.set()
        return not self.stop.is_set()


@pytest.mark.parametrize("algo", [A3C, AsyncNStepQ], ids=lambda algo: algo.__name__)
def test_a_second_learn_on_the_same_model_at_once_is_refused(algo):
    model = algo("MlpPolicy", "CartPole-v1", n_workers=2, seed=0)
    started, stop = threading.Event(), threading.Event()
    errors = []

    def first():
        try:
            model.learn(10_000_000, callback=_StopWhenAsked(started, stop))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(RuntimeError, match="learn\\(\\) is already running on this"):
            model.learn(1_000)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    model.learn(500)  # and once the first returned, learn works again


def test_value_based_methods_refuse_a_tuple_observation_space_at_construction():
    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Tuple((env.observation_space, env.observation_space))
    with pytest.raises(NotImplementedError, match="Tuple"):
        AsyncOneStepQ("MlpPolicy", env)


@pytest.mark.parametrize(
    "other, ours",
    [(DQN, AsyncNStepQ), (A2C, A3C)],
    ids=["DQN-file-into-AsyncNStepQ", "A2C-file-into-A3C"],
)
def test_loading_another_algorithms_file_says_so(other, ours, tmp_path):
    other("MlpPolicy", "CartPole-v1").save(tmp_path / "model")
    with pytest.raises(ValueError, match="was not saved by an sb3_async algorithm"):
        ours.load(tmp_path / "model")


def test_loading_a_file_of_another_of_our_algorithms_names_the_right_class(tmp_path):
    AsyncOneStepQ("MlpPolicy", "CartPole-v1", n_workers=2).save(tmp_path / "model")
    with pytest.raises(
        ValueError, match=r"holds a model of AsyncOneStepQ, not of AsyncNStepQ: load it with AsyncOneStepQ\.load"
    ):
        AsyncNStepQ.load(tmp_path / "model")
    AsyncOneStepQ.load(tmp_path / "model")


def test_a_damaged_file_says_it_is_damaged(tmp_path):
    A3C("MlpPolicy", "CartPole-v1", n_workers=2).save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["policy.pth"] = members["policy.pth"][: len(members["policy.pth"]) // 2]
    with zipfile.ZipFile(tmp_path / "damaged.zip", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match="is damaged and cannot be loaded"):
        A3C.load(tmp_path / "damaged.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="is not a model saved by SB3's save"):
        A3C.load(tmp_path / "junk.zip")


def test_a_file_whose_bytes_changed_names_the_damaged_entry(tmp_path):
    A3C("MlpPolicy", "CartPole-v1", n_workers=2).save(tmp_path / "model.zip")
    content = bytearray((tmp_path / "model.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        entry = archive.getinfo("policy.optimizer.pth")
    # SB3 stores entries uncompressed: one byte in the middle of this entry's bytes.
    name_length, extra_length = struct.unpack("<HH", content[entry.header_offset + 26 : entry.header_offset + 30])
    content[entry.header_offset + 30 + name_length + extra_length + entry.compress_size // 2] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"damaged and cannot be loaded: its entry 'policy\.optimizer\.pth' does not match"):
        A3C.load(tmp_path / "damaged.zip")


def test_exploration_follows_a_fraction_of_the_budget_by_default_and_goes_on_when_resumed():
    model = AsyncNStepQ("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_workers=2, seed=0, exploration_final_eps=0.05)
    assert model.exploration_fraction == 0.1 and model.exploration_steps is None
    model.learn(2_000)
    # DQN's schedule: from 1 to the final value over the first 10% of the budget.
    assert model._epsilon(0.05, 0) == 1.0
    assert model._epsilon(0.05, 100) == pytest.approx(1.0 - 0.5 * 0.95)
    assert model._epsilon(0.05, 1_500) == pytest.approx(0.05)
    assert model.exploration_rate == pytest.approx(0.05)
    # Resumed, it goes on at the final value, as DQN does (the schedule spans the whole budget from T = 0).
    model.learn(2_000, reset_num_timesteps=False)
    assert model._epsilon(0.05, 2_000) == pytest.approx(0.05)
    assert model._epsilon(0.05, 200) == pytest.approx(1.0 - 0.5 * 0.95)
    paper = AsyncNStepQ("MlpPolicy", "CartPole-v1", n_workers=2, exploration_steps=1_000)
    assert paper.exploration_fraction is None
    with pytest.raises(ValueError, match="give one of them"):
        AsyncNStepQ("MlpPolicy", "CartPole-v1", exploration_steps=1_000, exploration_fraction=0.2)


def test_observations_of_nan_are_caught_in_the_rollout_not_in_the_network():
    from sb3_async.common.worker import NonFiniteError, check_finite_step

    check_finite_step(np.zeros((2, 3)), np.zeros(2))
    check_finite_step(np.zeros((2, 84, 84), dtype=np.uint8), np.zeros(2))
    with pytest.raises(NonFiniteError, match=r"observations \(environments \[1\]"):
        check_finite_step({"a": np.array([[0.0], [np.inf]])}, np.zeros(2))


@pytest.mark.parametrize(
    "algo, kwargs, error, message",
    [
        (A3C, dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (A3C, dict(n_workers="x"), TypeError, "n_workers must be an integer"),
        (A3C, dict(gamma=2.0), ValueError, "gamma must be in"),
        (A3C, dict(n_step=3), ValueError, "load\\(\\) got the keyword argument 'n_step', which A3C has no setting of"),
        (A3C, dict(rms_prop_eps=0.1), ValueError, "rms_prop_eps=0.1 cannot be given to load"),
        (AsyncOneStepQ, dict(async_update_freq=0), ValueError, "async_update_freq must be >= 1"),
        (AsyncOneStepQ, dict(loss="l1"), ValueError, "loss must be one of"),
        (AsyncOneStepQ, dict(exploration_final_eps=[0.1], exploration_final_eps_probs=[0.5, 0.5]), ValueError, "one prob"),
    ],
)
def test_load_checks_the_settings_it_is_given_as_the_constructor_does(algo, kwargs, error, message, tmp_path):
    # SB3 sets load's keyword arguments on the model unchecked: n_steps=0 made learn() hang.
    algo("MlpPolicy", "CartPole-v1", n_workers=1).save(tmp_path / "m")
    env = make_vec_env("CartPole-v1", n_envs=1)
    with pytest.raises(error, match=message):
        algo.load(tmp_path / "m", env=env, **kwargs)
    if "n_step" not in kwargs:  # custom_objects may name entries the file lacks: SB3 uses those it has
        with pytest.raises(error, match=message):
            algo.load(tmp_path / "m", env=env, custom_objects=kwargs)


def test_settings_given_to_load_are_the_ones_learn_uses(tmp_path):
    AsyncNStepQ("MlpPolicy", "CartPole-v1", n_workers=1).save(tmp_path / "q")
    model = AsyncNStepQ.load(
        tmp_path / "q", env=make_vec_env("CartPole-v1", n_envs=1), n_steps=20, exploration_final_eps=[0.1, 0.05]
    )
    assert model.rollout_length == 20
    assert (model.exploration_final_eps, model.exploration_final_eps_probs) == ((0.1, 0.05), (0.5, 0.5))
    model.learn(400)
    assert model._n_updates == 400 // 20
    # rl_zoo3's enjoy loads every algorithm with these: a zero learning rate and entries the file lacks.
    AsyncNStepQ.load(tmp_path / "q", custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": 0.0})
    with_steps = AsyncNStepQ.load(tmp_path / "q", exploration_steps=1000)
    assert (with_steps.exploration_steps, with_steps.exploration_fraction) == (1000, None)


@pytest.mark.parametrize("algo", [A3C, AsyncNStepQ], ids=lambda algo: algo.__name__)
def test_set_random_seed_makes_the_workers_repeat_themselves(algo):
    initial = algo("MlpPolicy", "CartPole-v1", n_workers=1, seed=1).policy.state_dict()

    def train() -> list:
        model = algo("MlpPolicy", "CartPole-v1", n_workers=1)
        model.set_random_seed(5)
        model.policy.load_state_dict(initial)
        model.learn(1000)
        return [p.detach().clone() for p in model.policy.parameters()]

    first, second = train(), train()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_the_value_based_methods_say_they_have_no_replay_buffer(tmp_path):
    model = AsyncOneStepQ("MlpPolicy", "CartPole-v1", n_workers=1)
    with pytest.raises(ValueError, match="AsyncOneStepQ has no replay buffer to save"):
        model.save_replay_buffer(tmp_path / "buffer")
    with pytest.raises(ValueError, match="AsyncOneStepQ has no replay buffer to load"):
        model.load_replay_buffer(tmp_path / "buffer")
