"""Learning curves over several seeds: common grids, time to a threshold, and the plots.

Each run's curve (from :func:`benchmarks.learning.run`) holds evaluated snapshots at the steps
and seconds where they were taken, which differ between seeds; curves are interpolated
linearly onto a common grid, up to where the shortest run of the algorithm ends, before the
median and the min-max band across seeds are taken.
"""

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.learning import first_sustained


def on_grid(runs: list[dict[str, Any]], axis: str, n_points: int = 200) -> dict[str, list[float]]:
    """Median, min and max of the evaluation reward of ``runs`` against ``axis`` (``"steps"`` or ``"seconds"``)."""
    end = min(run["curve"][-1][axis] for run in runs)
    grid = np.linspace(0.0, end, n_points)
    rewards = np.array(
        [np.interp(grid, [p[axis] for p in run["curve"]], [p["eval_reward"] for p in run["curve"]]) for run in runs]
    )
    return dict(
        x=grid.tolist(),
        median=np.median(rewards, axis=0).tolist(),
        min=rewards.min(axis=0).tolist(),
        max=rewards.max(axis=0).tolist(),
    )


def censored_summary(values: list[float | None]) -> dict[str, Any]:
    """
    Median and range of ``values`` where None means "not reached within the budget": it counts as
    later than any reached value, so the median is "not reached" only if at least half of them are.
    """
    ordered = sorted(math.inf if v is None else v for v in values)
    median = statistics.median(ordered) if ordered else math.inf

    def finite(value: float) -> float | None:
        return None if math.isinf(value) or math.isnan(value) else value

    return dict(
        median=finite(median),
        min=finite(ordered[0]) if ordered else None,
        max=finite(ordered[-1]) if ordered else None,
        reached=sum(v is not None for v in values),
        n=len(values),
    )


def time_to_threshold(runs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """
    Steps and seconds to ``threshold`` by both criteria of :mod:`benchmarks.learning`, per seed and
    summarized: ``eval`` (first sustained evaluation) and ``train`` (mean of the last 100 training
    episodes).
    """
    per_seed: dict[str, list[dict[str, float] | None]] = {"eval": [], "train": []}
    for run in runs:
        hit = first_sustained(run, threshold)
        per_seed["eval"].append(None if hit is None else dict(steps=hit["steps"], seconds=hit["seconds"]))
        per_seed["train"].append(run["train_hit"])
    summary = {
        criterion: {unit: censored_summary([None if h is None else h[unit] for h in hits]) for unit in ("steps", "seconds")}
        for criterion, hits in per_seed.items()
    }
    return dict(seeds=[run["seed"] for run in runs], per_seed=per_seed, summary=summary)


def final_rewards(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per seed: steps and seconds trained, final and best evaluation reward."""
    return dict(
        steps=[run["curve"][-1]["steps"] for run in runs],
        seconds=[run["train_seconds"] for run in runs],
        final=[run["curve"][-1]["eval_reward"] for run in runs],
        best=[max(p["eval_reward"] for p in run["curve"]) for run in runs],
    )


def plot(
    env_id: str,
    runs: dict[str, list[dict[str, Any]]],
    labels: dict[str, str],
    path: Path,
    threshold: float | None = None,
) -> None:
    """One figure with two panels, reward against seconds and against steps: median over seeds, min-max band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, axis, xlabel in zip(axes, ("seconds", "steps"), ("wall-clock seconds of training", "environment steps")):
        for algo, algo_runs in runs.items():
            curve = on_grid(algo_runs, axis)
            (line,) = ax.plot(
                curve["x"], curve["median"], label=f"{labels[algo]} ({len(algo_runs)} seed{'s' * (len(algo_runs) > 1)})"
            )
            ax.fill_between(curve["x"], curve["min"], curve["max"], color=line.get_color(), alpha=0.2, linewidth=0)
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean evaluation reward")
    axes[0].legend(loc="best", fontsize="small")
    figure.suptitle(f"{env_id}: median over seeds, band from min to max")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
