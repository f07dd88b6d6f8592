"""``python -m sb3_async.zoo COMMAND [rl_zoo3 arguments]``: rl_zoo3's command line, with sb3-async's algorithms.

COMMAND is one of rl_zoo3's: train, enjoy, record_video, record_training, plot_train,
plot_from_file, all_plots, push_to_hub. The arguments are rl_zoo3's own and reach it unchanged.
What the launcher adds, for our algorithms only: ``train`` without ``-conf`` uses our
hyperparameter file (``zoo_configs/<algo>.yml``) instead of looking for one inside rl_zoo3, and
``--vec-env subproc`` gives each worker sub-processes of its own (``PerWorkerSubprocVecEnv``).
One flag is added to ``train``, for any algorithm: ``--ale-vec-env`` builds Atari environments as
``AleVecEnv`` (ale-py's C++ emulation and preprocessing) instead of ``AtariWrapper`` ones.

    python -m sb3_async.zoo train --algo a3c --env CartPole-v1
    python -m sb3_async.zoo enjoy --algo a3c --env CartPole-v1 -f logs/
"""

import argparse
import runpy
import subprocess
import sys
from collections.abc import Callable

from sb3_async.common.envs import PerWorkerSubprocVecEnv
from sb3_async.zoo import ALGOS, config_path, register

__all__ = ["main"]


def _function(module: str, name: str) -> Callable[[], None]:
    def run() -> None:
        getattr(__import__(module, fromlist=[name]), name)()

    return run


def _script(module: str) -> Callable[[], None]:
    def run() -> None:
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    return run


def _record_training() -> None:
    # record_training runs `python -m rl_zoo3.record_video` in sub-processes, where our
    # algorithms would not be registered: route those through this launcher.
    call = subprocess.call

    def call_through_launcher(command, *args, **kwargs):  # type: ignore[no-untyped-def]
        if list(command[:3]) == ["python", "-m", "rl_zoo3.record_video"]:
            command = [sys.executable, "-m", "sb3_async.zoo", "record_video", *command[3:]]
        return call(command, *args, **kwargs)

    subprocess.call = call_through_launcher  # type: ignore[assignment]
    try:
        _script("rl_zoo3.record_training")()
    finally:
        subprocess.call = call  # type: ignore[assignment]


COMMANDS: dict[str, Callable[[], None]] = {
    "train": _function("rl_zoo3.train", "train"),
    "enjoy": _function("rl_zoo3.enjoy", "enjoy"),
    "record_video": _script("rl_zoo3.record_video"),
    "record_training": _record_training,
    "plot_train": _function("rl_zoo3.plots", "plot_train"),
    "plot_from_file": _function("rl_zoo3.plots", "plot_from_file"),
    "all_plots": _function("rl_zoo3.plots", "all_plots"),
    "push_to_hub": _script("rl_zoo3.push_to_hub"),
}


def _train_options(args: list[str]) -> argparse.Namespace:
    """
    The options of rl_zoo3's ``train`` that the launcher acts on, read as rl_zoo3's argparse reads
    them (``--algo=a3c``, ``-conf=FILE``, ``--conf FILE``, abbreviations); the rest is left to it.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("--save-replay-buffer", action="store_true")
    return parser.parse_known_args(args)[0]


def _algo(args: list[str]) -> str | None:
    return _train_options(args).algo


def with_default_config(args: list[str]) -> list[str]:
    """``args`` plus ``-conf zoo_configs/<algo>.yml`` when the algorithm is ours and no ``-conf`` is given."""
    options = _train_options(args)
    if options.conf_file is not None or options.algo not in ALGOS:
        return args
    return [*args, "-conf", str(config_path(options.algo))]


def _per_worker_subprocesses() -> None:
    # `--vec-env subproc` makes the zoo build a SubprocVecEnv, whose sub-processes the forked
    # workers cannot share; the zoo looks the class up in its module when it builds the env.
    import rl_zoo3.exp_manager

    rl_zoo3.exp_manager.SubprocVecEnv = PerWorkerSubprocVecEnv  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print(f"Algorithms added to the zoo's: {', '.join(ALGOS)}")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, args = argv[0], argv[1:]
    register()
    if "--ale-vec-env" in args:
        if command != "train":
            sys.exit(f"--ale-vec-env is a flag of train only, not of {command}")
        args = [arg for arg in args if arg != "--ale-vec-env"]
        from sb3_async.zoo.ale import use_ale_vec_env

        use_ale_vec_env()
    if command == "train":
        options = _train_options(args)
        if options.algo in ALGOS and options.save_replay_buffer:
            # The zoo would skip it for A3C and fail after training for the Q methods (before saving VecNormalize).
            sys.exit(f"--save-replay-buffer: {options.algo} has no replay buffer (its workers learn from what they play)")
        args = with_default_config(args)
        if options.algo in ALGOS:
            _per_worker_subprocesses()
    sys.argv = [f"python -m sb3_async.zoo {command}", *args]
    COMMANDS[command]()


if __name__ == "__main__":
    main()
