"""Metrics endpoint, health, the live view, JSON logs, completions and the command reference."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from .conftest import Cli, RedisServer, free_port, start_redis
from .test_worker import QUEUE, ROOT, InProcess, enqueue, status_of, wait_for, write_config


@pytest.fixture
def conf(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> Path:
    path = tmp_path / "siderctl.toml"
    write_config(path, redis_server.url, retries=0)
    return path


def launch(tmp_path: Path, *args: str, log: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "siderctl", *args], env=env, cwd=tmp_path, text=True,
                            stdout=(tmp_path / f"{log}.out").open("w"), stderr=(tmp_path / f"{log}.log").open("w"))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, parsed by prometheus-client's own parser."""
    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    text = wait_for(fetch, what="the metrics endpoint")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_serve_exports_the_redis_view(conf: Path, redis: Redis, tmp_path: Path) -> None:
    enqueue("ok:1", "ok:2", "ok:3")
    redis.set("siderhub:siderctl:scheduler:leader", "host:1:abc", px=60_000)
    port = free_port()
    proc = launch(tmp_path, "metrics", "serve", "--port", str(port), log="serve")
    try:
        samples = scrape(port)
        assert sample(samples, "siderctl_redis_up") == 1
        assert sample(samples, "rq_jobs", queue=QUEUE, status="queued") == 3
        assert sample(samples, "rq_jobs", queue="cleanup", status="failed") == 0
        assert sample(samples, "siderctl_scheduler_has_leader") == 1
        assert sample(samples, "siderctl_queue_accepting", queue=QUEUE) == 1
        assert (sample(samples, "siderctl_queue_oldest_job_age_seconds", queue=QUEUE) or 0) >= 0
        assert sample(samples, "siderctl_workers", queue=QUEUE, state="idle") == 0

        # a scrape costs the same number of Redis commands with 3 or 503 queued jobs
        def cost() -> int:
            before = sum(v["calls"] for k, v in redis.info("commandstats").items() if k != "cmdstat_info")
            scrape(port)
            return sum(v["calls"] for k, v in redis.info("commandstats").items() if k != "cmdstat_info") - before

        small = cost()
        enqueue(*(f"ok:{i}" for i in range(500)))
        assert cost() == small
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_worker_metrics_count_and_time_jobs(conf: Path, redis: Redis, tmp_path: Path) -> None:
    port = free_port()
    proc = launch(tmp_path, "worker", "start", QUEUE, "--metrics-port", str(port), log="worker")
    try:
        ids = enqueue("ok:1", "ok:2", "perm:3")
        wait_for(lambda: all(status_of(redis, i) in ("finished", "failed") for i in ids))
        samples = wait_for(lambda: (s := scrape(port)) and sample(
            s, "siderctl_worker_jobs_total", queue=QUEUE, outcome="finished") == 2 and s)
        assert sample(samples, "siderctl_worker_jobs_total", queue=QUEUE, outcome="failed") == 1
        assert sample(samples, "siderctl_job_duration_seconds_count", queue=QUEUE) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


