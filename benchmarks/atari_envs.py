"""Atari environment stepping alone: SB3's ``AtariWrapper`` stack against ``AleVecEnv``.

One process per usable core, all at once (as workers run), each stepping ``--n-envs`` games with
random actions; the two kinds alternate within each round, and each round prints both rates
(environment steps per second, summed over the processes) and their ratio.

    python -m benchmarks.atari_envs --env PongNoFrameskip-v4 --rounds 4
"""

import argparse
import multiprocessing
import time
from typing import Any

import numpy as np

from benchmarks.cli import at_least
from sb3_async.common.cpus import usable_cpus

_KINDS = ("AtariWrapper", "AleVecEnv")


def _make(kind: str, env_id: str, n_envs: int) -> Any:
    from sb3_async.common.ale_vec_env import AleVecEnv

    if kind == "AleVecEnv":
        return AleVecEnv(env_id, n_envs, seed=0)
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    gym.register_envs(ale_py)
    # What rl_zoo3 builds for the atari entries.
    return VecTransposeImage(VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=0), 4))


def _step(kind: str, env_id: str, n_envs: int, steps: int, warmup: int, queue: Any) -> None:
    env = _make(kind, env_id, n_envs)
    env.reset()
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=(warmup + steps, n_envs))
    for action in actions[:warmup]:
        env.step(action)
    start = time.perf_counter()
    for action in actions[warmup:]:
        env.step(action)
    queue.put(steps * n_envs / (time.perf_counter() - start))
    env.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.atari_envs", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--n-envs", type=at_least(1), default=8, help="games per process (the atari entries' n_envs)")
    parser.add_argument("--steps", type=at_least(1), default=1500, help="VecEnv steps timed per process")
    parser.add_argument("--warmup", type=at_least(0), default=200)
    parser.add_argument("--rounds", type=at_least(1), default=4)
    parser.add_argument("--processes", type=at_least(1), default=None, help="default: the usable CPUs")
    args = parser.parse_args(argv)
    processes = args.processes or usable_cpus()
    context = multiprocessing.get_context("spawn")
    ratios = []
    for round_ in range(args.rounds):
        rates = {}
        for kind in _KINDS:
            queue = context.Queue()
            workers = [
                context.Process(target=_step, args=(kind, args.env, args.n_envs, args.steps, args.warmup, queue))
                for _ in range(processes)
            ]
            for worker in workers:
                worker.start()
            rates[kind] = sum(queue.get() for _ in workers)
            for worker in workers:
                worker.join()
        ratios.append(rates["AleVecEnv"] / rates["AtariWrapper"])
        print(
            f"round {round_ + 1}: AtariWrapper {rates['AtariWrapper']:,.0f}, AleVecEnv {rates['AleVecEnv']:,.0f} "
            f"env steps/s ({processes} processes x {args.n_envs} games), ratio {ratios[-1]:.2f}",
            flush=True,
        )
    print(f"AleVecEnv / AtariWrapper: median {np.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
