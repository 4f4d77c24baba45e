"""Helpers shared by the benchmarks: a private redis-server, command counting, timing."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[Redis, str, Path]]:
    """A throw-away redis-server (no persistence): (client, url, work directory)."""
    work = Path(tempfile.mkdtemp(prefix="siderctl-bench-"))
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    client = Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except RedisConnectionError:  # still starting
                time.sleep(0.05)
        yield client, f"redis://127.0.0.1:{port}/0", work
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def commands(client: Redis) -> int:
    """Commands the server has run so far (INFO commandstats), not counting INFO itself."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def counted(client: Redis, action: Callable[[], Any]) -> int:
    """How many Redis commands ``action`` ran."""
    before = commands(client)
    action()
    return commands(client) - before


def timed(action: Callable[[], Any], repeat: int = 5) -> float:
    """Median wall time of ``action`` in seconds."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run_cli(args: list[str], env: dict[str, str], repeat: int = 5) -> float:
    """Median whole-process time of ``siderctl ARGS`` (checked to succeed)."""
    def once() -> None:
        subprocess.run([sys.executable, "-m", "siderctl", *args], env=env, check=True, capture_output=True)

    return timed(once, repeat)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    """A one-line description of this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
