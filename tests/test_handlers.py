"""The built-in handlers against a local HTTP server and a real Redis."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from siderctl.config import Config, load_config
from siderctl.handlers import JobContext, PermanentError, campaign_dispatch, cleanup, load, metrics_sync
from siderctl.handlers._http import RemoteError

from .conftest import Cli, RedisServer


class Remote(BaseHTTPRequestHandler):
    """Answers by path: /ok, /bad, /down, /busy, /slow, /metrics, /html."""

    seen: list[dict[str, Any]] = []  # noqa: RUF012 (shared with the test on purpose)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Remote.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                            "body": json.loads(body) if body else None})
        status, payload, kind = {
            "/ok": (202, b'{"accepted": true}', "application/json"),
            "/bad": (400, b"campaign is archived\nmore", "text/plain"),
            "/down": (503, b"maintenance", "text/plain"),
            "/busy": (429, b"", "text/plain"),
            "/metrics": (200, b'{"users": 10, "active": 3}', "application/json"),
            "/html": (200, b"<html>proxy error</html>", "text/html"),
        }.get(self.path, (404, b"no such path", "text/plain"))
        if self.path == "/slow":
            time.sleep(2)
            status, payload, kind = 200, b"{}", "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def remote() -> Iterator[str]:
    """A local HTTP server; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    Remote.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def configured(**values: Any) -> Config:
    config = load_config()
    return replace(config, values={**config.values, **values})


def context(config: Config, redis: Redis, queue: str, job_id: str = "job-1", timeout: float = 30) -> JobContext:
    return JobContext(job_id, queue, 1, config, redis, time.monotonic() + timeout)


# --- campaign-dispatch ---------------------------------------------------------------------

def test_dispatch_posts_with_idempotency_key(remote: str, redis: Redis, env_url: str) -> None:
    config = configured(**{"dispatch.url": f"{remote}/ok", "dispatch.token": "s3cret"})
    payload = {"campaignId": "42", "attemptedAt": "2026-12-04T10:00:00Z"}
    result = campaign_dispatch.handle(payload, context(config, redis, "campaign-dispatch", "job-42"))
    assert result == {"campaignId": "42", "status": 202, "response": {"accepted": True}}
    (request,) = Remote.seen
    assert request["method"] == "POST" and request["body"] == payload
    assert request["headers"]["Idempotency-Key"] == "job-42"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(("path", "error", "text"), [
    ("/bad", PermanentError, "Hidra dispatch answered HTTP 400: campaign is archived"),
    ("/down", RemoteError, "Hidra dispatch answered HTTP 503: maintenance"),
    ("/busy", RemoteError, "Hidra dispatch answered HTTP 429"),
    ("/slow", RemoteError, "Hidra dispatch did not answer within 0.5s"),
])
def test_dispatch_failures_are_classified(remote: str, redis: Redis, env_url: str, path: str,
                                          error: type[Exception], text: str) -> None:
    config = configured(**{"dispatch.url": remote + path, "dispatch.timeout": 0.5})
    with pytest.raises(error) as caught:
        campaign_dispatch.handle({"campaignId": "1"}, context(config, redis, "campaign-dispatch"))
    assert str(caught.value) == text


def test_dispatch_connection_refused_and_unset_url(redis: Redis, env_url: str) -> None:
    from .conftest import free_port

    config = configured(**{"dispatch.url": f"http://127.0.0.1:{free_port()}/x"})
    with pytest.raises(RemoteError, match="cannot reach Hidra dispatch"):
        campaign_dispatch.handle({"campaignId": "1"}, context(config, redis, "campaign-dispatch"))
    with pytest.raises(PermanentError, match=r"dispatch.url is not set \(HIDRA_DISPATCH_URL\)"):
        campaign_dispatch.handle({"campaignId": "1"}, context(load_config(), redis, "campaign-dispatch"))


def test_dispatch_job_timeout_bounds_the_request(remote: str, redis: Redis, env_url: str) -> None:
    config = configured(**{"dispatch.url": f"{remote}/slow", "dispatch.timeout": 30.0})
    started = time.monotonic()
    with pytest.raises(RemoteError, match="did not answer"):
        campaign_dispatch.handle({"campaignId": "1"}, context(config, redis, "campaign-dispatch", timeout=0.3))
    assert time.monotonic() - started < 1.9  # the job's remaining time won, not dispatch.timeout


