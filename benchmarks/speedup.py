"""Data-efficiency speedup in the manner of the paper's Table 2: time to a reference score with 1, 2, 4, ... workers.

For each of our algorithms, with its shipped zoo entry and ``n_workers`` overridden, each run
trains until the mean of the last 100 training episodes reaches the threshold (CartPole-v1:
475) and records the steps and seconds it took. The speedup of ``n`` workers is the median time
of one worker divided by the median time of ``n``; the steps ratio shows what asynchrony did to
data efficiency (above 1: more steps needed). Each run is a fresh process; worker counts and
algorithms alternate within each seed.

    python -m benchmarks.speedup --env CartPole-v1 --seeds 0 1 2
    python -m benchmarks.speedup --algos a3c --counts 2 --baselines a2c   # against A2C's wall-clock
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.cli import at_least
from benchmarks.configs import OURS
from benchmarks.machine import usable_cores
from benchmarks.scaling import PAPER_SPEEDUP, worker_counts

ROOT = Path(__file__).resolve().parent.parent


def time_to_threshold(
    algo: str, env_id: str, seed: int, n_workers: int | None, threshold: float, budget: int
) -> dict[str, Any]:
    """
    One run in a fresh process: steps and seconds until the training mean reaches ``threshold`` (None
    if not). ``n_workers`` None: the algorithm as its settings give it (SB3's A2C, say).
    """
    overrides = {} if n_workers is None else {"n_workers": n_workers}
    code = (
        "import json, sys; from benchmarks.learning import run; "
        f"r = run({algo!r}, {env_id!r}, {seed}, {budget}, snapshot_every={budget}, n_eval_episodes=1, "
        f"overrides={overrides!r}, train_threshold={threshold}, stop_at_threshold=True); "
        "print(json.dumps(dict(hit=r['train_hit'], steps=r['trained_steps'], seconds=r['train_seconds'])))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{algo} with {n_workers} workers failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return dict(algo=algo, seed=seed, n_workers=n_workers, **result)


def table(runs: list[dict[str, Any]], counts: list[int]) -> list[str]:
    """Markdown rows: per algorithm and worker count, median seconds and steps to the threshold, and the speedups."""
    rows = [
        "| algorithm | workers | reached | median seconds | median steps | speedup (time) | steps vs 1 worker "
        "| paper (same threads) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for algo in dict.fromkeys(run["algo"] for run in runs):
        base_seconds = base_steps = None
        for n in counts:
            hits = [run["hit"] for run in runs if run["algo"] == algo and run["n_workers"] == n]
            reached = [hit for hit in hits if hit is not None]
            if len(reached) * 2 <= len(hits):
                rows.append(f"| {algo} | {n} | {len(reached)}/{len(hits)} | not reached | | | | |")
                continue
            seconds = statistics.median(hit["seconds"] for hit in reached)
            steps = statistics.median(hit["steps"] for hit in reached)
            if n == 1:
                base_seconds, base_steps = seconds, steps
            speedup = f"{base_seconds / seconds:.2f}x" if base_seconds else ""
            ratio = f"{steps / base_steps:.2f}" if base_steps else ""
            paper = PAPER_SPEEDUP.get(algo, {}).get(n, "")
            rows.append(
                f"| {algo} | {n} | {len(reached)}/{len(hits)} | {seconds:.1f} | {steps:,.0f} | {speedup} | {ratio} | {paper} |"
            )
    return rows


def baseline_rows(runs: list[dict[str, Any]], baselines: list[str], counts: list[int]) -> list[str]:
    """Markdown rows: each of our algorithms' median time with each worker count, as a fraction of a baseline's."""
    rows = [
        "| algorithm | workers | median seconds | baseline | its median seconds | time / baseline's |",
        "|---|---|---|---|---|---|",
    ]
    for baseline in baselines:
        hits = [run["hit"] for run in runs if run["algo"] == baseline and run["hit"] is not None]
        if not hits:
            rows.append(f"| | | | {baseline} | not reached | |")
            continue
        base = statistics.median(hit["seconds"] for hit in hits)
        for algo in dict.fromkeys(run["algo"] for run in runs if run["algo"] not in baselines):
            for n in counts:
                reached = [run["hit"] for run in runs if run["algo"] == algo and run["n_workers"] == n and run["hit"]]
                if reached:
                    seconds = statistics.median(hit["seconds"] for hit in reached)
                    rows.append(f"| {algo} | {n} | {seconds:.1f} | {baseline} | {base:.1f} | {seconds / base:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument(
        "--budget", type=at_least(1), default=1_000_000, help="step budget of each run (its schedules follow it)"
    )
    parser.add_argument("--algos", nargs="+", default=OURS)
    parser.add_argument(
        "--counts", nargs="+", type=at_least(1), default=None, help="worker counts (default: 1, 2, 4, ... cores)"
    )
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1, 2])
    parser.add_argument(
        "--baselines", nargs="*", default=[], help="zoo keys run as their settings give them (a2c), alternating with ours"
    )
    parser.add_argument("--out", default=None, help="write the runs as JSON here")
    args = parser.parse_args()
    counts = args.counts or worker_counts(usable_cores())
    runs = []
    for seed in args.seeds:
        for baseline in args.baselines:
            runs.append(time_to_threshold(baseline, args.env, seed, None, args.threshold, args.budget))
            print(json.dumps(runs[-1]), flush=True)
        for n in counts:
            for algo in args.algos:
                run = time_to_threshold(algo, args.env, seed, n, args.threshold, args.budget)
                runs.append(run)
                print(json.dumps(run), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(runs))
    print("\n".join(table([run for run in runs if run["algo"] not in args.baselines], counts)))
    if args.baselines:
        print("\n".join(baseline_rows(runs, args.baselines, counts)))


if __name__ == "__main__":
    main()
