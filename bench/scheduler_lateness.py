"""Benchmark: how late the scheduler fires its slots (target: p99 < 100 ms on an idle machine).

Starts a private redis-server, runs `siderctl scheduler run` (two processes, so leadership is
real) with a 1 s schedule for --seconds, then measures each slot's lateness as the job's
enqueued_at minus the slot time carried in its deterministic id. Prints a table and writes JSON.

    python bench/scheduler_lateness.py [--seconds 30] [--json bench/results/scheduler.json]
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
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, private_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/scheduler.json"))
    args = parser.parse_args()

    with private_redis() as (client, url, work):
        config = work / "siderctl.toml"
        config.write_text('[schedules.metrics-sync]\nenabled = false\n[schedules."cleanup:jobs"]\nenabled = false\n'
                          '[schedules.bench]\nqueue = "cleanup"\nevery = "1s"\npayload = { target = "logs" }\n')
        env = {**os.environ, "REDIS_URL": url, "SIDERCTL_CONFIG": str(config)}
        schedulers = [subprocess.Popen([sys.executable, "-m", "siderctl", "scheduler", "run"], env=env,
                                       stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            time.sleep(args.seconds)
        finally:
            for proc in schedulers:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
        lateness = []
        for raw in client.lrange("siderhub:queue:cleanup", 0, -1):
            job_id = raw.decode()
            slot = int(job_id.rsplit("-", 1)[1]) / 1000
            enqueued = client.hget(f"siderhub:job:{job_id}", "enqueued_at")
            assert enqueued is not None
            at = datetime.strptime(enqueued.decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            lateness.append((at - slot) * 1000)
    result = {
        "slots": len(lateness),
        "p50_ms": round(statistics.median(lateness), 2),
        "p99_ms": round(percentile(lateness, 0.99), 2),
        "max_ms": round(max(lateness), 2),
        "target_p99_ms": 100,
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
    }
    print(f"{'slots':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{result['slots']:>8} {result['p50_ms']:>8} {result['p99_ms']:>8} {result['max_ms']:>8}")
    print("target p99 < 100 ms:", "met" if result["p99_ms"] < 100 else "MISSED")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
