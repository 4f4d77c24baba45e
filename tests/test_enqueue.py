"""`siderctl enqueue` against a real Redis: typed flags, payload sources, batches, options, bad input."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from siderctl.timeparse import parse_instant

from .conftest import Cli, RedisServer, keyspace


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def test_typed_flags_enqueue_a_json_job_naming_the_handler(cli: Cli, env_url: str, redis: Redis) -> None:
    result = cli("enqueue", "campaign-dispatch", "--campaign-id", "42")
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    assert queue(redis, "campaign-dispatch").get_job_ids() == [job_id]
    job = fetch(redis, job_id)
    assert job.func_name == "siderctl.handlers.campaign_dispatch.handle"
    (payload,) = job.args
    assert payload["campaignId"] == "42"
    attempted = parse_instant(payload["attemptedAt"])
    assert abs((datetime.now(UTC) - attempted).total_seconds()) < 30
    raw = redis.hget(f"siderhub:job:{job_id}", "data")
    assert raw is not None  # RQ zlib-compresses the serialized call: JSON inside, never pickle
    assert json.loads(zlib.decompress(raw))[2] == [payload]
    assert job.timeout == 300 and job.retries_left == 3 and job.failure_ttl == 7 * 86400


def test_json_output_and_every_queue(cli: Cli, env_url: str) -> None:
    for args, expected in [
        (["metrics-sync", "--scope", "hidra", "--triggered-at", "2026-01-31T12:00:00+02:00"],
         {"scope": "hidra", "triggeredAt": "2026-01-31T10:00:00Z"}),
        (["cleanup", "--target", "tmp"], {"target": "tmp"}),
    ]:
        result = cli("enqueue", *args, "--json")
        assert result.exit_code == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["queue"] == args[0] and shown["status"] == "queued" and shown["run_at"] is None
        assert expected.items() <= shown["payload"].items()


def test_payload_literal_file_and_stdin(cli: Cli, env_url: str, redis: Redis, tmp_path: Path) -> None:
    literal = cli("enqueue", "campaign-dispatch", "--payload", '{"campaignId": "a"}')
    (tmp_path / "p.json").write_text('{"campaignId": "b", "attemptedAt": "2026-02-01T00:00:00Z"}')
    from_file = cli("enqueue", "campaign-dispatch", "--payload", "@p.json")
    from_stdin = cli("enqueue", "campaign-dispatch", "--payload", "-", input='{"campaignId": "c"}')
    overridden = cli("enqueue", "campaign-dispatch", "--payload", '{"campaignId": "x"}', "--campaign-id", "d")
    ids = [r.stdout.strip() for r in (literal, from_file, from_stdin, overridden)]
    assert [fetch(redis, i).args[0]["campaignId"] for i in ids] == ["a", "b", "c", "d"]
    assert fetch(redis, ids[1]).args[0]["attemptedAt"] == "2026-02-01T00:00:00Z"


def test_jsonl_batch_is_one_pipeline(cli: Cli, env_url: str, redis: Redis, tmp_path: Path) -> None:
    lines = "\n".join(json.dumps({"campaignId": str(i)}) for i in range(200)) + "\n\n"
    (tmp_path / "batch.jsonl").write_text(lines)
    result = cli("enqueue", "campaign-dispatch", "--jsonl", "batch.jsonl")
    assert result.exit_code == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 200 and "enqueued 200 jobs" in result.stderr
    assert queue(redis, "campaign-dispatch").get_job_ids() == ids
    piped = cli("enqueue", "cleanup", "--jsonl", "-", "--json", input='{"target": "logs"}\n{"target": "audit"}\n')
    shown = json.loads(piped.stdout)
    assert shown["count"] == 2 and [j["payload"]["target"] for j in shown["jobs"]] == ["logs", "audit"]


def test_job_id_is_idempotent(cli: Cli, env_url: str, redis: Redis) -> None:
    first = cli("enqueue", "cleanup", "--target", "jobs", "--job-id", "nightly-2026-12-04")
    assert first.exit_code == 0 and first.stdout.strip() == "nightly-2026-12-04"
    before = keyspace(redis)
    again = cli("enqueue", "cleanup", "--target", "logs", "--job-id", "nightly-2026-12-04")
    assert again.exit_code == 6
    assert "already exists (status: queued); nothing enqueued" in again.stderr
    assert keyspace(redis) == before
    assert fetch(redis, "nightly-2026-12-04").args[0]["target"] == "jobs"


def test_delay_and_at_schedule_the_job(cli: Cli, env_url: str, redis: Redis) -> None:
    delayed = cli("enqueue", "cleanup", "--target", "jobs", "--delay", "5m", "--json")
    assert delayed.exit_code == 0, delayed.stderr
    shown = json.loads(delayed.stdout)
    assert shown["status"] == "scheduled"
    registry = ScheduledJobRegistry("cleanup", connection=redis, serializer=JSONSerializer)
    score = registry.get_scheduled_time(shown["id"])
    expected = datetime.now(UTC) + timedelta(minutes=5)
    assert abs((score - expected).total_seconds()) < 30
    assert queue(redis, "cleanup").count == 0

    at = cli("enqueue", "cleanup", "--target", "jobs", "--at", "2030-01-01T00:00:00Z", "--job-id", "future")
    assert at.exit_code == 0, at.stderr
    assert registry.get_scheduled_time("future") == datetime(2030, 1, 1, tzinfo=UTC)
    assert "scheduled for 2030-01-01T00:00:00Z" in at.stderr
    assert cli("enqueue", "cleanup", "--target", "jobs", "--at", "2030-01-01T00:00:00Z",
               "--job-id", "future").exit_code == 6


def test_queue_policy_from_config_is_applied(cli: Cli, env_url: str, redis: Redis, tmp_path: Path) -> None:
    (tmp_path / "siderctl.toml").write_text(
        '[queues.metrics-sync]\ntimeout = "45s"\nretries = 3\nbackoff = "exponential"\n'
        'backoff_base = "5s"\nbackoff_max = "12s"\nbackoff_jitter = false\nfailure_ttl = "1h"\nresult_ttl = "2h"\n'
    )
    job = fetch(redis, cli("enqueue", "metrics-sync", "--scope", "admin").stdout.strip())
    assert job.timeout == 45 and job.failure_ttl == 3600 and job.result_ttl == 7200
    assert job.retries_left == 3 and job.retry_intervals == [5, 10, 12]


BAD_INPUTS = [
    (["campaign-dispatch", "--payload", '{"campaignId": '], 4, "--payload: malformed JSON"),
    (["campaign-dispatch", "--payload", "[1, 2]"], 4, "must be a JSON object"),
    (["campaign-dispatch", "--payload", '{"campaignId": 42}'], 4, "campaignId: must be a non-empty string"),
    (["campaign-dispatch"], 4, "campaignId: required by campaign-dispatch (--campaign-id)"),
    (["campaign-dispatch", "--campaign-id", "  "], 4, "campaignId: must be a non-empty string"),
    (["campaign-dispatch", "--payload", '{"campaignId": "1", "extra": 1}'], 4,
     "extra: unknown field for campaign-dispatch"),
    (["campaign-dispatch", "--campaign-id", "1", "--scope", "academy"], 4,
     "--scope does not apply to campaign-dispatch"),
    (["campaign-dispatch", "--campaign-id", "1", "--attempted-at", "yesterday"], 4, "attemptedAt: 'yesterday'"),
    (["campaign-dispatch", "--campaign-id", "1", "--attempted-at", "2026-01-01T00:00:00"], 4, "has no timezone"),
    (["metrics-sync", "--scope", "everything"], 4, "scope: must be one of academy, hidra, cybervault, admin"),
    (["cleanup", "--target", "jobs", "--delay", "soon"], 4, "--delay: 'soon' is not a duration"),
    (["cleanup", "--target", "jobs", "--at", "next week"], 4, "--at: 'next week' is not an ISO-8601"),
    (["cleanup", "--target", "jobs", "--at", "2030-01-01T00:00:00Z", "--delay", "1m"], 4, "cannot be used together"),
    (["cleanup", "--target", "jobs", "--job-id", "has space"], 4, "--job-id: 'has space' may hold only"),
    (["cleanup", "--payload", "@missing.json"], 4, "--payload: cannot read missing.json"),
    (["cleanup", "--jsonl", "missing.jsonl"], 4, "--jsonl: cannot read missing.jsonl"),
    (["cleanup", "--jsonl", "-", "--payload", "{}"], 2, "use either --payload or --jsonl"),
    (["no-such-queue", "--target", "jobs"], 5, "unknown queue 'no-such-queue'"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUTS)
def test_bad_input_one_line_documented_code_nothing_written(
    cli: Cli, env_url: str, redis: Redis, args: list[str], code: int, message: str
) -> None:
    cli("enqueue", "cleanup", "--target", "jobs", "--job-id", "existing")
    before = keyspace(redis)
    result = cli("enqueue", *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert keyspace(redis) == before


def test_bad_jsonl_line_enqueues_nothing_and_names_the_line(cli: Cli, env_url: str, redis: Redis) -> None:
    before = keyspace(redis)
    lines = '{"target": "jobs"}\n{"target": "logs"}\n{"target": "logs"\n'
    result = cli("enqueue", "cleanup", "--jsonl", "-", input=lines)
    assert result.exit_code == 4 and "--jsonl line 3: malformed JSON" in result.stderr
    invalid = cli("enqueue", "cleanup", "--jsonl", "-", input='{"target": "jobs"}\n\n{"target": "x"}\n')
    assert invalid.exit_code == 4 and "line 3: target: must be one of" in invalid.stderr
    empty = cli("enqueue", "cleanup", "--jsonl", "-", input="\n")
    assert empty.exit_code == 4 and "no payloads" in empty.stderr
    assert keyspace(redis) == before


def test_config_and_connection_failures(cli: Cli, redis: Redis, redis_server: object, tmp_path: Path) -> None:
    before = keyspace(redis)
    args = ["enqueue", "cleanup", "--target", "jobs"]
    down = cli("--redis-url", "redis://:hunter2@127.0.0.1:1/0", *args)
    assert down.exit_code == 8 and "cannot reach Redis at redis://:***@127.0.0.1:1/0" in down.stderr
    assert "hunter2" not in down.stderr and down.stderr.count("\n") == 1
    malformed = cli("--redis-url", "redis://127.0.0.1:port/0", *args)
    assert malformed.exit_code == 3 and "--redis-url (redis.url): malformed URL" in malformed.stderr
    bad_prefix = cli("--redis-url", "redis://127.0.0.1:1/0", *args, env={"REDIS_PREFIX": "no spaces"})
    assert bad_prefix.exit_code == 3 and "REDIS_PREFIX (redis.prefix)" in bad_prefix.stderr
    (tmp_path / "siderctl.toml").write_text("[redis]\nurl = 5\n")
    bad_file = cli(*args)
    assert bad_file.exit_code == 3 and "redis.url: must be a string" in bad_file.stderr
    (tmp_path / "siderctl.toml").write_text("not = [toml")
    unparsable = cli(*args)
    assert unparsable.exit_code == 3 and "invalid TOML" in unparsable.stderr
    assert keyspace(redis) == before


def test_jobs_disabled_refuses(cli: Cli, env_url: str, redis: Redis) -> None:
    for name in ("JOBS_ENABLED", "BULLMQ_ENABLED"):
        result = cli("enqueue", "cleanup", "--target", "jobs", env={name: "false"})
        assert result.exit_code == 7 and "JOBS_ENABLED=false" in result.stderr
    assert keyspace(redis) == {}


def test_rq_own_worker_runs_siderctl_jobs(cli: Cli, redis: Redis, redis_server: RedisServer, tmp_path: Path) -> None:
    """siderctl writes jobs itself (no rq import): RQ's SimpleWorker must still read and run them."""
    from rq import SimpleWorker

    (tmp_path / "siderctl.toml").write_text(
        f'[redis]\nurl = "{redis_server.url}"\n[queues.campaign-dispatch]\nhandler = "tests.sample_handlers:plain"\n')
    job_id = cli("enqueue", "campaign-dispatch", "--campaign-id", "77").stdout.strip()
    later = cli("enqueue", "campaign-dispatch", "--campaign-id", "78", "--delay", "1h").stdout.strip()
    queue = Queue("campaign-dispatch", connection=redis, serializer=JSONSerializer)
    assert queue.job_ids == [job_id] and queue.scheduled_job_registry.get_job_ids() == [later]
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == "finished" and job.return_value() == "77"
    assert job.meta == {"source": "cli"} and job.retries_left == 3 and len(job.retry_intervals) == 3


