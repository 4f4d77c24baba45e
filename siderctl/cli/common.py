"""What every command shares: the error boundary, global options, the loaded config.

``boundary`` is the one place where errors become a message on stderr and an exit code, and
the only place in siderctl allowed a broad ``except``.
"""

import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from siderctl import render
from siderctl.errors import InputError, NeedsConfirmation, RedisUnavailable, SiderctlError

if TYPE_CHECKING:  # the config module is loaded when a command needs it, not for --help
    from siderctl.config import Config, Overrides

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


class LogFormat(StrEnum):
    """How long-running commands write their logs."""

    text = "text"
    json = "json"


class LogLevel(StrEnum):
    """The least severe log level written."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogFormatOpt = Annotated[LogFormat, typer.Option("--log-format", help="Log lines as text or JSON (one object per "
                                                 "line).", case_sensitive=False)]
LogLevelOpt = Annotated[LogLevel, typer.Option("--log-level", help="Least severe level logged.",
                                               case_sensitive=False)]


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (test runners swap it), with secrets masked."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def emit(self, record: logging.LogRecord) -> None:
        from siderctl.config import redact

        message = redact(record.getMessage())
        if record.exc_info:
            message += "\n" + redact(logging.Formatter().formatException(record.exc_info))
        if self.json_lines:
            from datetime import UTC, datetime

            line = json.dumps({"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                               .replace("+00:00", "Z"), "level": record.levelname.lower(), "logger": record.name,
                               "pid": record.process, "message": message})
        else:
            line = f"siderctl: {message}"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def setup_logging(verbose: bool = False, fmt: LogFormat = LogFormat.text, level: LogLevel | None = None) -> None:
    """Route ``jobs.*`` logs to stderr (warnings; info too for long-running commands)."""
    jobs = logging.getLogger("jobs")
    for handler in [h for h in jobs.handlers if isinstance(h, _StderrHandler)]:
        jobs.removeHandler(handler)
    jobs.addHandler(_StderrHandler(json_lines=fmt is LogFormat.json))
    jobs.propagate = False
    if level is not None:
        jobs.setLevel(getattr(logging, level.value.upper()))
    else:
        jobs.setLevel(logging.INFO if verbose else logging.WARNING)


def overrides(ctx: typer.Context) -> "Overrides":
    """The global flags given before the command."""
    found = ctx.find_root().obj
    from siderctl.config import Overrides

    return found if isinstance(found, Overrides) else Overrides()


def config(ctx: typer.Context) -> "Config":
    """The effective configuration for this invocation."""
    from siderctl.config import load_config

    return load_config(overrides(ctx))


def store_overrides(
    ctx: typer.Context, config_path: Path | None, redis_url: str | None, prefix: str | None
) -> None:
    """Keep the global flags for the command that follows."""
    from siderctl.config import Overrides

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


MetricsPortOpt = Annotated[int | None, typer.Option("--metrics-port", min=1, max=65535, show_default=False,
                                                    help="Serve Prometheus metrics on this port.")]
MetricsBindOpt = Annotated[str, typer.Option("--metrics-bind", help="Address the metrics endpoint listens on.")]


def metrics_endpoint(port: int | None, bind: str) -> Any:
    """The runtime's MetricsEndpoint for ``--metrics-port``/``--metrics-bind`` (None without a port)."""
    if port is None:
        return None
    from siderctl.runtime import MetricsEndpoint

    return MetricsEndpoint(port, bind)


def group(help: str) -> typer.Typer:
    """A command group configured like the root (plain help: Rich help would import rich.table)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
