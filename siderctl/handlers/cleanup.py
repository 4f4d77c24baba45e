"""cleanup: housekeeping of the job registries, the events and audit streams, and a temp directory."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from siderctl import housekeeping, store
from siderctl.handlers import JobContext, PermanentError


def handle(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run the payload's ``target`` routine; the result says what was removed."""
    target = payload["target"]
    values = ctx.config.values
    prefix = ctx.config.redis.prefix
    now = time.time()
    if target == "jobs":
        return {"target": target, **housekeeping.clean_jobs(ctx.redis, ctx.config, now)}
    if target == "logs":
        removed = housekeeping.trim_stream(ctx.redis, store.events_key(prefix), values["events.retention"], now)
        return {"target": target, "events_removed": removed}
    if target == "audit":
        removed = housekeeping.trim_stream(ctx.redis, store.audit_key(prefix), values["audit.retention"], now)
        return {"target": target, "audit_removed": removed}
    directory = values["cleanup.tmp_dir"]
    if not directory:
        raise PermanentError("cleanup.tmp_dir is not set: no directory to clean")
    return {"target": target, **clean_directory(Path(directory), values["cleanup.tmp_max_age"], now)}


def clean_directory(root: Path, max_age: float, now: float) -> dict[str, Any]:
    """Delete files (and symlinks themselves) older than ``max_age`` under ``root``, then empty subdirectories.

    Works on directory file descriptors and never follows a symlink, so nothing outside ``root``
    can be reached, even if the tree changes while it runs.
    """
    if root.is_symlink():
        raise PermanentError(f"cleanup.tmp_dir {root} is a symlink; name the real directory")
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise PermanentError(f"cleanup.tmp_dir {root} does not exist") from None
    except NotADirectoryError:
        raise PermanentError(f"cleanup.tmp_dir {root} is not a directory") from None
    except OSError as exc:
        raise PermanentError(f"cleanup.tmp_dir {root}: {exc.strerror}") from None
    removed = {"directory": str(root), "files_removed": 0, "bytes_removed": 0, "dirs_removed": 0}
    try:
        _clean_fd(root_fd, now - max_age, removed)
    finally:
        os.close(root_fd)
    return removed


def _clean_fd(dir_fd: int, cutoff: float, removed: dict[str, Any]) -> bool:
    """Clean one directory; True when it ended up empty."""
    empty = True
    for entry in os.scandir(dir_fd):
        info = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError:
                empty = False
                continue
            try:
                child_empty = _clean_fd(child, cutoff, removed)
            finally:
                os.close(child)
            if child_empty and info.st_mtime < cutoff:
                try:
                    os.rmdir(entry.name, dir_fd=dir_fd)
                    removed["dirs_removed"] += 1
                    continue
                except OSError:
                    pass
            empty = False
        elif info.st_mtime < cutoff:
            os.unlink(entry.name, dir_fd=dir_fd)
            removed["files_removed"] += 1
            removed["bytes_removed"] += info.st_size if not stat.S_ISLNK(info.st_mode) else 0
        else:
            empty = False
    return empty
