"""The paper's PPO baseline on VQ tokens of the current frames and the goal (``--algo ppo_tokens``)."""

from sb3_pvdr.ppo_tokens.policies import TokenGoalFeaturesExtractor, TokenGoalPolicy
from sb3_pvdr.ppo_tokens.ppo_tokens import TokenPPO
from sb3_pvdr.ppo_tokens.wrapper import TokenGoalWrapper

__all__ = ["TokenGoalFeaturesExtractor", "TokenGoalPolicy", "TokenGoalWrapper", "TokenPPO"]
