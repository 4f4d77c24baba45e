"""The scheduler: pure slot planning over simulated time, leases on a real Redis, real processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from redis import Redis

from siderctl.config import Overrides, Schedule, load_config
from siderctl.scheduler import Scheduler, leader_key, plan, slot_job_id, slot_payload

from .conftest import Cli, RedisServer, start_redis

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC).timestamp()


def every(seconds: float, catch_up: str = "last", max_catch_up: int = 10) -> Schedule:
    return Schedule("s", "cleanup", seconds, None, "UTC", {"target": "jobs"}, True, catch_up, max_catch_up)


def simulate(schedule: Schedule, start: float, seconds: int, step: float = 1.0) -> list[float]:
    """Drive `plan` like the loop would, every `step` seconds; return the fired slots."""
    last, fired, now = None, [], start
    while now <= start + seconds:
        decided = plan(schedule, last, now)
        fired += decided.fire
        last = decided.last_slot
        now += step
    return fired


def test_interval_fires_once_per_slot_over_hours() -> None:
    fired = simulate(every(60), T0 + 7, 2 * 3600, step=0.7)
    assert len(fired) == 120 and len(set(fired)) == 120
    assert all(b - a == 60 for a, b in itertools.pairwise(fired))
    assert all(slot % 60 == 0 for slot in fired)


def test_cron_in_a_dst_free_timezone() -> None:
    schedule = Schedule("c", "cleanup", None, "*/5 * * * *", "America/Sao_Paulo", {"target": "tmp"}, True,
                        "last", 10)
    fired = simulate(schedule, T0, 3 * 3600, step=13)  # slots after the first tick: +5m … +2h55m
    local = [datetime.fromtimestamp(s, ZoneInfo("America/Sao_Paulo")) for s in fired]
    assert len(fired) == 35 and all(t.minute % 5 == 0 and t.second == 0 for t in local)
    daily = Schedule("d", "cleanup", None, "0 3 * * *", "Asia/Tokyo", {"target": "tmp"}, True, "last", 10)
    nights = simulate(daily, T0, 3 * 86400, step=600)
    assert [datetime.fromtimestamp(s, ZoneInfo("Asia/Tokyo")).hour for s in nights] == [3, 3, 3]


@pytest.mark.parametrize(("mode", "late", "expected"), [
    ("all", 600, [T0 + 480, T0 + 540, T0 + 600]),
    ("last", 600, [T0 + 600]),
    ("none", 630, []),  # the newest slot is 30 s old: a miss, skipped
    ("none", 601, [T0 + 600]),  # one second late is on time, not a miss
])
def test_catch_up_modes(mode: str, late: int, expected: list[float]) -> None:
    decided = plan(every(60, mode, max_catch_up=3), T0, T0 + late)
    assert decided.fire == expected and decided.last_slot == T0 + 600


def test_first_run_fires_nothing_past_and_then_the_next_slot() -> None:
    first = plan(every(60), None, T0 + 30)
    assert first.fire == [] and first.last_slot == T0
    assert plan(every(60), first.last_slot, T0 + 59.9).fire == []
    assert plan(every(60), first.last_slot, T0 + 60).fire == [T0 + 60]


def test_slot_ids_and_payloads() -> None:
    assert slot_job_id("metrics-sync", T0) == slot_job_id("metrics-sync", T0)
    assert slot_job_id("a:b", T0) != slot_job_id("a-b", T0)
    assert slot_payload(every(60), T0)["triggeredAt"] == "2026-03-02T10:00:00Z"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_schedulers_one_leader_each_slot_once(redis: Redis, tmp_path: Path, redis_server: RedisServer) -> None:
    config = load_config(Overrides(redis_url=redis_server.url), env={}, cwd=tmp_path)
    clock = Clock(T0 + 1)
    a, b = (Scheduler(config, redis, identity=name, clock=clock) for name in ("a", "b"))
    for _ in range(600):  # ten simulated minutes, both ticking every second
        a.tick()
        b.tick()
        clock.now += 1
    assert a.is_leader and not b.is_leader
    ids = [i.decode() for i in redis.lrange("siderhub:queue:metrics-sync", 0, -1)]
    assert len(ids) == len(set(ids)) == 10
    assert [i.decode() for i in redis.lrange("siderhub:queue:cleanup", 0, -1)] == [
        slot_job_id("cleanup:jobs", T0 + 300), slot_job_id("cleanup:jobs", T0 + 600)]
    a.release()
    b.tick()
    assert b.is_leader and redis.get(leader_key("siderhub")) == b"b"
    # The new leader re-plans the slot the old one handled: nothing is enqueued twice.
    a_state = redis.hget("siderhub:siderctl:schedule:metrics-sync", "last_slot")
    redis.hset("siderhub:siderctl:schedule:metrics-sync", "last_slot", float(a_state or 0) - 60)
    b.tick()
    assert redis.llen("siderhub:queue:metrics-sync") == 10


@pytest.fixture
def sched_config(tmp_path: Path) -> Path:
    path = tmp_path / "sched.toml"
    path.write_text('[scheduler]\nlease = "1s"\n[schedules.metrics-sync]\nenabled = false\n'
                    '[schedules."cleanup:jobs"]\nenabled = false\n'
                    '[schedules.tick]\nqueue = "cleanup"\nevery = "1s"\npayload = { target = "logs" }\n')
    return path


def spawn(url: str, config: Path, name: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "REDIS_URL": url, "SIDERCTL_CONFIG": str(config)}
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "siderctl", "scheduler", "run"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)


def slots_in_queue(client: Redis) -> list[int]:
    ids = [i.decode() for i in client.lrange("siderhub:queue:cleanup", 0, -1)]
    assert len(ids) == len(set(ids)), f"a slot was enqueued twice: {ids}"
    return sorted(int(i.rsplit("-", 1)[1]) for i in ids)


def stop_all(procs: list[subprocess.Popen[str]]) -> list[float]:
    took = []
    for proc in procs:
        if proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            took.append(time.monotonic() - started)
    return took




@pytest.mark.slow
def test_three_processes_one_job_per_slot(redis: Redis, redis_server: RedisServer, sched_config: Path,
                                          tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    procs += [spawn(redis_server.url, sched_config, f"s{i}", tmp_path) for i in range(3)]
    time.sleep(8)
    took = stop_all(procs)
    assert all(p.returncode == 0 for p in procs)
    assert max(took) < 1.5  # graceful stop within a second (plus interpreter exit)
    slots = slots_in_queue(redis)
    assert len(slots) >= 5
    assert slots == list(range(slots[0], slots[-1] + 1000, 1000))  # no gaps
    assert redis.get(leader_key("siderhub")) is None  # released on stop


@pytest.mark.slow
def test_standby_takes_over_within_two_leases(redis: Redis, redis_server: RedisServer, sched_config: Path,
                                              tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    procs += [spawn(redis_server.url, sched_config, f"s{i}", tmp_path) for i in range(2)]
    deadline = time.monotonic() + 10
    while redis.get(leader_key("siderhub")) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = redis.get(leader_key("siderhub"))
    assert leader is not None
    victim = next(p for p in procs if f":{p.pid}:" in leader.decode())
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    while redis.get(leader_key("siderhub")) in (None, leader) and time.monotonic() - killed < 5:
        time.sleep(0.02)
    took_over = time.monotonic() - killed
    assert redis.get(leader_key("siderhub")) not in (None, leader)
    assert took_over <= 2.0  # two lease periods
    time.sleep(2)
    stop_all(procs)
    slots = slots_in_queue(redis)
    assert slots == list(range(slots[0], slots[-1] + 1000, 1000))


@pytest.mark.slow
def test_redis_restart_under_the_scheduler(sched_config: Path, tmp_path: Path,
                                           procs: list[subprocess.Popen[str]]) -> None:
    server = start_redis(tmp_path / "own", persistent=True)
    try:
        client = server.client()
        procs.append(spawn(server.url, sched_config, "r", tmp_path))
        time.sleep(3.5)
        before = len(slots_in_queue(client))
        server.stop()
        time.sleep(2)
        server.restart()
        client = server.client()
        time.sleep(4)
        assert procs[0].poll() is None, "the scheduler died with Redis"
        stop_all(procs)
        assert procs[0].returncode == 0
        slots = slots_in_queue(client)  # asserts no duplicates
        assert before >= 2 and len(slots) >= before + 2
        log = (tmp_path / "r.log").read_text()
        assert "Redis error" in log and "resumed" in log
    finally:
        server.stop()


def test_cli_ls_trigger_and_disabled(cli: Cli, env_url: str, redis: Redis) -> None:
    shown = json.loads(cli("scheduler", "ls", "--json").stdout)
    assert shown["leader"] is None
    names = [s["name"] for s in shown["schedules"]]
    assert names == ["metrics-sync", "cleanup:jobs"]
    assert shown["schedules"][0]["every"] == 60.0 and shown["schedules"][0]["next_fire"].endswith(":00Z")
    table = cli("scheduler", "ls")
    assert table.exit_code == 0 and "leader: none" in table.stdout and "every 1m" in table.stdout

    fired = cli("scheduler", "trigger", "cleanup:jobs", "--json")
    assert fired.exit_code == 0, fired.stderr
    job = json.loads(fired.stdout)
    assert job["queue"] == "cleanup" and job["payload"]["target"] == "jobs"
    assert redis.lrange("siderhub:queue:cleanup", 0, -1) == [job["id"].encode()]

    unknown = cli("scheduler", "trigger", "nope")
    assert unknown.exit_code == 5 and "unknown schedule 'nope'" in unknown.stderr
    disabled = cli("scheduler", "run", env={"JOBS_ENABLED": "false"})
    assert disabled.exit_code == 0 and "scheduler does not start" in disabled.stderr
