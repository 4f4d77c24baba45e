"""Configuration: defaults < TOML file < environment < CLI flags, validated with key paths.

Every setting has one dotted key path (``queues.cleanup.timeout``). Errors name that path and
the rule broken; ``Config.sources`` records where each effective value came from.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, InputError
from .queues import METRIC_SCOPES, QUEUES
from .timeparse import format_duration, parse_duration

Source = Literal["flag", "env", "file", "default"]
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:{}-]+")  # what RQ accepts for RQ_KEY_PREFIX
URL_SCHEMES = ("redis", "rediss", "unix")
ENV_CONFIG = "SIDERCTL_CONFIG"


# --- value parsers: each returns the typed value or raises ValueError(rule) -----------------

def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if value < low:
            raise ValueError(f"must be >= {low}")
        return value

    return parse


def _duration(*, allow_zero: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be a duration like 30s, 5m or 1h")
        seconds = parse_duration(value)
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise ValueError("must be >= 0" if allow_zero else "must be > 0")
        return seconds

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


def _prefix(value: Any) -> str:
    text = _as_str(value)
    if not PREFIX_PATTERN.fullmatch(text):
        raise ValueError("only letters, digits and _ . : - { } are allowed")
    return text


def _url(value: Any) -> str:
    text = _as_str(value).strip()
    if text:
        check_url(text)
    return text


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a usable redis://, rediss:// or unix:// URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"malformed URL ({exc})") from None
    if parts.scheme not in URL_SCHEMES:
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL needs a socket path (unix:///run/redis.sock)")
        return
    if not parts.hostname:
        raise ValueError("URL has no host (redis://host:6379/0)")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} in the URL path must be a number")


def _http_url(value: Any) -> str:
    from urllib.parse import urlsplit

    text = _as_str(value).strip()
    if text:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError as exc:
            raise ValueError(f"malformed URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
    return text


def _handler(value: Any) -> str:
    text = _as_str(value)
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text):
        raise ValueError('must look like "package.module:function"')
    return text


# --- the settings table -----------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One scalar setting: its key path, default, parser and environment names."""

    path: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    env: tuple[str, ...] = ()
    secret: bool = False


GLOBAL_SETTINGS: tuple[Setting, ...] = (
    Setting("redis.url", "", _url, "Redis URL (redis://, rediss://, unix://); empty = embedded server",
            env=("REDIS_URL", "BULLMQ_REDIS_URL")),
    Setting("redis.prefix", "siderhub", _prefix, "Key prefix shared with RQ (RQ_KEY_PREFIX)",
            env=("REDIS_PREFIX",)),
    Setting("redis.username", "", _as_str, "ACL user name (overrides the URL's)", env=("REDIS_USERNAME",)),
    Setting("redis.password", "", _as_str, "Password (overrides the URL's)", env=("REDIS_PASSWORD",),
            secret=True),
    Setting("redis.connect_timeout", 5.0, _duration(), "Time allowed to connect"),
    Setting("redis.socket_timeout", 10.0, _duration(), "Time allowed for one command"),
    Setting("jobs.enabled", True, _as_bool, "Switch the queues off (local/test)",
            env=("JOBS_ENABLED", "BULLMQ_ENABLED")),
    Setting("scheduler.lease", 5.0, _duration(), "Leader lease; a standby takes over within two leases"),
    Setting("worker.heartbeat", 5.0, _duration(), "Worker heartbeat; a job whose worker is silent for 3 "
            "heartbeats is abandoned and recovered"),
    Setting("worker.shutdown_timeout", 30.0, _duration(allow_zero=True),
            "Warm shutdown: time in-flight jobs get to finish before they are requeued"),
    Setting("events.max_len", 100_000, _int_at_least(100), "Events kept at most in the lifecycle stream"),
    Setting("events.retention", 7 * 86400.0, _duration(), "Age beyond which `cleanup logs` trims events"),
    Setting("audit.max_len", 100_000, _int_at_least(100), "Entries kept at most in the audit stream"),
    Setting("audit.retention", 90 * 86400.0, _duration(), "Age beyond which `cleanup audit` trims entries"),
    Setting("dispatch.url", "", _http_url, "Hidra dispatch endpoint campaign-dispatch POSTs to",
            env=("HIDRA_DISPATCH_URL",)),
    Setting("dispatch.token", "", _as_str, "Bearer token sent to Hidra", env=("HIDRA_TOKEN",), secret=True),
    Setting("dispatch.timeout", 10.0, _duration(), "HTTP timeout of one dispatch request"),
    *(Setting(f"metrics.{scope}_url", "", _http_url, f"Source metrics-sync GETs for scope {scope}",
              env=(f"METRICS_{scope.upper()}_URL",)) for scope in METRIC_SCOPES),
    Setting("metrics.timeout", 10.0, _duration(), "HTTP timeout of one metrics fetch"),
    Setting("metrics.keep", 100, _int_at_least(1), "Snapshots kept per scope"),
    Setting("cleanup.tmp_dir", "", _as_str, "Directory `cleanup tmp` empties of old files (empty = not set)"),
    Setting("cleanup.tmp_max_age", 86400.0, _duration(), "Files older than this are removed by `cleanup tmp`"),
)

