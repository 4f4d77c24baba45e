"""``siderctl metrics show|serve``."""

from typing import Annotated

import typer

from siderctl import inspect, render
from siderctl.cli import common
from siderctl.errors import NotFound
from siderctl.queues import METRIC_SCOPES

app = common.group("Prometheus metrics, and the snapshots metrics-sync stores.")


def _complete_scope(incomplete: str) -> list[str]:
    return [s for s in METRIC_SCOPES if s.startswith(incomplete)]


@app.command("show")
@common.boundary
def show(
    ctx: typer.Context,
    scope: Annotated[
        str | None, typer.Argument(help="One scope, shown in full (default: a summary of every scope).",
                                   autocompletion=_complete_scope, show_default=False)
    ] = None,
    history: Annotated[int, typer.Option("--history", min=1, help="Snapshots per scope, newest first.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array of snapshots.")] = False,
) -> None:
    """Show the newest metrics-sync snapshots with the time each was fetched."""
    found = inspect.metric_snapshots(common.config(ctx), scope, history)
    if scope is not None and not found:
        raise NotFound(f"no snapshot of scope {scope!r} yet (metrics-sync stores one per run; "
                       f"source: metrics.{scope}_url)")
    if json_out:
        render.emit_json([s.as_dict() for s in found])
    elif not found:
        render.note("no snapshots yet: metrics-sync has not stored any")
    else:
        render.snapshots(found, detail=scope is not None)


@app.command("serve")
@common.boundary
def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 9727,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "127.0.0.1",
    log_format: common.LogFormatOpt = common.LogFormat.text,
    log_level: common.LogLevelOpt = common.LogLevel.info,
) -> None:
    """Serve Prometheus metrics (queue depths, workers, scheduler, failures) until SIGINT/SIGTERM."""
    from siderctl import exporter

    common.setup_logging(True, log_format, log_level)
    exporter.serve_forever(common.config(ctx), port, bind)
