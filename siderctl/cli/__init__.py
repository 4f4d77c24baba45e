"""The siderctl command line: one Typer sub-app per command group, thin over the core."""

from pathlib import Path
from typing import Annotated

import typer

from siderctl import __version__
from siderctl.cli import (
    audit_cmd,
    common,
    completion_cmd,
    config_cmd,
    dev_redis_cmd,
    enqueue_cmd,
    events_cmd,
    failed_cmd,
    health_cmd,
    metrics_cmd,
    queue_cmd,
    scheduler_cmd,
    status_cmd,
    up_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="siderctl",
    help="Operate SiderHub's background jobs: queues, workers, schedules, failures.",
    no_args_is_help=True,
    rich_markup_mode=None,  # Rich-formatted help would import rich.table on every --help
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"siderctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $SIDERCTL_CONFIG, ./siderctl.toml, "
                     "$XDG_CONFIG_HOME/siderctl/config.toml).", show_default=False),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis URL; overrides REDIS_URL and the file.",
                                 show_default=False)
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Key prefix; overrides REDIS_PREFIX and the file.",
                                 show_default=False)
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Operate SiderHub's background jobs: queues, workers, schedules, failures."""
    common.setup_logging()
    common.store_overrides(ctx, config, redis_url, prefix)


app.add_typer(config_cmd.app, name="config")
app.add_typer(dev_redis_cmd.app, name="dev-redis")
app.add_typer(scheduler_cmd.app, name="scheduler")
app.add_typer(worker_cmd.app, name="worker")
app.add_typer(queue_cmd.app, name="queue")
app.add_typer(failed_cmd.app, name="failed")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(metrics_cmd.app, name="metrics")
enqueue_cmd.register(app)
status_cmd.register(app)
events_cmd.register(app)
health_cmd.register(app)
up_cmd.register(app)
completion_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="siderctl")