def test_dispatch_through_a_worker(remote: str, redis: Redis, tmp_path: Path, redis_server: RedisServer,
                                   cli: Cli) -> None:
    """4xx fails at once; 5xx is retried by the queue policy."""
    (tmp_path / "siderctl.toml").write_text(
        f'[redis]\nurl = "{redis_server.url}"\n[dispatch]\nurl = "{remote}/bad"\n'
        '[queues.campaign-dispatch]\nretries = 2\nbackoff = "fixed"\nbackoff_base = "1s"\nbackoff_jitter = false\n')
    rejected = cli("enqueue", "campaign-dispatch", "--campaign-id", "7").stdout.strip()
    assert cli("worker", "start", "campaign-dispatch", "--burst").exit_code == 0
    assert redis.hget(f"siderhub:job:{rejected}", "status") == b"failed"
    assert [r["path"] for r in Remote.seen] == ["/bad"]

    (tmp_path / "siderctl.toml").write_text(
        (tmp_path / "siderctl.toml").read_text().replace(f"{remote}/bad", f"{remote}/down"))
    down = cli("enqueue", "campaign-dispatch", "--campaign-id", "8").stdout.strip()
    assert cli("worker", "start", "campaign-dispatch", "--burst").exit_code == 0
    assert redis.hget(f"siderhub:job:{down}", "status") == b"scheduled"  # waiting for its retry
    assert int(redis.hget(f"siderhub:job:{down}", "retries_left") or 0) == 1


# --- metrics-sync --------------------------------------------------------------------------

def test_metrics_sync_keeps_the_last_snapshots(remote: str, redis: Redis, env_url: str, cli: Cli) -> None:
    config = configured(**{"metrics.academy_url": f"{remote}/metrics", "metrics.keep": 2})
    for n in range(3):
        result = metrics_sync.handle({"scope": "academy"}, context(config, redis, "metrics-sync", f"m{n}"))
        assert result["scope"] == "academy" and result["bytes"] == 26
    assert redis.llen("siderhub:siderctl:metrics:academy") == 2
    shown = json.loads(cli("metrics", "show", "academy", "--json").stdout)
    assert len(shown) == 1 and shown[0]["data"] == {"users": 10, "active": 3} and shown[0]["job"] == "m2"
    assert shown[0]["fetched_at"].endswith("Z")
    assert len(json.loads(cli("metrics", "show", "academy", "--history", "5", "--json").stdout)) == 2
    detail = cli("metrics", "show", "academy")
    assert detail.exit_code == 0 and '"users": 10' in detail.stdout and "# academy fetched" in detail.stdout
    summary = cli("metrics", "show")
    assert summary.exit_code == 0 and "academy" in summary.stdout
    missing = cli("metrics", "show", "hidra")
    assert missing.exit_code == 5 and "no snapshot of scope 'hidra' yet" in missing.stderr
    assert cli("metrics", "show", "nope").exit_code == 4


def test_metrics_sync_failures(remote: str, redis: Redis, env_url: str) -> None:
    ctx = context(configured(**{"metrics.admin_url": f"{remote}/html"}), redis, "metrics-sync")
    with pytest.raises(RemoteError, match="metrics source admin did not return JSON"):
        metrics_sync.handle({"scope": "admin"}, ctx)
    with pytest.raises(PermanentError, match=r"metrics\.hidra_url is not set"):
        metrics_sync.handle({"scope": "hidra"}, ctx)
    assert not redis.exists("siderhub:siderctl:metrics:admin")


# --- cleanup -------------------------------------------------------------------------------

def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def test_cleanup_tmp_never_leaves_its_directory(tmp_path: Path, redis: Redis, env_url: str) -> None:
    root, outside = tmp_path / "tmp", tmp_path / "precious"
    (root / "sub" / "deep").mkdir(parents=True)
    outside.mkdir()
    for name in ("keep.txt", "target.txt"):
        (outside / name).write_text("do not delete")
        _age(outside / name, 10 * 86400)
    old, new, deep = root / "old.log", root / "new.log", root / "sub" / "deep" / "old.bin"
    for path in (old, new, deep):
        path.write_bytes(b"x" * 10)
    _age(old, 3 * 86400)
    _age(deep, 3 * 86400)
    (root / "link-to-dir").symlink_to(outside)
    (root / "sub" / "link-to-file").symlink_to(outside / "target.txt")
    _age(root / "sub" / "link-to-file", 3 * 86400)
    _age(root / "link-to-dir", 3 * 86400)
    for directory in (root / "sub" / "deep", root / "sub"):
        _age(directory, 3 * 86400)

    config = configured(**{"cleanup.tmp_dir": str(root), "cleanup.tmp_max_age": 86400.0})
    result = cleanup.handle({"target": "tmp"}, context(config, redis, "cleanup"))
    assert result == {"target": "tmp", "directory": str(root), "files_removed": 4, "bytes_removed": 20,
                      "dirs_removed": 2}
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt", "target.txt"]  # only the links went
    assert new.exists() and not old.exists() and not (root / "sub").exists()  # old and emptied: gone
    assert (root / "link-to-dir").exists() is False and root.is_dir()
    with pytest.raises(PermanentError, match=r"cleanup\.tmp_dir is not set"):
        cleanup.handle({"target": "tmp"}, context(load_config(), redis, "cleanup"))
    (tmp_path / "alias").symlink_to(outside)
    with pytest.raises(PermanentError, match="is a symlink"):
        cleanup.clean_directory(tmp_path / "alias", 1, time.time())
    with pytest.raises(PermanentError, match="is not a directory"):
        cleanup.clean_directory(new, 1, time.time())
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt", "target.txt"]


