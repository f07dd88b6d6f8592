"""``python -m benchmarks``: the whole benchmark pipeline, run with ``--quick``, writes its report, plots and results."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

SECTION_HEADERS = [
    "## Machine and versions",
    "## Throughput",
    "### Machine ceiling",
    "## Worker scaling",
    "## Learning speed",
    "## Raw results",
]


def _benchmarks(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_quick_run_writes_every_section_plot_and_the_raw_results(tmp_path):
    out = tmp_path / "docs"
    done = _benchmarks("--quick", "--out", str(out), timeout=570)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"

    report = (out / "benchmarks.md").read_text()
    for header in SECTION_HEADERS:
        assert f"\n{header}\n" in report, header
    assert "--quick" in report and "CartPole-v1" in report and "PongNoFrameskip-v4" in report

    plots = sorted((out / "benchmarks").glob("*.png"))
    assert [p.name for p in plots] == ["learning_CartPole-v1.png", "learning_PongNoFrameskip-v4.png"]
    for plot in plots:
        assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"](benchmarks/{plot.name})" in report

    results = json.loads((out / "benchmarks" / "results.json").read_text())
    assert {"meta", "throughput", "scaling", "learning"} <= set(results)
    assert results["meta"]["quick"] is True
    for env in results["throughput"].values():
        for entry in env["configs"].values():
            assert entry["summary"]["median"] > 0
            assert entry["ceiling"]["ceiling_steps_per_s"] > 0
    ours = {"a3c", "async_nstep_q", "async_onestep_q", "async_onestep_sarsa"}
    assert set(results["learning"]["CartPole-v1"]["algos"]) == ours | {"a2c", "dqn"}

    # Scaling budgets are per worker: two workers run twice the steps of one.
    a3c_scaling = results["scaling"]["CartPole-v1"]["configs"]["a3c"]
    if "2" in a3c_scaling:
        assert a3c_scaling["2"]["runs"][0]["measured_steps"] > 2_000 > a3c_scaling["1"]["runs"][0]["measured_steps"]

    # Progress: a line per finished measurement, as it happens.
    assert "throughput CartPole-v1 a2c [1/1]: " in done.stdout
    assert "scaling CartPole-v1 a3c, 1 worker [1/1]: " in done.stdout
    assert "learning PongNoFrameskip-v4 a3c seed 0: " in done.stdout


def test_unknown_section_is_refused():
    done = _benchmarks("--only", "throughput,speed")
    assert done.returncode == 2
    assert "--only" in done.stderr


def test_unknown_env_is_refused():
    done = _benchmarks("--envs", "CartPole-v1,Breakout")
    assert done.returncode == 2
    assert "--envs" in done.stderr and "Breakout" in done.stderr


def test_atari_env_stepping_benchmark_prints_both_rates(capsys):
    from benchmarks.atari_envs import main

    main(["--rounds", "1", "--steps", "20", "--warmup", "5", "--processes", "1"])
    out = capsys.readouterr().out
    assert "AtariWrapper" in out and "AleVecEnv" in out and "median" in out
    assert "envpool" in out  # timed where installed, said to be missing where not


def test_atari_env_stepping_benchmark_names_envpools_games():
    from benchmarks.atari_envs import _envpool_id

    assert _envpool_id("PongNoFrameskip-v4") == "Pong-v5"
    with pytest.raises(ValueError, match="--env: envpool is timed for ALE's NoFrameskip-v4 games, got ALE/Pong-v5"):
        _envpool_id("ALE/Pong-v5")


@pytest.mark.parametrize(
    "argument, expected",
    [
        ("--count=0", "argument --count: expected at least 1, got 0"),
        ("--count=two", "argument --count: invalid int value: 'two'"),
        ("--count=2.5", "argument --count: expected a whole number, got 2.5"),
        ("--minutes=0", "argument --minutes: expected a finite number above 0, got 0"),
        ("--minutes=nan", "argument --minutes: expected a finite number above 0, got nan"),
        ("--minutes=inf", "argument --minutes: expected a finite number above 0, got inf"),
    ],
)
def test_benchmark_options_refuse_counts_and_durations_out_of_range(argument, expected, capsys):
    from benchmarks.cli import at_least, positive

    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=at_least(1), default=1)
    parser.add_argument("--minutes", type=positive, default=1.0)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([argument])
    assert exited.value.code == 2 and expected in capsys.readouterr().err
    assert parser.parse_args(["--count=1e7", "--minutes=0.05"]) == argparse.Namespace(count=10_000_000, minutes=0.05)


@pytest.mark.parametrize("item", ["n_workers", "n_workers:", ":4", "n_workers:four("])
def test_params_that_are_not_key_value_are_refused_with_the_item(item):
    from benchmarks.cli import parse_params

    assert parse_params(["n_workers:4", "policy_kwargs:dict(net_arch=[8])"]) == {
        "n_workers": 4,
        "policy_kwargs": {"net_arch": [8]},
    }
    with pytest.raises(ValueError, match="-params"):
        parse_params(["ent_coef:0.01", item])


def test_zoo_scores_refuses_an_entry_without_its_env():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.zoo_scores", "--entries", "a3c:CartPole-v1", "a3c"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--entries: expected algo:env pairs" in done.stderr and "got a3c" in done.stderr


def test_worker_profile_gives_each_sample_to_the_first_phase_on_its_stack():
    from benchmarks.profile_worker import shares

    root = "_worker_entry (pool.py:186);A3C._worker_loop (a3c.py:259)"
    raw = "\n".join(
        [
            f"{root};A3C.train (a3c.py:218);A2C.train (a2c.py:175);Tensor.backward (_tensor.py:623) 30",
            f"{root};A3C.train (a3c.py:218);A2C.train (a2c.py:179);HogwildOptimizer.step (local_copy.py:74) 10",
            f"{root};A3C.train (a3c.py:218);A2C.train (a2c.py:150);Conv2d.forward (conv.py:565) 20",
            f"{root};A3C.collect_rollouts (a3c.py:211);WorkerRolloutCallback._on_rollout_start (callbacks.py:28);"
            "HogwildWorker.pull (hogwild.py:43);LocalCopy.pull (local_copy.py:136) 5",
            f"{root};A3C.collect_rollouts (a3c.py:211);VecEnv.step (base_vec_env.py:222) 15",
            f"{root};A3C.collect_rollouts (a3c.py:211);Conv2d.forward (conv.py:565) 15",
            f"{root};HogwildWorker.record_update (hogwild.py:58) 5",
            "Thread._bootstrap (threading.py:1002);Queue._feed (queues.py:231);Condition.wait (threading.py:320) 400",
        ]
    )
    assert shares(raw) == {
        "optimizer step": 0.1,
        "backward": 0.3,
        "update: forward and loss": 0.2,
        "pull": 0.05,
        "env step": 0.15,
        "acting": 0.15,
        "other": 0.05,
    }


def test_worker_profile_fails_before_training_without_py_spy(monkeypatch):
    from benchmarks import profile_worker

    monkeypatch.setattr(profile_worker, "py_spy", lambda: None)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("training started without py-spy"))
    with pytest.raises(RuntimeError, match="py-spy is not installed"):
        profile_worker.profile("a3c", "CartPole-v1", 1, warmup=0.0, seconds=1, rate=10)


def test_the_uint8_image_levers_compute_the_features_sb3_computes(preprocess_obs_calls):
    import torch as th

    from benchmarks.levers import OBSERVATION_SPACE, _features_folded, _features_sb3, _features_unfolded, entry_policy

    policy = entry_policy()
    assert [len(layers) for layers in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net)] == [4, 4]
    images = th.randint(0, 256, (8, *OBSERVATION_SPACE.shape), dtype=th.uint8)
    with th.no_grad():
        sb3 = policy.features_extractor(images.float() / 255.0)  # what SB3's preprocess_obs gives PaperCNN
        assert th.equal(_features_sb3(policy, images), sb3)
        assert len(preprocess_obs_calls) == 1, "the baseline is SB3's path"
        for lever in (_features_folded, _features_unfolded):
            assert th.allclose(lever(policy, images), sb3, atol=1e-5)
        assert len(preprocess_obs_calls) == 1, "the levers skip SB3's preprocessing"


def test_gradient_scale_batch_is_environment_by_environment():
    from benchmarks.gradient_scale import pong_batch
    from sb3_async.common.ale_vec_env import AleVecEnv

    images, n_actions = pong_batch(n_steps=3, n_envs=2, warmup=4, seed=1)
    assert images.shape == (6, 4, 84, 84) and images.dtype.name == "uint8" and n_actions == 6
    env = AleVecEnv("PongNoFrameskip-v4", 2, seed=1)
    env.reset()
    actions = np.random.default_rng(1).integers(0, n_actions, size=(7, 2))
    observed = [env.step(action)[0] for action in actions][4:]
    env.close()
    for game in range(2):
        for step in range(3):
            np.testing.assert_array_equal(images[game * 3 + step], observed[step][game])


@pytest.mark.parametrize("algo", ["a3c", "a3c_lstm"])
def test_gradient_scale_measures_every_parameter_before_and_after_clipping(algo):
    from benchmarks.gradient_scale import loss_settings, measure, pong_batch
    from benchmarks.minatar import atari_entry

    images, n_actions = pong_batch(n_steps=2, n_envs=2, warmup=5)
    entry = atari_entry(algo)
    gradients, total_norm = measure(algo, entry, images, n_actions, n_envs=2, seed=0, eps_values=[1e-5, 1e-7])
    assert any(name.startswith("lstm_actor.") for name in gradients) == (algo == "a3c_lstm")
    shrink = min(1.0, loss_settings(entry)["max_grad_norm"] / total_norm)
    for gradient in gradients.values():
        assert gradient.rms_clipped == pytest.approx(shrink * gradient.rms_before, rel=1e-4)
        assert 0.0 <= gradient.share_below[1e-7] <= gradient.share_below[1e-5] <= 1.0
