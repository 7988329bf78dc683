"""Package-level contracts: sb3-contrib style imports, a cheap ``import sb3_pvdr``."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_package_is_cheap():
    # The algorithm is imported lazily: the bare package pulls neither torch nor stable_baselines3.
    out = run_python("import sys, sb3_pvdr; print(sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))")
    assert out == "[]"


def test_pvdr_and_policy_importable_from_root():
    import sb3_pvdr
    from sb3_pvdr import PVDR, PVDRPolicy
    from sb3_pvdr.pvdr import PVDR as PVDR_
    from sb3_pvdr.pvdr import PVDRPolicy as PVDRPolicy_

    assert PVDR is PVDR_ and PVDRPolicy is PVDRPolicy_
    assert {"PVDR", "PVDRPolicy"} <= set(sb3_pvdr.__all__) and "PVDR" in dir(sb3_pvdr)
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        sb3_pvdr.NotAThing  # noqa: B018
