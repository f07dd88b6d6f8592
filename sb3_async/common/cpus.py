"""How many CPUs this process may use, and how many local workers that allows."""

import os
import warnings

__all__ = ["MAX_WORKERS_PER_CPU", "check_local_workers", "usable_cpus"]

#: The most local worker processes per usable CPU.
MAX_WORKERS_PER_CPU = 8


def usable_cpus() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_local_workers(n_workers: int) -> None:
    """
    Refuse more local workers than ``MAX_WORKERS_PER_CPU`` per usable CPU (each is a process with its
    own copy of the model and the environment: thousands would exhaust memory long before they
    ran), and warn when there are more workers than CPUs (they share the cores: no faster).
    """
    cpus = usable_cpus()
    if n_workers > MAX_WORKERS_PER_CPU * cpus:
        raise ValueError(
            f"n_workers={n_workers} is more than {MAX_WORKERS_PER_CPU} worker processes per usable CPU ({cpus} CPUs): "
            f"each worker is a process with its own model copy and environments. Use at most "
            f"{MAX_WORKERS_PER_CPU * cpus}, ideally {cpus}; for more, spread the workers over machines (backend='ray')"
        )
    if n_workers > cpus:
        warnings.warn(
            f"n_workers={n_workers} is more than the {cpus} usable CPUs: the workers will share cores, "
            "which costs time switching between them and does not step faster"
        )
