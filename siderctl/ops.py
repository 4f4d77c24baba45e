"""Mutations: enqueueing jobs. Everything is validated before the first Redis command."""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import store
from .config import Config, QueuePolicy
from .errors import InputError, JobExists, JobsDisabled, QueueNotAccepting
from .queues import QueueSpec, get_queue
from .timeparse import format_instant, parse_duration, parse_instant, utcnow

if TYPE_CHECKING:
    from redis import Redis

    from .lite import LiteRedis

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # RQ's rule, bounded


# --- reading and validating input -------------------------------------------------------

def read_argument(value: str, stdin: IO[str], what: str) -> str:
    """The text an argument stands for: ``-`` reads stdin, ``@path`` a file, else itself."""
    if value == "-":
        return stdin.read()
    if value.startswith("@"):
        return read_file(value[1:], what)
    return value


def read_file(path: str, what: str) -> str:
    """The contents of ``path`` (``-`` is not special here); InputError if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"{what}: cannot read {path}: {reason}") from None


def parse_json(text: str, what: str) -> Any:
    """``text`` decoded as JSON; InputError naming ``what`` and the position otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what}: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def parse_jsonl(text: str, what: str) -> list[tuple[int, Any]]:
    """(line number, decoded value) for every non-blank line of ``text``."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append((number, parse_json(line, f"{what} line {number}")))
    if not rows:
        raise InputError(f"{what}: no payloads (the input is empty)")
    return rows


def build_payload(
    spec: QueueSpec, base: object, flags: Mapping[str, str | None], now: datetime
) -> dict[str, Any]:
    """``base`` (a JSON object or None) with the given typed flags laid over it, validated."""
    payload: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, dict):
            raise InputError(f"payload for {spec.name} must be a JSON object, not {type(base).__name__}")
        payload.update(base)
    known = {f.name: f for f in spec.fields}
    for name, value in flags.items():
        if value is None:
            continue
        if name not in known:
            flag = "--" + re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), name)
            own = ", ".join(f.flag for f in spec.fields)
            raise InputError(f"{flag} does not apply to {spec.name} (its fields: {own})")
        payload[name] = value
    return spec.validate(payload, now)


def parse_when(delay: str | None, at: str | None, now: datetime) -> datetime | None:
    """When a job should run: ``--delay`` after now, ``--at`` an instant, None for now."""
    if delay is not None and at is not None:
        raise InputError("--delay and --at cannot be used together")
    if delay is not None:
        try:
            seconds = parse_duration(delay)
        except ValueError as exc:
            raise InputError(f"--delay: {exc}") from None
        return now + timedelta(seconds=seconds) if seconds > 0 else None
    if at is not None:
        try:
            return parse_instant(at)
        except ValueError as exc:
            raise InputError(f"--at: {exc}") from None
    return None


def check_job_id(job_id: str) -> str:
    """``job_id`` if RQ accepts it; InputError otherwise."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise InputError(f"--job-id: {job_id!r} may hold only letters, digits, _ and - (at most 128)")
    return job_id


# --- enqueueing -------------------------------------------------------------------------

@dataclass(frozen=True)
class EnqueueRequest:
    """Validated jobs to add to one queue."""

    queue: str
    payloads: Sequence[dict[str, Any]]
    job_id: str | None = None
    run_at: datetime | None = None
    source: str = "cli"


@dataclass(frozen=True)
class EnqueuedJob:
    """A job that was added."""

    id: str
    queue: str
    status: str
    run_at: str | None
    payload: dict[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape of an enqueued job."""
        return {"id": self.id, "queue": self.queue, "status": self.status, "run_at": self.run_at,
                "payload": self.payload}


def enqueue(config: Config, request: EnqueueRequest) -> list[EnqueuedJob]:
    """Add the request's jobs (one script call per 1,000 jobs; atomic for a fixed ``job_id``).

    A one-shot process talks RESP itself over plain TCP or a unix socket (``lite``): importing
    redis-py would cost more than the whole command. TLS and unusual URLs go through redis-py.
    """
    if not config.jobs_enabled:
        raise JobsDisabled("jobs are disabled (JOBS_ENABLED=false): nothing enqueued")
    from . import lite

    connection: Redis | lite.LiteRedis = lite.connect(config)
    try:
        return enqueue_with(connection, config, request)
    finally:
        connection.close()


def enqueue_with(connection: Redis | LiteRedis, config: Config, request: EnqueueRequest) -> list[EnqueuedJob]:
    """``enqueue`` on an open connection (long-running callers keep theirs).

    Jobs are written as RQ's ``Queue.enqueue_job`` writes them (job hash, queue list or scheduled
    registry, queues set) by one Lua script per chunk of jobs: only what differs between jobs
    crosses the wire, each chunk lands atomically, and ids are pushed after their hashes. The first
    chunk's script also refuses a draining or closed queue, in the same atomic step.
    """
    policy = config.queues[request.queue]
    jobs = [(request.job_id or str(uuid.uuid4()), payload) for payload in request.payloads]
    script = connection.register_script(_ENQUEUE)
    head: list[Any] = [config.redis.prefix, request.queue, "scheduled" if request.run_at else "queued",
            _unix(request.run_at) if request.run_at else 0, "1" if request.job_id else "0",
            json.dumps(_common_fields(policy, request))]
    func = handler_func_name(policy.handler)
    for start in range(0, len(jobs), CHUNK):
        args = [*head[:5], "1" if start == 0 else "0", *head[5:]]
        for job_id, payload in jobs[start:start + CHUNK]:
            args += [job_id, zlib.compress(json.dumps([func, None, [payload], {}]).encode()),
                     f"{request.queue} {json.dumps(payload, sort_keys=True)}",
                     json.dumps(policy.retry_delays()) if policy.retries else ""]
        existing = script(args=args)
        if existing is not None and store.text(existing).startswith("intake:"):
            state = store.text(existing).removeprefix("intake:")
            raise QueueNotAccepting(refusal(request.queue, state, "enqueue into"))
        if existing is not None:
            raise JobExists(f"job {jobs[0][0]} already exists (status: {store.text(existing)}); nothing enqueued")
    status = "scheduled" if request.run_at else "queued"
    run_at = format_instant(request.run_at) if request.run_at else None
    return [EnqueuedJob(job_id, request.queue, status, run_at, payload) for job_id, payload in jobs]


CHUNK = 1000

# ARGV: prefix, queue, how (queued | scheduled), score (scheduled), unique (1: refuse an existing
# id), check intake (1: refuse a draining or closed queue), the fields every job shares (JSON
# object), then four per job: id, data, description, retry intervals ('' without retries).
# Returns nil; 'intake:draining' / 'intake:closed' (nothing written); or the status of the job
# that already has the id (unique; nothing written).
_ENQUEUE = """
local p, q, how, score, unique = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
if ARGV[6] == '1' then
  local intake = redis.call('HGET', p .. ':siderctl:queue:' .. q, 'intake')
  if intake == 'draining' or intake == 'closed' then return 'intake:' .. intake end
