"""sb3_pvdr: PVDR (Luo, Zhou, Lu, ECCV 2024) as a Stable-Baselines3 extension.

Like sb3-contrib, the algorithm and its policy are importable from the package root::

    from sb3_pvdr import PVDR, PVDRPolicy

They are imported lazily (module ``__getattr__``), so ``import sb3_pvdr`` alone stays cheap (no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sb3_pvdr.pvdr import PVDR, PVDRPolicy

__version__ = (Path(__file__).parent / "version.txt").read_text().strip()

# Public name -> module that defines it, imported on first access.
_LAZY = {"PVDR": "sb3_pvdr.pvdr", "PVDRPolicy": "sb3_pvdr.pvdr"}

__all__ = ["PVDR", "PVDRPolicy", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
