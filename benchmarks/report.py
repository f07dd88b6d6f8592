"""The markdown report (``docs/benchmarks.md``) written from the results of ``python -m benchmarks``."""

import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks.configs import CONFIGS, is_atari
from benchmarks.scaling import PAPER_SPEEDUP

HEADERS = {
    "machine": "## Machine and versions",
    "throughput": "## Throughput",
    "ceiling": "### Machine ceiling",
    "scaling": "## Worker scaling",
    "learning": "## Learning speed",
    "raw": "## Raw results",
}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _steps(value: float | None) -> str:
    if value is None:
        return "not reached"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.1f} s"


def _spread(summary: dict[str, Any], fmt: Any) -> str:
    """``median (min - max)`` of a censored summary; "not reached" stands for seeds that did not get there."""
    if summary["n"] == 1:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} ({fmt(summary['min'])} - {fmt(summary['max'])})"


def _values(values: list[float], fmt: Any) -> str:
    median = statistics.median(values)
    return fmt(median) if len(values) == 1 else f"{fmt(median)} ({fmt(min(values))} - {fmt(max(values))})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _network(network: dict[str, Any]) -> str:
    extractor = network["features_extractor"]
    body = "MLP " + network["net_arch"] if extractor == "FlattenExtractor" else extractor
    n = network["parameters"]
    size = f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"
    return f"{network['policy']}: {body}, {size} parameters"


def machine_section(meta: dict[str, Any]) -> str:
    """Date, machine, load, versions, commit and the command line."""
    m = meta["machine"]
    lines = [
        HEADERS["machine"],
        "",
        f"- Date: {meta['date']} (the run took {meta.get('wall_seconds', 0) / 60:.1f} minutes)",
        f"- Machine: {m['cpu']}, {m['usable_cores']} usable cores (of {m['cpus']}), {m['memory_gib']} GiB memory, "
        f"{m['system']}",
        "- Load average (1, 5, 15 min) at start: {}; at the end: {}".format(
            ", ".join(f"{x:.2f}" for x in m["load_average"]),
            ", ".join(f"{x:.2f}" for x in meta.get("load_average_end", [])) or "-",
        ),
        "- Versions: " + ", ".join(f"{name} {version or 'not installed'}" for name, version in meta["versions"].items()),
        f"- Commit: {meta['git'] or 'unknown (not a git checkout)'}",
        f"- Command: `{meta['command']}` (sections: {', '.join(meta['sections'])})",
        "",
    ]
    if m["load_average"][0] > 0.25 * m["usable_cores"]:
        lines += [
            f"**The machine was busy when the run started** (load {m['load_average'][0]:.2f} on "
            f"{m['usable_cores']} cores): other processes took CPU time from the measurements, and "
            "multi-threaded torch (A2C's default) suffers most from that.",
            "",
        ]
    return "\n".join(lines) + "\n"


