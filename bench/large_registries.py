"""Benchmark: read commands on large registries (1M queued, 100k failed jobs).

`status` and `failed ls --limit 50` must stay fast and touch O(page) jobs, whatever the sizes.
Prints, for each, the in-process time, the whole-process time and the number of Redis commands
one call runs; writes JSON.

    python bench/large_registries.py [--queued 1000000] [--failed 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RQ_KEY_PREFIX", "siderhub")

from common import counted, machine, private_redis, run_cli, timed

QUEUE = "campaign-dispatch"

SEED = """
local p, q, kind, first, count, now, exc = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), ARGV[7]
local data = ARGV[8]
for i = first, first + count - 1 do
  local id = kind .. '-' .. i
  local jk = p .. ':job:' .. id
  if kind == 'q' then
    redis.call('HSET', jk, 'status', 'queued', 'origin', q, 'data', data, 'enqueued_at', '2026-01-01T00:00:00.000000Z',
               'created_at', '2026-01-01T00:00:00.000000Z')
    redis.call('RPUSH', p .. ':queue:' .. q, id)
  else
    redis.call('HSET', jk, 'status', 'failed', 'origin', q, 'data', data, 'exc_info', exc, 'retries_left', 0,
               'retry_intervals', '[10,20,40]', 'worker_name', 'bench')
    redis.call('ZADD', p .. ':failed:' .. q, now + 604800, id)
    redis.call('ZADD', p .. ':siderctl:failures:' .. q, now - i, id)
  end
end
return count
"""


def seed(client, kind: str, total: int) -> None:  # type: ignore[no-untyped-def]
    script = client.register_script(SEED)
    exc = zlib.compress(b'Traceback (most recent call last):\n  File "handler.py", line 3, in handle\n'
                        b"    raise RuntimeError('upstream 503')\nRuntimeError: upstream 503\n")
    data = zlib.compress(json.dumps(["siderctl.handlers.campaign_dispatch.handle", None,
                                     [{"campaignId": "42", "attemptedAt": "2026-01-01T00:00:00Z"}], {}]).encode())
    step = 50_000
    for first in range(0, total, step):
        script(args=["siderhub", QUEUE, kind, first, min(step, total - first), time.time(), exc, data])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/large_registries.json"))
    args = parser.parse_args()

    from siderctl import failures, inspect
    from siderctl.config import load_config

    with private_redis() as (client, url, _work):
        started = time.perf_counter()
        seed(client, "q", args.queued)
        seed(client, "f", args.failed)
        seeded = time.perf_counter() - started
        os.environ["REDIS_URL"] = url
        config = load_config()
        env = {**os.environ, "REDIS_URL": url}
        rows = {
            "status": (lambda: inspect.status(config), ["status", "--json"]),
            "failed ls --limit 50": (lambda: failures.list_page(config, failures.Selection(), 50, None),
                                     ["failed", "ls", "--limit", "50", "--json"]),
        }
        results = {}
        for name, (call, argv) in rows.items():
            call()  # warm up (script loading, imports)
            results[name] = {"in_process_ms": round(timed(call) * 1000, 2),
                             "whole_process_ms": round(run_cli(argv, env) * 1000, 1),
                             "redis_commands": counted(client, call)}
    report = {"machine": machine(), "queued": args.queued, "failed": args.failed,
              "seed_seconds": round(seeded, 1), "results": results}
    print(f"{args.queued:,} queued, {args.failed:,} failed jobs ({machine()})")
    print(f"{'command':<22} {'in-process':>12} {'whole process':>14} {'Redis commands':>15}")
    for name, row in results.items():
        print(f"{name:<22} {row['in_process_ms']:>10.1f}ms {row['whole_process_ms']:>12.1f}ms "
              f"{row['redis_commands']:>15}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
