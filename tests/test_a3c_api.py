"""A3C behaves like any SB3 algorithm: save/load, parameters, set_env, callbacks, logging."""

import csv
import glob
import io
import itertools
import os
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    ProgressBarCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from sb3_async import A3C


def _model(**kwargs) -> A3C:
    kwargs.setdefault("n_workers", 2)
    kwargs.setdefault("seed", 0)
    return A3C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **kwargs)


def test_training_updates_the_model_and_counts_global_steps():
    model = _model()
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(2_000)
    # Workers stop at their next step once T reaches the budget: at most one step each beyond it.
    assert 2_000 <= model.num_timesteps <= 2_000 + model.n_workers * model.n_envs
    assert model._n_updates > 0
    changed = [not th.equal(a, b) for a, b in zip(before, model.policy.parameters())]
    assert all(changed), "every shared parameter must have been updated by the workers"


def test_save_load_gives_identical_predictions(tmp_path):
    model = _model()
    model.learn(1_000)
    observations = np.stack([gym.make("CartPole-v1").observation_space.sample() for _ in range(32)])
    actions, _ = model.predict(observations, deterministic=True)
    values = model.policy.predict_values(th.as_tensor(observations)).detach()

    model.save(tmp_path / "a3c")
    loaded = A3C.load(tmp_path / "a3c")  # no env: prediction only
    assert loaded.env is None
    assert loaded.n_workers == model.n_workers
    loaded_actions, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    assert th.equal(values, loaded.policy.predict_values(th.as_tensor(observations)).detach())
    # The optimizer statistics round-trip too.
    for a, b in zip(model.policy.optimizer.state.values(), loaded.policy.optimizer.state.values()):
        assert th.equal(a["square_avg"], b["square_avg"])


def test_loaded_model_continues_training_with_shared_state(tmp_path):
    model = _model()
    model.learn(500)
    model.save(tmp_path / "a3c")
    loaded = A3C.load(tmp_path / "a3c", env=make_vec_env("CartPole-v1", n_envs=2))
    before = [p.detach().clone() for p in loaded.policy.parameters()]
    loaded.learn(1_000, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + 1_000
    assert all(not th.equal(a, b) for a, b in zip(before, loaded.policy.parameters()))
    # load_state_dict made the optimizer statistics private; learn put them back in shared memory.
    assert all(v.is_shared() for s in loaded.policy.optimizer.state.values() for v in s.values() if th.is_tensor(v))


def test_get_set_parameters_and_set_env():
    model = _model()
    other = _model(seed=1)
    assert not all(th.equal(a, b) for a, b in zip(model.policy.parameters(), other.policy.parameters()))
    other.set_parameters(model.get_parameters())
    assert all(th.equal(a, b) for a, b in zip(model.policy.parameters(), other.policy.parameters()))
    # Loaded in place: still the shared tensors the workers update.
    assert all(p.is_shared() for p in other.policy.parameters())
    other.set_env(make_vec_env("CartPole-v1", n_envs=2, seed=3))
    other.learn(500)


def test_reset_num_timesteps_false_continues_the_count():
    model = _model()
    model.learn(1_000)
    first = model.num_timesteps
    model.learn(1_000, reset_num_timesteps=False)
    assert model.num_timesteps >= first + 1_000
    model.learn(600)
    assert 600 <= model.num_timesteps < first


class _CountingCallback(BaseCallback):
    def __init__(self, stop_at: int | None = None):
        super().__init__()
        self.stop_at = stop_at
        self.timesteps: list[int] = []
        self.started = self.ended = 0
        self.episodes = 0
        self.workers: set[int] = set()

    def _on_training_start(self) -> None:
        self.started += 1

    def _on_training_end(self) -> None:
        self.ended += 1

    def _on_step(self) -> bool:
        self.timesteps.append(self.num_timesteps)
        self.episodes += int(np.sum(self.locals["dones"]))
        self.workers.update(info["episode"]["worker"] for info in self.locals["infos"] if "episode" in info)
        assert len(self.locals["infos"]) == self.training_env.num_envs
        return self.stop_at is None or self.num_timesteps < self.stop_at


def test_callbacks_see_num_timesteps_advance():
    model = _model()
    callback = _CountingCallback()
    model.learn(3_000, callback=callback)
    assert callback.started == callback.ended == 1
    steps = np.array(callback.timesteps)
    assert np.all(np.diff(steps) == model.n_envs), "one call per n_envs global steps"
    assert steps[-1] >= 3_000 - model.n_envs
    # Episodes reach the main process in batches (every 0.2 s per worker), after their steps:
    # the last batch may arrive when no callback step is left to carry it.
    assert 0 < callback.episodes <= model._episode_num
    # Each episode names the worker that played it.
    assert callback.workers <= {episode["worker"] for episode in model.ep_info_buffer} == set(range(model.n_workers))


def test_callback_returning_false_stops_all_workers_promptly():
    model = _model()
    callback = _CountingCallback(stop_at=1_000)
    model.learn(1_000_000, callback=callback)
    assert callback.timesteps[-1] == 1_000
    # The workers were told at once; they may each have taken a few more steps meanwhile.
    assert model.num_timesteps < 20_000


def test_a_model_saved_while_workers_write_to_it_loads():
    # Workers write to the shared tensors while a callback saves: a tensor that changed while
    # torch.save wrote it used to be stored with a checksum that did not match its bytes, and the
    # file would not load (a Pong checkpoint; 6 of 10 saves here). A thread writing to every
    # shared tensor stands in for the workers: it writes far more often than they do.
    model = _model(policy_kwargs=dict(net_arch=[1024, 1024], ortho_init=False))  # QR of big matrices is slow
    model._share_memory()
    for param in model.policy.parameters():
        param.grad = th.ones_like(param)
    model.policy.optimizer.step()  # the optimizer has statistics to save
    tensors = [*model.policy.parameters()]
    tensors += [value for state in model.policy.optimizer.state.values() for value in state.values() if value.dim()]
    stop = threading.Event()

    def write() -> None:
        with th.no_grad():
            while not stop.is_set():
                for tensor in tensors:
                    tensor.mul_(1.0000001)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        files = []
        for _ in range(10):
            files.append(io.BytesIO())
            model.save(files[-1])
    finally:
        stop.set()
        writer.join()
    for file in files:
        file.seek(0)
        A3C.load(file)


def test_eval_and_checkpoint_callbacks(tmp_path):
    model = _model()
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=5)
    eval_callback = EvalCallback(eval_env, eval_freq=500, n_eval_episodes=2, log_path=str(tmp_path / "eval"))
    checkpoint = CheckpointCallback(save_freq=500, save_path=str(tmp_path / "ckpt"), name_prefix="a3c")
    model.learn(2_000, callback=CallbackList([eval_callback, checkpoint]))
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")
    # eval_freq counts calls, each of n_envs steps, as with A2C.
    np.testing.assert_array_equal(evaluations["timesteps"], [1_000, 2_000])
    saved = sorted(glob.glob(str(tmp_path / "ckpt" / "a3c_*_steps.zip")))
    assert [os.path.basename(p) for p in saved] == ["a3c_1000_steps.zip", "a3c_2000_steps.zip"]
    A3C.load(saved[0]).predict(eval_env.reset())


