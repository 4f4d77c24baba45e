"""Recurring jobs that fire exactly once per slot, however many schedulers run.

Each (schedule, slot) maps to one deterministic job id, enqueued with RQ's atomic unique-enqueue
script: a second scheduler, or the same one after a reconnect, finds the id taken and adds
nothing. On top of that a leader lease keeps one scheduler active; a standby takes the lease
within two lease periods of the leader's death (at once when the leader stops cleanly).

``plan`` is the pure heart of a tick: (schedule, last handled slot, now) → slots to fire. The
``Scheduler`` does the I/O around it; ``run`` only sleeps and calls ``Scheduler.tick``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .config import Config, Schedule
from .errors import JobExists, QueueNotAccepting
from .queues import QUEUES
from .timeparse import format_instant

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("jobs.scheduler")

GRACE = 5.0  # with catch_up = "none", a slot this late still fires (a slow tick is not a miss)
LATE_WARNING = 1.0
MAX_BACKOFF = 5.0

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_ADVANCE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'last_slot') or '-1')
if tonumber(ARGV[1]) > last then
  redis.call('HSET', KEYS[1], 'last_slot', ARGV[1])
  if ARGV[2] ~= '' then
    redis.call('HSET', KEYS[1], 'last_job_id', ARGV[2], 'last_fired_at', ARGV[3], 'lateness', ARGV[4])
  end
  return 1
end
return 0
"""


# --- slots (pure) -----------------------------------------------------------------------

def recent_slots(schedule: Schedule, after: float | None, until: float, limit: int) -> list[float]:
    """Up to ``limit`` most recent slot times in (after, until], ascending (epoch seconds)."""
    found: list[float] = []
    if schedule.every is not None:
        slot = math.floor(until / schedule.every) * schedule.every
        while len(found) < limit and (after is None or slot > after):
            found.append(slot)
            slot -= schedule.every
    else:
        from croniter import croniter

        start = datetime.fromtimestamp(until, ZoneInfo(schedule.timezone)) + timedelta(microseconds=1)
        it = croniter(schedule.cron, start)
        while len(found) < limit:
            slot = it.get_prev(datetime).timestamp()
            if after is not None and slot <= after:
                break
            found.append(slot)
    return found[::-1]


def next_slot(schedule: Schedule, after: float) -> float:
    """The first slot strictly after ``after``."""
    if schedule.every is not None:
        return (math.floor(after / schedule.every) + 1) * schedule.every
    from croniter import croniter

    it = croniter(schedule.cron, datetime.fromtimestamp(after, ZoneInfo(schedule.timezone)))
    return float(it.get_next(datetime).timestamp())


@dataclass(frozen=True)
class Plan:
    """What one tick does for one schedule."""

    fire: list[float]
    last_slot: float


def plan(schedule: Schedule, last_slot: float | None, now: float) -> Plan:
    """Slots to fire now, given the last slot handled (None: never ran) and the catch-up mode."""
    if last_slot is None:
        # First run ever: start from here; the first slot fires when it comes.
        latest = recent_slots(schedule, None, now, 1)
        return Plan([], latest[0] if latest else now)
    limit = schedule.max_catch_up if schedule.catch_up == "all" else 1
    due = recent_slots(schedule, last_slot, now, limit)
    if not due:
        return Plan([], last_slot)
    if schedule.catch_up == "none" and now - due[-1] > GRACE:
        return Plan([], due[-1])
    return Plan(due, due[-1])


def slot_job_id(name: str, slot: float) -> str:
    """The one job id of (schedule, slot)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    if safe != name:  # keep "a:b" and "a-b" apart
        safe += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"sched-{safe}-{round(slot * 1000)}"


def slot_payload(schedule: Schedule, slot: float) -> dict[str, Any]:
    """The schedule's payload with its time fields (``triggeredAt``…) set to the slot time."""
    return QUEUES[schedule.queue].validate(schedule.payload, datetime.fromtimestamp(slot, UTC))


# --- keys -------------------------------------------------------------------------------

def leader_key(prefix: str) -> str:
    """Where the leader lease lives."""
    return f"{prefix}:siderctl:scheduler:leader"


def state_key(prefix: str, name: str) -> str:
    """Where a schedule's last slot, job id and lateness live."""
    return f"{prefix}:siderctl:schedule:{name}"


