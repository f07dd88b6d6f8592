"""Asynchronous (Hogwild) training, shared by every sb3_async algorithm.

:class:`AsyncAlgorithm` is a mixin placed before an SB3 base class. In ``learn`` the main
process puts the policy and the optimizer statistics in shared memory, forks ``n_workers``
workers and then only supervises: it reads the global step counter, drives the callbacks as
the counter advances, merges the workers' reports into the logger and raises any worker's
failure. Each worker runs the algorithm's ``_worker_loop`` on its own copy of the environment,
with a private copy of the parameters that it refreshes from, and applies gradients to, the
shared model.
"""

import copy
import io
import pathlib
import pickle
import struct
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize

from sb3_async.common.backend import BACKENDS, WorkerGroup, make_worker_group
from sb3_async.common.cpus import check_local_workers, usable_cpus
from sb3_async.common.envs import check_worker_env, is_env_factory, rebuild_per_worker_envs
from sb3_async.common.optim import check_optimizer_class, share_optimizer_state
from sb3_async.common.reporting import ReportAggregator
from sb3_async.common.saving import (
    CURRENT_POLICY_FORMAT,
    POLICY_FORMAT,
    SAVED_BY,
    check_checksums,
    policy_kwargs_of_older_file,
    saved_attributes,
)
from sb3_async.common.signals import one_learn_at_a_time, sigterm_stops_training
from sb3_async.common.validation import (
    Check,
    check_bool,
    check_float,
    check_int,
    check_learning_rate,
    check_optional,
    check_path,
    check_settings,
)
from sb3_async.common.worker import PeriodicCopy, Worker

__all__ = ["DEFAULT_RMS_PROP_EPS", "AsyncAlgorithm"]

#: RMSprop epsilon of every algorithm: A2C's (outside the square root, as PyTorch's RMSprop adds it).
DEFAULT_RMS_PROP_EPS = 1e-5

# Seconds the main process waits for worker messages between two looks at the step counter.
_POLL_INTERVAL = 0.02


