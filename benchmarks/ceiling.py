"""The machine's ceiling for a configuration: the steps per second its own work allows on these cores.

With one torch thread in one process, on the configuration's own model and VecEnv (built by the
zoo, as for the throughput runs), a loop does only the work that no implementation can avoid, in
the order training does it: ``n_steps`` times the policy's forward pass without gradient on the
``n_envs`` observations and one VecEnv step (random actions), then one update: the forward pass
with gradient on ``n_steps * n_envs`` samples, the backward pass, gradient clipping and the
model's own optimizer step, with the model's loss (A2C's for actor-critic models; for Q-networks
the regression of Q(s, a) towards targets computed by the target network on the states the
method bootstraps from). No rollout buffer, no returns, no callbacks, no parameter copies. The
loop times its three parts:

(a) the VecEnv step, per environment step;
(b) the forward pass on ``n_envs`` observations (acting);
(c) the update.

``cost_per_step = (a) + (b) / n_envs + (c) / (n_steps * n_envs)`` is one core's time per
environment step. Timing the parts in this loop rather than each one repeated alone keeps the
caches as cold as in training (stepping emulators evicts the network's weights and buffers).
The ceiling is measured with every usable core running the loop at once (one process per core,
started together), because cores that share caches, memory bandwidth and a power budget are
slower together than one alone: it is the sum over the processes of ``1 / cost_per_step``. The
same loop timed in one process on an otherwise idle machine is reported beside it (``alone_*``;
``cores / alone cost`` is the ceiling if cores did not slow each other down).

    python -m benchmarks.ceiling --env CartPole-v1 --configs a2c,a3c
"""

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

import numpy as np

from benchmarks.cli import at_least, positive
from benchmarks.machine import usable_cores


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


def measure(
    key: str, env_id: str, block_seconds: float = 0.3, blocks: int = 5, seed: int = 0, barrier: Any = None
) -> dict[str, Any]:
    """
    Time (a), (b) and (c) for configuration ``key`` on ``env_id`` with one torch thread (median
    over ``blocks`` blocks of about ``block_seconds``); return them with ``cores / cost_per_step``.
    With ``barrier`` (shared by the processes measuring together), timing starts when every
    process is ready.
    """
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

        policy = model.policy
        if q_learning:

            def act(observation: Any) -> None:
                policy.q_net(obs_as_tensor(observation, model.device)).argmax(dim=1).numpy()

            update = _update_q(model, batch_obs, batch_actions)
        else:

            def act(observation: Any) -> None:
                policy(obs_as_tensor(observation, model.device))

            update = _update_actor_critic(model, batch_obs, batch_actions)

        def rollout_and_update(obs: Any, spent: dict[str, float]) -> Any:
            # Only the work itself, in the order training does it: the caches are as cold as there.
            policy.set_training_mode(False)
            for _ in range(n_steps):
                start = time.perf_counter()
                with th.no_grad():
                    act(obs)
                acted = time.perf_counter()
                obs, *_ = env.step(next(cycle))
                spent["forward"] += acted - start
                spent["env"] += time.perf_counter() - acted
            start = time.perf_counter()
            update()
            spent["update"] += time.perf_counter() - start
            return obs

        obs = rollout_and_update(obs, dict.fromkeys(("env", "forward", "update"), 0.0))  # allocations
        if barrier is not None:
            barrier.wait()
        per_block: list[tuple[float, float, float]] = []
        for _ in range(blocks):
            spent = dict.fromkeys(("env", "forward", "update"), 0.0)
            start, rollouts = time.perf_counter(), 0
            while rollouts == 0 or time.perf_counter() - start < block_seconds:
                obs = rollout_and_update(obs, spent)
                rollouts += 1
            per_block.append(
                (
                    spent["env"] / (rollouts * n_steps * n_envs),
                    spent["forward"] / (rollouts * n_steps),
                    spent["update"] / rollouts,
                )
            )
        env.close()
    env_step, forward, update_seconds = (statistics.median(block[i] for block in per_block) for i in range(3))
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


