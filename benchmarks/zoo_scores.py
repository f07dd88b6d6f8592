"""Scores of the shipped zoo entries: train each with its stated ``n_timesteps``, several seeds.

For each (algorithm, environment) entry of ``zoo_configs/``, trains with exactly the entry's
settings (through rl_zoo3's ExperimentManager, as ``python -m sb3_async.zoo train`` does) and
evaluates the final policy over 10 episodes (and snapshots along the way, after training).
Prints one markdown row per entry: median and range over seeds of the final evaluation, the
best evaluation, and the training seconds; writes the raw results as JSON.

    python -m benchmarks.zoo_scores --entries a3c:CartPole-v1 a3c:Pendulum-v1 --seeds 0 1 2
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from benchmarks.cli import at_least
from benchmarks.learning import run
from sb3_async.zoo import config_path


def entry_timesteps(algo: str, env_id: str) -> int:
    with open(config_path(algo)) as f:
        return int(float(yaml.safe_load(f)[env_id]["n_timesteps"]))


def _span(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def score(algo: str, env_id: str, seeds: list[int], out: Path, snapshots: int = 10) -> dict[str, Any]:
    n_timesteps = entry_timesteps(algo, env_id)
    results = []
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        result = run(algo, env_id, seed, n_timesteps, snapshot_every=max(n_timesteps // snapshots, 1))
        results.append(result)
        final = result["curve"][-1]["eval_reward"]
        print(f"  {algo} {env_id} seed {seed}: final {final:.1f} in {result['train_seconds']:.0f} s", flush=True)
        # After every seed: a long entry stopped part-way keeps the seeds it finished.
        (out / f"{algo}_{env_id}.json").write_text(json.dumps(results))
    finals = [r["curve"][-1]["eval_reward"] for r in results]
    bests = [max(p["eval_reward"] for p in r["curve"]) for r in results]
    seconds = [r["train_seconds"] for r in results]
    row = f"| {algo} | {env_id} | {n_timesteps:.0e} | {_span(finals, 1)} | {_span(bests, 1)} | {_span(seconds)} |"
    return dict(algo=algo, env=env_id, n_timesteps=n_timesteps, finals=finals, bests=bests, seconds=seconds, row=row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", nargs="+", required=True, help="algo:env pairs, e.g. a3c:CartPole-v1")
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/zoo_scores")
    args = parser.parse_args()
    # The env id may itself hold a colon (gymnasium's "module:Env-v0").
    malformed = [entry for entry in args.entries if "" in entry.partition(":")]
    if malformed:
        parser.error(f"--entries: expected algo:env pairs such as a3c:CartPole-v1, got {' '.join(malformed)}")
    rows = []
    for entry in args.entries:
        algo, env_id = entry.split(":", 1)
        rows.append(score(algo, env_id, args.seeds, Path(args.out))["row"])
    print("| algorithm | environment | n_timesteps | final evaluation | best evaluation | training seconds |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
