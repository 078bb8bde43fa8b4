"""Shell completion: the bash script `expwatch completion bash` prints, sourced into a real
bash, completes commands, subcommands and choices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def test_bash_completes_commands_subcommands_and_choices() -> None:
    """Each line of input is the words typed so far, the last one being completed."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    typed = [
        ["expwatch", "al"],
        ["expwatch", "alerts", "''"],
        ["expwatch", "events", "--kind", "srm_"],
        ["expwatch", "completion", "''"],
    ]
    script = "source <(expwatch completion bash)\n"
    for words in typed:
        script += (
            f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
            '_expwatch_completion expwatch; echo "${COMPREPLY[*]}"\n'
        )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    assert result.stdout.splitlines() == [
        "alerts",
        "outbox test",
        "srm_detected srm_cleared",
        "bash zsh fish",
    ]


def test_zsh_and_fish_scripts_call_back_into_expwatch() -> None:
    for shell in ("zsh", "fish"):
        result = subprocess.run(
            [str(BIN / "expwatch"), "completion", shell],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert "_EXPWATCH_COMPLETE" in result.stdout, shell
