"""Read-only queries. Nothing here writes to Redis or cleans RQ's registries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .config import Config, Schedule
from .queues import QUEUES

if TYPE_CHECKING:
    from redis import Redis

    from .lite import LiteRedis

# The job states `status` counts for every queue, in column order.
STATES = ("queued", "scheduled", "started", "deferred", "finished", "failed", "canceled")


@dataclass(frozen=True)
class QueueStatus:
    """Counts and health of one queue."""

    name: str
    queued: int
    scheduled: int
    started: int
    deferred: int
    finished: int
    failed: int
    canceled: int
    oldest_queued_age: float | None
    workers: list[str]


@dataclass(frozen=True)
class Status:
    """What ``siderctl status`` shows."""

    prefix: str
    server: str
    queues: list[QueueStatus]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"prefix": self.prefix, "server": self.server, "queues": [asdict(q) for q in self.queues]}


def _state_keys(prefix: str, name: str) -> dict[str, str]:
    from . import store

    keys = {"queued": store.queue_key(prefix, name)}
    for state in STATES[1:]:
        keys[state] = store.registry_key(prefix, "wip" if state == "started" else state, name)
    return keys


def status(config: Config) -> Status:
    """Counts per state, oldest queued age and workers for every queue, in two round trips."""
    from . import lite
    from .connection import server_label

    with lite.connect(config) as connection:  # a one-shot read: no redis-py import for plain URLs
        return Status(config.redis.prefix, server_label(config), _queue_statuses(connection, config.redis.prefix))


def _queue_statuses(connection: Redis | LiteRedis, prefix: str) -> list[QueueStatus]:
    from . import store

    names = list(QUEUES)
    pipe = connection.pipeline(transaction=False)
    for name in names:
        keys = _state_keys(prefix, name)
        pipe.llen(keys["queued"])
        for state in STATES[1:]:
            pipe.zcard(keys[state])
        pipe.lindex(keys["queued"], 0)
        pipe.smembers(f"{prefix}:workers:{name}")
    replies = pipe.execute()
    width = len(STATES) + 2
    rows = [replies[i * width:(i + 1) * width] for i in range(len(names))]

    heads = {name: store.text(row[len(STATES)]) for name, row in zip(names, rows, strict=True) if row[len(STATES)]}
    pipe = connection.pipeline(transaction=False)
    for head in heads.values():
        pipe.hget(store.job_key(prefix, head), "enqueued_at")
    stamps = dict(zip(heads, pipe.execute(), strict=True)) if heads else {}
    now = datetime.now(UTC).timestamp()

    result = []
    worker_prefix = f"{prefix}:worker:"
    for name, row in zip(names, rows, strict=True):
        enqueued = store.rq_epoch(stamps.get(name))
        age = None if enqueued is None else max(0.0, now - enqueued)
        workers = sorted(store.text(w).removeprefix(worker_prefix) for w in row[-1])
        counts = dict(zip(STATES, row[: len(STATES)], strict=True))
        result.append(QueueStatus(name=name, oldest_queued_age=age, workers=workers, **counts))
    return result


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as ``scheduler ls`` shows it: its config and its recorded state."""

    schedule: Schedule
    next_fire: str | None
    last_slot: str | None
    last_fired_at: str | None
    last_job_id: str | None
    lateness: float | None


@dataclass(frozen=True)
class SchedulerView:
    """Every schedule, and which scheduler leads (None: none does)."""

    leader: str | None
    lease_expires_in: float | None
    schedules: list[ScheduleInfo]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        rows = [{**asdict(info.schedule), **{k: v for k, v in asdict(info).items() if k != "schedule"}}
                for info in self.schedules]
        return {"leader": self.leader, "lease_expires_in": self.lease_expires_in, "schedules": rows}


def schedules(config: Config) -> SchedulerView:
    """Schedules with their next and last fire times and the current leader, in one round trip."""
    from .connection import connect

    with connect(config) as connection:
        return _scheduler_view(connection, config)


def _scheduler_view(connection: Redis, config: Config) -> SchedulerView:
    import time

    from .scheduler import leader_key, next_slot, state_key
    from .timeparse import format_instant

    def instant(epoch: float | None) -> str | None:
        return None if epoch is None else format_instant(datetime.fromtimestamp(epoch, UTC))

    pipe = connection.pipeline(transaction=False)
    pipe.get(leader_key(config.redis.prefix))
    pipe.pttl(leader_key(config.redis.prefix))
    for name in config.schedules:
        pipe.hgetall(state_key(config.redis.prefix, name))
    leader, ttl, *states = pipe.execute()
    now = time.time()
    rows = []
    for schedule, state in zip(config.schedules.values(), states, strict=True):
        values = {k.decode(): v.decode() for k, v in state.items()}
        rows.append(ScheduleInfo(
            schedule=schedule,
            next_fire=instant(next_slot(schedule, now)) if schedule.enabled else None,
            last_slot=instant(float(values["last_slot"])) if "last_slot" in values else None,
            last_fired_at=instant(float(values["last_fired_at"])) if "last_fired_at" in values else None,
            last_job_id=values.get("last_job_id"),
            lateness=float(values["lateness"]) if "lateness" in values else None,
        ))
    return SchedulerView(leader.decode() if leader else None, ttl / 1000 if leader and ttl > 0 else None, rows)


