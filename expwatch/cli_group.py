"""A click group whose commands are imported when one is run, not when the CLI starts.

`expwatch --help`, `--version` and completing a command name read the names and one-line
help texts from a map; only the command that runs (or whose options are completed) is
imported, with what it needs (the store, the watcher, the MCP server, charts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

import click

from .cli_common import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (`"package.module:attribute"`) and its one-line help, which
    `expwatch --help` shows without importing it (a test keeps the two in step)."""

    target: str
    help: str

    def load(self, name: str) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        command = getattr(import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} (command {name!r}) is not a click command")
        return command

    def stub(self, name: str) -> click.Command:
        """A stand-in that only knows the help text, for listings and completion."""
        return click.Command(name, help=self.help)


class LazyGroup(click.Group):
    """A group with some commands given as `LazyCommand`s, imported on first use.

    A Ctrl-C that reaches a command (one that does not stop gracefully by itself) exits
    with 130, as shells report a process ended by SIGINT, instead of click's 1.
    """

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, LazyCommand] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = self.lazy_commands[cmd_name].load(cmd_name)
            self.commands[cmd_name] = command
        return command

    def _listed(self, name: str) -> click.Command:
        """The command if it is loaded, else its stand-in (nothing is imported)."""
        command = self.commands.get(name)
        return command if command is not None else self.lazy_commands[name].stub(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = [(n, c) for n in self.list_commands(ctx) if not (c := self._listed(n)).hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        with formatter.section("Commands"):
            formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in commands])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        results = [
            CompletionItem(name, help=command.get_short_help_str())
            for name in self.list_commands(ctx)
            if name.startswith(incomplete) and not (command := self._listed(name)).hidden
        ]
        # The group's own options; click.Group's version would import every command.
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nexpwatch: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
