"""Presentation: the only module that uses Rich. Data goes to stdout, notes to stderr.

Rich is imported inside the functions that draw, so commands that print plain text or JSON
never pay for it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .timeparse import format_duration, format_epoch

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from .config import Config
    from .control import Applied, DrainReport, FailedSelection, PurgePlan, QueueState
    from .embedded import EmbeddedStatus
    from .events import Event
    from .failures import FailureDetail, Group, Page
    from .health import HealthReport
    from .inspect import AuditEntry, Overview, QueueView, SchedulerView, Snapshot, Status, WorkerView
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


def _line(text: str) -> None:
    """One line of text on stdout (through Rich on a terminal, for its markup-free styling)."""
    if _tty():
        _console().print(text, markup=False)
    else:
        sys.stdout.write(text + "\n")


def _tty() -> bool:
    """stdout is a terminal (Rich is loaded only then: piped output stays plain and fast)."""
    return sys.stdout.isatty()


def _emit_table(console: Console | None, title: str | None, columns: Sequence[str],
                rows: Iterable[Sequence[str]]) -> None:
    """A Rich table on a terminal; plain aligned columns (no box, no trailing blanks) in a pipe."""
    if _tty():
        (console or _console()).print(_table(title, columns, rows))
        return
    lines = [list(columns), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    numeric = [column in _NUMERIC for column in columns]
    out = [title] if title else []
    for line in lines:
        cells = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(line, widths, numeric, strict=True)]
        out.append("  ".join(cells).rstrip())
    sys.stdout.write("\n".join(out) + "\n")


_SHORT = {"queued": "queued", "scheduled": "sched", "started": "started", "deferred": "defer",
          "finished": "done", "failed": "failed", "canceled": "cancel"}
_NUMERIC = {*_SHORT.values(), "oldest", "workers", "queued", "sched", "count", "jobs", "done", "att", "pid"}


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
    _line(f"prefix {status.prefix} · server {status.server}")
    _emit_table(None, None, ["queue", *_SHORT.values(), "oldest", "workers"], rows)


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
    _emit_table(None, title, ["key", "value", "source"], rows)


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
    if view.leader:
        _line(f"leader {view.leader} (lease {format_duration(view.lease_expires_in or 0)} left)")
    else:
        _line("leader: none (no scheduler is running)")
    _emit_table(None, None, ["schedule", "queue", "when", "payload", "next", "last fired", "late", "job"], rows)


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
    _emit_table(None, None, ["at", "event", "queue", "job", "details"], rows)


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
    _emit_table(None, None, ["scope", "fetched at", "took", "keys", "job"], rows)


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


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(round(seconds, 1) if seconds < 60 else round(seconds))


def workers(found: Sequence[WorkerView]) -> None:
    """The table of ``worker ls``."""
    if not found:
        note("no workers registered")
        return
    rows = []
    for w in found:
        current = w.current_jobs[0] + (f" +{len(w.current_jobs) - 1}" if len(w.current_jobs) > 1 else "") \
            if w.current_jobs else "-"
        rows.append([w.name, w.host, str(w.pid or "-"), ",".join(w.queues), w.state, current, w.busy_since or "-",
                     str(w.finished), str(w.failed), _age(w.heartbeat_age)])
    _emit_table(None, None, ["worker", "host", "pid", "queues", "state", "current job", "since", "done",
                                   "failed", "heartbeat"], rows)


def queue_table(found: Sequence[QueueView]) -> None:
    """The table of ``queue ls``."""
    rows = []
    for view in found:
        q, state = view.status, view.state
        changed = f"{state.changed_at} by {state.changed_by}" if state.changed_at else "-"
        rows.append([q.name, state.label, str(q.queued), str(q.scheduled), str(q.started), str(q.failed),
                     str(len(q.workers)), changed])
    _emit_table(None, None, ["queue", "state", "queued", "sched", "started", "failed", "workers",
                                   "changed"], rows)


def queue_state(queue: str, state: QueueState) -> None:
    """The state a queue command left the queue in."""
    intake = {"open": "accepting jobs", "draining": "draining: refusing new jobs",
              "closed": "closed: refusing new jobs, its workers exit"}[state.intake]
    sys.stdout.write(f"{queue}: {'paused' if state.paused else 'running'}, {intake}\n")


@contextlib.contextmanager
def drain_watch(enabled: bool) -> Iterator[Callable[[DrainReport], None]]:
    """A live one-line progress of a drain on a terminal (stderr); silent otherwise."""
    console = _console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda _report: None
        return
    with console.status("draining…") as status:
        def update(report: DrainReport) -> None:
            status.update(f"draining {report.queue}: {report.queued} queued, {report.started} running, "
                          f"{report.scheduled} scheduled · {report.elapsed:.0f}s")

        yield update


def drain_report(report: DrainReport) -> None:
    """How a drain ended."""
    outcome = "drained" if report.done else "timed out"
    lines = [f"{report.queue}: {outcome} after {report.elapsed:.1f}s",
             f"  finished during drain: {report.finished}",
             f"  failed during drain:   {report.failed}",
             f"  still queued:          {report.queued}",
             f"  still running:         {report.started}",
             f"  scheduled (not waited for): {report.scheduled}",
             f"  the queue refuses new jobs until `siderctl queue open {report.queue}`"]
    sys.stdout.write("\n".join(lines) + "\n")


def purge_plan(plan: PurgePlan) -> None:
    """What a purge removes."""
    parts = ", ".join(f"{count} {kind}" for kind, count in plan.counts.items())
    sys.stdout.write(f"{plan.queue}: {parts} — {plan.total} job(s) in all\n")


@contextlib.contextmanager
def progress(total: int, verb: str) -> Iterator[Callable[[int], None]]:
    """A progress bar for large batches on a terminal (stderr); a no-op otherwise."""
    console = _console(stderr=True)
    if total < 200 or not console.is_terminal:
        yield lambda _n: None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(verb, total=total)
        yield lambda n: bar.advance(task, n)


def applied(result: Applied) -> None:
    """What a bulk action changed."""
    per_queue = ", ".join(f"{q}: {n}" for q, n in result.by_queue.items())
    skipped = result.selected - result.changed
    tail = f" ({skipped} had changed state meanwhile and were left alone)" if skipped > 0 else ""
    sys.stdout.write(f"{result.action}: {result.changed} job(s){f' ({per_queue})' if per_queue else ''}{tail}\n")


def selection(chosen: FailedSelection, action: str, dry_run: bool) -> None:
    """The jobs a retry/rm is about to touch: ids on stdout for a dry run, a count on stderr."""
    verb = {"retry": "retry", "rm": "remove"}[action]
    if dry_run:
        sys.stdout.write("".join(f"{job_id}\n" for job_id in chosen.ids()))
        note(f"dry run: would {verb} {chosen.count} failed job(s) ({chosen.described}); nothing changed")
    else:
        note(f"about to {verb} {chosen.count} failed job(s) ({chosen.described})")


def _payload_summary(payload: Any) -> str:
    return _clip(json.dumps(payload, sort_keys=True, separators=(",", ":")), 48)


def failure_page(page: Page) -> None:
    """The table of ``failed ls``; the next page's cursor on stderr."""
    if not page.failures:
        note("no failed jobs")
        return
    rows = [[f.id, f.queue, format_epoch(f.failed_at), str(f.attempts), f.error_type, _clip(f.error_message, 60),
             _payload_summary(f.payload)] for f in page.failures]
    _emit_table(None, None, ["id", "queue", "failed at", "att", "error", "message", "payload"], rows)
    if page.next_cursor:
        note(f"more: --cursor {page.next_cursor}")


