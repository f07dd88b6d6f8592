"""``python -m benchmarks``: rerun the whole benchmark and write ``docs/benchmarks.md``.

Three sections, each measurement in a fresh process:

- throughput: steps per second of A2C, A3C with A2C's settings and our four algorithms with their
  shipped zoo entries, on PongNoFrameskip-v4 and CartPole-v1, with the machine's ceiling for each;
- scaling: steps per second of our algorithms with 1, 2, 4, ... workers, beside the paper's Table 2;
- learning: evaluation reward against seconds and steps, several seeds, on CartPole-v1 (our four
  algorithms, a2c and dqn; steps and seconds to 475) and PongNoFrameskip-v4 (a3c, a2c; a
  wall-clock budget per run).

The report (``OUT/benchmarks.md``), its plots and the raw results (``OUT/benchmarks/``) are
written by the run; ``--quick`` runs the same pipeline with tiny budgets (its numbers mean nothing).

    python -m benchmarks                      # the whole benchmark (about 2 hours on 2 cores, mostly Pong)
    python -m benchmarks --quick --out /tmp/bench
    python -m benchmarks --only learning --seeds 5 --pong-minutes 30
"""

import argparse
import datetime
import functools
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import ceiling, curves, learning, scaling, throughput
from benchmarks.cli import at_least, positive
from benchmarks.configs import CONFIGS, OURS, is_atari
from benchmarks.machine import git_commit, machine, usable_cores, versions
from benchmarks.report import learning_section, scaling_section, throughput_section, write_report

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("throughput", "scaling", "learning")
PONG = "PongNoFrameskip-v4"
CARTPOLE = "CartPole-v1"
THROUGHPUT_CONFIGS = ["a2c", "a2c_1thread", "a3c@a2c", *OURS]


@dataclass
class LearningPlan:
    """The learning runs on one environment."""

    env_id: str
    #: algorithm -> step budget (with ``max_seconds``: an upper bound; the zoo's schedules follow it)
    timesteps: dict[str, int]
    #: algorithm -> steps between snapshots (unused when ``snapshot_seconds`` is set)
    snapshot_every: dict[str, int]
    eval_episodes: int
    threshold: float | None = None
    max_seconds: float | None = None
    snapshot_seconds: float | None = None


@dataclass
class Plan:
    """Budgets of one invocation (the full benchmark's, or ``--quick``'s)."""

    repeats: int
    seeds: int
    #: env -> (steps, warmup steps) of each throughput run
    throughput_steps: dict[str, tuple[int, int]]
    throughput_configs: dict[str, list[str]]
    ceiling_block_seconds: float
    ceiling_blocks: int
    #: env -> (steps, warmup steps) of each scaling run, per worker
    scaling_steps: dict[str, tuple[int, int]]
    scaling_counts: list[int]
    scaling_algos: list[str] = field(default_factory=lambda: list(OURS))
    learning: list[LearningPlan] = field(default_factory=list)

    def only_envs(self, envs: list[str]) -> "Plan":
        """This plan restricted to the environments ``envs``."""
        self.throughput_steps = {env: budget for env, budget in self.throughput_steps.items() if env in envs}
        self.scaling_steps = {env: budget for env, budget in self.scaling_steps.items() if env in envs}
        self.learning = [env_plan for env_plan in self.learning if env_plan.env_id in envs]
        return self