def throughput_section(section: dict[str, Any], cores: int) -> str:
    """Steps per second against A2C, frames per second per core (Atari), and each configuration's ceiling."""
    parts = [
        HEADERS["throughput"],
        "",
        "Environment steps per second in training, measured between the end of a warm-up and the end of "
        "each run, each run in a fresh process; configurations alternate within each repeat. The "
        "median over repeats, its range, and its ratio to A2C's median. Every model is built by "
        "rl_zoo3's `ExperimentManager` from a hyperparameter file: A2C with the zoo's A2C settings "
        "(rl_zoo3 `hyperparams/a2c.yml`), *A3C (A2C's settings)* with that same file, and our four "
        "algorithms with their shipped entries (`zoo_configs/`: the `atari` entry for Pong, the "
        "`CartPole-v1` entry for CartPole), so the settings are exactly those users get. A2C runs "
        "in one process with torch's default threads; our algorithms run one single-threaded "
        "worker process per usable core, each with its own copy of the VecEnv (`n_envs` "
        "environments per worker). *A2C (1 torch thread)* is A2C in a process limited to one "
        "torch thread (rl_zoo3's `--num-threads 1`). *(AleVecEnv)*: the same, with the zoo's "
        "`--ale-vec-env` (Atari only): each VecEnv is an `AleVecEnv`, ale-py's emulation and "
        "preprocessing in C++ on one thread, instead of `AtariWrapper`-wrapped games. Networks: A2C's `CnnPolicy` is SB3's "
        "`NatureCNN` (32-64-64 filters, 512 units); our `atari` entries use the paper's smaller "
        "network, `PaperCnnPolicy` (`PaperCNN`: 16-32 filters, 256 units); on CartPole, MLPs of the "
        "sizes in the table. On Atari one step is 4 frames (action repeat); *frames/s per core* divides "
        f"the frames per second by the {cores} usable cores every configuration had.",
        "",
    ]
    for env_id, env in section.items():
        atari = is_atari(env_id)
        parts.append(
            f"### {env_id}\n\n{_count(env['repeats'], 'repeat')} of {env['steps']:,} steps each (rate measured "
            f"after {env['warmup']:,} warm-up steps).\n"
        )
        header = ["configuration", "settings", "network", "workers x envs", "torch threads", "steps/s (median)"]
        header += (
            ["min - max", "x A2C"] + (["frames/s", "frames/s per core"] if atari else []) + ["ceiling steps/s", "% of ceiling"]
        )
        rows = []
        for key, entry in env["configs"].items():
            s = entry["summary"]
            ours = CONFIGS[key].algo != "a2c"
            row = [
                entry["label"],
                entry["settings"],
                _network(entry["network"]),
                f"{entry['n_workers']} x {entry['n_envs']}",
                "1 per worker" if ours else str(entry["torch_threads"]),
                _rate(s["median"]),
                f"{_rate(s['min'])} - {_rate(s['max'])}",
                "-" if entry["ratio_to_a2c"] is None else f"{entry['ratio_to_a2c']:.2f}",
            ]
            if atari:
                row += [_rate(4 * s["median"]), _rate(4 * s["median"] / cores)]
            ceiling = entry["ceiling"]
            row.append(_rate(ceiling["ceiling_steps_per_s"]) if ceiling else "-")
            row.append("-" if entry["percent_of_ceiling"] is None else f"{entry['percent_of_ceiling']:.0f}%")
            rows.append(row)
        parts.append(_table(header, rows))

    parts += [
        HEADERS["ceiling"],
        "",
        "The ceiling is the rate these cores would reach if they did nothing but the configuration's "
        "own unavoidable work, perfectly in parallel. In a process with one torch thread, on the "
        "configuration's own model and VecEnv, a loop does only that work, in the order training does "
        "it: `n_steps` times the policy's forward pass without gradient on the `n_envs` observations "
        "and one VecEnv step with random actions, then one update (the forward pass with gradient on "
        "the `n_steps x n_envs` samples, backward pass, gradient clipping and the model's own optimizer "
        "step, with its loss: A2C's for actor-critic models; for the Q-networks a regression towards "
        "targets from the target network, evaluated on the states the method bootstraps from). No "
        "rollout buffer, no returns, no callbacks, no parameter copies. The loop times (a) the VecEnv "
        "step, per environment step, (b) the forward pass and (c) the update; one environment step "
        "then costs `(a) + (b)/n_envs + (c)/(n_steps x n_envs)` seconds of one core. The loop runs in "
        "one process per usable core, all started together, because cores that share caches, memory "
        "bandwidth and a power budget are slower together than one alone; the ceiling is the sum over "
        "the processes of `1 / cost`. The same loop in one process on an otherwise idle machine is "
        "shown beside (*alone*): `cores / alone cost` is what the cores would allow if they did not "
        "slow each other down. The ceiling is measured after the training runs of every repeat (the "
        "speed of a shared machine drifts) and the median is shown. What the measured rate lacks to "
        "100% is everything else: Python and SB3 bookkeeping, rollout buffers and returns, the "
        "bootstrap value's forward pass at the end of each rollout, copying the shared parameters, "
        "inter-process messages, waiting, or, for A2C, stepping environments in one process while "
        "the other cores idle.",
        "",
    ]
    for env_id, env in section.items():
        header = ["configuration", "n_envs", "n_steps", "(a) env step µs", "(b) forward ms", "(c) update ms"]
        header += ["cost per step µs", "ceiling steps/s", "measured % of ceiling", "alone: cost µs", "cores / alone cost"]
        rows = []
        for entry in env["configs"].values():
            c = entry["ceiling"]
            if c is None:
                continue
            rows.append(
                [
                    entry["label"],
                    str(c["n_envs"]),
                    str(c["n_steps"]),
                    f"{1e6 * c['env_step_s']:.1f}",
                    f"{1e3 * c['forward_s']:.2f}",
                    f"{1e3 * c['update_s']:.2f}",
                    f"{1e6 * c['cost_per_step_s']:.1f}",
                    _rate(c["ceiling_steps_per_s"]),
                    "-" if entry["percent_of_ceiling"] is None else f"{entry['percent_of_ceiling']:.0f}%",
                    f"{1e6 * c['alone_cost_per_step_s']:.1f}",
                    _rate(c["alone_ceiling_steps_per_s"]),
                ]
            )
        cores = next((e["ceiling"]["cores"] for e in env["configs"].values() if e["ceiling"]), "?")
        parts.append(f"**{env_id}** ({cores} usable cores)\n\n" + _table(header, rows))
    return "\n".join(parts) + "\n"


