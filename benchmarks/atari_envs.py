"""Atari environment stepping alone: SB3's ``AtariWrapper`` stack against ``AleVecEnv`` (and EnvPool's).

One process per usable core, all at once (as workers run), each stepping ``--n-envs`` games with
random actions; the kinds alternate within each round, and each round prints their rates
(environment steps per second, summed over the processes) and each one's ratio to
``AtariWrapper``'s. ``envpool`` (EnvPool's Atari games, stepped on one thread per process with
the same preprocessing: no-op starts, 4-frame repeat with a max over the last two, 84x84
greyscale, a terminal at each lost life, fire on reset, rewards clipped, 4 frames stacked) is
timed where the ``envpool`` package is installed; the package does not use it.

    python -m benchmarks.atari_envs --env PongNoFrameskip-v4 --rounds 4
"""

import argparse
import importlib.util
import multiprocessing
import time
from typing import Any

import numpy as np

from benchmarks.cli import at_least
from sb3_async.common.cpus import usable_cpus

_KINDS = ("AtariWrapper", "AleVecEnv", "envpool")


def _envpool_id(env_id: str) -> str:
    """EnvPool's name for a ``NoFrameskip-v4`` game (``PongNoFrameskip-v4``: ``Pong-v5``)."""
    game, separator, _ = env_id.partition("NoFrameskip-v4")
    if not separator or not game:
        raise ValueError(f"--env: envpool is timed for ALE's NoFrameskip-v4 games, got {env_id}")
    return f"{game}-v5"


def _available_kinds() -> tuple[str, ...]:
    # Only the timing processes import EnvPool: importing it registers every task it has.
    return _KINDS if importlib.util.find_spec("envpool") is not None else _KINDS[:2]


def _make(kind: str, env_id: str, n_envs: int) -> Any:
    from sb3_async.common.ale_vec_env import AleVecEnv

    if kind == "envpool":
        import envpool

        # Its defaults already repeat actions 4 times with a max over the last two frames, start
        # with up to 30 no-ops and fire, and stack 4 84x84 greyscale frames.
        return envpool.make_gymnasium(
            _envpool_id(env_id),
            num_envs=n_envs,
            batch_size=n_envs,
            num_threads=1,
            episodic_life=True,
            reward_clip=True,
            seed=0,
        )
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
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=(warmup + steps, n_envs), dtype=np.int32)
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
    kinds = _available_kinds()
    if "envpool" in kinds:
        try:
            _envpool_id(args.env)
        except ValueError as error:
            parser.error(str(error))
    else:
        print("envpool: not installed, not timed (pip install envpool)", flush=True)
    context = multiprocessing.get_context("spawn")
    ratios: dict[str, list[float]] = {kind: [] for kind in kinds[1:]}
    for round_ in range(args.rounds):
        rates = {}
        for kind in kinds:
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
        for kind in ratios:
            ratios[kind].append(rates[kind] / rates["AtariWrapper"])
        measured = ", ".join(f"{kind} {rate:,.0f}" for kind, rate in rates.items())
        compared = ", ".join(f"{kind} {values[-1]:.2f}" for kind, values in ratios.items())
        print(
            f"round {round_ + 1}: {measured} env steps/s ({processes} processes x {args.n_envs} games); "
            f"ratio to AtariWrapper: {compared}",
            flush=True,
        )
    for kind, values in ratios.items():
        print(f"{kind} / AtariWrapper: median {np.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
