"""The siderctl command line: one Typer sub-app per command group, thin over the core.

Command modules are imported only when their command runs (or its help or completion is asked
for): ``siderctl --help`` lists them from ``COMMANDS`` without loading any.
"""

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from siderctl import __version__
from siderctl.cli import common

# name → (module under siderctl.cli, one-line help shown by `siderctl --help`; a test keeps it
# equal to the command's own docstring). Groups expose `app`; single commands `register(app)`.
COMMANDS: dict[str, tuple[str, str]] = {
    "enqueue": ("enqueue_cmd", "Add a job (or a batch) to QUEUE and print its id."),
    "status": ("status_cmd", "Show job counts per state, oldest queued job age and workers for every queue "
                             "(read-only)."),
    "events": ("events_cmd", "Show job lifecycle events: started, finished, failed (with reason), retried, "
                             "abandoned, requeued."),
    "health": ("health_cmd", "Exit 0 when the runtime is healthy; exit 13 with one reason per line when it is not."),
    "up": ("up_cmd", "Run the whole runtime: every queue's workers per config and the scheduler, supervised."),
    "worker": ("worker_cmd", "Run, list and stop workers."),
    "queue": ("queue_cmd", "See queues and take them in and out of service."),
    "failed": ("failed_cmd", "Find failed jobs, see why they failed, retry or remove them."),
    "scheduler": ("scheduler_cmd", "Run and inspect the recurring-job scheduler."),
    "metrics": ("metrics_cmd", "Prometheus metrics, and the snapshots metrics-sync stores."),
    "audit": ("audit_cmd", "The trail of destructive actions."),
    "config": ("config_cmd", "Create and inspect the configuration."),
    "dev-redis": ("dev_redis_cmd", "Manage the embedded Valkey server used when no Redis URL is set."),
    "completion": ("completion_cmd", "Print the completion script for SHELL (see the README for where to put it)."),
}


def load_command(name: str) -> Any:
    """The click command behind ``name``, importing its module now."""
    module = importlib.import_module(f"siderctl.cli.{COMMANDS[name][0]}")
    command: Any
    if hasattr(module, "app"):
        command = typer.main.get_group(module.app)
    else:
        single = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
        module.register(single)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: lists commands from COMMANDS and imports one only when it is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(text, limit)) for name, (_module, text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    name="siderctl",
    help="Operate SiderHub's background jobs: queues, workers, schedules, failures.",
    no_args_is_help=True,
    rich_markup_mode=None,  # Rich-formatted help would import rich.table on every --help
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"siderctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $SIDERCTL_CONFIG, ./siderctl.toml, "
                     "$XDG_CONFIG_HOME/siderctl/config.toml).", show_default=False),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis URL; overrides REDIS_URL and the file.",
                                 show_default=False)
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Key prefix; overrides REDIS_PREFIX and the file.",
                                 show_default=False)
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Operate SiderHub's background jobs: queues, workers, schedules, failures."""
    common.setup_logging()
    common.store_overrides(ctx, config, redis_url, prefix)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="siderctl")