def _measure_child(key: str, env_id: str, block_seconds: float, blocks: int, seed: int, barrier: Any, results: Any) -> None:
    # The zoo prints its hyperparameters and ALE its banner, from Python and from C: silence both
    # so that the benchmark's progress lines stay readable.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    args = (key, env_id, block_seconds, blocks, seed)
    # The first process times the costs alone while the others wait, idle, before building anything.
    if seed == 0:
        results.put(("alone", measure(*args)))
    barrier.wait()
    results.put(("together", measure(*args, barrier=barrier)))


def ceiling_of(key: str, env_id: str, block_seconds: float, blocks: int) -> dict[str, Any]:
    """
    The ceiling of ``key``: its costs timed with every usable core at work, summed over cores,
    and the same costs timed by one process alone; all in fresh processes (no state shared
    with the caller).
    """
    cores = usable_cores()
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(cores), context.Queue()
    args = (key, env_id, block_seconds, blocks)
    processes = [context.Process(target=_measure_child, args=(*args, seed, barrier, queue)) for seed in range(cores)]
    for process in processes:
        process.start()
    try:
        measured: dict[str, list[dict[str, Any]]] = {"alone": [], "together": []}
        while len(measured["alone"]) + len(measured["together"]) < cores + 1:
            try:
                kind, result = queue.get(timeout=1)
            except Empty:
                if any(process.exitcode not in (None, 0) for process in processes):
                    raise RuntimeError(
                        f"measuring the ceiling of {key} on {env_id} failed (see the processes' output)"
                    ) from None
                continue
            measured[kind].append(result)
    except BaseException:
        # The others would wait at the barrier for ever.
        for process in processes:
            process.kill()
        raise
    finally:
        for process in processes:
            process.join()
    (alone,), together = measured["alone"], measured["together"]
    result = {name: alone[name] for name in ("config", "env", "n_envs", "n_steps", "cores")}
    for name in ("env_step_s", "forward_s", "update_s", "cost_per_step_s"):
        result[name] = statistics.median(run[name] for run in together)
        result[f"alone_{name}"] = alone[name]
    result["ceiling_steps_per_s"] = sum(1 / run["cost_per_step_s"] for run in together)
    result["alone_ceiling_steps_per_s"] = alone["ceiling_steps_per_s"]
    return result


def run_fresh(keys: list[str], env_id: str, block_seconds: float, blocks: int) -> dict[str, dict[str, Any]]:
    """:func:`ceiling_of` each configuration, every measurement in fresh processes (one thread, no training)."""
    return {key: ceiling_of(key, env_id, block_seconds, blocks) for key in keys}


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several :func:`ceiling_of` results for one configuration: the median of every figure, and each result."""
    merged = {name: value for name, value in results[0].items() if not isinstance(value, float)}
    for name, value in results[0].items():
        if isinstance(value, float):
            merged[name] = statistics.median(result[name] for result in results)
    merged["repeats"] = results
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--configs", default="a2c,a3c")
    parser.add_argument("--block-seconds", type=positive, default=0.3)
    parser.add_argument("--blocks", type=at_least(1), default=5)
    args = parser.parse_args()
    results = run_fresh(args.configs.split(","), args.env, args.block_seconds, args.blocks)
    for key, result in results.items():
        print(
            f"{key}: cost per step {1e6 * result['cost_per_step_s']:.1f} µs with all {result['cores']} cores at work "
            f"({1e6 * result['alone_cost_per_step_s']:.1f} µs alone); ceiling {result['ceiling_steps_per_s']:.0f} "
            f"steps/s ({result['alone_ceiling_steps_per_s']:.0f} if cores did not slow each other down)"
        )
    print(json.dumps(list(results.values())))


if __name__ == "__main__":
    main()
