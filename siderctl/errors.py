"""The one exception tree of siderctl; every error owns its process exit code.

The CLI boundary (``siderctl.cli.main``) is the only place that turns these into a message on
stderr and an exit status. The table of codes is documented in the README.
"""

from __future__ import annotations


class SiderctlError(Exception):
    """Base of every error siderctl reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SiderctlError):
    """Options that cannot be used together, or a command used the wrong way."""

    exit_code = 2


class ConfigError(SiderctlError):
    """Bad or unreadable configuration (TOML, setting value, prefix, URL)."""

    exit_code = 3

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class InputError(SiderctlError):
    """Bad user input: JSON, payload schema, duration, date, JSONL line."""

    exit_code = 4


class NotFound(SiderctlError):
    """An unknown queue or a job id that does not exist."""

    exit_code = 5


class JobExists(SiderctlError):
    """A job with the requested id already exists; nothing was enqueued."""

    exit_code = 6


class NameTaken(SiderctlError):
    """A live worker already uses the requested name."""

    exit_code = 6


class JobsDisabled(SiderctlError):
    """``JOBS_ENABLED`` is false: commands that would enqueue refuse."""

    exit_code = 7


class RedisUnavailable(SiderctlError):
    """Redis cannot be reached, or the embedded server cannot be started."""

    exit_code = 8


class UncleanShutdown(SiderctlError):
    """A worker or the runtime stopped with jobs interrupted (requeued) or outcomes left to recovery."""

    exit_code = 9


class QueueNotAccepting(SiderctlError):
    """The queue is draining or closed: enqueues (and retries into it) are refused."""

    exit_code = 10


class NothingSelected(SiderctlError):
    """A selection (filters, --all) matched no job; nothing changed."""

    exit_code = 11


class DeadlinePassed(SiderctlError):
    """``queue drain`` reached its --timeout with jobs still queued or running."""

    exit_code = 12


class NeedsConfirmation(UsageError):
    """A destructive command without --yes where no terminal can confirm it."""


class Unhealthy(SiderctlError):
    """``siderctl health`` found at least one problem (each printed on its own line)."""

    exit_code = 13
