"""Learning speed: evaluation reward against environment steps and wall-clock seconds.

Every model is built by rl_zoo3's own ``ExperimentManager`` from a hyperparameter file (ours,
``zoo_configs/``, for sb3-async's algorithms; the zoo's for A2C and DQN; see
``benchmarks.configs``), so each algorithm runs with the settings a user of the zoo gets. During
training, a callback takes a snapshot of the policy every ``snapshot_every`` steps (or every
``snapshot_seconds`` seconds), with the wall-clock time and the mean reward of the last training
episodes; ``max_seconds`` stops training after that many seconds. Only after training is each
snapshot evaluated (``n_eval_episodes`` episodes, run side by side in a VecEnv), so evaluation
never competes with training for the CPU and the seconds are training seconds for every
algorithm alike.

    python -m benchmarks.learning --algo a3c --env CartPole-v1 --seed 0 --timesteps 300000
    python -m benchmarks.learning --algo a2c --env PongNoFrameskip-v4 --timesteps 10000000 \
        --max-seconds 600 --snapshot-seconds 120
"""

import argparse
import copy
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_normalize

from benchmarks.cli import at_least, params_option, positive
from benchmarks.configs import experiment

# The zoo evaluates value-based agents greedily, and Atari agents of the others stochastically.
_GREEDY_ALGOS = {"dqn", "qrdqn", "async_nstep_q", "async_onestep_q", "async_onestep_sarsa"}


