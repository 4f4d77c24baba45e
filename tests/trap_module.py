"""Importing this module leaves a mark: a refused job must never cause it."""

import os
from pathlib import Path

Path(os.environ.get("TRAP_FILE", "trap-imported")).write_text("imported")


def run(*_args: object) -> None:
    """Never to be called by a worker."""
    Path(os.environ.get("TRAP_FILE", "trap-imported")).write_text("called")
