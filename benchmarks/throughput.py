"""Training throughput (environment steps per second) of sb3-async's algorithms and SB3's A2C.

Each measurement runs in a fresh process and trains for ``--steps`` environment steps; the rate
is taken between the moment ``--warmup`` steps are done and the end, through the same callback
for every algorithm (start-up and the first steps are not counted). Configurations alternate
within each repeat, so slow phases of a shared machine hit all of them alike; the report is
the median over repeats and the ratio to A2C in the same run.

Configurations (``benchmarks.configs.CONFIGS``) are built by rl_zoo3's ``ExperimentManager``:
``a2c`` is SB3's A2C with the zoo's settings, ``a3c@a2c`` A3C with those same settings, and
``a3c``, ``async_nstep_q``, ... our algorithms with their shipped ``zoo_configs`` entries.
Torch threads are left as each algorithm sets them for its users.

    python -m benchmarks.throughput --env PongNoFrameskip-v4 --configs a2c,a3c@a2c,a3c --steps 20000 --repeats 3
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cli import at_least

ROOT = Path(__file__).resolve().parent.parent

#: A measurement to repeat: a configuration key and its number of workers (None: the entry's default).
Job = tuple[str, int | None]


def measure(key: str, env_id: str, steps: int, warmup: int, n_workers: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Train configuration ``key`` for ``steps`` steps and return its steady-state steps per second."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    from benchmarks.configs import CONFIGS, describe_network, experiment

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

    if CONFIGS[key].torch_threads is not None:
        th.set_num_threads(CONFIGS[key].torch_threads)
    overrides = {} if n_workers is None else {"n_workers": n_workers}
    with tempfile.TemporaryDirectory() as folder:
        model, _ = experiment(key, env_id, seed, steps, folder, overrides).setup_experiment()
        torch_threads = th.get_num_threads()
        clock = Clock()
        model.learn(steps, callback=clock)
        model.env.close()
    (t0, s0), (t1, s1) = clock.marks[0], clock.marks[-1]
    return dict(
        config=key,
        env=env_id,
        steps_per_s=(s1 - s0) / (t1 - t0),
        measured_steps=s1 - s0,
        n_workers=getattr(model, "n_workers", 1),
        n_envs=model.n_envs,
        torch_threads=torch_threads,
        network=describe_network(model),
    )


def fresh_command(key: str, env_id: str, steps: int, warmup: int, n_workers: int | None = None) -> list[str]:
    """The command line that runs :func:`measure` in a fresh Python process (run from the project root)."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--one", key, "--env", env_id]
    command += ["--steps", str(steps), "--warmup", str(warmup)]
    return command + ([] if n_workers is None else ["--workers", str(n_workers)])


def run_fresh(key: str, env_id: str, steps: int, warmup: int, n_workers: int | None = None) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process (its own torch threads, memory and imports)."""
    command = fresh_command(key, env_id, steps, warmup, n_workers)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_result(job: Job, repeat: int, repeats: int, result: dict[str, Any], seconds: float) -> None:
    key, n_workers = job
    workers = "" if n_workers is None else f" x{n_workers} workers"
    print(
        f"[{repeat + 1}/{repeats}] {key}{workers} on {result['env']}: {result['steps_per_s']:.0f} steps/s ({seconds:.1f} s)",
        flush=True,
    )


def run(
    jobs: list[Job],
    env_id: str,
    steps: int,
    warmup: int,
    repeats: int,
    on_result: Callable[[Job, int, int, dict[str, Any], float], None] = _print_result,
    after_repeat: Callable[[int], None] | None = None,
    per_worker: bool = False,
) -> dict[Job, list[dict[str, Any]]]:
    """
    Every job once per repeat, alternating, each in a fresh process; ``on_result`` hears of
    each, and ``after_repeat(repeat)`` is called at the end of every repeat. With ``per_worker``,
    ``steps`` and ``warmup`` are per worker of the job (so that every worker count is measured
    for about as long).
    """
    results: dict[Job, list[dict[str, Any]]] = {job: [] for job in jobs}
    for repeat in range(repeats):
        for job in jobs:
            scale = job[1] if per_worker and job[1] is not None else 1
            start = time.perf_counter()
            result = run_fresh(job[0], env_id, steps * scale, warmup * scale, job[1])
            results[job].append(result)
            on_result(job, repeat, repeats, result, time.perf_counter() - start)
        if after_repeat is not None:
            after_repeat(repeat)
    return results


def summarize(rates: list[float]) -> dict[str, float]:
    """Median, min and max of ``rates``."""
    return dict(median=statistics.median(rates), min=min(rates), max=max(rates), n=len(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--configs", default="a2c,a3c@a2c", help="keys of benchmarks.configs.CONFIGS")
    parser.add_argument("--steps", type=at_least(1), default=20_000)
    parser.add_argument("--warmup", type=at_least(0), default=2_000)
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--workers", type=at_least(1), default=None, help="n_workers of our algorithms (default: the entry's)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.env, args.steps, args.warmup, args.workers)))
        return
    jobs: list[Job] = [(key, args.workers) for key in args.configs.split(",")]
    results = run(jobs, args.env, args.steps, args.warmup, args.repeats)
    rates = {job[0]: [r["steps_per_s"] for r in values] for job, values in results.items()}
    base = statistics.median(rates["a2c"]) if "a2c" in rates else None
    for key, values in rates.items():
        median, low, high = statistics.median(values), min(values), max(values)
        ratio = f"  {median / base:.2f}x A2C" if base else ""
        print(f"{key:>20}: median {median:8.0f} steps/s (min {low:.0f}, max {high:.0f}){ratio}")


if __name__ == "__main__":
    main()
