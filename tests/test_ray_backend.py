"""backend="ray": the same algorithms with workers as Ray actors, on a two-node Ray cluster on this machine.

One cluster (``ray.cluster_utils.Cluster``, two nodes of one CPU each) serves the module; each test
connects to it as a user connects to an existing cluster (``ray.init(address=...)``), which
sb3-async must use and never shut down.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa, WorkerError
from tests.conftest import live_processes

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False))
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _alive_actors(wait: float = 10.0) -> list[int]:
    """Pids of our worker actors' processes still alive after ``wait`` seconds (Ray names the process after the class)."""
    deadline = time.monotonic() + wait
    while _actor_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    return _actor_processes()


def _actor_processes() -> list[int]:
    return [pid for pid, _, command in live_processes() if command.startswith(b"ray::WorkerActorBody")]


@pytest.mark.slow
def test_a3c_learns_cartpole_with_workers_on_both_nodes(cluster):
    nodes = []

    class RecordNodes(BaseCallback):
        def _on_step(self):
            if not nodes:
                nodes.extend(ray.get([actor.node_id.remote() for actor in self.model._worker_group._actors]))
            return True

    model = A3C(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=8, seed=1),
        n_workers=2,
        backend="ray",
        learning_rate=1.5e-3,
        seed=1,
    )
    evaluation = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1, seed=101),
        callback_on_new_best=StopTrainingOnRewardThreshold(475),
        eval_freq=1_250,
        n_eval_episodes=10,
    )
    model.learn(400_000, callback=[RecordNodes(), evaluation])
    assert evaluation.best_mean_reward >= 475, f"best {evaluation.best_mean_reward} after {model.num_timesteps} steps"
    assert len(set(nodes)) == 2, "one worker on each node"
    assert {episode["worker"] for episode in model.ep_info_buffer} == {0, 1}, "each episode names its worker"
    # The cluster the user connected to is still there, and nothing of ours runs on it.
    assert ray.is_initialized() and not _alive_actors()