end
local shared = {}
for k, v in pairs(cjson.decode(ARGV[7])) do shared[#shared + 1] = k; shared[#shared + 1] = v end
local ids = {}
for i = 8, #ARGV, 4 do
  local id = ARGV[i]
  local jk = p .. ':job:' .. id
  if unique and redis.call('EXISTS', jk) == 1 then return redis.call('HGET', jk, 'status') or 'unknown' end
  redis.call('HSET', jk, 'data', ARGV[i + 1], 'description', ARGV[i + 2], unpack(shared))
  if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'retry_intervals', ARGV[i + 3]) end
  ids[#ids + 1] = id
end
local qk = p .. ':queue:' .. q
if how == 'scheduled' then
  local sk = p .. ':scheduled:' .. q
  for _, id in ipairs(ids) do redis.call('ZADD', sk, score, id) end
else
  redis.call('RPUSH', qk, unpack(ids))
end
redis.call('SADD', p .. ':queues', qk)
return false
"""


def _common_fields(policy: QueuePolicy, request: EnqueueRequest) -> dict[str, str]:
    """The job hash fields RQ's ``Job.to_dict`` writes that are the same for every job of a request.

    Fields RQ leaves empty at creation (callbacks, started_at, worker_name, ...) are omitted: RQ
    reads a missing field as empty.
    """
    stamp = _rq_time(utcnow())
    fields = {
        "created_at": stamp, "origin": request.queue, "timeout": str(round(policy.timeout)),
        "result_ttl": str(round(policy.result_ttl)), "failure_ttl": str(round(policy.failure_ttl)),
        "meta": json.dumps({"source": request.source}), "status": "scheduled" if request.run_at else "queued",
    }
    if request.run_at is None:
        fields["enqueued_at"] = stamp
    if policy.retries:
        fields["retries_left"] = str(policy.retries)
    return fields


def _rq_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unix(moment: datetime) -> int:
    import calendar

    return calendar.timegm(moment.utctimetuple())  # RQ's ScheduledJobRegistry score


def refusal(queue: str, state: str, doing: str) -> str:
    """What a user is told when ``queue`` (draining or closed) refuses jobs."""
    return f"queue {queue} is {state}: refusing to {doing} it (`siderctl queue open {queue}` accepts jobs again)"


def handler_func_name(handler: str) -> str:
    """RQ's dotted function name for a ``package.module:function`` handler."""
    return handler.replace(":", ".")


def new_request(
    queue: str,
    *,
    bases: Sequence[tuple[int | None, Any]],
    flags: Mapping[str, str | None],
    job_id: str | None,
    delay: str | None,
    at: str | None,
) -> EnqueueRequest:
    """Validate everything a user gave ``enqueue`` into a request; nothing touches Redis.

    ``bases`` holds (JSONL line number or None, decoded payload or None) for each job.
    """
    spec = get_queue(queue)
    now = utcnow()
    run_at = parse_when(delay, at, now)
    if job_id is not None:
        check_job_id(job_id)
        if len(bases) != 1:
            raise InputError("--job-id names one job; it cannot be used with --jsonl")
    payloads = []
    for line, base in bases:
        try:
            payloads.append(build_payload(spec, base, flags, now))
        except InputError as exc:
            raise InputError(f"line {line}: {exc.message}" if line else exc.message) from None
    return EnqueueRequest(queue, payloads, job_id, run_at)


def trigger(config: Config, name: str) -> EnqueuedJob:
    """Enqueue one job of schedule ``name`` now, outside its slots."""
    from .errors import NotFound

    schedule = config.schedules.get(name)
    if schedule is None:
        raise NotFound(f"unknown schedule {name!r} (known: {', '.join(config.schedules)})")
    payload = get_queue(schedule.queue).validate(schedule.payload, utcnow())
    (job,) = enqueue(config, EnqueueRequest(schedule.queue, [payload], source=f"trigger:{name}"))
    return job
