"""What the paper's three value-based methods share: rollouts, exploration, target network, loss.

Each worker acts ε-greedily with its local copy θ' of the shared online network, collects a
:class:`Rollout` of ``rollout_length`` steps of each of its environments, forms a target for every step from the shared
target network θ⁻ (:meth:`AsyncQLearning._targets`, the one thing the three methods differ in),
and applies the gradient of the loss of the whole rollout to the shared θ (for the one-step
methods this is the paper's gradient accumulated over I_AsyncUpdate steps).
"""

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import LinearSchedule, obs_as_tensor
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch.nn import functional as F

from sb3_async.common.base import DEFAULT_RMS_PROP_EPS, AsyncAlgorithm
from sb3_async.common.validation import Check, check_float, check_int, check_optional, check_settings
from sb3_async.common.worker import PeriodicCopy, Worker, check_finite_step
from sb3_async.q_learning.policies import PaperCnnPolicy

__all__ = ["AsyncQLearning", "Rollout", "select_rows"]

_LOSSES = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}

#: The paper's final exploration rates and their probabilities.
PAPER_FINAL_EPS = (0.1, 0.01, 0.5)
PAPER_FINAL_EPS_PROBS = (0.4, 0.3, 0.3)
#: The share of the budget over which ε is annealed when ``exploration_steps`` is not given (DQN's).
DEFAULT_EXPLORATION_FRACTION = 0.1


def _check_loss(name: str, value: Any) -> None:
    if not isinstance(value, str) or value not in _LOSSES:
        raise ValueError(f"{name} must be one of {sorted(_LOSSES)}, got {value!r}")


def _stack(observations: list[Any]) -> Any:
    """Stack per-step VecEnv observations (arrays or dicts of arrays) and merge time and env axes."""
    if isinstance(observations[0], dict):
        return {key: _stack([obs[key] for obs in observations]) for key in observations[0]}
    stacked = np.stack(observations)
    return stacked.reshape(-1, *stacked.shape[2:])


def _copy(observations: Any) -> Any:
    if isinstance(observations, dict):
        return {key: value.copy() for key, value in observations.items()}
    return observations.copy()


def select_rows(observations: Any, rows: np.ndarray) -> Any:
    """The given rows of observations (an array, or a dict of arrays)."""
    if isinstance(observations, dict):
        return {key: value[rows] for key, value in observations.items()}
    return observations[rows]


def _with_terminal_observations(new_obs: Any, dones: np.ndarray, infos: list[dict[str, Any]]) -> Any:
    """The state each step led to: ``new_obs``, except the terminal observation where an episode ended."""
    if not dones.any():
        return new_obs
    result = _copy(new_obs)
    for i in np.flatnonzero(dones):
        terminal = infos[i]["terminal_observation"]
        if isinstance(result, dict):
            for key in result:
                result[key][i] = terminal[key]
        else:
            result[i] = terminal
    return result


@dataclass
class Rollout:
    """
    One worker's rollout: ``length`` steps of its ``n_envs`` environments. Arrays are shaped
    ``(length, n_envs)``; observations are kept per step (arrays, or dicts of arrays, of ``n_envs`` rows).
    """

    #: The observation each step was taken in.
    observations: list[Any]
    actions: np.ndarray
    rewards: np.ndarray
    #: Whether the episode ended at this step (terminated or truncated).
    dones: np.ndarray
    #: Whether it ended by termination: no value beyond (a time-limit truncation bootstraps).
    terminated: np.ndarray
    #: The state each step led to (the terminal observation where an episode ended).
    next_observations: list[Any]
    #: Where the next rollout starts.
    last_observations: Any
    #: The ε the rollout was collected with.
    epsilon: float

    @property
    def length(self) -> int:
        return len(self.observations)

    def next_observations_at(self, rows: np.ndarray) -> Any:
        """The next observations of the given flattened rows, stacked."""
        return select_rows(_stack(self.next_observations), rows)


