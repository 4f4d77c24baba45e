"""``siderctl up``."""

import typer

from siderctl import render, runtime
from siderctl.cli import common


def register(app: typer.Typer) -> None:
    """Add the up command to ``app``."""
    app.command("up")(common.boundary(up))


def up(
    ctx: typer.Context,
    metrics_port: common.MetricsPortOpt = None,
    metrics_bind: common.MetricsBindOpt = "127.0.0.1",
    log_format: common.LogFormatOpt = common.LogFormat.text,
    log_level: common.LogLevelOpt = common.LogLevel.info,
) -> None:
    """Run the whole runtime: every queue's workers per config and the scheduler, supervised.

    A crashed child is restarted with backoff. SIGINT/SIGTERM once: warm shutdown; twice: cold.
    Exits 0 after a clean stop, 9 when jobs had to be requeued.
    """
    common.setup_logging(True, log_format, log_level)
    runtime.up(common.config(ctx), render.runtime_plan, common.metrics_endpoint(metrics_port, metrics_bind))
