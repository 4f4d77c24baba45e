"""``siderctl events``."""

import threading
from typing import Annotated

import typer

from siderctl import events, render
from siderctl.cli import common
from siderctl.queues import get_queue


def register(app: typer.Typer) -> None:
    """Add the events command to ``app``."""
    app.command("events")(common.boundary(show_events))


def show_events(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only this queue.", autocompletion=common.complete_queue,
                                 show_default=False)
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job id.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="How many past events to show.")] = 50,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON: an array, or one object per line with --follow.")
    ] = False,
) -> None:
    """Show job lifecycle events: started, finished, failed (with reason), retried, abandoned, requeued."""
    if queue is not None:
        get_queue(queue)
    stream = events.tail(common.config(ctx), limit=limit, follow=follow, stop=threading.Event(), queue=queue,
                         job=job)
    if not follow:
        found = list(stream)
        if json_out:
            render.emit_json([e.as_dict() for e in found])
        else:
            render.events(found)
        return
    try:
        for event in stream:
            if json_out:
                render.json_line(event.as_dict())
            else:
                render.event_line(event)
    except KeyboardInterrupt:
        return  # Ctrl-C is how --follow ends
