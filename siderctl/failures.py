"""Failed jobs, read-only: newest-first paging, one job in full, grouping by error fingerprint.

Workers index every failure by the time it happened (``store.failures_key``); RQ's own failed
registry is scored by expiry, which says nothing about when a job failed. Listing walks that
index newest first and reads only the jobs of the page; entries whose job has left the failed
registry meanwhile are skipped (never deleted: this module writes nothing).
"""

from __future__ import annotations

import heapq
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import store
from .config import Config
from .errors import InputError, NotFound
from .queues import QUEUES
from .timeparse import format_epoch

if TYPE_CHECKING:
    from redis import Redis

    from .lite import LiteRedis

BATCH = 200
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Timeout)?[\w.]*): ?(.*)$")


@dataclass(frozen=True)
class Failure:
    """One failed job as ``failed ls`` shows it."""

    id: str
    queue: str
    failed_at: float
    attempts: int
    error_type: str
    error_message: str
    payload: Any
    worker: str

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"id": self.id, "queue": self.queue, "failed_at": format_epoch(self.failed_at),
                "attempts": self.attempts, "error": {"type": self.error_type, "message": self.error_message},
                "payload": self.payload, "worker": self.worker}


@dataclass(frozen=True)
class Page:
    """One page of failures and the cursor of the next (None at the end)."""

    failures: list[Failure]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"failures": [f.as_dict() for f in self.failures], "next_cursor": self.next_cursor}


@dataclass(frozen=True)
class Selection:
    """Which failures a command is about."""

    queues: tuple[str, ...] = tuple(QUEUES)
    since: float | None = None  # epoch seconds: failures at or after
    error: str | None = None  # case-insensitive substring of "Type: message"

    def matches(self, failure: Failure) -> bool:
        """Whether ``failure`` passes the error filter (the others are applied by the index walk)."""
        if self.error is None:
            return True
        return self.error.lower() in f"{failure.error_type}: {failure.error_message}".lower()


# --- decoding -----------------------------------------------------------------------------

def exc_text(raw: bytes | None) -> str:
    """The traceback text of RQ's ``exc_info`` field (zlib-compressed, or plain from old RQ)."""
    if not raw:
        return ""
    try:
        return zlib.decompress(raw).decode("utf-8", "replace")
    except zlib.error:
        return raw.decode("utf-8", "replace")


def summarize(text: str) -> tuple[str, str]:
    """(exception type, first line of its message) from a traceback or a one-line reason."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown", ""
    # The exception line is the first unindented line after the last frame.
    start = max((i for i, line in enumerate(lines) if line.startswith("  ")), default=-1) + 1
    candidate = lines[start] if start < len(lines) else lines[-1]
    match = _ERROR_LINE.match(candidate)
    if match:
        return match.group(1).rsplit(".", 1)[-1], match.group(2).strip()
    return "Error", candidate.strip()


def payload_of(raw: bytes | None) -> Any:
    """The job's payload (its one argument), or None when the data cannot be read."""
    try:
        _func, args, _kwargs = store.decode_data(raw)
    except ValueError:
        return None
    return args[0] if len(args) == 1 else args


def _attempts(intervals: bytes | None, retries_left: bytes | None) -> int:
    return max(1, len(store._intervals(intervals)) - int(retries_left or 0) + 1)


# --- walking the index --------------------------------------------------------------------

Entry = tuple[float, str, str]  # (failed at, queue, job id)


def _order(entry: Entry) -> tuple[float, str]:
    # Newest first, ties by queue name; within one queue heapq.merge keeps Redis' order (equal
    # scores: job id descending), which the cursor logic in _walk_queue relies on.
    return (-entry[0], entry[1])


def parse_cursor(cursor: str) -> Entry:
    """The position a ``--cursor`` names; InputError when it is not one we printed."""
    try:
        score, queue, job_id = cursor.split("/", 2)
        if queue not in QUEUES or not job_id:
            raise ValueError
        return float(score), queue, job_id
    except ValueError:
        raise InputError(f"--cursor {cursor!r} is not a cursor printed by `failed ls`") from None


def format_cursor(entry: Entry) -> str:
    """The ``--cursor`` that continues after ``entry``."""
    return f"{entry[0]!r}/{entry[1]}/{entry[2]}"


def _walk_queue(connection: Redis | LiteRedis, prefix: str, queue: str, selection: Selection,
                after: Entry | None) -> Iterator[Entry]:
    """The queue's index entries after ``after`` in listing order, fetched lazily in batches."""
    key = store.failures_key(prefix, queue)
    low = "-inf" if selection.since is None else repr(selection.since)
    if after is None:
        high, skip_score, skip_from = "+inf", None, None
    elif queue < after[1]:
        high, skip_score, skip_from = f"({after[0]!r}", None, None
    elif queue == after[1]:
        high, skip_score, skip_from = repr(after[0]), after[0], after[2]
    else:
        high, skip_score, skip_from = repr(after[0]), None, None
    batch = BATCH
    while True:
        rows: list[tuple[bytes, float]] = connection.zrevrangebyscore(  # type: ignore[assignment]
            key, high, low, start=0, num=batch, withscores=True)
        fresh = 0
        for raw, raw_score in rows:
            job_id, score = store.text(raw), float(raw_score)
            if skip_score is not None and score == skip_score and skip_from is not None and job_id >= skip_from:
                continue
            fresh += 1
            skip_score, skip_from = score, job_id
            high = repr(score)
            yield score, queue, job_id
        if len(rows) < batch:
            return
        if fresh == 0:
            batch *= 2  # a run of equal scores longer than a batch


