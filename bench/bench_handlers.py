"""Handlers the benchmarks run, both through siderctl (``queues.NAME.handler``) and plain RQ."""

import time
from typing import Any


def noop(payload: Any) -> None:
    """Return at once."""


def io50(payload: Any) -> None:
    """Wait 50 ms, like a call to a slow service."""
    time.sleep(0.05)