def new_identity() -> str:
    """A scheduler's name: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# --- the scheduler ----------------------------------------------------------------------

class Scheduler:
    """One scheduler process's view: lease, state, enqueueing. ``clock`` is injectable."""

    def __init__(self, config: Config, connection: Redis, identity: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.connection = connection
        self.identity = identity or new_identity()
        self.clock = clock
        self.is_leader = False
        self.schedules = [s for s in config.schedules.values() if s.enabled]
        self._acquire = connection.register_script(_ACQUIRE)
        self._release = connection.register_script(_RELEASE)
        self._advance = connection.register_script(_ADVANCE)

    def tick(self) -> float:
        """Hold or seek the lease; as leader fire what is due. Returns seconds to sleep."""
        now = self.clock()
        lease = self.config.scheduler_lease
        was_leader = self.is_leader
        key = leader_key(self.config.redis.prefix)
        self.is_leader = bool(self._acquire(keys=[key], args=[self.identity, round(lease * 1000)]))
        if self.is_leader != was_leader:
            log.info("%s is %s", self.identity, "now the leader" if self.is_leader else "no longer the leader")
        if not self.is_leader:
            return lease / 3
        wake = now + lease / 3
        for schedule, last in zip(self.schedules, self._last_slots(), strict=True):
            step = plan(schedule, last, now)
            for slot in step.fire:
                self._fire(schedule, slot)
            if step.last_slot != last and not step.fire:
                self._advance(keys=[state_key(self.config.redis.prefix, schedule.name)],
                              args=[repr(step.last_slot), "", "", ""])
            wake = min(wake, next_slot(schedule, step.last_slot))
        return max(0.0, wake - self.clock())

    def _last_slots(self) -> list[float | None]:
        pipe = self.connection.pipeline(transaction=False)
        for schedule in self.schedules:
            pipe.hget(state_key(self.config.redis.prefix, schedule.name), "last_slot")
        return [float(v) if v is not None else None for v in pipe.execute()]

    def _fire(self, schedule: Schedule, slot: float) -> None:
        from .ops import EnqueueRequest, enqueue_with

        job_id = slot_job_id(schedule.name, slot)
        request = EnqueueRequest(schedule.queue, [slot_payload(schedule, slot)], job_id=job_id,
                                 source=f"schedule:{schedule.name}")
        try:
            enqueue_with(self.connection, self.config, request)
        except JobExists:
            log.info("%s slot %s was already enqueued as %s", schedule.name, _at(slot), job_id)
        except QueueNotAccepting as exc:
            log.warning("%s slot %s skipped: %s", schedule.name, _at(slot), exc.message)
        fired_at = self.clock()
        lateness = max(0.0, fired_at - slot)
        self._advance(keys=[state_key(self.config.redis.prefix, schedule.name)],
                      args=[repr(slot), job_id, repr(fired_at), f"{lateness:.6f}"])
        level = logging.WARNING if lateness > LATE_WARNING else logging.INFO
        log.log(level, "fired %s slot %s as %s (%.0f ms late)", schedule.name, _at(slot), job_id, lateness * 1000)

    def release(self) -> None:
        """Give up the lease so a standby takes over at once."""
        if self.is_leader:
            self._release(keys=[leader_key(self.config.redis.prefix)], args=[self.identity])
            self.is_leader = False


def _at(slot: float) -> str:
    return format_instant(datetime.fromtimestamp(slot, UTC))


def run(config: Config, stop: threading.Event, connection: Redis) -> None:
    """The scheduler loop: tick, sleep, repeat until ``stop``; Redis errors back off, never crash."""
    from redis.exceptions import RedisError

    scheduler = Scheduler(config, connection)
    log.info("scheduler %s started: %s", scheduler.identity,
             ", ".join(s.name for s in scheduler.schedules) or "no enabled schedules")
    backoff = 0.0
    while not stop.is_set():
        try:
            wait = scheduler.tick()
            if backoff:
                log.warning("Redis is back; scheduler resumed")
            backoff = 0.0
        except RedisError as exc:
            backoff = min(MAX_BACKOFF, backoff * 2 or 0.25)
            scheduler.is_leader = False
            log.warning("Redis error (%s); retrying in %.2fs", exc, backoff)
            wait = backoff
        stop.wait(wait)
    try:
        scheduler.release()
    except RedisError as exc:
        log.warning("could not release the leader lease (%s); it expires by itself", exc)
    log.info("scheduler %s stopped", scheduler.identity)


def serve(config: Config, *, signals: tuple[int, ...] | None = None) -> bool:
    """Run the loop until one of ``signals`` (default SIGINT, SIGTERM); False (nothing touched) if jobs are off."""
    import signal

    from .connection import connect

    if not config.jobs_enabled:
        log.warning("jobs are disabled (JOBS_ENABLED=false): the scheduler does not start")
        return False
    connection = connect(config)
    stop = threading.Event()
    watched = signals if signals is not None else (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in watched}
    try:
        run(config, stop, connection)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        connection.close()
    return True