@dataclass(frozen=True)
class Snapshot:
    """One stored result of metrics-sync."""

    scope: str
    fetched_at: str
    job: str
    took: float
    data: Any

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return asdict(self)


def metric_snapshots(config: Config, scope: str | None = None, history: int = 1) -> list[Snapshot]:
    """The newest ``history`` snapshots of ``scope`` (or of every scope), in one round trip."""
    import json

    from .errors import InputError
    from .handlers.metrics_sync import snapshots_key
    from .queues import METRIC_SCOPES

    if scope is not None and scope not in METRIC_SCOPES:
        raise InputError(f"unknown metrics scope {scope!r} (scopes: {', '.join(METRIC_SCOPES)})")
    scopes = [scope] if scope else list(METRIC_SCOPES)
    from .connection import connect

    with connect(config) as connection, connection.pipeline(transaction=False) as pipe:
        for name in scopes:
            pipe.lrange(snapshots_key(config.redis.prefix, name), 0, history - 1)
        replies = pipe.execute()
    found = []
    for raw in (item for reply in replies for item in reply):
        doc = json.loads(raw)
        found.append(Snapshot(doc["scope"], doc["fetched_at"], doc.get("job", ""), doc.get("took", 0.0),
                              doc.get("data")))
    return found


@dataclass(frozen=True)
class QueueView:
    """``queue ls``: a queue's counts and its operator state."""

    status: QueueStatus
    state: Any  # control.QueueState

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {**asdict(self.status), **self.state.as_dict()}


def queues(config: Config) -> list[QueueView]:
    """Every queue with its counts, workers and state (paused, draining, closed), read-only."""
    from .connection import connect

    with connect(config) as connection:
        return _queue_views(connection, config.redis.prefix)


def _queue_views(connection: Redis, prefix: str) -> list[QueueView]:
    from . import store
    from .control import parse_state

    statuses = _queue_statuses(connection, prefix)
    with connection.pipeline(transaction=False) as pipe:
        for name in QUEUES:
            pipe.hgetall(store.control_key(prefix, name))
        states = pipe.execute()
    return [QueueView(status, parse_state(fields)) for status, fields in zip(statuses, states, strict=True)]


@dataclass(frozen=True)
class WorkerView:
    """One registered worker as ``worker ls`` shows it."""

    name: str
    host: str
    pid: int | None
    queues: list[str]
    state: str
    current_jobs: list[str]
    busy_since: str | None
    finished: int
    failed: int
    last_heartbeat: str | None
    heartbeat_age: float | None

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return asdict(self)


RQ_WORKER_TTL = 420.0  # RQ's default: a worker silent this long is dead


def workers(config: Config) -> list[WorkerView]:
    """Every registered worker, in two round trips; workers silent too long show as ``dead``."""
    from .connection import connect

    with connect(config) as connection:
        return _workers(connection, config.redis.prefix)


def _workers(connection: Redis, prefix: str) -> list[WorkerView]:
    from . import store

    keys = sorted(store.text(k) for k in connection.smembers(f"{prefix}:workers"))
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
            pipe.smembers(f"{key}:executions")
        replies = pipe.execute()
    hashes = [{store.text(k): store.text(v) for k, v in h.items()} for h in replies[::2]]
    executions = [sorted(store.text(m) for m in e) for e in replies[1::2]]
    with connection.pipeline(transaction=False) as pipe:
        for members in executions:
            for member in members:
                pipe.hget(f"{prefix}:execution:{member}", "created_at")
        starts = iter(pipe.execute())
    now = datetime.now(UTC).timestamp()
    found = []
    for key, fields, members in zip(keys, hashes, executions, strict=True):
        if not fields:
            continue  # expired since it was listed
        started = [float(s) for s in (next(starts) for _ in members) if s]
        found.append(_worker_view(key.split(":worker:", 1)[1], fields, members, started, now))
    return found


