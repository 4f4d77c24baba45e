"""`siderctl status`: counts per state, oldest age, workers; strictly read-only."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from .conftest import Cli, keyspace


def populate(redis: Redis) -> None:
    q = Queue("cleanup", connection=redis, serializer=JSONSerializer)
    q.enqueue("siderctl.handlers.cleanup.handle", {"target": "jobs"})
    q.enqueue("siderctl.handlers.cleanup.handle", {"target": "logs"})
    q.enqueue_in(timedelta(minutes=5), "siderctl.handlers.cleanup.handle", {"target": "tmp"})
    done = q.enqueue("siderctl.handlers.cleanup.handle", {"target": "audit"})
    q.remove(done)
    FinishedJobRegistry(queue=q).add(done, ttl=3600)
    # An entry that expired long ago: `rq info` would clean it; status must leave it alone.
    FailedJobRegistry(queue=q).add(done, ttl=-1)
    redis.zadd(FailedJobRegistry(queue=q).key, {"expired-job": 1})
    redis.zadd(StartedJobRegistry(queue=q).key, {"running-job:exec": time.time() + 60})
    redis.sadd("siderhub:workers:cleanup", "siderhub:worker:host-1.cleanup")


def test_status_json_counts_every_state(cli: Cli, env_url: str, redis: Redis) -> None:
    populate(redis)
    result = cli("status", "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["prefix"] == "siderhub" and shown["server"] == env_url
    by_name = {q["name"]: q for q in shown["queues"]}
    assert list(by_name) == ["campaign-dispatch", "metrics-sync", "cleanup"]
    cleanup = by_name["cleanup"]
    assert {k: cleanup[k] for k in ("queued", "scheduled", "started", "deferred", "finished", "failed",
                                    "canceled")} == {"queued": 2, "scheduled": 1, "started": 1, "deferred": 0,
                                                     "finished": 1, "failed": 2, "canceled": 0}
    assert cleanup["workers"] == ["host-1.cleanup"]
    assert 0 <= cleanup["oldest_queued_age"] < 30
    assert by_name["metrics-sync"]["oldest_queued_age"] is None


def test_status_is_read_only(cli: Cli, env_url: str, redis: Redis) -> None:
    populate(redis)
    before = keyspace(redis)
    assert cli("status").exit_code == 0
    assert cli("status", "--json").exit_code == 0
    assert keyspace(redis) == before  # the expired failed entry is still there


def test_oldest_age_reads_the_head_job(cli: Cli, env_url: str, redis: Redis) -> None:
    q = Queue("metrics-sync", connection=redis, serializer=JSONSerializer)
    job = q.enqueue("siderctl.handlers.metrics_sync.handle", {"scope": "admin"})
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    redis.hset(job.key, "enqueued_at", hour_ago)
    q.enqueue("siderctl.handlers.metrics_sync.handle", {"scope": "hidra"})
    shown = json.loads(cli("status", "--json").stdout)
    age = next(q["oldest_queued_age"] for q in shown["queues"] if q["name"] == "metrics-sync")
    assert 3590 < age < 3630


def test_status_table_masks_password_and_lists_queues(cli: Cli, redis: Redis, redis_server: object) -> None:
    port = redis.connection_pool.connection_kwargs["port"]
    plain = cli("--redis-url", f"redis://:secret@127.0.0.1:{port}/0", "status")
    assert plain.exit_code == 0, plain.stderr
    assert "secret" not in plain.stdout + plain.stderr
    assert f"redis://:***@127.0.0.1:{port}/0" in plain.stdout
    for name in ("campaign-dispatch", "metrics-sync", "cleanup", "queued", "failed", "workers"):
        assert name in plain.stdout
    assert "prefix siderhub" in plain.stdout


def test_status_unreachable_redis(cli: Cli) -> None:
    result = cli("--redis-url", "redis://127.0.0.1:1/0", "status")
    assert result.exit_code == 8 and result.stderr.startswith("siderctl: error: cannot reach Redis")
