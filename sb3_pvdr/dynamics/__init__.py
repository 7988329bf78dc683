"""Visual dynamics model (paper §4.1, Appendix A.1): ST transformer, CVAE, configs."""

from sb3_pvdr.dynamics.config import PROFILES, DynamicsConfig
from sb3_pvdr.dynamics.distributions import DiagonalGaussian
from sb3_pvdr.dynamics.model import CHECKPOINT_KIND, LossBreakdown, VisualDynamicsModel
from sb3_pvdr.dynamics.st_transformer import FrameKVCache, STPositionalEmbedding, STTransformer

__all__ = [
    "CHECKPOINT_KIND",
    "PROFILES",
    "DiagonalGaussian",
    "DynamicsConfig",
    "FrameKVCache",
    "LossBreakdown",
    "STPositionalEmbedding",
    "STTransformer",
    "VisualDynamicsModel",
]
