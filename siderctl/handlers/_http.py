"""A small HTTP client for the built-in handlers, classifying failures as retryable or not."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

from siderctl import __version__
from siderctl.handlers import PermanentError

# 408 and 429 say "try again later" even though they are 4xx.
RETRYABLE_4XX = (408, 429)


class RemoteError(Exception):
    """A failure a retry may fix: 5xx, 408/429, timeout, connection refused."""


def send(method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float, what: str) -> tuple[int, bytes]:
    """Send one request; (status, body) on 2xx, PermanentError on other 4xx, RemoteError otherwise."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("User-Agent", f"siderctl/{__version__}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        detail = _first_line(exc.read())
        message = f"{what} answered HTTP {exc.code}{': ' + detail if detail else ''}"
        if 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX:
            raise PermanentError(message) from None
        raise RemoteError(message) from None
    except TimeoutError:
        raise RemoteError(f"{what} did not answer within {timeout:.1f}s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise RemoteError(f"{what} did not answer within {timeout:.1f}s") from None
        raise RemoteError(f"cannot reach {what}: {exc.reason}") from None
    except (ConnectionError, OSError) as exc:
        raise RemoteError(f"cannot reach {what}: {exc}") from None


def _first_line(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else ""
