"""SB3's DQN policies, and one with the paper's Atari network."""

from typing import ClassVar

from stable_baselines3.dqn.policies import CnnPolicy

from sb3_async.common.torch_layers import PaperNetworkDefaults

__all__ = ["PaperCnnPolicy"]


class PaperCnnPolicy(PaperNetworkDefaults, CnnPolicy):
    """
    SB3's DQN ``CnnPolicy`` with the paper's network by default: :class:`~sb3_async.common.torch_layers.PaperCNN`,
    and the action values straight from its 256-unit layer (``net_arch=[]``; see
    :class:`~sb3_async.common.torch_layers.PaperNetworkDefaults`).
    """

    #: The heads SB3 built after PaperCNN before this policy defaulted to the paper's (older saved models).
    sb3_default_heads: ClassVar[list[int]] = [64, 64]
