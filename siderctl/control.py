"""Operator actions: queue states, draining, purging, failed-job retry/removal, stopping workers.

Every destructive action is appended to the audit stream (who, what, which queue, how many,
when). Each job is moved by one Lua script, so a job is never half-retried or half-removed, and
a selection that changed since it was shown is applied only to the jobs still in that state.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import failures, store
from .config import Config
from .errors import DeadlinePassed, InputError, NotFound, NothingSelected, QueueNotAccepting
from .ops import refusal
from .queues import QUEUES, get_queue
from .timeparse import format_epoch

if TYPE_CHECKING:
    from redis import Redis

Progress = Callable[[int], None]  # called with how many more jobs were handled
CHUNK = 500

_EVENT = """
local function event(name, job, queue, who, reason)
  redis.call('XADD', ARGV[#ARGV - 1], 'MAXLEN', '~', ARGV[#ARGV], '*', 'event', name, 'job', job,
             'queue', queue, 'worker', who, 'reason', reason)
end
"""

# ARGV: prefix, queue, who, stamp, then job ids, then events key, events max length.
RETRY_FAILED = _EVENT + """
local p, q, who, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local moved = 0
for i = 5, #ARGV - 2 do
  local id = ARGV[i]
  if redis.call('ZREM', p .. ':failed:' .. q, id) == 1 then
    redis.call('ZREM', p .. ':siderctl:failures:' .. q, id)
    local jk = p .. ':job:' .. id
    if redis.call('EXISTS', jk) == 1 then
      redis.call('PERSIST', jk)
      redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', stamp)
      redis.call('RPUSH', p .. ':queue:' .. q, id)
      event('requeued', id, q, who, 'failed job retried by ' .. who)
      moved = moved + 1
    end
  end
end
if moved > 0 then redis.call('SADD', p .. ':queues', p .. ':queue:' .. q) end
return moved
"""

REMOVE_FAILED = _EVENT + """
local p, q, who = ARGV[1], ARGV[2], ARGV[3]
local removed = 0
for i = 5, #ARGV - 2 do
  local id = ARGV[i]
  if redis.call('ZREM', p .. ':failed:' .. q, id) == 1 then
    redis.call('ZREM', p .. ':siderctl:failures:' .. q, id)
    redis.call('DEL', p .. ':job:' .. id, p .. ':results:' .. id, p .. ':executions:' .. id)
    event('removed', id, q, who, 'failed job removed by ' .. who)
    removed = removed + 1
  end
end
return removed
"""

# ARGV: prefix, queue, holding list, count, kind (queued | scheduled | failed).
# Moves up to count ids out of the queue or registry into the holding list; returns them.
TAKE = """
local p, q, hold, count, kind = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local ids
if kind == 'queued' then
  ids = redis.call('LPOP', p .. ':queue:' .. q, count)
  if not ids then return {} end
else
  local key = p .. ':' .. kind .. ':' .. q
  ids = redis.call('ZRANGE', key, 0, count - 1)
  if #ids == 0 then return {} end
  redis.call('ZREM', key, unpack(ids))
  if kind == 'failed' then redis.call('ZREM', p .. ':siderctl:failures:' .. q, unpack(ids)) end
end
redis.call('RPUSH', hold, unpack(ids))
return ids
"""


def who() -> str:
    """``user@host`` for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def audit(connection: Redis, config: Config, action: str, queue: str | None, count: int,
          detail: dict[str, Any] | None = None) -> None:
    """Append one entry to the audit stream."""
    connection.xadd(store.audit_key(config.redis.prefix),
                    {"who": who(), "action": action, "queue": queue or "", "count": count,
                     "detail": json.dumps(detail or {}, sort_keys=True)},
                    maxlen=int(config.values["audit.max_len"]), approximate=True)


# --- failed jobs --------------------------------------------------------------------------

@dataclass(frozen=True)
class FailedSelection:
    """Failed jobs chosen for retry or removal, grouped by queue."""

    by_queue: dict[str, list[str]]
    described: str

    @property
    def count(self) -> int:
        """How many jobs."""
        return sum(len(ids) for ids in self.by_queue.values())

    def ids(self) -> list[str]:
        """Every selected id."""
        return [job_id for ids in self.by_queue.values() for job_id in ids]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape (``--dry-run --json``)."""
        return {"count": self.count, "selection": self.described,
                "jobs": [{"id": i, "queue": q} for q, ids in self.by_queue.items() for i in ids]}


def select_failed(config: Config, ids: Sequence[str], selection: failures.Selection | None) -> FailedSelection:
    """The failed jobs named by ``ids``, or every one matching ``selection`` (``--all``)."""
    from .connection import connect

    prefix = config.redis.prefix
    with connect(config) as connection:
        if ids:
            chosen = _named_failed(connection, prefix, ids)
            described = f"{len(ids)} named job(s)"
        else:
            assert selection is not None
            chosen = {}
            for failure in failures.iterate(connection, prefix, selection):
                chosen.setdefault(failure.queue, []).append(failure.id)
            described = _describe(selection)
    if not any(chosen.values()):
        raise NothingSelected(f"no failed job matches {described}; nothing changed")
    return FailedSelection(chosen, described)


def _named_failed(connection: Redis, prefix: str, ids: Sequence[str]) -> dict[str, list[str]]:
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(store.job_key(prefix, job_id), "status", "origin")
        replies = pipe.execute()
    chosen: dict[str, list[str]] = {}
    for job_id, (status, origin) in zip(ids, replies, strict=True):
        if status is None:
            raise NotFound(f"no job {job_id}; nothing changed")
        if status != b"failed":
            raise NotFound(f"job {job_id} is not failed (status: {store.text(status)}); nothing changed")
        chosen.setdefault(store.text(origin), []).append(job_id)
    return chosen


def _describe(selection: failures.Selection) -> str:
    parts = [f"queue {', '.join(selection.queues)}" if len(selection.queues) < len(QUEUES) else "all queues"]
    if selection.since is not None:
        parts.append(f"since {format_epoch(selection.since)}")
    if selection.error:
        parts.append(f"error containing {selection.error!r}")
    return " · ".join(parts)


@dataclass(frozen=True)
class Applied:
    """What a bulk action changed."""

    action: str
    selected: int
    changed: int
    by_queue: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"action": self.action, "selected": self.selected, "changed": self.changed,
                "by_queue": self.by_queue}


def retry_failed(config: Config, chosen: FailedSelection, progress: Progress | None = None) -> Applied:
    """Put the chosen failed jobs back at the end of their queue (each gets one more attempt).

    QueueNotAccepting, before anything changes, when one of their queues is draining or closed.
    """
    return _apply(config, chosen, "retry", RETRY_FAILED, progress, check_intake=True)


def remove_failed(config: Config, chosen: FailedSelection, progress: Progress | None = None) -> Applied:
    """Delete the chosen failed jobs with their results."""
    return _apply(config, chosen, "rm", REMOVE_FAILED, progress)


def _apply(config: Config, chosen: FailedSelection, action: str, script_text: str,
           progress: Progress | None, *, check_intake: bool = False) -> Applied:
    from .connection import connect

    prefix = config.redis.prefix
    stamp = store.rq_time(time.time())
    changed: dict[str, int] = {}
    with connect(config) as connection:
        if check_intake:
            _check_intake(connection, prefix, list(chosen.by_queue))
        script = connection.register_script(script_text)
        actor = who()
        for queue, ids in chosen.by_queue.items():
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                done = int(script(args=[prefix, queue, actor, stamp, *chunk, store.events_key(prefix),
                                        config.values["events.max_len"]]))
                changed[queue] = changed.get(queue, 0) + done
                if progress:
                    progress(len(chunk))
            audit(connection, config, f"failed {action}", queue, changed.get(queue, 0),
                  {"selection": chosen.described, "sample": ids[:20]})
    return Applied(f"failed {action}", chosen.count, sum(changed.values()), changed)


# --- queue states ---------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueState:
    """A queue's operator state."""

    paused: bool
    intake: str  # open | draining | closed
    changed_at: str | None = None
    changed_by: str | None = None

    @property
    def label(self) -> str:
        """One word for tables: open, paused, draining, closed (or draining+paused ...)."""
        words = [self.intake] if self.intake != "open" or not self.paused else []
        if self.paused:
            words.append("paused")
        return "+".join(words) or "open"

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"state": self.label, "paused": self.paused, "intake": self.intake,
                "changed_at": self.changed_at, "changed_by": self.changed_by}


