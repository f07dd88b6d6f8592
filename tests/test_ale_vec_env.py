"""AleVecEnv: ale-py's vectorised Atari behind SB3's VecEnv, as AtariWrapper's preprocessing and Monitor's episodes."""

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv, WarpFrame
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_async import A3C
from sb3_async.a3c.policies import PaperCnnPolicy
from sb3_async.common import portable
from sb3_async.common.ale_vec_env import AleVecEnv
from sb3_async.zoo.ale import _atari_wrapper_arguments


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(env_id="NoSuchGame-v4"), ValueError, "env_id"),
        (dict(env_id="CartPole-v1"), ValueError, "Atari environment of ale-py"),
        (dict(env_id="PongNoFrameskip-v4", n_envs=0), ValueError, "n_envs"),
        (dict(env_id="PongNoFrameskip-v4", frame_stack="4"), TypeError, "frame_stack"),
        (dict(env_id="PongNoFrameskip-v4", num_threads=0), ValueError, "num_threads"),
        (dict(env_id="PongNoFrameskip-v4", seed=1.5), TypeError, "seed"),
        (dict(env_id=123), ValueError, "env_id"),
        (dict(env_id="PongNoFrameskip-v4", clip_reward=1), TypeError, "clip_reward"),
        (dict(env_id="PongNoFrameskip-v4", repeat_action_probability=1.5), ValueError, "repeat_action_probability"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    # Wrong types raise TypeError, wrong values ValueError, as every argument of the package does.
    with pytest.raises(error, match=message):
        AleVecEnv(**kwargs)


def test_a_game_is_one_episode_and_each_lost_life_a_terminal():
    env = AleVecEnv("BreakoutNoFrameskip-v4", n_envs=2, seed=0)
    previous = env.reset()
    assert previous.shape == (2, 4, 84, 84) and previous.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)
    rng = np.random.default_rng(0)
    terminals, games, frames = np.zeros(2, dtype=int), np.zeros(2, dtype=int), []
    for _ in range(3_000):
        obs, _, dones, infos = env.step(rng.integers(0, 4, 2))
        for i in range(2):
            if not dones[i]:
                # Channels first, newest frame last, as VecTransposeImage(VecFrameStack(...)).
                np.testing.assert_array_equal(obs[i, :-1], previous[i, 1:])
                continue
            terminals[i] += 1
            terminal = infos[i]["terminal_observation"]
            # The terminal observation continues the stack, whether the game goes on or restarts.
            np.testing.assert_array_equal(terminal[:-1], previous[i, 1:])
            if "episode" in infos[i]:
                # Breakout's 5 lives: 5 terminals per game; a new game starts from a fresh stack.
                assert terminals[i] == 5
                assert not np.array_equal(obs[i], terminal)
                frames.append(infos[i]["episode"]["l"])
                terminals[i], games[i] = 0, games[i] + 1
            else:
                np.testing.assert_array_equal(obs[i], terminal)  # the game goes on
        previous = obs
    env.close()
    assert (games >= 3).all()
    # Lengths in emulator frames (4 per step), as Monitor below AtariWrapper counts them.
    assert min(frames) > 4 * 100


def test_rewards_are_clipped_but_the_episode_keeps_the_score():
    # Space Invaders scores 5 to 30 per alien: clipping shows.
    clipped = AleVecEnv("SpaceInvadersNoFrameskip-v4", n_envs=2, seed=1)
    raw = AleVecEnv("SpaceInvadersNoFrameskip-v4", n_envs=2, seed=1, clip_reward=False)
    clipped.reset(), raw.reset()
    rng = np.random.default_rng(0)
    clipped_rewards, raw_rewards, scores, raw_sums = [], [], [], np.zeros(2)
    for _ in range(1_500):
        actions = rng.integers(0, 6, 2)
        _, reward, _, infos = clipped.step(actions)
        _, raw_reward, _, raw_infos = raw.step(actions)
        clipped_rewards.append(reward)
        raw_rewards.append(raw_reward)
        raw_sums += raw_reward
        for i in range(2):
            if "episode" in raw_infos[i]:
                assert infos[i]["episode"]["r"] == raw_infos[i]["episode"]["r"] == raw_sums[i]
                scores.append(raw_sums[i])
                raw_sums[i] = 0
    clipped.close(), raw.close()
    np.testing.assert_array_equal(np.stack(clipped_rewards), np.sign(np.stack(raw_rewards)))
    assert np.max(raw_rewards) > 1 and scores and max(scores) > 20


