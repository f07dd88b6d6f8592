"""Failures in workers reach the user; nothing is left running afterwards."""

import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_async import A3C, WorkerError
from tests.conftest import live_children, live_processes


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
    from sb3_async.common.signals import deferred_signals

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


# --- what is left behind when the main process dies, and other faults (issue 11) -----------

_PER_WORKER_SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from sb3_async import A3C
    from sb3_async.common.envs import PerWorkerSubprocVecEnv

    class Announce(BaseCallback):
        def _on_step(self):
            if self.n_calls == 1:
                print("training", flush=True)
            return True

    if __name__ == "__main__":
        env = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=PerWorkerSubprocVecEnv)
        model = A3C("MlpPolicy", env, n_workers=2, seed=0)
        try:
            model.learn(50_000_000, callback=Announce())
        except SystemExit as stop:
            print("stopped", stop.code, flush=True)
            raise
    """
)


def _session_processes(session_id: int) -> list[int]:
    """Live (non-zombie) processes of a session."""
    return [pid for pid, fields, _ in live_processes() if int(fields[3]) == session_id]


def _wait_until_gone(session_id: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _session_processes(session_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _session_processes(session_id)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_nothing_is_left_when_the_main_process_is_killed(tmp_path, signum):
    """Workers, their environment processes, the main process's own and Python's helpers all go."""
    script = tmp_path / "train.py"
    script.write_text(_PER_WORKER_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout.readline().strip() == "training"
        # The main process, 2 workers, 2 x 2 worker environment processes, 2 of its own and helpers.
        assert len(_session_processes(process.pid)) >= 9
        os.kill(process.pid, signum)
        process.wait(timeout=30)
        left = _wait_until_gone(process.pid, 20)
        assert not left, f"left behind: {left}"
        if signum == signal.SIGTERM:
            # SIGTERM stops training as Ctrl-C does: the program sees SystemExit(143) and unwinds.
            assert process.returncode == 143
            assert "stopped 143" in process.stdout.read()
    finally:
        for pid in _session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)


class ErrorEnv(gym.Wrapper):
    """CartPole whose step raises on its 20th call (in the environment's own process)."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls == 20:
            raise ValueError("the simulator lost its state on purpose")
        return super().step(action)


def test_error_in_a_worker_environment_process_carries_its_traceback():
    from sb3_async.common.envs import PerWorkerSubprocVecEnv

    env = make_vec_env(ErrorEnv, n_envs=2, vec_env_cls=PerWorkerSubprocVecEnv)
    model = A3C("MlpPolicy", env, n_workers=2, seed=0)
    with pytest.raises(WorkerError) as error:
        model.learn(100_000)
    message = str(error.value)
    assert "the simulator lost its state on purpose" in message
    assert "the process of environment" in message and "died" in message
    env.close()


class HangingEnv(gym.Wrapper):
    """CartPole that hangs in step, in the first process to reach its 100th step."""

    def __init__(self, flag: str):
        super().__init__(gym.make("CartPole-v1"))
        self.flag = flag
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls == 100:
            try:
                os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL))
                time.sleep(3600)
            except FileExistsError:
                pass
        return super().step(action)


def test_a_worker_hung_in_its_environment_is_ended_and_reported(tmp_path, monkeypatch):
    from sb3_async.common import stop_clock

    monkeypatch.setattr(stop_clock, "STOP_GRACE_SECONDS", 2.0)
    model = A3C("MlpPolicy", lambda: HangingEnv(str(tmp_path / "hung")), n_workers=2, seed=0)
    start = time.monotonic()
    with pytest.raises(WorkerError) as error:
        model.learn(3_000)
    assert time.monotonic() - start < 60
    message = str(error.value)
    assert "did not stop within 2 s of the end of training" in message
    assert "in step" in message and "test_failures.py" in message, "the stack it hung in"
    assert "SystemExit" not in message, "reported once, not again as the error of the signal that ended it"


