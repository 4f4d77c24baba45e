"""Presentation: the only module that uses Rich. Data goes to stdout, notes to stderr.

Rich is imported inside the functions that draw, so commands that print plain text or JSON
never pay for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .timeparse import format_duration

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .config import Config
    from .embedded import EmbeddedStatus
    from .events import Event
    from .inspect import SchedulerView, Snapshot, Status
    from .ops import EnqueuedJob
    from .runtime import Plan


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Rich itself honours NO_COLOR and drops styling when the stream is not a terminal.
    console = Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 200  # a pipe has no width: never truncate data
    return console


def _table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)
    for column in columns:
        numeric = column in _NUMERIC
        table.add_column(column, justify="right" if numeric else "left", no_wrap=not numeric)
    for row in rows:
        table.add_row(*row)
    return table


_SHORT = {"queued": "queued", "scheduled": "sched", "started": "started", "deferred": "defer",
          "finished": "done", "failed": "failed", "canceled": "cancel"}
_NUMERIC = {*_SHORT.values(), "oldest", "workers"}


def emit_json(value: Any) -> None:
    """``value`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def note(message: str) -> None:
    """A human-facing remark on stderr (never data)."""
    sys.stderr.write(f"siderctl: {message}\n")


def error(message: str) -> None:
    """The single error line of a failed command."""
    sys.stderr.write(f"siderctl: error: {message}\n")


def status(status: Status) -> None:
    """The queue table of ``siderctl status``."""
    from .inspect import STATES

    rows = []
    for q in status.queues:
        age = "-" if q.oldest_queued_age is None else format_duration(q.oldest_queued_age)
        counts = [str(getattr(q, state)) for state in STATES]
        rows.append([q.name, *counts, age, str(len(q.workers))])
    console = _console()
    console.print(f"prefix {status.prefix} · server {status.server}")
    console.print(_table(None, ["queue", *_SHORT.values(), "oldest", "workers"], rows))


def enqueued(jobs: Sequence[EnqueuedJob]) -> None:
    """Job ids, one per line; a count on stderr for batches."""
    sys.stdout.write("".join(f"{job.id}\n" for job in jobs))
    if len(jobs) > 1:
        note(f"enqueued {len(jobs)} jobs on {jobs[0].queue}")
    elif jobs and jobs[0].run_at:
        note(f"scheduled for {jobs[0].run_at}")


def config_rows(config: Config) -> list[tuple[str, Any, str]]:
    """(key, displayed value, source) for every effective setting."""
    from .config import display_value

    return [(key, display_value(config, key), config.sources[key]) for key in config.values]


def config_table(config: Config) -> None:
    """Every effective setting with its source, secrets masked."""
    rows = [(key, _plain(value), source) for key, value, source in config_rows(config)]
    title = f"config file: {config.file}" if config.file else "config file: none (defaults)"
    _console().print(_table(title, ["key", "value", "source"], rows))


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def dev_redis_status(info: EmbeddedStatus) -> None:
    """The embedded server's state, one fact a line."""
    state = f"running (pid {info.pid})" if info.running else "stopped"
    lines = [f"state:     {state}", f"url:       {info.url}", f"state dir: {info.state_dir}",
             f"binary:    {info.binary or 'none found'}"]
    sys.stdout.write("\n".join(lines) + "\n")


def schedules(view: SchedulerView) -> None:
    """The table of ``scheduler ls``, with the leader above it."""
    rows = []
    for info in view.schedules:
        s = info.schedule
        when = f"every {format_duration(s.every)}" if s.every is not None else f"cron {s.cron} ({s.timezone})"
        late = "-" if info.lateness is None else format_duration(info.lateness)
        rows.append([s.name, s.queue, when, _plain(s.payload), info.next_fire or "disabled",
                     info.last_fired_at or "-", late, info.last_job_id or "-"])
    console = _console()
    if view.leader:
        console.print(f"leader {view.leader} (lease {format_duration(view.lease_expires_in or 0)} left)")
    else:
        console.print("leader: none (no scheduler is running)")
    console.print(_table(None, ["schedule", "queue", "when", "payload", "next", "last fired", "late", "job"], rows))


def _event_details(event: Event) -> str:
    details = dict(event.details)
    details.pop("execution", None)
    parts = []
    if "duration" in details:
        parts.append(f"in {float(details.pop('duration')):.3f}s")
    if details.get("delay") not in (None, "0", "0.0"):
        parts.append(f"retry in {float(details.pop('delay')):g}s")
    details.pop("delay", None)
    if details.get("reason"):
        parts.append(details.pop("reason"))
    parts += [f"{k}={v}" for k, v in details.items()]
    return " ".join(parts)


def events(found: Iterable[Event]) -> None:
    """Events as a table (a terminal) or aligned lines (a pipe)."""
    rows = [[e.as_dict()["at"], e.event, e.queue, e.job, _event_details(e)] for e in found]
    if not rows:
        note("no events")
        return
    _console().print(_table(None, ["at", "event", "queue", "job", "details"], rows))


def event_line(event: Event) -> None:
    """One event as a line, for ``events --follow``."""
    at = event.as_dict()["at"]
    sys.stdout.write(f"{at}  {event.event:<9} {event.queue:<17} {event.job}  {_event_details(event)}\n".rstrip()
                     + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    """``value`` as one compact JSON line (JSON Lines), flushed."""
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def snapshots(found: Sequence[Snapshot], detail: bool) -> None:
    """metrics-sync snapshots: a summary table, or (``detail``) each document in full."""
    if detail:
        for snap in found:
            sys.stdout.write(f"# {snap.scope} fetched {snap.fetched_at} by job {snap.job} in {snap.took:.3f}s\n")
            sys.stdout.write(json.dumps(snap.data, indent=2, sort_keys=True) + "\n")
        return
    rows = [[s.scope, s.fetched_at, f"{s.took:.3f}s", _size(s.data), s.job] for s in found]
    _console().print(_table(None, ["scope", "fetched at", "took", "keys", "job"], rows))


def _size(data: Any) -> str:
    return str(len(data)) if isinstance(data, dict | list) else "1"


def runtime_plan(plan: Plan) -> None:
    """The start-up summary of ``siderctl up`` (stderr: stdout stays for data)."""
    lines = [f"siderctl up · redis {plan.redis} · prefix {plan.prefix}"]
    for q in plan.queues:
        lines.append(f"  queue {q.queue:<17} {q.processes} process(es), concurrency {q.concurrency:<3} "
                     f"handler {q.handler}")
    lines.append("  schedules " + (", ".join(plan.schedules) or "none enabled"))
    lines.append(f"  heartbeat {format_duration(plan.heartbeat)} · warm shutdown up to "
                 f"{format_duration(plan.shutdown_timeout)} (signal twice to stop at once)")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
