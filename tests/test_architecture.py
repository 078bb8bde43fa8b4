"""The dependency direction of DESIGN.md, enforced on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"store", "watcher", "alerts", "mcp_server", "simulator", "expwatch", "charts"}
ALLOWED = {
    "store": set(),
    "watcher": {"store"},
    "charts": {"store"},
    "alerts": {"store", "charts"},
    "mcp_server": {"store", "charts"},
    "simulator": set(),
    "expwatch": {"store", "watcher", "alerts", "mcp_server", "simulator", "charts"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    """store ← watcher, charts; alerts and mcp_server use store and charts; expwatch all;
    the simulator stands alone."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported_packages(path) - ALLOWED[package] - {package}
    }
    assert not wrong, "\n".join(sorted(wrong))


def test_the_watcher_never_imports_the_simulator() -> None:
    """The checker itself sees a forbidden import (so the test above can fail)."""
    probe = ROOT / "watcher" / "growthbook.py"
    assert "simulator" not in imported_packages(probe)
    assert imported_packages(ROOT / "expwatch" / "demo.py") >= {"simulator"}
