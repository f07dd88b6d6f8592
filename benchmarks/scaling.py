"""Worker scaling: steps per second of our algorithms with 1, 2, 4, ... workers, beside the paper's Table 2.

Each configuration is our shipped zoo entry with ``n_workers`` overridden through the zoo's
hyperparameters; every measurement is a throughput run (:mod:`benchmarks.throughput`) in a
fresh process, worker counts and algorithms alternating within each repeat.

The paper's Table 2 is not the same quantity: it is the speedup in the *time to reach a
reference score* (averaged over seven Atari games, on a 16-core CPU), which also holds any
change in data efficiency with more threads (hence its super-linear one-step Q figures).
Ours is the speedup in environment steps per second alone.
"""

from typing import Any

from benchmarks.throughput import Job, summarize

#: Mnih et al. 2016, Table 2: training speedup with 2, 4, 8 and 16 threads over one thread.
PAPER_SPEEDUP: dict[str, dict[int, float]] = {
    "async_onestep_q": {2: 3.0, 4: 6.3, 8: 13.3, 16: 24.1},
    "async_onestep_sarsa": {2: 2.8, 4: 5.9, 8: 13.1, 16: 22.1},
    "async_nstep_q": {2: 2.7, 4: 5.9, 8: 10.7, 16: 17.2},
    "a3c": {2: 2.1, 4: 3.7, 8: 6.9, 16: 12.5},
}


def worker_counts(cores: int, largest: int | None = None) -> list[int]:
    """1, 2, 4, ... up to ``largest`` (default: ``cores``), and ``cores`` itself if it is not a power of two."""
    largest = cores if largest is None else min(largest, cores)
    counts = [1]
    while counts[-1] * 2 <= largest:
        counts.append(counts[-1] * 2)
    if largest not in counts:
        counts.append(largest)
    return counts


def jobs(keys: list[str], counts: list[int]) -> list[Job]:
    """Every configuration with every worker count, worker counts outermost (so neighbours differ in both)."""
    return [(key, n) for n in counts for key in keys]


def summarize_runs(results: dict[Job, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per configuration and worker count (as a string, for JSON): runs, median/min/max, speedup over 1 worker."""
    table: dict[str, dict[str, Any]] = {}
    for (key, n_workers), runs in results.items():
        rates = [run["steps_per_s"] for run in runs]
        table.setdefault(key, {})[str(n_workers)] = dict(runs=runs, summary=summarize(rates))
    for per_count in table.values():
        base = per_count["1"]["summary"]["median"] if "1" in per_count else None
        for entry in per_count.values():
            entry["speedup"] = entry["summary"]["median"] / base if base else None
    return table
