"""Failed-job triage and queue control against a real Redis, with failures made by a real worker."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis

from .conftest import Cli, RedisServer, keyspace
from .test_worker import QUEUE, ROOT, InProcess, enqueue, runs, spawn, status_of, wait_for, write_config


@pytest.fixture
def conf(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> Path:
    path = tmp_path / "siderctl.toml"
    write_config(path, redis_server.url, retries=0)
    return path


def fail_jobs(redis: Redis, *campaigns: str) -> list[str]:
    """Enqueue and run jobs one at a time so their failure times follow the enqueue order."""
    ids = enqueue(*campaigns)
    worker = InProcess(concurrency=1)
    wait_for(lambda: all(status_of(redis, i) in ("failed", "finished") for i in ids), what="the jobs to settle")
    worker.stop()
    return ids


def listed(cli: Cli, *args: str) -> dict:
    result = cli("failed", "ls", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_failed_ls_order_filters_and_paging(conf: Path, redis: Redis, cli: Cli) -> None:
    ids = fail_jobs(redis, "fail:1", "perm:2", "fail:3", "ok:4", "fail:5", "perm:6", "fail:7")
    failed = [i for i, c in zip(ids, ["f", "p", "f", "ok", "f", "p", "f"], strict=True) if c != "ok"]
    shown = listed(cli)
    assert [f["id"] for f in shown["failures"]] == failed[::-1]  # newest failure first
    first = shown["failures"][0]
    assert first["error"] == {"type": "RuntimeError", "message": "boom 7"} and first["attempts"] == 1
    assert first["payload"]["campaignId"] == "fail:7" and first["queue"] == QUEUE and shown["next_cursor"] is None

    pages, cursor = [], None
    while True:
        page = listed(cli, "--limit", "2", *(["--cursor", cursor] if cursor else []))
        pages.append([f["id"] for f in page["failures"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2] and [i for p in pages for i in p] == failed[::-1]

    assert [f["id"] for f in listed(cli, "--error", "rejected")["failures"]] == [failed[4], failed[1]]
    assert listed(cli, "--queue", "cleanup")["failures"] == []
    redis.zadd(f"siderhub:siderctl:failures:{QUEUE}", {failed[0]: time.time() - 7200})  # failed 2 h ago
    assert failed[0] not in [f["id"] for f in listed(cli, "--since", "1h")["failures"]]
    table = cli("failed", "ls", "--limit", "1")
    assert table.exit_code == 0 and failed[-1] in table.stdout and "--cursor" in table.stderr
    assert cli("failed", "ls", "--cursor", "garbage").exit_code == 4
    assert cli("failed", "ls", "--queue", "nope").exit_code == 5


def test_paging_across_equal_failure_times(conf: Path, redis: Redis, cli: Cli) -> None:
    """Index entries with identical scores, across queues: no gap, no repeat."""
    stamp = time.time()
    expected = []
    for queue in ("campaign-dispatch", "cleanup"):
        for n in range(5):
            job_id = f"tie-{queue[:2]}-{n}"
            redis.hset(f"siderhub:job:{job_id}", mapping={"status": "failed", "origin": queue, "data": json.dumps(
                ["x.y", None, [{"campaignId": str(n)}], {}]), "exc_info": "ValueError: tie"})
            redis.zadd(f"siderhub:failed:{queue}", {job_id: stamp + 1000})
            redis.zadd(f"siderhub:siderctl:failures:{queue}", {job_id: stamp})
            expected.append(job_id)
    redis.zadd("siderhub:siderctl:failures:cleanup", {"gone-from-registry": stamp})  # stale: skipped
    seen, cursor = [], None
    while True:
        page = listed(cli, "--limit", "3", *(["--cursor", cursor] if cursor else []))
        seen += [f["id"] for f in page["failures"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_failed_show_and_group(conf: Path, redis: Redis, cli: Cli, redis_server: RedisServer) -> None:
    write_config(conf, redis_server.url, retries=1, backoff_base="1s")
    twice, *_ = fail_jobs(redis, "fail:10", "fail:22", "perm:x")
    shown = json.loads(cli("failed", "show", twice, "--json").stdout)
    assert shown["payload"]["campaignId"] == "fail:10" and shown["attempts"] == 2
    assert [a["outcome"] for a in shown["attempt_history"]] == ["failed", "failed"]
    assert all(a["started_at"] and a["error"] == "RuntimeError: boom 10" for a in shown["attempt_history"])
    assert 'raise RuntimeError(f"boom {arg}")' in shown["traceback"]
    text = cli("failed", "show", twice)
    assert text.exit_code == 0 and "Traceback (most recent call last)" in text.stdout
    assert "RuntimeError: boom 10" in text.stdout

    groups = json.loads(cli("failed", "group", "--json").stdout)
    assert [(g["count"], g["error"]["type"], g["error"]["message"]) for g in groups] == [
        (2, "RuntimeError", "boom <n>"), (1, "PermanentError", "rejected x")]
    assert groups[0]["top_frame"] == "sample_handlers.py:record" and groups[0]["queues"] == [QUEUE]

    missing = cli("failed", "show", "no-such-job")
    assert missing.exit_code == 5 and "no job no-such-job" in missing.stderr
    (done,) = fail_jobs(redis, "ok:fine")
    assert cli("failed", "show", done).exit_code == 5


def test_retry_and_rm(conf: Path, redis: Redis, cli: Cli) -> None:
    a, b, c = fail_jobs(redis, "fail:a", "perm:b", "fail:c")
    before = keyspace(redis)
    dry = cli("failed", "retry", "--all", "--error", "boom", "--dry-run")
    assert dry.exit_code == 0 and sorted(dry.stdout.split()) == sorted([a, c]) and keyspace(redis) == before
    refused = cli("failed", "rm", "--all")  # no terminal, no --yes
    assert refused.exit_code == 2 and "refusing without --yes" in refused.stderr and keyspace(redis) == before
    assert cli("failed", "retry", "--all", "--error", "no such text", "--yes").exit_code == 11
    assert cli("failed", "retry", "nope", "--yes").exit_code == 5
    assert cli("failed", "retry", a, "--all").exit_code == 2
    assert keyspace(redis) == before

    assert cli("queue", "close", QUEUE).exit_code == 0
    closed = keyspace(redis)
    refused_retry = cli("failed", "retry", "--all", "--yes")
    assert refused_retry.exit_code == 10 and "refusing to retry into it" in refused_retry.stderr
    assert keyspace(redis) == closed
    assert cli("queue", "open", QUEUE).exit_code == 0

    retried = cli("failed", "retry", "--all", "--error", "boom", "--yes", "--json")
    assert json.loads(retried.stdout) == {"action": "failed retry", "selected": 2, "changed": 2,
                                          "by_queue": {QUEUE: 2}}
    assert redis.lrange(f"siderhub:queue:{QUEUE}", 0, -1) == [c.encode(), a.encode()]
    assert status_of(redis, a) == "queued" and redis.ttl(f"siderhub:job:{a}") == -1
    assert [f["id"] for f in listed(cli)["failures"]] == [b]

    removed = cli("failed", "rm", b, "--yes")
    assert removed.exit_code == 0 and "failed rm: 1 job(s)" in removed.stdout
    assert not redis.exists(f"siderhub:job:{b}", f"siderhub:results:{b}")
    assert redis.zcard(f"siderhub:failed:{QUEUE}") == 0
    actions = [e["action"] for e in json.loads(cli("audit", "ls", "--json").stdout)]
    assert actions == ["failed rm", "failed retry", "queue open", "queue close"]


def test_confirmation_on_a_terminal(conf: Path, redis: Redis, tmp_path: Path) -> None:
    (job,) = fail_jobs(redis, "fail:tty")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    for answer, status in ((b"n\n", "failed"), (b"y\n", None)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "siderctl", "failed", "rm", job], stdin=follower,
                                stdout=subprocess.PIPE, stderr=follower, env=env, cwd=tmp_path)
        os.close(follower)
        prompt = b""
        while b"Continue?" not in prompt:
            prompt += os.read(leader, 1024)
        os.write(leader, answer)
        proc.wait(20)
        os.close(leader)
        assert proc.returncode == (1 if status else 0)
        assert status_of(redis, job) == status


def test_pause_and_resume_a_running_worker(conf: Path, redis: Redis, cli: Cli) -> None:
    worker = InProcess()
    assert cli("queue", "pause", QUEUE).stdout == f"{QUEUE}: paused, accepting jobs\n"
    (job,) = enqueue("ok:later")  # enqueue still works while paused
    time.sleep(1.5)
    assert status_of(redis, job) == "queued"
    assert cli("queue", "resume", QUEUE).exit_code == 0
    wait_for(lambda: status_of(redis, job) == "finished")
    worker.stop()
    states = {q["name"]: q["state"] for q in json.loads(cli("queue", "ls", "--json").stdout)}
    assert states == {QUEUE: "open", "metrics-sync": "open", "cleanup": "open"}


def test_drain_completes_and_refuses_new_jobs(conf: Path, redis: Redis, cli: Cli) -> None:
    enqueue(*("sleep:0.05" for _ in range(20)))
    worker = InProcess(concurrency=4)
    result = cli("queue", "drain", QUEUE, "--timeout", "60s", "--json")
    worker.stop()
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["drained"] is True and report["queued"] == 0 and report["started"] == 0
    assert report["finished"] >= 1 and report["finished"] + report["failed"] <= 20
    refused = cli("enqueue", QUEUE, "--campaign-id", "late")
    assert refused.exit_code == 10 and "queue campaign-dispatch is draining" in refused.stderr
    assert cli("queue", "open", QUEUE).exit_code == 0
    assert cli("enqueue", QUEUE, "--campaign-id", "late").exit_code == 0


def test_drain_times_out(conf: Path, redis: Redis, cli: Cli) -> None:
    enqueue("ok:1", "ok:2", "ok:3")  # no worker runs
    result = cli("queue", "drain", QUEUE, "--timeout", "1s")
    assert result.exit_code == 12 and "timed out" in result.stderr
    assert "still queued:          3" in result.stdout


def test_close_makes_the_worker_exit(conf: Path, redis: Redis, cli: Cli, tmp_path: Path) -> None:
    proc = spawn(tmp_path, QUEUE)
    try:
        wait_for(lambda: redis.scard("siderhub:workers") == 1)
        assert cli("queue", "close", QUEUE).exit_code == 0
        assert proc.wait(15) == 0
        assert "queue campaign-dispatch closed" in (tmp_path / "worker.log").read_text()
        assert cli("enqueue", QUEUE, "--campaign-id", "x").exit_code == 10
    finally:
        if proc.poll() is None:
            proc.kill()


def test_purge_with_export_then_restore(conf: Path, redis: Redis, cli: Cli, tmp_path: Path) -> None:
    (failed,) = fail_jobs(redis, "fail:p")
    enqueue("ok:1", "ok:2", "ok:3")
    assert cli("enqueue", QUEUE, "--campaign-id", "later", "--delay", "1h").exit_code == 0
    before = keyspace(redis)
    dry = cli("queue", "purge", QUEUE, "--scheduled", "--failed", "--dry-run", "--json")
    assert json.loads(dry.stdout)["counts"] == {"queued": 3, "scheduled": 1, "failed": 1}
    assert cli("queue", "purge", QUEUE).exit_code == 2  # no terminal, no --yes
    assert keyspace(redis) == before

    export = tmp_path / "purged.jsonl"
    done = cli("queue", "purge", QUEUE, "--scheduled", "--failed", "--export", str(export), "--yes")
    assert done.exit_code == 0, done.stderr
    assert "queue purge: 5 job(s)" in done.stdout
    assert redis.llen(f"siderhub:queue:{QUEUE}") == 0 and not redis.exists(f"siderhub:job:{failed}")
    assert not [k for k in redis.scan_iter("siderhub:job:*")]
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert sorted(p["campaignId"] for p in lines) == ["fail:p", "later", "ok:1", "ok:2", "ok:3"]

    again = cli("queue", "purge", QUEUE, "--export", str(export), "--yes")
    assert again.exit_code == 11  # nothing left to purge
    restored = cli("enqueue", QUEUE, "--jsonl", str(export))
    assert restored.exit_code == 0 and redis.llen(f"siderhub:queue:{QUEUE}") == 5
    enqueue("ok:new")
    clash = cli("queue", "purge", QUEUE, "--export", str(export), "--yes")
    assert clash.exit_code == 4 and "file exists" in clash.stderr and redis.llen(f"siderhub:queue:{QUEUE}") == 6
    assert [e["action"] for e in json.loads(cli("audit", "ls", "--json").stdout)] == ["queue purge"]


def test_worker_ls_and_stop(conf: Path, redis: Redis, cli: Cli, tmp_path: Path) -> None:
    (slow,) = enqueue("sleep:1.5")
    proc = spawn(tmp_path, QUEUE, "--name", "busy-one")
    try:
        wait_for(lambda: runs(redis).get(slow) == 1, what="the job to be running")
        (shown,) = json.loads(cli("worker", "ls", "--json").stdout)
        assert shown["name"] == "busy-one" and shown["pid"] == proc.pid and shown["queues"] == [QUEUE]
        assert shown["current_jobs"] == [slow] and shown["busy_since"] and shown["state"] == "busy"
        assert "busy-one" in cli("worker", "ls").stdout
        assert cli("worker", "stop", "nobody").exit_code == 5
        assert cli("worker", "stop").exit_code == 2
        assert cli("worker", "stop", "busy-one").exit_code == 0
        assert proc.wait(15) == 0
        assert status_of(redis, slow) == "finished"  # warm: the job finished
    finally:
        if proc.poll() is None:
            proc.kill()

    (stuck,) = enqueue("sleep:30")
    cold = spawn(tmp_path, QUEUE, "--name", "cold-one", log="cold")
    try:
        wait_for(lambda: runs(redis).get(stuck) == 1, what="the job to be running")
        assert cli("worker", "stop", "--all", "--now").exit_code == 0
        assert cold.wait(15) == 9
        assert status_of(redis, stuck) == "queued"
    finally:
        if cold.poll() is None:
            cold.kill()
    actions = [e["action"] for e in json.loads(cli("audit", "ls", "--json").stdout)]
    assert actions == ["worker stop --now", "worker stop"]


def test_audit_records_queue_actions(conf: Path, redis: Redis, cli: Cli) -> None:
    for action in ("pause", "resume", "close", "open"):
        assert cli("queue", action, "cleanup").exit_code == 0
    assert cli("queue", "drain", "cleanup", "--timeout", "5s").exit_code == 0
    entries = json.loads(cli("audit", "ls", "--json", "--queue", "cleanup").stdout)
    assert [e["action"] for e in entries] == ["queue drain", "queue open", "queue close", "queue resume",
                                              "queue pause"]
    assert all(e["who"].count("@") == 1 and e["at"].endswith("Z") for e in entries)
    assert json.loads(cli("audit", "ls", "--json", "--queue", QUEUE).stdout) == []
    assert len(json.loads(cli("audit", "ls", "--json", "-n", "2").stdout)) == 2
    assert cli("queue", "pause", "nope").exit_code == 5


def test_scheduler_skips_slots_of_a_closed_queue(conf: Path, redis: Redis, cli: Cli) -> None:
    from siderctl.config import load_config
    from siderctl.scheduler import Scheduler

    assert cli("queue", "close", "cleanup").exit_code == 0
    scheduler = Scheduler(load_config(), redis, clock=lambda: 1_800_000_000.0)
    scheduler.tick()
    assert redis.llen("siderhub:queue:cleanup") == 0
    assert redis.hget("siderhub:siderctl:schedule:cleanup:jobs", "last_slot") is not None  # skipped, not retried


def test_signals_still_work_with_the_command_listener(conf: Path, redis: Redis, tmp_path: Path) -> None:
    proc = spawn(tmp_path, QUEUE)
    wait_for(lambda: redis.scard("siderhub:workers") == 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_lite_client_reads_what_redis_py_reads(conf: Path, redis: Redis, redis_server: RedisServer) -> None:
    """One-shot reads go through siderctl.lite for plain URLs: the same answers as through redis-py."""
    from siderctl import failures, lite
    from siderctl.config import load_config
    from siderctl.inspect import _queue_statuses

    fail_jobs(redis, "fail:1", "perm:2", "ok:3", "fail:4")
    enqueue("ok:5", "ok:6")
    config = load_config()
    with lite.connect(config) as quick:
        assert isinstance(quick, lite.LiteRedis)
        def no_age(statuses: list) -> list:  # the age moves between the two reads
            return [replace(q, oldest_queued_age=q.oldest_queued_age is not None) for q in statuses]

        assert no_age(_queue_statuses(quick, "siderhub")) == no_age(_queue_statuses(redis, "siderhub"))
        for cursor in (None, failures.page(redis, "siderhub", failures.Selection(), 1, None).next_cursor):
            assert failures.page(quick, "siderhub", failures.Selection(), 2, cursor) == failures.page(
                redis, "siderhub", failures.Selection(), 2, cursor)
