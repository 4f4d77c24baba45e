"""``siderctl audit ls``."""

from typing import Annotated

import typer

from siderctl import inspect, render
from siderctl.cli import common
from siderctl.queues import get_queue

app = common.group("The trail of destructive actions.")


@app.command("ls")
@common.boundary
def ls(ctx: typer.Context,
       queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only actions on this queue.",
                                                 autocompletion=common.complete_queue, show_default=False)] = None,
       limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many entries.")] = 50,
       json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False
       ) -> None:
    """List destructive actions, newest first: when, who (user@host), what, which queue, how many jobs."""
    if queue is not None:
        get_queue(queue)
    found = inspect.audit(common.config(ctx), limit, queue)
    if json_out:
        render.emit_json([a.as_dict() for a in found])
    else:
        render.audit(found)
