"""Where one worker's time goes: py-spy samples a worker of a training run and sorts them by phase.

A configuration of ``benchmarks.configs`` trains in a fresh process (as ``benchmarks.throughput``
runs it) for as long as it takes; after ``--warmup`` seconds py-spy (``pip install py-spy``)
samples the first worker process, without pausing it and counting the time it waits too, for
``--seconds`` (``--warmup`` counts from the start of the training process, set-up included);
then the run is ended. Every sample is given to the first phase whose functions are
on its stack:

- *optimizer step*: the shared optimizer's step on the shared parameters (Hogwild)
- *backward*: autograd's backward pass of the update
- *update: forward and loss*: the rest of the update (the rollout's forward pass with gradient, the loss)
- *pull*: copying the shared parameters into the worker's copy (θ' = θ)
- *env step*: the worker's VecEnv stepping its environments
- *acting*: the rest of the rollout (the policy's forward pass without gradient, the rollout
  buffer, the bootstrap value, callbacks)
- *other*: everything else (waiting for the main process, logging, the value-based methods' bookkeeping
  between their steps)

For SB3's own algorithms (A2C, DQN), which have no workers, the training process is sampled;
configurations with the Ray backend are not offered (their workers are Ray's processes).

    python -m benchmarks.profile_worker --config a3c@ale --env PongNoFrameskip-v4 --seconds 30
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.cli import at_least, positive
from benchmarks.throughput import fresh_command

ROOT = Path(__file__).resolve().parent.parent

#: Phases in the order samples are given to them, with the functions that mark each (py-spy's names).
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("optimizer step", ("HogwildOptimizer.step", "RMSpropTFLike.step", "RMSprop.step", "Adam.step")),
    ("backward", ("Tensor.backward", "_engine_run_backward")),
    ("update: forward and loss", ("A2C.train", "A3C.train", "A3C._train_recurrent", "._train_on_rollout", "DQN.train")),
    ("pull", ("LocalCopy.pull",)),
    ("env step", ("VecEnv.step", ".step_wait", ".step_async")),
    ("acting", ("collect_rollouts", "._act", "._first_actions")),
]
OTHER = "other"


def phase_of(frames: list[str]) -> str:
    """
    The phase of one sample.

    :param frames: its stack, py-spy's ``function (file:line)`` frames, outermost first
    """
    names = [frame.split(" (", 1)[0] for frame in frames]
    for phase, markers in PHASES:
        if any(marker in name for name in names for marker in markers):
            return phase
    return OTHER


def shares(raw_samples: str) -> dict[str, float]:
    """
    The fraction of the main thread's samples in each phase.

    :param raw_samples: py-spy's ``--format raw`` output (``stack count`` lines)
    """
    counts: Counter[str] = Counter()
    for line in raw_samples.splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        # Python threads beside the main one (multiprocessing's queue feeder) mostly wait; --idle counts that.
        if any(frame.startswith("Thread._bootstrap") for frame in frames):
            continue
        counts[phase_of(frames)] += int(count)
    total = sum(counts.values())
    if total == 0:
        raise RuntimeError("py-spy recorded no samples")
    return {phase: counts[phase] / total for phase, _ in [*PHASES, (OTHER, ())]}


def _children(pid: int) -> list[int]:
    try:
        return sorted(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except FileNotFoundError:
        return []


def _has_workers(key: str) -> bool:
    from benchmarks.configs import CONFIGS
    from sb3_async.zoo import ALGOS as OUR_ALGOS

    return CONFIGS[key].algo in OUR_ALGOS


def _profilable() -> list[str]:
    # A Ray backend's workers are Ray's actor processes, not children of the training process.
    from benchmarks.configs import CONFIGS

    return sorted(key for key, config in CONFIGS.items() if ("backend", "ray") not in config.overrides)


def _end(training: subprocess.Popen) -> None:
    # SIGINT first, so that training closes its workers and removes its temporary folders.
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, None)):
        try:
            os.killpg(training.pid, sig)
        except ProcessLookupError:
            break
        try:
            training.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    training.wait()


def py_spy() -> str | None:
    """py-spy's executable: on the PATH, or beside this Python (a virtual environment not activated)."""
    return shutil.which("py-spy", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def profile(
    key: str, env_id: str, n_workers: int | None, warmup: float, seconds: int, rate: int, raw: Path | None = None
) -> dict[str, Any]:
    """
    Train configuration ``key`` in a fresh process and sample its first worker (SB3's own
    algorithms: the training process) with py-spy.

    :param key: a configuration of ``benchmarks.configs`` (not one with the Ray backend)
    :param env_id: the environment
    :param n_workers: workers of our algorithms (None: the entry's)
    :param warmup: seconds from the start of the training process (imports and set-up included) to the first sample
    :param seconds: seconds of sampling
    :param rate: samples per second
    :param raw: where to keep py-spy's samples (stacks with counts, for a flame graph)
    :return: the configuration and the share of the sampled process's main thread in each phase
    """
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    # Steps enough never to end on its own: the run is ended once sampled.
    command = fresh_command(key, env_id, 10**9, 0, n_workers)
    with tempfile.TemporaryDirectory() as folder:
        # A file, not a pipe: nobody reads a pipe during the run, and a full one would stall training.
        with open(Path(folder) / "stderr.txt", "w+") as stderr:
            training = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True
            )
            try:
                time.sleep(warmup)
                if training.poll() is not None:
                    stderr.seek(0)
                    raise RuntimeError(f"{' '.join(command)} ended early:\n{stderr.read()[-4000:]}")
                sampled = _children(training.pid) if _has_workers(key) else [training.pid]
                if not sampled:
                    raise RuntimeError(f"{key} started no worker process within {warmup} s")
                out = Path(folder) / "samples.txt"
                record = [executable, "record", "--pid", str(sampled[0]), "--duration", str(seconds)]
                record += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking", "--idle"]
                done = subprocess.run(record, capture_output=True, text=True)
                if done.returncode != 0 or not out.exists():
                    raise RuntimeError(f"{' '.join(record)} failed:\n{done.stderr[-2000:]}")
                result = shares(out.read_text())
                if raw is not None:
                    shutil.copyfile(out, raw)
            finally:
                _end(training)
    return dict(config=key, env=env_id, n_workers=n_workers, seconds=seconds, shares=result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=_profilable(), default="a3c@ale")
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--workers", type=at_least(1), default=None, help="n_workers of our algorithms (default: the entry's)")
    parser.add_argument(
        "--warmup", type=positive, default=20.0, help="seconds from the start of training (set-up included) to sampling"
    )
    parser.add_argument("--seconds", type=at_least(1), default=30, help="seconds of sampling")
    parser.add_argument("--rate", type=at_least(1), default=100, help="samples per second")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's samples here (for a flame graph)")
    args = parser.parse_args(argv)
    if args.workers is not None and not _has_workers(args.config):
        parser.error(f"--workers: {args.config} is SB3's own algorithm, which has no workers")
    if py_spy() is None:
        parser.error("py-spy is not installed: pip install py-spy")
    result = profile(args.config, args.env, args.workers, args.warmup, args.seconds, args.rate, args.raw)
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    sampled = "one worker" if _has_workers(args.config) else "the training process"
    print(f"{args.config} on {args.env}, {sampled} sampled for {args.seconds} s:")
    for phase, share in result["shares"].items():
        print(f"  {phase:<26} {100 * share:5.1f}%")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
