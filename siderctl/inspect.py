"""Read-only queries. Nothing here writes to Redis or cleans RQ's registries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .queues import QUEUES

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

    connection = connect(config)  # sets RQ's key prefix: import rq only after this
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
    connection.close()
    return Status(config.redis.prefix, server_label(config), result)
