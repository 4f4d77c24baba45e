"""``siderctl worker start``."""

from typing import Annotated

import typer

from siderctl import runtime
from siderctl.cli import common
from siderctl.errors import InputError
from siderctl.queues import QUEUES, get_queue
from siderctl.timeparse import parse_duration
from siderctl.worker import WorkerOptions

app = typer.Typer(help="Run workers.", no_args_is_help=True)


def complete_queue(incomplete: str) -> list[str]:
    """Queue names starting with ``incomplete``."""
    return [name for name in QUEUES if name.startswith(incomplete)]


def _duration(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from None


@app.command("start")
@common.boundary
def start(
    ctx: typer.Context,
    queues: Annotated[
        list[str] | None,
        typer.Argument(help="Queues to work (default: all).", autocompletion=complete_queue, show_default=False),
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
) -> None:
    """Run workers until SIGINT/SIGTERM: the first signal finishes in-flight jobs, a second requeues them now.

    Exits 0 after a clean stop, 9 when jobs had to be requeued or left to recovery.
    """
    common.setup_logging(verbose=True)
    names = tuple(dict.fromkeys(get_queue(q).name for q in queues)) if queues else tuple(QUEUES)
    options = WorkerOptions(queues=names, concurrency=concurrency, burst=burst, max_jobs=max_jobs, name=name,
                            shutdown_timeout=_duration(shutdown_timeout, "--shutdown-timeout"))
    runtime.run_workers(common.config(ctx), options, processes)
