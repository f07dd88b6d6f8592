"""A long Atari training run that survives being stopped: checkpoints, resumes, and writes its curve.

    python -m benchmarks.atari --algo a3c --env PongNoFrameskip-v4 --run-dir runs/pong_a3c \
        --timesteps 10000000
    python -m benchmarks.atari --run-dir runs/pong_a3c            # resume (or just report) it
    python -m benchmarks.atari --run-dir runs/a --compare runs/b  # two runs at equal steps

The model is built by rl_zoo3's ``ExperimentManager`` from our hyperparameter file (``-params``
overrides entries, as the zoo's flag does), so it is exactly what ``python -m sb3_async.zoo
train`` would train (``--ale-vec-env``: as it would with that flag). Every finished training
episode is appended to ``episodes.csv`` in the run folder (global step, training seconds, score:
the game's raw score, as ``Monitor`` records it below ``AtariWrapper`` or ``AleVecEnv`` reports
it, length, and the worker that played it: with the Q methods each worker explores with its own
final epsilon, so ``curve.png`` also shows the mean of each epsilon); every
``--checkpoint-minutes`` the model is saved to ``checkpoint.zip`` with the run's state in
``state.json``. Run the same command again (or with only ``--run-dir``)
and it resumes from the last checkpoint: the learning-rate and exploration schedules follow the
run's whole step budget, not the chunk. The run records its entry as the zoo read it (with
``-params``) and refuses to resume if the entry reads otherwise now: the checkpoint would bring back
the algorithm's settings and the YAML the environment's. When the budget is spent, the final policy is evaluated
and ``summary.json`` and ``curve.png`` (score against steps and against seconds) are written.

A run that may be cut off (one command of the 16-core machine lasts 10 minutes) is started in the
background, ``setsid nohup python -m benchmarks.atari ... &``, and polled with ``--report``.
"""

import argparse
import csv
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from benchmarks.cli import at_least, params_option, parse_params, positive
from benchmarks.configs import experiment
from sb3_async.common.cpus import usable_cpus
from sb3_async.zoo import ALGOS

__all__ = ["main", "read_episodes", "rolling_mean"]

_STATE = "state.json"
_EPISODES = "episodes.csv"
_COLUMNS = ["steps", "seconds", "score", "length", "worker"]
_NO_WORKER = -1  # rows written before episodes named their worker
_CHECKPOINT = "checkpoint.zip"
# The zoo evaluates value-based agents greedily and the others' Atari agents stochastically.
_GREEDY = {"async_nstep_q", "async_onestep_q", "async_onestep_sarsa"}
# Options that set up a run: a run resumed from its folder keeps those it was started with.
_NEW_RUN_ONLY = ("algo", "env", "timesteps", "seed", "workers", "params", "ale_vec_env")
# A new run's defaults: not argparse's, which would hide whether an option was given.
_DEFAULT_ENV = "PongNoFrameskip-v4"
_DEFAULT_TIMESTEPS = 10_000_000
_DEFAULT_SEED = 0
_DEFAULT_EVAL_EPISODES = 10


