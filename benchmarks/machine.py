"""What the report says about where and with what it ran: CPU, cores, memory, load, versions, commit."""

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sb3_async.common.cpus import usable_cpus

#: Distributions whose versions the report lists.
PACKAGES = ("torch", "stable-baselines3", "sb3-contrib", "rl_zoo3", "gymnasium", "ale-py", "sb3-async", "numpy", "matplotlib")


#: The CPUs this process may run on (sb3-async's default ``n_workers``).
usable_cores = usable_cpus


def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """CPU model, usable and present cores, memory in GiB and the load average now."""
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    return dict(
        cpu=_proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        usable_cores=usable_cores(),
        cpus=os.cpu_count(),
        memory_gib=round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
        system=f"{platform.system()} {platform.release()}",
        load_average=list(os.getloadavg()),
    )


def versions() -> dict[str, str | None]:
    """Python's version and each of :data:`PACKAGES`' (None where it is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def git_commit(root: Path) -> str | None:
    """``git rev-parse --short HEAD`` of ``root``, marked ``+changes`` when tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Untracked files (such as this benchmark's own output) do not change what was measured.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+changes" if dirty else commit