def walk(connection: Redis | LiteRedis, prefix: str, selection: Selection,
         after: Entry | None = None) -> Iterator[Entry]:
    """Every indexed failure of the selection after ``after``, newest first, across queues."""
    streams = [_walk_queue(connection, prefix, q, selection, after) for q in sorted(selection.queues)]
    return heapq.merge(*streams, key=_order)


def load(connection: Redis | LiteRedis, prefix: str, entries: Sequence[Entry]) -> list[Failure]:
    """The entries whose job is still in its failed registry, read in one round trip."""
    return [failure for failure, _text in _load(connection, prefix, entries)]


def _load(connection: Redis | LiteRedis, prefix: str, entries: Sequence[Entry]) -> list[tuple[Failure, str]]:
    with connection.pipeline(transaction=False) as pipe:
        for _score, queue, job_id in entries:
            pipe.zscore(store.registry_key(prefix, "failed", queue), job_id)
            pipe.hmget(store.job_key(prefix, job_id), "data", "exc_info", "retry_intervals", "retries_left",
                       "worker_name")
        replies = pipe.execute()
    found = []
    for (score, queue, job_id), in_registry, fields in zip(entries, replies[::2], replies[1::2], strict=True):
        data, exc_info, intervals, retries_left, worker = fields
        if in_registry is None or data is None:
            continue
        text = exc_text(exc_info)
        error_type, message = summarize(text)
        found.append((Failure(job_id, queue, score, _attempts(intervals, retries_left), error_type, message,
                              payload_of(data), store.text(worker or b"")), text))
    return found


def page(connection: Redis | LiteRedis, prefix: str, selection: Selection, limit: int, cursor: str | None) -> Page:
    """``failed ls``: up to ``limit`` failures after ``cursor``, reading O(limit) jobs when nothing is filtered."""
    entries = walk(connection, prefix, selection, parse_cursor(cursor) if cursor else None)
    found: list[Failure] = []
    while len(found) <= limit:
        chunk = [entry for _, entry in zip(range(limit + 1 - len(found)), entries, strict=False)]
        if not chunk:
            break
        found += [f for f in load(connection, prefix, chunk) if selection.matches(f)]
    more = len(found) > limit
    found = found[:limit]
    last = found[-1] if found else None
    next_cursor = format_cursor((last.failed_at, last.queue, last.id)) if more and last else None
    return Page(found, next_cursor)


def iterate(connection: Redis, prefix: str, selection: Selection) -> Iterator[Failure]:
    """Every failure of the selection, newest first, in batches."""
    entries = walk(connection, prefix, selection)
    while True:
        chunk = [entry for _, entry in zip(range(BATCH), entries, strict=False)]
        if not chunk:
            return
        yield from (f for f in load(connection, prefix, chunk) if selection.matches(f))


# --- one job in full ----------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    """One run of a job, from RQ's results stream."""

    number: int
    outcome: str
    started_at: str | None
    ended_at: str | None
    worker: str
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"number": self.number, "outcome": self.outcome, "started_at": self.started_at,
                "ended_at": self.ended_at, "worker": self.worker, "error": self.error}


@dataclass(frozen=True)
class FailureDetail:
    """What ``failed show`` prints."""

    failure: Failure
    func: str
    created_at: str | None
    enqueued_at: str | None
    traceback: str
    attempts: list[Attempt] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {**self.failure.as_dict(), "func": self.func, "created_at": self.created_at,
                "enqueued_at": self.enqueued_at, "traceback": self.traceback,
                "attempt_history": [a.as_dict() for a in self.attempts]}


_OUTCOMES = {store.RESULT_SUCCESSFUL: "finished", store.RESULT_FAILED: "failed", 3: "stopped", 4: "retried",
             5: "max retries exceeded"}


