"""PVDR online stage: the algorithm (PPO + action alignment + fine-tuning between rollouts) and its policy."""

from sb3_pvdr.pvdr.buffer import PVDRRolloutBuffer, PVDRRolloutBufferSamples
from sb3_pvdr.pvdr.callbacks import DynamicsFineTuneCallback, PlanVideoCallback, prior_loss, reconstruction_loss
from sb3_pvdr.pvdr.extractor import PVDRFeaturesExtractor
from sb3_pvdr.pvdr.policies import PVDRPolicy
from sb3_pvdr.pvdr.pvdr import PVDR

__all__ = [
    "PVDR",
    "DynamicsFineTuneCallback",
    "PVDRFeaturesExtractor",
    "PVDRPolicy",
    "PVDRRolloutBuffer",
    "PVDRRolloutBufferSamples",
    "PlanVideoCallback",
    "prior_loss",
    "reconstruction_loss",
]