def parse_state(fields: dict[Any, Any]) -> QueueState:
    """A QueueState from the raw control hash (empty = open)."""
    values = {store.text(k): store.text(v) for k, v in fields.items()}
    return QueueState(values.get("paused") == "1", values.get("intake", "open"), values.get("changed_at"),
                      values.get("changed_by"))


_ACTIONS = {"pause": {"paused": "1"}, "resume": {"paused": "0"}, "close": {"intake": "closed"},
            "open": {"intake": "open"}, "drain": {"intake": "draining"}}


def set_state(config: Config, queue: str, action: str) -> QueueState:
    """Pause, resume, close, open or start draining ``queue``; the new state."""
    from .connection import connect

    get_queue(queue)
    key = store.control_key(config.redis.prefix, queue)
    with connect(config) as connection:
        from .timeparse import format_instant, utcnow

        with connection.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={**_ACTIONS[action], "changed_at": format_instant(utcnow()), "changed_by": who()})
            pipe.hgetall(key)
            fields = pipe.execute()[1]
        audit(connection, config, f"queue {action}", queue, 0)
    return parse_state(fields)


def _check_intake(connection: Redis, prefix: str, queues: list[str]) -> None:
    with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hget(store.control_key(prefix, queue), "intake")
        intakes = pipe.execute()
    for queue, intake in zip(queues, intakes, strict=True):
        if intake in (b"draining", b"closed"):
            raise QueueNotAccepting(refusal(queue, store.text(intake), "retry into"))


