"""Check a built expwatch wheel: every file of every package pyproject.toml ships is in it,
no tests are, and the `expwatch` console script points at the CLI.

Usage: python3 .ci/check_wheel.py dist/expwatch-*.whl   (standard library only)
"""

from __future__ import annotations

import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".db", ".db-wal", ".db-shm"}


def shipped_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def source_files(package: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / package).rglob("*")
        if path.is_file()
        and not SKIPPED & set(path.relative_to(ROOT).parts)
        and path.suffix not in SKIPPED_SUFFIXES
    }


def is_test(name: str) -> bool:
    *folders, file = name.split("/")
    return "tests" in folders or file.startswith(("test_", "conftest"))


def problems(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    found = []
    packages = shipped_packages()
    for package in packages:
        if f"{package}/__init__.py" not in names:
            found.append(f"package {package} is missing")
        found += [f"{name} is missing" for name in sorted(source_files(package) - names)]
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    found += [f"unexpected top-level {top!r} in the wheel" for top in sorted(tops - set(packages))]
    found += [f"a test is packaged: {name}" for name in sorted(names) if is_test(name)]
    if "expwatch = expwatch.cli:main" not in scripts:
        found.append("the expwatch console script is not expwatch.cli:main")
    return found


def main() -> int:
    [wheel] = [Path(arg) for arg in sys.argv[1:]]
    found = problems(wheel)
    for problem in found:
        print(f"check_wheel: {problem}", file=sys.stderr)
    if not found:
        with zipfile.ZipFile(wheel) as archive:
            count = len(archive.namelist())
        packages = ", ".join(shipped_packages())
        print(f"check_wheel: {wheel.name} OK: {count} files; packages {packages}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
