"""Handlers the worker tests configure through ``queues.NAME.handler``.

campaign-dispatch's free-text ``campaignId`` says what a job does: ``ok:N``, ``sleep:SECONDS``,
``fail:TEXT`` (retryable), ``perm:TEXT`` (permanent), ``spin`` (busy loop: only an injected timeout
stops it), ``block:SECONDS`` (sleeps inside C, deaf to injected exceptions). Every run is counted
per job id in the Redis hash ``test:runs``; ``test:inflight``/``test:max-inflight`` track overlap.
"""

from __future__ import annotations

import time
from typing import Any

from siderctl.handlers import JobContext, PermanentError

LUA_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Count the run, then behave as the campaignId says."""
    cid = payload["campaignId"]
    ctx.redis.hincrby("test:runs", ctx.job_id, 1)
    ctx.redis.eval(LUA_ENTER, 2, "test:inflight", "test:max-inflight")
    try:
        kind, _, arg = cid.partition(":")
        if kind == "sleep":
            deadline = time.monotonic() + float(arg)
            while time.monotonic() < deadline:  # short sleeps: an injected timeout lands quickly
                time.sleep(0.01)
        elif kind == "block":
            time.sleep(float(arg))
        elif kind == "fail":
            raise RuntimeError(f"boom {arg}")
        elif kind == "perm":
            raise PermanentError(f"rejected {arg}")
        elif kind == "spin":
            while True:
                pass
        return {"ok": cid, "attempt": ctx.attempt}
    finally:
        ctx.redis.decr("test:inflight")


def plain(payload: dict[str, Any]) -> str:
    """A one-argument handler: gets the payload only."""
    return str(payload["campaignId"])


def to_file(payload: dict[str, Any], ctx: JobContext) -> None:
    """Record the run in the file $RUNS_FILE (not in Redis: this one must work while Redis is down)."""
    import os

    time.sleep(0.02)
    with open(os.environ["RUNS_FILE"], "a") as fh:
        fh.write(f"{ctx.job_id}\n")
