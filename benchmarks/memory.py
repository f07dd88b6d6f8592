"""A3C LSTM against feed-forward A3C on a task that needs memory.

:class:`CueMemory` shows a cue (-1 or +1) once, then blank observations, then asks for it:
the action at the query earns 1 if it names the cue. Without memory nothing beats chance (0.5).
Both agents train with 2 workers and the same settings; snapshots every ``snapshot_every``
steps are evaluated after training (``n_eval_episodes`` episodes each). Reports steps and
seconds until the evaluation reaches ``threshold`` and still does at the next snapshot.

    python -m benchmarks.memory --seeds 0 1 2
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from benchmarks.cli import at_least
from benchmarks.learning import Snapshots, evaluate_snapshots, first_sustained
from sb3_async import A3C

POLICIES = {"A3C LSTM": ("MlpLstmPolicy", dict(lstm_hidden_size=32, net_arch=[32])), "A3C feed-forward": ("MlpPolicy", {})}


class CueMemory(gym.Env):
    """
    The first observation shows a cue (-1 or +1), the next ``delay`` are blank but for a query
    flag on the last, and the action taken at the query earns 1 if it names the cue (0 for -1,
    1 for +1). Without memory the best is chance: 0.5.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, delay: int = 4) -> None:
        self.delay = delay

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.cue = int(self.np_random.integers(2))
        return np.array([2 * self.cue - 1, 0], dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        if self.t <= self.delay:
            return np.array([0, float(self.t == self.delay)], dtype=np.float32), 0.0, False, False, {}
        return np.zeros(2, dtype=np.float32), float(action == self.cue), True, False, {}


def run(label: str, seed: int, n_timesteps: int, snapshot_every: int, n_eval_episodes: int) -> dict[str, Any]:
    policy, policy_kwargs = POLICIES[label]
    env = make_vec_env(CueMemory, n_envs=8, seed=seed)
    model = A3C(policy, env, n_workers=2, n_steps=10, seed=seed, policy_kwargs=policy_kwargs or None)
    snapshots = Snapshots(snapshot_every)
    start = time.perf_counter()
    model.learn(n_timesteps, callback=snapshots)
    train_seconds = time.perf_counter() - start
    curve = evaluate_snapshots(
        model, snapshots.points, make_vec_env(CueMemory, n_envs=10, seed=seed + 1000), n_eval_episodes, True
    )
    return dict(label=label, seed=seed, train_seconds=train_seconds, curve=curve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1, 2])
    parser.add_argument("--timesteps", type=at_least(1), default=300_000)
    parser.add_argument("--snapshot-every", type=at_least(1), default=10_000)
    parser.add_argument("--eval-episodes", type=at_least(1), default=100)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        for label in POLICIES:
            result = run(label, seed, args.timesteps, args.snapshot_every, args.eval_episodes)
            results.append(result)
            hit = first_sustained(result, args.threshold)
            reached = "not reached" if hit is None else f"{hit['steps']} steps, {hit['seconds']:.1f} s"
            best = max(p["eval_reward"] for p in result["curve"])
            final = result["curve"][-1]["eval_reward"]
            print(f"{label} seed {seed}: {args.threshold} {reached}; best {best:.2f}, final {final:.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results))
    for label in POLICIES:
        mine = [r for r in results if r["label"] == label]
        hits = [first_sustained(r, args.threshold) for r in mine]
        finals = [r["curve"][-1]["eval_reward"] for r in mine]
        reached = [h for h in hits if h is not None]
        summary = f"{label}: final evaluation median {statistics.median(finals):.2f}; "
        if len(reached) * 2 > len(hits):
            # A seed that never gets there counts as later than the others.
            steps = sorted([h["steps"] for h in reached] + [float("inf")] * (len(hits) - len(reached)))
            seconds = sorted([h["seconds"] for h in reached] + [float("inf")] * (len(hits) - len(reached)))
            median_steps, median_seconds = statistics.median(steps), statistics.median(seconds)
            summary += f"{args.threshold} reached after median {median_steps:.0f} steps, {median_seconds:.1f} s"
        else:
            summary += f"{args.threshold} not reached by most seeds ({len(reached)}/{len(hits)})"
        print(summary)


if __name__ == "__main__":
    main()
