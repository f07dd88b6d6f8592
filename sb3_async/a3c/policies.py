"""A3C's policies: SB3's actor-critic policies, and sb3-contrib's recurrent ones with the paper's shared torso.

The paper's A3C LSTM has one torso (features, then a 256-unit LSTM) feeding both the policy and
the value head, and both losses train it. sb3-contrib's recurrent policies offer a separate LSTM
for the critic (the default), a critic without LSTM, or ``shared_lstm=True``, where the critic
reads the actor's LSTM output *detached*, so the value loss trains neither the LSTM nor the
features below it. The policies here add ``share_lstm_torso`` (default True): the critic's
LSTM is the actor's LSTM module itself. Both heads then read the same recurrent features and
both losses train the one LSTM and the features extractor, as in the paper; nothing of
sb3-contrib's code is replaced (the shared LSTM simply runs once for each head).
``share_lstm_torso=False`` gives sb3-contrib's configurations unchanged.
"""

from typing import Any, ClassVar

import torch as th
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
    RecurrentMultiInputActorCriticPolicy,
)
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from sb3_async.common.torch_layers import PaperNetworkDefaults, takes_raw_images

__all__ = ["CnnLstmPolicy", "MlpLstmPolicy", "MultiInputLstmPolicy", "PaperCnnLstmPolicy", "PaperCnnPolicy"]

# SB3's actor-critic heads after any extractor but NatureCNN: what the Paper* policies had before.
_SB3_DEFAULT_HEADS = dict(pi=[64, 64], vf=[64, 64])


class _SharedTorso:
    """Makes the critic's LSTM the actor's (see the module docstring)."""

    lstm_actor: Any
    lstm_critic: Any
    lstm_kwargs: dict[str, Any]
    shared_lstm: bool
    enable_critic_lstm: bool
    optimizer: Any
    optimizer_class: Any
    optimizer_kwargs: dict[str, Any]

    def __init__(self, observation_space: Any, action_space: Any, lr_schedule: Schedule, *args: Any, **kwargs: Any) -> None:
        share_lstm_torso = kwargs.pop("share_lstm_torso", True)
        if not isinstance(share_lstm_torso, bool):
            raise TypeError(f"policy_kwargs['share_lstm_torso'] must be True or False, got {share_lstm_torso!r}")
        if share_lstm_torso and (kwargs.get("shared_lstm", False) or not kwargs.get("enable_critic_lstm", True)):
            raise ValueError(
                "policy_kwargs: share_lstm_torso=True (the paper's shared LSTM, trained by both losses) cannot be "
                "combined with shared_lstm=True or enable_critic_lstm=False; set share_lstm_torso=False to use "
                "sb3-contrib's configurations"
            )
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)  # type: ignore[call-arg]
        self.share_lstm_torso = share_lstm_torso
        if share_lstm_torso:
            self.lstm_critic = self.lstm_actor
            # The optimizer was built over both LSTMs; parameters() now lists the one LSTM once.
            self.optimizer = self.optimizer_class(
                self.parameters(),  # type: ignore[attr-defined]
                lr=lr_schedule(1),
                **self.optimizer_kwargs,
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # sb3-contrib (2.9) leaves the LSTM arguments out, so a policy rebuilt from these
        # parameters (BasePolicy.load) would get the default LSTM size.
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(
            lstm_hidden_size=self.lstm_actor.hidden_size,
            n_lstm_layers=self.lstm_actor.num_layers,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            lstm_kwargs=self.lstm_kwargs,
            share_lstm_torso=self.share_lstm_torso,
        )
        return data


class _RawImages:
    """
    Hands :class:`~sb3_async.common.torch_layers.PaperCNN` the ``uint8`` images as they are, for it
    scales them more cheaply than SB3's ``preprocess_obs`` (``float() / 255``, a pass over the float
    images); anything else goes through SB3's preprocessing as before.

    This covers ``forward`` and ``evaluate_actions`` (acting and the update during training);
    SB3's ``predict_values`` and ``get_distribution`` call the base class's ``extract_features``
    directly and keep SB3's path, which gives the same features up to float rounding.
    """

    features_extractor: BaseFeaturesExtractor
    pi_features_extractor: BaseFeaturesExtractor
    vf_features_extractor: BaseFeaturesExtractor
    normalize_images: bool
    share_features_extractor: bool

    def extract_features(  # type: ignore[override]
        self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor | None = None
    ) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
        if self.share_features_extractor:
            extractors = [self.features_extractor if features_extractor is None else features_extractor]
        elif features_extractor is None:
            extractors = [self.pi_features_extractor, self.vf_features_extractor]
        else:
            extractors = []  # SB3 warns that the argument is ignored: its path does that
        if extractors and all(takes_raw_images(self.normalize_images, obs, e) for e in extractors):
            features = tuple(extractor(obs) for extractor in extractors)
            return features[0] if len(features) == 1 else features  # type: ignore[return-value]
        return super().extract_features(obs, features_extractor)  # type: ignore[misc]


class MlpLstmPolicy(_SharedTorso, RecurrentActorCriticPolicy):
    """sb3-contrib's ``MlpLstmPolicy`` with ``share_lstm_torso`` (default True, the paper's torso)."""


class CnnLstmPolicy(_SharedTorso, RecurrentActorCriticCnnPolicy):
    """sb3-contrib's ``CnnLstmPolicy`` with ``share_lstm_torso`` (default True, the paper's torso)."""


class MultiInputLstmPolicy(_SharedTorso, RecurrentMultiInputActorCriticPolicy):
    """sb3-contrib's ``MultiInputLstmPolicy`` with ``share_lstm_torso`` (default True, the paper's torso)."""


class PaperCnnPolicy(_RawImages, PaperNetworkDefaults, ActorCriticCnnPolicy):
    """
    SB3's ``CnnPolicy`` with the paper's network by default: :class:`~sb3_async.common.torch_layers.PaperCNN`,
    and the policy and the value straight from its 256-unit layer (``net_arch=[]``; see
    :class:`~sb3_async.common.torch_layers.PaperNetworkDefaults`). ``PaperCNN`` gets the ``uint8``
    images unscaled and scales them itself, more cheaply than SB3's preprocessing.
    """

    #: The heads SB3 built after PaperCNN before this policy defaulted to the paper's (older saved models).
    sb3_default_heads: ClassVar[dict[str, list[int]]] = _SB3_DEFAULT_HEADS


class PaperCnnLstmPolicy(_RawImages, PaperNetworkDefaults, CnnLstmPolicy):
    """
    The paper's A3C LSTM: the paper's network, then a 256-unit LSTM shared by both heads, which
    read its output directly (``net_arch=[]`` by default). ``PaperCNN`` gets the ``uint8`` images
    unscaled, as in :class:`PaperCnnPolicy`.
    """

    #: The heads SB3 built after the LSTM before this policy defaulted to the paper's (older saved models).
    sb3_default_heads: ClassVar[dict[str, list[int]]] = _SB3_DEFAULT_HEADS
