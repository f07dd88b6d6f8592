"""rl-baselines3-zoo integration: the zoo's own command line, its flags and log layout, our YAML files."""

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml

from sb3_async.zoo import ALGOS, config_path
from sb3_async.zoo.__main__ import main as zoo_main
from sb3_async.zoo.__main__ import with_default_config

ROOT = Path(__file__).resolve().parent.parent


def _zoo(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The launcher, as a user types it, in a fresh process."""
    command = [sys.executable, "-m", "sb3_async.zoo", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _entries() -> list[tuple[str, str]]:
    entries = []
    for algo in ALGOS:
        with open(config_path(algo)) as f:
            for env_id in yaml.safe_load(f):
                entries.append((algo, env_id))
    return entries


def test_config_files_ship_with_the_package_and_the_repository():
    for algo in ALGOS:
        shipped = config_path(algo)
        assert shipped.is_file()
        assert shipped.read_text() == (ROOT / "zoo_configs" / f"{algo}.yml").read_text()


def _built_by_the_zoo(algo: str, env_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The model ``train`` builds for ``algo`` on ``env_id``, stopped before it learns."""
    from rl_zoo3.exp_manager import ExperimentManager

    built = []
    monkeypatch.setattr(ExperimentManager, "learn", lambda self, model: built.append(model))
    monkeypatch.setattr(ExperimentManager, "save_trained_model", lambda self, model: None)
    zoo_main(["train", "--algo", algo, "--env", env_id, "-f", str(tmp_path), "--seed", "0"])
    (model,) = built
    return model


@pytest.mark.parametrize("algo, env_key", _entries())
def test_every_entry_builds_its_model_through_the_zoo(algo, env_key, tmp_path, monkeypatch):
    """Each entry goes through the zoo's own preprocessing and constructor call (no unknown keys, no typos)."""
    env_id = "PongNoFrameskip-v4" if env_key == "atari" else env_key
    model = _built_by_the_zoo(algo, env_id, tmp_path, monkeypatch)
    assert isinstance(model, ALGOS[algo])
    model.env.close()


@pytest.mark.parametrize("algo", ["async_nstep_q", "async_onestep_q", "async_onestep_sarsa"])
def test_value_based_atari_entries_train_with_the_optimizer_measured_on_pong(algo, tmp_path, monkeypatch):
    """Adam at a constant 1e-4, statistics shared: RMSprop's forms did not learn Pong with the Q loss."""
    model = _built_by_the_zoo(algo, "PongNoFrameskip-v4", tmp_path, monkeypatch)
    optimizer = model.policy.optimizer
    assert type(optimizer) is th.optim.Adam
    assert model.lr_schedule(1.0) == model.lr_schedule(0.0) == 1e-4
    assert all(optimizer.state[p]["exp_avg_sq"].is_shared() for group in optimizer.param_groups for p in group["params"])
    model.env.close()


def test_default_config_is_added_only_for_our_algorithms():
    args = ["--algo", "a3c", "--env", "CartPole-v1"]
    assert with_default_config(args) == [*args, "-conf", str(config_path("a3c"))]
    assert with_default_config(["--algo=a3c"]) == ["--algo=a3c", "-conf", str(config_path("a3c"))]
    assert with_default_config([*args, "-conf", "mine.yml"]) == [*args, "-conf", "mine.yml"]
    assert with_default_config(["--algo", "a2c"]) == ["--algo", "a2c"]
    # Every spelling rl_zoo3's argparse accepts for a config file of the user's, and for --algo.
    for given in (["-conf=mine.yml"], ["--conf", "mine.yml"], ["--conf-file=mine.yml"]):
        assert with_default_config([*args, *given]) == [*args, *given]
    assert with_default_config(["--alg", "a3c"]) == ["--alg", "a3c", "-conf", str(config_path("a3c"))]


# The LSTM entry's classic-control task is the one that needs memory: CartPole without velocities.
CARTPOLE = {"a3c_lstm": "CartPoleNoVel-v1"}


@pytest.mark.parametrize("algo", list(ALGOS))
def test_train_then_enjoy_on_cartpole(algo, tmp_path):
    env_id = CARTPOLE.get(algo, "CartPole-v1")
    _zoo("train", "--algo", algo, "--env", env_id, "-n", "2000", "-f", "logs", "--seed", "1", cwd=tmp_path)
    # The layout the zoo promises: logs/<algo>/<env>_<id>/ with the model and its config.
    run = tmp_path / "logs" / algo / f"{env_id}_1"
    assert (run / f"{env_id}.zip").is_file()
    config = yaml.unsafe_load((run / env_id / "config.yml").read_text())
    with open(config_path(algo)) as f:
        assert dict(config)["n_envs"] == yaml.safe_load(f)[env_id]["n_envs"]
    assert (run / env_id / "args.yml").is_file()
    out = _zoo("enjoy", "--algo", algo, "--env", env_id, "-f", "logs", "-n", "300", "--no-render", cwd=tmp_path).stdout
    assert "Loading" in out and "Episode Reward" in out


def test_zoo_flags(tmp_path):
    """Seed, evaluation, checkpoints, progress bar, threads, hyperparameter override, tensorboard, subproc envs."""
    args = ["train", "--algo", "async_nstep_q", "--env", "CartPole-v1", "-n", "4000", "-f", "logs", "--seed", "3"]
    args += ["--eval-freq", "1000", "--eval-episodes", "2", "--save-freq", "2000", "-P", "--num-threads", "1"]
    args += ["-params", "learning_rate:0.002", "n_envs:2", "--tensorboard-log", "tb", "--vec-env", "subproc"]
    _zoo(*args, cwd=tmp_path)
    run = tmp_path / "logs" / "async_nstep_q" / "CartPole-v1_1"
    evaluations = np.load(run / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [1000, 2000, 3000, 4000]
    assert (run / "best_model.zip").is_file()
    assert sorted(p.name for p in run.glob("rl_model_*_steps.zip")) == ["rl_model_2000_steps.zip", "rl_model_4000_steps.zip"]
    config = dict(yaml.unsafe_load((run / "CartPole-v1" / "config.yml").read_text()))
    assert config["learning_rate"] == 0.002 and config["n_envs"] == 2
    assert glob.glob(str(tmp_path / "tb" / "CartPole-v1" / "AsyncNStepQ_1" / "events.out.tfevents.*"))


def test_atari_with_the_shipped_entry(tmp_path):
    _zoo("train", "--algo", "a3c", "--env", "PongNoFrameskip-v4", "-n", "3000", "-f", "logs", cwd=tmp_path)
    run = tmp_path / "logs" / "a3c" / "PongNoFrameskip-v4_1"
    assert (run / "PongNoFrameskip-v4.zip").is_file()
    config = dict(yaml.unsafe_load((run / "PongNoFrameskip-v4" / "config.yml").read_text()))
    # RMSprop's epsilon on SB3's scale (the paper's 0.1 stalls learning under SB3's mean losses).
    assert "eps=1e-5" in config["policy_kwargs"] and "RMSpropTFLike" in config["policy_kwargs"]
    assert "rms_prop_eps" not in config


@pytest.mark.parametrize("algo", ["a3c", "async_onestep_sarsa"])
def test_optimize_two_trials(algo, tmp_path):
    args = ["train", "--algo", algo, "--env", "CartPole-v1", "-n", "2000", "-f", "logs", "-optimize"]
    args += ["--n-trials", "2", "--n-startup-trials", "2", "--n-evaluations", "1", "--sampler", "random", "--pruner", "none"]
    args += ["--no-optim-plots", "--seed", "0"]
    result = _zoo(*args, cwd=tmp_path)
    assert re.search(r"Number of finished trials:\s+2", result.stdout)
    assert "Trial 1 finished with value" in result.stderr  # optuna logs to stderr
    assert glob.glob(str(tmp_path / "logs" / algo / "report_CartPole-v1_2-trials-2000-random-none_*.csv"))


def test_lstm_entry_replays_with_its_state(tmp_path):
    _zoo("train", "--algo", "a3c_lstm", "--env", "CartPoleNoVel-v1", "-n", "2000", "-f", "logs", cwd=tmp_path)
    out = _zoo(
        "enjoy", "--algo", "a3c_lstm", "--env", "CartPoleNoVel-v1", "-f", "logs", "-n", "200", "--no-render", cwd=tmp_path
    )
    assert "Loading" in out.stdout


def test_plots_read_our_algorithm_names(tmp_path):
    _zoo("train", "--algo", "a3c", "--env", "CartPole-v1", "-n", "3000", "-f", "logs", "--eval-freq", "1000", cwd=tmp_path)
    env = dict(os.environ, MPLBACKEND="Agg")
    command = [
        sys.executable,
        "-m",
        "sb3_async.zoo",
        "all_plots",
        "-a",
        "a3c",
        "-e",
        "CartPole-v1",
        "-f",
        "logs",
        "--no-display",
    ]
    command += ["-o", "results"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "results.pkl").is_file()
    # plot_train reads the training Monitor files, which every worker appends to.
    command = [sys.executable, "-m", "sb3_async.zoo", "plot_train", "-a", "a3c", "-e", "CartPole-v1", "-f", "logs"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    monitor = (tmp_path / "logs" / "a3c" / "CartPole-v1_1" / "0.monitor.csv").read_text().splitlines()
    # How many episodes env 0 finishes in 3,000 steps depends on how fast the policy improves
    # (8 episodes in one suite run here); a handful are enough to see that rows are whole.
    assert len(monitor) > 5 and all(line.count(",") == 2 for line in monitor[2:]), "one whole row per episode"


def test_launcher_usage():
    result = subprocess.run([sys.executable, "-m", "sb3_async.zoo"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "a3c, a3c_lstm, async_nstep_q, async_onestep_q, async_onestep_sarsa" in result.stdout


@pytest.mark.parametrize("algo", ["a3c", "async_nstep_q"])
def test_save_replay_buffer_is_refused_before_training(algo, tmp_path):
    command = [sys.executable, "-m", "sb3_async.zoo", "train", "--algo", algo, "--env", "CartPole-v1", "--save-replay-buffer"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and f"{algo} has no replay buffer" in result.stderr
    assert not (tmp_path / "logs").exists()


def test_record_video(tmp_path):
    _zoo("train", "--algo", "async_onestep_q", "--env", "CartPole-v1", "-n", "1000", "-f", "logs", cwd=tmp_path)
    args = ["record_video", "--algo", "async_onestep_q", "--env", "CartPole-v1", "-f", "logs", "-n", "100", "-o", "videos"]
    _zoo(*args, cwd=tmp_path)
    assert list((tmp_path / "videos").glob("*.mp4"))
