"""What every command shares: the error boundary, global options, the loaded config.

``boundary`` is the one place where errors become a message on stderr and an exit code, and
the only place in siderctl allowed a broad ``except``.
"""

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from siderctl import render
from siderctl.config import Config, Overrides, load_config
from siderctl.errors import InputError, NeedsConfirmation, RedisUnavailable, SiderctlError

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 1
INTERRUPTED = 130


def boundary(func: F) -> F:
    """Run a command, mapping every failure to one stderr line and its documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except SiderctlError as exc:
            render.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.error("interrupted")
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            redis_error = _as_redis_error(exc)
            if redis_error is not None:
                render.error(redis_error.message)
                raise typer.Exit(redis_error.exit_code) from None
            if os.environ.get("SIDERCTL_DEBUG"):
                traceback.print_exc()
            render.error(f"internal error: {type(exc).__name__}: {exc} (SIDERCTL_DEBUG=1 shows the traceback)")
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _as_redis_error(exc: Exception) -> RedisUnavailable | None:
    # redis-py is imported only by commands that talk to Redis; don't import it here.
    exceptions = sys.modules.get("redis.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.ConnectionError | exceptions.TimeoutError):
        return None
    return RedisUnavailable(f"lost the connection to Redis: {exc}")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"siderctl: {self.format(record)}\n")


def setup_logging(verbose: bool = False) -> None:
    """Route ``jobs.*`` logs to stderr (warnings; info too for long-running commands)."""
    jobs = logging.getLogger("jobs")
    if not any(isinstance(h, _StderrHandler) for h in jobs.handlers):
        jobs.addHandler(_StderrHandler())
        jobs.propagate = False
    jobs.setLevel(logging.INFO if verbose else logging.WARNING)


def overrides(ctx: typer.Context) -> Overrides:
    """The global flags given before the command."""
    found = ctx.find_root().obj
    return found if isinstance(found, Overrides) else Overrides()


def config(ctx: typer.Context) -> Config:
    """The effective configuration for this invocation."""
    return load_config(overrides(ctx))


def store_overrides(
    ctx: typer.Context, config_path: Path | None, redis_url: str | None, prefix: str | None
) -> None:
    """Keep the global flags for the command that follows."""
    ctx.obj = Overrides(config_path=config_path, redis_url=redis_url, prefix=prefix)


def confirm(question: str, yes: bool) -> None:
    """Go on when ``--yes`` was given or the user says yes on a terminal; refuse otherwise."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise NeedsConfirmation(f"{question} — refusing without --yes (no terminal to confirm on); nothing changed")
    if not typer.confirm(f"{question} Continue?", default=False, err=True):
        raise SiderctlError("not confirmed; nothing changed")


def duration_option(value: str | None, flag: str) -> float | None:
    """A duration flag in seconds (None when not given); InputError naming the flag."""
    from siderctl.timeparse import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from None


def complete_queue(incomplete: str) -> list[str]:
    """Queue names starting with ``incomplete``."""
    from siderctl.queues import QUEUES

    return [name for name in QUEUES if name.startswith(incomplete)]