class Snapshots(BaseCallback):
    """
    Every ``every`` steps, or every ``every_seconds`` seconds when given: a copy of the policy's
    parameters (and normalization statistics), with time and steps, and one at the end. Also
    records the exact step and time at which the mean reward of the last 100 training episodes
    first reaches ``train_threshold``. ``until_seconds``: the time limit of the run, at which
    the end snapshot is taken (rather than a timed one just before it).
    """

    def __init__(
        self,
        every: int,
        train_threshold: float | None = None,
        every_seconds: float | None = None,
        until_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.every = every
        self.every_seconds = every_seconds
        self.until_seconds = until_seconds
        self.train_threshold = train_threshold
        self.train_hit: dict[str, float] | None = None
        self.points: list[dict[str, Any]] = []
        self._next = 0
        self._next_seconds = 0.0
        self._start = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._next = self.every
        self._next_seconds = self.every_seconds or 0.0
        self._take()

    def _take(self) -> None:
        rewards = [info["r"] for info in self.model.ep_info_buffer or []]
        normalizer = unwrap_vec_normalize(self.training_env)
        self.points.append(
            dict(
                steps=int(self.num_timesteps),
                seconds=time.perf_counter() - self._start,
                train_reward=float(np.mean(rewards)) if rewards else None,
                train_episodes=len(rewards),
                state={key: value.detach().clone() for key, value in self.model.policy.state_dict().items()},
                # VecNormalize(norm_obs=False) has no obs_rms (and the wrapper would forward the lookup).
                obs_rms=copy.deepcopy(vars(normalizer).get("obs_rms")) if normalizer is not None else None,
            )
        )

    def _on_step(self) -> bool:
        if self.train_threshold is not None and self.train_hit is None:
            buffer = self.model.ep_info_buffer
            if (
                buffer is not None
                and len(buffer) == buffer.maxlen
                and np.mean([i["r"] for i in buffer]) >= self.train_threshold
            ):
                self.train_hit = dict(steps=int(self.num_timesteps), seconds=time.perf_counter() - self._start)
        if self.every_seconds is not None:
            elapsed = time.perf_counter() - self._start
            if elapsed >= self._next_seconds and (self.until_seconds is None or elapsed < self.until_seconds):
                self._take()
                self._next_seconds += self.every_seconds
        elif self.num_timesteps >= self._next:
            self._take()
            self._next += self.every
        return True

    def _on_training_end(self) -> None:
        if self.points[-1]["steps"] < self.model.num_timesteps:
            self._take()


class StopWhenReached(BaseCallback):
    """Stops training once the given :class:`Snapshots` saw its training threshold reached."""

    def __init__(self, snapshots: Snapshots) -> None:
        super().__init__()
        self.snapshots = snapshots

    def _on_step(self) -> bool:
        return self.snapshots.train_hit is None


class StopAfterSeconds(BaseCallback):
    """Stops training ``seconds`` after it started (a wall-clock budget instead of a step budget)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._start = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        return time.perf_counter() - self._start < self.seconds


def run(
    algo: str,
    env_id: str,
    seed: int,
    n_timesteps: int,
    snapshot_every: int,
    n_eval_episodes: int = 10,
    overrides: dict[str, Any] | None = None,
    train_threshold: float | None = None,
    max_seconds: float | None = None,
    snapshot_seconds: float | None = None,
    stop_at_threshold: bool = False,
) -> dict[str, Any]:
    """
    Train ``algo`` (a zoo key, or another key of ``benchmarks.configs.CONFIGS`` such as ``a3c@a2c``)
    on ``env_id`` with the zoo's settings; return the learning curve.

    :param max_seconds: stop training after this many seconds (or at ``n_timesteps``, whichever is first)
    :param snapshot_seconds: take snapshots every this many seconds instead of every ``snapshot_every`` steps
    :param stop_at_threshold: stop training once the mean of the last 100 training episodes reaches ``train_threshold``
    """
    overrides = dict(overrides or {})
    with tempfile.TemporaryDirectory() as folder:
        manager = experiment(algo, env_id, seed, n_timesteps, folder, overrides)
        model, _ = manager.setup_experiment()
        snapshots = Snapshots(snapshot_every, train_threshold, snapshot_seconds, max_seconds)
        callbacks: list[BaseCallback] = [snapshots] if max_seconds is None else [snapshots, StopAfterSeconds(max_seconds)]
        if stop_at_threshold:
            callbacks.append(StopWhenReached(snapshots))
        start = time.perf_counter()
        model.learn(n_timesteps, callback=CallbackList(callbacks))
        train_seconds = time.perf_counter() - start
        eval_env = manager.create_envs(n_eval_episodes, eval_env=True, no_log=True)
        deterministic = manager.algo in _GREEDY_ALGOS or not manager._is_atari
        curve = evaluate_snapshots(model, snapshots.points, eval_env, n_eval_episodes, deterministic)
        eval_env.close()
        model.env.close()
    workers = getattr(model, "n_workers", 1)
    return dict(
        algo=algo,
        env=env_id,
        seed=seed,
        n_timesteps=n_timesteps,
        train_seconds=train_seconds,
        trained_steps=int(model.num_timesteps),
        max_seconds=max_seconds,
        n_workers=workers,
        overrides={key: repr(value) for key, value in overrides.items()},
        curve=curve,
        train_hit=snapshots.train_hit,
    )


def evaluate_snapshots(
    model: Any, points: list[dict[str, Any]], eval_env: Any, n_eval_episodes: int, deterministic: bool
) -> list[dict[str, Any]]:
    """The curve: each snapshot of :class:`Snapshots`, its parameters replaced by its mean evaluation reward."""
    # Evaluate with one thread, as the training processes ran (and to keep results comparable).
    th.set_num_threads(1)
    curve = []
    for point in points:
        point = dict(point)
        model.policy.load_state_dict(point.pop("state"))
        obs_rms = point.pop("obs_rms")
        if obs_rms is not None:
            normalizer = unwrap_vec_normalize(eval_env)
            assert isinstance(normalizer, VecNormalize)
            normalizer.obs_rms = obs_rms
        rewards, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=deterministic, return_episode_rewards=True
        )
        curve.append(dict(point, eval_reward=float(np.mean(rewards))))
    return curve


def first_sustained(result: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """
    The first snapshot whose evaluation reaches ``threshold`` and still does at the next snapshot
    (a single evaluation can pass by luck: on CartPole even an untrained policy may score 400).
    None if there is none.
    """
    curve = result["curve"]
    for point, following in itertools.pairwise(curve):
        if point["eval_reward"] >= threshold and following["eval_reward"] >= threshold:
            return point
    return None


def run_fresh(
    algo: str,
    env_id: str,
    seed: int,
    n_timesteps: int,
    snapshot_every: int,
    n_eval_episodes: int = 10,
    train_threshold: float | None = None,
    max_seconds: float | None = None,
    snapshot_seconds: float | None = None,
) -> dict[str, Any]:
    """:func:`run` in a fresh Python process (its own torch threads, memory and imports)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "benchmarks.learning", "--algo", algo, "--env", env_id, "--seed", str(seed)]
        command += ["--timesteps", str(n_timesteps), "--snapshot-every", str(snapshot_every)]
        command += ["--eval-episodes", str(n_eval_episodes), "--out", str(out)]
        options = {"--threshold": train_threshold, "--max-seconds": max_seconds, "--snapshot-seconds": snapshot_seconds}
        for flag, value in options.items():
            if value is not None:
                command += [flag, str(value)]
        done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True, help="zoo key: a3c, async_nstep_q, ..., a2c, dqn (or a3c@a2c)")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.add_argument("--timesteps", type=at_least(1), required=True)
    parser.add_argument("--snapshot-every", type=at_least(1), default=10_000)
    parser.add_argument("--eval-episodes", type=at_least(1), default=10)
    parser.add_argument("--threshold", type=float, default=None, help="print the first point that reaches it")
    parser.add_argument("--max-seconds", type=positive, default=None, help="stop training after this many seconds")
    parser.add_argument("--snapshot-seconds", type=positive, default=None, help="snapshots by time instead of steps")
    parser.add_argument("-params", nargs="*", default=[], help="overrides, as the zoo's -params key:value")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    overrides = params_option(parser, args.params)
    result = run(
        args.algo,
        args.env,
        args.seed,
        args.timesteps,
        args.snapshot_every,
        args.eval_episodes,
        overrides,
        args.threshold,
        args.max_seconds,
        args.snapshot_seconds,
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result))
    summary = dict(algo=args.algo, env=args.env, seed=args.seed, train_seconds=round(result["train_seconds"], 1))
    summary["best_eval"] = max(point["eval_reward"] for point in result["curve"])
    summary["final_eval"] = result["curve"][-1]["eval_reward"]
    if args.threshold is not None:
        hit = first_sustained(result, args.threshold)
        summary["eval_reached"] = None if hit is None else dict(steps=hit["steps"], seconds=round(hit["seconds"], 1))
        summary["train_reached"] = result["train_hit"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
