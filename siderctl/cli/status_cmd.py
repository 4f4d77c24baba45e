"""``siderctl status``."""

import sys
from typing import Annotated

import typer

from siderctl import inspect, render
from siderctl.cli import common
from siderctl.errors import UsageError


def register(app: typer.Typer) -> None:
    """Add the status command to ``app``."""
    app.command("status")(common.boundary(status))


def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="A live view of queues, workers, schedules and the "
                                        "latest failures, until Ctrl-C (needs a terminal).")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between refreshes of --watch.")]
    = 2.0,
) -> None:
    """Show job counts per state, oldest queued job age and workers for every queue (read-only)."""
    if watch:
        if json_out or not sys.stdout.isatty():
            raise UsageError("--watch draws a live view on a terminal; scripts use `status --json`")
        try:
            render.live(inspect.watch(common.config(ctx), interval))
        except KeyboardInterrupt:
            return  # Ctrl-C is how --watch ends
        return
    result = inspect.status(common.config(ctx))
    if json_out:
        render.emit_json(result.as_dict())
    else:
        render.status(result)
