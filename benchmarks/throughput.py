"""Training throughput (environment steps per second) of sb3-async's algorithms and SB3's A2C.

Each measurement runs in a fresh process and trains for ``--steps`` environment steps; the rate
is taken between the moment ``--warmup`` steps are done and the end, through the same callback
for every algorithm (start-up and the first steps are not counted). Algorithms alternate
within each repeat, so slow phases of a shared machine hit all of them alike; the report is
the median over repeats and the ratio to A2C in the same run.

    python -m benchmarks.throughput --env PongNoFrameskip-v4 --steps 20000 --repeats 3
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

# The zoo's A2C settings (rl_zoo3/hyperparams/a2c.yml) for both algorithms; A3C's workers
# each step a copy of the same VecEnv.
SETTINGS: dict[str, dict[str, Any]] = {
    "atari": dict(
        n_envs=16,
        policy="CnnPolicy",
        kwargs=dict(ent_coef=0.01, vf_coef=0.25),
        rmsprop_tf_like=True,
    ),
    "CartPole-v1": dict(n_envs=8, policy="MlpPolicy", kwargs=dict(ent_coef=0.0), rmsprop_tf_like=False),
}


def _make_env(env_id: str, n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    if "NoFrameskip" in env_id:
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        return VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=seed), n_stack=4)
    return make_vec_env(env_id, n_envs=n_envs, seed=seed)


def measure(algo: str, env_id: str, steps: int, warmup: int, n_workers: int, seed: int = 0) -> dict[str, Any]:
    """Train ``algo`` for ``steps`` steps and return its steady-state steps per second."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    import sb3_async

    settings = SETTINGS["atari" if "NoFrameskip" in env_id else env_id]
    env = _make_env(env_id, settings["n_envs"], seed)
    kwargs = dict(settings["kwargs"], seed=seed)
    if settings["rmsprop_tf_like"]:
        kwargs["policy_kwargs"] = dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))
    if algo == "A2C":
        model = A2C(settings["policy"], env, device="cpu", **kwargs)
    else:
        model = getattr(sb3_async, algo)(settings["policy"], env, n_workers=n_workers, **kwargs)

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[float, int]] = []

        def _on_step(self) -> bool:
            if not self.marks and self.num_timesteps >= warmup:
                self.marks.append((time.perf_counter(), self.num_timesteps))
            return True

        def _on_training_end(self) -> None:
            self.marks.append((time.perf_counter(), self.model.num_timesteps))

    clock = Clock()
    model.learn(steps, callback=clock)
    (t0, s0), (t1, s1) = clock.marks[0], clock.marks[-1]
    return dict(algo=algo, env=env_id, steps_per_s=(s1 - s0) / (t1 - t0), measured_steps=s1 - s0, n_workers=n_workers)


def run(algos: list[str], env_id: str, steps: int, warmup: int, repeats: int, n_workers: int) -> dict[str, list[float]]:
    """Every algorithm once per repeat, alternating, each in a fresh process."""
    rates: dict[str, list[float]] = {algo: [] for algo in algos}
    for repeat in range(repeats):
        for algo in algos:
            command = [sys.executable, "-m", "benchmarks.throughput", "--one", algo, "--env", env_id]
            command += ["--steps", str(steps), "--warmup", str(warmup), "--workers", str(n_workers)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rates[algo].append(result["steps_per_s"])
            print(f"[{repeat + 1}/{repeats}] {algo:>17} {env_id}: {result['steps_per_s']:8.0f} steps/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--algos", default="A2C,A3C")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.env, args.steps, args.warmup, args.workers)))
        return
    rates = run(args.algos.split(","), args.env, args.steps, args.warmup, args.repeats, args.workers)
    base = statistics.median(rates["A2C"]) if "A2C" in rates else None
    for algo, values in rates.items():
        median = statistics.median(values)
        ratio = f"  {median / base:.2f}x A2C" if base else ""
        print(f"{algo:>17}: median {median:8.0f} steps/s (min {min(values):.0f}, max {max(values):.0f}){ratio}")


if __name__ == "__main__":
    main()
