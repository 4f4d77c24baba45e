"""The queue registry: the three queues of the jobs runtime and their payload schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .errors import InputError, NotFound
from .timeparse import format_instant, parse_instant

FieldKind = Literal["text", "instant", "choice"]
METRIC_SCOPES = ("academy", "hidra", "cybervault", "admin")
CLEANUP_TARGETS = ("jobs", "logs", "audit", "tmp")


@dataclass(frozen=True)
class PayloadField:
    """One key of a queue's JSON payload."""

    name: str
    help: str
    kind: FieldKind
    choices: tuple[str, ...] = ()
    default_now: bool = False

    @property
    def flag(self) -> str:
        """The CLI flag for this field: ``campaignId`` → ``--campaign-id``."""
        return "--" + "".join(f"-{c.lower()}" if c.isupper() else c for c in self.name)

    def check(self, value: Any) -> Any:
        """The normalised value, or InputError naming the field and the rule."""
        if self.kind == "instant":
            if not isinstance(value, str):
                raise InputError(f"{self.name}: must be an ISO-8601 UTC date-time string")
            try:
                return format_instant(parse_instant(value))
            except ValueError as exc:
                raise InputError(f"{self.name}: {exc}") from None
        if self.kind == "choice":
            if value not in self.choices:
                raise InputError(f"{self.name}: must be one of {', '.join(self.choices)} (got {value!r})")
            return value
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{self.name}: must be a non-empty string (got {value!r})")
        return value


@dataclass(frozen=True)
class QueueSpec:
    """A queue: its name, what it is for, its payload schema and its built-in handler."""

    name: str
    summary: str
    fields: tuple[PayloadField, ...]
    default_handler: str

    def field_names(self) -> list[str]:
        """Payload keys this queue accepts, in schema order."""
        return [f.name for f in self.fields]

    def validate(self, payload: object, now: datetime) -> dict[str, Any]:
        """A complete, normalised copy of ``payload``; InputError on the first violation."""
        if not isinstance(payload, Mapping):
            raise InputError(f"payload for {self.name} must be a JSON object, not {type(payload).__name__}")
        known = {f.name: f for f in self.fields}
        unknown = [key for key in payload if key not in known]
        if unknown:
            raise InputError(
                f"{unknown[0]}: unknown field for {self.name} (fields: {', '.join(self.field_names())})"
            )
        result: dict[str, Any] = {}
        for spec in self.fields:
            if spec.name in payload:
                result[spec.name] = spec.check(payload[spec.name])
            elif spec.default_now:
                result[spec.name] = format_instant(now)
            else:
                raise InputError(f"{spec.name}: required by {self.name} ({spec.flag})")
        return result


def _triggered_at() -> PayloadField:
    return PayloadField("triggeredAt", "When the run was triggered (ISO-8601 UTC; default now).", "instant",
                        default_now=True)


QUEUES: dict[str, QueueSpec] = {
    spec.name: spec
    for spec in (
        QueueSpec(
            "campaign-dispatch",
            "Hidra campaign sends",
            (
                PayloadField("campaignId", "Hidra campaign to dispatch.", "text"),
                PayloadField("attemptedAt", "When the dispatch was attempted (ISO-8601 UTC; default now).",
                             "instant", default_now=True),
            ),
            "siderctl.handlers.campaign_dispatch:handle",
        ),
        QueueSpec(
            "metrics-sync",
            "Academy / Hidra / Cybervault / Admin metrics synchronisation",
            (
                PayloadField("scope", "Metrics scope to sync.", "choice",
                             choices=METRIC_SCOPES),
                _triggered_at(),
            ),
            "siderctl.handlers.metrics_sync:handle",
        ),
        QueueSpec(
            "cleanup",
            "Clean-up routines: expired jobs, logs, audit, temporary files",
            (
                PayloadField("target", "What to clean.", "choice", choices=CLEANUP_TARGETS),
                _triggered_at(),
            ),
            "siderctl.handlers.cleanup:handle",
        ),
    )
}


def get_queue(name: str) -> QueueSpec:
    """The registered queue called ``name``, or NotFound listing the known ones."""
    try:
        return QUEUES[name]
    except KeyError:
        raise NotFound(f"unknown queue {name!r} (known: {', '.join(QUEUES)})") from None


def all_fields() -> list[PayloadField]:
    """Every payload field of every queue, first definition wins (for CLI flags)."""
    seen: dict[str, PayloadField] = {}
    for spec in QUEUES.values():
        for field in spec.fields:
            seen.setdefault(field.name, field)
    return list(seen.values())
