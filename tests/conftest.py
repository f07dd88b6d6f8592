import os
from collections.abc import Iterator

import pytest

# Python's own helpers, started on first use and alive until the interpreter exits (e.g. by a
# SubprocVecEnv in the main process): not something a test leaves behind.
_PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def live_processes() -> Iterator[tuple[int, list[str], bytes]]:
    """``(pid, stat fields after the command name, command line)`` of every live (non-zombie) process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces; the fields after its closing parenthesis do not.
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if fields[0] != "Z":
            yield int(entry), fields, command


def live_children(pid: int | None = None) -> list[int]:
    """Pids of the live (non-zombie) child processes of ``pid`` (default: this process), from /proc."""
    pid = os.getpid() if pid is None else pid
    return [
        child
        for child, fields, command in live_processes()
        if int(fields[1]) == pid and not any(helper.encode() in command for helper in _PYTHON_HELPERS)
    ]


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Every test must leave no child process alive once ``learn`` (or whatever it ran) has returned."""
    before = set(live_children())
    yield
    left = set(live_children()) - before
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture
def preprocess_obs_calls(monkeypatch) -> list[int]:
    """Counts the calls SB3's policies make to ``preprocess_obs`` (one list entry per call); the real function still runs."""
    import stable_baselines3.common.policies as policies_module

    calls: list[int] = []
    preprocess_obs = policies_module.preprocess_obs

    def counted(*args, **kwargs):
        calls.append(1)
        return preprocess_obs(*args, **kwargs)

    monkeypatch.setattr(policies_module, "preprocess_obs", counted)
    return calls