def make_plan(quick: bool, repeats: int, seeds: int, pong_minutes: float) -> Plan:
    """The budgets: the full benchmark's, or tiny ones with ``quick``."""
    import torch as th

    cores = usable_cores()
    # On a machine with a GPU, A2C is also measured as its users would run it there.
    # AleVecEnv changes only how Atari games are stepped: measured on Pong alone.
    pong_configs = [*THROUGHPUT_CONFIGS, "a2c@ale", "a3c@ale"] + (["a2c@cuda"] if th.cuda.is_available() else [])
    pong_seconds = pong_minutes * 60
    # A few evaluated snapshots over the run: evaluating Pong episodes takes long.
    pong = LearningPlan(
        PONG,
        timesteps={"a3c": 10_000_000, "a2c": 10_000_000},
        snapshot_every={"a3c": 10_000_000, "a2c": 10_000_000},  # unused: snapshots by time
        eval_episodes=1 if quick else 10,
        max_seconds=pong_seconds,
        snapshot_seconds=pong_seconds if quick else pong_seconds / 5,
    )
    if quick:
        # DQN's zoo entry trains 128 gradient steps every 256 steps after 1,000: a few seconds at 1,500.
        cartpole = LearningPlan(
            CARTPOLE,
            timesteps={**dict.fromkeys(OURS, 3_000), "a2c": 3_000, "dqn": 1_500},
            snapshot_every={**dict.fromkeys(OURS, 1_000), "a2c": 1_000, "dqn": 500},
            eval_episodes=2,
            threshold=475,
        )
        return Plan(
            repeats=repeats,
            seeds=seeds,
            throughput_steps={CARTPOLE: (3_000, 500), PONG: (800, 200)},
            # One configuration per code path (a2c_1thread is a2c's, the one-step methods are
            # n-step Q's; Pong's A2C is CartPole's): each costs three process starts for its ceiling.
            throughput_configs={CARTPOLE: ["a2c", "a3c@a2c", "a3c", "async_nstep_q"], PONG: ["a3c"]},
            ceiling_block_seconds=0.02,
            ceiling_blocks=3,
            scaling_steps={CARTPOLE: (2_000, 400)},
            scaling_counts=scaling.worker_counts(cores, largest=2),
            scaling_algos=["a3c", "async_nstep_q"],
            learning=[cartpole, pong],
        )
    # The budgets of the zoo entries (their learning-rate and exploration schedules follow them),
    # except A2C's 500k, cut to A3C's 300k (its entry has no schedule).
    cartpole = LearningPlan(
        CARTPOLE,
        timesteps={
            "a3c": 300_000,
            "async_nstep_q": 500_000,
            "async_onestep_q": 500_000,
            "async_onestep_sarsa": 500_000,
            "a2c": 300_000,
            "dqn": 50_000,
        },
        snapshot_every={**dict.fromkeys(OURS, 10_000), "a2c": 10_000, "dqn": 2_500},
        eval_episodes=10,
        threshold=475,
    )
    return Plan(
        repeats=repeats,
        seeds=seeds,
        throughput_steps={PONG: (20_000, 2_000), CARTPOLE: (50_000, 5_000)},
        throughput_configs={PONG: pong_configs, CARTPOLE: THROUGHPUT_CONFIGS},
        ceiling_block_seconds=0.5,
        ceiling_blocks=3,
        scaling_steps={PONG: (10_000, 1_000), CARTPOLE: (50_000, 5_000)},
        scaling_counts=scaling.worker_counts(cores),
        learning=[cartpole, pong],
    )


