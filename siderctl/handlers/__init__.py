"""Job handlers: the built-ins, the context they run with, and loading ``package.module:function``.

A handler is ``handle(payload)`` or ``handle(payload, ctx)``; it returns a JSON-serialisable
result. Raising ``PermanentError`` fails the job at once; any other exception is retried by the
queue's policy.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from siderctl.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis

    from siderctl.config import Config


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad request, missing setting): no retry."""


@dataclass(frozen=True)
class JobContext:
    """What a running job may use besides its payload."""

    job_id: str
    queue: str
    attempt: int
    config: Config
    redis: Redis
    deadline: float  # time.monotonic() value at which the job times out

    @property
    def log(self) -> logging.Logger:
        """The logger of this job's queue (``jobs.<queue>``)."""
        return logging.getLogger(f"jobs.{self.queue}")

    def remaining(self) -> float:
        """Seconds left before the job's timeout (never below 0.1)."""
        return max(0.1, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Handler:
    """A loaded handler and whether it takes the context."""

    path: str
    func: Callable[..., Any]
    wants_context: bool

    def __call__(self, payload: dict[str, Any], ctx: JobContext) -> Any:
        return self.func(payload, ctx) if self.wants_context else self.func(payload)


def load(path: str, key: str) -> Handler:
    """Import ``package.module:function``; ConfigError naming ``key`` when it is not usable."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}", key=key) from None
    func = getattr(module, attr, None)
    if func is None:
        raise ConfigError(f"{module_name!r} has no attribute {attr!r}", key=key)
    if not callable(func):
        raise ConfigError(f"{path} is not callable", key=key)
    return Handler(path, func, _wants_context(func, path, key))


def _wants_context(func: Callable[..., Any], path: str, key: str) -> bool:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not positional or len(required) > 2:
        raise ConfigError(f"{path} must accept (payload) or (payload, ctx)", key=key)
    return len(positional) >= 2