class AsyncQLearning(AsyncAlgorithm, OffPolicyAlgorithm):
    """
    The parameters shared by :class:`~sb3_async.AsyncNStepQ`, :class:`~sb3_async.AsyncOneStepQ`
    and :class:`~sb3_async.AsyncOneStepSarsa` (this class is not used directly).

    :param policy: The policy model to use: SB3's DQN policies (MlpPolicy, CnnPolicy, MultiInputPolicy), or
        PaperCnnPolicy (the paper's smaller Atari network)
    :param env: The environment to learn from: an env id, a callable returning an env, an env or a
        ``VecEnv`` (each worker steps its own copy of its ``num_envs`` environments)
    :param rollout_length: Steps per environment in a worker's rollout (set by the subclass)
    :param learning_rate: The learning rate, a float or a schedule of the progress remaining (global)
    :param gamma: Discount factor
    :param target_update_interval: The target network is copied from the online network each time the
        global step counter (environment steps of all workers) passes a multiple of this.
        The paper's 40,000 frames are 10,000 steps with Atari's action repeat of 4.
    :param exploration_initial_eps: Initial ε of every worker
    :param exploration_final_eps: Each worker's final ε is drawn from these values (or is this value)
    :param exploration_final_eps_probs: The probabilities of the values of ``exploration_final_eps``;
        None (the default): the paper's {0.1: 0.4, 0.01: 0.3, 0.5: 0.3} when those are the paper's
        three values, uniform otherwise; not used when ``exploration_final_eps`` is a single value
    :param exploration_steps: Global steps over which each worker anneals its ε linearly from
        ``exploration_initial_eps`` to its final value (the paper: 4 million frames, 1 million steps)
    :param exploration_fraction: The same as a fraction of the ``total_timesteps`` given to ``learn``
        (DQN's argument). Give at most one of the two; with neither, ``exploration_fraction`` is 0.1
    :param loss: ``"huber"`` (as SB3's DQN) or ``"mse"`` (the paper's squared error)
    :param max_grad_norm: The maximum norm of each worker's gradient (clipped before it is applied)
    :param rms_prop_eps: RMSprop epsilon, as A2C's: PyTorch's RMSprop adds it outside the square root
    :param use_rms_prop: Whether to use RMSprop (decay 0.99, statistics shared by all workers) or Adam
        (ignored when ``policy_kwargs`` sets ``optimizer_class``)
    :param n_workers: Number of worker processes (default: the number of usable CPUs)
    :param backend: What runs the workers: ``"local"`` (processes on this machine sharing the model's
        memory, Hogwild) or ``"ray"`` (Ray actors, on the machines of a Ray cluster; needs ``sb3-async[ray]``)
    :param stats_window_size: Window size for the rollout logging, in episodes (all workers together)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators; each worker derives its own distinct seed from it
        (and its final ε from that)
    :param device: Only the CPU is supported ("auto" means "cpu")
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**DQN.policy_aliases, "PaperCnnPolicy": PaperCnnPolicy}

    policy: DQNPolicy
    q_net: QNetwork
    q_net_target: QNetwork

    #: The name of the subclass's setting that is ``rollout_length`` (``n_steps``, ``async_update_freq``).
    _rollout_length_setting: ClassVar[str]

    _setting_checks: ClassVar[dict[str, Check]] = {
        **AsyncAlgorithm._setting_checks,
        "target_update_interval": partial(check_int, minimum=1),
        "exploration_initial_eps": partial(check_float, low=0.0, high=1.0),
        "exploration_steps": check_optional(partial(check_int, minimum=0)),
        "exploration_fraction": check_optional(partial(check_float, low=0.0, high=1.0)),
        "loss": _check_loss,
    }

    def __init__(
        self,
        policy: str | type[DQNPolicy],
        env: GymEnv | str,
        rollout_length: int,
        learning_rate: float | Schedule = 7e-4,
        gamma: float = 0.99,
        target_update_interval: int = 10_000,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float | Sequence[float] = PAPER_FINAL_EPS,
        exploration_final_eps_probs: Sequence[float] | None = None,
        exploration_fraction: float | None = None,
        exploration_steps: int | None = None,
        loss: str = "huber",
        max_grad_norm: float = 10.0,
        rms_prop_eps: float = DEFAULT_RMS_PROP_EPS,
        use_rms_prop: bool = True,
        n_workers: int | None = None,
        backend: str = "local",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        check_settings(
            self._setting_checks,
            dict(
                learning_rate=learning_rate,
                gamma=gamma,
                target_update_interval=target_update_interval,
                exploration_initial_eps=exploration_initial_eps,
                exploration_steps=exploration_steps,
                exploration_fraction=exploration_fraction,
                loss=loss,
            ),
        )
        self.exploration_final_eps, self.exploration_final_eps_probs = self._check_final_eps(
            exploration_final_eps, exploration_final_eps_probs
        )
        self._check_one_schedule_length(exploration_fraction, exploration_steps)
        self._remember_env_source(env)
        device, policy_kwargs = self._init_async(
            n_workers=n_workers,
            backend=backend,
            device=device,
            policy_kwargs=policy_kwargs,
            max_grad_norm=max_grad_norm,
            rms_prop_eps=rms_prop_eps,
            use_rms_prop=use_rms_prop,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
        )
        super().__init__(
            policy,
            env,
            learning_rate,
            # No replay buffer is ever allocated (see _setup_model): these only satisfy the base class.
            buffer_size=0,
            learning_starts=0,
            batch_size=rollout_length,
            gamma=gamma,
            train_freq=rollout_length,
            gradient_steps=1,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Discrete,),
        )
        self.target_update_interval = target_update_interval
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_steps = exploration_steps
        self.exploration_fraction = (
            DEFAULT_EXPLORATION_FRACTION
            if exploration_fraction is None and exploration_steps is None
            else exploration_fraction
        )
        self.loss = loss
        self.max_grad_norm = max_grad_norm
        self.exploration_rate = exploration_initial_eps
        #: Each worker's final ε, drawn at the start of ``learn``.
        self.worker_final_eps: list[float] = []
        #: Number of target network updates so far.
        self.n_target_updates = 0
        self._set_optimizer(use_rms_prop, rms_prop_eps)
        if _init_setup_model:
            self._setup_model()

    @property
    def rollout_length(self) -> int:
        """Steps per environment in a worker's rollout (the subclass's ``n_steps`` or ``async_update_freq``)."""
        return getattr(self, self._rollout_length_setting)

    @staticmethod
    def _check_one_schedule_length(exploration_fraction: Any, exploration_steps: Any) -> None:
        if exploration_steps is not None and exploration_fraction is not None:
            raise ValueError(
                "exploration_fraction and exploration_steps both set the length of the ε schedule: give one of them "
                "(exploration_fraction: a share of the training budget, as DQN's; "
                "exploration_steps: global steps, as the paper's)"
            )

    @staticmethod
    def _check_final_eps(final_eps: Any, probs: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if isinstance(final_eps, numbers.Real) and not isinstance(final_eps, bool):
            values: tuple[float, ...] = (check_float("exploration_final_eps", final_eps, 0.0, 1.0),)
            if probs is not None:
                raise ValueError("exploration_final_eps_probs must be None when exploration_final_eps is a single value")
            return values, (1.0,)
        if isinstance(final_eps, np.ndarray):
            final_eps = final_eps.tolist()
        if isinstance(final_eps, str) or not isinstance(final_eps, Sequence) or len(final_eps) == 0:
            raise TypeError(f"exploration_final_eps must be a number or a non-empty sequence of numbers, got {final_eps!r}")
        values = tuple(check_float("exploration_final_eps", value, 0.0, 1.0) for value in final_eps)
        if probs is None:
            if values == PAPER_FINAL_EPS:
                return values, PAPER_FINAL_EPS_PROBS
            return values, tuple([1.0 / len(values)] * len(values))
        if isinstance(probs, np.ndarray):
            probs = probs.tolist()
        if isinstance(probs, str) or not isinstance(probs, Sequence):
            raise TypeError(f"exploration_final_eps_probs must be a sequence of numbers or None, got {probs!r}")
        if len(probs) != len(values):
            raise ValueError(
                f"exploration_final_eps_probs must have one probability per value of exploration_final_eps "
                f"({len(values)}), got {len(probs)}"
            )
        weights = tuple(check_float("exploration_final_eps_probs", p, 0.0, 1.0) for p in probs)
        if abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"exploration_final_eps_probs must sum to 1, got {sum(weights)}")
        return values, weights

    @classmethod
    def _loaded_settings(cls, given: dict[str, Any], data: dict[str, Any], what: str) -> dict[str, Any]:
        given = super()._loaded_settings(given, data, what)
        given = dict(given)
        if "exploration_final_eps" in given or "exploration_final_eps_probs" in given:
            # Checked and stored as the constructor stores them; a value given alone goes with the file's other.
            final_eps = given.get("exploration_final_eps", data.get("exploration_final_eps"))
            probs = given["exploration_final_eps_probs"] if "exploration_final_eps_probs" in given else None
            given["exploration_final_eps"], given["exploration_final_eps_probs"] = cls._check_final_eps(final_eps, probs)
        # One of the two lengths of the ε schedule replaces the other.
        if given.get("exploration_steps") is not None:
            cls._check_one_schedule_length(given.get("exploration_fraction"), given["exploration_steps"])
            given["exploration_fraction"] = None
        elif given.get("exploration_fraction") is not None:
            given["exploration_steps"] = None
        return given

    def _setup_model(self) -> None:
        # OffPolicyAlgorithm._setup_model would allocate a replay buffer: the point of these
        # methods is that there is none. The rest is what it does.
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.replay_buffer = None
        # What the replay buffer would have refused (a Tuple space), refused here, before any worker.
        get_obs_shape(self.observation_space)
        with self._optimizer_in_policy_kwargs():
            self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = self.policy.to(self.device)
        self.q_net = self.policy.q_net
        self.q_net_target = self.policy.q_net_target
        self._share_memory()

    def _share_memory(self) -> None:
        super()._share_memory()
        # DQNPolicy's optimizer holds only q_net; the target network is shared explicitly.
        self.policy.q_net_target.share_memory()

    def save_replay_buffer(self, path: Any) -> None:
        """Refused: there is no replay buffer (SB3's would fail on an assertion)."""
        raise ValueError(f"{type(self).__name__} has no replay buffer to save: its workers learn from what they play")

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        """Refused: there is no replay buffer."""
        raise ValueError(f"{type(self).__name__} has no replay buffer to load into: its workers learn from what they play")

    # DQN's ε-greedy predict, with the mean of the workers' current ε as exploration_rate.
    predict = DQN.predict

    # As DQN: the optimizer statistics are saved with the policy.
    _get_torch_save_params = DQN._get_torch_save_params

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "q_net", "q_net_target"]

    def _rollout_steps(self) -> int:
        return self.rollout_length * self.n_envs

    def _periodic_copies(self) -> list[PeriodicCopy]:
        return [PeriodicCopy("q_net", "q_net_target", self.target_update_interval)]

    # --- exploration -----------------------------------------------------------------------

    def _epsilon(self, final_eps: float, global_steps: int) -> float:
        """A worker's ε at ``T = global_steps``: annealed linearly from the initial to its final value."""
        if self.exploration_steps is not None:
            length = self.exploration_steps
        else:
            # DQN's schedule: a fraction of the budget, counted from T = 0 as DQN's progress is, so
            # that learn(..., reset_num_timesteps=False) goes on at the final ε instead of starting again.
            length = self.exploration_fraction * self._total_timesteps  # type: ignore[operator]
        if length <= 0:
            return final_eps
        progress_remaining = 1.0 - min(1.0, max(0.0, global_steps / length))
        return LinearSchedule(self.exploration_initial_eps, final_eps, 1.0)(progress_remaining)

    def _mean_epsilon(self) -> float:
        """The workers' mean current ε (DQN's ``exploration_rate``, used by ``predict``)."""
        return float(np.mean([self._epsilon(eps, self.num_timesteps) for eps in self.worker_final_eps]))

    def _draw_final_eps(self, seeds: list[int]) -> list[float]:
        """Each worker's final ε, drawn with its own seed (reproducible from ``seed``)."""
        choices = np.array(self.exploration_final_eps)
        probs = np.array(self.exploration_final_eps_probs)
        return [float(np.random.default_rng(seed).choice(choices, p=probs)) for seed in seeds]

    # --- main process --------------------------------------------------------------------

    def _prepare_workers(self, seeds: list[int], base_timesteps: int) -> None:
        # Drawn once: a worker keeps its final ε over later learn() calls and resumed runs, as the
        # paper's threads keep theirs; drawn again only if the workers or the choices changed.
        choices = {eps for eps, prob in zip(self.exploration_final_eps, self.exploration_final_eps_probs) if prob > 0}
        kept = len(self.worker_final_eps) == self.n_workers and set(self.worker_final_eps) <= choices
        if not kept:
            self.worker_final_eps = self._draw_final_eps(seeds)
        self.logger.log(f"Final exploration rate of each worker: {self.worker_final_eps}")

    def _workers_done(self, copies_done: dict[str, int]) -> None:
        self.n_target_updates += copies_done.get("q_net_target", 0)
        self.exploration_rate = self._mean_epsilon()

    def _dump_logs(self, iteration: int, copies_done: dict[str, int]) -> None:
        self.exploration_rate = self._mean_epsilon()
        self.logger.record("train/n_target_updates", self.n_target_updates + copies_done.get("q_net_target", 0))
        self.dump_logs()

    # --- worker process ------------------------------------------------------------------

    def _act(self, obs: Any, epsilon: float) -> np.ndarray:
        """ε-greedy actions of the local copy (in evaluation mode, as DQN acts)."""
        with th.no_grad():
            actions = self.q_net(obs_as_tensor(obs, self.device)).argmax(dim=1).numpy()
        explore = np.random.random_sample(len(actions)) < epsilon
        if explore.any():
            actions[explore] = np.random.randint(self.action_space.n, size=int(explore.sum()))  # type: ignore[attr-defined]
        return actions

    def _first_actions(self, obs: Any, epsilon: float) -> np.ndarray:
        """The actions of a rollout's first step (Sarsa may have chosen them already)."""
        return self._act(obs, epsilon)

    def _worker_loop(self, worker: Worker) -> None:
        assert self.env is not None
        self.q_net = self.policy.q_net  # the local copy θ'
        self.q_net_target = self.policy.q_net_target  # read from the shared model
        final_eps = self.worker_final_eps[worker.worker_id]
        n_envs = self.env.num_envs
        obs = self._last_obs
        while worker.reserve(n_envs):
            worker.pull()
            self.policy.set_training_mode(False)
            epsilon = self._epsilon(final_eps, worker.global_steps)
            observations, next_observations, steps = [], [], []
            for t in range(self.rollout_length):
                # A rollout cut short by the end of training is not trained on (as SB3 and A3C do).
                if t > 0 and not worker.reserve(n_envs):
                    self._last_obs = obs
                    return
                action = self._first_actions(obs, epsilon) if t == 0 else self._act(obs, epsilon)
                new_obs, reward, done, infos = self.env.step(action)
                check_finite_step(new_obs, reward)
                # Kept for the whole rollout: a VecEnv may hand out the same buffer every step.
                new_obs = _copy(new_obs)
                worker.record_step(infos, done)
                truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos])
                steps.append((action, reward, done, done & ~truncated))
                observations.append(obs)
                next_observations.append(_with_terminal_observations(new_obs, done, infos))
                obs = new_obs
            actions, rewards, dones, terminated = (np.stack(column) for column in zip(*steps))
            rollout = Rollout(observations, actions, rewards, dones, terminated, next_observations, obs, epsilon)
            self._train_on_rollout(worker, rollout)
            worker.record_update(self.logger)
        self._last_obs = obs

    def _train_on_rollout(self, worker: Worker, rollout: Rollout) -> None:
        with th.no_grad():
            targets = self._targets(rollout).float()
        self._current_progress_remaining = worker.progress_remaining
        self._update_learning_rate(self.policy.optimizer)
        self.policy.set_training_mode(True)
        q_values = self.q_net(obs_as_tensor(_stack(rollout.observations), self.device))
        actions = th.as_tensor(rollout.actions.reshape(-1, 1), dtype=th.long)
        loss = _LOSSES[self.loss](q_values.gather(1, actions).flatten(), targets)
        self.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.q_net.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        self.policy.set_training_mode(False)
        self.logger.record("train/loss", loss.item())
        self.logger.record("rollout/exploration_rate", rollout.epsilon)

    # --- the targets: what the three methods differ in ------------------------------------

    def _targets(self, rollout: Rollout) -> th.Tensor:
        """The regression target of every step of ``rollout``, flattened (``length * n_envs``, time first)."""
        raise NotImplementedError

    def _target_q_values(self, rollout: Rollout, rows: np.ndarray) -> th.Tensor:
        """Q(s', ·; θ⁻) of the next states of the given flattened rows, from the shared target network."""
        return self.q_net_target(obs_as_tensor(rollout.next_observations_at(rows), self.device))
