"""Package-level contracts: sb3-contrib style imports, a cheap ``import sb3_pvdr``, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (any ``import`` statement, ``TYPE_CHECKING`` blocks included)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_no_import_cycles_between_modules():
    """A package ``__init__`` importing its submodules is fine; two modules importing each other is not
    (e.g. pvdr/pvdr.py and pvdr/callbacks.py: their shared piece lives in pvdr/interface.py)."""
    graph = import_graph(Path(__file__).resolve().parents[1] / "sb3_pvdr")
    inits = {name for name in graph if any(other.startswith(name + ".") for other in graph)}
    edges = {name: deps - inits for name, deps in graph.items() if name not in inits}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(edges.get(name, ())):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, dep])}"
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert "sb3_pvdr.pvdr.interface" in graph["sb3_pvdr.pvdr.callbacks"] & graph["sb3_pvdr.pvdr.pvdr"]