class SlowEveryTenthStep(gym.Wrapper):
    """CartPole whose every tenth step takes 1.5 s (a simulator with slow resets, say)."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls % 10 == 0:
            time.sleep(1.5)
        return super().step(action)


def test_a_last_step_as_slow_as_earlier_ones_is_not_taken_for_a_hang(monkeypatch):
    from sb3_async.common import stop_clock

    # The grace period would end before the last step (the 30th, slow) returns, had the workers not
    # shown steps as slow before it.
    monkeypatch.setattr(stop_clock, "STOP_GRACE_SECONDS", 1.0)
    model = A3C("MlpPolicy", SlowEveryTenthStep, n_workers=1, seed=0)
    model.learn(30)
    assert model.num_timesteps == 30


@pytest.mark.parametrize("where", ["rewards", "observations"])
@pytest.mark.parametrize("algo", ["A3C", "AsyncNStepQ"])
def test_nan_from_the_environment_stops_with_a_clear_error(where, algo):
    import sb3_async

    class NaNEnv(gym.Wrapper):
        def __init__(self):
            super().__init__(gym.make("CartPole-v1"))
            self.calls = 0

        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            self.calls += 1
            if self.calls >= 50:
                if where == "rewards":
                    reward = float("nan")
                else:
                    obs = obs * float("nan")
            return obs, reward, terminated, truncated, info

    model = getattr(sb3_async, algo)("MlpPolicy", NaNEnv, n_workers=2, seed=0)
    with pytest.raises(WorkerError, match=rf"Worker \d failed:(.|\n)*NaN or infinity in its {where}"):
        model.learn(100_000)
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


def test_a_nan_gradient_is_not_applied_and_names_the_parameters():
    from sb3_async.common.worker import NonFiniteError, check_finite_gradients

    good = [("a", th.ones(3)), ("b", th.zeros(2))]
    check_finite_gradients(good)
    with pytest.raises(NonFiniteError, match=r"in b\b"):
        check_finite_gradients([("a", th.ones(3)), ("b", th.tensor([0.0, float("inf")]))])


def test_ctrl_c_while_workers_are_being_forked_stops_them_all(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import signal, sys
            from sb3_async import A3C
            signal.signal(signal.SIGINT, signal.default_int_handler)
            model = A3C("MlpPolicy", "CartPole-v1", n_workers=16, seed=0)
            print("starting", flush=True)
            try:
                model.learn(100_000_000)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(3)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout.readline().strip() == "starting"
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 3, err
        assert "interrupted" in out
        assert not _wait_until_gone(process.pid, 20)
    finally:
        for pid in _session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_fork_failing_part_way_leaves_no_worker(monkeypatch):
    from multiprocessing.context import ForkProcess

    real_start = ForkProcess.start
    calls = []

    def start(self):
        calls.append(self)
        if len(calls) == 2:
            raise OSError(12, "Cannot allocate memory")
        real_start(self)

    monkeypatch.setattr(ForkProcess, "start", start)
    model = A3C("MlpPolicy", "CartPole-v1", n_workers=2, seed=0)
    with pytest.raises(OSError, match="Cannot allocate memory"):
        model.learn(10_000)
    assert not live_children()


class FailsOnceStopped(gym.Wrapper):
    """CartPole whose steps take 0.2 s; a step that ends after ``flag`` exists raises (any crash while stopping)."""

    def __init__(self, flag: str):
        super().__init__(gym.make("CartPole-v1"))
        self.flag = flag

    def step(self, action):
        time.sleep(0.2)
        if os.path.exists(self.flag):
            raise RuntimeError("crashed in the step that was under way when training was stopped")
        return super().step(action)


def test_a_worker_failing_after_a_callback_stopped_training_is_reported(tmp_path):
    flag = str(tmp_path / "stopped")

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            open(flag, "w").close()
            return False

    model = A3C("MlpPolicy", lambda: FailsOnceStopped(flag), n_workers=2, seed=0)
    # The workers are in their (slow) step when the callback stops training: they raise on the way out.
    with pytest.raises(WorkerError, match="crashed in the step that was under way"):
        model.learn(1_000_000, callback=Stop())


class SegfaultEnv(gym.Wrapper):
    """CartPole whose 30th step crashes the process in native code (a simulator's segfault)."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls == 30:
            import ctypes

            ctypes.string_at(0)
        return super().step(action)


def test_a_worker_crashing_in_native_code_reports_the_python_stack_it_crashed_in():
    model = A3C("MlpPolicy", SegfaultEnv, n_workers=2, seed=0)
    with pytest.raises(WorkerError) as error:
        model.learn(100_000)
    message = str(error.value)
    assert "killed by signal SIGSEGV" in message
    assert "in step" in message and "test_failures.py" in message


class FailingInWorkers(gym.Wrapper):
    """CartPole that cannot be built (``where="init"``) or reset (``"reset"``) outside ``main_pid``'s own env processes."""

    def __init__(self, where: str, main_pid: int):
        super().__init__(gym.make("CartPole-v1"))
        self.where, self.in_worker = where, os.getppid() != main_pid
        if where == "init" and self.in_worker:
            raise RuntimeError("the simulator could not start on purpose")

    def reset(self, **kwargs):
        if self.where == "reset" and self.in_worker:
            raise RuntimeError("the simulator could not reset on purpose")
        return super().reset(**kwargs)


@pytest.mark.parametrize("where", ["init", "reset"])
@pytest.mark.parametrize("which", [0, 1], ids=["first env", "second env"])
def test_an_environment_process_failing_to_start_or_reset_carries_its_traceback(where, which):
    from functools import partial

    from sb3_async.common.envs import PerWorkerSubprocVecEnv

    fns = [partial(gym.make, "CartPole-v1"), partial(gym.make, "CartPole-v1")]
    fns[which] = partial(FailingInWorkers, where, os.getpid())
    env = PerWorkerSubprocVecEnv(fns, start_method="fork")
    model = A3C("MlpPolicy", env, n_workers=2, seed=0)
    start = time.monotonic()
    with pytest.raises(WorkerError) as error:
        model.learn(10_000)
    assert time.monotonic() - start < 30, "not waited on until the grace period ends"
    message = str(error.value)
    assert f"the simulator could not {'start' if where == 'init' else 'reset'} on purpose" in message
    assert f"the process of environment {which}" in message
    env.close()


def test_an_environment_that_cannot_be_built_leaves_no_directory(tmp_path, monkeypatch):
    from functools import partial

    from sb3_async.common.envs import PerWorkerSubprocVecEnv

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="the simulator could not start on purpose"):
        PerWorkerSubprocVecEnv([partial(FailingInWorkers, "init", -1)], start_method="fork")
    assert os.listdir(tmp_path) == []


