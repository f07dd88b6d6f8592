"""A pixel task that learns in a couple of minutes on 2 cores: the Atari entries' optimizer settings, checked fast.

MinAtar (Young & Tian 2019) plays miniature Atari games on a 10x10 grid of object channels:
a convolutional policy must learn from images, as on Atari, at a hundredth of the cost. The
models here take every hyperparameter of an ``atari`` entry of ``zoo_configs/`` (learning rate
and its schedule, optimizer and its epsilon, t_max, environments per worker, entropy, clipping)
and its policy class (heads, LSTM), and replace only the features extractor (a small CNN for
10x10 inputs) and the exploration schedule's length (scaled to the budget). Breakout's random
policy scores about 0.4 per game.

    python -m benchmarks.minatar --algo a3c --timesteps 1000000 --seeds 0 1 2
    python -m benchmarks.minatar --algo a3c -params "policy_kwargs:'dict(optimizer_class=RMSpropTFLike, \
        optimizer_kwargs=dict(eps=0.1), net_arch=dict(pi=[64, 64], vf=[64, 64]))'"

(``-params policy_kwargs:...`` replaces the entry's whole ``policy_kwargs``: the a3c entry's heads
are named again so that only the epsilon differs.)
"""

import argparse
import json
import pydoc
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from benchmarks.cli import at_least, params_option
from sb3_async.zoo import ALGOS, config_path

__all__ = ["MinAtarCNN", "atari_entry", "make_model", "register"]


def register() -> None:
    """Register MinAtar's gymnasium environments (gymnasium 1.x no longer loads plug-in registrations)."""
    import minatar.gym

    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar.gym.register_envs()


class _ChannelsFirst(gym.ObservationWrapper):
    """MinAtar's (10, 10, channels) boolean grid as a float (channels, 10, 10) image."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space.shape  # type: ignore[misc]
        self.observation_space = gym.spaces.Box(0.0, 1.0, (channels, height, width), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.float32)


class MinAtarCNN(BaseFeaturesExtractor):
    """MinAtar's reference network: 16 filters 3x3, then a fully connected layer."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape  # type: ignore[misc]
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * (height - 2) * (width - 2), features_dim),
            nn.ReLU(),
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)


def atari_entry(algo: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``atari`` entry of our hyperparameter file for ``algo``, as the zoo would pass it to the algorithm."""
    from rl_zoo3.exp_manager import ExperimentManager  # noqa: F401 (imports what the zoo evaluates strings with)
    from rl_zoo3.utils import linear_schedule
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike  # noqa: F401

    entry = dict(yaml.safe_load(config_path(algo).read_text())["atari"])
    entry.update(overrides or {})
    for key in ("env_wrapper", "frame_stack", "n_timesteps"):
        entry.pop(key, None)
    if isinstance(entry.get("learning_rate"), str) and entry["learning_rate"].startswith("lin_"):
        entry["learning_rate"] = linear_schedule(float(entry["learning_rate"][4:]))
    if isinstance(entry.get("policy_kwargs"), str):
        entry["policy_kwargs"] = eval(entry["policy_kwargs"])  # as the zoo does, with its names in scope
    return entry


def make_model(
    algo: str, timesteps: int, seed: int, game: str = "Breakout", n_workers: int = 2, overrides: dict[str, Any] | None = None
) -> Any:
    """``algo`` with its ``atari`` entry's settings on MinAtar ``game``, a small CNN in place of the paper's."""
    register()
    entry = atari_entry(algo, overrides)
    n_envs = entry.pop("n_envs", 1)
    n_workers = entry.pop("n_workers", n_workers)  # -params n_workers:N overrides the argument
    # The entry's own policy class (its heads, a3c_lstm's LSTM) on the small CNN's features.
    policy = entry.pop("policy")
    policy = pydoc.locate(policy) or policy  # a dotted path, or a name the algorithm knows ("CnnPolicy")
    entry["policy_kwargs"] = {**entry.get("policy_kwargs", {}), "features_extractor_class": MinAtarCNN}
    if "exploration_steps" in entry:
        # The entry anneals ε over a tenth of its 10M-step budget: the same share of this one.
        entry["exploration_steps"] = timesteps // 10
    env = make_vec_env(f"MinAtar/{game}-v1", n_envs=n_envs, seed=seed, wrapper_class=_ChannelsFirst)
    return ALGOS[algo](policy, env, n_workers=n_workers, seed=seed, **entry)


def run(
    algo: str, timesteps: int, seed: int, game: str = "Breakout", overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train once; the mean score of the last 100 training games, and the seconds it took."""
    model = make_model(algo, timesteps, seed, game, overrides=overrides)
    start = time.perf_counter()
    model.learn(timesteps)
    seconds = time.perf_counter() - start
    scores = [episode["r"] for episode in model.ep_info_buffer]
    model.env.close()
    return dict(
        algo=algo,
        game=game,
        seed=seed,
        steps=int(model.num_timesteps),
        seconds=round(seconds, 1),
        mean100=float(np.mean(scores)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.minatar", description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGOS), default="a3c")
    parser.add_argument("--game", default="Breakout", help="MinAtar game: Breakout, Asterix, Freeway, Seaquest, SpaceInvaders")
    parser.add_argument("--timesteps", type=at_least(1), default=1_000_000)
    parser.add_argument("--seeds", type=at_least(0), nargs="+", default=[0])
    parser.add_argument("-params", nargs="*", default=[], help="entry overrides, as the zoo's -params key:value")
    args = parser.parse_args(argv)
    overrides = params_option(parser, args.params)
    for seed in args.seeds:
        print(json.dumps(dict(run(args.algo, args.timesteps, seed, args.game, overrides), params=args.params)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
