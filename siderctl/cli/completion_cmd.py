"""``siderctl completion SHELL``: print a shell completion script."""

from enum import StrEnum
from typing import Annotated

import typer


class Shell(StrEnum):
    """Shells siderctl ships completion for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def script(shell: Shell) -> str:
    """The completion script for ``shell`` (the files in completions/ are these)."""
    from typer._completion_shared import get_completion_script  # what --show-completion uses

    return get_completion_script(prog_name="siderctl", complete_var="_SIDERCTL_COMPLETE", shell=shell.value)


def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the completion script for SHELL (see the README for where to put it)."""
    typer.echo(script(shell))


def register(app: typer.Typer) -> None:
    """Add the completion command to ``app``."""
    app.command("completion")(completion)
