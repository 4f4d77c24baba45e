"""``siderctl queue ls|pause|resume|drain|close|open|purge``."""

from pathlib import Path
from typing import Annotated

import typer

from siderctl import control, inspect, render
from siderctl.cli import common

app = common.group("See queues and take them in and out of service.")

QueueArg = Annotated[str, typer.Argument(help="Queue name.", autocompletion=common.complete_queue)]


@app.command("ls")
@common.boundary
def ls(ctx: typer.Context,
       json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False
       ) -> None:
    """List queues with their state (open, paused, draining, closed), counts and workers."""
    found = inspect.queues(common.config(ctx))
    if json_out:
        render.emit_json([q.as_dict() for q in found])
    else:
        render.queue_table(found)


def _state_command(action: str, doc: str) -> None:
    def command(ctx: typer.Context, queue: QueueArg) -> None:
        state = control.set_state(common.config(ctx), queue, action)
        render.queue_state(queue, state)

    command.__doc__ = doc
    app.command(action)(common.boundary(command))


_state_command("pause", "Workers stop taking jobs from QUEUE (in-flight jobs finish; enqueue still works).")
_state_command("resume", "Workers take jobs from QUEUE again.")
_state_command("close", "Refuse new jobs to QUEUE and make its workers exit after their current jobs.")
_state_command("open", "Accept new jobs to QUEUE again (undoes close and drain).")


@app.command("drain")
@common.boundary
def drain(ctx: typer.Context, queue: QueueArg,
          timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long (exit 12).")] = "5m",
          json_out: Annotated[bool, typer.Option("--json", help="Print the final report as JSON.")] = False
          ) -> None:
    """Refuse new jobs to QUEUE, wait until workers finished what is queued and running, then report.

    The queue stays closed to new jobs afterwards; `queue open` accepts them again.
    """
    from siderctl.control import DrainTimedOut

    seconds = common.duration_option(timeout, "--timeout")
    assert seconds is not None
    with render.drain_watch(enabled=not json_out) as watch:
        try:
            report = control.drain(common.config(ctx), queue, seconds, watch)
        except DrainTimedOut as exc:
            _report(exc.report, json_out)
            raise
    _report(report, json_out)


def _report(report: control.DrainReport, json_out: bool) -> None:
    if json_out:
        render.emit_json(report.as_dict())
    else:
        render.drain_report(report)


@app.command("purge")
@common.boundary
def purge(ctx: typer.Context, queue: QueueArg,
          scheduled: Annotated[bool, typer.Option("--scheduled", help="Also scheduled jobs (delayed, retries).")]
          = False,
          failed: Annotated[bool, typer.Option("--failed", help="Also failed jobs.")] = False,
          export: Annotated[Path | None, typer.Option("--export", help="First write the removed payloads to this "
                                                       "new JSONL file (`enqueue --jsonl` restores them).",
                                                       show_default=False)] = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the counts; change nothing.")] = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")] = False,
          json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Remove QUEUE's queued jobs (and scheduled / failed ones), optionally exporting them first."""
    from siderctl.errors import NothingSelected

    config = common.config(ctx)
    plan = control.purge_plan(config, queue, scheduled, failed)
    if dry_run:
        if json_out:
            render.emit_json({"dry_run": True, **plan.as_dict()})
        else:
            render.purge_plan(plan)
        return
    if plan.total == 0:
        raise NothingSelected(f"queue {queue} has no {'/'.join(plan.counts)} jobs; nothing changed")
    if not json_out:
        render.purge_plan(plan)
    common.confirm(f"delete {plan.total} job(s) of {queue}{f' (exported to {export})' if export else ''}?", yes)
    with render.progress(plan.total, "deleting") as advance:
        applied = control.purge(config, plan, export, advance)
    if json_out:
        render.emit_json(applied.as_dict())
    else:
        render.applied(applied)