def test_truncated_games_say_so_and_end_their_episode():
    env = AleVecEnv("PongNoFrameskip-v4", n_envs=1, seed=0, max_episode_frames=400)
    env.reset()
    ends = []
    for _ in range(400):
        _, _, dones, infos = env.step(np.zeros(1, dtype=int))
        if dones[0]:
            ends.append(infos[0])
    env.close()
    assert len(ends) >= 3
    assert all(info["TimeLimit.truncated"] and "episode" in info for info in ends)


@pytest.mark.parametrize("game", ["Pong", "Breakout"])
def test_the_game_is_atari_wrappers_frame_for_frame(game):
    """
    Given the same actions, AleVecEnv plays the game SB3's wrappers play: same rewards, same end,
    and frames within a few grey levels (ALE's greyscale and resize against OpenCV's). ALE's fire
    reset is one FIRE frame where FireResetEnv takes two 4-frame steps, so the SB3 side starts
    with that one frame instead.
    """
    ours = AleVecEnv(
        f"{game}NoFrameskip-v4", seed=0, frame_stack=1, noop_max=0, terminal_on_life_loss=False, clip_reward=False
    )
    emulator = gym.make(f"{game}NoFrameskip-v4")
    sb3 = WarpFrame(MaxAndSkipEnv(emulator, skip=4))
    ours.reset(), sb3.reset(seed=0)
    emulator.step(1)
    rng = np.random.default_rng(0)
    score = 0.0
    for step in range(5_000):
        action = int(rng.integers(ours.action_space.n))
        our_frame, our_reward, done, infos = ours.step(np.array([action]))
        sb3_frame, sb3_reward, terminated, truncated, _ = sb3.step(action)
        assert (our_reward[0], done[0]) == (sb3_reward, terminated or truncated), step
        score += sb3_reward
        if done[0]:
            assert infos[0]["episode"]["r"] == score != 0
            break
        apart = np.abs(our_frame[0, 0].astype(int) - sb3_frame[:, :, 0].astype(int))
        assert apart.max() <= 32 and apart.mean() < 0.25, (step, apart.max(), apart.mean())
    assert done[0], "the random game did not end"
    ours.close(), sb3.close()


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
    env = AleVecEnv("BreakoutNoFrameskip-v4", n_envs=4, seed=0)
    model = A3C(PaperCnnPolicy, env, n_workers=2, seed=0, n_steps=5)
    model.learn(2_000)
    assert model.num_timesteps >= 2_000
    assert model.env is env  # the main process's games are untouched
    terminals = []
    rewards, lengths = evaluate_policy(
        model,
        AleVecEnv("BreakoutNoFrameskip-v4", n_envs=1, seed=0),
        n_eval_episodes=1,
        deterministic=False,
        return_episode_rewards=True,
        callback=lambda locals_, globals_: terminals.append(bool(locals_["done"])),
    )
    # One episode is a whole game: all 5 lives, not the first one.
    assert sum(terminals) == 5 and len(rewards) == len(lengths) == 1
    env.close()


def test_atari_wrapper_arguments_of_a_zoo_entry():
    wrapper = "stable_baselines3.common.atari_wrappers.AtariWrapper"
    assert _atari_wrapper_arguments(wrapper) == {}
    assert _atari_wrapper_arguments([{wrapper: dict(terminal_on_life_loss=False)}]) == {"terminal_on_life_loss": False}
    assert _atari_wrapper_arguments({wrapper: dict(action_repeat_probability=0.0)}) == {}
    with pytest.raises(ValueError, match="action_repeat_probability"):
        _atari_wrapper_arguments({wrapper: dict(action_repeat_probability=0.25)})
    with pytest.raises(ValueError, match="alone"):
        _atari_wrapper_arguments([wrapper, "gymnasium.wrappers.TimeLimit"])


def test_zoo_refuses_what_ale_vec_env_cannot_do(tmp_path):
    from benchmarks.configs import experiment
    from sb3_async.zoo.ale import use_ale_vec_env

    manager = experiment("a3c", "PongNoFrameskip-v4", 0, 1_000, str(tmp_path))
    manager.env_kwargs = {"frameskip": 5}
    use_ale_vec_env(manager)
    with pytest.raises(ValueError, match="frameskip"):
        manager.setup_experiment()
    # An integer of NumPy's (as YAML or argparse may give) is taken.
    AleVecEnv("PongNoFrameskip-v4", np.int64(2), frame_skip=np.int64(4)).close()


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