# --- draining -------------------------------------------------------------------------------

@dataclass
class DrainReport:
    """Where a drain stands, and how it ended."""

    queue: str
    queued: int = 0
    started: int = 0
    scheduled: int = 0
    finished: int = 0
    failed: int = 0
    elapsed: float = 0.0
    timed_out: bool = False

    @property
    def done(self) -> bool:
        """Nothing queued or running any more."""
        return self.queued == 0 and self.started == 0

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"queue": self.queue, "drained": self.done, "timed_out": self.timed_out, "queued": self.queued,
                "started": self.started, "scheduled": self.scheduled, "finished": self.finished,
                "failed": self.failed, "elapsed": round(self.elapsed, 3)}


def drain(config: Config, queue: str, timeout: float, watch: Callable[[DrainReport], None] | None = None,
          poll: float = 0.5) -> DrainReport:
    """Refuse new jobs to ``queue`` and wait until workers finished what is queued and running.

    ``watch`` sees the report at every poll. The queue stays closed to new jobs afterwards (until
    ``queue open``). Raises DeadlinePassed, carrying the final report, when ``timeout`` passes first.
    """
    from .connection import connect

    get_queue(queue)
    set_state(config, queue, "drain")
    prefix = config.redis.prefix
    started = time.monotonic()
    report = DrainReport(queue)
    with connect(config) as connection:
        since = store.text(connection.xrevrange(store.events_key(prefix), count=1)[0][0]) \
            if connection.exists(store.events_key(prefix)) else "0-0"
        while True:
            _measure(connection, prefix, report)
            report.elapsed = time.monotonic() - started
            if watch:
                watch(report)
            if report.done or report.elapsed >= timeout:
                break
            time.sleep(min(poll, max(0.0, timeout - report.elapsed)))
        report.finished, report.failed = _outcomes_since(connection, prefix, queue, since)
    report.timed_out = not report.done
    if watch:
        watch(report)
    if report.timed_out:
        raise DrainTimedOut(report)
    return report


class DrainTimedOut(DeadlinePassed):
    """The drain's --timeout passed; ``report`` says what was left."""

    def __init__(self, report: DrainReport) -> None:
        super().__init__(f"drain of {report.queue} timed out after {report.elapsed:.0f}s with "
                         f"{report.queued} queued and {report.started} running")
        self.report = report


def _measure(connection: Redis, prefix: str, report: DrainReport) -> None:
    q = report.queue
    with connection.pipeline(transaction=False) as pipe:
        pipe.llen(store.queue_key(prefix, q))
        pipe.llen(store.intermediate_key(prefix, q))
        pipe.zcard(store.registry_key(prefix, "wip", q))
        pipe.zcard(store.registry_key(prefix, "scheduled", q))
        queued, popped, running, scheduled = pipe.execute()
    report.queued, report.started, report.scheduled = queued + popped, running, scheduled


def _outcomes_since(connection: Redis, prefix: str, queue: str, since: str) -> tuple[int, int]:
    finished = failed = 0
    low = f"({since}" if since != "0-0" else "-"
    key = store.events_key(prefix)
    while True:
        page: list[tuple[bytes, dict[bytes, bytes]]] = connection.xrange(  # type: ignore[assignment]
            key, min=low, max="+", count=1000)
        for _id, fields in page:
            if fields.get(b"queue") == queue.encode():
                event = fields.get(b"event")
                finished += event == b"finished"
                failed += event == b"failed"
        if len(page) < 1000:
            return finished, failed
        low = "(" + store.text(page[-1][0])


