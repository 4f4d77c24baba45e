"""Running workers and the whole runtime: signals, child processes, restarts with backoff.

``serve_worker`` runs one worker in this process. ``Supervisor`` runs several children (worker
processes, the scheduler), restarts one that crashes with exponential backoff, and on
SIGINT/SIGTERM passes the stop on: the first signal asks every child for a warm shutdown, the
second for a cold one. Children ignore SIGINT so a Ctrl-C in a terminal (sent to the whole
process group) counts once, through the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from . import handlers
from .config import Config
from .errors import SiderctlError, UncleanShutdown
from .worker import Report, Worker, WorkerOptions

log = logging.getLogger("jobs.runtime")

RESTART_FIRST = 1.0
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0  # a child that ran this long restarts from the first backoff step again
EXIT_UNCLEAN = UncleanShutdown.exit_code


def jobs_disabled(config: Config, what: str) -> bool:
    """Log the one warning and answer True when ``JOBS_ENABLED`` is false."""
    if config.jobs_enabled:
        return False
    log.warning("jobs are disabled (JOBS_ENABLED=false): %s does not start", what)
    return True


def check_handlers(config: Config, queues: tuple[str, ...]) -> None:
    """Import every handler the queues need; ConfigError naming the setting if one is unusable."""
    for queue in queues:
        handlers.load(config.queues[queue].handler, f"queues.{queue}.handler")


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where to serve Prometheus metrics."""

    port: int
    bind: str = "127.0.0.1"


