"""The Paper* policies are the paper's network, and models saved before they were still load."""

import numpy as np
import pytest
import stable_baselines3.common.policies as policies_module
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticCnnPolicy as CnnLstmPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from torch import nn

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ
from sb3_async.a3c.policies import PaperCnnLstmPolicy, PaperCnnPolicy
from sb3_async.common.saving import POLICY_FORMAT
from sb3_async.common.torch_layers import PaperCNN
from sb3_async.q_learning.policies import PaperCnnPolicy as QPaperCnnPolicy


def _image_env():
    return FakeImageEnv(screen_height=40, screen_width=40, n_channels=4, discrete=True)


def _heads(model):
    """The layers after the features extractor (and the LSTM), by kind of model."""
    if hasattr(model.policy, "q_net"):
        return [model.policy.q_net.q_net]
    return [model.policy.mlp_extractor, model.policy.action_net, model.policy.value_net]


@pytest.mark.parametrize(
    "algo, policy",
    [(A3C, "PaperCnnPolicy"), (A3C, PaperCnnLstmPolicy), (AsyncNStepQ, "PaperCnnPolicy")],
    ids=["a3c", "a3c_lstm", "q"],
)
def test_values_and_policy_come_straight_from_the_256_unit_layer(algo, policy):
    """The paper: 'Values and/or action values were then generated from the (same) last hidden layer.'"""
    model = algo(policy, _image_env(), n_workers=1, seed=0)
    linears = [layer for head in _heads(model) for layer in head.modules() if isinstance(layer, nn.Linear)]
    assert linears and all(layer.in_features == 256 for layer in linears), linears
    # Other heads stay available, as with SB3's policies.
    wider = algo(policy, _image_env(), n_workers=1, seed=0, policy_kwargs=dict(net_arch=[32]))
    assert any(layer.out_features == 32 for head in _heads(wider) for layer in head.modules() if isinstance(layer, nn.Linear))


A3C_HEADS = dict(pi=[64, 64], vf=[64, 64])


@pytest.mark.parametrize(
    "algo, policy, old_heads, saved_kwargs",
    [
        (A3C, "PaperCnnPolicy", A3C_HEADS, {}),
        (A3C, PaperCnnLstmPolicy, A3C_HEADS, {}),
        (AsyncOneStepQ, "PaperCnnPolicy", [64, 64], {}),
        # SB3 added its heads after any extractor but NatureCNN, also one named explicitly, and for net_arch=None.
        (A3C, "PaperCnnPolicy", A3C_HEADS, dict(features_extractor_class=PaperCNN, net_arch=None)),
    ],
    ids=["a3c", "a3c_lstm", "q", "a3c_named_extractor"],
)
def test_a_model_saved_with_the_older_default_heads_loads_and_predicts_the_same(
    algo, policy, old_heads, saved_kwargs, tmp_path
):
    env = _image_env()
    model = algo(policy, env, n_workers=1, seed=0, policy_kwargs={**saved_kwargs, "net_arch": old_heads})
    # What a file saved before the paper's heads became the default holds: its kwargs, no format.
    model.policy_kwargs = dict(saved_kwargs)
    delattr(model, POLICY_FORMAT)
    model.save(tmp_path / "older")
    observations = np.stack([env.observation_space.sample() for _ in range(8)])
    actions = model.predict(observations, deterministic=True)[0]
    loaded = algo.load(tmp_path / "older", env=env)
    np.testing.assert_array_equal(actions, loaded.predict(observations, deterministic=True)[0])
    # As SB3 allows: load with the policy_kwargs the model was built with.
    loaded = algo.load(tmp_path / "older", env=env, policy_kwargs=dict(saved_kwargs))
    np.testing.assert_array_equal(actions, loaded.predict(observations, deterministic=True)[0])


@pytest.mark.parametrize("algo", [A3C, AsyncOneStepQ], ids=["a3c", "q"])
def test_a_model_saved_now_rebuilds_its_heads(algo, tmp_path):
    env = _image_env()
    model = algo("PaperCnnPolicy", env, n_workers=1, seed=0)
    model.save(tmp_path / "current")
    loaded = algo.load(tmp_path / "current", env=env)
    assert loaded.policy.state_dict().keys() == model.policy.state_dict().keys()


def _evaluate(policy, observations, actions):
    if hasattr(policy, "lstm_actor"):
        n_envs = observations.shape[0]
        lstm = policy.lstm_actor
        zeros = (th.zeros(lstm.num_layers, n_envs, lstm.hidden_size),) * 2
        return policy.evaluate_actions(observations, actions, RNNStates(zeros, zeros), th.zeros(n_envs))
    return policy.evaluate_actions(observations, actions)


