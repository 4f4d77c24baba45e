"""``siderctl dev-redis up|down|status|url``: the embedded server."""

from dataclasses import asdict
from typing import Annotated

import typer

from siderctl import embedded, render
from siderctl.cli import common

app = common.group("Manage the embedded Valkey server used when no Redis URL is set.")


@app.command("up")
@common.boundary
def up() -> None:
    """Start the embedded server (if it is not running) and print its URL."""
    typer.echo(embedded.ensure_running())


@app.command("down")
@common.boundary
def down() -> None:
    """Stop the embedded server; its data stays on disk."""
    if embedded.stop():
        render.note("embedded server stopped")
    else:
        render.note("embedded server was not running")


@app.command("status")
@common.boundary
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say whether the embedded server runs, where, and with which binary."""
    info = embedded.status()
    if json_out:
        render.emit_json(asdict(info))
    else:
        render.dev_redis_status(info)


@app.command("url")
@common.boundary
def url() -> None:
    """Print the embedded server's URL, starting it if needed (for REDIS_URL=$(...))."""
    typer.echo(embedded.ensure_running())