def _worker_view(name: str, fields: dict[str, str], members: list[str], started: list[float],
                 now: float) -> WorkerView:
    from . import store
    from .timeparse import format_epoch

    beat = store.rq_epoch(fields.get("last_heartbeat"))
    age = None if beat is None else max(0.0, now - beat)
    interval = float(fields.get("heartbeat_interval") or 0)
    silent_limit = 3 * interval if interval else RQ_WORKER_TTL
    state = fields.get("state", "?")
    if "death" in fields or (age is not None and age > silent_limit):
        state = "dead"
    return WorkerView(
        name=name,
        host=fields.get("hostname", ""),
        pid=int(fields["pid"]) if fields.get("pid", "").isdigit() else None,
        queues=[q for q in fields.get("queues", "").split(",") if q],
        state=state,
        current_jobs=[m.rsplit(":", 1)[0] for m in members],
        busy_since=format_epoch(min(started)) if started else None,
        finished=int(fields.get("successful_job_count") or 0),
        failed=int(fields.get("failed_job_count") or 0),
        last_heartbeat=format_epoch(beat) if beat is not None else None,
        heartbeat_age=None if age is None else round(age, 3),
    )


@dataclass(frozen=True)
class AuditEntry:
    """One destructive action."""

    id: str
    at: str
    who: str
    action: str
    queue: str | None
    count: int
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return asdict(self)


def audit(config: Config, limit: int = 50, queue: str | None = None) -> list[AuditEntry]:
    """The newest ``limit`` audit entries (of ``queue``), newest first."""
    import json

    from . import store
    from .connection import connect
    from .timeparse import format_epoch

    found: list[AuditEntry] = []
    with connect(config) as connection:
        upper = "+"
        while len(found) < limit:
            page = connection.xrevrange(store.audit_key(config.redis.prefix), max=upper, min="-", count=500)
            for entry_id, raw in page:
                fields = {store.text(k): store.text(v) for k, v in raw.items()}
                if queue is not None and fields.get("queue") != queue:
                    continue
                text_id = store.text(entry_id)
                found.append(AuditEntry(text_id, format_epoch(int(text_id.split("-")[0]) / 1000),
                                        fields.get("who", "?"), fields.get("action", "?"), fields.get("queue") or None,
                                        int(fields.get("count") or 0), json.loads(fields.get("detail") or "{}")))
                if len(found) == limit:
                    break
            if len(page) < 500:
                break
            upper = "(" + store.text(page[-1][0])
    return found


def recent_outcomes(connection: Redis, prefix: str, window: float, now: float) -> dict[str, dict[str, int]]:
    """Per queue, job outcomes (finished, failed, retry, requeue) in the last ``window`` seconds (by minute)."""
    from . import store

    minutes = range(int((now - window) // 60) + 1, int(now // 60) + 1)
    with connection.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            for minute in minutes:
                pipe.hgetall(store.stats_key(prefix, queue, minute))
        replies = iter(pipe.execute())
    result: dict[str, dict[str, int]] = {}
    for queue in QUEUES:
        totals = {"finished": 0, "failed": 0, "retry": 0, "requeue": 0}
        for _ in minutes:
            for key, value in next(replies).items():
                name = store.text(key)
                totals[name] = totals.get(name, 0) + int(value)
        result[queue] = totals
    return result


@dataclass(frozen=True)
class Overview:
    """Everything the live view, the health check and the exporter look at, read in a few round trips."""

    taken_at: float
    queues: list[QueueView]
    workers: list[WorkerView]
    scheduler: SchedulerView
    recent: dict[str, dict[str, int]]
    latest_failures: list[Any]  # failures.Failure

    def live_workers(self, queue: str) -> list[WorkerView]:
        """Workers serving ``queue`` that are not dead."""
        return [w for w in self.workers if queue in w.queues and w.state != "dead"]


RECENT_WINDOW = 300.0


def overview(connection: Redis, config: Config, *, failures_shown: int = 0,
             window: float = RECENT_WINDOW) -> Overview:
    """A consistent-enough picture of the runtime: queues, workers, scheduler, recent outcomes."""
    import time

    from . import failures

    prefix = config.redis.prefix
    now = time.time()
    latest = []
    if failures_shown:
        latest = failures.page(connection, prefix, failures.Selection(), failures_shown, None).failures
    return Overview(now, _queue_views(connection, prefix), _workers(connection, prefix),
                    _scheduler_view(connection, config), recent_outcomes(connection, prefix, window, now), latest)


def watch(config: Config, interval: float, failures_shown: int = 5) -> Iterator[Overview | str]:
    """``status --watch``: an Overview every ``interval`` seconds, or the reason Redis could not be read."""
    import time

    from redis.exceptions import ConnectionError, TimeoutError

    from .connection import connect

    with connect(config) as connection:
        while True:
            try:
                yield overview(connection, config, failures_shown=failures_shown)
            except (ConnectionError, TimeoutError) as exc:
                yield f"Redis unreachable: {exc}"
            time.sleep(interval)