def scaling_section(section: dict[str, Any]) -> str:
    """Steps per second against workers, and the speedups beside the paper's Table 2."""
    parts = [
        HEADERS["scaling"],
        "",
        "Steps per second of our algorithms (shipped zoo entries, `n_workers` overridden through the "
        "zoo's hyperparameters) with 1, 2, 4, ... workers up to the usable cores, each run in a fresh "
        "process, and the speedup over one worker, shaped like the paper's Table 2. **The paper's "
        "figures are not the same quantity**: they are speedups in the time to reach a reference "
        "score (mean of seven Atari games, 16 CPU cores), which also reflect how data efficiency "
        "changes with the number of threads (hence one-step Q's super-linear speedups). Ours are "
        "speedups in environment steps per second only, and no speedup can exceed the number of "
        "cores the machine has.",
        "",
    ]
    for env_id, env in section.items():
        counts = env["counts"]
        columns = sorted(set(counts) | {1, 2, 4, 8, 16})
        parts.append(
            f"### {env_id}\n\n{_count(env['repeats'], 'repeat')} of {env['steps']:,} steps per worker "
            f"({env['warmup']:,} warm-up per worker); "
            f"{_count(max(counts), 'usable core')}.\n"
        )
        rows = []
        for key, per_count in env["configs"].items():
            rows.append(
                [CONFIGS[key].label]
                + [_rate(per_count[str(n)]["summary"]["median"]) if str(n) in per_count else "-" for n in counts]
            )
        parts.append("Steps per second (median):\n\n" + _table(["method", *(_count(n, "worker") for n in counts)], rows))
        if "NoFrameskip" in env_id:
            # An Atari step is 4 frames (the frame skip); one worker keeps one core busy.
            rows = [
                [CONFIGS[key].label]
                + [_rate(4 * per_count[str(n)]["summary"]["median"] / n) if str(n) in per_count else "-" for n in counts]
                for key, per_count in env["configs"].items()
            ]
            header = ["method", *(_count(n, "worker") for n in counts)]
            parts.append("Frames per second per worker (median; 1 step = 4 frames):\n\n" + _table(header, rows))
        rows = []
        for key, per_count in env["configs"].items():
            row = [CONFIGS[key].label]
            for n in columns:
                ours = f"{per_count[str(n)]['speedup']:.2f}" if str(n) in per_count else "-"
                paper = PAPER_SPEEDUP.get(key, {}).get(n, 1.0 if n == 1 else None)
                row.append(f"{ours} / {'-' if paper is None else f'{paper:.1f}'}")
            rows.append(row)
        header = ["Method", *(f"{n} thread{'s' if n > 1 else ''}" for n in columns)]
        parts.append("Speedup over one worker, **ours / paper's Table 2**:\n\n" + _table(header, rows))
    return "\n".join(parts) + "\n"