@pytest.mark.parametrize("share", [True, False], ids=["shared_extractor", "separate_extractors"])
@pytest.mark.parametrize(
    "paper_policy, sb3_policy",
    [(PaperCnnPolicy, ActorCriticCnnPolicy), (PaperCnnLstmPolicy, CnnLstmPolicy)],
    ids=["ff", "lstm"],
)
def test_paper_cnn_scales_uint8_images_itself_as_sb3_would(paper_policy, sb3_policy, share, monkeypatch):
    """The update on raw uint8 images (PaperCNN scales them) equals SB3's float() / 255 path, gradients included."""
    space = spaces.Box(0, 255, (4, 40, 40), np.uint8)
    kwargs = dict(share_features_extractor=share)
    th.manual_seed(0)
    # sb3-contrib's policy has a critic LSTM of its own: compare with the same configuration.
    torso = dict(share_lstm_torso=False) if paper_policy is PaperCnnLstmPolicy else {}
    ours = paper_policy(space, spaces.Discrete(4), lambda _: 7e-4, **kwargs, **torso)
    sb3 = sb3_policy(space, spaces.Discrete(4), lambda _: 7e-4, features_extractor_class=PaperCNN, net_arch=[], **kwargs)
    sb3.load_state_dict(ours.state_dict())
    observations = th.as_tensor(np.stack([space.sample() for _ in range(6)]))
    actions = th.arange(6) % 4
    expected = _evaluate(sb3, observations, actions)
    # The point of the path: SB3's preprocessing (a pass over float images) is not run.
    monkeypatch.setattr(policies_module, "preprocess_obs", _refuse_preprocessing)
    got = _evaluate(ours, observations, actions)
    for mine, theirs in zip(got, expected, strict=True):
        th.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    for model, result in ((ours, got), (sb3, expected)):
        model.zero_grad()
        (result[0].sum() + result[1].sum() + result[2].sum()).backward()
    for (name, mine), theirs in zip(ours.named_parameters(), sb3.parameters(), strict=True):
        th.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_paper_q_network_scales_uint8_images_itself_as_sb3_would(monkeypatch):
    space = spaces.Box(0, 255, (4, 40, 40), np.uint8)
    th.manual_seed(0)
    ours = QPaperCnnPolicy(space, spaces.Discrete(4), lambda _: 1e-4)
    sb3 = DQNCnnPolicy(space, spaces.Discrete(4), lambda _: 1e-4, features_extractor_class=PaperCNN, net_arch=[])
    sb3.load_state_dict(ours.state_dict())
    observations = th.as_tensor(np.stack([space.sample() for _ in range(6)]))
    expected = [sb3.q_net(observations), sb3.q_net_target(observations)]
    monkeypatch.setattr(policies_module, "preprocess_obs", _refuse_preprocessing)
    got = [ours.q_net(observations), ours.q_net_target(observations)]
    th.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for model, result in ((ours, got), (sb3, expected)):
        model.zero_grad()
        result[0].sum().backward()
    for (name, mine), theirs in zip(ours.q_net.named_parameters(), sb3.q_net.parameters(), strict=True):
        th.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-5, msg=name)


def _refuse_preprocessing(*args, **kwargs):
    raise AssertionError("SB3's preprocess_obs ran on images PaperCNN could take raw")


def _outputs(policy, observations):
    """What a policy's training computes from ``observations``: A3C's evaluation of actions, or Q-values."""
    if hasattr(policy, "q_net"):
        return (policy.q_net(observations),)
    return _evaluate(policy, observations, th.arange(len(observations)) % 4)


@pytest.mark.parametrize("policy_class", [PaperCnnPolicy, PaperCnnLstmPolicy, QPaperCnnPolicy], ids=["a3c", "a3c_lstm", "q"])
def test_the_default_policies_give_the_same_from_raw_images_and_from_their_float_values(policy_class, monkeypatch):
    """Also the paper's shared LSTM torso: float images of the same values take SB3's path (float() / 255)."""
    space = spaces.Box(0, 255, (4, 40, 40), np.uint8)
    th.manual_seed(0)
    policy = policy_class(space, spaces.Discrete(4), lambda _: 7e-4)
    observations = th.as_tensor(np.stack([space.sample() for _ in range(6)]))
    expected = _outputs(policy, observations.float())
    policy.zero_grad()
    sum(output.sum() for output in expected).backward()
    expected_grads = _grads(policy)
    monkeypatch.setattr(policies_module, "preprocess_obs", _refuse_preprocessing)
    got = _outputs(policy, observations)
    th.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    policy.zero_grad()
    sum(output.sum() for output in got).backward()
    th.testing.assert_close(_grads(policy), expected_grads, rtol=1e-4, atol=1e-5)


def _grads(policy):
    # The Q policy's target network gets none.
    return [parameter.grad.clone() for parameter in policy.parameters() if parameter.grad is not None]


@pytest.mark.parametrize(
    "space, kwargs",
    [
        (spaces.Box(0, 255, (4, 40, 40), np.uint8), dict(normalize_images=False)),
        (spaces.Box(0, 255, (4, 40, 40), np.uint8), dict(features_extractor_class=NatureCNN)),
        # uint8 but not 0-255: not an image to SB3, which only makes it float.
        (spaces.Box(0, 1, (4, 40, 40), np.uint8), dict(features_extractor_kwargs=dict(normalized_image=True))),
    ],
    ids=["normalize_images_false", "other_extractor", "binary_frames"],
)
@pytest.mark.parametrize(
    "paper_policy, sb3_policy", [(PaperCnnPolicy, ActorCriticCnnPolicy), (QPaperCnnPolicy, DQNCnnPolicy)], ids=["a3c", "q"]
)
def test_uint8_observations_sb3_would_not_divide_by_255_take_sb3s_path(
    paper_policy, sb3_policy, space, kwargs, preprocess_obs_calls
):
    th.manual_seed(0)
    ours = paper_policy(space, spaces.Discrete(4), lambda _: 7e-4, **kwargs)
    sb3_kwargs = {"features_extractor_class": PaperCNN, "net_arch": [], **kwargs}
    sb3 = sb3_policy(space, spaces.Discrete(4), lambda _: 7e-4, **sb3_kwargs)
    sb3.load_state_dict(ours.state_dict())
    observations = th.as_tensor(np.stack([space.sample() for _ in range(6)]))
    th.testing.assert_close(_outputs(ours, observations), _outputs(sb3, observations), rtol=1e-5, atol=1e-5)
    assert len(preprocess_obs_calls) == 2, "ours and SB3's policy should both have preprocessed the observations"