@pytest.mark.slow
def test_up_merges_every_process_metrics(conf: Path, redis: Redis, tmp_path: Path,
                                        redis_server: RedisServer) -> None:
    write_config(conf, redis_server.url, processes=2, retries=0)
    port = free_port()
    proc = launch(tmp_path, "up", "--metrics-port", str(port), log="up")
    try:
        ids = enqueue(*(f"ok:{i}" for i in range(20)))
        wait_for(lambda: all(status_of(redis, i) == "finished" for i in ids))
        samples = wait_for(lambda: (s := scrape(port)) and sample(
            s, "siderctl_worker_jobs_total", queue=QUEUE, outcome="finished") == 20 and s)
        assert sample(samples, "rq_jobs", queue=QUEUE, status="finished") == 20
        assert sample(samples, "siderctl_workers", queue=QUEUE, state="idle") == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def health(cli: Cli, *args: str) -> tuple[int, dict]:
    result = cli("health", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def test_health_in_each_state(conf: Path, redis: Redis, cli: Cli) -> None:
    code, report = health(cli)
    assert code == 13 and report["healthy"] is False
    assert "queue campaign-dispatch: no live worker" in report["reasons"]
    assert any(r.startswith("scheduler: no live leader") for r in report["reasons"])

    worker = InProcess(queues=(QUEUE, "metrics-sync", "cleanup"))
    redis.set("siderhub:siderctl:scheduler:leader", "me", px=60_000)
    wait_for(lambda: redis.scard("siderhub:workers") == 1)
    code, report = health(cli)
    assert (code, report["reasons"]) == (0, []), report
    assert cli("health").stdout == "healthy\n"

    minute = int(time.time() // 60)
    redis.hset(f"siderhub:siderctl:stats:cleanup:{minute}", mapping={"finished": 10, "failed": 5})
    code, report = health(cli, "--max-failed-rate", "20%")
    assert code == 13 and report["reasons"] == [
        "queue cleanup: 33% of 15 attempts failed in the last 5m (max 20%)"]
    assert health(cli, "--max-failed-rate", "50%")[0] == 0
    assert cli("health", "--max-failed-rate", "lots").exit_code == 4

    assert cli("queue", "pause", QUEUE).exit_code == 0  # a paused queue is not checked
    (stale,) = enqueue("ok:late")
    redis.hset(f"siderhub:job:{stale}", "enqueued_at", "2020-01-01T00:00:00.000000Z")
    assert health(cli, "--max-failed-rate", "50%")[0] == 0

    worker.stop()
    assert cli("queue", "resume", QUEUE).exit_code == 0
    code, report = health(cli, "--max-failed-rate", "50%", "--max-queue-age", "1h")
    assert code == 13 and report["reasons"][0] == "queue campaign-dispatch: no live worker"
    assert report["reasons"][1].startswith("queue campaign-dispatch: oldest queued job is ")
    assert report["reasons"][1].endswith(" old (max 1h)")
    text = cli("health", "--max-failed-rate", "50%")
    assert text.exit_code == 13 and "no live worker" in text.stdout and "unhealthy" in text.stderr


def test_health_when_redis_is_down(cli: Cli) -> None:
    result = cli("health", "--json", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 13
    assert json.loads(result.stdout)["reasons"][0].startswith("cannot reach Redis at redis://127.0.0.1")


def test_status_watch_in_a_terminal(conf: Path, redis: Redis, tmp_path: Path, cli: Cli) -> None:
    (failed,) = enqueue("perm:watch")
    worker = InProcess()
    wait_for(lambda: status_of(redis, failed) == "failed")
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "siderctl", "status", "--watch", "--interval", "0.3"],
                            stdin=follower, stdout=follower, stderr=follower, env=env, cwd=tmp_path)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 20
    while output.count(b"latest failures") < 3 and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            output += os.read(leader, 65536)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert proc.wait(10) == 0
    while select.select([leader], [], [], 0.2)[0]:
        try:
            output += os.read(leader, 65536)
        except OSError:
            break
    os.close(leader)
    worker.stop()
    text = output.decode("utf-8", "replace")
    assert text.count("latest failures") >= 3 and "campaign-dispatch" in text and "PermanentError" in text
    assert "\x1b[?1049l" in text  # left the alternate screen: the terminal is as it was
    assert max(len(line) for line in text.replace("\x1b", "\n").splitlines()) <= 120
    piped = cli("status", "--watch")
    assert piped.exit_code == 2 and "needs" not in piped.stdout


def test_json_logs_parse_and_hide_secrets(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "secret")
    try:
        server.client().config_set("requirepass", "hunter2")
        url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
        write_config(tmp_path / "siderctl.toml", url)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "siderctl", "enqueue", QUEUE, "--campaign-id", "perm:x"], env=env,
                       cwd=tmp_path, check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-m", "siderctl", "worker", "start", "--burst", "--log-format",
                               "json", "--log-level", "info"], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in done.stderr.splitlines()]
        assert {"ts", "level", "logger", "pid", "message"} <= set(records[0])
        assert any(r["level"] == "error" and r["logger"] == f"jobs.{QUEUE}" and "rejected x" in r["message"]
                   for r in records)
        assert "hunter2" not in done.stderr
        quiet = subprocess.run([sys.executable, "-m", "siderctl", "worker", "start", "--burst", "--log-level",
                                "error"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert quiet.returncode == 0 and quiet.stderr == ""
        server.stop()
        down = subprocess.run([sys.executable, "-m", "siderctl", "status"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 8 and ":***@" in down.stderr and "hunter2" not in down.stderr
    finally:
        server.stop()


def test_redact() -> None:
    from siderctl.config import redact

    assert redact("to redis://app:pw@h:1/0 and rediss://:x@h?password=y&db=1 token=t") == (
        "to redis://app:***@h:1/0 and rediss://:***@h?password=***&db=1 token=***")


def test_dynamic_completion(conf: Path, redis: Redis, tmp_path: Path) -> None:
    (failed,) = enqueue("perm:complete")
    worker = InProcess()
    wait_for(lambda: status_of(redis, failed) == "failed")
    worker.stop()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_SIDERCTL_COMPLETE": "complete_bash"}

    def complete(words: str) -> list[str]:
        parts = words.split(" ")
        out = subprocess.run([sys.executable, "-m", "siderctl"], env={**env, "COMP_WORDS": words,
                             "COMP_CWORD": str(len(parts) - 1)}, cwd=tmp_path, capture_output=True, text=True,
                             timeout=30)
        return out.stdout.split()

    assert complete("siderctl failed show ") == [failed]
    assert complete("siderctl queue pause c") == ["campaign-dispatch", "cleanup"]
    assert complete("siderctl enqueue m") == ["metrics-sync"]


def test_command_reference_is_current() -> None:
    from siderctl.cli.reference import reference

    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == reference(), "docs/cli.md is stale: python -m siderctl.cli.reference > docs/cli.md"
    for command in ("siderctl failed retry", "siderctl queue drain", "siderctl health", "siderctl metrics serve",
                    "siderctl up", "siderctl worker start"):
        assert f"## {command}\n" in committed