def learning_section(section: dict[str, Any], assets: Path, report: Path) -> str:
    """Plots, steps and seconds to the threshold, final rewards."""
    parts = [
        HEADERS["learning"],
        "",
        "Mean evaluation reward against wall-clock seconds of training and against environment steps, "
        "with each algorithm's zoo settings (rl_zoo3's `ExperimentManager`, as in the throughput "
        "section). During training a callback keeps snapshots of the policy; only after training "
        "is each snapshot evaluated, so evaluation takes no CPU time from training and the seconds "
        "are training seconds for every algorithm alike (greedy evaluation for the value-based "
        "methods and on CartPole, stochastic for A2C/A3C on Atari, as the zoo does). Each run is a "
        "fresh process; seeds 0, 1, ...; the curves are the median over seeds with a band from the "
        "minimum to the maximum, interpolated between snapshots up to where the algorithm's shortest "
        "run ends.",
        "",
    ]
    for env_id, env in section.items():
        plan = env["plan"]
        plot = os.path.relpath(assets / env["plot"], report.parent)
        budget_rows = []
        for algo, entry in env["algos"].items():
            budget = f"{_steps(plan['timesteps'][algo])} steps"
            if plan["max_seconds"] is not None:
                budget = f"{_duration(plan['max_seconds'])} of training (step budget {budget}, which the schedules follow)"
            snapshots = (
                f"every {_duration(plan['snapshot_seconds'])}"
                if plan["snapshot_seconds"] is not None
                else f"every {_steps(plan['snapshot_every'][algo])} steps"
            )
            budget_rows.append([entry["label"], entry["settings"], budget, snapshots, str(len(entry["runs"]))])
        parts.append(f"### {env_id}\n\n![{env_id} learning curves]({plot})\n")
        parts.append(
            f"Evaluation: {_count(plan['eval_episodes'], 'episode')} per snapshot.\n\n"
            + _table(["algorithm", "settings", "budget per run", "snapshots", "seeds"], budget_rows)
        )
        if plan["threshold"] is not None:
            threshold = plan["threshold"]
            rows = []
            for entry in env["algos"].values():
                summary = entry["to_threshold"]["summary"]
                rows.append(
                    [
                        entry["label"],
                        f"{summary['eval']['steps']['reached']}/{summary['eval']['steps']['n']}",
                        _spread(summary["eval"]["steps"], _steps),
                        _spread(summary["eval"]["seconds"], _seconds),
                        f"{summary['train']['steps']['reached']}/{summary['train']['steps']['n']}",
                        _spread(summary["train"]["steps"], _steps),
                        _spread(summary["train"]["seconds"], _seconds),
                    ]
                )
            header = ["algorithm", "eval: seeds reached", "eval: steps", "eval: seconds"]
            header += ["train: seeds reached", "train: steps", "train: seconds"]
            parts.append(
                f"Steps and seconds to {threshold:g}, median (min - max) over seeds; a seed that does not get "
                'there within its budget counts as later than all others ("not reached"). **eval**: the '
                f"first snapshot whose evaluation reaches {threshold:g} and whose next one does too "
                f"(`benchmarks.learning.first_sustained`); **train**: the step at which the mean reward of "
                f"the last 100 training episodes first reaches {threshold:g} (`train_hit`).\n\n" + _table(header, rows)
            )
        rows = []
        for entry in env["algos"].values():
            final = entry["final"]
            rows.append(
                [
                    entry["label"],
                    _values(final["steps"], _steps),
                    _values(final["seconds"], _seconds),
                    _values(final["final"], lambda x: f"{x:.1f}"),
                    _values(final["best"], lambda x: f"{x:.1f}"),
                ]
            )
        parts.append(
            "At the end of training, median (min - max) over seeds:\n\n"
            + _table(["algorithm", "steps trained", "seconds", "final evaluation", "best evaluation"], rows)
        )
    return "\n".join(parts) + "\n"


def write_report(results: dict[str, Any], path: Path, assets: Path) -> Path:
    """Write the whole report to ``path`` (plots and results.json are in ``assets``); return ``path``."""
    meta = results["meta"]
    text = ["# Benchmarks\n"]
    text.append(
        f"Written by `python -m benchmarks` on {meta['date'][:10]}; rerun it (same options) to update this "
        "page, its plots and its raw results rather than editing them.\n"
    )
    if meta["quick"]:
        text.append("**This is a `--quick` run: tiny budgets that only exercise the pipeline. Its numbers mean nothing.**\n")
    text.append(machine_section(meta))
    not_run = "Not run in this invocation (`--only {}`).\n".format(",".join(meta["sections"]))
    text.append(
        throughput_section(results["throughput"], meta["machine"]["usable_cores"])
        if "throughput" in results
        else f"{HEADERS['throughput']}\n\n{not_run}"
    )
    text.append(scaling_section(results["scaling"]) if "scaling" in results else f"{HEADERS['scaling']}\n\n{not_run}")
    text.append(
        learning_section(results["learning"], assets, path) if "learning" in results else f"{HEADERS['learning']}\n\n{not_run}"
    )
    raw = os.path.relpath(assets / "results.json", path.parent)
    text.append(
        f"{HEADERS['raw']}\n\n[`{raw}`]({raw}) holds everything above and more: the options and budgets "
        "(`meta.plan`), every throughput and scaling run, the ceiling's timings, and every learning run "
        "with all its evaluated snapshots (steps, seconds, training and evaluation rewards).\n"
    )
    path.write_text("\n".join(text))
    return path
