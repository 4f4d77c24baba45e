"""Redis connections and the RQ key prefix.

RQ 3 reads ``RQ_KEY_PREFIX`` once, when it is first imported, so every path to rq goes through
``rq_prefix()`` first. redis and rq are imported lazily: ``siderctl --help`` never loads them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .config import Config, mask_url
from .errors import RedisUnavailable, SiderctlError

if TYPE_CHECKING:
    from redis import Redis


def use_prefix(prefix: str) -> None:
    """Make RQ use ``prefix`` for every key; must run before rq is first imported."""
    loaded = sys.modules.get("rq.defaults")
    if loaded is not None and prefix != loaded.RQ_KEY_PREFIX:
        raise SiderctlError(
            f"rq was already imported with key prefix {loaded.RQ_KEY_PREFIX!r}; cannot switch to {prefix!r}"
        )
    os.environ["RQ_KEY_PREFIX"] = prefix


def redis_url(config: Config) -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    if config.redis.url:
        return config.redis.url
    from . import embedded

    return embedded.ensure_running()


def connect(config: Config) -> Redis:
    """A client for the configured Redis that has answered PING; RedisUnavailable otherwise."""
    from redis import Redis
    from redis.exceptions import ConnectionError, ResponseError, TimeoutError

    use_prefix(config.redis.prefix)
    url = redis_url(config)
    options: dict[str, object] = {
        "socket_connect_timeout": config.redis.connect_timeout,
        "socket_timeout": config.redis.socket_timeout,
    }
    if config.redis.username:
        options["username"] = config.redis.username
    if config.redis.password:
        options["password"] = config.redis.password
    try:
        client = Redis.from_url(url, **options)
    except ValueError as exc:
        raise RedisUnavailable(f"cannot use Redis URL {mask_url(url)}: {exc}") from None
    try:
        client.ping()
    except (ConnectionError, TimeoutError, ResponseError) as exc:
        client.close()
        raise RedisUnavailable(f"cannot reach Redis at {mask_url(url)}: {_reason(exc)}") from None
    return client


def _reason(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]


def server_label(config: Config) -> str:
    """The Redis server as shown to users: the masked URL, or the embedded server's URL."""
    if config.redis.url:
        return mask_url(config.redis.url)
    from . import embedded

    return f"{embedded.paths().url} (embedded)"
