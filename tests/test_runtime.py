"""``siderctl up`` and ``worker start --processes``: supervised children as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from .conftest import RedisServer
from .test_worker import QUEUE, ROOT, enqueue, runs, status_of, wait_for, write_config


@pytest.fixture
def conf(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> Path:
    path = tmp_path / "siderctl.toml"
    write_config(path, redis_server.url, processes=2, concurrency=3)
    path.write_text(path.read_text() + '[scheduler]\nlease = "1s"\n')
    return path


def launch(tmp_path: Path, *args: str, log: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "siderctl", *args], env=env, cwd=tmp_path, text=True,
                            stdout=(tmp_path / f"{log}.out").open("w"), stderr=(tmp_path / f"{log}.log").open("w"),
                            start_new_session=True)




def live_workers(redis: Redis, queue: str) -> dict[str, int]:
    """Worker name → pid for the workers registered on ``queue`` whose process is alive."""
    found = {}
    for key in redis.smembers(f"siderhub:workers:{queue}"):
        pid = redis.hget(key, "pid")
        if pid and _alive(int(pid)):
            found[key.decode().rsplit(":", 1)[1]] = int(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_up_supervises_workers_and_the_scheduler(conf: Path, redis: Redis, tmp_path: Path,
                                                 procs: list[subprocess.Popen[str]]) -> None:
    up = launch(tmp_path, "up", log="up")
    procs.append(up)
    wait_for(lambda: len(live_workers(redis, QUEUE)) == 2 and live_workers(redis, "metrics-sync")
             and live_workers(redis, "cleanup"), what="every queue's workers")
    wait_for(lambda: redis.exists("siderhub:siderctl:scheduler:leader"), what="a scheduler leader")
    summary = (tmp_path / "up.log").read_text()
    assert "siderctl up · redis redis://127.0.0.1" in summary
    assert f"queue {QUEUE:<17} 2 process(es), concurrency 3" in summary
    assert "schedules metrics-sync (every 1m), cleanup:jobs (every 5m)" in summary

    jobs = enqueue("ok:1", "ok:2", "ok:3")
    wait_for(lambda: all(status_of(redis, j) == "finished" for j in jobs))

    victim_name, victim_pid = sorted(live_workers(redis, QUEUE).items())[0]
    os.kill(victim_pid, signal.SIGKILL)
    wait_for(lambda: len(live_workers(redis, QUEUE)) == 2 and victim_name not in live_workers(redis, QUEUE),
             what="the killed worker to be replaced")
    assert "exited with signal SIGKILL" in (tmp_path / "up.log").read_text()

    (slow,) = enqueue("sleep:1.5")
    wait_for(lambda: runs(redis).get(slow) == 1, what="the job to be running")
    os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole group gets it, it counts once
    assert up.wait(30) == 0, (tmp_path / "up.log").read_text()
    assert status_of(redis, slow) == "finished"  # warm: it was allowed to finish
    assert not live_workers(redis, QUEUE) and not live_workers(redis, "cleanup")
    assert not redis.exists("siderhub:siderctl:scheduler:leader")  # released at a clean stop


def test_worker_processes_in_burst(conf: Path, redis: Redis, tmp_path: Path,
                                   procs: list[subprocess.Popen[str]]) -> None:
    ids = enqueue(*(f"ok:{i}" for i in range(60)))
    proc = launch(tmp_path, "worker", "start", QUEUE, "--processes", "2", "--burst", "--name", "pair", log="w")
    procs.append(proc)
    assert proc.wait(60) == 0, (tmp_path / "w.log").read_text()
    assert redis.zcard(f"siderhub:finished:{QUEUE}") == len(ids)
    workers = {redis.hget(f"siderhub:job:{j}", "worker_name") for j in ids}
    assert workers <= {b"pair-1", b"pair-2"} and redis.exists("siderhub:worker:pair-1", "siderhub:worker:pair-2")


def test_up_refuses_an_unreachable_redis(tmp_path: Path) -> None:
    from .conftest import free_port

    write_config(tmp_path / "siderctl.toml", f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    proc = launch(tmp_path, "up", log="up")
    assert proc.wait(30) == 8
    assert "cannot reach Redis" in (tmp_path / "up.log").read_text()
    assert time.monotonic() - started < 20
