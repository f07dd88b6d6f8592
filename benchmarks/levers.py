"""Per-core levers on the Atari network, each timed on its own against SB3's path (what training did before them).

One process, one torch thread, the network of ``a3c``'s ``atari`` entry (``PaperCnnPolicy`` with
the entry's ``policy_kwargs``: ``PaperCNN``, two 64-unit layers per head) on random Pong-sized
``uint8`` observations; after one untimed call of each, the two variants of a lever are timed in
turn, ``--repeats`` times, the order swapped every other time, and the median ratio is printed
(above 1: the lever is faster).

- ``image-input-folded`` (built since 2026-11-24: ``PaperCnnPolicy``'s path): SB3's path (the
  rollout buffer holds the ``uint8`` images; ``preprocess_obs`` makes them float and divides by
  255; ``PaperCNN`` copies the floats into channels-last memory) against the ``uint8`` images
  copied into channels-last memory while still ``uint8`` (a quarter of the bytes), made float,
  with the 1/255 folded into the first convolution's weights; for the update (forward and
  backward on ``n_steps x n_envs`` samples) and for acting (forward on ``n_envs``)
- ``image-input``: the same without folding (``float() / 255`` after the ``uint8`` copy)
- ``inference-mode``: acting (on the built ``uint8`` path) under ``torch.inference_mode()``
  against SB3's ``torch.no_grad()``
- ``bf16-autocast`` (only where oneDNN has bf16 kernels for the processor): the update and acting
  on the built path under ``torch.autocast("cpu", dtype=torch.bfloat16)`` against float32

    python -m benchmarks.levers --repeats 7
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.policies import BaseModel

from benchmarks.cli import at_least
from benchmarks.minatar import atari_entry
from sb3_async.a3c.policies import PaperCnnPolicy

#: Pong as the ``atari`` entries see it: 4 stacked 84x84 grey frames, 6 actions.
OBSERVATION_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
N_ACTIONS = 6


def _seconds_per_call(function: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def _features_sb3(policy: PaperCnnPolicy, images: th.Tensor) -> th.Tensor:
    # SB3's own path, which PaperCnnPolicy bypasses: preprocess_obs (float() / 255), then PaperCNN on floats.
    return BaseModel.extract_features(policy, images, policy.features_extractor)


def _features_folded(policy: PaperCnnPolicy, images: th.Tensor) -> th.Tensor:
    return policy.extract_features(images, policy.features_extractor)


def _features_unfolded(policy: PaperCnnPolicy, images: th.Tensor) -> th.Tensor:
    cnn = policy.features_extractor
    return cnn(images.contiguous(memory_format=th.channels_last).float() / 255.0)


def _heads(policy: PaperCnnPolicy, features: th.Tensor) -> th.Tensor:
    latent_pi, latent_vf = policy.mlp_extractor(features)
    return policy.action_net(latent_pi).logsumexp(dim=1) + policy.value_net(latent_vf).squeeze(1)


def entry_policy() -> PaperCnnPolicy:
    """The policy of ``a3c``'s ``atari`` entry, for Pong."""
    kwargs = atari_entry("a3c")["policy_kwargs"]
    return PaperCnnPolicy(OBSERVATION_SPACE, gym.spaces.Discrete(N_ACTIONS), lambda _: 7e-4, **kwargs)


def measure(repeats: int, n_envs: int = 8, n_steps: int = 5, seed: int = 0) -> dict[str, Any]:
    """
    Time every lever against SB3's path.

    :param repeats: timings of each pair of variants
    :param n_envs: environments of a worker (acting batch)
    :param n_steps: steps of a rollout (the update's batch is ``n_steps * n_envs``)
    :param seed: seed of the network's initial weights and the observations
    :return: for each lever and part, the median ratio (SB3's path's time / the lever's) and the times of each repeat;
        and the largest difference between SB3's features and the levers'
    """
    th.set_num_threads(1)
    th.manual_seed(seed)
    policy = entry_policy()
    # SB3's rollout buffers store observations in the space's dtype: uint8 images.
    batch = th.randint(0, 256, (n_steps * n_envs, *OBSERVATION_SPACE.shape), dtype=th.uint8)
    acting = batch[:n_envs].clone()

    def update(features: Callable[[], th.Tensor], bf16: bool = False) -> Callable[[], None]:
        def step() -> None:
            policy.zero_grad(set_to_none=True)
            with th.autocast("cpu", dtype=th.bfloat16, enabled=bf16):
                heads = _heads(policy, features())
            heads.float().sum().backward()

        return step

    def act(features: Callable[[], th.Tensor], mode: Callable[[], Any] = th.no_grad, bf16: bool = False) -> Callable[[], None]:
        def step() -> None:
            with mode(), th.autocast("cpu", dtype=th.bfloat16, enabled=bf16):
                _heads(policy, features())

        return step

    update_sb3 = update(lambda: _features_sb3(policy, batch))
    acting_sb3 = act(lambda: _features_sb3(policy, acting))
    update_calls, acting_calls = 20, 150
    variants = {
        "image-input-folded": [
            ("update", update_sb3, update(lambda: _features_folded(policy, batch)), update_calls),
            ("acting", acting_sb3, act(lambda: _features_folded(policy, acting)), acting_calls),
        ],
        "image-input": [
            ("update", update_sb3, update(lambda: _features_unfolded(policy, batch)), update_calls),
            ("acting", acting_sb3, act(lambda: _features_unfolded(policy, acting)), acting_calls),
        ],
        "inference-mode": [
            # Against the acting training does now (the folded path), under no_grad.
            (
                "acting",
                act(lambda: _features_folded(policy, acting)),
                act(lambda: _features_folded(policy, acting), th.inference_mode),
                acting_calls,
            ),
        ],
    }
    # torch's own check (private, hence the fallback): oneDNN has bf16 kernels for this processor.
    if getattr(th.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)():
        built_update = update(lambda: _features_folded(policy, batch))
        built_acting = act(lambda: _features_folded(policy, acting))
        variants["bf16-autocast"] = [
            ("update", built_update, update(lambda: _features_folded(policy, batch), bf16=True), update_calls),
            ("acting", built_acting, act(lambda: _features_folded(policy, acting), bf16=True), acting_calls),
        ]
    with th.no_grad():
        sb3 = _features_sb3(policy, batch)
        difference = max(float((sb3 - lever(policy, batch)).abs().max()) for lever in (_features_folded, _features_unfolded))
    results: dict[str, Any] = {"max_abs_feature_difference": difference}
    for lever, parts in variants.items():
        for part, baseline, candidate, calls in parts:
            baseline(), candidate()  # first calls set up autograd and kernels: not timed
            times = []
            for repeat in range(repeats):
                if repeat % 2 == 0:
                    before = _seconds_per_call(baseline, calls)
                    after = _seconds_per_call(candidate, calls)
                else:
                    after = _seconds_per_call(candidate, calls)
                    before = _seconds_per_call(baseline, calls)
                times.append((before, after))
            ratio = statistics.median(before / after for before, after in times)
            results[f"{lever} {part}"] = dict(ratio=ratio, ms=[(1e3 * before, 1e3 * after) for before, after in times])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=at_least(1), default=7, help="alternating timings of each pair")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = measure(args.repeats)
    print(f"features: SB3's and the uint8 paths differ by at most {results['max_abs_feature_difference']:.1e}")
    for name, result in results.items():
        if isinstance(result, dict):
            before, after = (statistics.median(times) for times in zip(*result["ms"], strict=True))
            print(f"{name:<28} {result['ratio']:.3f}x  (median {before:.2f} ms without the lever, {after:.2f} ms with it)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
