"""``siderctl config init|show|path``."""

import os
from pathlib import Path
from typing import Annotated

import typer

from siderctl import render
from siderctl.cli import common
from siderctl.config import default_config_target, default_document, find_config_file, write_config

app = common.group("Create and inspect the configuration.")


@app.command("init")
@common.boundary
def init(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="Where to write (default: --config, "
                                                "$SIDERCTL_CONFIG or $XDG_CONFIG_HOME/siderctl/config.toml).",
                                                show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a complete default config file (every key with its default)."""
    target = path or default_config_target(common.overrides(ctx), os.environ)
    write_config(target, default_document(), force=force)
    typer.echo(str(target))


@app.command("show")
@common.boundary
def show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print every effective setting and where it came from (flag, env, file, default)."""
    config = common.config(ctx)
    if json_out:
        settings = {key: {"value": value, "source": source} for key, value, source in render.config_rows(config)}
        render.emit_json({"file": str(config.file) if config.file else None, "settings": settings})
    else:
        render.config_table(config)


@app.command("path")
@common.boundary
def path(ctx: typer.Context) -> None:
    """Print the config file in use (nothing on stdout when defaults apply)."""
    found = find_config_file(common.overrides(ctx), os.environ, Path.cwd())
    if found:
        typer.echo(str(found))
    else:
        target = default_config_target(common.overrides(ctx), os.environ)
        render.note(f"no config file: defaults apply (`siderctl config init` writes {target})")