class OwnsAScratchDirectory(gym.Wrapper):
    """CartPole with a directory made when it is built and removed when it is closed (recordings, say)."""

    def __init__(self, directory: str):
        super().__init__(gym.make("CartPole-v1"))
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def reset(self, **kwargs):
        assert os.path.isdir(self.directory), "the environment's directory is gone"
        return super().reset(**kwargs)

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)
        super().close()


def test_workers_leave_the_main_process_environment_open(tmp_path):
    # The workers step forked copies of the main process's environment: closing them there would
    # release what the copies share with it.
    model = A3C("MlpPolicy", lambda: OwnsAScratchDirectory(str(tmp_path / "scratch")), n_workers=2, seed=0)
    model.learn(500)
    assert (tmp_path / "scratch").is_dir()
    model.env.reset()
    model.learn(500)
    model.env.close()


def _half_a_message_then_die(context) -> None:
    if context.worker_id == 0:
        # What a kill half-way through writing a report leaves in the pipe (a report bigger than the
        # pipe, the OOM killer): a header announcing 1 MB, and a few bytes of it.
        os.write(context._outbox._writer.fileno(), struct.pack("!i", 1 << 20) + b"partial")
        os._exit(9)
    while not context.budget.stopped:
        time.sleep(0.01)


@pytest.mark.timeout(120)
def test_a_worker_killed_half_way_through_a_message_is_reported_not_waited_on():
    from sb3_async.common.pool import WorkerPool

    start = time.monotonic()
    with pytest.raises(WorkerError, match="exited with code 9"):
        with WorkerPool(_half_a_message_then_die, [0, 1], 0, 10**9, slack=10) as pool:
            while True:
                pool.poll(0.1)
    # The read of the rest of the message waits for ever, but not in the main thread.
    assert time.monotonic() - start < 60