def test_cleanup_streams_trim_by_age(redis: Redis, env_url: str) -> None:
    now_ms = int(time.time() * 1000)
    for key in ("siderhub:siderctl:events", "siderhub:siderctl:audit"):
        redis.xadd(key, {"event": "old"}, id=f"{now_ms - 100 * 86400 * 1000}-0")
        redis.xadd(key, {"event": "new"}, id=f"{now_ms}-0")
    config = configured(**{"events.retention": 86400.0, "audit.retention": 200 * 86400.0})
    assert cleanup.handle({"target": "logs"}, context(config, redis, "cleanup")) == {
        "target": "logs", "events_removed": 1}
    assert cleanup.handle({"target": "audit"}, context(config, redis, "cleanup")) == {
        "target": "audit", "audit_removed": 0}
    assert redis.xlen("siderhub:siderctl:events") == 1 and redis.xlen("siderhub:siderctl:audit") == 2


def test_cleanup_jobs_repairs_and_trims(redis: Redis, env_url: str) -> None:
    from siderctl import ops

    config = configured()
    config = replace(config, queues={**config.queues,
                                     "metrics-sync": replace(config.queues["metrics-sync"], keep_results=2)})
    now = time.time()
    # 4 finished metrics-sync jobs: 2 over keep_results
    for n in range(4):
        redis.hset(f"siderhub:job:f{n}", mapping={"status": "finished", "origin": "metrics-sync"})
        redis.zadd("siderhub:finished:metrics-sync", {f"f{n}": now + 1000 + n})
    redis.zadd("siderhub:failed:cleanup", {"expired": now - 5})
    # an execution abandoned long ago by a dead worker, with no retry left
    job = ops.enqueue(config, ops.EnqueueRequest("cleanup", [{"target": "tmp", "triggeredAt": "2026-01-01T00:00:00Z"}]))
    job_id = job[0].id
    redis.lrem("siderhub:queue:cleanup", 1, job_id)
    redis.hset(f"siderhub:job:{job_id}", mapping={"status": "started", "retries_left": 0})
    redis.zadd("siderhub:wip:cleanup", {f"{job_id}:dead1": now - 3600})
    # an orphaned hash: says finished, no registry knows it
    redis.hset("siderhub:job:orphan", mapping={"status": "finished", "origin": "cleanup",
                                               "created_at": "2020-01-01T00:00:00.000000Z"})
    redis.hset("siderhub:job:young", mapping={"status": "finished", "origin": "cleanup",
                                              "created_at": "2999-01-01T00:00:00.000000Z"})

    # a failure recorded by one of RQ's own workers: not in siderctl's failure index yet
    redis.hset("siderhub:job:by-rq", mapping={"status": "failed", "origin": "cleanup",
                                              "ended_at": "2026-12-01T10:00:00.000000Z"})
    redis.zadd("siderhub:failed:cleanup", {"by-rq": now + 1000})

    result = cleanup.handle({"target": "jobs"}, context(config, redis, "cleanup"))
    assert result == {"target": "jobs", "expired_entries": 1, "abandoned_retried": 0, "abandoned_failed": 1,
                      "finished_over_limit": 2, "returned_to_queue": 0, "orphaned_hashes": 1,
                      "failures_indexed": 1}
    assert redis.zscore("siderhub:siderctl:failures:cleanup", "by-rq") == 1796119200.0
    assert redis.zrange("siderhub:finished:metrics-sync", 0, -1) == [b"f2", b"f3"]
    assert not redis.exists("siderhub:job:f0", "siderhub:job:orphan")
    assert redis.exists("siderhub:job:young")
    assert redis.hget(f"siderhub:job:{job_id}", "status") == b"failed"


def test_handler_loading_checks(tmp_path: Path) -> None:
    from siderctl.errors import ConfigError

    assert load("tests.sample_handlers:plain", "k").wants_context is False
    assert load("tests.sample_handlers:record", "k").wants_context is True
    for path, message in (("tests.sample_handlers:nope", "has no attribute 'nope'"),
                          ("tests.sample_handlers:LUA_ENTER", "is not callable"),
                          ("no_such_module_x:f", "cannot import 'no_such_module_x'")):
        with pytest.raises(ConfigError, match=message) as caught:
            load(path, "queues.cleanup.handler")
        assert caught.value.message.startswith("queues.cleanup.handler: ")
