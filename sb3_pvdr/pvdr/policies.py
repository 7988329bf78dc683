"""Policies of PVDR: the action alignment module Pi(a | z*, x) with its critic (paper §4.3, footnote 4)."""

from __future__ import annotations

from functools import partial
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

    The two heads still get SB3's head initialisation (``init_heads=True``): orthogonal, gain 0.01 for the action
    mean and 1 for the value. Without it (PyTorch's default ``nn.Linear`` init on un-normalised transformer
    features) the initial action mean is a constant push of 0.1-0.45 per axis (pixel PPO's: 0.003), which pins the
    arm against the workspace for the first rollouts: on a fixed reach variant token PPO and PVDR with the oracle z
    never saw a success in 10k steps (``results/aligner``).

    :param init_heads: SB3's orthogonal init of the action (gain 0.01) and value (gain 1) heads when
        ``ortho_init=False``; ``False`` keeps PyTorch's default init (the behaviour before this option)
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
        init_heads: bool = True,
        **kwargs: Any,
    ) -> None:
        self.init_heads = init_heads
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

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.init_heads and not self.ortho_init:  # with ortho_init SB3 has done it already
            self.action_net.apply(partial(self.init_weights, gain=0.01))
            self.value_net.apply(partial(self.init_weights, gain=1.0))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(init_heads=self.init_heads)
        return data


__all__ = ["PVDRPolicy"]