def detail(connection: Redis, prefix: str, job_id: str) -> FailureDetail:
    """One failed job with its payload, every recorded attempt and the full traceback."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(store.job_key(prefix, job_id))
        pipe.xrange(store.results_key(prefix, job_id))
        fields, results = pipe.execute()
    job = {store.text(k): v for k, v in fields.items()}
    status = store.text(job.get("status") or b"")
    if not job:
        raise NotFound(f"no job {job_id}")
    queue = store.text(job.get("origin") or b"")
    score = connection.zscore(store.failures_key(prefix, queue), job_id) if queue in QUEUES else None
    if status != "failed":
        raise NotFound(f"job {job_id} is not failed (status: {status or 'unknown'})")
    text = exc_text(job.get("exc_info"))
    error_type, message = summarize(text)
    ended = store.rq_epoch(job.get("ended_at"))
    failure = Failure(job_id, queue, score if score is not None else (ended or 0.0),
                      _attempts(job.get("retry_intervals"), job.get("retries_left")), error_type, message,
                      payload_of(job.get("data")), store.text(job.get("worker_name") or b""))
    func = _func_of(job.get("data"))
    attempts = [_attempt(n, entry) for n, (_id, entry) in enumerate(results, start=1)]
    return FailureDetail(failure, func, _rq_text(job.get("created_at")), _rq_text(job.get("enqueued_at")), text,
                         attempts)


def _attempt(number: int, entry: dict[Any, Any]) -> Attempt:
    fields = {store.text(k): store.text(v) for k, v in entry.items()}
    error = None
    if fields.get("exc_string"):
        import base64

        error_type, message = summarize(zlib.decompress(base64.b64decode(fields["exc_string"])).decode())
        error = f"{error_type}: {message}" if message else error_type
    return Attempt(
        number,
        _OUTCOMES.get(int(fields.get("type", 0) or 0), "unknown"),
        _epoch_text(fields.get("execution_started_at")),
        _epoch_text(fields.get("execution_ended_at")),
        fields.get("worker_name", ""),
        error,
    )


def _epoch_text(value: str | None) -> str | None:
    try:
        return format_epoch(float(value)) if value else None
    except ValueError:
        return None


def _rq_text(raw: bytes | None) -> str | None:
    epoch = store.rq_epoch(raw)
    return format_epoch(epoch) if epoch is not None else None


def _func_of(raw: bytes | None) -> str:
    try:
        return store.decode_data(raw)[0] or "?"
    except ValueError:
        return "?"


# --- grouping -----------------------------------------------------------------------------

@dataclass
class Group:
    """Failures sharing one fingerprint."""

    fingerprint: str
    error_type: str
    message: str
    top_frame: str
    count: int
    first_seen: float
    last_seen: float
    example: str
    queues: set[str]

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"fingerprint": self.fingerprint, "error": {"type": self.error_type, "message": self.message},
                "top_frame": self.top_frame, "count": self.count, "first_seen": format_epoch(self.first_seen),
                "last_seen": format_epoch(self.last_seen), "example": self.example, "queues": sorted(self.queues)}


_NORMALIZE = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'<s>'"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)


def normalize(message: str) -> str:
    """A message with ids, numbers and quoted values replaced, so alike errors compare equal."""
    for pattern, replacement in _NORMALIZE:
        message = pattern.sub(replacement, message)
    return message


def top_frame(text: str) -> str:
    """``file:function`` of the innermost frame of a traceback ("-" when there is none)."""
    frames = _FRAME.findall(text)
    if not frames:
        return "-"
    path, func = frames[-1]
    return f"{path.rsplit('/', 1)[-1]}:{func}"


def _fingerprint(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:12]


def groups(connection: Redis, prefix: str, selection: Selection) -> list[Group]:
    """Failures of the selection grouped by fingerprint (type + normalised message + top frame), largest first."""
    found: dict[str, Group] = {}
    entries = walk(connection, prefix, selection)
    while True:
        chunk = [entry for _, entry in zip(range(BATCH), entries, strict=False)]
        if not chunk:
            break
        for failure, text in _load(connection, prefix, chunk):
            if not selection.matches(failure):
                continue
            norm, frame = normalize(failure.error_message), top_frame(text)
            key = _fingerprint(f"{failure.error_type}|{norm}|{frame}")
            group = found.get(key)
            if group is None:
                found[key] = Group(key, failure.error_type, norm, frame, 1, failure.failed_at, failure.failed_at,
                                   failure.id, {failure.queue})
            else:
                group.count += 1
                group.first_seen = min(group.first_seen, failure.failed_at)
                group.last_seen = max(group.last_seen, failure.failed_at)
                group.queues.add(failure.queue)
    return sorted(found.values(), key=lambda g: (-g.count, -g.last_seen))


# --- entry points (each opens and closes its own connection) ------------------------------

def list_page(config: Config, selection: Selection, limit: int, cursor: str | None) -> Page:
    """``failed ls``."""
    from . import lite

    with lite.connect(config) as connection:  # a one-shot read: no redis-py import for plain URLs
        return page(connection, config.redis.prefix, selection, limit, cursor)


def show(config: Config, job_id: str) -> FailureDetail:
    """``failed show``."""
    from .connection import connect

    with connect(config) as connection:
        return detail(connection, config.redis.prefix, job_id)


def group_all(config: Config, selection: Selection) -> list[Group]:
    """``failed group``."""
    from .connection import connect

    with connect(config) as connection:
        return groups(connection, config.redis.prefix, selection)