class Progress:
    """One flushed line per finished measurement: elapsed time of the whole run, what, value, its own duration."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def done(self, what: str, value: str, seconds: float | None = None) -> None:
        took = "" if seconds is None else f" ({seconds:.1f} s)"
        print(f"[{time.perf_counter() - self.start:7.1f} s] {what}: {value}{took}", flush=True)

    def reporter(self, section: str) -> Callable[[throughput.Job, int, int, dict[str, Any], float], None]:
        """A line for each throughput run (``on_result`` of :func:`benchmarks.throughput.run`)."""

        def report(job: throughput.Job, repeat: int, repeats: int, result: dict[str, Any], seconds: float) -> None:
            key, n_workers = job
            workers = "" if n_workers is None else f", {n_workers} worker{'s' * (n_workers > 1)}"
            rate = result["steps_per_s"]
            frames = f" = {4 * rate:.0f} frames/s" if is_atari(result["env"]) else ""
            what = f"{section} {result['env']} {key}{workers} [{repeat + 1}/{repeats}]"
            self.done(what, f"{rate:.0f} steps/s{frames}", seconds)

        return report


def _measure_ceilings(plan: Plan, progress: Progress, env_id: str, runs: dict[str, list[dict[str, Any]]], repeat: int) -> None:
    """Measure the ceiling of every configuration in ``runs`` on ``env_id`` and append it there."""
    start = time.perf_counter()
    measured = ceiling.run_fresh(list(runs), env_id, plan.ceiling_block_seconds, plan.ceiling_blocks)
    for key, result in measured.items():
        runs[key].append(result)
    summary = ", ".join(f"{key} {result['ceiling_steps_per_s']:.0f}" for key, result in measured.items())
    progress.done(f"ceiling {env_id} [{repeat + 1}/{plan.repeats}]", f"steps/s {summary}", time.perf_counter() - start)


def run_throughput(plan: Plan, progress: Progress) -> dict[str, Any]:
    """Throughput runs and the ceiling of each configuration, per environment."""
    section: dict[str, Any] = {}
    for env_id, (steps, warmup) in plan.throughput_steps.items():
        keys = plan.throughput_configs[env_id]
        # The thread setting does not change the work: a2c_1thread has A2C's ceiling. The ceiling is
        # the CPU's: a GPU configuration has none.
        ceiling_keys = [key for key in keys if CONFIGS[key].torch_threads is None and CONFIGS[key].device == "cpu"]
        ceiling_runs: dict[str, list[dict[str, Any]]] = {key: [] for key in ceiling_keys}
        # The ceiling is measured in every repeat, after its training runs: on a shared machine
        # the speed of the cores drifts, and the ratio must compare like with like.
        results = throughput.run(
            [(key, None) for key in keys],
            env_id,
            steps,
            warmup,
            plan.repeats,
            progress.reporter("throughput"),
            after_repeat=functools.partial(_measure_ceilings, plan, progress, env_id, ceiling_runs),
        )
        ceilings = {key: ceiling.median_of(runs) for key, runs in ceiling_runs.items()}

        configs: dict[str, Any] = {}
        for (key, _), runs in results.items():
            stats = throughput.summarize([run["steps_per_s"] for run in runs])
            ceiling_of = ceilings.get(key) or (ceilings.get(CONFIGS[key].algo) if CONFIGS[key].device == "cpu" else None)
            configs[key] = dict(
                label=CONFIGS[key].label,
                settings=CONFIGS[key].settings,
                runs=runs,
                summary=stats,
                network=runs[0]["network"],
                n_workers=runs[0]["n_workers"],
                n_envs=runs[0]["n_envs"],
                torch_threads=runs[0]["torch_threads"],
                ceiling=ceiling_of,
                percent_of_ceiling=100 * stats["median"] / ceiling_of["ceiling_steps_per_s"] if ceiling_of else None,
            )
        base = configs["a2c"]["summary"]["median"] if "a2c" in configs else None
        for entry in configs.values():
            entry["ratio_to_a2c"] = entry["summary"]["median"] / base if base else None
        section[env_id] = dict(steps=steps, warmup=warmup, repeats=plan.repeats, configs=configs)
    return section


def run_scaling(plan: Plan, progress: Progress) -> dict[str, Any]:
    """Our algorithms with each worker count, per environment."""
    section: dict[str, Any] = {}
    for env_id, (steps, warmup) in plan.scaling_steps.items():
        jobs = scaling.jobs(plan.scaling_algos, plan.scaling_counts)
        results = throughput.run(jobs, env_id, steps, warmup, plan.repeats, progress.reporter("scaling"), per_worker=True)
        section[env_id] = dict(
            steps=steps,
            warmup=warmup,
            repeats=plan.repeats,
            counts=plan.scaling_counts,
            configs=scaling.summarize_runs(results),
        )
    return section


def run_learning(plan: Plan, progress: Progress, assets: Path) -> dict[str, Any]:
    """Learning runs, seeds outermost and algorithms alternating; then curves, thresholds and plots."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {p.env_id: {algo: [] for algo in p.timesteps} for p in plan.learning}
    for seed in range(plan.seeds):
        for env_plan in plan.learning:
            for algo, timesteps in env_plan.timesteps.items():
                start = time.perf_counter()
                result = learning.run_fresh(
                    algo,
                    env_plan.env_id,
                    seed,
                    timesteps,
                    env_plan.snapshot_every[algo],
                    env_plan.eval_episodes,
                    env_plan.threshold,
                    env_plan.max_seconds,
                    env_plan.snapshot_seconds,
                )
                runs[env_plan.env_id][algo].append(result)
                value = f"final eval {result['curve'][-1]['eval_reward']:.1f} after {result['trained_steps']} steps"
                value += f" in {result['train_seconds']:.1f} s"
                if env_plan.threshold is not None:
                    hit = learning.first_sustained(result, env_plan.threshold)
                    value += f"; {env_plan.threshold:g} sustained: " + (
                        "not reached" if hit is None else f"{hit['steps']} steps, {hit['seconds']:.1f} s"
                    )
                progress.done(f"learning {env_plan.env_id} {algo} seed {seed}", value, time.perf_counter() - start)

    section: dict[str, Any] = {}
    for env_plan in plan.learning:
        env_runs = runs[env_plan.env_id]
        plot = assets / f"learning_{env_plan.env_id}.png"
        labels = {algo: CONFIGS[algo].label for algo in env_runs}
        curves.plot(env_plan.env_id, env_runs, labels, plot, env_plan.threshold)
        progress.done(f"plot {env_plan.env_id}", str(plot))
        section[env_plan.env_id] = dict(
            plan=asdict(env_plan),
            plot=plot.name,
            algos={
                algo: dict(
                    label=labels[algo],
                    settings=CONFIGS[algo].settings,
                    runs=algo_runs,
                    final=curves.final_rewards(algo_runs),
                    to_threshold=None
                    if env_plan.threshold is None
                    else curves.time_to_threshold(algo_runs, env_plan.threshold),
                )
                for algo, algo_runs in env_runs.items()
            },
        )
    return section


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="folder of benchmarks.md; plots and results.json go in OUT/benchmarks/")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline, the numbers mean nothing")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument(
        "--repeats", type=at_least(1), default=None, help="throughput and scaling runs per configuration (3; quick: 1)"
    )
    parser.add_argument("--seeds", type=at_least(1), default=None, help="learning runs per algorithm (3; quick: 1)")
    parser.add_argument("--pong-minutes", type=positive, default=None, help="wall-clock budget of each Pong learning run (10)")
    parser.add_argument(
        "--envs", default=f"{PONG},{CARTPOLE}", help=f"comma-separated subset of {PONG},{CARTPOLE} (default: both)"
    )
    args = parser.parse_args(argv)
    envs = [name.strip() for name in args.envs.split(",") if name.strip()]
    if not envs or set(envs) - {PONG, CARTPOLE}:
        parser.error(f"--envs: choose among {PONG}, {CARTPOLE}; got {args.envs!r}")
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown or not only:
        parser.error(f"--only: choose among {', '.join(SECTIONS)}; got {args.only!r}")
    # --quick: 3 seconds of Pong training, enough for a start and an end snapshot.
    default_pong_minutes = 3 / 60 if args.quick else 10.0
    plan = make_plan(
        args.quick,
        repeats=args.repeats if args.repeats is not None else (1 if args.quick else 3),
        seeds=args.seeds if args.seeds is not None else (1 if args.quick else 3),
        pong_minutes=default_pong_minutes if args.pong_minutes is None else args.pong_minutes,
    ).only_envs(envs)

    out = Path(args.out)
    assets = out / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = dict(
        meta=dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            command=shlex.join(["python", "-m", "benchmarks", *argv]),
            quick=args.quick,
            sections=only,
            machine=machine(),
            versions=versions(),
            git=git_commit(ROOT),
            plan=asdict(plan),
        )
    )
    progress = Progress()
    print(f"python -m benchmarks: {', '.join(only)} -> {out}/benchmarks.md", flush=True)

    def save() -> None:
        (assets / "results.json").write_text(json.dumps(results, indent=1))

    report = out / "benchmarks.md"
    # Each section's tables are printed as soon as it is done, and the raw results saved.
    if "throughput" in only:
        results["throughput"] = run_throughput(plan, progress)
        print("\n" + throughput_section(results["throughput"], results["meta"]["machine"]["usable_cores"]), flush=True)
        save()
    if "scaling" in only:
        results["scaling"] = run_scaling(plan, progress)
        print("\n" + scaling_section(results["scaling"]), flush=True)
        save()
    if "learning" in only:
        results["learning"] = run_learning(plan, progress, assets)
        print("\n" + learning_section(results["learning"], assets, report), flush=True)
    results["meta"]["wall_seconds"] = time.perf_counter() - progress.start
    results["meta"]["load_average_end"] = machine()["load_average"]
    save()
    write_report(results, report, assets)
    progress.done("report", f"{report} (raw results: {assets / 'results.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
