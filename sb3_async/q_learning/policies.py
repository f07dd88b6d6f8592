"""SB3's DQN policies, and one with the paper's Atari network."""

from typing import Any, ClassVar

from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import CnnPolicy

from sb3_async.common.torch_layers import PaperCNN

__all__ = ["PaperCnnPolicy"]


class PaperCnnPolicy(CnnPolicy):
    """
    SB3's DQN ``CnnPolicy`` with the paper's network by default: :class:`~sb3_async.common.torch_layers.PaperCNN`,
    and the action values straight from its 256-unit layer (``net_arch=[]``; SB3 would add two
    64-unit layers after any extractor other than its ``NatureCNN``).
    """

    #: The heads SB3 built after PaperCNN before this policy defaulted to the paper's (older saved models).
    sb3_default_heads: ClassVar[Any] = [64, 64]

    def __init__(
        self,
        *args: Any,
        net_arch: list[int] | None = None,
        features_extractor_class: type[BaseFeaturesExtractor] = PaperCNN,
        **kwargs: Any,
    ) -> None:
        net_arch = [] if net_arch is None else net_arch
        super().__init__(*args, net_arch=net_arch, features_extractor_class=features_extractor_class, **kwargs)
