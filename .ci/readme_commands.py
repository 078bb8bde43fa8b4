"""Print one of README.md's quick-start commands exactly as written: `demo` (the first) or
`tests` (the second). .ci/run runs what this prints, so the README and CI cannot drift.

Usage: python3 .ci/readme_commands.py demo|tests   (standard library only)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
ORDER = ("demo", "tests")


def quick_start_commands(readme: str) -> dict[str, str]:
    """The ```sh blocks of the "Quick start" section, by name, in ORDER."""
    start = readme.index("## Quick start")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else None]
    blocks = [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)]
    if len(blocks) != len(ORDER):
        raise SystemExit(
            f"README.md: the Quick start section has {len(blocks)} sh blocks; .ci/run expects "
            f"{len(ORDER)} ({', '.join(ORDER)})"
        )
    return dict(zip(ORDER, blocks, strict=True))


if __name__ == "__main__":
    print(quick_start_commands(README.read_text())[sys.argv[1]])
