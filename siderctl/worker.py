"""The worker: runs the jobs of one or more queues, several at a time, in one process.

Per queue a *lane* has one fetcher thread and ``concurrency`` executor threads. The fetcher
claims as many jobs as there are free slots in one Lua call (the claim marks them started in
RQ's registries atomically, so a crash never leaves a popped job unaccounted for); executors run
the queue's registered handler; one settler thread writes outcomes back in pipelined batches;
one maintenance thread keeps heartbeats, enforces timeouts, promotes due retries and recovers
jobs abandoned by dead workers.

Shutdown: ``stop()`` once is warm (take no more jobs, let in-flight ones finish within the
shutdown timeout, then requeue what is left); a second ``stop()`` is cold (requeue now).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue as queue_mod
import secrets
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import handlers, housekeeping, store
from .config import Config, QueuePolicy
from .errors import InputError, NameTaken, UsageError
from .ops import handler_func_name
from .queues import get_queue
from .timeparse import format_duration, utcnow

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("jobs.worker")

LEASE_HEARTBEATS = 3  # a job is abandoned after this many missed heartbeats
BLOCK = 0.5  # longest wait for a job in one call; bounds how long an idle worker takes to stop
TIMEOUT_GRACE = 2.0  # after a timeout is raised in a job, how long it gets to unwind
TICK = 0.05
PAUSED_POLL = 0.5  # how often a paused queue is looked at again
SWITCH_INTERVAL = 0.001  # Python's default is 5 ms
MAX_BACKOFF = 5.0
SETTLE_BATCH = 32  # small batches: a claim never waits long behind them in Redis


class JobTimeout(BaseException):
    """Raised inside a job that ran past its timeout (BaseException: ``except Exception`` can't eat it)."""


class Interrupted(BaseException):
    """Raised inside a job at cold shutdown; the job has already been requeued."""


@dataclass(frozen=True)
class WorkerOptions:
    """What ``worker start`` was asked for; None means "from config"."""

    queues: tuple[str, ...]
    concurrency: int | None = None
    burst: bool = False
    max_jobs: int | None = None
    name: str | None = None
    shutdown_timeout: float | None = None


@dataclass
class Report:
    """How a worker's run ended."""

    name: str
    finished: int = 0
    failed: int = 0
    retried: int = 0
    requeued_unstarted: int = 0
    interrupted: list[str] = field(default_factory=list)  # running jobs requeued at shutdown
    unsettled: list[str] = field(default_factory=list)  # outcomes Redis never took (left to recovery)

    @property
    def clean(self) -> bool:
        """Every job this worker started ran to its end and was recorded."""
        return not self.interrupted and not self.unsettled


@dataclass
class Running:
    """One execution in this process."""

    job: store.ClaimedJob
    lane: Lane
    started: float = 0.0  # wall clock
    timeout: float = 0.0
    deadline: float = float("inf")  # monotonic
    thread_id: int | None = None
    done: bool = False  # the handler returned or raised
    settled: bool = False  # an outcome was handed to the settler
    timeout_raised_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim_settlement(self) -> bool:
        """True for the first caller only: that caller records the outcome."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class Health:
    """Whether Redis answers, logged once per outage; recovery of others' jobs waits one lease after."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.up = True
        self.recover_after = time.monotonic() + lease
        self._lock = threading.Lock()

    def down(self, exc: Exception) -> None:
        with self._lock:
            if self.up:
                log.warning("Redis unreachable (%s); retrying with backoff, in-flight results are kept", exc)
                self.up = False

    def ok(self) -> None:
        if self.up:
            return
        with self._lock:
            if not self.up:
                log.warning("Redis is back; resuming")
                self.up = True
                self.recover_after = time.monotonic() + self.lease


class Backoff:
    """Exponential sleep after consecutive Redis errors."""

    def __init__(self) -> None:
        self.delay = 0.0

    def fail(self, stop: threading.Event) -> None:
        self.delay = min(MAX_BACKOFF, self.delay * 2 or 0.1)
        stop.wait(self.delay)

    def reset(self) -> None:
        self.delay = 0.0


class Lane:
    """One queue served by this worker: its policy, handler and slots."""

    def __init__(self, worker: Worker, queue: str, policy: QueuePolicy, handler: handlers.Handler,
                 concurrency: int) -> None:
        self.worker = worker
        self.queue = queue
        self.spec = get_queue(queue)
        self.policy = policy
        self.handler = handler
        self.func_name = handler_func_name(policy.handler)
        self.concurrency = concurrency
        # With 4+ slots a few jobs are claimed ahead, so an executor that finishes finds the next
        # one waiting instead of paying a round trip; they are heartbeated, and requeued untouched
        # at shutdown. (They show as started from the claim; their timeout starts when they run.)
        self.capacity = concurrency + concurrency // 4
        self.held: dict[str, store.ClaimedJob] = {}  # claimed, not yet settled: running or waiting
        self.busy = 0  # claimed and not yet done running (its outcome may still be on its way to Redis)
        self.state = "ok"  # or "paused" / "closed", as the operator set the queue
        self.drained = False  # burst: the queue was empty with nothing in flight
        self.surplus = 0  # executor threads to retire (replaced while stuck in a timed-out job)
        self.cond = threading.Condition()
        self.inbox: queue_mod.SimpleQueue[store.ClaimedJob | None] = queue_mod.SimpleQueue()
        self.blocker: Redis | None = None  # the fetcher's own connection, for blocking waits
        self.blocker_id: int | None = None
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self.fetch_loop, "fetch")
        for _ in range(self.concurrency):
            self.add_executor()

    def add_executor(self) -> None:
        self._spawn(self.execute_loop, "exec")

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        thread = threading.Thread(target=target, name=f"{self.queue}-{role}-{len(self.threads)}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def reserve(self, wanted: int, timeout: float, batch: int = 1) -> int:
        """Take up to ``wanted`` free slots within the worker's ``--max-jobs`` budget; how many were taken.

        Waits up to ``timeout`` for ``batch`` free slots while the executors still have jobs waiting:
        claiming several at once costs one round trip instead of several.
        """
        with self.cond:
            if timeout > 0 and (self.capacity - self.busy < (batch if self.inbox.qsize() >= batch else 1)):
                self.cond.wait(timeout)
            slots = max(0, min(wanted, self.capacity - self.busy))
            granted = self.worker.take_budget(slots)
            self.busy += granted
            return granted

    def unreserve(self, count: int) -> None:
        """Give back slots (and budget) reserved for jobs that were not there to claim."""
        self.worker.return_budget(count)
        self.release(count)

    def release(self, count: int = 1, execution_id: str | None = None) -> None:
        """Give slots back (a job ended, or a reservation was not used)."""
        if count <= 0:
            return
        with self.cond:
            self.busy -= count
            if execution_id is not None:
                self.held.pop(execution_id, None)
            self.cond.notify_all()

    def held_jobs(self) -> list[store.ClaimedJob]:
        """Jobs this lane claimed and has not settled (for heartbeats)."""
        with self.cond:
            return list(self.held.values())

    # -- fetching ------------------------------------------------------------------------

    def fetch_loop(self) -> None:
        w = self.worker
        backoff = Backoff()
        while not w.stopping.is_set():
            if w.budget() <= 0:
                w.stopping.wait(TICK)
                continue
            wanted = self.reserve(self.capacity, BLOCK, batch=max(1, (self.capacity - self.concurrency) // 2))
            if wanted <= 0:
                continue
            claimed: list[store.ClaimedJob] = []
            try:
                claimed = self.claim(wanted, "")
                if not claimed and self.state == "ok":
                    claimed = self.wait_and_claim(wanted)
                w.health.ok()
                backoff.reset()
            except w.redis_errors as exc:
                w.health.down(exc)
                backoff.fail(w.stopping)
            finally:
                self.unreserve(wanted - len(claimed))
            for job in claimed:
                self.inbox.put(job)
            if self.state == "closed":
                w.lane_closed()
                return
            if self.state == "paused":
                w.stopping.wait(PAUSED_POLL)

    def claim(self, count: int, first: str) -> list[store.ClaimedJob]:
        w = self.worker
        now = time.time()
        reply = w.scripts.claim(args=[
            w.prefix, self.queue, count, w.name, repr(now), repr(w.lease), f"{secrets.token_hex(6)}-",
            first, store.rq_time(now), store.events_key(w.prefix), w.events_max])
        self._set_state(store.text(reply[0]))
        jobs = [store.parse_claim(self.queue, row) for row in reply[1:]]
        with self.cond:
            for job in jobs:
                self.held[job.execution_id] = job
            if jobs:
                self.drained = False
            elif self.busy == count and not first and not w.settling():  # only our reservation
                self.drained = True
        return jobs

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        message = {"paused": "paused: taking no jobs from it until `siderctl queue resume`",
                   "closed": "closed: this worker stops taking its jobs",
                   "ok": "open again: taking jobs"}[state]
        log.warning("queue %s %s", self.queue, message)
        self.state = state

    def wait_and_claim(self, wanted: int) -> list[store.ClaimedJob]:
        w = self.worker
        if w.options.burst:
            w.stopping.wait(TICK)
            return []
        blocker = self._blocking_client()
        self.blocker_id = blocker.client_id()  # lets shutdown wake this wait at once (CLIENT UNBLOCK)
        if w.stopping.is_set():
            return []
        popped = blocker.blmove(store.queue_key(w.prefix, self.queue),
                                store.intermediate_key(w.prefix, self.queue), BLOCK)  # type: ignore[arg-type]
        if popped is None:
            return []
        job_id = store.text(popped)
        if w.stopping.is_set():
            w.scripts.unpop(args=[w.prefix, self.queue, job_id])
            return []
        return self.claim(wanted, job_id)

    def _blocking_client(self) -> Redis:
        if self.blocker is None:
            from redis import ConnectionPool, Redis

            pool = self.worker.connection.connection_pool
            self.blocker = Redis(connection_pool=ConnectionPool(
                connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs))
        return self.blocker

    def wake(self, connection: Redis) -> None:
        """Cut short the fetcher's blocking wait, if it is in one."""
        if self.blocker_id is not None:
            connection.client_unblock(self.blocker_id)

    # -- executing -----------------------------------------------------------------------

    def execute_loop(self) -> None:
        job: store.ClaimedJob | None = None
        while True:
            if job is None:
                with self.cond:
                    if self.surplus > 0:
                        self.surplus -= 1
                        return
                job = self.inbox.get()
                if job is None:
                    return
            try:
                self.worker.execute(self, job)
            except (JobTimeout, Interrupted):
                pass  # delivered after the job's outcome was taken; nothing left to do
            finally:
                _clear_async_exc(threading.get_ident())
            try:
                job = self.inbox.get_nowait()
            except queue_mod.Empty:
                job = self._claim_next()
            else:
                if job is None:
                    return

    def _claim_next(self) -> store.ClaimedJob | None:
        """Right after a job, claim the next one here: no hand-over from the fetcher while the queue is busy."""
        w = self.worker
        if w.stopping.is_set() or self.state != "ok" or not self.reserve(1, 0):
            return None
        jobs: list[store.ClaimedJob] = []
        try:
            jobs = self.claim(1, "")
        except w.redis_errors as exc:
            w.health.down(exc)
        finally:
            self.unreserve(1 - len(jobs))
        return jobs[0] if jobs else None


def _raise_in(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def _clear_async_exc(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


_OWN_FRAMES = (__file__, handlers.__file__)


def _traceback(exc: BaseException) -> str:
    """The traceback of a failed job, starting at the handler (the worker's own frames say nothing)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in _OWN_FRAMES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Worker:
    """Runs jobs until stopped, burst-drained or out of ``max_jobs``; see the module docstring."""

    def __init__(self, config: Config, options: WorkerOptions,
                 observer: Callable[[store.Settlement], None] | None = None) -> None:
        if not options.queues:
            raise UsageError("a worker needs at least one queue")
        self.config = config
        self.options = options
        self.observer = observer  # told of every settled job (metrics)
        self.prefix = config.redis.prefix
        self.name = options.name or f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(2)}"
        self.heartbeat_every = float(config.values["worker.heartbeat"])
        self.lease = LEASE_HEARTBEATS * self.heartbeat_every
        self.events_max = int(config.values["events.max_len"])
        self.shutdown_timeout = (options.shutdown_timeout if options.shutdown_timeout is not None
                                 else float(config.values["worker.shutdown_timeout"]))
        self.health = Health(self.lease)
        self.stopping = threading.Event()  # no new jobs
        self.cold = threading.Event()  # requeue in-flight jobs now
        self.closed = threading.Event()  # shutdown done: maintenance stops
        self.report = Report(self.name)
        self.running: dict[str, Running] = {}
        self._running_lock = threading.Lock()
        self._budget_left = options.max_jobs  # None: no limit
        self._settled_total = 0
        self._counter_lock = threading.Lock()
        self._outcomes: queue_mod.SimpleQueue[store.Settlement | None] = queue_mod.SimpleQueue()
        self._pending_settle = 0
        self._settler_idle = threading.Condition()
        self.lanes = [self._lane(q) for q in options.queues]  # loads handlers: fails before Redis
        self.connection: Redis
        self.scripts: store.Scripts
        self.redis_errors: tuple[type[Exception], ...] = ()

    def _lane(self, queue: str) -> Lane:
        get_queue(queue)
        policy = self.config.queues[queue]
        handler = handlers.load(policy.handler, f"queues.{queue}.handler")
        return Lane(self, queue, policy, handler, self.options.concurrency or policy.concurrency)

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """First call: warm shutdown. Second call: cold."""
        if self.stopping.is_set():
            if not self.cold.is_set():
                log.warning("cold shutdown: requeueing %d in-flight job(s) now", len(self.running))
                self.cold.set()
            return
        log.warning("warm shutdown: taking no new jobs; %d in flight get up to %s (signal again to stop now)",
                    len(self.running), format_duration(self.shutdown_timeout))
        self.stopping.set()

    def lane_closed(self) -> None:
        """A lane's queue was closed; with every lane closed the worker stops (warm)."""
        if all(lane.state == "closed" for lane in self.lanes) and not self.stopping.is_set():
            log.warning("every queue of worker %s is closed: stopping after the jobs in flight", self.name)
            self.stop()

    def command(self, raw: bytes | str) -> None:
        """A message from RQ's command channel: ``shutdown`` (warm, cold if repeated), ``kill-horse`` (cold)."""
        import json

        try:
            command = json.loads(raw).get("command")
        except (ValueError, AttributeError):
            log.warning("ignored an unreadable command: %r", raw)
            return
        log.warning("received command %r", command)
        if command == "shutdown":
            self.stop()
        elif command == "kill-horse":
            self.stop()
            self.stop()
        else:
            log.warning("command %r is not supported by siderctl workers", command)

    def run(self) -> Report:
        """Connect, register, work until told to stop, then shut down without losing a job."""
        from redis.exceptions import ConnectionError, TimeoutError

        from .connection import connect

        self.redis_errors = (ConnectionError, TimeoutError)
        # Many threads wait on I/O: hand the GIL over sooner, so a freed slot is refilled at once.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.connection = connect(self.config)
        self.scripts = store.Scripts(self.connection)
        self._register_birth()
        log.info("worker %s started: %s", self.name,
                 ", ".join(f"{lane.queue} (concurrency {lane.concurrency})" for lane in self.lanes))
        maintenance = threading.Thread(target=self._maintain_loop, name="maintain", daemon=True)
        threading.Thread(target=self._settle_loop, name="settle", daemon=True).start()
        threading.Thread(target=self._listen_loop, name="commands", daemon=True).start()
        maintenance.start()
        for lane in self.lanes:
            lane.start()
        try:
            while not self.stopping.is_set():
                if self._finished_work():
                    self.stopping.set()
                    break
                self.stopping.wait(0.1)
            self._shutdown(maintenance)
        finally:
            self.connection.close()
        log.info("worker %s stopped: %d finished, %d failed, %d retried%s", self.name, self.report.finished,
                 self.report.failed, self.report.retried, "" if self.report.clean else " (unclean)")
        return self.report

    def _finished_work(self) -> bool:
        if self.options.max_jobs is not None and self._settled_total >= self.options.max_jobs:
            return True
        if self.options.burst:
            with self._settler_idle:
                pending = self._pending_settle
            return pending == 0 and all(lane.drained for lane in self.lanes)
        return False

    def budget(self) -> int:
        """Jobs this worker may still claim (``--max-jobs``)."""
        if self._budget_left is None:
            return 1 << 30
        with self._counter_lock:
            return self._budget_left

    def take_budget(self, wanted: int) -> int:
        """Take up to ``wanted`` from the ``--max-jobs`` budget, atomically; how many were granted."""
        if self._budget_left is None:
            return wanted
        with self._counter_lock:
            granted = max(0, min(wanted, self._budget_left))
            self._budget_left -= granted
            return granted

    def return_budget(self, count: int) -> None:
        """Give back budget taken for jobs that were not claimed."""
        if self._budget_left is not None and count > 0:
            with self._counter_lock:
                self._budget_left += count

    def _busy(self) -> bool:
        return any(lane.busy for lane in self.lanes)

    def _shutdown(self, maintenance: threading.Thread) -> None:
        for lane in self.lanes:
            with contextlib.suppress(*self.redis_errors):
                lane.wake(self.connection)
        for lane in self.lanes:
            lane.threads[0].join(BLOCK + 1.0)  # the fetcher: it may hold a job popped mid-stop
            if lane.blocker is not None:
                lane.blocker.close()
        self._requeue_unstarted()
        deadline = time.monotonic() + self.shutdown_timeout
        while self._busy() and not self.cold.is_set() and time.monotonic() < deadline:
            self.cold.wait(TICK)
        self._requeue_unstarted()
        for running in list(self.running.values()):
            if running.claim_settlement():
                self.report.interrupted.append(running.job.id)
                log.warning("job %s (%s) did not finish before shutdown: requeued", running.job.id,
                            running.lane.queue)
                self._submit(self._settlement(running.lane, running.job, "requeue", "requeued",
                                              "worker shut down before the job finished", started=running.started))
                if running.thread_id is not None:
                    _raise_in(running.thread_id, Interrupted)
        self._drain_settler(deadline=time.monotonic() + max(2.0, self.heartbeat_every))
        self.closed.set()
        maintenance.join(1.0)
        for lane in self.lanes:
            for _ in range(lane.concurrency + lane.surplus):
                lane.inbox.put(None)
        self._register_death()

    def _requeue_unstarted(self) -> None:
        for lane in self.lanes:
            while True:
                try:
                    job = lane.inbox.get_nowait()
                except queue_mod.Empty:
                    break
                if job is None:
                    continue
                self.report.requeued_unstarted += 1
                self._submit(self._settlement(lane, job, "requeue", "requeued", "worker stopping before the job ran"))

    # -- running one job -----------------------------------------------------------------

    def execute(self, lane: Lane, job: store.ClaimedJob) -> None:
        """Run one claimed job and hand its outcome to the settler."""
        if self.stopping.is_set():  # taken from the inbox as shutdown began: it never started
            self.report.requeued_unstarted += 1
            self._submit(self._settlement(lane, job, "requeue", "requeued", "worker stopping before the job ran"))
            return
        timeout = job.timeout if job.timeout and job.timeout > 0 else lane.policy.timeout
        running = Running(job, lane, started=time.time(), timeout=timeout, thread_id=threading.get_ident(),
                          deadline=time.monotonic() + timeout)
        with self._running_lock:
            self.running[job.execution_id] = running
        try:
            outcome = self._run_handler(lane, job, running)
        finally:
            with self._running_lock:
                self.running.pop(job.execution_id, None)
        if running.claim_settlement():
            self._submit(outcome)

    def _run_handler(self, lane: Lane, job: store.ClaimedJob, running: Running) -> store.Settlement:
        try:
            try:
                payload = self._payload(lane, job)
                ctx = handlers.JobContext(job.id, lane.queue, job.attempt, self.config, self.connection,
                                          running.deadline)
                value = lane.handler(payload, ctx)
            finally:
                with running.lock:
                    running.done = True
        except JobTimeout:
            return self._failure(lane, job, running, _timeout_text(running), retryable=True)
        except handlers.PermanentError as exc:
            return self._failure(lane, job, running, _traceback(exc), retryable=False, reason=_first_line(exc))
        except Exception as exc:  # a handler may raise anything: it is the job's failure, recorded with its traceback
            return self._failure(lane, job, running, _traceback(exc), retryable=True, reason=_first_line(exc))
        return self._settlement(lane, job, "finished", "finished", started=running.started,
                                ttl=job.result_ttl if job.result_ttl is not None else lane.policy.result_ttl,
                                result_type=store.RESULT_SUCCESSFUL, result_field="return_value",
                                result_value=store.encode_value(value))

    def _payload(self, lane: Lane, job: store.ClaimedJob) -> dict[str, Any]:
        if job.decode_error:
            raise handlers.PermanentError(job.decode_error)
        if job.func_name != lane.func_name:
            raise handlers.PermanentError(
                f"refused: not a registered handler ({job.func_name!r}; {lane.queue} runs {lane.handler.path})")
        if len(job.args) != 1 or job.kwargs:
            raise handlers.PermanentError("invalid payload: a job takes exactly one JSON object argument")
        try:
            return lane.spec.validate(job.args[0], utcnow())
        except InputError as exc:
            raise handlers.PermanentError(f"invalid payload: {exc.message}") from None

    def _failure(self, lane: Lane, job: store.ClaimedJob, running: Running, text: str, *, retryable: bool,
                 reason: str | None = None) -> store.Settlement:
        reason = reason or text.strip().splitlines()[-1]
        ttl = job.failure_ttl if job.failure_ttl is not None else lane.policy.failure_ttl
        retry = retryable and job.retries_left > 0
        delay = job.retry_delay() if retry else 0
        return self._settlement(
            lane, job, "retry" if retry else "failed", "retried" if retry else "failed", reason,
            started=running.started, ttl=ttl, delay=delay, result_type=store.RESULT_FAILED,
            result_field="exc_string", result_value=store.encode_exc(text), exc_info=zlib.compress(text.encode()))

    def _settlement(self, lane: Lane, job: store.ClaimedJob, mode: str, event: str, reason: str = "", *,
                    started: float = 0.0, **extra: Any) -> store.Settlement:
        return store.Settlement(
            prefix=self.prefix, queue=lane.queue, job_id=job.id, execution_id=job.execution_id, owner=self.name,
            now=time.time(), mode=mode, event=event, reason=reason, started=started,
            keep_results=lane.policy.keep_results, events_max=self.events_max, **extra)

    # -- settling ------------------------------------------------------------------------

    def _submit(self, settlement: store.Settlement) -> None:
        """Hand one outcome to the settler; its slot is free for the next job from now on."""
        with self._settler_idle:
            self._pending_settle += 1
        self._outcomes.put(settlement)
        self._lane_of(settlement.queue).release(1, settlement.execution_id)

    def _lane_of(self, queue: str) -> Lane:
        return next(lane for lane in self.lanes if lane.queue == queue)

    def settling(self) -> bool:
        """Outcomes are still on their way to Redis."""
        with self._settler_idle:
            return self._pending_settle > 0

    def _settle_loop(self) -> None:
        backoff = Backoff()
        while True:
            first = self._outcomes.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < SETTLE_BATCH:
                try:
                    item = self._outcomes.get_nowait()
                except queue_mod.Empty:
                    break
                if item is None:
                    self._outcomes.put(None)
                    break
                batch.append(item)
            while True:
                try:
                    results = self._settle_batch(batch)
                    self.health.ok()
                    backoff.reset()
                    break
                except self.redis_errors as exc:
                    self.health.down(exc)
                    backoff.fail(threading.Event())
            for settlement, result in zip(batch, results, strict=True):
                self._settled(settlement, result)

    def _settle_batch(self, batch: list[store.Settlement]) -> list[Any]:
        return self.scripts.run_many(self.connection, self.scripts.settle, [s.args() for s in batch])

    def _settled(self, s: store.Settlement, result: Any) -> None:
        if result == 1:
            self._log_outcome(s)
            if self.observer is not None:
                self.observer(s)
        elif result == 0:
            log.warning("job %s (%s): its execution was recovered elsewhere meanwhile; outcome %s not recorded",
                        s.job_id, s.queue, s.event)
        else:
            log.info("job %s (%s) was removed or stopped while running; outcome %s not recorded",
                     s.job_id, s.queue, s.event)
        with self._counter_lock:
            if s.mode != "requeue":
                self._settled_total += 1
        with self._settler_idle:
            self._pending_settle -= 1
            self._settler_idle.notify_all()

    def _log_outcome(self, s: store.Settlement) -> None:
        if s.mode == "finished":
            self.report.finished += 1
            log.info("job %s (%s) finished in %.3fs", s.job_id, s.queue, s.now - s.started)
        elif s.mode == "failed":
            self.report.failed += 1
            logging.getLogger(f"jobs.{s.queue}").error("job %s failed: %s", s.job_id, s.reason)
        elif s.mode == "retry":
            self.report.retried += 1
            logging.getLogger(f"jobs.{s.queue}").warning("job %s failed: %s; retry in %ds", s.job_id, s.reason,
                                                         s.delay)

    def _drain_settler(self, deadline: float) -> None:
        """Wait for queued outcomes to reach Redis, then stop the settler; what can't is left to recovery."""
        with self._settler_idle:
            while self._pending_settle and time.monotonic() < deadline:
                self._settler_idle.wait(TICK)
            pending = self._pending_settle
        if pending:
            log.error("Redis did not take %d outcome(s) before exit; those jobs stay started and are "
                      "recovered as abandoned after %s", pending, format_duration(self.lease))
            self.report.unsettled.append(f"{pending} outcome(s)")
        self._outcomes.put(None)

    # -- commands ------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        """Follow RQ's command channel with short polls, so stopping never waits on a blocked thread."""
        channel = store.pubsub_channel(self.prefix, self.name)
        backoff = Backoff()
        while not self.closed.is_set():
            pubsub = self.connection.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                while not self.closed.is_set():
                    message = pubsub.get_message(timeout=PAUSED_POLL)
                    if message is not None and message.get("type") == "message":
                        self.command(message["data"])
                    backoff.reset()
            except self.redis_errors as exc:
                if self.closed.is_set():
                    return  # the connection was closed under us at exit
                self.health.down(exc)
                backoff.fail(self.closed)
            finally:
                with contextlib.suppress(*self.redis_errors):
                    pubsub.close()

    # -- maintenance ---------------------------------------------------------------------

    def _maintain_loop(self) -> None:
        backoff = Backoff()
        stop = threading.Event()
        next_beat = next_promote = next_recover = 0.0
        seen: dict[str, set[str]] = {lane.queue: set() for lane in self.lanes}
        while not self.closed.is_set():
            now = time.monotonic()
            self._enforce_timeouts(now)
            try:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self.heartbeat_every
                if now >= next_promote and not self.stopping.is_set():
                    self._promote()
                    next_promote = now + 0.25
                if now >= next_recover and now >= self.health.recover_after and not self.stopping.is_set():
                    self._recover(seen)
                    next_recover = now + self.heartbeat_every
                self.health.ok()
                backoff.reset()
            except self.redis_errors as exc:
                self.health.down(exc)
                backoff.fail(stop)
            time.sleep(TICK)

    def _enforce_timeouts(self, now: float) -> None:
        with self._running_lock:
            overdue = [r for r in self.running.values() if now > r.deadline]
        for running in overdue:
            with running.lock:
                if running.done or running.settled:
                    continue
                if running.timeout_raised_at is None:
                    running.timeout_raised_at = now
                    if running.thread_id is not None:
                        _raise_in(running.thread_id, JobTimeout)
                    continue
            if now - running.timeout_raised_at > TIMEOUT_GRACE and running.claim_settlement():
                lane = running.lane
                log.error("job %s (%s) ignored its timeout; recorded as failed, its thread is replaced",
                          running.job.id, lane.queue)
                self._submit(self._failure(lane, running.job, running, _timeout_text(running) + " and did not stop",
                                           retryable=True))
                with lane.cond:
                    lane.surplus += 1
                lane.add_executor()

    def _heartbeat(self) -> None:
        now = time.time()
        key = store.worker_key(self.prefix, self.name)
        ttl = int(self.lease + 60)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.expire(key, ttl)
            pipe.hset(key, "last_heartbeat", store.rq_time(now))  # `state` is kept by the claim/settle scripts
            pipe.expire(f"{key}:executions", ttl)
            for lane in self.lanes:
                for job in lane.held_jobs():
                    member = f"{job.id}:{job.execution_id}"
                    pipe.zadd(store.registry_key(self.prefix, "wip", lane.queue), {member: now + self.lease}, xx=True)
                    pipe.expire(f"{self.prefix}:execution:{member}", int(self.lease) + 60)
            alive = pipe.execute()[0]
        if not alive:  # our registration expired (a long outage) or Redis restarted empty
            log.warning("worker %s was no longer registered; registering again", self.name)
            self._register(fresh=False)

    def _promote(self) -> None:
        now = time.time()
        self.scripts.run_many(self.connection, self.scripts.promote,
                              [[self.prefix, lane.queue, repr(now), 500, store.rq_time(now)] for lane in self.lanes])

    def _recover(self, seen: dict[str, set[str]]) -> None:
        now = time.time()
        for lane in self.lanes:
            housekeeping.recover_abandoned(self.connection, self.scripts, self.config, lane.queue, now)
            _, seen[lane.queue] = housekeeping.return_stuck(self.connection, self.scripts, self.prefix, lane.queue,
                                                            seen[lane.queue])

    # -- registration (RQ's worker keys, so `rq info` lists us) -----------------------------

    def _register_birth(self) -> None:
        key = store.worker_key(self.prefix, self.name)
        if self.connection.exists(key) and not self.connection.hexists(key, "death"):
            raise NameTaken(f"a worker named {self.name!r} is already running")
        self._register(fresh=True)

    def _register(self, *, fresh: bool) -> None:
        from rq.version import VERSION

        key = store.worker_key(self.prefix, self.name)
        now = store.rq_time(time.time())
        queues = [lane.queue for lane in self.lanes]
        with self.connection.pipeline() as pipe:
            if fresh:
                pipe.delete(key, f"{key}:executions")
                pipe.hset(key, mapping={"birth": now, "successful_job_count": 0, "failed_job_count": 0,
                                        "total_working_time": 0})
            pipe.hset(key, mapping={
                "last_heartbeat": now, "queues": ",".join(queues), "pid": os.getpid(),
                "hostname": socket.gethostname(), "ip_address": "", "version": VERSION,
                "python_version": sys.version,
                "state": "busy" if any(lane.held_jobs() for lane in self.lanes) else "idle",
                "serializer": "rq.serializers.JSONSerializer", "heartbeat_interval": self.heartbeat_every,
            })
            pipe.hsetnx(key, "birth", now)
            pipe.expire(key, int(self.lease + 60))
            pipe.sadd(f"{self.prefix}:workers", key)
            for queue in queues:
                pipe.sadd(f"{self.prefix}:workers:{queue}", key)
            pipe.execute()

    def _register_death(self) -> None:
        key = store.worker_key(self.prefix, self.name)
        try:
            with self.connection.pipeline() as pipe:
                pipe.srem(f"{self.prefix}:workers", key)
                for lane in self.lanes:
                    pipe.srem(f"{self.prefix}:workers:{lane.queue}", key)
                pipe.hset(key, mapping={"death": store.rq_time(time.time()), "state": "dead"})
                pipe.expire(key, 60)
                pipe.delete(f"{key}:executions")
                pipe.execute()
        except self.redis_errors as exc:
            log.warning("could not unregister worker %s (%s); its key expires by itself", self.name, exc)


def _timeout_text(running: Running) -> str:
    return f"JobTimeoutException: job exceeded its {format_duration(running.timeout)} timeout"
