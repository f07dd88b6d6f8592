"""How large the Atari entries' gradients are, layer by layer, and what clipping and RMSprop's epsilon make of them.

A freshly built policy of each entry (its ``atari`` settings, as the zoo passes them) takes one
update's batch: ``n_steps x n_envs`` Pong frames from random play (``AleVecEnv``, the games of
``--ale-vec-env``) and the A2C loss A3C minimises. The advantages and returns are *assumed*,
drawn from a unit normal (seeded): their scale sets the gradient's total norm, and so how hard
``max_grad_norm`` clips each entry; the comparison holds for that scale only. Printed per
parameter: the root mean square of its gradient before and after clipping the whole gradient to
``max_grad_norm``, and, for each ``--eps``, the share of its entries whose clipped squared
gradient is below it. Where that share is high, RMSprop with epsilon inside the root
(``RMSpropTFLike``, the entries' optimizer) steps by about ``lr * g / sqrt(eps)``: plain SGD,
whose step shrinks with the gradient, instead of a step near ``lr``. (RMSprop compares its
running mean of squared gradients with epsilon; one batch's squares stand in for it here.)
Means over ``--seeds`` networks.

    python -m benchmarks.gradient_scale --algos a3c a3c_lstm --seeds 5 --eps 1e-5 1e-7
"""

import argparse
import inspect
import json
import pydoc
from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

from benchmarks.cli import at_least, positive
from benchmarks.minatar import atari_entry
from sb3_async import A3C


def loss_settings(entry: dict) -> dict[str, float]:
    """The entry's ``ent_coef``, ``vf_coef`` and ``max_grad_norm``, A3C's own defaults where it sets none."""
    defaults = inspect.signature(A3C).parameters
    return {key: entry.get(key, defaults[key].default) for key in ("ent_coef", "vf_coef", "max_grad_norm")}


@dataclass
class ParameterGradient:
    """One parameter's gradient: its RMS before and after clipping, and the share below each epsilon."""

    rms_before: float
    rms_clipped: float
    share_below: dict[float, float]


def pong_batch(n_steps: int, n_envs: int, warmup: int = 300, seed: int = 0) -> tuple[np.ndarray, int]:
    """
    One update's images: Pong after ``warmup`` random steps, then ``n_steps`` more.

    :param n_steps: steps of the rollout
    :param n_envs: games stepped together
    :param warmup: random steps before the rollout
    :param seed: seed of the games and of the random actions
    :return: the stacked frames, environment by environment (all of the first game's steps, then
        the second's...), as a recurrent policy reads its sequences; and the number of actions
    """
    from sb3_async.common.ale_vec_env import AleVecEnv

    env = AleVecEnv("PongNoFrameskip-v4", n_envs, seed=seed)
    env.reset()
    n_actions = int(env.action_space.n)
    actions = np.random.default_rng(seed).integers(0, n_actions, size=(warmup + n_steps, n_envs))
    frames = []
    for t, action in enumerate(actions):
        observation = env.step(action)[0]
        if t >= warmup:
            frames.append(observation)
    env.close()
    return np.stack(frames, axis=1).reshape(n_steps * n_envs, *frames[0].shape[1:]), n_actions


