"""The Paper* policies are the paper's network, and models saved before they were still load."""

import numpy as np
import pytest
from stable_baselines3.common.envs import FakeImageEnv
from torch import nn

from sb3_async import A3C, AsyncNStepQ, AsyncOneStepQ
from sb3_async.a3c.policies import PaperCnnLstmPolicy
from sb3_async.common.saving import POLICY_FORMAT
from sb3_async.common.torch_layers import PaperCNN


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
