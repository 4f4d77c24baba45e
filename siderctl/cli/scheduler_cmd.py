"""``siderctl scheduler run|ls|trigger``."""

from typing import Annotated

import typer

from siderctl import inspect, ops, render, scheduler
from siderctl.cli import common

app = common.group("Run and inspect the recurring-job scheduler.")


def _complete_schedule(incomplete: str) -> list[str]:
    from siderctl.config import DEFAULT_SCHEDULES, load_config
    from siderctl.errors import ConfigError

    try:
        names = list(load_config().schedules)
    except ConfigError:
        names = list(DEFAULT_SCHEDULES)
    return [name for name in names if name.startswith(incomplete)]


@app.command("run")
@common.boundary
def run(ctx: typer.Context, log_format: common.LogFormatOpt = common.LogFormat.text,
        log_level: common.LogLevelOpt = common.LogLevel.info) -> None:
    """Run the scheduler loop until SIGINT/SIGTERM (several may run: one leads, each slot fires once)."""
    common.setup_logging(True, log_format, log_level)
    scheduler.serve(common.config(ctx))


@app.command("ls")
@common.boundary
def ls(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every schedule: queue, payload, interval or cron, next and last fire, and the leader."""
    view = inspect.schedules(common.config(ctx))
    if json_out:
        render.emit_json(view.as_dict())
    else:
        render.schedules(view)


@app.command("trigger")
@common.boundary
def trigger(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Schedule name.", autocompletion=_complete_schedule)],
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of the job id.")] = False,
) -> None:
    """Enqueue one job of schedule NAME now and print its id."""
    job = ops.trigger(common.config(ctx), name)
    if json_out:
        render.emit_json(job.as_dict())
    else:
        render.enqueued([job])
