"""Durations (``30s``, ``5m``, ``1h30m``) and ISO-8601 instants, parsed strictly."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``: a number of seconds or unit parts like ``1h30m``, ``500ms``, ``2d``.

    Raises ValueError with a message fit for a user.
    """
    if isinstance(text, bool):
        raise ValueError("must be a duration like 30s, 5m or 1h")
    if isinstance(text, int | float):
        return float(text)
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h")
    return total


def format_duration(seconds: float) -> str:
    """Shortest human form of ``seconds``: ``90`` → ``1m30s``, ``0.25`` → ``250ms``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_instant(text: str) -> datetime:
    """An aware UTC datetime from ISO-8601 text that carries an offset (``Z`` or ``+02:00``)."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date-time like 2026-01-31T12:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone; add Z for UTC (2026-01-31T12:00:00Z)")
    return value.astimezone(UTC)


def format_instant(value: datetime) -> str:
    """ISO-8601 UTC text with a ``Z`` suffix, millisecond precision when there is one."""
    value = value.astimezone(UTC)
    spec = "seconds" if value.microsecond == 0 else "milliseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def format_epoch(epoch: float) -> str:
    """``format_instant`` of a Unix timestamp."""
    return format_instant(datetime.fromtimestamp(epoch, UTC))


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