# Per-queue policy defaults; concurrency and timeouts follow what each queue's work is like.
_QUEUE_DEFAULTS: dict[str, dict[str, Any]] = {
    "campaign-dispatch": {"timeout": "5m", "retries": 3, "concurrency": 10},
    "metrics-sync": {"timeout": "2m", "retries": 2, "concurrency": 4},
    "cleanup": {"timeout": "10m", "retries": 1, "concurrency": 1},
}


def _queue_settings(name: str) -> tuple[Setting, ...]:
    base = f"queues.{name}."
    own = _QUEUE_DEFAULTS[name]
    return (
        Setting(base + "handler", QUEUES[name].default_handler, _handler, "Handler, package.module:function"),
        Setting(base + "timeout", own["timeout"], _duration(), "Job timeout"),
        Setting(base + "retries", own["retries"], _int_at_least(0), "Retries after a failed attempt"),
        Setting(base + "backoff", "exponential", _choice("fixed", "exponential"), "Retry backoff"),
        Setting(base + "backoff_base", "10s", _duration(), "First retry delay"),
        Setting(base + "backoff_max", "10m", _duration(), "Cap on any retry delay"),
        Setting(base + "backoff_jitter", True, _as_bool, "Randomise retry delays by up to ±25%"),
        Setting(base + "result_ttl", "1d", _duration(), "How long a finished job's result is kept"),
        Setting(base + "keep_results", 1000, _int_at_least(0), "Finished jobs kept at most (0 = no cap)"),
        Setting(base + "failure_ttl", "7d", _duration(), "How long a failed job is kept"),
        Setting(base + "concurrency", own["concurrency"], _int_at_least(1), "Jobs in flight per process"),
        Setting(base + "processes", 1, _int_at_least(1), "Worker processes"),
    )


SETTINGS: dict[str, Setting] = {
    s.path: s for s in (*GLOBAL_SETTINGS, *(s for q in QUEUES for s in _queue_settings(q)))
}

SECTIONS = ("queues", *dict.fromkeys(key.split(".")[0] for key in SETTINGS), "schedules")

DEFAULT_SCHEDULES: dict[str, dict[str, Any]] = {
    "metrics-sync": {"queue": "metrics-sync", "every": "60s", "payload": {"scope": "academy"}},
    "cleanup:jobs": {"queue": "cleanup", "every": "5m", "payload": {"target": "jobs"}},
}
_SCHEDULE_KEYS = {"queue", "every", "cron", "timezone", "payload", "enabled", "catch_up", "max_catch_up"}


# --- typed views ------------------------------------------------------------------------

@dataclass(frozen=True)
class RedisSettings:
    """How to reach Redis; ``url`` empty means the embedded server."""

    url: str
    prefix: str
    username: str
    password: str
    connect_timeout: float
    socket_timeout: float


@dataclass(frozen=True)
class QueuePolicy:
    """Policies applied to every job of one queue."""

    handler: str
    timeout: float
    retries: int
    backoff: str
    backoff_base: float
    backoff_max: float
    backoff_jitter: bool
    result_ttl: float
    keep_results: int
    failure_ttl: float
    concurrency: int
    processes: int

    def retry_delays(self, rng: random.Random | None = None) -> list[int]:
        """Delay before each retry in whole seconds: backoff, ±25% jitter when enabled, then the cap."""
        rng = rng or random.Random()
        delays = []
        for attempt in range(self.retries):
            delay = self.backoff_base * (2**attempt if self.backoff == "exponential" else 1)
            if self.backoff_jitter:
                delay *= rng.uniform(0.75, 1.25)
            delays.append(max(1, round(min(delay, self.backoff_max))))
        return delays


@dataclass(frozen=True)
class Schedule:
    """A recurring job: fires ``every`` seconds or on a ``cron`` expression."""

    name: str
    queue: str
    every: float | None
    cron: str | None
    timezone: str
    payload: dict[str, Any]
    enabled: bool
    catch_up: str
    max_catch_up: int


@dataclass(frozen=True)
class Config:
    """The effective configuration and where each value came from."""

    redis: RedisSettings
    jobs_enabled: bool
    scheduler_lease: float
    queues: dict[str, QueuePolicy]
    schedules: dict[str, Schedule]
    file: Path | None
    values: dict[str, Any] = field(repr=False)
    sources: dict[str, Source] = field(repr=False)


