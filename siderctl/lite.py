"""A minimal Redis client for one-shot commands: a socket and hiredis' RESP parser.

Importing redis-py 8 costs 100-200 ms (it loads its asyncio client even for the sync one), more
than a whole ``siderctl enqueue`` should take. ``enqueue`` needs a handful of commands on one
connection, so for plain ``redis://`` and ``unix://`` URLs it talks RESP itself; anything else
(TLS, URL options it does not know) goes through redis-py as every other command does.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .config import Config, mask_url
from .errors import RedisUnavailable

_KNOWN_QUERY = {"db", "password"}


def supported(url: str) -> bool:
    """Whether ``url`` can be served here (else: redis-py)."""
    parts = urlsplit(url)
    return parts.scheme in ("redis", "unix") and set(parse_qs(parts.query)) <= _KNOWN_QUERY


class LiteRedis:
    """One connection, commands executed one at a time; errors as siderctl errors."""

    def __init__(self, sock: socket.socket, label: str) -> None:
        import hiredis

        self._sock = sock
        self._label = label
        self._reader = hiredis.Reader()
        self._reply_error = hiredis.ReplyError
        self._pack = hiredis.pack_command

    @classmethod
    def open(cls, config: Config, url: str) -> LiteRedis:
        """Connect, authenticate, select the database and PING; RedisUnavailable when that fails."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        label = mask_url(url)
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(config.redis.connect_timeout)
                sock.connect(parts.path)
                db = int(query.get("db", ["0"])[0])
            else:
                sock = socket.create_connection((parts.hostname or "localhost", parts.port or 6379),
                                                timeout=config.redis.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                db = int(parts.path.lstrip("/") or query.get("db", ["0"])[0])
            sock.settimeout(config.redis.socket_timeout)
        except (OSError, ValueError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {label}: {_reason(exc)}") from None
        client = cls(sock, label)
        username = config.redis.username or unquote(parts.username or "")
        password = config.redis.password or unquote(parts.password or "") or query.get("password", [""])[0]
        try:
            if password:
                client._auth(username, password)
            if db:
                client.execute("SELECT", db)
            client.execute("PING")
        except RedisUnavailable:
            client.close()
            raise
        except CommandError as exc:
            client.close()
            raise RedisUnavailable(f"cannot reach Redis at {label}: {exc}") from None
        return client

    def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; CommandError for an error reply."""
        return self.execute_many([args])[0]

    def _auth(self, username: str, password: str) -> None:
        try:
            self.execute("AUTH", *([username] if username else []), password)
        except CommandError as exc:
            # A password for a server that has none: redis-py accepts that, so the same URL works here.
            text = str(exc)
            if "called without any password configured" not in text and "but no password is set" not in text:
                raise

    def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send several commands in one write and read every reply (a pipeline, not a transaction).

        CommandError for the first error reply, once all replies are read (the connection stays usable).
        """
        try:
            self._sock.sendall(b"".join(self._pack(tuple(command)) for command in commands))
            replies: list[Any] = []
            while len(replies) < len(commands):
                reply = self._reader.gets()
                if reply is not False:
                    replies.append(reply)
                    continue
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed by server")
                self._reader.feed(data)
        except OSError as exc:
            raise RedisUnavailable(f"lost the connection to Redis at {self._label}: {_reason(exc)}") from None
        for reply in replies:
            if isinstance(reply, self._reply_error):
                raise CommandError(str(reply))
        return replies

    def pipeline(self, transaction: bool = False) -> LitePipeline:
        """Commands queued and sent together on ``execute()``."""
        return LitePipeline(self)

    def zrevrangebyscore(self, key: str, high: Any, low: Any, start: int | None = None, num: int | None = None,
                         withscores: bool = False) -> list[Any]:
        """ZREVRANGEBYSCORE, members with float scores as pairs when ``withscores`` (as redis-py)."""
        args: list[Any] = ["ZREVRANGEBYSCORE", key, high, low]
        if withscores:
            args.append("WITHSCORES")
        if start is not None and num is not None:
            args += ["LIMIT", start, num]
        reply = self.execute(*args)
        if not withscores:
            return list(reply)
        return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]

    def register_script(self, text: str) -> LiteScript:
        """A callable running ``text`` by its SHA (loading it when Redis does not know it)."""
        return LiteScript(self, text)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> LiteRedis:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class CommandError(Exception):
    """Redis answered a command with an error."""


class LiteScript:
    """A Lua script called by EVALSHA, as redis-py's ``Script`` is."""

    def __init__(self, client: LiteRedis, text: str) -> None:
        self.client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except CommandError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        self.client.execute("SCRIPT", "LOAD", self.text)
        return self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class LitePipeline:
    """The few pipelined reads one-shot commands make, replies shaped as redis-py shapes them."""

    def __init__(self, client: LiteRedis) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []
        self.shapes: list[Any] = []

    def _add(self, shape: Any, *command: Any) -> LitePipeline:
        self.commands.append(command)
        self.shapes.append(shape)
        return self

    def llen(self, key: str) -> LitePipeline:
        return self._add(None, "LLEN", key)

    def zcard(self, key: str) -> LitePipeline:
        return self._add(None, "ZCARD", key)

    def lindex(self, key: str, index: int) -> LitePipeline:
        return self._add(None, "LINDEX", key, index)

    def smembers(self, key: str) -> LitePipeline:
        return self._add(set, "SMEMBERS", key)

    def hget(self, key: str, field: str) -> LitePipeline:
        return self._add(None, "HGET", key, field)

    def hmget(self, key: str, *fields: Any) -> LitePipeline:
        return self._add(None, "HMGET", key, *fields)

    def zscore(self, key: str, member: str) -> LitePipeline:
        return self._add(_score, "ZSCORE", key, member)

    def execute(self) -> list[Any]:
        replies = self.client.execute_many(self.commands) if self.commands else []
        self.commands, shapes, self.shapes = [], self.shapes, []
        return [shape(reply) if shape else reply for shape, reply in zip(shapes, replies, strict=True)]

    def __enter__(self) -> LitePipeline:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.commands, self.shapes = [], []


def _score(reply: Any) -> float | None:
    return None if reply is None else float(reply)


def connect(config: Config) -> Any:
    """A client for a one-shot command: this module's for plain URLs, redis-py's otherwise."""
    from .connection import connect as redis_connect
    from .connection import redis_url

    url = redis_url(config)
    return LiteRedis.open(config, url) if supported(url) else redis_connect(config)
