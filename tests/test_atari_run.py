"""``python -m benchmarks.atari``: a run stopped part-way resumes, records who played each episode and reports."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.atari import _drop_rows_after_checkpoint, _labels, read_episodes

ROOT = Path(__file__).resolve().parent.parent


def _atari_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.atari", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_a_run_cut_short_resumes_to_its_budget_and_reports_each_exploration_rate(tmp_path):
    # CartPole stands in for a game: the module takes any env the entry has settings for.
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--checkpoint-minutes", "0.02"]
    first = _atari_run(
        *common, "--algo", "async_nstep_q", "--env", "CartPole-v1", "--timesteps", "200000", "--workers", "2",
        "--seed", "1", "-params", "exploration_final_eps:[0.5,0.01]", "exploration_final_eps_probs:[0.5,0.5]",
        "--eval-episodes", "2", "--minutes", "0.05",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    paused = json.loads((run_dir / "state.json").read_text())
    assert 0 < paused["steps"] < 200_000 and "final_eval" not in paused
    assert sorted(paused["worker_final_eps"]) == [0.01, 0.5], "seed 1 draws one worker at each epsilon"

    # A run whose entry has changed since it started is not resumed with a mix of both.
    state_path = run_dir / "state.json"
    started_with = {**paused["entry"], "learning_rate": "0.5"}
    state_path.write_text(json.dumps({**paused, "entry": started_with}))
    refused_entry = _atari_run(*common)
    assert refused_entry.returncode == 2 and f"learning_rate: 0.5 then, {paused['entry']['learning_rate']} now" in (
        refused_entry.stderr
    )
    state_path.write_text(json.dumps(paused))

    second = _atari_run(*common)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed at {paused['steps']} steps" in second.stdout
    state = json.loads((run_dir / "state.json").read_text())
    assert state["steps"] >= 200_000 and len(state["final_eval"]["scores"]) == 2
    assert state["worker_final_eps"] == paused["worker_final_eps"], "a resumed run keeps each worker's exploration"

    refused = _atari_run(*common, "--seed", "0", "--ale-vec-env")
    assert refused.returncode == 2 and "--seed, --ale-vec-env: new runs only" in refused.stderr
    again = _atari_run("--run-dir", str(run_dir), "--evaluate", "--eval-episodes", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(json.loads((run_dir / "state.json").read_text())["evaluations"][-1]["scores"]) == 3

    with open(run_dir / "episodes.csv") as f:
        assert next(csv.reader(f)) == ["steps", "seconds", "score", "length", "worker"]
    episodes = read_episodes(run_dir)
    assert np.all(np.diff(episodes[:, 0]) >= 0) and np.all(np.diff(episodes[:, 1]) >= 0)
    assert set(episodes[:, 4]) == {0, 1}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["mean100_end_by_final_eps"]) == {"0.01", "0.5"}
    assert (run_dir / "curve.png").exists()


def test_episodes_written_before_the_worker_column_are_kept_on_resume(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"steps": 300}))
    # The last row was cut short by a kill, after the checkpoint at step 300.
    (tmp_path / "episodes.csv").write_text("steps,seconds,score,length\n100,1.0,-21.0,800\n200,2.0,-20.0,790\n400,4.0,\n")
    _drop_rows_after_checkpoint(tmp_path, 300)
    assert (tmp_path / "episodes.csv").read_text().splitlines() == [
        "steps,seconds,score,length,worker",
        "100,1.0,-21.0,800,-1",
        "200,2.0,-20.0,790,-1",
    ]


def test_compared_runs_are_labelled_by_the_settings_that_differ():
    entry = {"n_envs": "8", "policy_kwargs": "'dict(net_arch=[64])'"}
    runs = [
        {"params": [], "entry": entry},
        {"params": [], "entry": {**entry, "policy_kwargs": "'dict()'"}},
        {"params": ["n_steps:20"], "entry": {**entry, "n_steps": "20"}},
    ]
    assert _labels(runs) == [
        "n_steps:(none) policy_kwargs:'dict(net_arch=[64])'",
        "n_steps:(none) policy_kwargs:'dict()'",
        "n_steps:20 policy_kwargs:'dict(net_arch=[64])'",
    ]
    unrecorded = [{"params": ["n_steps:20"]}, {"params": []}, runs[0]]
    assert _labels(unrecorded) == ["n_steps:20", "the entry of its day (not recorded)", "its entry (in its state.json)"]
