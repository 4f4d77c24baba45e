"""metrics-sync: fetch a scope's metrics, check they are JSON, keep the last N snapshots."""

from __future__ import annotations

import json
import time
from typing import Any

from siderctl.handlers import JobContext, PermanentError
from siderctl.handlers._http import RemoteError, send
from siderctl.timeparse import format_instant, utcnow


def snapshots_key(prefix: str, scope: str) -> str:
    """The list of a scope's snapshots, newest first."""
    return f"{prefix}:siderctl:metrics:{scope}"


def handle(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """GET the scope's source URL and store the JSON document with the time it was fetched."""
    scope = payload["scope"]
    key = f"metrics.{scope}_url"
    url = ctx.config.values[key]
    if not url:
        raise PermanentError(f"{key} is not set: no metrics source for scope {scope!r}")
    timeout = min(ctx.config.values["metrics.timeout"], ctx.remaining())
    started = time.monotonic()
    _status, body = send("GET", url, timeout=timeout, what=f"metrics source {scope}")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RemoteError(f"metrics source {scope} did not return JSON ({exc})") from None
    fetched_at = format_instant(utcnow())
    snapshot = {"scope": scope, "fetched_at": fetched_at, "job": ctx.job_id,
                "took": round(time.monotonic() - started, 6), "data": document}
    keep = ctx.config.values["metrics.keep"]
    list_key = snapshots_key(ctx.config.redis.prefix, scope)
    with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.lpush(list_key, json.dumps(snapshot))
        pipe.ltrim(list_key, 0, keep - 1)
        pipe.execute()
    return {"scope": scope, "fetched_at": fetched_at, "bytes": len(body)}