class RunLog(BaseCallback):
    """
    Appends each finished episode to ``episodes.csv``; saves a checkpoint every ``checkpoint_seconds``
    and stops training after ``stop_after_seconds`` (both in wall-clock seconds of this chunk).
    """

    def __init__(
        self,
        run_dir: Path,
        state: dict[str, Any],
        checkpoint_seconds: float,
        stop_after_seconds: float | None,
        until_mean: float | None = None,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.checkpoint_seconds = checkpoint_seconds
        self.stop_after_seconds = stop_after_seconds
        self.until_mean = until_mean
        self._file: Any = None
        self._writer: Any = None

    def _on_training_start(self) -> None:
        self._start = time.monotonic()
        self._seconds_before = self.state["seconds"]
        self._last_checkpoint = self._start
        # train() has written the header (a fresh file, or the rows kept up to the checkpoint).
        self._file = open(self.run_dir / _EPISODES, "a", newline="")
        self._writer = csv.writer(self._file)

    def seconds(self) -> float:
        """Training seconds of the whole run so far."""
        return self._seconds_before + time.monotonic() - self._start

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                row = [self.num_timesteps, round(self.seconds(), 2), episode["r"], episode["l"]]
                self._writer.writerow([*row, episode.get("worker", _NO_WORKER)])
        now = time.monotonic()
        if now - self._last_checkpoint >= self.checkpoint_seconds:
            self._last_checkpoint = now
            self.checkpoint()
        if self.until_mean is not None and self._reached_mean():
            return False
        return self.stop_after_seconds is None or now - self._start < self.stop_after_seconds

    def _reached_mean(self) -> bool:
        buffer = self.model.ep_info_buffer
        return len(buffer) == buffer.maxlen and float(np.mean([e["r"] for e in buffer])) >= self.until_mean

    def checkpoint(self) -> None:
        """Save the model and the run's state, each atomically (a kill mid-write keeps the previous one)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self.state.update(steps=int(self.model.num_timesteps), seconds=round(self.seconds(), 2))
        if getattr(self.model, "worker_final_eps", None):
            self.state["worker_final_eps"] = list(self.model.worker_final_eps)
        self.model.save(self.run_dir / "checkpoint.tmp.zip")
        os.replace(self.run_dir / "checkpoint.tmp.zip", self.run_dir / _CHECKPOINT)
        _write_json(self.run_dir / _STATE, self.state)

    def _on_training_end(self) -> None:
        self.checkpoint()
        self._file.close()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_episodes(run_dir: Path) -> np.ndarray:
    """
    The episodes of a run as rows ``(steps, seconds, score, length, worker)`` (worker -1 where the
    file predates the column); rows after the last checkpoint are dropped.
    """
    path = run_dir / _EPISODES
    width = len(_COLUMNS)
    if not path.exists():
        return np.zeros((0, width))
    state = json.loads((run_dir / _STATE).read_text())
    rows = []
    with open(path) as f:
        for row in csv.reader(f):
            try:
                rows.append([float(x) for x in row])
            except ValueError:  # the header, or a row cut short when the process was killed
                continue
    rows = [row for row in rows if len(row) in (4, width)]
    episodes = np.array([row + [_NO_WORKER] * (width - len(row)) for row in rows]).reshape(-1, width)
    return episodes[episodes[:, 0] <= state["steps"]]


def _drop_rows_after_checkpoint(run_dir: Path, steps: int) -> None:
    # Episodes logged after the checkpoint we resume from will be played again.
    episodes = read_episodes(run_dir)
    with open(run_dir / _EPISODES, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_COLUMNS)
        for row in episodes[episodes[:, 0] <= steps]:
            writer.writerow([int(row[0]), row[1], row[2], int(row[3]), int(row[4])])


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values (fewer at the start) at each position."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def _manager(state: dict[str, Any], run_dir: Path) -> Any:
    return experiment(
        state["algo"],
        state["env"],
        state["seed"],
        state["timesteps"],
        str(run_dir / "zoo"),
        parse_params(state["params"]),
        ale_vec_env=state.get("ale_vec_env", False),
    )


class EntryChangedError(ValueError):
    """The entry a run folder was started with is not the one the zoo reads now."""


def _entry_read(manager: Any) -> dict[str, str]:
    """The entry as the zoo read it (with ``-params`` applied, before any processing), values as text."""
    import yaml

    with open(Path(manager.params_path) / "config.yml") as f:
        # Our own file, written by the zoo a moment ago (an OrderedDict, which safe_load refuses).
        saved = yaml.unsafe_load(f)
    return {key: repr(value) for key, value in saved.items()}


def train(
    run_dir: Path, state: dict[str, Any], minutes: float | None, checkpoint_minutes: float, until_mean: float | None = None
) -> None:
    """
    Train (or resume) the run in ``run_dir`` until its budget is spent, ``minutes`` have passed, or
    the mean of the last 100 training games reaches ``until_mean``.
    """
    manager = _manager(state, run_dir)
    # The zoo builds the model and its env exactly as `python -m sb3_async.zoo train` would.
    model, _ = manager.setup_experiment()
    entry = _entry_read(manager)
    # Runs started before runs recorded their entry are taken as they are.
    recorded = state.get("entry", entry)
    changed = sorted(key for key in set(entry) | set(recorded) if entry.get(key) != recorded.get(key))
    if changed:
        model.env.close()
        raise EntryChangedError(
            f"{run_dir} was started with other settings than its entry has now ("
            + "; ".join(f"{key}: {recorded.get(key, '(none)')} then, {entry.get(key, '(none)')} now" for key in changed)
            + "): resumed, it would go on with a mix of both; resume it with the code it was started with"
        )
    state["entry"] = entry
    checkpoint = run_dir / _CHECKPOINT
    if checkpoint.exists():
        model = ALGOS[state["algo"]].load(checkpoint, env=model.get_env(), device="cpu")
        _drop_rows_after_checkpoint(run_dir, int(state["steps"]))
        print(f"resumed at {model.num_timesteps} steps, {state['seconds']:.0f} s", flush=True)
    else:
        _drop_rows_after_checkpoint(run_dir, 0)  # an attempt killed before its first checkpoint starts again
        state["n_workers"] = getattr(model, "n_workers", 1)
    remaining = state["timesteps"] - model.num_timesteps
    if remaining > 0:
        log = RunLog(run_dir, state, 60 * checkpoint_minutes, None if minutes is None else 60 * minutes, until_mean)
        try:
            model.learn(remaining, callback=CallbackList([log]), reset_num_timesteps=False, log_interval=None)
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C or SIGTERM (pausing the run): the workers are stopped; keep what they learned.
            log.checkpoint()
            raise
    if model.num_timesteps >= state["timesteps"] and "final_eval" not in state:
        state["final_eval"] = evaluate(manager, model, state)
        _write_json(run_dir / _STATE, state)
    model.env.close()


def evaluate_checkpoint(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the last checkpoint (the run may go on later); recorded in the run's ``evaluations``."""
    manager = _manager(state, run_dir)
    model, _ = manager.setup_experiment()
    model = ALGOS[state["algo"]].load(run_dir / _CHECKPOINT, env=model.get_env(), device="cpu")
    result = dict(steps=int(state["steps"]), seconds=state["seconds"], **evaluate(manager, model, state))
    state.setdefault("evaluations", []).append(result)
    _write_json(run_dir / _STATE, state)
    model.env.close()
    return result


def evaluate(manager: Any, model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The final policy over ``eval_episodes`` whole games, as the zoo evaluates Atari agents."""
    from stable_baselines3.common.evaluation import evaluate_policy

    n = state["eval_episodes"]
    env = manager.create_envs(n, eval_env=True, no_log=True)
    scores, _ = evaluate_policy(
        model, env, n_eval_episodes=n, deterministic=state["algo"] in _GREEDY, return_episode_rewards=True
    )
    env.close()
    return dict(mean=float(np.mean(scores)), std=float(np.std(scores)), scores=[float(s) for s in scores])


def report(run_dir: Path, window: int = 100) -> dict[str, Any]:
    """Summary of the run so far, written to ``summary.json``, with ``curve.png`` when matplotlib is there."""
    state = json.loads((run_dir / _STATE).read_text())
    episodes = read_episodes(run_dir)
    summary: dict[str, Any] = {
        key: state.get(key)
        for key in ("algo", "env", "seed", "params", "n_workers", "worker_final_eps", "timesteps", "machine")
    }
    summary.update(steps=state["steps"], seconds=state["seconds"], episodes=len(episodes))
    if len(episodes):
        means = rolling_mean(episodes[:, 2], window)
        summary[f"mean{window}_end"] = float(means[-1])
        summary[f"best_mean{window}"] = float(means.max())
        # The score at round step counts, for tables: mean of the last `window` episodes up to there.
        marks = {}
        for million in range(1, int(episodes[-1, 0] // 1_000_000) + 1):
            upto = np.searchsorted(episodes[:, 0], million * 1_000_000, side="right")
            if upto:
                marks[f"{million}M"] = round(float(means[upto - 1]), 2)
        summary[f"mean{window}_at"] = marks
        by_eps = _by_final_eps(episodes, state, window)
        if by_eps:
            summary[f"mean{window}_end_by_final_eps"] = {eps: float(eps_means[-1]) for eps, (_, eps_means) in by_eps.items()}
    for key in ("final_eval", "evaluations"):
        if key in state:
            summary[key] = state[key]
    _write_json(run_dir / "summary.json", summary)
    if len(episodes):
        _plot(run_dir, state, episodes, window)
    return summary


def _by_final_eps(episodes: np.ndarray, state: dict[str, Any], window: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """
    The steps of the episodes played by the workers of each final epsilon, and their rolling mean,
    keyed by the epsilon (``"0.01"``); empty unless the workers explore with different epsilons.
    """
    final_eps = state.get("worker_final_eps") or []
    if len(set(final_eps)) < 2:
        return {}
    result = {}
    for eps in sorted(set(final_eps)):
        workers = [worker for worker, worker_eps in enumerate(final_eps) if worker_eps == eps]
        played = episodes[np.isin(episodes[:, 4], workers)]
        if len(played):
            result[f"{eps:g}"] = (played[:, 0], rolling_mean(played[:, 2], window))
    return result


def _plot(run_dir: Path, state: dict[str, Any], episodes: np.ndarray, window: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    means = rolling_mean(episodes[:, 2], window)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, column, label in ((axes[0], 0, "environment steps (all workers)"), (axes[1], 1, "training seconds")):
        scale = 1e6 if column == 0 else 3600.0
        ax.plot(episodes[:, column] / scale, episodes[:, 2], ".", ms=2, alpha=0.3, color="gray", label="episode")
        ax.plot(episodes[:, column] / scale, means, color="C0", label=f"mean of last {window}")
        ax.set_xlabel(f"{label} ({'millions' if column == 0 else 'hours'})")
        ax.grid(alpha=0.3)
    for index, (eps, (steps, eps_means)) in enumerate(_by_final_eps(episodes, state, window).items()):
        label = f"workers at final epsilon {eps}, last {window}"
        axes[0].plot(steps / 1e6, eps_means, lw=0.8, color=f"C{index + 1}", label=label)
    axes[0].set_ylabel("score per game")
    axes[0].legend(loc="lower right", fontsize=7)
    params = " ".join(state["params"])
    fig.suptitle(f"{state['algo']} on {state['env']}, {state['n_workers']} workers, seed {state['seed']} {params}".strip())
    fig.tight_layout()
    fig.savefig(run_dir / "curve.png", dpi=90)
    plt.close(fig)


def _labels(states: list[dict[str, Any]]) -> list[str]:
    """
    What sets each run apart: the entry's settings that differ between the runs, as each run read
    them (runs record their entry since 2026-11-24; before that, their ``-params`` only).
    """
    entries = [state.get("entry") for state in states]
    if any(entry is None for entry in entries):
        return [
            " ".join(state["params"])
            or ("its entry (in its state.json)" if entry is not None else "the entry of its day (not recorded)")
            for state, entry in zip(states, entries)
        ]
    keys = sorted({key for entry in entries for key in entry})
    differ = [key for key in keys if len({entry.get(key) for entry in entries}) > 1]
    return [" ".join(f"{key}:{entry.get(key, '(none)')}" for key in differ) or "the same entry" for entry in entries]


def compare(run_dirs: list[Path], out: Path, window: int = 100, every: int = 250_000) -> list[dict[str, Any]]:
    """
    The runs side by side at equal steps (the mean of the last ``window`` games up to every ``every``
    steps), as rows; their curves against steps and seconds in ``out`` when matplotlib is there.
    """
    states = [json.loads((run_dir / _STATE).read_text()) for run_dir in run_dirs]
    runs = []
    for run_dir, label in zip(run_dirs, _labels(states)):
        episodes = read_episodes(run_dir)
        runs.append((run_dir, label, episodes, rolling_mean(episodes[:, 2], window) if len(episodes) else episodes[:, 2]))
    last = min(int(episodes[-1, 0]) if len(episodes) else 0 for _, _, episodes, _ in runs)
    rows = []
    for mark in range(every, last + 1, every):
        row: dict[str, Any] = {"steps": mark}
        for run_dir, _, episodes, means in runs:
            upto = np.searchsorted(episodes[:, 0], mark, side="right")
            row[run_dir.name] = round(float(means[upto - 1]), 2) if upto else None
        rows.append(row)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return rows
    # Below the plots, at full length: what sets the runs apart is often deep inside policy_kwargs.
    legend = [textwrap.fill(f"{run_dir.name}: {label}", 150) for run_dir, label, _, _ in runs]
    legend_lines = sum(text.count("\n") + 1 for text in legend)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4 + 0.15 * legend_lines), sharey=True)
    for ax, column, label in ((axes[0], 0, "environment steps (all workers), millions"), (axes[1], 1, "training hours")):
        scale = 1e6 if column == 0 else 3600.0
        for index, (_, _, episodes, means) in enumerate(runs):
            ax.plot(episodes[:, column] / scale, means, color=f"C{index}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"score per game, mean of last {window}")
    fig.legend(axes[0].lines, legend, loc="lower left", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, (0.15 * legend_lines + 0.2) / (4 + 0.15 * legend_lines), 1, 1))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return rows


def _machine() -> str:
    cpus = usable_cpus()
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpus} CPUs ({model})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.atari", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path, help="folder of the run (created, or resumed if it exists)")
    parser.add_argument("--algo", choices=sorted(ALGOS), help="zoo key (new runs only)")
    parser.add_argument("--env", help=f"Atari env id (new runs only; default {_DEFAULT_ENV})")
    parser.add_argument(
        "--timesteps", type=at_least(1), help=f"step budget of the whole run (new runs only; default {_DEFAULT_TIMESTEPS:.0e})"
    )
    parser.add_argument("--seed", type=at_least(0), help=f"new runs only; default {_DEFAULT_SEED}")
    parser.add_argument("--workers", type=at_least(1), help="n_workers (new runs only; default: the entry's, or usable CPUs)")
    parser.add_argument("-params", nargs="*", help="entry overrides, as the zoo's -params key:value (new runs only)")
    parser.add_argument(
        "--ale-vec-env", action="store_true", help="the games as one AleVecEnv, as the zoo's --ale-vec-env (new runs only)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=at_least(1),
        help=f"games for the final evaluation and --evaluate (default {_DEFAULT_EVAL_EPISODES}; kept by the run)",
    )
    parser.add_argument("--minutes", type=positive, default=None, help="stop this chunk after this many minutes")
    parser.add_argument("--checkpoint-minutes", type=positive, default=5.0)
    parser.add_argument("--until-mean", type=float, default=None, help="stop when the last 100 games' mean reaches this")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate the last checkpoint (eval-episodes games)")
    parser.add_argument("--report", action="store_true", help="only write and print the summary so far")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=None,
        help="other run folders: rows at equal steps, compare.png in --run-dir",
    )
    args = parser.parse_args(argv)
    if args.compare:
        for row in compare([args.run_dir, *args.compare], args.run_dir / "compare.png"):
            print(json.dumps(row), flush=True)
        return 0

    run_dir: Path = args.run_dir
    state_path = run_dir / _STATE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        # Given again, these would be ignored: the run goes on as it was started.
        given = [name for name in _NEW_RUN_ONLY if getattr(args, name) is not None and getattr(args, name) is not False]
        if given:
            options = ", ".join("--" + name.replace("_", "-") if name != "params" else "-params" for name in given)
            parser.error(f"{options}: new runs only, and {run_dir} holds a run ({state['algo']} on {state['env']})")
        if args.eval_episodes is not None:
            state["eval_episodes"] = args.eval_episodes
            _write_json(state_path, state)
    elif args.report or args.evaluate:
        parser.error(f"{run_dir} holds no run")
    else:
        if args.algo is None:
            parser.error("--algo is required for a new run")
        params_option(parser, args.params)  # refused now, before a run folder holds them
        run_dir.mkdir(parents=True, exist_ok=True)
        state = dict(
            algo=args.algo,
            env=args.env or _DEFAULT_ENV,
            timesteps=int(_DEFAULT_TIMESTEPS if args.timesteps is None else args.timesteps),
            seed=_DEFAULT_SEED if args.seed is None else args.seed,
            params=list(args.params or []) + ([f"n_workers:{args.workers}"] if args.workers else []),
            eval_episodes=_DEFAULT_EVAL_EPISODES if args.eval_episodes is None else args.eval_episodes,
            ale_vec_env=args.ale_vec_env,
            machine=_machine(),
            steps=0,
            seconds=0.0,
        )
        _write_json(state_path, state)
    if args.evaluate:
        print(json.dumps(evaluate_checkpoint(run_dir, state)), flush=True)
    elif not args.report:
        try:
            train(run_dir, state, args.minutes, args.checkpoint_minutes, args.until_mean)
        except EntryChangedError as error:
            parser.error(str(error))
    print(json.dumps(report(run_dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
