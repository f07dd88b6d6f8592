"""How large the Atari entries' gradients are, layer by layer, and what clipping and RMSprop's epsilon make of them.

A freshly built policy of each entry (its ``atari`` settings, as the zoo passes them) takes one
update's batch: ``n_steps x n_envs`` Pong frames from random play (``AleVecEnv``, the games of
``--ale-vec-env``), the A2C loss A3C minimises, with random advantages and returns (seeded; the
loss's scale, not its direction, is what is measured). Printed per parameter: the root mean
square of its gradient before and after clipping the whole gradient to ``max_grad_norm``, and
the share of its entries whose clipped squared gradient is below the optimizer's epsilon. Where
that share is high, RMSprop with epsilon inside the root (``RMSpropTFLike``) steps by
``lr * g / sqrt(eps)``: plain SGD, whose step shrinks with the gradient, instead of a step near
``lr``. Means over ``--seeds`` networks.

    python -m benchmarks.gradient_scale --algos a3c a3c_lstm --seeds 5
"""

import argparse
import json
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from benchmarks.cli import at_least
from benchmarks.minatar import atari_entry


def pong_batch(n_steps: int, n_envs: int, warmup: int = 300, seed: int = 0) -> np.ndarray:
    """``n_steps x n_envs`` stacked Pong frames after ``warmup`` random steps, environment by environment."""
    from sb3_async.common.ale_vec_env import AleVecEnv

    env = AleVecEnv("PongNoFrameskip-v4", n_envs, seed=seed)
    env.reset()
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=(warmup + n_steps, n_envs))
    frames = []
    for t, action in enumerate(actions):
        observation = env.step(action)[0]
        if t >= warmup:
            frames.append(observation)
    env.close()
    # Environment-major, as a recurrent policy reads its sequences.
    return np.stack(frames, axis=1).reshape(n_steps * n_envs, *frames[0].shape[1:])


def measure(algo: str, images: np.ndarray, n_envs: int, seed: int) -> tuple[dict[str, float], float, float]:
    """Per-parameter gradient statistics of ``algo``'s fresh ``atari`` policy, and the total norm before clipping."""
    entry = atari_entry(algo)
    policy_class = _locate(entry["policy"])
    kwargs = entry.get("policy_kwargs", {})
    eps = kwargs.get("optimizer_kwargs", {}).get("eps", 1e-5)
    th.manual_seed(seed)
    policy = policy_class(spaces.Box(0, 255, images.shape[1:], np.uint8), spaces.Discrete(6), lambda _: 7e-4, **kwargs)
    generator = th.Generator().manual_seed(1000 + seed)
    batch = len(images)
    actions = th.randint(0, 6, (batch,), generator=generator)
    advantages, returns = th.randn(batch, generator=generator), th.randn(batch, generator=generator)
    observations = th.as_tensor(images)
    if hasattr(policy, "lstm_actor"):
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        zeros = th.zeros(policy.lstm_actor.num_layers, n_envs, policy.lstm_actor.hidden_size)
        states = RNNStates((zeros, zeros), (zeros, zeros))
        values, log_prob, entropy = policy.evaluate_actions(observations, actions, states, th.zeros(batch))
    else:
        values, log_prob, entropy = policy.evaluate_actions(observations, actions)
    loss = (
        -(advantages * log_prob).mean()
        - entry.get("ent_coef", 0.0) * entropy.mean()
        + entry.get("vf_coef", 0.5) * ((returns - values.flatten()) ** 2).mean()
    )
    loss.backward()
    before = {name: p.grad.pow(2).mean().sqrt().item() for name, p in policy.named_parameters() if p.grad is not None}
    total_norm = th.nn.utils.clip_grad_norm_(policy.parameters(), entry.get("max_grad_norm", 0.5)).item()
    stats: dict[str, float] = {}
    for name, p in policy.named_parameters():
        if p.grad is None:
            continue
        stats[f"{name} rms before"] = before[name]
        stats[f"{name} rms clipped"] = p.grad.pow(2).mean().sqrt().item()
        stats[f"{name} share below eps"] = (p.grad.pow(2) < eps).float().mean().item()
    return stats, total_norm, eps


def _locate(policy: str) -> Any:
    import pydoc

    located = pydoc.locate(policy)
    if located is None:
        raise ValueError(f"policy {policy!r} of the atari entry is not an importable class")
    return located


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=["a3c", "a3c_lstm"], default=["a3c", "a3c_lstm"])
    parser.add_argument("--seeds", type=at_least(1), default=5, help="networks per entry")
    args = parser.parse_args(argv)
    for algo in args.algos:
        entry = atari_entry(algo)
        n_envs, n_steps = entry.get("n_envs", 8), entry.get("n_steps", 5)
        images = pong_batch(n_steps, n_envs)
        runs = [measure(algo, images, n_envs, seed) for seed in range(args.seeds)]
        stats = {key: float(np.mean([run[0][key] for run in runs])) for key in runs[0][0]}
        print(f"\n{algo}: total gradient norm before clipping {np.mean([run[1] for run in runs]):.2f}, eps {runs[0][2]:g}")
        print(f"  {'parameter':42s} {'rms before':>11s} {'rms clipped':>11s} {'below eps':>9s}")
        for name in dict.fromkeys(key.rsplit(" rms", 1)[0].rsplit(" share", 1)[0] for key in stats):
            print(
                f"  {name:42s} {stats[f'{name} rms before']:11.2e} {stats[f'{name} rms clipped']:11.2e}"
                f" {stats[f'{name} share below eps']:9.2f}"
            )
        print(json.dumps(dict(algo=algo, seeds=args.seeds, total_norm=np.mean([run[1] for run in runs]), **stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
