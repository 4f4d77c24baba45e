"""The job lifecycle events stream: reading the recent past and following it live.

Workers append events inside the same Lua scripts that change a job's state (see ``store``), so
the stream never claims something that did not happen. It is capped at ``events.max_len``
entries and trimmed by age by the ``cleanup logs`` job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import store
from .config import Config
from .timeparse import format_instant

if TYPE_CHECKING:
    from redis import Redis

_CORE = ("event", "job", "queue", "worker")


@dataclass(frozen=True)
class Event:
    """One lifecycle event of one job."""

    id: str
    at: datetime
    event: str
    job: str
    queue: str
    worker: str
    details: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"id": self.id, "at": format_instant(self.at), "event": self.event, "job": self.job,
                "queue": self.queue, "worker": self.worker, **self.details}


def parse(entry_id: Any, fields: dict[Any, Any]) -> Event:
    """An Event from one raw stream entry."""
    text_id = store.text(entry_id)
    values = {store.text(k): store.text(v) for k, v in fields.items()}
    return Event(
        id=text_id,
        at=datetime.fromtimestamp(int(text_id.split("-")[0]) / 1000, UTC),
        event=values.get("event", "?"),
        job=values.get("job", ""),
        queue=values.get("queue", ""),
        worker=values.get("worker", ""),
        details={k: v for k, v in values.items() if k not in _CORE},
    )


def _matches(event: Event, queue: str | None, job: str | None) -> bool:
    return (queue is None or event.queue == queue) and (job is None or event.job == job)


def recent(connection: Redis, config: Config, *, limit: int, queue: str | None = None,
           job: str | None = None, upper: str = "+") -> list[Event]:
    """The last ``limit`` matching events up to ``upper``, oldest first (reads backwards in pages)."""
    key = store.events_key(config.redis.prefix)
    found: list[Event] = []
    while len(found) < limit:
        page = connection.xrevrange(key, max=upper, min="-", count=max(100, limit))
        if not page:
            break
        for entry_id, fields in page:
            event = parse(entry_id, fields or {})
            if _matches(event, queue, job):
                found.append(event)
                if len(found) == limit:
                    break
        if len(page) < max(100, limit):
            break
        upper = "(" + store.text(page[-1][0])
    return list(reversed(found))


def follow_events(connection: Redis, config: Config, *, after: str, stop: threading.Event, queue: str | None = None,
           job: str | None = None) -> Iterator[Event]:
    """Events appended after entry id ``after`` (``$`` = from now), until ``stop`` is set."""
    key = store.events_key(config.redis.prefix)
    last = after
    while not stop.is_set():
        reply: list[Any] = connection.xread({key: last}, block=500, count=500) or []  # type: ignore[assignment]
        for _stream, entries in reply:
            for entry_id, fields in entries:
                last = store.text(entry_id)
                event = parse(entry_id, fields)
                if _matches(event, queue, job):
                    yield event


def tail(config: Config, *, limit: int, follow: bool, stop: threading.Event, queue: str | None = None,
         job: str | None = None) -> Iterator[Event]:
    """``siderctl events``: the last ``limit`` matching events, then (``follow``) new ones as they come."""
    from .connection import connect

    with connect(config) as connection:
        newest = connection.xrevrange(store.events_key(config.redis.prefix), count=1)
        last = store.text(newest[0][0]) if newest else "0-0"
        if limit > 0:
            yield from recent(connection, config, limit=limit, queue=queue, job=job, upper=last)
        if follow:
            yield from follow_events(connection, config, after=last, stop=stop, queue=queue, job=job)