def test_stop_training_on_reward_threshold():
    model = _model()
    stop = StopTrainingOnRewardThreshold(reward_threshold=0.0)  # met by the first evaluation
    eval_env = make_vec_env("CartPole-v1", n_envs=1)
    eval_callback = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=250, n_eval_episodes=1)
    model.learn(1_000_000, callback=eval_callback)
    assert model.num_timesteps < 20_000


def test_stop_training_on_max_episodes():
    model = _model()
    model.learn(1_000_000, callback=StopTrainingOnMaxEpisodes(max_episodes=10))
    assert 20 <= model._episode_num < 200


def test_progress_bar(capsys):
    model = _model()
    model.learn(1_000, progress_bar=True)
    model.learn(500, callback=ProgressBarCallback())


def test_logging_to_stdout_csv_and_tensorboard(tmp_path, capsys):
    model = _model(verbose=1, tensorboard_log=str(tmp_path / "tb"))
    model.learn(3_000, log_interval=50, tb_log_name="run")
    out = capsys.readouterr().out
    keys = ["ep_rew_mean", "ep_len_mean", "fps", "total_timesteps"]
    keys += ["policy_loss", "value_loss", "entropy_loss", "learning_rate", "n_updates"]
    for key in keys:
        assert key in out, key
    assert glob.glob(str(tmp_path / "tb" / "run_1" / "events.out.tfevents.*"))

    model = _model()
    model.set_logger(configure(str(tmp_path / "csv"), ["csv"]))
    model.learn(3_000, log_interval=50)
    with open(tmp_path / "csv" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows
    keys = ["rollout/ep_rew_mean", "time/fps", "train/policy_loss", "train/value_loss"]
    keys += ["train/entropy_loss", "train/learning_rate", "train/n_updates"]
    for key in keys:
        assert key in rows[-1], key
    n_updates = [int(row["train/n_updates"]) for row in rows]
    # Updates of all workers together; one dump as the count passes each multiple of 50
    # (reports arrive in batches, so the count at a dump may be past the multiple).
    multiples = [n // 50 for n in n_updates]
    assert multiples[0] >= 1 and all(a < b for a, b in itertools.pairwise(multiples))


def test_learning_rate_schedule_follows_global_progress(tmp_path):
    seen = []

    def schedule(progress_remaining: float) -> float:
        seen.append(progress_remaining)
        return 1e-3 * progress_remaining

    model = _model(learning_rate=schedule)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(4_000, log_interval=20)
    with open(tmp_path / "progress.csv") as f:
        rates = [float(row["train/learning_rate"]) for row in csv.DictReader(f) if row["train/learning_rate"]]
    assert rates[0] > rates[-1], "the learning rate decays as the global step counter advances"
    assert rates[-1] < 2e-4


def test_evaluate_policy_after_training():
    model = _model()
    model.learn(1_000)
    mean, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1), n_eval_episodes=2)
    assert mean > 0


@pytest.mark.parametrize("n_workers", [1, 3])
def test_number_of_workers(n_workers):
    model = _model(n_workers=n_workers)
    model.learn(1_000)
    assert model.num_timesteps >= 1_000
