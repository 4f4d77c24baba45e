"""Recovery and clean-up of RQ state: abandoned jobs, stuck pops, expired and surplus entries.

Workers call ``recover_abandoned`` and ``return_stuck`` as part of their maintenance; the
``cleanup`` queue's ``jobs`` target runs everything here and reports what it removed.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import store
from .queues import QUEUES

if TYPE_CHECKING:
    from redis import Redis

    from .config import Config

log = logging.getLogger("jobs.recovery")
BATCH = 200
ORPHAN_MIN_AGE = 60.0  # a job hash younger than this may still be mid-enqueue
SCAN_BUDGET = 20_000  # job keys looked at per `cleanup jobs` run; the cursor carries over


@dataclass
class Recovered:
    """Abandoned executions found in one pass."""

    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def recover_abandoned(connection: Redis, scripts: store.Scripts, config: Config, queue: str,
                      now: float, *, cutoff: float | None = None) -> Recovered:
    """Retry or fail every started job of ``queue`` whose worker stopped heartbeating before ``cutoff``.

    Each one is settled through SETTLE, so a worker that comes back late and a second recoverer
    both find the execution gone and change nothing.
    """
    prefix = config.redis.prefix
    wip = store.registry_key(prefix, "wip", queue)
    found = Recovered()
    members = connection.zrangebyscore(wip, "-inf", now if cutoff is None else cutoff, start=0, num=BATCH)
    for raw in members:
        member = store.text(raw)
        job_id, _, execution_id = member.rpartition(":")
        status, retries_left, intervals, failure_ttl, worker = connection.hmget(
            store.job_key(prefix, job_id), "status", "retries_left", "retry_intervals", "failure_ttl", "worker_name")
        owner = store.text(connection.hget(f"{prefix}:execution:{member}", "worker_name") or worker or "?")
        left = int(retries_left or 0)
        if left > 0:
            delay = store.retry_delay(store._intervals(intervals), left)
            outcome = f"retrying in {delay}s" if delay else "retrying now"
            mode = "retry"
        else:
            delay, outcome, mode = 0, "failed", "failed"
        reason = f"AbandonedJobError: worker {owner} stopped heartbeating during the job; {outcome}"
        ttl = float(failure_ttl) if failure_ttl else config.queues[queue].failure_ttl
        settlement = store.Settlement(
            prefix=prefix, queue=queue, job_id=job_id, execution_id=execution_id, owner=owner, now=now,
            mode=mode, event="abandoned", reason=reason, ttl=ttl, delay=delay,
            result_type=store.RESULT_FAILED, result_field="exc_string", result_value=store.encode_exc(reason),
            exc_info=zlib.compress(reason.encode()), count=False, events_max=config.values["events.max_len"])
        if scripts.settle(args=settlement.args()) == 1 and status == b"started":
            (found.retried if mode == "retry" else found.failed).append(job_id)
            log.warning("job %s (%s) abandoned by worker %s: %s", job_id, queue, owner, outcome)
    return found


def return_stuck(connection: Redis, scripts: store.Scripts, prefix: str, queue: str,
                 seen_before: set[str]) -> tuple[int, set[str]]:
    """Put back ids left in the intermediate list since the previous pass; (returned, ids seen now)."""
    now_seen = {store.text(raw) for raw in connection.lrange(store.intermediate_key(prefix, queue), 0, BATCH)}
    returned = 0
    for job_id in now_seen & seen_before:
        returned += int(scripts.unpop(args=[prefix, queue, job_id]))
    if returned:
        log.warning("%d job(s) of %s were popped by a worker that stopped; returned to the queue", returned, queue)
    return returned, now_seen - seen_before if returned else now_seen


def clean_jobs(connection: Redis, config: Config, now: float) -> dict[str, Any]:
    """The ``cleanup jobs`` routine: every repair and trim, with counts of what changed."""
    prefix = config.redis.prefix
    scripts = store.Scripts(connection)
    report: dict[str, Any] = {"expired_entries": 0, "abandoned_retried": 0, "abandoned_failed": 0,
                              "finished_over_limit": 0, "returned_to_queue": 0, "orphaned_hashes": 0,
                              "failures_indexed": 0}
    for queue in QUEUES:
        policy = config.queues[queue]
        for kind in ("finished", "failed"):
            report["expired_entries"] += connection.zremrangebyscore(
                store.registry_key(prefix, kind, queue), 0, now)
        # Twice the abandonment lease: a worker that just reconnected gets time to heartbeat.
        recovered = recover_abandoned(connection, scripts, config, queue, now,
                                      cutoff=now - 3 * config.values["worker.heartbeat"])
        report["abandoned_retried"] += len(recovered.retried)
        report["abandoned_failed"] += len(recovered.failed)
        report["finished_over_limit"] += _trim_finished(connection, prefix, queue, policy.keep_results)
        _trim_failure_index(connection, prefix, queue)
        report["failures_indexed"] += _backfill_failure_index(connection, prefix, queue)
        seen_key = f"{prefix}:siderctl:cleanup:intermediate:{queue}"
        seen = {store.text(raw) for raw in connection.smembers(seen_key)}
        returned, now_seen = return_stuck(connection, scripts, prefix, queue, seen)
        report["returned_to_queue"] += returned
        with connection.pipeline() as pipe:
            pipe.delete(seen_key)
            if now_seen:
                pipe.sadd(seen_key, *now_seen)
                pipe.expire(seen_key, 3600)
            pipe.execute()
    report["orphaned_hashes"] = _delete_orphans(connection, prefix, now)
    return report


def _trim_finished(connection: Redis, prefix: str, queue: str, keep: int) -> int:
    if keep <= 0:
        return 0
    key = store.registry_key(prefix, "finished", queue)
    over = connection.zcard(key) - keep
    if over <= 0:
        return 0
    oldest = [store.text(entry[0]) for entry in connection.zpopmin(key, over)]
    _delete_jobs(connection, prefix, oldest)
    return len(oldest)


def _trim_failure_index(connection: Redis, prefix: str, queue: str) -> None:
    """Drop index entries (oldest first, a batch per run) whose job left the failed registry."""
    index = store.failures_key(prefix, queue)
    oldest = [store.text(m) for m in connection.zrange(index, 0, 999)]
    with connection.pipeline(transaction=False) as pipe:
        for job_id in oldest:
            pipe.zscore(store.registry_key(prefix, "failed", queue), job_id)
        gone = [job_id for job_id, score in zip(oldest, pipe.execute(), strict=True) if score is None]
    if gone:
        connection.zrem(index, *gone)


def _backfill_failure_index(connection: Redis, prefix: str, queue: str) -> int:
    """Index failures recorded by someone else (RQ's own workers) under the time they ended."""
    failed, index = store.registry_key(prefix, "failed", queue), store.failures_key(prefix, queue)
    if connection.zcard(failed) <= connection.zcard(index):
        return 0
    added = 0
    for start in range(0, connection.zcard(failed), 1000):
        ids = [store.text(m) for m in connection.zrange(failed, start, start + 999)]
        if not ids:
            break
        scores = connection.zmscore(index, ids)
        missing = [job_id for job_id, score in zip(ids, scores, strict=True) if score is None]
        if not missing:
            continue
        with connection.pipeline(transaction=False) as pipe:
            for job_id in missing:
                pipe.hget(store.job_key(prefix, job_id), "ended_at")
            ended = pipe.execute()
        stamps = {job_id: store.rq_epoch(raw) or 0.0 for job_id, raw in zip(missing, ended, strict=True)}
        connection.zadd(index, stamps)
        added += len(stamps)
    return added


def _delete_jobs(connection: Redis, prefix: str, job_ids: Iterable[str]) -> None:
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.delete(store.job_key(prefix, job_id), store.results_key(prefix, job_id),
                        f"{prefix}:executions:{job_id}")
        pipe.execute()


def _delete_orphans(connection: Redis, prefix: str, now: float) -> int:
    """Delete job hashes no registry refers to (finished/failed/scheduled ones, or with no status)."""
    cursor_key = f"{prefix}:siderctl:cleanup:cursor"
    cursor = int(connection.get(cursor_key) or 0)
    looked = 0
    orphans: list[str] = []
    while looked < SCAN_BUDGET:
        cursor, keys = connection.scan(cursor, match=f"{prefix}:job:*", count=1000)
        names = [store.text(k) for k in keys]
        job_ids = [n[len(prefix) + 5:] for n in names if n.count(":") == prefix.count(":") + 2]
        looked += len(keys)
        orphans += _orphans_among(connection, prefix, job_ids, now)
        if cursor == 0:
            break
    connection.set(cursor_key, cursor)
    _delete_jobs(connection, prefix, orphans)
    if orphans:
        log.info("deleted %d orphaned job hash(es)", len(orphans))
    return len(orphans)


def _orphans_among(connection: Redis, prefix: str, job_ids: list[str], now: float) -> list[str]:
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(store.job_key(prefix, job_id), "status", "origin", "created_at")
        rows = pipe.execute()
    candidates: list[tuple[str, str | None]] = []
    with connection.pipeline(transaction=False) as pipe:
        for job_id, (status, origin, created) in zip(job_ids, rows, strict=True):
            created_at = store.rq_epoch(created)
            if created_at is not None and now - created_at < ORPHAN_MIN_AGE:
                continue
            registry = {b"finished": "finished", b"failed": "failed", b"scheduled": "scheduled"}.get(status or b"")
            if status is None or origin is None:
                candidates.append((job_id, None))
            elif registry is not None:
                candidates.append((job_id, registry))
                pipe.zscore(store.registry_key(prefix, registry, store.text(origin)), job_id)
        scores = iter(pipe.execute())
    return [job_id for job_id, registry in candidates if registry is None or next(scores) is None]


def trim_stream(connection: Redis, key: str, retention: float, now: float) -> int:
    """Drop stream entries older than ``retention`` seconds; how many were removed."""
    min_id = f"{int((now - retention) * 1000)}-0"
    return int(connection.xtrim(key, minid=min_id, approximate=False))