def serve_worker(config: Config, options: WorkerOptions, *, supervised: bool = False,
                 metrics: bool = False) -> Report:
    """Run one worker here until it stops; signals map to warm then cold shutdown.

    With ``metrics`` the worker counts and times its jobs (exported by the caller's endpoint).
    """
    observer = None
    if metrics:
        from .exporter import WorkerMetrics

        observer = WorkerMetrics().observe
    worker = Worker(config, options, observer)
    previous = {sig: signal.signal(sig, lambda *_: worker.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_workers(config: Config, options: WorkerOptions, processes: int,
                metrics: MetricsEndpoint | None = None) -> None:
    """``worker start``: one worker here, or ``processes`` supervised ones; UncleanShutdown if unclean."""
    if jobs_disabled(config, "the worker"):
        return
    check_handlers(config, options.queues)
    if processes == 1:
        server = _serve_metrics(metrics, None, multiprocess=False)
        try:
            report = serve_worker(config, options, metrics=metrics is not None)
        finally:
            if server is not None:
                server.shutdown()
        if not report.clean:
            raise UncleanShutdown(_unclean(report))
        return
    _check_redis(config)
    children = [ChildSpec(f"worker-{i}", _worker_child(config, _numbered(options, i), metrics is not None))
                for i in range(1, processes + 1)]
    if not _supervise(children, metrics, None):
        raise UncleanShutdown("a worker process stopped uncleanly (see the log above)")


def _serve_metrics(metrics: MetricsEndpoint | None, config: Config | None, *, multiprocess: bool) -> Any:
    if metrics is None:
        return None
    from . import exporter

    return exporter.serve(metrics.port, metrics.bind, config, multiprocess=multiprocess)


def _supervise(children: list[ChildSpec], metrics: MetricsEndpoint | None, config: Config | None) -> bool:
    """Run children under a Supervisor; with ``metrics``, serve what they count (and ``config``'s Redis view)."""
    import shutil

    directory = None
    if metrics is not None:
        from . import exporter

        directory = exporter.use_multiprocess_dir()  # before any child starts counting
    server = _serve_metrics(metrics, config, multiprocess=True)
    try:
        return Supervisor(children).run()
    finally:
        if server is not None:
            server.shutdown()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class QueuePlan:
    """How ``up`` runs one queue."""

    queue: str
    handler: str
    processes: int
    concurrency: int


@dataclass(frozen=True)
class Plan:
    """What ``up`` is about to run, for the start-up summary."""

    redis: str
    prefix: str
    queues: list[QueuePlan]
    schedules: list[str]
    heartbeat: float
    shutdown_timeout: float


def plan(config: Config) -> Plan:
    """The runtime ``up`` starts under this configuration."""
    from .connection import server_label

    return Plan(
        redis=server_label(config),
        prefix=config.redis.prefix,
        queues=[QueuePlan(q, p.handler, p.processes, p.concurrency) for q, p in config.queues.items()],
        schedules=[f"{s.name} ({_every(s.every, s.cron)})" for s in config.schedules.values() if s.enabled],
        heartbeat=float(config.values["worker.heartbeat"]),
        shutdown_timeout=float(config.values["worker.shutdown_timeout"]),
    )


def _every(every: float | None, cron: str | None) -> str:
    from .timeparse import format_duration

    return f"every {format_duration(every)}" if every is not None else f"cron {cron}"


def up(config: Config, announce: Callable[[Plan], None], metrics: MetricsEndpoint | None = None) -> None:
    """``siderctl up``: every queue's workers per config plus the scheduler, supervised."""
    if jobs_disabled(config, "the runtime"):
        return
    check_handlers(config, tuple(config.queues))
    _check_redis(config)
    runtime = plan(config)
    announce(runtime)
    children = [
        ChildSpec(f"{q.queue}-{i}", _worker_child(config, WorkerOptions(queues=(q.queue,)), metrics is not None))
        for q in runtime.queues for i in range(1, q.processes + 1)
    ]
    children.append(ChildSpec("scheduler", _scheduler_child(config)))
    if not _supervise(children, metrics, config):
        raise UncleanShutdown("the runtime stopped uncleanly (see the log above)")


def _check_redis(config: Config) -> None:
    from .connection import connect

    connect(config).close()


def _numbered(options: WorkerOptions, index: int) -> WorkerOptions:
    return replace(options, name=f"{options.name}-{index}") if options.name else options


def _unclean(report: Report) -> str:
    parts = []
    if report.interrupted:
        parts.append(f"{len(report.interrupted)} running job(s) requeued")
    if report.unsettled:
        parts.append(f"{', '.join(report.unsettled)} left for recovery")
    return "shutdown was not clean: " + "; ".join(parts)


def _worker_child(config: Config, options: WorkerOptions, metrics: bool) -> Callable[[], int]:
    def main() -> int:
        report = serve_worker(config, options, supervised=True, metrics=metrics)
        if not report.clean:
            log.error("worker %s: %s", report.name, _unclean(report))
            return EXIT_UNCLEAN
        return 0

    return main


def _scheduler_child(config: Config) -> Callable[[], int]:
    def main() -> int:
        from . import scheduler

        scheduler.serve(config, signals=(signal.SIGTERM,))  # SIGINT reaches us through the supervisor
        return 0

    return main


# --- the supervisor ---------------------------------------------------------------------

@dataclass
class ChildSpec:
    """One supervised child: a name for logs and the function it runs (returns its exit status)."""

    name: str
    target: Callable[[], int]
    process: BaseProcess | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = RESTART_FIRST
    exit_codes: list[int] = field(default_factory=list)


def _child_main(name: str, target: Callable[[], int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = target()
    except SiderctlError as exc:
        log.error("%s: %s", name, exc.message)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    logging.shutdown()
    os._exit(code)  # skip multiprocessing's atexit work inherited from the parent


class Supervisor:
    """Start children, restart crashed ones with backoff, pass signals on, report how they ended."""

    def __init__(self, children: list[ChildSpec]) -> None:
        self.children = children
        self.signals = 0
        self._context: Any = multiprocessing.get_context("fork")

    def run(self) -> bool:
        """Run until every child has exited; True when all exited with status 0."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        forwarded = 0
        try:
            for child in self.children:
                self._start(child)
            while True:
                if self.signals > forwarded:
                    forwarded = self.signals
                    self._forward(cold=forwarded > 1)
                self._reap()
                if self.signals == 0:
                    self._restart_due()
                alive = [c.process.sentinel for c in self.children if c.process is not None]
                if not alive and (self.signals or all(c.restart_at is None for c in self.children)):
                    break
                if alive:
                    wait(alive, timeout=0.2)
                else:
                    time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return all(c.exit_codes and c.exit_codes[-1] == 0 for c in self.children)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals += 1

    def _start(self, child: ChildSpec) -> None:
        process = self._context.Process(target=_child_main, args=(child.name, child.target), name=child.name)
        process.start()
        child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        log.info("started %s (pid %d)", child.name, process.pid)

    def _forward(self, *, cold: bool) -> None:
        log.warning("%s shutdown: stopping %d child process(es)%s", "cold" if cold else "warm",
                    sum(c.process is not None for c in self.children),
                    "" if cold else "; signal again to stop now")
        for child in self.children:
            child.restart_at = None
            if child.process is not None and child.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGTERM)

    def _reap(self) -> None:
        for child in self.children:
            process = child.process
            if process is None or process.is_alive():
                continue
            process.join()
            code = process.exitcode if process.exitcode is not None else 1
            child.exit_codes.append(code)
            child.process = None
            ran = time.monotonic() - child.started_at
            if self.signals:
                log.info("%s stopped (status %d)", child.name, code)
            elif code == 0:
                log.info("%s exited normally", child.name)
            else:
                if ran >= HEALTHY_AFTER:
                    child.backoff = RESTART_FIRST
                child.restart_at = time.monotonic() + child.backoff
                log.error("%s exited with %s after %.1fs; restarting in %.0fs", child.name, _describe(code), ran,
                          child.backoff)
                child.backoff = min(RESTART_MAX, child.backoff * 2)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
