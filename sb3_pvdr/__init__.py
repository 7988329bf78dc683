"""sb3_pvdr: PVDR (Luo, Zhou, Lu, ECCV 2024) as a Stable-Baselines3 extension."""

from pathlib import Path

__version__ = (Path(__file__).parent / "version.txt").read_text().strip()
