"""Start-up cost, completions, `python -m`, and interop with RQ's own tooling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from siderctl.cli.completion_cmd import Shell, script

from .conftest import Cli, RedisServer, run_siderctl

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
sys.argv = ["siderctl", *sys.argv[1:]]
from siderctl.cli import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["enqueue", "--help"], ["scheduler", "--help"], ["config", "path"],
                                  ["completion", "bash"]])
def test_light_commands_do_not_import_rq_redis_or_rich_tables(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    modules = json.loads(done.stderr.splitlines()[-1])
    heavy = [m for m in modules if m.split(".")[0] in ("rq", "redis", "pydantic") or m == "rich.table"]
    assert heavy == [], f"`siderctl {' '.join(args)}` imported {heavy}"
    if "--help" in args:
        assert done.stdout.startswith("Usage: siderctl")


def test_python_dash_m_and_version() -> None:
    done = run_siderctl("--version")
    assert done.returncode == 0 and done.stdout.startswith("siderctl ")


@pytest.mark.parametrize("shell", list(Shell))
def test_shipped_completions_are_current(shell: Shell) -> None:
    shipped = (ROOT / "completions" / f"siderctl.{shell.value}").read_text()
    hint = f"stale: run `siderctl completion {shell.value} > completions/siderctl.{shell.value}`"
    assert shipped == script(shell) + "\n", hint


def test_dynamic_completion_offers_queue_names() -> None:
    env = {"_SIDERCTL_COMPLETE": "complete_bash", "COMP_WORDS": "siderctl enqueue c", "COMP_CWORD": "2"}
    done = run_siderctl(env=env)
    assert done.stdout.split() == ["campaign-dispatch", "cleanup"]


def test_rq_info_sees_our_queue_and_job(cli: Cli, env_url: str, redis_server: RedisServer) -> None:
    job_id = cli("enqueue", "campaign-dispatch", "--campaign-id", "7").stdout.strip()
    rq = Path(sys.executable).with_name("rq")
    env = {**os.environ, "RQ_KEY_PREFIX": "siderhub"}
    done = subprocess.run([str(rq), "info", "--url", redis_server.url, "--only-queues", "-R"],
                          capture_output=True, text=True, env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("campaign-dispatch"))
    assert " 1, 0 executing" in line and "1 queues, 1 jobs total" in done.stdout
    assert job_id


def test_custom_prefix_keeps_keys_under_it(env_url: str, redis_server: RedisServer) -> None:
    done = run_siderctl("--prefix", "acme", "enqueue", "cleanup", "--target", "jobs")
    assert done.returncode == 0, done.stderr
    client = redis_server.client()
    assert client.exists(f"acme:job:{done.stdout.strip()}")
    assert client.llen("acme:queue:cleanup") == 1 and not client.keys("siderhub:*")


def test_lazy_command_table_matches_the_commands() -> None:
    """`siderctl --help` lists commands from a static table; it must say what each command says."""
    from siderctl.cli import COMMANDS, load_command

    for name, (_module, short) in COMMANDS.items():
        command = load_command(name)
        own = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        assert own == short, f"COMMANDS[{name!r}] is out of date: {own!r}"
