"""Prometheus metrics: the Redis-side view (``metrics serve``) and worker-side counters.

Names follow rq-exporter where they mean the same (``rq_jobs{queue,status}``,
``rq_workers{name,queues,state}``); the rest are ``siderctl_*``. A scrape reads Redis in a few
pipelined round trips: O(queues + workers + schedules) commands, never O(jobs).

Worker processes count their jobs and time them; under a supervisor (``up``, ``worker start
--processes``) they write to prometheus-client's multiprocess directory and the supervisor's
endpoint merges them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .config import Config
from .inspect import STATES

if TYPE_CHECKING:
    from redis import Redis

    from .store import Settlement

log = logging.getLogger("jobs.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RedisCollector:
    """Collects queue, worker and scheduler gauges from Redis at each scrape."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._connection: Redis | None = None
        self._lock = threading.Lock()

    def _client(self) -> Redis:
        from .connection import connect

        if self._connection is None:
            self._connection = connect(self.config)
        return self._connection

    def describe(self) -> list[Any]:
        """Nothing up front: metrics are produced at collect time."""
        return []

    def collect(self) -> Iterator[Any]:
        """One scrape."""
        from prometheus_client.core import GaugeMetricFamily
        from redis.exceptions import RedisError

        from .errors import RedisUnavailable
        from .inspect import overview

        up = GaugeMetricFamily("siderctl_redis_up", "1 when Redis answered this scrape")
        with self._lock:
            try:
                view = overview(self._client(), self.config)
            except (RedisUnavailable, RedisError) as exc:
                log.warning("scrape: Redis unavailable (%s)", exc)
                self._connection = None
                up.add_metric([], 0)
                yield up
                return
        up.add_metric([], 1)
        yield up
        yield from _families(view)


def _families(view: Any) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    jobs = GaugeMetricFamily("rq_jobs", "Jobs per queue and status", labels=["queue", "status"])
    oldest = GaugeMetricFamily("siderctl_queue_oldest_job_age_seconds", "Age of the oldest queued job",
                               labels=["queue"])
    paused = GaugeMetricFamily("siderctl_queue_paused", "1 when the queue is paused", labels=["queue"])
    accepting = GaugeMetricFamily("siderctl_queue_accepting", "1 when the queue accepts new jobs", labels=["queue"])
    recent = GaugeMetricFamily("siderctl_jobs_recent", "Job outcomes in the last 5 minutes",
                               labels=["queue", "outcome"])
    for q in view.queues:
        name = q.status.name
        for state in STATES:
            jobs.add_metric([name, state], getattr(q.status, state))
        oldest.add_metric([name], q.status.oldest_queued_age or 0.0)
        paused.add_metric([name], int(q.state.paused))
        accepting.add_metric([name], int(q.state.intake == "open"))
        for outcome, count in view.recent.get(name, {}).items():
            recent.add_metric([name, outcome], count)
    yield from (jobs, oldest, paused, accepting, recent)

    workers = GaugeMetricFamily("rq_workers", "Registered workers", labels=["name", "queues", "state"])
    per_queue = GaugeMetricFamily("siderctl_workers", "Workers per queue and state", labels=["queue", "state"])
    counts: dict[tuple[str, str], int] = {(q.status.name, s): 0 for q in view.queues for s in ("idle", "busy", "dead")}
    for w in view.workers:
        workers.add_metric([w.name, ",".join(w.queues), w.state], 1)
        for queue in w.queues:
            counts[(queue, w.state)] = counts.get((queue, w.state), 0) + 1
    for (queue, state), count in sorted(counts.items()):
        per_queue.add_metric([queue, state], count)
    yield from (workers, per_queue)

    leader = GaugeMetricFamily("siderctl_scheduler_has_leader", "1 when a scheduler holds the leader lease")
    leader.add_metric([], int(view.scheduler.leader is not None))
    lateness = GaugeMetricFamily("siderctl_schedule_lateness_seconds", "How late the last slot fired",
                                 labels=["schedule"])
    for info in view.scheduler.schedules:
        if info.lateness is not None:
            lateness.add_metric([info.schedule.name], info.lateness)
    yield from (leader, lateness)


class WorkerMetrics:
    """Counters and a duration histogram a worker updates as jobs settle."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.jobs = Counter("siderctl_worker_jobs", "Jobs settled by workers", ["queue", "outcome"])
        self.duration = Histogram("siderctl_job_duration_seconds", "Run time of job attempts", ["queue"],
                                  buckets=DURATION_BUCKETS)

    def observe(self, settlement: Settlement) -> None:
        """Count one settled job (and time it when it ran)."""
        self.jobs.labels(settlement.queue, settlement.mode).inc()
        if settlement.mode in ("finished", "failed", "retry") and settlement.started:
            self.duration.labels(settlement.queue).observe(max(0.0, settlement.now - settlement.started))


def use_multiprocess_dir() -> str:
    """Point prometheus-client at a fresh multiprocess directory; call before children start."""
    path = tempfile.mkdtemp(prefix="siderctl-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def serve(port: int, bind: str, config: Config | None, *, multiprocess: bool) -> Any:
    """Start the HTTP endpoint in a thread; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    from .errors import UsageError

    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY  # this process's own counters (a worker's) live there
    if config is not None:
        registry.register(RedisCollector(config))
    try:
        server, _thread = start_http_server(port, addr=bind, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {bind}:{port}: {exc.strerror}") from None
    log.info("metrics on http://%s:%d/metrics", bind, port)
    return server


def serve_forever(config: Config, port: int, bind: str) -> None:
    """``metrics serve``: the Redis-side metrics until SIGINT/SIGTERM."""
    import signal

    from .connection import connect

    connect(config).close()  # fail fast (exit 8) when Redis is not there at start
    server = serve(port, bind, config, multiprocess=False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.shutdown()
