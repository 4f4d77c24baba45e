"""``siderctl status``."""

from typing import Annotated

import typer

from siderctl import inspect, render
from siderctl.cli import common


def register(app: typer.Typer) -> None:
    """Add the status command to ``app``."""
    app.command("status")(common.boundary(status))


def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show job counts per state, oldest queued job age and workers for every queue (read-only)."""
    result = inspect.status(common.config(ctx))
    if json_out:
        render.emit_json(result.as_dict())
    else:
        render.status(result)
