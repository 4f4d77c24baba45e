"""``siderctl worker start|ls|stop``."""

from typing import Annotated

import typer

from siderctl import control, inspect, render, runtime
from siderctl.cli import common
from siderctl.queues import QUEUES, get_queue
from siderctl.worker import WorkerOptions

app = common.group("Run, list and stop workers.")


@app.command("start")
@common.boundary
def start(
    ctx: typer.Context,
    queues: Annotated[
        list[str] | None,
        typer.Argument(help="Queues to work (default: all).", autocompletion=common.complete_queue, show_default=False),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, show_default=False,
                                 help="Jobs in flight per process, per queue (default: queues.NAME.concurrency).")
    ] = None,
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, help="Worker processes.")] = 1,
    burst: Annotated[bool, typer.Option("--burst", help="Work off what is queued, then exit.")] = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=1, show_default=False, help="Exit after this many jobs.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", show_default=False, help="Worker name (default: host.pid.random).")
    ] = None,
    shutdown_timeout: Annotated[
        str | None, typer.Option("--shutdown-timeout", show_default=False,
                                 help="Warm shutdown: time in-flight jobs get before they are requeued "
                                 "(default: worker.shutdown_timeout).")
    ] = None,
    metrics_port: common.MetricsPortOpt = None,
    metrics_bind: common.MetricsBindOpt = "127.0.0.1",
    log_format: common.LogFormatOpt = common.LogFormat.text,
    log_level: common.LogLevelOpt = common.LogLevel.info,
) -> None:
    """Run workers until SIGINT/SIGTERM: the first signal finishes in-flight jobs, a second requeues them now.

    Exits 0 after a clean stop, 9 when jobs had to be requeued or left to recovery.
    """
    common.setup_logging(True, log_format, log_level)
    names = tuple(dict.fromkeys(get_queue(q).name for q in queues)) if queues else tuple(QUEUES)
    options = WorkerOptions(queues=names, concurrency=concurrency, burst=burst, max_jobs=max_jobs, name=name,
                            shutdown_timeout=common.duration_option(shutdown_timeout, "--shutdown-timeout"))
    runtime.run_workers(common.config(ctx), options, processes, common.metrics_endpoint(metrics_port, metrics_bind))


@app.command("ls")
@common.boundary
def ls(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List registered workers: host, pid, queues, state, current jobs, jobs done/failed, last heartbeat."""
    found = inspect.workers(common.config(ctx))
    if json_out:
        render.emit_json([w.as_dict() for w in found])
    else:
        render.workers(found)


@app.command("stop")
@common.boundary
def stop(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Worker names (see `worker ls`).",
                                                      show_default=False)] = None,
    all_workers: Annotated[bool, typer.Option("--all", help="Every registered worker.")] = False,
    now: Annotated[bool, typer.Option("--now", help="Cold: requeue in-flight jobs at once.")] = False,
) -> None:
    """Ask workers to stop through RQ's command channel: warm (finish in-flight jobs), or cold with --now."""
    from siderctl.errors import UsageError

    if bool(names) == all_workers:
        raise UsageError("name the workers to stop, or use --all (not both)")
    reached = control.stop_workers(common.config(ctx), names or [], all_workers=all_workers, now=now)
    render.note(f"asked {len(reached)} worker(s) to stop {'now' if now else 'after their current jobs'}: "
                + ", ".join(reached))
