from functools import partial
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_async.a3c.buffers import WholeRecurrentDictRolloutBuffer, WholeRecurrentRolloutBuffer
from sb3_async.a3c.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy, PaperCnnLstmPolicy, PaperCnnPolicy
from sb3_async.common.base import DEFAULT_RMS_PROP_EPS, AsyncAlgorithm
from sb3_async.common.callbacks import WorkerRolloutCallback
from sb3_async.common.validation import Check, check_bool, check_float, check_int, check_settings
from sb3_async.common.worker import Worker


class A3C(AsyncAlgorithm, OnPolicyAlgorithm):
    """
    Asynchronous Advantage Actor-Critic (A3C), Algorithm S3 of
    Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning"
    (https://arxiv.org/abs/1602.01783).

    ``n_workers`` processes each step their own copy of ``env`` (its ``num_envs`` environments
    per worker), copy the shared parameters before every rollout of ``n_steps`` steps, compute
    the gradient of the A2C loss on that rollout and apply it to the shared parameters with an
    optimizer whose statistics are shared too, without locks. The loss of one update is that of
    SB3's :class:`~stable_baselines3.A2C`: means over the rollout's ``n_steps * num_envs``
    samples, where the paper sums over the ``t_max`` steps of one environment. RMSprop divides
    most of that scale away, but not its epsilon: values tuned for the paper's sums (its 0.1)
    swamp SB3's far smaller gradients and stall learning, so epsilons here are on A2C's scale.

    The defaults are A2C's (an A2C user's arguments give A2C's update, applied asynchronously);
    the paper's Atari values (entropy 0.01, annealed learning rate, its network) are in the
    ``atari`` entry of ``zoo_configs/a3c.yml``.

    :param policy: The policy model to use: MlpPolicy, CnnPolicy, MultiInputPolicy, or the LSTM policies
        MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy (the paper's A3C LSTM; see ``sb3_async.a3c.policies``);
        PaperCnnPolicy and PaperCnnLstmPolicy use the paper's smaller Atari network
    :param env: The environment to learn from: an env id, a callable returning an env, an env or
        a ``VecEnv`` (each worker steps its own copy; ``SubprocVecEnv`` is refused)
    :param learning_rate: The learning rate, it can be a function of the progress remaining
        (from 1 to 0), which follows the global step counter of all workers
    :param n_steps: The number of steps (t_max) per environment in each worker's rollout
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator.
        1.0 (the default) gives the paper's n-step returns
    :param ent_coef: Entropy coefficient (the paper's beta; 0.01 on Atari)
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum norm of each worker's gradient (clipped before it is applied)
    :param rms_prop_eps: RMSprop epsilon, as A2C's: PyTorch's RMSprop adds it outside the square root
    :param use_rms_prop: Whether to use RMSprop (A2C's: decay 0.99, statistics shared by all workers)
        or Adam (ignored when ``policy_kwargs`` sets ``optimizer_class``)
    :param n_workers: Number of workers (default: the number of usable CPUs)
    :param backend: What runs the workers: ``"local"`` (processes on this machine sharing the model's
        memory, Hogwild) or ``"ray"`` (Ray actors, on the machines of a Ray cluster; needs ``sb3-async[ray]``)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param normalize_advantage: Whether to normalize the advantage (not in the paper)
    :param stats_window_size: Window size for the rollout logging, in episodes (all workers together)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation; the optimizer is
        chosen with ``optimizer_class`` and ``optimizer_kwargs`` (RMSpropTFLike, RMSprop, Adam, AdamW, SGD);
        SB3's ``RMSpropTFLike`` puts epsilon inside the square root, as the paper does
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators; each worker derives its own distinct seed from it
    :param device: Only the CPU is supported ("auto" means "cpu")
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        **A2C.policy_aliases,
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
        "PaperCnnPolicy": PaperCnnPolicy,
        "PaperCnnLstmPolicy": PaperCnnLstmPolicy,
    }

    _setting_checks: ClassVar[dict[str, Check]] = {
        **AsyncAlgorithm._setting_checks,
        "n_steps": partial(check_int, minimum=1),
        "gae_lambda": partial(check_float, low=0.0, high=1.0),
        "ent_coef": partial(check_float, low=0.0),
        "vf_coef": partial(check_float, low=0.0),
        "normalize_advantage": check_bool,
        "use_sde": check_bool,
        "sde_sample_freq": check_int,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = DEFAULT_RMS_PROP_EPS,
        use_rms_prop: bool = True,
        n_workers: int | None = None,
        backend: str = "local",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_settings(
            self._setting_checks,
            dict(
                learning_rate=learning_rate,
                n_steps=n_steps,
                gamma=gamma,
                gae_lambda=gae_lambda,
                ent_coef=ent_coef,
                vf_coef=vf_coef,
                normalize_advantage=normalize_advantage,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
            ),
        )
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
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.normalize_advantage = normalize_advantage
        if self.recurrent and rollout_buffer_class is not None:
            raise ValueError("rollout_buffer_class cannot be given with a recurrent policy: it needs a recurrent buffer")
        self._set_optimizer(use_rms_prop, rms_prop_eps)
        if _init_setup_model:
            self._setup_model()

    @property
    def recurrent(self) -> bool:
        """Whether the policy is recurrent (the paper's A3C LSTM)."""
        return issubclass(self.policy_class, RecurrentActorCriticPolicy)  # type: ignore[arg-type]

    def _setup_model(self) -> None:
        with self._optimizer_in_policy_kwargs():
            super()._setup_model()
        if self.recurrent:
            self._setup_recurrent()
        # Create the optimizer statistics now, in shared memory, before any worker exists.
        self._share_memory()

    def _setup_recurrent(self) -> None:
        """The LSTM state each worker carries across rollouts, and a buffer that stores it per step."""
        lstm = self.policy.lstm_actor  # type: ignore[attr-defined]
        state_shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
        self._last_lstm_states = RNNStates(
            (th.zeros(state_shape), th.zeros(state_shape)),
            (th.zeros(state_shape), th.zeros(state_shape)),
        )
        buffer_class = (
            WholeRecurrentDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else WholeRecurrentRolloutBuffer
        )
        self.rollout_buffer = buffer_class(
            self.n_steps,
            self.observation_space,
            self.action_space,
            (self.n_steps, *state_shape),
            self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's rollout collection; with an LSTM policy, sb3-contrib's, which carries the LSTM state."""
        if self.recurrent:
            return RecurrentPPO.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[arg-type]
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def train(self) -> None:
        """One update on a worker's rollout: exactly SB3's A2C update (on padded sequences for an LSTM)."""
        if self.recurrent:
            self._train_recurrent()
        else:
            A2C.train(self)  # type: ignore[arg-type]

    def _train_recurrent(self) -> None:
        # A2C's loss, over the rollout replayed as sequences from the LSTM state saved at its
        # start (truncated backpropagation through time); padding is masked out.
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        data = next(self.rollout_buffer.get())
        actions = data.actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else data.actions
        mask = data.mask > 1e-8
        values, log_prob, entropy = self.policy.evaluate_actions(  # type: ignore[call-arg]
            data.observations, actions, data.lstm_states, data.episode_starts
        )
        values = values.flatten()
        advantages = data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages[mask].mean()) / (advantages[mask].std() + 1e-8)
        policy_loss = -(advantages * log_prob)[mask].mean()
        value_loss = F.mse_loss(data.returns[mask], values[mask])
        entropy_loss = -th.mean(-log_prob[mask]) if entropy is None else -th.mean(entropy[mask])
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        self.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record(
            "train/explained_variance", explained_variance(data.old_values[mask].numpy(), data.returns[mask].numpy())
        )
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())

    def _rollout_steps(self) -> int:
        return self.n_steps * self.n_envs

    def _worker_loop(self, worker: Worker) -> None:
        callback = WorkerRolloutCallback(worker, self.n_steps)
        callback.init_callback(self)  # type: ignore[arg-type]
        assert self.env is not None
        while worker.reserve(self.n_envs) and self.collect_rollouts(self.env, callback, self.rollout_buffer, self.n_steps):
            self._current_progress_remaining = worker.progress_remaining
            self.train()
            worker.record_update(self.logger)
