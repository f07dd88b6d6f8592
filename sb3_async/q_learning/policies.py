"""SB3's DQN policies, and one with the paper's Atari network."""

from typing import ClassVar

import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import CnnPolicy, QNetwork

from sb3_async.common.torch_layers import PaperNetworkDefaults, takes_raw_images

__all__ = ["PaperCnnPolicy", "PaperQNetwork"]


class PaperQNetwork(QNetwork):
    """
    SB3's ``QNetwork`` that hands a ``PaperCNN`` the ``uint8`` images as they are: it scales them
    more cheaply than SB3's preprocessing (see :func:`~sb3_async.common.torch_layers.takes_raw_images`).
    """

    def extract_features(self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor) -> th.Tensor:
        if takes_raw_images(self.normalize_images, obs, features_extractor):
            return features_extractor(obs)
        return super().extract_features(obs, features_extractor)


class PaperCnnPolicy(PaperNetworkDefaults, CnnPolicy):
    """
    SB3's DQN ``CnnPolicy`` with the paper's network by default: :class:`~sb3_async.common.torch_layers.PaperCNN`,
    and the action values straight from its 256-unit layer (``net_arch=[]``; see
    :class:`~sb3_async.common.torch_layers.PaperNetworkDefaults`). Its Q-networks are
    :class:`PaperQNetwork`: ``PaperCNN`` gets the ``uint8`` images unscaled and scales them itself.
    """

    #: The heads SB3 built after PaperCNN before this policy defaulted to the paper's (older saved models).
    sb3_default_heads: ClassVar[list[int]] = [64, 64]

    def make_q_net(self) -> PaperQNetwork:
        # As DQNPolicy.make_q_net: each network gets its own features extractor.
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return PaperQNetwork(**net_args).to(self.device)
