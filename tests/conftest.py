import os

import pytest

# Python's own helpers, started on first use and alive until the interpreter exits (e.g. by a
# SubprocVecEnv in the main process): not something a test leaves behind.
_PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _is_python_helper(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            command = f.read()
    except OSError:
        return False
    return any(helper in command for helper in _PYTHON_HELPERS)


def live_children(pid: int | None = None) -> list[int]:
    """Pids of the live (non-zombie) child processes of ``pid`` (default: this process), from /proc."""
    pid = os.getpid() if pid is None else pid
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and not _is_python_helper(entry):
            children.append(int(entry))
    return children


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Every test must leave no child process alive once ``learn`` (or whatever it ran) has returned."""
    before = set(live_children())
    yield
    left = set(live_children()) - before
    assert not left, f"processes left behind: {sorted(left)}"
