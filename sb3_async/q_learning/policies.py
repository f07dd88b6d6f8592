"""SB3's DQN policies, and one with the paper's Atari network."""

from typing import Any

from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import CnnPolicy

from sb3_async.common.torch_layers import PaperCNN

__all__ = ["PaperCnnPolicy"]


class PaperCnnPolicy(CnnPolicy):
    """SB3's DQN ``CnnPolicy`` with the paper's network (:class:`~sb3_async.common.torch_layers.PaperCNN`) by default."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = PaperCNN, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