def test_lite_client_auth_and_database(tmp_path: Path) -> None:
    """`enqueue` talks RESP itself for redis:// URLs: ACL users, passwords, databases, errors."""
    from siderctl.lite import supported

    from .conftest import run_siderctl, start_redis

    server = start_redis(tmp_path / "acl")
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all")
        url = f"redis://127.0.0.1:{server.port}/3"
        env = {"REDIS_USERNAME": "app", "REDIS_PASSWORD": "s3cret", "REDIS_URL": url}
        done = run_siderctl("enqueue", "cleanup", "--target", "logs", env=env)
        assert done.returncode == 0, done.stderr
        admin.execute_command("SELECT", 3)
        assert admin.llen("siderhub:queue:cleanup") == 1
        wrong = run_siderctl("enqueue", "cleanup", "--target", "logs", env={**env, "REDIS_PASSWORD": "nope"})
        assert wrong.returncode == 8 and "cannot reach Redis" in wrong.stderr and "nope" not in wrong.stderr
        down = run_siderctl("enqueue", "cleanup", "--target", "logs",
                            env={"REDIS_URL": "redis://127.0.0.1:1/0"})
        assert down.returncode == 8 and "cannot reach Redis at redis://127.0.0.1:1/0" in down.stderr
    finally:
        server.stop()
    assert supported("redis://h:1/0") and supported("unix:///tmp/r.sock?db=2")
    assert not supported("rediss://h:1/0") and not supported("redis://h:1/0?socket_keepalive=true")
