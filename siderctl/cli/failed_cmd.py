"""``siderctl failed ls|show|group|retry|rm``."""

import time
from typing import Annotated

import typer

from siderctl import failures, render
from siderctl.cli import common
from siderctl.errors import UsageError
from siderctl.queues import QUEUES, get_queue

app = common.group("Find failed jobs, see why they failed, retry or remove them.")

QueueOpt = Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.", show_default=False,
                                              autocompletion=common.complete_queue)]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Only failures within this long (1h, 2d).",
                                              show_default=False)]
ErrorOpt = Annotated[str | None, typer.Option("--error", help="Only errors whose 'Type: message' contains TEXT "
                                              "(case-insensitive).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _selection(queue: str | None, since: str | None, error: str | None) -> failures.Selection:
    window = common.duration_option(since, "--since")
    return failures.Selection(
        queues=(get_queue(queue).name,) if queue else tuple(QUEUES),
        since=None if window is None else time.time() - window,
        error=error or None,
    )


def _complete_failed(ctx: typer.Context, incomplete: str) -> list[str]:
    """Recent failed job ids (one page of the index, over the one-shot client: fast)."""
    from siderctl import lite
    from siderctl.config import Overrides, load_config
    from siderctl.errors import SiderctlError

    given = ctx.find_root().params  # the global flags typed before the command
    overrides = Overrides(config_path=given.get("config"), redis_url=given.get("redis_url"),
                          prefix=given.get("prefix"))
    try:
        config = load_config(overrides)
        with lite.connect(config) as connection:
            entries = failures.walk(connection, config.redis.prefix, failures.Selection())
            ids = [job_id for _, (_s, _q, job_id) in zip(range(200), entries, strict=False)]
    except (SiderctlError, lite.CommandError):
        return []  # a completion never prints an error
    return [i for i in ids if i.startswith(incomplete)]


@app.command("ls")
@common.boundary
def ls(ctx: typer.Context, queue: QueueOpt = None, since: SinceOpt = None, error: ErrorOpt = None,
       limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Failures per page.")] = 50,
       cursor: Annotated[str | None, typer.Option("--cursor", help="Continue after a previous page "
                                                  "(its next_cursor).", show_default=False)] = None,
       json_out: JsonOpt = False) -> None:
    """List failed jobs, newest failure first: id, queue, failed at, attempts, error, payload."""
    config = common.config(ctx)
    result = failures.list_page(config, _selection(queue, since, error), limit, cursor)
    if json_out:
        render.emit_json(result.as_dict())
    else:
        render.failure_page(result)


@app.command("show")
@common.boundary
def show(ctx: typer.Context,
         job_id: Annotated[str, typer.Argument(help="Failed job id.", autocompletion=_complete_failed)],
         json_out: JsonOpt = False) -> None:
    """Show one failed job: payload, every attempt with its time, and the full traceback."""
    found = failures.show(common.config(ctx), job_id)
    if json_out:
        render.emit_json(found.as_dict())
    else:
        render.failure_detail(found)


@app.command("group")
@common.boundary
def group(ctx: typer.Context, queue: QueueOpt = None, since: SinceOpt = None, error: ErrorOpt = None,
          json_out: JsonOpt = False) -> None:
    """Group failures by fingerprint (error type + normalised message + top frame), largest first."""
    found = failures.group_all(common.config(ctx), _selection(queue, since, error))
    if json_out:
        render.emit_json([g.as_dict() for g in found])
    else:
        render.failure_groups(found)


def _bulk(ctx: typer.Context, action: str, ids: list[str] | None, all_jobs: bool, queue: str | None,
          since: str | None, error: str | None, dry_run: bool, yes: bool, json_out: bool) -> None:
    if bool(ids) == all_jobs:
        raise UsageError("name failed job ids, or use --all with optional filters (not both)")
    if ids and (queue or since or error):
        raise UsageError("--queue, --since and --error select jobs for --all; they cannot narrow named ids")
    from siderctl import control

    config = common.config(ctx)
    chosen = control.select_failed(config, ids or [], None if ids else _selection(queue, since, error))
    if dry_run:
        if json_out:
            render.emit_json({"dry_run": True, "action": action, **chosen.as_dict()})
        else:
            render.selection(chosen, action, dry_run=True)
        return
    verb = "retry" if action == "retry" else "delete"
    if not json_out:
        render.selection(chosen, action, dry_run=False)
    common.confirm(f"{verb} {chosen.count} failed job(s) ({chosen.described})?", yes)
    apply = control.retry_failed if action == "retry" else control.remove_failed
    with render.progress(chosen.count, f"{verb}ing") as advance:
        applied = apply(config, chosen, advance)
    if json_out:
        render.emit_json(applied.as_dict())
    else:
        render.applied(applied)


@app.command("retry")
@common.boundary
def retry(ctx: typer.Context,
          ids: Annotated[list[str] | None, typer.Argument(help="Failed job ids.", show_default=False,
                                                          autocompletion=_complete_failed)] = None,
          all_jobs: Annotated[bool, typer.Option("--all", help="Every failed job matching the filters.")] = False,
          queue: QueueOpt = None, since: SinceOpt = None, error: ErrorOpt = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be retried; change nothing.")]
          = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")] = False,
          json_out: JsonOpt = False) -> None:
    """Put failed jobs back at the end of their queue; each gets one more attempt."""
    _bulk(ctx, "retry", ids, all_jobs, queue, since, error, dry_run, yes, json_out)


@app.command("rm")
@common.boundary
def rm(ctx: typer.Context,
       ids: Annotated[list[str] | None, typer.Argument(help="Failed job ids.", show_default=False,
                                                       autocompletion=_complete_failed)] = None,
       all_jobs: Annotated[bool, typer.Option("--all", help="Every failed job matching the filters.")] = False,
       queue: QueueOpt = None, since: SinceOpt = None, error: ErrorOpt = None,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; change nothing.")]
       = False,
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")] = False,
       json_out: JsonOpt = False) -> None:
    """Delete failed jobs and their results."""
    _bulk(ctx, "rm", ids, all_jobs, queue, since, error, dry_run, yes, json_out)
