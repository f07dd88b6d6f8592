"""The paper's network for Atari: an SB3 features extractor, and the defaults of the policies built on it."""

from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn
from torch.nn import functional as F

__all__ = ["PaperCNN", "PaperNetworkDefaults", "takes_raw_images"]


class PaperCNN(BaseFeaturesExtractor):
    """
    The network of Mnih et al. 2016 (and of the 2013 DQN paper): 16 filters 8x8 stride 4,
    32 filters 4x4 stride 2, a fully connected layer of 256 units, ReLU after each. About a
    third of the cost of SB3's ``NatureCNN`` (32-64-64 filters, 512 units) per forward pass.

    Given ``uint8`` images (0 to 255) and ``normalized_image=False``, it scales them itself, as
    SB3's ``preprocess_obs`` would (``obs.float() / 255``), but with the 1/255 applied to the
    first convolution's weights: this package's ``Paper*`` policies hand it the raw images (see
    :func:`takes_raw_images`). Float images are taken as already scaled, and so are ``uint8``
    ones with ``normalized_image=True`` (made float only, as SB3 would).

    :param observation_space: an image space, channels first (SB3 transposes images for you)
    :param features_dim: units of the fully connected layer
    :param normalized_image: whether images are already in [0, 1] (as for ``NatureCNN``)
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 256, normalized_image: bool = False) -> None:
        if not is_image_space(observation_space, check_channels=False, normalized_image=normalized_image):
            raise ValueError(f"PaperCNN needs an image observation space, got {observation_space}")
        super().__init__(observation_space, features_dim)
        self.normalized_image = normalized_image
        n_channels = observation_space.shape[0]  # type: ignore[index]
        self.cnn = nn.Sequential(
            nn.Conv2d(n_channels, 16, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flatten = self.cnn(th.as_tensor(observation_space.sample()[None]).float()).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        # Images in channels-last layout take oneDNN's fast convolutions on CPUs: a third less time
        # for a rollout's acting and update (benchmarks, issue 13); the weights keep SB3's layout.
        images = observations.contiguous(memory_format=th.channels_last)
        if images.dtype != th.uint8 or self.normalized_image:
            return self.linear(self.cnn(images.float()))
        # Laid out while a quarter of the bytes, and scaled through the (small) weights rather than
        # by a pass over the images: SB3's two passes over float images (float(), then / 255) cost
        # as much as the first convolution (docs/worker_profile.md). The layer is PaperCNN's own
        # (zero padding, no groups), so F.conv2d with its settings is its forward.
        first = self.cnn[0]
        scaled = F.conv2d(images.float(), first.weight / 255.0, first.bias, first.stride, first.padding, first.dilation)
        return self.linear(self.cnn[1:](scaled))


def takes_raw_images(normalize_images: bool, observations: Any, features_extractor: nn.Module) -> bool:
    """
    Whether a policy may hand ``observations`` to ``features_extractor`` as they are: ``uint8``
    images for a :class:`PaperCNN` that scales them itself, exactly where SB3's ``preprocess_obs``
    would only make them float and divide by 255: a policy normalizing images, and an image space
    (the only kind a ``PaperCNN`` with ``normalized_image=False`` accepts).

    :param normalize_images: the policy's ``normalize_images``
    :param observations: what the policy was given
    :param features_extractor: the extractor the features are asked of
    """
    raw_images = isinstance(observations, th.Tensor) and observations.dtype == th.uint8
    scales_itself = isinstance(features_extractor, PaperCNN) and not features_extractor.normalized_image
    return normalize_images and raw_images and scales_itself


class PaperNetworkDefaults:
    """
    Mixin for an SB3 (or sb3-contrib) CNN policy: :class:`PaperCNN` as the features extractor and,
    unless ``net_arch`` is given, the heads straight from its 256-unit layer (``net_arch=[]``),
    as in the paper. SB3's own default would add two 64-unit layers per head after any
    extractor but its ``NatureCNN``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = PaperCNN,
        **kwargs: Any,
    ) -> None:
        net_arch = [] if net_arch is None else net_arch
        super().__init__(  # type: ignore[call-arg]
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            *args,
            features_extractor_class=features_extractor_class,
            **kwargs,
        )
