"""Shared fixtures: a private redis-server per session, an isolated environment per test.

The shared Redis on 127.0.0.1:6379 is never touched. Under CI=true a missing redis-server
fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Every in-process test uses the default prefix; RQ reads it once, at import.
os.environ["RQ_KEY_PREFIX"] = "siderhub"
for _name in ("REDIS_URL", "BULLMQ_REDIS_URL", "REDIS_PREFIX", "JOBS_ENABLED", "BULLMQ_ENABLED",
              "SIDERCTL_CONFIG", "REDIS_USERNAME", "REDIS_PASSWORD"):
    os.environ.pop(_name, None)

from redis import Redis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from typer.testing import CliRunner, Result  # noqa: E402

from siderctl.cli import app  # noqa: E402


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process owned by the tests."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    persistent: bool = False

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        """A fresh client."""
        return Redis.from_url(self.url)

    def stop(self) -> None:
        """Terminate it (a persistent one writes its AOF first) and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start it again on the same port and directory (a persistent one keeps its data)."""
        self.stop()
        self.process = start_redis(self.workdir, self.port, persistent=self.persistent).process


def start_redis(workdir: Path, port: int | None = None, *, persistent: bool = False) -> RedisServer:
    """Start a throw-away redis-server on ``port`` (a free one by default); fail or skip if absent.

    ``persistent`` servers keep every write in an AOF (fsync always), so a restart loses nothing.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (required under CI=true)")
        pytest.skip("redis-server is not installed")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir),
         *(["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process, workdir, persistent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if server.client().ping():
                return server
        except RedisConnectionError:  # still starting
            time.sleep(0.02)
    server.stop()
    pytest.fail(f"redis-server did not start on port {port}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's private Redis."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    """A client of the private Redis, flushed before the test."""
    client = redis_server.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, no user state, a scratch working directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def env_url(redis: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """REDIS_URL pointing at the private, flushed Redis."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


class Cli:
    """Runs siderctl in-process through Typer's CliRunner."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    """Invoke siderctl in-process."""
    return Cli()


def keyspace(client: Redis) -> dict[bytes, Any]:
    """Every key with its logical value: equal snapshots mean nothing was written.

    (DUMP is no good here: a hash's field order may change on a mere read.)
    """
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": lambda k: client.xrange(k),
    }
    return {key: readers[client.type(key)](key) for key in client.scan_iter(count=1000)}


def run_siderctl(*args: str, env: dict[str, str] | None = None, timeout: float = 30,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run siderctl as a real process with this interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "siderctl", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, input=input, check=False)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test starts; killed (with their process group, if they lead one) at the end."""
    running: list[subprocess.Popen[Any]] = []
    yield running
    for proc in running:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            proc.wait()
