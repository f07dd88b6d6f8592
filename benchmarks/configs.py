"""The configurations the benchmarks compare: an algorithm with the hyperparameters of one zoo file.

Every model is built by rl_zoo3's own ``ExperimentManager``, so each configuration runs with
exactly the settings a user of the zoo gets: sb3-async's algorithms with our files
(``zoo_configs/``), SB3's with rl_zoo3's, and ``a3c@a2c`` is A3C with rl_zoo3's A2C file.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_async.zoo import ALGOS as OUR_ALGOS
from sb3_async.zoo import config_path, register


@dataclass(frozen=True)
class Config:
    """
    An algorithm (its zoo key) run with the hyperparameter file of ``settings_of``; ``torch_threads``
    set in the training process (None: left as the algorithm sets it for its users).
    """

    key: str
    label: str
    algo: str
    settings_of: str
    torch_threads: int | None = None
    #: Hyperparameters set on top of the file's (as the zoo's -params).
    overrides: tuple[tuple[str, Any], ...] = ()
    #: Torch device of the model (as the zoo's --device).
    device: str = "cpu"
    #: The zoo's --vec-env: "dummy" steps the envs in the training process, "subproc" in one process each.
    vec_env: str = "dummy"
    #: Atari games as one AleVecEnv (the zoo's --ale-vec-env) instead of AtariWrapper-wrapped envs.
    ale_vec_env: bool = False

    @property
    def hyperparams_file(self) -> str | None:
        """The file the zoo reads (None: the zoo's own file for ``algo``)."""
        if self.settings_of in OUR_ALGOS:
            return str(config_path(self.settings_of))
        if self.settings_of == self.algo:
            return None
        import rl_zoo3

        return str(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{self.settings_of}.yml")

    @property
    def settings(self) -> str:
        """Where the settings come from, for the report."""
        if self.settings_of in OUR_ALGOS:
            return f"zoo_configs/{self.settings_of}.yml"
        return f"rl_zoo3 hyperparams/{self.settings_of}.yml"


CONFIGS: dict[str, Config] = {
    config.key: config
    for config in (
        Config("a2c", "A2C", "a2c", "a2c"),
        # As rl_zoo3's `train --num-threads 1`: shows how much of A2C's rate its torch threads cost
        # or bring (small networks on few, possibly busy, cores lose time synchronizing threads).
        Config("a2c_1thread", "A2C (1 torch thread)", "a2c", "a2c", torch_threads=1),
        # A2C as a GPU owner runs it: the network on the GPU, the envs stepped in parallel processes.
        Config("a2c@cuda", "A2C (GPU, SubprocVecEnv)", "a2c", "a2c", device="cuda", vec_env="subproc"),
        Config("a2c@ale", "A2C (AleVecEnv)", "a2c", "a2c", ale_vec_env=True),
        Config("a3c@a2c", "A3C (A2C's settings)", "a3c", "a2c"),
        Config("a3c", "A3C", "a3c", "a3c"),
        Config("a3c@ale", "A3C (AleVecEnv)", "a3c", "a3c", ale_vec_env=True),
        Config("a3c_lstm", "A3C LSTM", "a3c_lstm", "a3c_lstm"),
        Config("a3c_lstm@ale", "A3C LSTM (AleVecEnv)", "a3c_lstm", "a3c_lstm", ale_vec_env=True),
        Config("a3c@ray", "A3C (Ray backend)", "a3c", "a3c", overrides=(("backend", "ray"),)),
        Config(
            "async_nstep_q@ray", "n-step Q (Ray backend)", "async_nstep_q", "async_nstep_q", overrides=(("backend", "ray"),)
        ),
        Config("async_nstep_q", "n-step Q", "async_nstep_q", "async_nstep_q"),
        Config("async_onestep_q", "1-step Q", "async_onestep_q", "async_onestep_q"),
        Config("async_onestep_sarsa", "1-step Sarsa", "async_onestep_sarsa", "async_onestep_sarsa"),
        Config("dqn", "DQN", "dqn", "dqn"),
    )
}

#: sb3-async's algorithms, with their shipped settings.
OURS = ["a3c", "async_nstep_q", "async_onestep_q", "async_onestep_sarsa"]


def config_of(key: str) -> Config:
    """The configuration ``key``; any other zoo key (``ppo``, ...) is that algorithm with the zoo's own file."""
    return CONFIGS.get(key) or Config(key, key.upper(), key, key)


def is_atari(env_id: str) -> bool:
    """Whether the zoo treats ``env_id`` as Atari (its ``atari`` entry applies)."""
    return "NoFrameskip" in env_id


def experiment(
    key: str,
    env_id: str,
    seed: int,
    n_timesteps: int,
    folder: str,
    overrides: dict[str, Any] | None = None,
    ale_vec_env: bool = False,
) -> Any:
    """
    rl_zoo3's ``ExperimentManager`` for configuration ``key``; ``overrides`` are the zoo's ``-params``,
    ``ale_vec_env`` its ``--ale-vec-env`` (also set by the configuration itself, e.g. ``a3c@ale``).
    """
    from rl_zoo3.exp_manager import ExperimentManager

    register()
    config = config_of(key)
    overrides = {**dict(config.overrides), **(overrides or {})}
    manager = ExperimentManager(
        argparse.Namespace(),
        config.algo,
        env_id,
        folder,
        n_timesteps=n_timesteps,
        eval_freq=-1,
        seed=seed,
        hyperparams=overrides or None,
        config=config.hyperparams_file,
        verbose=0,
        vec_env_type=config.vec_env,
        device=config.device,
    )
    if config.ale_vec_env or ale_vec_env:
        from sb3_async.zoo.ale import use_ale_vec_env

        use_ale_vec_env(manager)
    return manager


def describe_network(model: Any) -> dict[str, Any]:
    """The policy class, features extractor, layer sizes and parameter count of ``model``'s network."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    policy = model.policy
    # A Q-learning policy also holds the target network, which is not trained.
    network = getattr(policy, "q_net", policy)
    extractor = next((m for m in network.modules() if isinstance(m, BaseFeaturesExtractor)), None)
    return dict(
        policy=type(policy).__name__,
        features_extractor=type(extractor).__name__ if extractor is not None else None,
        net_arch=repr(getattr(network, "net_arch", None)),
        parameters=sum(p.numel() for p in network.parameters()),
    )
