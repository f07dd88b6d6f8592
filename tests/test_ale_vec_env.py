"""AleVecEnv: ale-py's vectorised Atari behind SB3's VecEnv, as AtariWrapper's preprocessing and Monitor's episodes."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

from sb3_async import A3C
from sb3_async.a3c.policies import PaperCnnPolicy
from sb3_async.common import portable
from sb3_async.common.ale_vec_env import AleVecEnv
from sb3_async.zoo.ale import _atari_wrapper_arguments


def _random_play(env: AleVecEnv, steps: int, seed: int = 0) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    rewards, dones, infos = [], [], []
    for _ in range(steps):
        _, reward, done, info = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        rewards.append(reward)
        dones.append(done)
        infos.append(info)
    return rewards, dones, infos


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env_id="NoSuchGame-v4"), "env_id"),
        (dict(env_id="CartPole-v1"), "not an Atari environment"),
        (dict(env_id="PongNoFrameskip-v4", n_envs=0), "n_envs"),
        (dict(env_id="PongNoFrameskip-v4", frame_stack="4"), "frame_stack"),
        (dict(env_id="PongNoFrameskip-v4", num_threads=0), "num_threads"),
        (dict(env_id="PongNoFrameskip-v4", seed=1.5), "seed"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AleVecEnv(**kwargs)


def test_a_game_is_one_episode_and_each_lost_life_a_terminal():
    env = AleVecEnv("BreakoutNoFrameskip-v4", n_envs=2, seed=0, clip_reward=False)
    obs = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)
    rewards, dones, infos = _random_play(env, 3_000)
    env.close()
    for i in range(2):
        game_return, game_steps, terminals, games = 0.0, 0, 0, 0
        for reward, done, info in zip(rewards, dones, infos):
            game_return += reward[i]
            game_steps += 1
            if done[i]:
                terminals += 1
                assert info[i]["terminal_observation"].shape == (4, 84, 84)
            if "episode" in info[i]:
                assert done[i]
                # Breakout's 5 lives: 5 terminals per game, the game's whole return and length.
                assert terminals == 5
                assert info[i]["episode"]["r"] == pytest.approx(game_return)
                assert info[i]["episode"]["l"] == game_steps
                game_return, game_steps, terminals, games = 0.0, 0, 0, games + 1
        assert games >= 3


def test_rewards_are_clipped_but_the_episode_keeps_the_score():
    env = AleVecEnv("BreakoutNoFrameskip-v4", n_envs=4, seed=1)
    env.reset()
    rewards, _, infos = _random_play(env, 2_000)
    env.close()
    assert set(np.unique(np.concatenate(rewards))) <= {0.0, 1.0}
    assert sum(info["episode"]["r"] for step in infos for info in step if "episode" in info) > 0


def test_frames_match_atari_wrappers():
    """Same game, same actions, no random no-ops: the preprocessed frames of both paths agree."""
    ours = AleVecEnv("PongNoFrameskip-v4", n_envs=1, seed=0, noop_max=0)
    sb3 = VecTransposeImage(
        VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0, wrapper_kwargs=dict(noop_max=0)), 4)
    )
    ours.reset()
    sb3.reset()
    rng = np.random.default_rng(0)
    identical = []
    # The two fire-on-reset sequences differ by a few frames, after which the games drift apart.
    for _ in range(40):
        action = rng.integers(0, 6, 1)
        a, b = ours.step(action)[0][0, -1], sb3.step(action)[0][0, -1]
        identical.append(np.mean(a == b))
    ours.close()
    sb3.close()
    assert np.median(identical) > 0.95


def test_seeded_envs_repeat_and_pickled_copies_start_their_own_games():
    def frames(env: AleVecEnv) -> np.ndarray:
        env.reset()
        return np.stack([env.step(np.full(env.num_envs, 2))[0] for _ in range(50)])

    first, second = AleVecEnv("PongNoFrameskip-v4", 2, seed=3), AleVecEnv("PongNoFrameskip-v4", 2, seed=3)
    np.testing.assert_array_equal(frames(first), frames(second))
    # The zoo draws seeds up to 2**32; ale-py takes C ints.
    AleVecEnv("PongNoFrameskip-v4", 2, seed=2**32 - 1).reset()
    copy = pickle.loads(pickle.dumps(first))
    assert copy.reset().shape == (2, 4, 84, 84)
    # As the Ray backend sends it to its actors.
    sent = portable.loads(portable.dumps(first, "env"))
    assert sent.reset().shape == (2, 4, 84, 84)
    for env in (first, second, copy, sent):
        env.close()


def test_a3c_workers_each_build_their_own_games_and_evaluation_reads_whole_games():
    env = AleVecEnv("PongNoFrameskip-v4", n_envs=4, seed=0)
    model = A3C(PaperCnnPolicy, env, n_workers=2, seed=0, n_steps=5)
    model.learn(2_000)
    assert model.num_timesteps >= 2_000
    assert model.env is env  # the main process's games are untouched
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=1, return_episode_rewards=True)
    # A whole game of Pong: one player reaches 21 (a life-less game: one episode).
    assert -21 <= rewards[0] <= 21 and abs(rewards[0]) >= 1 and lengths[0] > 200
    env.close()


def test_atari_wrapper_arguments_of_a_zoo_entry():
    wrapper = "stable_baselines3.common.atari_wrappers.AtariWrapper"
    assert _atari_wrapper_arguments(wrapper) == {}
    assert _atari_wrapper_arguments([{wrapper: dict(terminal_on_life_loss=False)}]) == {"terminal_on_life_loss": False}
    with pytest.raises(ValueError, match="action_repeat_probability"):
        _atari_wrapper_arguments({wrapper: dict(action_repeat_probability=0.25)})
    with pytest.raises(ValueError, match="alone"):
        _atari_wrapper_arguments([wrapper, "gymnasium.wrappers.TimeLimit"])


def test_zoo_train_with_ale_vec_env(tmp_path):
    arguments = ["train", "--algo", "a3c", "--env", "PongNoFrameskip-v4", "-n", "2000", "--ale-vec-env", "-f", "logs"]
    arguments += ["-params", "n_workers:2", "n_envs:4"]
    # The launcher as `python -m sb3_async.zoo` runs it, telling which VecEnv the model got.
    script = (
        "import runpy, rl_zoo3.exp_manager as m; learn = m.ExperimentManager.learn; "
        "m.ExperimentManager.learn = lambda self, model: print('ENV', type(model.env).__name__) or learn(self, model); "
        "runpy.run_module('sb3_async.zoo', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ENV AleVecEnv" in result.stdout
    assert (tmp_path / "logs" / "a3c" / "PongNoFrameskip-v4_1" / "PongNoFrameskip-v4.zip").is_file()
    refused = subprocess.run(
        [sys.executable, "-m", "sb3_async.zoo", "enjoy", "--algo", "a3c", "--ale-vec-env"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "train only" in refused.stderr


def test_ale_ids_need_no_registration_first():
    # A user's first line may be AleVecEnv("PongNoFrameskip-v4"), before anything imported ale_py.
    code = "from sb3_async.common.ale_vec_env import AleVecEnv; AleVecEnv('PongNoFrameskip-v4').close()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