def failure_detail(found: FailureDetail) -> None:
    """``failed show``: facts, payload, attempts, then the traceback (highlighted on a terminal)."""
    f = found.failure
    console = _console()
    facts = [("job", f.id), ("queue", f.queue), ("handler", found.func), ("failed at", format_epoch(f.failed_at)),
             ("attempts", str(f.attempts)), ("worker", f.worker or "-"), ("created", found.created_at or "-"),
             ("error", f"{f.error_type}: {f.error_message}")]
    for label, value in facts:
        console.print(f"{label + ':':<11}{value}", markup=False)
    console.print("payload:", markup=False)
    console.print(json.dumps(f.payload, indent=2, sort_keys=True), markup=False)
    if found.attempts:
        rows = [[str(a.number), a.outcome, a.started_at or "-", a.ended_at or "-", a.worker or "-",
                 _clip(a.error or "", 70)] for a in found.attempts]
        _emit_table(console, "attempts", ["#", "outcome", "started", "ended", "worker", "error"], rows)
    console.print("traceback:", markup=False)
    if console.is_terminal and found.traceback:
        from rich.syntax import Syntax

        console.print(Syntax(found.traceback.rstrip(), "pytb", word_wrap=True))
    else:
        sys.stdout.write(found.traceback.rstrip() + "\n")


