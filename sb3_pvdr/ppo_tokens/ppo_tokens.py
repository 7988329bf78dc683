"""The paper's PPO baseline (Appendix A.2): SB3's PPO with PVDR's transformer policy over VQ tokens."""

from __future__ import annotations

from typing import ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.policies import BasePolicy

from sb3_pvdr.ppo_tokens.policies import TokenGoalPolicy


class TokenPPO(PPO):
    """PPO whose actor is PVDR's action alignment transformer and whose critic is PVDR's critic, over tokens of the
    current frames and the goal (no z*): ``python train.py --algo ppo_tokens --env reach-v2``. The env is the
    image-goal task wrapped in :class:`~sb3_pvdr.ppo_tokens.TokenGoalWrapper` (``zoo_configs/ppo_tokens.yml``).
    Everything else is SB3's PPO.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**PPO.policy_aliases, "TokenGoalPolicy": TokenGoalPolicy}


__all__ = ["TokenPPO"]
