"""`expwatch completion SHELL`: the shell's completion script for expwatch, from click."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  expwatch completion bash > ~/.local/share/bash-completion/completions/expwatch
    zsh:   expwatch completion zsh > "${fpath[1]}/_expwatch"
    fish:  expwatch completion fish > ~/.config/fish/completions/expwatch.fish
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    script = cls(root.command, {}, "expwatch", "_EXPWATCH_COMPLETE").source()
    click.echo(script)