@pytest.mark.parametrize("algo", [AsyncNStepQ, AsyncOneStepQ, AsyncOneStepSarsa], ids=lambda algo: algo.__name__)
def test_value_based_methods_run_and_load_without_ray(cluster, algo, tmp_path):
    model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_workers=2, backend="ray", seed=0)
    model.learn(3_000, log_interval=10)
    assert model.num_timesteps == 3_000
    assert model._n_updates > 0 and model.n_target_updates == 0
    assert not _alive_actors()
    model.save(tmp_path / "model")
    observations = np.stack([gym.make("CartPole-v1").observation_space.sample() for _ in range(16)])
    np.save(tmp_path / "observations.npy", observations)
    actions = model.predict(observations, deterministic=True)[0]
    # In a process where ray cannot be imported: the model loads and predicts the same actions.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["ray"] = None
        import numpy as np
        from sb3_async import {algo.__name__}
        model = {algo.__name__}.load(r"{tmp_path / "model"}")
        print(list(model.predict(np.load(r"{tmp_path / "observations.npy"}"), deterministic=True)[0]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(list(actions))


def test_target_updates_and_logging_follow_the_learner(cluster, capsys):
    model = AsyncNStepQ(
        "MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_workers=2, backend="ray", target_update_interval=1_000, verbose=1
    )
    model.learn(5_500, log_interval=50)
    assert model.n_target_updates == 5
    out = capsys.readouterr().out
    assert "staleness" in out and "exploration_rate" in out and "n_target_updates" in out


def test_vec_normalize_statistics_reach_the_main_process(cluster):
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = A3C("MlpPolicy", env, n_workers=2, backend="ray", seed=0)
    model.learn(2_000)
    # Both workers' observations were merged into the main process's statistics.
    assert env.obs_rms.count >= 2_000 * 0.9
    assert not np.allclose(env.obs_rms.mean, 0.0)


class _Unpicklable(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.lock = threading.Lock()


def test_an_env_that_cannot_be_sent_says_what_to_pass_instead(cluster):
    model = A3C("MlpPolicy", make_vec_env(_Unpicklable, n_envs=1), n_workers=2, backend="ray")
    with pytest.raises(ValueError, match="pass the environment as an env id or as a callable"):
        model.learn(1_000)
    # An env id or a callable works, even when what it builds cannot be pickled: each actor builds its own.
    A3C("MlpPolicy", "CartPole-v1", n_workers=2, backend="ray").learn(500)
    A3C("MlpPolicy", _Unpicklable, n_workers=2, backend="ray").learn(500)
    # Something else that cannot be sent is named: a schedule holding a lock.
    lock = threading.Lock()
    schedule = lambda progress: 7e-4 if lock else 0.0  # noqa: E731
    with pytest.raises(ValueError, match="its attribute 'learning_rate' cannot be pickled"):
        A3C("MlpPolicy", "CartPole-v1", n_workers=2, backend="ray", learning_rate=schedule).learn(500)


class _CrashingEnv(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 100:
            raise RuntimeError("the environment broke down on purpose")
        return super().step(action)


def test_worker_errors_and_killed_actors_are_raised_and_nothing_is_left(cluster):
    model = A3C("MlpPolicy", _CrashingEnv, n_workers=2, backend="ray")
    with pytest.raises(WorkerError, match=r"(?s)Worker \d failed:.*broke down on purpose"):
        model.learn(100_000)
    assert not _alive_actors()

    class KillOne(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == 1_000:
                ray.kill(self.model._worker_group._actors[0])
            return True

    model = A3C("MlpPolicy", "CartPole-v1", n_workers=2, backend="ray")
    with pytest.raises(WorkerError, match="Worker 0 failed: its Ray actor died"):
        model.learn(1_000_000, callback=KillOne())
    assert not _alive_actors()


@pytest.mark.timeout(180)
def test_a_hung_actor_is_ended_and_reported(cluster, tmp_path, monkeypatch):
    from sb3_async.common import stop_clock
    from tests.test_failures import HangingEnv

    monkeypatch.setattr(stop_clock, "STOP_GRACE_SECONDS", 2.0)
    flag = str(tmp_path / "hung")
    model = A3C("MlpPolicy", lambda: HangingEnv(flag), n_workers=2, seed=0, backend="ray")
    with pytest.raises(WorkerError, match="did not stop within 2 s of the end of training and its Ray actor was ended"):
        model.learn(3_000)
    assert _alive_actors() == []


@pytest.mark.timeout(180)
def test_a_worker_that_cannot_start_is_reported(cluster, monkeypatch):
    from sb3_async.common import stop_clock

    monkeypatch.setattr(stop_clock, "STOP_GRACE_SECONDS", 2.0)
    # Three actors of one CPU each on a cluster of two CPUs: one waits for a CPU that does not come.
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=3, seed=0, backend="ray")
    with pytest.warns(UserWarning, match="n_workers=3 but the Ray cluster has 2 CPUs"):
        with pytest.raises(WorkerError, match=r"Worker \d never started within 2 s of the end of training"):
            model.learn(1_000)
    assert _alive_actors() == []


def test_keyboard_interrupt_stops_the_actors(cluster):
    class Interrupt(BaseCallback):
        def _on_step(self):
            if self.num_timesteps >= 500:
                raise KeyboardInterrupt
            return True

    model = A3C("MlpPolicy", "CartPole-v1", n_workers=2, backend="ray")
    with pytest.raises(KeyboardInterrupt):
        model.learn(1_000_000, callback=Interrupt())
    assert not _alive_actors()
    assert ray.is_initialized()


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'sb3-async\[ray\]'"):
        A3C("MlpPolicy", "CartPole-v1", n_workers=2, backend="ray")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of 'local', 'ray'"):
        A3C("MlpPolicy", "CartPole-v1", backend="dask")


def test_the_zoo_trains_with_the_ray_backend(tmp_path):
    """-params backend:"'ray'": the zoo's VecEnv (Monitor files) travels to the actors; the main process writes the CSV."""
    command = [sys.executable, "-m", "sb3_async.zoo", "train", "--algo", "a3c", "--env", "CartPole-v1", "-n", "4000"]
    command += ["-f", "logs", "-params", "backend:'ray'", "n_workers:2"]
    # The module's two-node cluster is still up, and ray.init() with no address would join it: start a fresh one.
    environment = {**os.environ, "RAY_ADDRESS": "local"}
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the zoo failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    run = tmp_path / "logs" / "a3c" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    episodes = sum(len(path.read_text().splitlines()) - 2 for path in run.glob("*.monitor.csv"))
    assert episodes > 10


def test_batch_norm_statistics_of_the_actors_reach_the_learner(cluster):
    from tests.test_sb3_contract import BatchNormExtractor

    model = A3C(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        n_workers=2,
        backend="ray",
        seed=0,
        policy_kwargs=dict(features_extractor_class=BatchNormExtractor, net_arch=[]),
    )
    (norm,) = [m for m in model.policy.modules() if isinstance(m, th.nn.BatchNorm1d)]
    model.learn(2_000)
    # The learner applies every update it receives, one at a time: no change is lost.
    assert norm.num_batches_tracked == model._n_updates > 0
    assert not th.allclose(norm.running_mean, th.zeros(8))
    assert th.all(norm.running_var > 0)
