"""campaign-dispatch: POST the payload to Hidra's dispatch endpoint, idempotently."""

from __future__ import annotations

import json
from typing import Any

from siderctl.handlers import JobContext, PermanentError
from siderctl.handlers._http import send


def handle(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Dispatch one campaign; the job id is the ``Idempotency-Key`` so a retry never sends twice."""
    url = ctx.config.values["dispatch.url"]
    if not url:
        raise PermanentError("dispatch.url is not set (HIDRA_DISPATCH_URL): nowhere to dispatch to")
    headers = {"Idempotency-Key": ctx.job_id}
    token = ctx.config.values["dispatch.token"]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = min(ctx.config.values["dispatch.timeout"], ctx.remaining())
    status, body = send("POST", url, body=payload, headers=headers, timeout=timeout, what="Hidra dispatch")
    ctx.log.info("campaign %s dispatched (HTTP %d)", payload.get("campaignId"), status)
    return {"campaignId": payload.get("campaignId"), "status": status, "response": _response(body)}


def _response(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body[:500].decode("utf-8", "replace")
