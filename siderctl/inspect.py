"""Read-only queries. Nothing here writes to Redis or cleans RQ's registries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .config import Config, Schedule
from .queues import QUEUES

if TYPE_CHECKING:
    from redis import Redis

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


def _state_keys(name: str) -> dict[str, str]:
    from rq.queue import Queue
    from rq.registry import (
        CanceledJobRegistry,
        DeferredJobRegistry,
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    keys = {"queued": Queue.redis_queue_namespace_prefix + name}
    for state, registry in (
        ("scheduled", ScheduledJobRegistry),
        ("started", StartedJobRegistry),
        ("deferred", DeferredJobRegistry),
        ("finished", FinishedJobRegistry),
        ("failed", FailedJobRegistry),
        ("canceled", CanceledJobRegistry),
    ):
        keys[state] = registry.key_template.format(name)
    return keys


def status(config: Config) -> Status:
    """Counts per state, oldest queued age and workers for every queue, in two round trips."""
    from .connection import connect, server_label

    with connect(config) as connection:  # sets RQ's key prefix: import rq only after this
        return Status(config.redis.prefix, server_label(config), _queue_statuses(connection))


def _queue_statuses(connection: Redis) -> list[QueueStatus]:
    from rq.defaults import RQ_KEY_PREFIX
    from rq.job import Job
    from rq.utils import utcparse
    from rq.worker_registration import WORKERS_BY_QUEUE_KEY

    names = list(QUEUES)
    pipe = connection.pipeline(transaction=False)
    for name in names:
        keys = _state_keys(name)
        pipe.llen(keys["queued"])
        for state in STATES[1:]:
            pipe.zcard(keys[state])
        pipe.lindex(keys["queued"], 0)
        pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
    replies = pipe.execute()
    width = len(STATES) + 2
    rows = [replies[i * width:(i + 1) * width] for i in range(len(names))]

    heads = {name: row[len(STATES)].decode() for name, row in zip(names, rows, strict=True) if row[len(STATES)]}
    pipe = connection.pipeline(transaction=False)
    for head in heads.values():
        pipe.hget(Job.key_for(head), "enqueued_at")
    stamps = dict(zip(heads, pipe.execute(), strict=True)) if heads else {}
    now = datetime.now(UTC)

    result = []
    worker_prefix = RQ_KEY_PREFIX + ":worker:"
    for name, row in zip(names, rows, strict=True):
        stamp = stamps.get(name)
        age = None
        if stamp:
            age = max(0.0, (now - utcparse(stamp.decode()).replace(tzinfo=UTC)).total_seconds())
        workers = sorted(w.decode().removeprefix(worker_prefix) for w in row[-1])
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
    import time

    from .connection import connect
    from .scheduler import leader_key, next_slot, state_key
    from .timeparse import format_instant

    def instant(epoch: float | None) -> str | None:
        return None if epoch is None else format_instant(datetime.fromtimestamp(epoch, UTC))

    with connect(config) as connection:
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