def failure_groups(found: Sequence[Group]) -> None:
    """The table of ``failed group``."""
    if not found:
        note("no failed jobs")
        return
    rows = [[str(g.count), g.error_type, _clip(g.message, 50), g.top_frame, format_epoch(g.first_seen),
             format_epoch(g.last_seen), g.example, ",".join(sorted(g.queues))] for g in found]
    _emit_table(None, None, ["count", "error", "message", "top frame", "first seen", "last seen",
                                   "example", "queues"], rows)


def audit(found: Sequence[AuditEntry]) -> None:
    """The table of ``audit ls``."""
    if not found:
        note("no audit entries")
        return
    rows = [[a.at, a.who, a.action, a.queue or "-", str(a.count),
             _clip(json.dumps(a.detail, sort_keys=True, separators=(",", ":")), 60)] for a in found]
    _emit_table(None, None, ["at", "who", "action", "queue", "jobs", "detail"], rows)


def health(report: HealthReport) -> None:
    """``healthy``, or one reason per line (stdout: this is the command's answer)."""
    sys.stdout.write("healthy\n" if report.healthy else "".join(f"{reason}\n" for reason in report.reasons))


def live(views: Iterable[Overview | str]) -> None:
    """``status --watch``: redraw each overview in the terminal's alternate screen until interrupted."""
    from rich.live import Live

    console = _console()
    with Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as screen:
        for view in views:
            screen.update(_overview(view, console.width), refresh=True)


def _small_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=False,
                  title_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in _NUMERIC else "left", no_wrap=True,
                         overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    return table


def _overview(view: Overview | str, width: int) -> RenderableType:
    from datetime import UTC, datetime

    from rich.console import Group
    from rich.text import Text

    if isinstance(view, str):
        return Text(f"siderctl status --watch · {view} · retrying (Ctrl-C to quit)", style="bold red")
    clock = datetime.fromtimestamp(view.taken_at, UTC).strftime("%H:%M:%SZ")
    leader = view.scheduler.leader or "none"
    head = Text(f"siderctl · {clock} · scheduler leader {_clip(leader, 30)} · Ctrl-C to quit", style="bold")
    queues = _small_table("queues", ["queue", "state", "queued", "sched", "run", "failed", "wkrs", "oldest",
                                     "5m ok/fail"], [
        [q.status.name, q.state.label, str(q.status.queued), str(q.status.scheduled), str(q.status.started),
         str(q.status.failed), str(len(view.live_workers(q.status.name))), _age(q.status.oldest_queued_age),
         f"{view.recent[q.status.name]['finished']}/"
         f"{view.recent[q.status.name]['failed'] + view.recent[q.status.name]['retry']}"]
        for q in view.queues])
    live_workers = [w for w in view.workers if w.state != "dead"]
    workers = _small_table(f"workers ({len(live_workers)} live)", ["worker", "queues", "state", "job", "beat"], [
        [_clip(w.name, 26), _clip(",".join(w.queues), 24), w.state, _clip(w.current_jobs[0], 10)
         if w.current_jobs else "-", _age(w.heartbeat_age)] for w in live_workers[:8]])
    schedules = _small_table("schedules", ["schedule", "queue", "next", "late"], [
        [_clip(i.schedule.name, 20), i.schedule.queue, (i.next_fire or "disabled")[11:19] or "-",
         _age(i.lateness)] for i in view.scheduler.schedules])
    failures = _small_table("latest failures", ["job", "queue", "ago", "error"], [
        [f.id[:10], f.queue, _age(view.taken_at - f.failed_at), _clip(f"{f.error_type}: {f.error_message}",
                                                                       max(20, width - 48))]
        for f in view.latest_failures]) if view.latest_failures else Text("no failed jobs", style="dim")
    return Group(head, queues, workers, schedules, failures)
