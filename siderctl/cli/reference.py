"""The command reference (docs/cli.md), generated from the app itself.

    python -m siderctl.cli.reference > docs/cli.md

A test fails when the committed file differs from what this prints.
"""

from typing import Any

import typer.main

from siderctl.cli import app

WIDTH = 100


def _walk(command: Any, ctx: Any, path: list[str]) -> list[tuple[list[str], str]]:
    pages = [(path, command.get_help(ctx))]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True, terminal_width=WIDTH,
                                       max_content_width=WIDTH)
            pages += _walk(sub, sub_ctx, [*path, name])
    return pages


def reference() -> str:
    """Markdown: every command's help text, in order, at a fixed width."""
    root = typer.main.get_command(app)
    ctx = root.make_context("siderctl", [], resilient_parsing=True, terminal_width=WIDTH, max_content_width=WIDTH)
    parts = ["# siderctl command reference", "",
             "Generated from the program by `python -m siderctl.cli.reference > docs/cli.md`; a test keeps it "
             "current.", ""]
    for path, text in _walk(root, ctx, ["siderctl"]):
        parts += [f"## {' '.join(path)}", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
