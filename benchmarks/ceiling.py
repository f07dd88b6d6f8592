"""The machine's ceiling for a configuration: the steps per second its own work allows on these cores.

With one torch thread in one process, three costs are timed on the configuration's own model
(built by the zoo, as for the throughput runs):

(a) one step of its VecEnv with random actions, per environment step;
(b) the policy's forward pass, without gradient, on a batch of ``n_envs`` observations (acting);
(c) one update: the forward pass with gradient on ``n_steps * n_envs`` samples, the backward pass,
    gradient clipping and the model's own optimizer step, with the model's loss (A2C's for
    actor-critic models; for Q-networks the regression of Q(s, a) towards targets computed by
    the target network on the states the method bootstraps from).

``cost_per_step = (a) + (b) / n_envs + (c) / (n_steps * n_envs)`` is one core's time per
environment step, and ``usable_cores / cost_per_step`` the rate if every core did nothing else.

    python -m benchmarks.ceiling --env CartPole-v1 --configs a2c,a3c
"""

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.machine import usable_cores
from benchmarks.throughput import ROOT


def seconds_per_call(fn: Callable[[], Any], block_seconds: float, blocks: int) -> float:
    """Median over ``blocks`` timed blocks of about ``block_seconds`` each, of the seconds one call of ``fn`` takes."""
    fn()  # the first call allocates
    start = time.perf_counter()
    fn()
    calls = max(1, int(block_seconds / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def _update_actor_critic(model: Any, observations: np.ndarray, actions: np.ndarray) -> Callable[[], None]:
    import torch as th
    from gymnasium import spaces
    from torch.nn import functional as F

    policy = model.policy
    # A2C's rollout buffer holds float32 observations.
    obs = th.as_tensor(observations, dtype=th.float32)
    acts = th.as_tensor(actions)
    if isinstance(model.action_space, spaces.Discrete):
        acts = acts.long().flatten()
    advantages, returns = th.randn(len(obs)), th.randn(len(obs))

    def update() -> None:
        # SB3's A2C.train, on made-up advantages and returns (the cost does not depend on them).
        policy.set_training_mode(True)
        values, log_prob, entropy = policy.evaluate_actions(obs, acts)
        policy_loss = -(advantages * log_prob).mean()
        value_loss = F.mse_loss(returns, values.flatten())
        loss = policy_loss + model.ent_coef * -th.mean(entropy) + model.vf_coef * value_loss
        policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
        policy.optimizer.step()

    return update


def _update_q(model: Any, observations: np.ndarray, actions: np.ndarray) -> Callable[[], None]:
    import torch as th
    from stable_baselines3.common.utils import obs_as_tensor
    from torch.nn import functional as F

    from sb3_async import AsyncNStepQ

    policy = model.policy
    obs = obs_as_tensor(observations, model.device)
    acts = th.as_tensor(actions.reshape(-1, 1), dtype=th.long)
    n_envs = model.env.num_envs
    # n-step Q bootstraps from the rollout's last states only; the one-step methods from every next state.
    next_obs = obs[-n_envs:] if isinstance(model, AsyncNStepQ) else obs
    loss_fn = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}[model.loss]
    rewards = th.randn(len(obs))

    def update() -> None:
        with th.no_grad():
            bootstrap = policy.q_net_target(next_obs).max(dim=1).values
        targets = rewards.clone()
        targets[-len(bootstrap) :] += model.gamma * bootstrap
        policy.set_training_mode(True)
        q_taken = policy.q_net(obs).gather(1, acts).flatten()
        loss = loss_fn(q_taken, targets)
        policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(policy.q_net.parameters(), model.max_grad_norm)
        policy.optimizer.step()

    return update


def measure(key: str, env_id: str, block_seconds: float = 0.3, blocks: int = 5, seed: int = 0) -> dict[str, Any]:
    """Time (a), (b) and (c) for configuration ``key`` on ``env_id`` with one torch thread; return the ceiling."""
    import torch as th
    from stable_baselines3.common.utils import obs_as_tensor

    from benchmarks.configs import CONFIGS, OURS, experiment

    th.set_num_threads(1)
    # sb3-async's workers turn off torch.distributions' argument checks (see AsyncAlgorithm._worker_main);
    # SB3's A2C keeps them: time each forward pass as it runs in training.
    th.distributions.Distribution.set_default_validate_args(CONFIGS[key].algo not in OURS)
    with tempfile.TemporaryDirectory() as folder:
        model, _ = experiment(key, env_id, seed, 1_000_000, folder).setup_experiment()
        env = model.env
        n_envs = env.num_envs
        q_learning = hasattr(model.policy, "q_net")
        n_steps = model.rollout_length if q_learning else model.n_steps
        env.action_space.seed(seed)
        action_batches = [np.array([env.action_space.sample() for _ in range(n_envs)]) for _ in range(64)]
        cycle = itertools.cycle(action_batches)

        # A rollout's worth of real observations and actions for the update.
        obs = env.reset()
        observations, actions = [], []
        for _ in range(n_steps):
            observations.append(obs)
            actions.append(next(cycle))
            obs, *_ = env.step(actions[-1])
        batch_obs, batch_actions = np.concatenate(observations), np.concatenate(actions)

        env_step = seconds_per_call(lambda: env.step(next(cycle)), block_seconds, blocks) / n_envs
        policy = model.policy
        policy.set_training_mode(False)

        if q_learning:

            def act() -> None:
                with th.no_grad():
                    policy.q_net(obs_as_tensor(obs, model.device)).argmax(dim=1).numpy()

            update = _update_q(model, batch_obs, batch_actions)
        else:

            def act() -> None:
                with th.no_grad():
                    policy(obs_as_tensor(obs, model.device))

            update = _update_actor_critic(model, batch_obs, batch_actions)
        forward = seconds_per_call(act, block_seconds, blocks)
        update_seconds = seconds_per_call(update, block_seconds, blocks)
        env.close()
    cores = usable_cores()
    cost = env_step + forward / n_envs + update_seconds / (n_steps * n_envs)
    return dict(
        config=key,
        env=env_id,
        n_envs=n_envs,
        n_steps=n_steps,
        env_step_s=env_step,
        forward_s=forward,
        update_s=update_seconds,
        cost_per_step_s=cost,
        cores=cores,
        ceiling_steps_per_s=cores / cost,
    )


def run_fresh(keys: list[str], env_id: str, block_seconds: float, blocks: int) -> dict[str, dict[str, Any]]:
    """:func:`measure` for each configuration, all in one fresh process (one thread, no training)."""
    command = [sys.executable, "-m", "benchmarks.ceiling", "--env", env_id, "--configs", ",".join(keys)]
    command += ["--block-seconds", str(block_seconds), "--blocks", str(blocks)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return {result["config"]: result for result in json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--configs", default="a2c,a3c")
    parser.add_argument("--block-seconds", type=float, default=0.3)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    results = [measure(key, args.env, args.block_seconds, args.blocks) for key in args.configs.split(",")]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
