"""The CLI starts light: `--help`, `--version` and completing a command name import only the
command map, and each lazily loaded command is where the map says, with the help it shows."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from expwatch.cli import LAZY_COMMANDS, main
from expwatch.cli_group import LazyCommand, LazyGroup

HEAVY = (
    "sqlalchemy",
    "fastmcp",
    "mcp",
    "matplotlib",
    "rich",
    "numpy",
    "scipy",
    "apprise",
    "pydantic",
    "anyio",
    "store",
    "watcher",
    "alerts",
    "mcp_server",
    "expwatch.app",
    "expwatch.config",
)
"""What `import expwatch.cli` and the fast paths must not load."""

STARTUP_PROBE = """
import json, os, sys
from click.shell_completion import shell_complete

import expwatch.cli
from expwatch.cli import main

loaded = {}
def note(step):
    loaded[step] = sorted(
        m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in HEAVY)
    )

note("import")
for args in (["--help"], ["--version"]):
    try:
        main(args, prog_name="expwatch")
    except SystemExit as exit:
        assert exit.code == 0, (args, exit.code)
    note(" ".join(args))
os.environ.update(COMP_WORDS="expwatch ", COMP_CWORD="1")
assert shell_complete(main, {}, "expwatch", "_EXPWATCH_COMPLETE", "bash_complete") == 0
note("complete")
import click
main.get_command(click.Context(main), "events")  # the probe sees a real import
note("events")
print("RESULT " + json.dumps(loaded))
"""


def test_import_help_version_and_command_completion_load_nothing_heavy() -> None:
    """`import expwatch.cli`, `expwatch --help`, `--version` and completing `expwatch <TAB>`
    load none of the store, SQLAlchemy, FastMCP, matplotlib, rich and the rest (checked in a
    fresh interpreter), yet list every command; loading `events` does import the store."""
    probe = f"HEAVY = {HEAVY!r}\n{STARTUP_PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    [report] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    loaded = json.loads(report.removeprefix("RESULT "))
    events = loaded.pop("events")
    assert loaded == {"import": [], "--help": [], "--version": [], "complete": []}
    assert {"sqlalchemy", "store"} <= set(events)
    assert "status" in result.stdout and "plain,status" in result.stdout  # help, completion


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_each_lazy_command_is_where_the_map_says_with_the_help_it_lists(name: str) -> None:
    """The map's target is a click command of that name whose one-line help is the map's."""
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command) and command.name == name
    assert command.get_short_help_str(limit=1000) == LAZY_COMMANDS[name].help
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output


def test_help_lists_every_command_and_the_exit_codes() -> None:
    """`expwatch --help` names every command with its help, and documents the exit codes."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:")[1]
    for name in set(LAZY_COMMANDS) | {"run", "mcp", "demo", "check-config", "prune"}:
        assert f"\n  {name} " in listed, name
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n    {code}" in result.output, code


def test_a_ctrl_c_that_reaches_a_command_exits_130() -> None:
    """A KeyboardInterrupt out of a command (one that does not stop gracefully itself) is
    exit code 130, as shells report SIGINT, with a short note instead of a traceback."""

    @click.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    group = LazyGroup(
        "probe",
        lazy_commands={"later": LazyCommand("expwatch.cli_completion:completion", "Later.")},
    )
    group.add_command(interrupted)
    result = CliRunner().invoke(group, ["interrupted"])
    assert result.exit_code == 130
    assert "expwatch: interrupted" in result.output
    assert group.list_commands(click.Context(group)) == ["interrupted", "later"]
