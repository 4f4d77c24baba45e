"""Every benchmark, siderctl beside plain RQ measured in the same run on the same private Redis.

    python bench/run.py [--quick] [--json bench/results/run.json]

Prints one table (siderctl, RQ SimpleWorker, RQ Worker, the ratio to the better RQ figure, the
target) and writes the numbers as JSON. Throughput is whole-process wall time: start-up and
shutdown included. --quick uses smaller job counts (a smoke run, not the recorded numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["RQ_KEY_PREFIX"] = "siderhub"

from common import machine, percentile, private_redis  # noqa: E402
from redis import Redis  # noqa: E402

QUEUE = "campaign-dispatch"
PY = sys.executable
RQ = str(Path(PY).parent / "rq")


@dataclass
class Row:
    """One benchmark line."""

    name: str
    unit: str
    siderctl: float
    simple: float | None = None
    worker: float | None = None
    target: str = ""
    higher_is_better: bool = True
    met: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def ratio(self) -> float | None:
        """siderctl against the better of the RQ figures (>1: siderctl is better)."""
        rq = [v for v in (self.simple, self.worker) if v]
        if not rq or not self.siderctl:
            return None
        best = max(rq) if self.higher_is_better else min(rq)
        return self.siderctl / best if self.higher_is_better else best / self.siderctl


class Bench:
    """The private Redis and the environments the benchmarks run in."""

    def __init__(self, client: Redis, url: str, work: Path, quick: bool) -> None:
        self.client, self.url, self.work, self.quick = client, url, work, quick
        (work / "siderctl.toml").write_text(
            f'[redis]\nurl = "{url}"\n[queues.{QUEUE}]\nhandler = "bench_handlers:noop"\nretries = 0\n'
            'result_ttl = "1h"\nkeep_results = 0\n[schedules.metrics-sync]\nenabled = false\n'
            '[schedules."cleanup:jobs"]\nenabled = false\n')
        # Compiled bytecode, as any installed package has it (some sandboxes switch it off).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(PYTHONPATH=str(HERE), SIDERCTL_CONFIG=str(work / "siderctl.toml"), RQ_KEY_PREFIX="siderhub")
        subprocess.run([PY, "-m", "compileall", "-q", str(HERE.parent / "siderctl")], check=True)

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def reset(self, handler: str = "bench_handlers:noop") -> None:
        self.client.flushdb()
        path = self.work / "siderctl.toml"
        text = path.read_text().split("\n")
        path.write_text("\n".join(f'handler = "{handler}"' if line.startswith("handler =") else line
                                  for line in text))

    def siderctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([PY, "-m", "siderctl", *args], env=self.env, cwd=self.work, capture_output=True,
                              check=check)

    def fill_siderctl(self, count: int) -> None:
        lines = self.work / "jobs.jsonl"
        lines.write_text("".join(json.dumps({"campaignId": str(i)}) + "\n" for i in range(count)))
        self.siderctl("enqueue", QUEUE, "--jsonl", str(lines))

    def fill_rq(self, func: str, count: int) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        queue = Queue(QUEUE, connection=self.client, serializer=JSONSerializer)
        for start in range(0, count, 5000):
            batch = [Queue.prepare_data(func, args=({"campaignId": str(i)},), result_ttl=3600)
                     for i in range(start, min(count, start + 5000))]
            queue.enqueue_many(batch)

    def rq_worker(self, worker_class: str, *extra: str) -> float:
        started = time.perf_counter()
        subprocess.run([RQ, "worker", "--burst", "-q", "-u", self.url, "-w", worker_class, "-S",
                        "rq.serializers.JSONSerializer", "-P", str(HERE), *extra, QUEUE], env=self.env, check=True,
                       capture_output=True)
        return time.perf_counter() - started


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the benchmarks -------------------------------------------------------------------------

def throughput(b: Bench, name: str, handler: str, counts: tuple[int, int, int], concurrency: int,
               target: float) -> Row:
    n_sider, n_simple, n_worker = counts
    b.reset(f"bench_handlers:{handler}")
    b.fill_siderctl(n_sider)
    took = timed(lambda: b.siderctl("worker", "start", QUEUE, "--burst", "--concurrency", str(concurrency),
                                    "--log-level", "warning"))
    done = b.client.zcard(f"siderhub:finished:{QUEUE}")
    assert done == n_sider, f"siderctl finished {done} of {n_sider}"
    sider = n_sider / took
    steady = _steady_rate(b.client)
    b.reset()
    b.fill_rq(f"bench_handlers.{handler}", n_simple)
    simple = n_simple / b.rq_worker("rq.worker.SimpleWorker")
    b.reset()
    b.fill_rq(f"bench_handlers.{handler}", n_worker)
    forking = n_worker / b.rq_worker("rq.worker.Worker")
    row = Row(name, "jobs/s", sider, simple, forking, f">= {target:,.0f}")
    row.met = sider >= target
    row.notes = {"jobs": {"siderctl": n_sider, "simple": n_simple, "worker": n_worker},
                 "concurrency": concurrency, "siderctl_steady_jobs_per_s": round(steady)}
    return row


def _steady_rate(client: Redis) -> float:
    """Jobs/s between the first start and the last end (start-up and shut-down excluded)."""
    ids = client.zrange(f"siderhub:finished:{QUEUE}", 0, -1)
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(b"siderhub:job:" + job_id, "started_at", "ended_at")
        rows = pipe.execute()
    starts = [_stamp(start) for start, _ in rows]
    ends = [_stamp(end) for _, end in rows]
    return len(ids) / (max(ends) - min(starts))


def bulk_enqueue(b: Bench) -> Row:
    from rq import Queue
    from rq.serializers import JSONSerializer

    count = b.n(100_000, 20_000)
    b.reset()
    lines = b.work / "bulk.jsonl"
    lines.write_text("".join(json.dumps({"campaignId": str(i)}) + "\n" for i in range(count)))
    sider = count / timed(lambda: b.siderctl("enqueue", QUEUE, "--jsonl", str(lines)))
    assert b.client.llen(f"siderhub:queue:{QUEUE}") == count
    b.reset()
    queue = Queue(QUEUE, connection=b.client, serializer=JSONSerializer)

    def rq_many() -> None:
        for start in range(0, count, 5000):
            queue.enqueue_many([Queue.prepare_data("bench_handlers.noop", args=({"campaignId": str(i)},))
                                for i in range(start, min(count, start + 5000))])

    rq_rate = count / timed(rq_many)
    row = Row("bulk enqueue (enqueue --jsonl vs enqueue_many)", "jobs/s", sider, rq_rate, None, ">= 15,000")
    row.met = sider >= 15_000
    row.notes = {"jobs": count, "siderctl": "whole process, JSONL parsed and validated",
                 "rq": "in-process enqueue_many, 5,000 per call"}
    return row


def process_times(b: Bench) -> list[Row]:
    b.reset()
    runs: dict[str, list[float]] = {"enqueue": [], "rq_enqueue": [], "help": [], "rq_help": [], "import": []}
    for _ in range(b.n(9, 3)):  # interleaved: a slow moment of the machine hits every command alike
        runs["enqueue"].append(timed(lambda: b.siderctl("enqueue", QUEUE, "--campaign-id", "1")))
        runs["rq_enqueue"].append(timed(lambda: subprocess.run(
            [RQ, "enqueue", "-u", b.url, "-q", QUEUE, "-S", "json", "-P", str(HERE), "--quiet",
             "bench_handlers.noop", '%{"campaignId": "1"}'], env=b.env, check=True, capture_output=True)))
        runs["help"].append(timed(lambda: b.siderctl("--help")))
        runs["rq_help"].append(timed(lambda: subprocess.run([RQ, "--help"], env=b.env, check=True,
                                                            capture_output=True)))
        runs["import"].append(timed(lambda: subprocess.run([PY, "-c", "import redis"], env=b.env, check=True)))
    enqueue, rq_enqueue, helps, rq_help, redis_import = (
        statistics.median(runs[k]) for k in ("enqueue", "rq_enqueue", "help", "rq_help", "import"))
    rows = [Row("one `enqueue`, whole process", "ms", enqueue * 1000, rq_enqueue * 1000, None, "<= 200",
                higher_is_better=False),
            Row("`--help`, whole process", "ms", helps * 1000, rq_help * 1000, None, "<= 120",
                higher_is_better=False)]
    rows[0].met, rows[1].met = enqueue <= 0.2, helps <= 0.12
    rows[0].notes = {"python -c 'import redis' (ms)": round(redis_import * 1000, 1)}
    return rows


def _stamp(raw: bytes | None) -> float:
    return datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp() if raw else float("nan")


def latency(b: Bench) -> list[Row]:
    from siderctl import ops
    from siderctl.config import load_config

    count = b.n(200, 50)

    def measure(start_worker: Callable[[], subprocess.Popen[bytes]], enqueue: Callable[[], str]) -> list[float]:
        b.reset()
        proc = start_worker()
        try:
            for _ in range(100):
                if b.client.scard("siderhub:workers"):
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            ids = []
            for _ in range(count):
                ids.append(enqueue())
                time.sleep(0.02)
            deadline = time.monotonic() + 30
            while b.client.zcard(f"siderhub:finished:{QUEUE}") < count and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        values = []
        for job_id in ids:
            enq, start = b.client.hmget(f"siderhub:job:{job_id}", "enqueued_at", "started_at")
            values.append((_stamp(start) - _stamp(enq)) * 1000)
        return values

    os.environ["SIDERCTL_CONFIG"] = str(b.work / "siderctl.toml")
    config = load_config()

    def sider_enqueue() -> str:
        request = ops.EnqueueRequest(QUEUE, [{"campaignId": "x", "attemptedAt": "2026-01-01T00:00:00Z"}])
        return ops.enqueue(config, request)[0].id

    from rq import Queue
    from rq.serializers import JSONSerializer

    queue = Queue(QUEUE, connection=b.client, serializer=JSONSerializer)
    sider = measure(lambda: subprocess.Popen([PY, "-m", "siderctl", "worker", "start", QUEUE, "--log-level",
                                              "warning"], env=b.env, cwd=b.work),
                    sider_enqueue)
    simple = measure(lambda: subprocess.Popen([RQ, "worker", "-q", "-u", b.url, "-w", "rq.worker.SimpleWorker", "-S",
                                               "rq.serializers.JSONSerializer", "-P", str(HERE), QUEUE], env=b.env),
                     lambda: queue.enqueue("bench_handlers.noop", {"campaignId": "x"}).id)
    rows = []
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        rows.append(Row(f"enqueue-to-start latency {label}", "ms", percentile(sider, q), percentile(simple, q), None,
                        "", higher_is_better=False))
    return rows


def idle_stop(b: Bench) -> Row:
    def measure(argv: list[str]) -> float:
        samples = []
        for _ in range(b.n(3, 1)):
            b.reset()
            proc = subprocess.Popen(argv, env=b.env, cwd=b.work, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            for _ in range(200):
                if b.client.scard("siderhub:workers"):
                    break
                time.sleep(0.05)
            time.sleep(1.0)
            started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    sider = measure([PY, "-m", "siderctl", "worker", "start", QUEUE])
    simple = measure([RQ, "worker", "-u", b.url, "-w", "rq.worker.SimpleWorker", QUEUE])
    forking = measure([RQ, "worker", "-u", b.url, QUEUE])
    row = Row("idle worker SIGTERM-to-exit", "s", sider, simple, forking, "<= 1", higher_is_better=False)
    row.met = sider <= 1.0
    return row


def large(b: Bench) -> list[Row]:
    from large_registries import seed

    b.reset()
    queued, failed = b.n(1_000_000, 100_000), b.n(100_000, 10_000)
    seed(b.client, "q", queued)
    seed(b.client, "f", failed)
    time.sleep(2)  # let Redis finish rehashing its freshly grown tables
    runs: dict[str, list[float]] = {"status": [], "rq": [], "failed": []}
    for _ in range(b.n(7, 2)):  # interleaved, so a slow moment of the machine hits all three alike
        runs["status"].append(timed(lambda: b.siderctl("status", "--json")))
        runs["rq"].append(timed(lambda: subprocess.run([RQ, "info", "-u", b.url, "--only-queues", "-R"],
                                                       env=b.env, check=True, capture_output=True)))
        runs["failed"].append(timed(lambda: b.siderctl("failed", "ls", "--limit", "50", "--json")))
    status, rq_info, failed_ls = (statistics.median(runs[k]) for k in ("status", "rq", "failed"))
    rows = [Row(f"`status` ({queued:,} queued, {failed:,} failed)", "ms", status * 1000, rq_info * 1000, None,
                "<= 300", higher_is_better=False),
            Row(f"`failed ls --limit 50` ({failed:,} failed)", "ms", failed_ls * 1000, None, None, "<= 300",
                higher_is_better=False)]
    rows[0].met, rows[1].met = status <= 0.3, failed_ls <= 0.3
    rows[0].notes = {"rq": "rq info --only-queues (which also cleans registries)"}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small job counts: a smoke run")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "run.json")
    parser.add_argument("--markdown", type=Path, metavar="RESULTS", help="print RESULTS (JSON) as a Markdown table")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    rows: list[Row] = []
    with private_redis() as (client, url, work):
        b = Bench(client, url, work, args.quick)
        steps: list[Callable[[], Row | list[Row]]] = [
            lambda: throughput(b, "no-op jobs/s, one worker process", "noop",
                               (b.n(30_000, 3_000), b.n(3_000, 300), b.n(300, 60)), 16, 1500),
            lambda: throughput(b, "50 ms I/O jobs/s, concurrency 50, one process", "io50",
                               (b.n(10_000, 1_000), b.n(60, 20), b.n(40, 10)), 50, 900),
            lambda: bulk_enqueue(b),
            lambda: process_times(b),
            lambda: latency(b),
            lambda: idle_stop(b),
            lambda: large(b),
        ]
        for step in steps:
            result = step()
            for row in result if isinstance(result, list) else [result]:
                rows.append(row)
                print_row(row)
    report = {"machine": machine(), "quick": args.quick, "when": datetime.now().isoformat(timespec="seconds"),
              "rows": [{**row.__dict__, "ratio": row.ratio()} for row in rows]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{machine()}; JSON in {args.json}")


def markdown(report: dict[str, Any]) -> str:
    """The README's table from a results file."""
    lines = ["| benchmark | siderctl | RQ SimpleWorker | RQ Worker | siderctl vs best RQ | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        unit = row["unit"]
        cells = [_fmt(row[k], unit) + ("" if row[k] is None else f" {unit}") for k in ("siderctl", "simple", "worker")]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.1f}x"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['name']} | {' | '.join(c.replace('- ' + unit, '-') for c in cells)} | {ratio} | "
                     f"{row['target'] or '-'} | {met} |")
    return "\n".join(lines)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "jobs/s":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


_printed_header = False


def print_row(row: Row) -> None:
    global _printed_header
    if not _printed_header:
        print(f"{'benchmark':<52} {'unit':>6} {'siderctl':>10} {'RQ Simple':>10} {'RQ Worker':>10} "
              f"{'ratio':>7} {'target':>10}  met")
        _printed_header = True
    ratio = row.ratio()
    met = "" if row.met is None else ("yes" if row.met else "NO")
    print(f"{row.name:<52} {row.unit:>6} {_fmt(row.siderctl, row.unit):>10} {_fmt(row.simple, row.unit):>10} "
          f"{_fmt(row.worker, row.unit):>10} {'-' if ratio is None else f'{ratio:.1f}x':>7} {row.target:>10}  {met}",
          flush=True)


if __name__ == "__main__":
    main()
