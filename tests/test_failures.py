"""Failures in workers reach the user; nothing is left running afterwards."""

import os
import queue
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_async import A3C, WorkerError
from tests.conftest import live_children


class CrashingEnv(gym.Wrapper):
    """CartPole that raises on its ``crash_at``-th step (never reached in the main process)."""

    def __init__(self, crash_at: int = 50):
        super().__init__(gym.make("CartPole-v1"))
        self.crash_at = crash_at
        self.n_steps = 0

    def step(self, action):
        self.n_steps += 1
        if self.n_steps == self.crash_at:
            raise RuntimeError("the environment broke down on purpose")
        return super().step(action)


def test_exception_in_worker_is_raised_with_its_traceback():
    model = A3C("MlpPolicy", lambda: CrashingEnv(), n_workers=2, seed=0)
    with pytest.raises(WorkerError) as error:
        model.learn(100_000)
    message = str(error.value)
    assert "the environment broke down on purpose" in message
    assert "Traceback (most recent call last)" in message
    assert "in step" in message, "the worker's own stack is in the message"
    assert not live_children()


class KillWorker(BaseCallback):
    def __init__(self, at: int):
        super().__init__()
        self.at = at
        self.victim: int | None = None

    def _on_step(self) -> bool:
        if self.victim is None and self.num_timesteps >= self.at:
            self.victim = live_children()[0]
            os.kill(self.victim, signal.SIGKILL)
        return True


def test_worker_killed_by_a_signal_is_reported_not_waited_on():
    model = A3C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_workers=2, seed=0)
    callback = KillWorker(at=500)
    start = time.monotonic()
    with pytest.raises(WorkerError, match="killed by signal SIGKILL"):
        model.learn(10_000_000, callback=callback)
    assert time.monotonic() - start < 60
    assert not live_children()


def test_failure_then_learn_again():
    """After a failed run the model is usable: the next learn starts fresh workers."""
    model = A3C("MlpPolicy", lambda: CrashingEnv(crash_at=30), n_workers=2, seed=0)
    with pytest.raises(WorkerError):
        model.learn(10_000)
    model.set_env(make_vec_env("CartPole-v1", n_envs=1))
    model.learn(500)
    assert model.num_timesteps >= 500


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    from stable_baselines3.common.callbacks import BaseCallback
    from sb3_async import A3C

    # A terminal's Ctrl-C, even when the tests run in the background (where SIGINT is ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    class Announce(BaseCallback):
        def _on_step(self):
            if self.n_calls == 1:
                print("training", flush=True)
            return True

    model = A3C("MlpPolicy", "CartPole-v1", n_workers=2, seed=0)
    try:
        model.learn(100_000_000, callback=Announce())
    except KeyboardInterrupt:
        print("interrupted", model.num_timesteps, flush=True)
        sys.exit(3)
    """
)


def _start_long_training() -> subprocess.Popen:
    """A long training run in a process of its own, in a new session (which stands for a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )


def test_ctrl_c_stops_cleanly():
    # Ctrl-C signals the terminal's whole process group.
    process = _start_long_training()
    try:
        assert process.stdout.readline().strip() == "training"
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 3, err
    assert out.startswith("interrupted")
    # Nothing of the process group is left (the workers were in it).
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def test_ctrl_c_while_reading_the_queue_is_held_back_not_lost():
    """Ctrl-C inside the pool's queue read is raised once the read is over, also if it ended in Empty."""
    from sb3_async.common.pool import deferred_signals

    finished_read = False
    # Python's default handler, also when the tests run in the background (where SIGINT is ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # a pending handler would run here if it were not held back
                finished_read = True
                raise queue.Empty
        assert finished_read
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_orphaned_workers_exit_when_the_main_process_is_killed():
    process = _start_long_training()
    try:
        assert process.stdout.readline().strip() == "training"
        workers = live_children(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
