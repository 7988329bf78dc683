"""Policies of PVDR: the action alignment module Pi(a | z*, x) with its critic (paper §4.3, footnote 4)."""

from __future__ import annotations

from typing import Any, Optional

from gymnasium import spaces
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_pvdr.pvdr.extractor import PVDRFeaturesExtractor


class PVDRPolicy(MultiInputActorCriticPolicy):
    """Actor-critic over the planning wrapper's observation: one ST transformer trunk
    (:class:`PVDRFeaturesExtractor`) shared by the actor and the critic, each with its own last linear layer
    (footnote 4: "we simply replace the last layer of the action alignment module to construct a critic").

    Defaults differ from SB3's ``MultiInputPolicy`` only where the paper says so: the PVDR extractor, a shared
    trunk, no extra MLP layers (``net_arch=[]``), and no orthogonal re-initialisation of the transformer
    (``ortho_init=False``). Every ``ActorCriticPolicy`` keyword still works (``policy_kwargs``).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Any,
        net_arch: Optional[Any] = None,
        ortho_init: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = PVDRFeaturesExtractor,
        share_features_extractor: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[] if net_arch is None else net_arch,
            ortho_init=ortho_init,
            features_extractor_class=features_extractor_class,
            share_features_extractor=share_features_extractor,
            **kwargs,
        )


__all__ = ["PVDRPolicy"]
