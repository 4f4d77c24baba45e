"""``siderctl up``."""

import typer

from siderctl import render, runtime
from siderctl.cli import common


def register(app: typer.Typer) -> None:
    """Add the up command to ``app``."""
    app.command("up")(common.boundary(up))


def up(ctx: typer.Context) -> None:
    """Run the whole runtime: every queue's workers per config and the scheduler, supervised.

    A crashed child is restarted with backoff. SIGINT/SIGTERM once: warm shutdown; twice: cold.
    Exits 0 after a clean stop, 9 when jobs had to be requeued.
    """
    common.setup_logging(verbose=True)
    runtime.up(common.config(ctx), announce=render.runtime_plan)