def measure(
    algo: str, entry: dict, images: np.ndarray, n_actions: int, n_envs: int, seed: int, eps_values: list[float]
) -> tuple[dict[str, ParameterGradient], float]:
    """
    The gradient of ``algo``'s ``atari`` policy, freshly built, on one batch.

    :param algo: ``a3c`` or ``a3c_lstm``, named in errors
    :param entry: its ``atari`` entry, as :func:`benchmarks.minatar.atari_entry` reads it
    :param images: the batch, environment by environment (:func:`pong_batch`)
    :param n_actions: actions of the game
    :param n_envs: games in the batch (the recurrent policy's sequences)
    :param seed: seed of the network and of the assumed actions, advantages and returns
    :param eps_values: epsilons to compare the clipped squared gradients with
    :return: per parameter name its :class:`ParameterGradient`; the total norm before clipping
    """
    policy_class = pydoc.locate(entry["policy"])
    if not isinstance(policy_class, type):
        raise ValueError(f"the atari entry of {algo!r}: policy {entry['policy']!r} is not an importable class")
    th.manual_seed(seed)
    policy = policy_class(
        spaces.Box(0, 255, images.shape[1:], np.uint8),
        spaces.Discrete(n_actions),
        lambda _: 7e-4,
        **entry.get("policy_kwargs", {}),
    )
    if not isinstance(policy.optimizer, RMSpropTFLike):
        optimizer = type(policy.optimizer).__name__
        raise ValueError(f"the atari entry of {algo!r}: expected RMSpropTFLike (epsilon inside the root), got {optimizer}")
    generator = th.Generator().manual_seed(1000 + seed)
    batch = len(images)
    actions = th.randint(0, n_actions, (batch,), generator=generator)
    advantages, returns = th.randn(batch, generator=generator), th.randn(batch, generator=generator)
    observations = th.as_tensor(images)
    if hasattr(policy, "lstm_actor"):
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        zeros = th.zeros(policy.lstm_actor.num_layers, n_envs, policy.lstm_actor.hidden_size)
        states = RNNStates((zeros, zeros), (zeros, zeros))
        values, log_prob, entropy = policy.evaluate_actions(observations, actions, states, th.zeros(batch))
    else:
        values, log_prob, entropy = policy.evaluate_actions(observations, actions)
    settings = loss_settings(entry)
    # A3C's loss (sb3_async/a3c/a3c.py): A2C's, as a mean over the batch.
    loss = (
        -(advantages * log_prob).mean()
        - settings["ent_coef"] * entropy.mean()
        + settings["vf_coef"] * ((returns - values.flatten()) ** 2).mean()
    )
    loss.backward()
    before = {name: p.grad.pow(2).mean().sqrt().item() for name, p in policy.named_parameters() if p.grad is not None}
    total_norm = th.nn.utils.clip_grad_norm_(policy.parameters(), settings["max_grad_norm"]).item()
    gradients = {
        name: ParameterGradient(
            rms_before=before[name],
            rms_clipped=p.grad.pow(2).mean().sqrt().item(),
            share_below={eps: (p.grad.pow(2) < eps).float().mean().item() for eps in eps_values},
        )
        for name, p in policy.named_parameters()
        if p.grad is not None
    }
    return gradients, total_norm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=["a3c", "a3c_lstm"], default=["a3c", "a3c_lstm"])
    parser.add_argument("--seeds", type=at_least(1), default=5, help="networks per entry")
    parser.add_argument("--eps", type=positive, nargs="+", default=[1e-5, 1e-7], help="epsilons to compare with")
    args = parser.parse_args(argv)
    for algo in args.algos:
        entry = atari_entry(algo)
        n_envs, n_steps = entry["n_envs"], entry["n_steps"]
        images, n_actions = pong_batch(n_steps, n_envs)
        runs = [measure(algo, entry, images, n_actions, n_envs, seed, args.eps) for seed in range(args.seeds)]
        total_norm = float(np.mean([norm for _, norm in runs]))
        rows = {
            name: dict(
                rms_before=float(np.mean([gradients[name].rms_before for gradients, _ in runs])),
                rms_clipped=float(np.mean([gradients[name].rms_clipped for gradients, _ in runs])),
                share_below={
                    str(eps): float(np.mean([gradients[name].share_below[eps] for gradients, _ in runs])) for eps in args.eps
                },
            )
            for name in runs[0][0]
        }
        max_grad_norm = loss_settings(entry)["max_grad_norm"]
        print(f"\n{algo}: total gradient norm before clipping {total_norm:.2f}, clipped to {max_grad_norm}")
        eps_columns = "".join(f" {'<' + str(eps):>8s}" for eps in args.eps)
        print(f"  {'parameter':42s} {'rms before':>11s} {'rms clipped':>11s}{eps_columns}")
        for name, row in rows.items():
            shares = "".join(f" {share:8.2f}" for share in row["share_below"].values())
            print(f"  {name:42s} {row['rms_before']:11.2e} {row['rms_clipped']:11.2e}{shares}")
        print(json.dumps(dict(algo=algo, seeds=args.seeds, total_norm=total_norm, parameters=rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