class AsyncAlgorithm:
    """
    Hogwild training for an SB3 algorithm. Subclasses implement :meth:`_worker_loop`.

    In the main process, callbacks are called once for every ``n_envs`` global steps (as one
    ``VecEnv.step`` of A2C would), with ``num_timesteps`` set to the global step counter; their
    ``locals`` hold ``infos`` and ``dones`` built from the episodes the workers finished
    (observations, actions and rewards stay in the workers); ``info["episode"]`` carries the
    index of the worker that played it as ``"worker"``. Reports arrive a little after the steps,
    so the call that ends training waits for the workers' last ones and carries all those left
    (then ``infos`` may have more than ``n_envs`` entries).
    """

    n_workers: int
    env: VecEnv | None
    policy: Any

    #: The constructor's checks of the settings that ``load``'s keyword arguments (and its
    #: ``custom_objects``) may replace, by name: a loaded model gets the same checks.
    _setting_checks: ClassVar[dict[str, Check]] = {
        "n_workers": check_optional(partial(check_int, minimum=1)),
        "learning_rate": check_learning_rate,
        "gamma": partial(check_float, low=0.0, high=1.0),
        # inf: no clipping, as clip_grad_norm_ takes it.
        "max_grad_norm": partial(check_float, low=0.0, low_open=True, allow_inf=True),
        "rms_prop_eps": partial(check_float, low=0.0),
        "use_rms_prop": check_bool,
        "stats_window_size": partial(check_int, minimum=1),
        "verbose": partial(check_int, minimum=0),
        "seed": check_optional(partial(check_int, minimum=0)),
        "tensorboard_log": check_optional(check_path),
    }
    #: Settings that a loaded model cannot take other values of: they chose the optimizer, whose
    #: state (with these settings in it) comes back from the file.
    _optimizer_settings = ("use_rms_prop", "rms_prop_eps")

    # --- construction -------------------------------------------------------------------

    def _init_async(
        self,
        *,
        n_workers: int | None,
        backend: str,
        device: th.device | str,
        policy_kwargs: dict[str, Any] | None,
        max_grad_norm: float,
        rms_prop_eps: float,
        use_rms_prop: bool,
        stats_window_size: int,
        tensorboard_log: str | None,
        verbose: int,
        seed: int | None,
    ) -> tuple[str, dict[str, Any]]:
        """
        Check the arguments every asynchronous algorithm has; return the device to use and a
        copy of ``policy_kwargs``.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        if backend == "ray":
            from sb3_async.common.ray_backend import require_ray

            require_ray()
        self.backend = backend
        setattr(self, SAVED_BY, type(self).__name__)
        setattr(self, POLICY_FORMAT, CURRENT_POLICY_FORMAT)
        check_settings(
            self._setting_checks,
            dict(
                n_workers=n_workers,
                max_grad_norm=max_grad_norm,
                rms_prop_eps=rms_prop_eps,
                use_rms_prop=use_rms_prop,
                stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log,
                verbose=verbose,
                seed=seed,
            ),
        )
        self.n_workers = usable_cpus() if n_workers is None else int(n_workers)
        if backend == "local":
            check_local_workers(self.n_workers)
        self._n_learn_calls = 0
        if policy_kwargs is not None and not isinstance(policy_kwargs, dict):
            raise TypeError(f"policy_kwargs must be a dict or None, got {type(policy_kwargs).__name__}")
        # th.device, not SB3's get_device: that one turns "cuda" into "cpu" when no GPU is present.
        if device != "auto" and th.device(device).type != "cpu":
            raise ValueError(f"device={device!r}: asynchronous workers share parameters in CPU memory; use 'cpu' or 'auto'")
        return "cpu", dict(policy_kwargs or {})

    @classmethod
    def load(
        cls,
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> Any:
        """
        SB3's ``load``, after checking that ``path`` holds a model of this class (loading another
        algorithm's file would only fail later, in ``learn``, with an unrelated error) and that
        the file can be read at all.
        """
        data = saved_attributes(path)
        saved_by = data.get(SAVED_BY)
        if saved_by is None and "n_workers" not in data:
            raise ValueError(
                f"{path} was not saved by an sb3_async algorithm (it holds no n_workers): it comes from another "
                f"algorithm, such as SB3's DQN or A2C; load it with that algorithm's class, not {cls.__name__}"
            )
        if saved_by is not None and saved_by != cls.__name__:
            raise ValueError(f"{path} holds a model of {saved_by}, not of {cls.__name__}: load it with {saved_by}.load")
        check_checksums(path)
        kwargs = cls._loaded_settings(kwargs, data, "keyword argument")
        if custom_objects is not None:
            custom_objects = cls._loaded_settings(custom_objects, data, "custom_objects entry")
        older = policy_kwargs_of_older_file(data, custom_objects)
        if older is not None:
            stored, heads = older
            custom_objects = {**(custom_objects or {}), "policy_kwargs": stored}
            # SB3 checks a given policy_kwargs against the stored one: the file's heads complete both.
            given = kwargs.get("policy_kwargs")
            if isinstance(given, dict) and given.get("net_arch") is None:
                kwargs["policy_kwargs"] = {**given, "net_arch": heads}
        try:
            model = super().load(  # type: ignore[misc]
                path, env, device, custom_objects, print_system_info, force_reset, **kwargs
            )
        except (zipfile.BadZipFile, struct.error, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path} is damaged and cannot be loaded ({type(error).__name__}: {error})") from error
        except RuntimeError as error:
            if "PytorchStreamReader" not in str(error) and "zip archive" not in str(error):
                raise
            raise ValueError(f"{path} is damaged and cannot be loaded ({error})") from error
        # _setup_model reseeded with the saved seed, which restarts the workers' seeds: go on where they were.
        model._n_learn_calls = data.get("_n_learn_calls", 0)
        return model

    @classmethod
    def _loaded_settings(cls, given: dict[str, Any], data: dict[str, Any], what: str) -> dict[str, Any]:
        """
        The settings given to ``load`` (``what``: its keyword arguments or ``custom_objects``),
        checked as the constructor checks them: SB3 sets them on the loaded model as they are.
        ``data``: the attributes saved in the file.
        """
        if what == "keyword argument":
            # SB3 would set any name as an attribute: a misspelt setting would be ignored.
            unknown = sorted(set(given) - set(data))
            if unknown:
                raise ValueError(
                    f"load() got the {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}, "
                    f"which {cls.__name__} has no setting of: a model it saved has no such attribute"
                )
        checks = {**cls._setting_checks, "learning_rate": partial(check_learning_rate, allow_zero=True)}
        check_settings(checks, given)
        for name in cls._optimizer_settings:
            if name in given and name in data and given[name] != data[name]:
                raise ValueError(
                    f"{name}={given[name]!r} cannot be given to load(): the model was saved with {name}={data[name]!r}, "
                    "and its optimizer comes back from the file as it was built; build a new model to change it"
                )
        return given

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        SB3's ``set_random_seed``; the workers of the next ``learn`` derive their seeds from ``seed``
        too, as they do from the constructor's.
        """
        if seed is not None:
            check_int("seed", seed, minimum=0)
            self.seed = seed
            self._n_learn_calls = 0
        super().set_random_seed(seed)  # type: ignore[misc]

    def get_parameters(self) -> dict[str, dict]:
        """
        SB3's ``get_parameters``, with every tensor copied: during ``learn`` the workers keep
        writing to the shared tensors, and a tensor that changes while ``save`` writes it is stored
        with a checksum that does not match its bytes, so that the file cannot be loaded.
        """
        # deepcopy clones each tensor into private memory and keeps a state dict's type and _metadata.
        return copy.deepcopy(super().get_parameters())  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        # The workers of a learn() in progress (a checkpoint may be saved meanwhile).
        return [*super()._excluded_save_params(), "_worker_group", "_env_source"]  # type: ignore[misc]

    def _remember_env_source(self, env: Any) -> None:
        """Keep an env id or factory: workers elsewhere (backend='ray') build their own env from it."""
        self._env_source = env if isinstance(env, str) or is_env_factory(env) else None

    def _build_env_from_source(self) -> None:
        """In a Ray actor: the environment, built as the constructor built it from the env id or factory."""
        env = self._wrap_env(maybe_make_env(self._env_source, self.verbose), self.verbose)  # type: ignore[attr-defined]
        self.env = env
        self._vec_normalize_env = unwrap_vec_normalize(env)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """SB3's ``set_env``, also for env ids and env factories (kept for workers on other machines)."""
        self._remember_env_source(env)
        env = maybe_make_env(env, self.verbose)  # type: ignore[attr-defined]
        super().set_env(self._wrap_env(env, self.verbose), force_reset)  # type: ignore[misc]

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        # Also used by ``load`` and ``set_env``: every way an env arrives goes through here.
        if is_env_factory(env):
            env = env()  # type: ignore[operator]
        vec_env = BaseAlgorithm._wrap_env(env, verbose, monitor_wrapper)
        check_worker_env(vec_env)
        return vec_env

    def _set_optimizer(self, use_rms_prop: bool, rms_prop_eps: float) -> None:
        """
        Record the optimizer choice: A2C's (PyTorch's RMSprop, decay 0.99, ``rms_prop_eps`` added
        outside the square root; ``policy_kwargs['optimizer_kwargs']`` may change these) unless
        ``policy_kwargs`` names an optimizer or ``use_rms_prop`` is False (then SB3's default,
        Adam); checked to be one whose statistics can be shared.
        The choice is kept out of ``policy_kwargs`` (unlike A2C), so that ``load(path,
        policy_kwargs=...)`` compares them with the arguments the user gave.
        """
        self.use_rms_prop = use_rms_prop
        self.rms_prop_eps = rms_prop_eps
        kwargs = self.policy_kwargs  # type: ignore[attr-defined]
        if "optimizer_class" in kwargs:
            if not use_rms_prop or rms_prop_eps != DEFAULT_RMS_PROP_EPS:
                warnings.warn(
                    "use_rms_prop and rms_prop_eps are not used: policy_kwargs['optimizer_class'] chooses the optimizer"
                )
        elif not use_rms_prop and rms_prop_eps != DEFAULT_RMS_PROP_EPS:
            warnings.warn("rms_prop_eps is not used: use_rms_prop=False selects Adam")
        elif use_rms_prop and "eps" in kwargs.get("optimizer_kwargs", {}) and rms_prop_eps != DEFAULT_RMS_PROP_EPS:
            raise ValueError(
                "RMSprop's epsilon is given twice, as rms_prop_eps and as policy_kwargs['optimizer_kwargs']['eps']: give one"
            )
        optimizer = self._optimizer_policy_kwargs()
        check_optimizer_class(optimizer.get("optimizer_class", th.optim.Adam), optimizer.get("optimizer_kwargs"))

    def _optimizer_policy_kwargs(self) -> dict[str, Any]:
        """``optimizer_class`` and ``optimizer_kwargs`` to build the policy with."""
        kwargs = self.policy_kwargs  # type: ignore[attr-defined]
        if "optimizer_class" in kwargs or not self.use_rms_prop:
            # SB3 policies default to Adam when policy_kwargs names no optimizer.
            return {key: kwargs[key] for key in ("optimizer_class", "optimizer_kwargs") if key in kwargs}
        # A2C's RMSprop; optimizer_kwargs given without an optimizer_class adjust it (A2C would drop them).
        rms_prop = {"alpha": 0.99, "eps": self.rms_prop_eps, "weight_decay": 0, **kwargs.get("optimizer_kwargs", {})}
        return dict(optimizer_class=th.optim.RMSprop, optimizer_kwargs=rms_prop)

    @contextmanager
    def _optimizer_in_policy_kwargs(self) -> Iterator[None]:
        """Within the block, ``policy_kwargs`` holds the optimizer, for the base class to build the policy with."""
        given = self.policy_kwargs  # type: ignore[attr-defined]
        self.policy_kwargs = {**given, **self._optimizer_policy_kwargs()}
        try:
            yield
        finally:
            self.policy_kwargs = given

    def _share_memory(self) -> None:
        """Put the policy's parameters and its optimizer's statistics in shared memory (idempotent)."""
        self.policy.share_memory()
        share_optimizer_state(self.policy.optimizer)

    # --- main process --------------------------------------------------------------------

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = 100,
        tb_log_name: str = "",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Any:
        """
        Train with ``n_workers`` asynchronous workers until the global step counter ``T``
        (all workers together) reaches ``total_timesteps``, or a callback returns ``False``.

        :param total_timesteps: The total number of environment steps, all workers together
        :param callback: callback(s) called in the main process once per ``n_envs`` global steps
        :param log_interval: log every ``log_interval`` updates (all workers together); None: never
        :param tb_log_name: the name of the run for TensorBoard logging (default: the class name)
        :param reset_num_timesteps: whether or not to reset the current timestep number (used in logging)
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: the trained model
        """
        check_int("total_timesteps", total_timesteps, minimum=1)
        if log_interval is not None:
            check_int("log_interval", log_interval, minimum=1)
        if not isinstance(tb_log_name, str):
            raise TypeError(f"tb_log_name must be a string, got {tb_log_name!r}")
        check_bool("reset_num_timesteps", reset_num_timesteps)
        check_bool("progress_bar", progress_bar)
        if self.env is None:
            raise ValueError("env is None: set an environment with set_env(env) before calling learn()")

        with one_learn_at_a_time(self), sigterm_stops_training():
            total_timesteps, callback = self._setup_learn(  # type: ignore[attr-defined]
                total_timesteps, callback, reset_num_timesteps, tb_log_name or type(self).__name__, progress_bar
            )
            callback.on_training_start(locals(), globals())
            self._run_workers(callback, total_timesteps, log_interval)
            callback.on_training_end()
        return self

    def _worker_seeds(self) -> list[int]:
        """Distinct seeds, one per worker, reproducible from ``seed`` and the number of ``learn`` calls."""
        entropy = self.seed if self.seed is not None else np.random.SeedSequence().entropy  # type: ignore[attr-defined]
        sequence = np.random.SeedSequence(entropy, spawn_key=(self._n_learn_calls,))
        self._n_learn_calls += 1
        return [int(child.generate_state(1)[0]) % 2**31 for child in sequence.spawn(self.n_workers)]

    def _run_workers(self, callback: BaseCallback, total_timesteps: int, log_interval: int | None) -> None:
        self._share_memory()
        seeds = self._worker_seeds()
        if self.verbose >= 2:  # type: ignore[attr-defined]
            print(f"Starting {self.n_workers} workers with seeds {seeds}")
        self._prepare_workers(seeds, self.num_timesteps)  # type: ignore[has-type]
        # Workers may run ahead of the callbacks by about one rollout each.
        slack = self.n_workers * self._rollout_steps()
        torch_threads = th.get_num_threads()
        # The workers use the cores; evaluation in the main process must not fight them.
        th.set_num_threads(1)
        group = None
        try:
            group = make_worker_group(self.backend, self, seeds, self.num_timesteps, total_timesteps, slack)  # type: ignore[has-type]
            with group:
                self._worker_group = group
                self._supervise(group, callback, log_interval)
            self.num_timesteps = max(self.num_timesteps, group.global_steps)
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)  # type: ignore[attr-defined]
        finally:
            self.__dict__.pop("_worker_group", None)
            th.set_num_threads(torch_threads)
            self._workers_done({} if group is None else group.copies_done)

    def _supervise(self, group: WorkerGroup, callback: BaseCallback, log_interval: int | None) -> None:
        """Until the workers finish or a callback stops them: merge reports, drive callbacks, log."""
        reports = ReportAggregator()
        updates_at_start = self._n_updates  # type: ignore[has-type]
        next_dump = log_interval
        while True:
            for report in group.poll(timeout=_POLL_INTERVAL):
                reports.add(report, self.ep_info_buffer, self.ep_success_buffer)  # type: ignore[attr-defined]
                self._episode_num += len(report["episodes"])  # type: ignore[has-type]
            self._n_updates = updates_at_start + reports.n_updates
            # The step that spends the budget waits for the workers' last reports, and carries them.
            finished = group.finished
            steps = group.steps_taken if finished else min(group.steps_taken, self._total_timesteps - 1)  # type: ignore[attr-defined]
            if not self._step_callbacks(callback, steps, reports, last=finished):
                group.request_stop()
                return
            group.allow_up_to(self.num_timesteps)  # type: ignore[has-type]
            if log_interval is not None and next_dump is not None and reports.n_updates >= next_dump:
                next_dump = (reports.n_updates // log_interval + 1) * log_interval
                reports.record_stats(self.logger)  # type: ignore[attr-defined]
                self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")  # type: ignore[attr-defined]
                self._dump_logs(reports.n_updates, group.copies_done)
            # An overdue worker (hung in its environment, say) is ended and reported when the group closes.
            if finished or group.overdue:
                return

    def _rollout_steps(self) -> int:
        """Environment steps of all ``n_envs`` environments in one worker's rollout."""
        raise NotImplementedError

    def _periodic_copies(self) -> list[PeriodicCopy]:
        """Modules of the policy copied from others at intervals of ``T`` (target networks); none by default."""
        return []

    def _prepare_workers(self, seeds: list[int], base_timesteps: int) -> None:
        """Hook: runs in the main process just before the workers start."""

    def _workers_done(self, copies_done: dict[str, int]) -> None:
        """Hook: runs in the main process once every worker is gone (also after a failure)."""

    def _dump_logs(self, iteration: int, copies_done: dict[str, int]) -> None:
        self.dump_logs(iteration)  # type: ignore[attr-defined]

    def _step_callbacks(
        self, callback: BaseCallback, global_steps: int, reports: ReportAggregator, last: bool = False
    ) -> bool:
        """
        Call ``callback.on_step`` once per ``n_envs`` global steps up to ``global_steps``; with
        ``last`` (no more reports will come), the final call carries every episode not yet given.
        """
        n_envs = self.n_envs  # type: ignore[attr-defined]
        if self.num_timesteps + n_envs > global_steps:  # type: ignore[has-type]
            return True
        callback.on_rollout_start()
        while self.num_timesteps + n_envs <= global_steps:  # type: ignore[has-type]
            self.num_timesteps += n_envs
            infos, dones = reports.take_step_infos(n_envs, everything=last and self.num_timesteps + n_envs > global_steps)
            callback.update_locals({"infos": infos, "dones": dones})
            if not callback.on_step():
                return False
        self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)  # type: ignore[attr-defined]
        callback.on_rollout_end()
        return True

    # --- worker process ------------------------------------------------------------------

    def _run_worker(self, worker: Worker) -> None:
        """
        Runs in each worker, on the worker's own copy of the algorithm, whose ``policy`` the backend
        already made the worker's local copy: seeds, the environment, then :meth:`_worker_loop`.
        """
        # Argument validation in torch.distributions costs more than the small networks'
        # forward pass; the values are produced by the policy itself.
        th.distributions.Distribution.set_default_validate_args(False)
        set_random_seed(worker.seed)
        self.action_space.seed(worker.seed)  # type: ignore[attr-defined]
        assert self.env is not None
        self.env, own_envs = rebuild_per_worker_envs(self.env)
        try:
            self.env.seed(worker.seed)
            self._last_obs = self.env.reset()
            self._last_episode_starts = np.ones((self.env.num_envs,), dtype=bool)
            if self._vec_normalize_env is not None:  # type: ignore[attr-defined]
                self._last_original_obs = self._vec_normalize_env.get_original_obs()  # type: ignore[attr-defined]
            self._logger = Logger(folder=None, output_formats=[])
            self._worker_loop(worker)
        finally:
            # Only the copies built here: the forked ones are the main process's environments, whose
            # close() may release what they share with it (a directory, a server).
            for env in own_envs:
                env.close()

    def _worker_loop(self, worker: Worker) -> None:
        """
        The algorithm's actor-learner loop; runs in a worker until ``worker.reserve`` says to stop.

        ``self.policy`` is the worker's local copy θ'; its ``optimizer`` applies gradients to the
        shared model. Call ``worker.pull()`` to refresh the local copy, ``worker.reserve(n)`` before
        stepping ``n`` environments, ``worker.record_step(infos, dones)`` after every step and
        ``worker.record_update(self.logger)`` after every update.
        """
        raise NotImplementedError