def _many_reports_then_raise(context) -> None:
    if context.worker_id == 0:
        for i in range(20_000):
            context.send("report", i)
        raise RuntimeError("the real cause, behind a backlog of reports")
    while not context.budget.stopped:
        time.sleep(0.01)


def test_a_dead_worker_s_traceback_comes_through_behind_its_reports():
    from sb3_async.common.pool import WorkerPool

    for _ in range(3):
        with pytest.raises(WorkerError, match="the real cause, behind a backlog of reports"):
            with WorkerPool(_many_reports_then_raise, [0, 1], 0, 10**9, slack=10) as pool:
                while True:
                    pool.poll(0.1)


def _fails_to_rebuild(main_pid: int, error: type):
    if os.getpid() == main_pid:
        raise error("this object cannot be rebuilt in the main process")


class RebuiltOnlyInWorkers:
    def __init__(self, main_pid: int, error: type):
        self.main_pid, self.error = main_pid, error

    def __reduce__(self):
        return _fails_to_rebuild, (self.main_pid, self.error)


def _sends_an_unreadable_report(context, error: type) -> None:
    if context.worker_id == 0:
        context.send("report", RebuiltOnlyInWorkers(context._parent_pid, error))
    for _ in range(200):  # 200 kB more behind it: the queue must still be read
        context.send("report", b"x" * 1000)
    while not context.budget.stopped:
        time.sleep(0.01)


# OSError: a tensor shared through a file descriptor that its sender has closed, say.
@pytest.mark.parametrize("error", [ValueError, OSError], ids=lambda error: error.__name__)
def test_a_message_that_cannot_be_read_is_raised_and_the_workers_still_stop(error, capsys):
    from functools import partial

    from sb3_async.common.pool import WorkerPool

    pool = WorkerPool(partial(_sends_an_unreadable_report, error=error), [0, 1], 0, 10**9, slack=10)
    with pytest.raises(WorkerError, match="A message from a worker could not be read"):
        with pool:
            while True:
                pool.poll(0.1)
    assert not any(process.is_alive() for process in pool._processes)
    assert not os.path.isdir(pool._stack_dir)
    # The messages behind it were read: each worker could flush its reports and say it was done.
    left = capsys.readouterr().err
    assert "without reporting an error" not in left and "did not stop" not in left


def _twenty_reports(context) -> None:
    for i in range(20):
        context.send("report", (context.worker_id, i))


def test_every_report_of_workers_that_finished_is_returned():
    from sb3_async.common.pool import WorkerPool

    for _ in range(10):
        pool = WorkerPool(_twenty_reports, [0, 1], 0, 10**9, slack=10**9)
        received = []
        with pool:
            # The workers exit right after their reports: poll often sees an exit before its "done".
            while not pool.finished:
                received += pool.poll(0.02)
        assert sorted(payload for _, _, payload in received) == [(w, i) for w in (0, 1) for i in range(20)]


def _fails_after_the_stop_then_hangs_at_exit(context) -> None:
    # A non-daemon thread: the process waits for it at exit, after the error was sent.
    threading.Thread(target=time.sleep, args=(60,)).start()
    while not context.budget.stopped:
        time.sleep(0.01)
    raise ValueError("a genuine error raised after the stop")


def test_the_error_of_a_worker_that_then_hung_is_reported_with_the_hang(monkeypatch):
    from sb3_async.common import stop_clock
    from sb3_async.common.pool import WorkerPool

    monkeypatch.setattr(stop_clock, "STOP_GRACE_SECONDS", 1.0)
    pool = WorkerPool(_fails_after_the_stop_then_hangs_at_exit, [0], 0, 10**9, slack=10)
    pool.start()
    time.sleep(0.5)
    problems = "\n".join(pool.close())
    assert "did not stop within 1 s" in problems
    assert "a genuine error raised after the stop" in problems
