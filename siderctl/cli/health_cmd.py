"""``siderctl health``."""

from typing import Annotated

import typer

from siderctl import health, render
from siderctl.cli import common
from siderctl.errors import InputError, Unhealthy


def register(app: typer.Typer) -> None:
    """Add the health command to ``app``."""
    app.command("health")(common.boundary(check))


def _rate(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"--max-failed-rate: {text!r} is not a rate like 5% or 0.05") from None
    if not 0 <= value <= 1:
        raise InputError(f"--max-failed-rate: {text!r} must be between 0% and 100%")
    return value


def check(
    ctx: typer.Context,
    max_queue_age: Annotated[str, typer.Option("--max-queue-age", help="Oldest queued job allowed.")] = "5m",
    max_failed_rate: Annotated[str, typer.Option("--max-failed-rate", help="Failed attempts allowed over the "
                                                 "window (5% or 0.05).")] = "5%",
    window: Annotated[str, typer.Option("--window", help="Period the failure rate is measured over.")] = "5m",
    min_attempts: Annotated[int, typer.Option("--min-attempts", min=1, help="Attempts needed in the window "
                                              "before the failure rate counts.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Exit 0 when the runtime is healthy; exit 13 with one reason per line when it is not.

    Checks: Redis reachable; every open, unpaused queue has a live worker; a scheduler holds the
    lease; no queue's oldest job waits too long; failure rate under the limit.
    """
    limits = health.Thresholds(
        max_queue_age=common.duration_option(max_queue_age, "--max-queue-age") or 0.0,
        max_failed_rate=_rate(max_failed_rate),
        min_attempts=min_attempts,
        window=common.duration_option(window, "--window") or 300.0,
    )
    report = health.check(common.config(ctx), limits)
    if json_out:
        render.emit_json(report.as_dict())
    else:
        render.health(report)
    if not report.healthy:
        raise Unhealthy(f"unhealthy: {len(report.reasons)} problem(s)")