@dataclass(frozen=True)
class Overrides:
    """Values given as global CLI flags."""

    config_path: Path | None = None
    redis_url: str | None = None
    prefix: str | None = None

    def as_settings(self) -> dict[str, tuple[str, str]]:
        """Key path → (flag name, raw value) for the flags that were given."""
        given = {"redis.url": ("--redis-url", self.redis_url), "redis.prefix": ("--prefix", self.prefix)}
        return {k: (flag, v) for k, (flag, v) in given.items() if v is not None}


# --- loading ----------------------------------------------------------------------------

def config_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/siderctl`` (``~/.config/siderctl`` when unset)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "siderctl"


def find_config_file(overrides: Overrides, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The file to read: ``--config``, ``$SIDERCTL_CONFIG``, ``./siderctl.toml``, then XDG."""
    if overrides.config_path is not None:
        return _must_exist(overrides.config_path, "--config")
    if env.get(ENV_CONFIG):
        return _must_exist(Path(env[ENV_CONFIG]), ENV_CONFIG)
    for candidate in (cwd / "siderctl.toml", config_home(env) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def default_config_target(overrides: Overrides, env: Mapping[str, str]) -> Path:
    """Where ``config init`` writes when not told: ``--config``, ``$SIDERCTL_CONFIG``, else XDG."""
    if overrides.config_path is not None:
        return overrides.config_path
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return config_home(env) / "config.toml"


def _must_exist(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (from {origin})")
    return path


def read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path`` as TOML; ConfigError naming the file on any failure."""
    import tomllib  # only when a file exists: keeps `--help` light

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _flatten_file(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key path, value) for every scalar setting in the file; ConfigError on unknown keys."""
    for section, body in data.items():
        if section == "schedules":
            continue
        if section not in SECTIONS:
            raise ConfigError("unknown section", key=section)
        if not isinstance(body, dict):
            raise ConfigError("must be a table", key=section)
        if section == "queues":
            for queue, table in body.items():
                if queue not in QUEUES:
                    raise ConfigError(f"unknown queue (known: {', '.join(QUEUES)})", key=f"queues.{queue}")
                if not isinstance(table, dict):
                    raise ConfigError("must be a table", key=f"queues.{queue}")
                for key, value in table.items():
                    yield f"queues.{queue}.{key}", value
        else:
            for key, value in body.items():
                yield f"{section}.{key}", value


def load_config(
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """The effective configuration; ConfigError names the key path of the first bad value."""
    overrides = overrides or Overrides()
    env = os.environ if env is None else env
    path = find_config_file(overrides, env, cwd or Path.cwd())
    data = read_toml(path) if path else {}

    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for key, setting in SETTINGS.items():
        values[key] = _parse(setting, setting.default, key)
        sources[key] = "default"
    for key, raw in _flatten_file(data):
        if key not in SETTINGS:
            raise ConfigError("unknown key", key=key)
        values[key], sources[key] = _parse(SETTINGS[key], raw, key), "file"
    for key, setting in SETTINGS.items():
        for name in setting.env:
            if env.get(name):
                values[key], sources[key] = _parse(setting, env[name], f"{name} ({key})"), "env"
                break
    for key, (flag, raw) in overrides.as_settings().items():
        values[key], sources[key] = _parse(SETTINGS[key], raw, f"{flag} ({key})"), "flag"

    _check_relations(values)
    schedules = _load_schedules(data.get("schedules", {}), values, sources)
    return Config(
        redis=RedisSettings(**{k.split(".")[1]: values[k] for k in SETTINGS if k.startswith("redis.")}),
        jobs_enabled=values["jobs.enabled"],
        scheduler_lease=values["scheduler.lease"],
        queues={q: _policy(q, values) for q in QUEUES},
        schedules=schedules,
        file=path,
        values=values,
        sources=sources,
    )


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc), key=where) from None


def _check_relations(values: Mapping[str, Any]) -> None:
    for queue in QUEUES:
        base = f"queues.{queue}."
        if values[base + "backoff_max"] < values[base + "backoff_base"]:
            raise ConfigError("must be >= backoff_base", key=base + "backoff_max")


def _policy(queue: str, values: Mapping[str, Any]) -> QueuePolicy:
    base = f"queues.{queue}."
    return QueuePolicy(**{k[len(base):]: v for k, v in values.items() if k.startswith(base)})


def _load_schedules(
    table: Any, values: dict[str, Any], sources: dict[str, Source]
) -> dict[str, Schedule]:
    if not isinstance(table, dict):
        raise ConfigError("must be a table", key="schedules")
    merged: dict[str, tuple[dict[str, Any], Source]] = {
        name: (dict(body), "default") for name, body in DEFAULT_SCHEDULES.items()
    }
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ConfigError("must be a table", key=f"schedules.{name}")
        base = dict(merged[name][0]) if name in merged else {}
        if "cron" in body:
            base.pop("every", None)
        if "every" in body:
            base.pop("cron", None)
        merged[name] = ({**base, **body}, "file")
    result = {}
    for name, (body, source) in merged.items():
        result[name] = _schedule(name, body)
        for key, value in _schedule_view(result[name]).items():
            values[f"schedules.{name}.{key}"] = value
            sources[f"schedules.{name}.{key}"] = source
    return result


def _schedule(name: str, body: Mapping[str, Any]) -> Schedule:
    base = f"schedules.{name}"
    for key in body:
        if key not in _SCHEDULE_KEYS:
            raise ConfigError("unknown key", key=f"{base}.{key}")
    queue = body.get("queue")
    if queue not in QUEUES:
        raise ConfigError(f"must name a queue ({', '.join(QUEUES)})", key=f"{base}.queue")
    if ("every" in body) == ("cron" in body):
        raise ConfigError("set exactly one of every or cron", key=base)

    def field_(key: str, parse: Callable[[Any], Any], default: Any) -> Any:
        try:
            return parse(body.get(key, default))
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{base}.{key}") from None

    every = field_("every", _duration(), 1) if "every" in body else None
    cron = field_("cron", _cron, "") if "cron" in body else None
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise ConfigError("must be a table", key=f"{base}.payload")
    try:
        QUEUES[queue].validate(payload, datetime.now(UTC))
    except InputError as exc:
        raise ConfigError(exc.message, key=f"{base}.payload") from None
    return Schedule(
        name=name,
        queue=queue,
        every=every,
        cron=cron,
        timezone=field_("timezone", _timezone, "UTC"),
        payload=dict(payload),
        enabled=field_("enabled", _as_bool, True),
        catch_up=field_("catch_up", _choice("none", "last", "all"), "last"),
        max_catch_up=field_("max_catch_up", _int_at_least(1), 10),
    )


def _cron(value: Any) -> str:
    text = _as_str(value)
    from croniter import croniter  # only configs that use cron pay for the import

    if not croniter.is_valid(text):
        raise ValueError(f"{text!r} is not a valid cron expression")
    return text


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = _as_str(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a known IANA timezone") from None
    return text


def _schedule_view(schedule: Schedule) -> dict[str, Any]:
    view: dict[str, Any] = {"queue": schedule.queue}
    if schedule.every is not None:
        view["every"] = format_duration(schedule.every)
    else:
        view["cron"] = schedule.cron
    view.update(
        timezone=schedule.timezone,
        payload=schedule.payload,
        enabled=schedule.enabled,
        catch_up=schedule.catch_up,
        max_catch_up=schedule.max_catch_up,
    )
    return view


# --- presenting and writing -------------------------------------------------------------

def display_value(config: Config, key: str) -> Any:
    """The value of ``key`` as a user should see it: durations as text, secrets masked."""
    value = config.values[key]
    setting = SETTINGS.get(key)
    if setting is None:
        return value
    if setting.secret:
        return "***" if value else ""
    if key == "redis.url":
        return mask_url(value)
    return format_duration(value) if isinstance(value, float) else value


def mask_url(url: str) -> str:
    """``url`` with any password (``user:pass@`` or ``?password=``) replaced by ``***``."""
    masked = re.sub(r"^([a-z]+://[^:/@?#]*):[^/?#]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", masked)


_URL_SECRET = re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.I)
_PARAM_SECRET = re.compile(r"(?i)\b(password|token|secret)=[^&\s]+")


def redact(text: str) -> str:
    """``text`` with passwords in URLs and ``password=``/``token=`` values replaced by ``***``."""
    return _PARAM_SECRET.sub(r"\1=***", _URL_SECRET.sub(r"\1:***@", text))


def default_document() -> dict[str, Any]:
    """The complete default configuration as a TOML-ready document."""
    doc: dict[str, Any] = {section: {} for section in SECTIONS if section not in ("queues", "schedules")}
    doc["queues"] = {q: {} for q in QUEUES}
    for key, setting in SETTINGS.items():
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = format_duration(setting.default) if isinstance(setting.default, float) else setting.default
    doc["schedules"] = {
        name: {**body, "timezone": "UTC", "enabled": True, "catch_up": "last", "max_catch_up": 10}
        for name, body in DEFAULT_SCHEDULES.items()
    }
    return doc


def write_config(path: Path, document: Mapping[str, Any], *, force: bool) -> None:
    """Write ``document`` as TOML to ``path`` atomically (mode 0600; no clobber unless ``force``)."""
    import tempfile

    import tomli_w

    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(dict(document), fh)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if someone created the file meanwhile
            except FileExistsError:
                raise ConfigError(f"{path}: already exists (use --force to overwrite)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
