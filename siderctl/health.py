"""``siderctl health``: is the runtime doing its job? One reason per problem found.

Cheap enough for a Kubernetes probe every 10 s: one connection and a handful of pipelined round
trips whatever the queue lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import RedisUnavailable
from .timeparse import format_duration


@dataclass(frozen=True)
class Thresholds:
    """What counts as unhealthy."""

    max_queue_age: float = 300.0
    max_failed_rate: float = 0.05
    min_attempts: int = 10
    window: float = 300.0


@dataclass(frozen=True)
class HealthReport:
    """The verdict, its reasons and what was measured."""

    reasons: list[str]
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """No reason to complain."""
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return {"healthy": self.healthy, "reasons": self.reasons, "checks": self.checks}


def check(config: Config, limits: Thresholds) -> HealthReport:
    """Run every check; Redis being unreachable is a reason, not an error."""
    from redis.exceptions import ConnectionError, TimeoutError

    from .connection import connect
    from .inspect import overview

    if not config.jobs_enabled:
        return HealthReport([], {"jobs_enabled": False})
    try:
        with connect(config) as connection:
            view = overview(connection, config, window=limits.window)
    except RedisUnavailable as exc:
        return HealthReport([exc.message], {"redis": "unreachable"})
    except (ConnectionError, TimeoutError) as exc:
        return HealthReport([f"lost the connection to Redis: {exc}"], {"redis": "unreachable"})

    reasons: list[str] = []
    queues: dict[str, Any] = {}
    for q in view.queues:
        name, status, state = q.status.name, q.status, q.state
        live = view.live_workers(name)
        outcomes = view.recent.get(name, {})
        failed = outcomes.get("failed", 0) + outcomes.get("retry", 0)
        attempts = failed + outcomes.get("finished", 0)
        rate = failed / attempts if attempts else 0.0
        queues[name] = {"state": state.label, "live_workers": len(live), "queued": status.queued,
                        "oldest_queued_age": status.oldest_queued_age, "attempts": attempts,
                        "failure_rate": round(rate, 4)}
        if state.intake == "closed" or state.paused:
            continue  # an operator took it out of service on purpose
        if not live:
            reasons.append(f"queue {name}: no live worker")
        if status.oldest_queued_age is not None and status.oldest_queued_age > limits.max_queue_age:
            reasons.append(f"queue {name}: oldest queued job is {format_duration(round(status.oldest_queued_age))} "
                           f"old (max {format_duration(limits.max_queue_age)})")
        if attempts >= limits.min_attempts and rate > limits.max_failed_rate:
            reasons.append(f"queue {name}: {rate:.0%} of {attempts} attempts failed in the last "
                           f"{format_duration(limits.window)} (max {limits.max_failed_rate:.0%})")
    has_schedules = any(s.enabled for s in config.schedules.values())
    if has_schedules and view.scheduler.leader is None:
        reasons.append("scheduler: no live leader (no `siderctl scheduler run` or `up` holds the lease)")
    checks = {"redis": "ok", "queues": queues, "scheduler": {"leader": view.scheduler.leader}}
    return HealthReport(reasons, checks)