# --- purging --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PurgePlan:
    """How many jobs a purge would remove, by kind."""

    queue: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Jobs in all."""
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"queue": self.queue, "counts": self.counts, "total": self.total}


def purge_plan(config: Config, queue: str, scheduled: bool, failed: bool) -> PurgePlan:
    """Count what ``queue purge`` would remove: queued jobs, plus scheduled / failed ones if asked."""
    from .connection import connect

    get_queue(queue)
    prefix = config.redis.prefix
    kinds = ["queued", *(["scheduled"] if scheduled else []), *(["failed"] if failed else [])]
    with connect(config) as connection, connection.pipeline(transaction=False) as pipe:
        for kind in kinds:
            if kind == "queued":
                pipe.llen(store.queue_key(prefix, queue))
            else:
                pipe.zcard(store.registry_key(prefix, kind, queue))
        counts = dict(zip(kinds, pipe.execute(), strict=True))
    return PurgePlan(queue, counts)


def purge(config: Config, plan: PurgePlan, export: Path | None, progress: Progress | None = None) -> Applied:
    """Remove the plan's jobs; with ``export``, their payloads are written there first (JSONL).

    Jobs are first moved, chunk by chunk and atomically, into a holding list no worker reads; the
    export is complete on disk before any job hash is deleted.
    """
    from .connection import connect

    if export is not None and export.exists():
        raise InputError(f"--export {export}: file exists; choose a new file")
    prefix = config.redis.prefix
    hold = f"{prefix}:siderctl:purge:{secrets.token_hex(6)}"
    taken: dict[str, list[str]] = {}
    with connect(config) as connection:
        take = connection.register_script(TAKE)
        for kind in plan.counts:
            taken[kind] = []
            while True:
                ids = [store.text(i) for i in take(args=[prefix, plan.queue, hold, CHUNK, kind])]
                if not ids:
                    break
                taken[kind] += ids
        every = [job_id for ids in taken.values() for job_id in ids]
        if export is not None:
            _export(connection, prefix, every, export)
        for start in range(0, len(every), CHUNK):
            chunk = every[start:start + CHUNK]
            with connection.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.delete(store.job_key(prefix, job_id), store.results_key(prefix, job_id),
                                f"{prefix}:executions:{job_id}")
                pipe.execute()
            if progress:
                progress(len(chunk))
        connection.delete(hold)
        counts = {kind: len(ids) for kind, ids in taken.items()}
        audit(connection, config, "queue purge", plan.queue, len(every),
              {"counts": counts, "export": str(export) if export else None})
    return Applied("queue purge", plan.total, len(every), counts)


def _export(connection: Redis, prefix: str, ids: Sequence[str], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        with tmp.open("w") as fh:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                with connection.pipeline(transaction=False) as pipe:
                    for job_id in chunk:
                        pipe.hget(store.job_key(prefix, job_id), "data")
                    for data in pipe.execute():
                        payload = failures.payload_of(data)
                        if payload is not None:
                            fh.write(json.dumps(payload, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # refuses to replace a file created meanwhile
    except OSError as exc:
        raise InputError(f"--export {path}: cannot write ({exc.strerror}); nothing was deleted, the jobs "
                         f"wait in the holding list") from None
    finally:
        tmp.unlink(missing_ok=True)


# --- workers --------------------------------------------------------------------------------

def stop_workers(config: Config, names: Iterable[str], *, all_workers: bool, now: bool) -> list[str]:
    """Ask workers to stop through RQ's command channel (warm; cold with ``now``); the names reached."""
    from .connection import connect

    prefix = config.redis.prefix
    with connect(config) as connection:
        registered = {store.text(k).split(":worker:", 1)[1] for k in connection.smembers(f"{prefix}:workers")}
        wanted = sorted(registered) if all_workers else list(names)
        if not wanted:
            raise NothingSelected("no worker is registered; nothing to stop")
        for name in wanted:
            if name not in registered:
                raise NotFound(f"no worker named {name!r} (registered: {', '.join(sorted(registered)) or 'none'})")
        reached = []
        for name in wanted:
            channel = store.pubsub_channel(prefix, name)
            listeners = connection.publish(channel, json.dumps({"command": "shutdown"}))
            if now:
                connection.publish(channel, json.dumps({"command": "kill-horse"}))
            if listeners:
                reached.append(name)
        audit(connection, config, "worker stop" + (" --now" if now else ""), None, len(reached),
              {"workers": wanted})
    missing = [name for name in wanted if name not in reached]
    if missing:
        raise NotFound(f"worker(s) {', '.join(missing)} did not receive the command (not running?)")
    return reached
