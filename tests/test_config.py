"""Configuration: sources, precedence, validation with key paths, init/show/path."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from siderctl.config import Overrides, default_document, load_config, mask_url
from siderctl.errors import ConfigError

from .conftest import Cli


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_seed() -> None:
    config = load_config(env={}, cwd=Path("/nonexistent"))
    assert config.redis.url == ""
    assert config.redis.prefix == "siderhub"
    assert config.jobs_enabled is True
    assert set(config.queues) == {"campaign-dispatch", "metrics-sync", "cleanup"}
    metrics, cleanup = config.schedules["metrics-sync"], config.schedules["cleanup:jobs"]
    assert (metrics.queue, metrics.every, metrics.payload) == ("metrics-sync", 60.0, {"scope": "academy"})
    assert (cleanup.queue, cleanup.every, cleanup.payload) == ("cleanup", 300.0, {"target": "jobs"})
    assert all(source == "default" for source in config.sources.values())


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[redis]\nprefix = "fromfile"\nurl = "redis://file:1/0"\n'
                                      '[queues.cleanup]\ntimeout = "90s"\n')
    env = {"REDIS_PREFIX": "fromenv"}
    config = load_config(Overrides(config_path=path, prefix="fromflag"), env=env, cwd=tmp_path)
    assert config.redis.prefix == "fromflag" and config.sources["redis.prefix"] == "flag"
    config = load_config(Overrides(config_path=path), env=env, cwd=tmp_path)
    assert config.redis.prefix == "fromenv" and config.sources["redis.prefix"] == "env"
    assert config.redis.url == "redis://file:1/0" and config.sources["redis.url"] == "file"
    assert config.queues["cleanup"].timeout == 90.0 and config.sources["queues.cleanup.timeout"] == "file"
    assert config.sources["queues.cleanup.retries"] == "default"


def test_seed_env_names_and_fallbacks(tmp_path: Path) -> None:
    config = load_config(env={"BULLMQ_REDIS_URL": "redis://b:2/1", "BULLMQ_ENABLED": "false"}, cwd=tmp_path)
    assert config.redis.url == "redis://b:2/1" and config.jobs_enabled is False
    config = load_config(env={"REDIS_URL": "redis://a:1/0", "BULLMQ_REDIS_URL": "redis://b:2/1",
                              "JOBS_ENABLED": "yes", "BULLMQ_ENABLED": "false"}, cwd=tmp_path)
    assert config.redis.url == "redis://a:1/0" and config.jobs_enabled is True


def test_file_lookup_order(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    write((xdg / "siderctl").mkdir(parents=True) or xdg / "siderctl" / "config.toml", '[redis]\nprefix = "xdg"\n')
    env = {"XDG_CONFIG_HOME": str(xdg)}
    assert load_config(env=env, cwd=tmp_path).redis.prefix == "xdg"
    write(tmp_path / "siderctl.toml", '[redis]\nprefix = "cwd"\n')
    assert load_config(env=env, cwd=tmp_path).redis.prefix == "cwd"
    named = write(tmp_path / "named.toml", '[redis]\nprefix = "named"\n')
    assert load_config(env={**env, "SIDERCTL_CONFIG": str(named)}, cwd=tmp_path).redis.prefix == "named"
    flag = write(tmp_path / "flag.toml", '[redis]\nprefix = "flag"\n')
    config = load_config(Overrides(config_path=flag), env={**env, "SIDERCTL_CONFIG": str(named)}, cwd=tmp_path)
    assert config.redis.prefix == "flag" and config.file == flag


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[queues.cleanup]\ntimeout = 0\n", "queues.cleanup.timeout: must be > 0"),
        ("[queues.cleanup]\ntimeout = \"soon\"\n", "queues.cleanup.timeout: 'soon' is not a duration"),
        ("[queues.cleanup]\ntimout = 5\n", "queues.cleanup.timout: unknown key"),
        ("[queues.other]\ntimeout = 5\n", "queues.other: unknown queue"),
        ("[queues.metrics-sync]\nconcurrency = 0\n", "queues.metrics-sync.concurrency: must be >= 1"),
        ("[queues.metrics-sync]\nbackoff = \"linear\"\n", "queues.metrics-sync.backoff: must be one of fixed"),
        ("[queues.cleanup]\nbackoff_base = \"1m\"\nbackoff_max = \"30s\"\n",
         "queues.cleanup.backoff_max: must be >= backoff_base"),
        ("[queues.cleanup]\nhandler = \"not a path\"\n", "queues.cleanup.handler: must look like"),
        ("[redis]\nprefix = \"bad prefix!\"\n", "redis.prefix: only letters, digits"),
        ("[redis]\nurl = \"http://x\"\n", "redis.url: must start with redis://"),
        ("[redis]\nurl = \"redis://host:notaport/0\"\n", "redis.url: malformed URL"),
        ("[jobs]\nenabled = \"maybe\"\n", "jobs.enabled: must be true or false"),
        ("[bogus]\nx = 1\n", "bogus: unknown section"),
        ("[schedules.x]\nqueue = \"cleanup\"\nevery = \"1m\"\npayload = {target = \"nope\"}\n",
         "schedules.x.payload: target: must be one of"),
        ("[schedules.x]\nqueue = \"cleanup\"\nevery = \"1m\"\ncron = \"* * * * *\"\n",
         "schedules.x: set exactly one of every or cron"),
        ("[schedules.x]\nqueue = \"cleanup\"\ncron = \"61 * * * *\"\n",
         "schedules.x.cron: '61 * * * *' is not a valid"),
        ("[schedules.x]\nqueue = \"nope\"\nevery = \"1m\"\n", "schedules.x.queue: must name a queue"),
        ("[schedules.x]\nqueue = \"cleanup\"\nevery = \"1m\"\ntimezone = \"Mars/Base\"\npayload = {target = \"tmp\"}\n",
         "schedules.x.timezone: 'Mars/Base' is not a known IANA timezone"),
        ("[schedules.metrics-sync]\ncatch_up = \"some\"\n", "schedules.metrics-sync.catch_up: must be one of none"),
    ],
)
def test_invalid_file_names_key_path_and_rule(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_config(Overrides(config_path=path), env={}, cwd=tmp_path)
    assert message in caught.value.message


def test_invalid_env_and_flag_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"REDIS_PREFIX \(redis.prefix\): only letters"):
        load_config(env={"REDIS_PREFIX": "a b"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"--redis-url \(redis.url\): must start with"):
        load_config(Overrides(redis_url="localhost:6379"), env={}, cwd=tmp_path)


def test_schedules_merge_by_name_and_accept_cron(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[schedules.metrics-sync]\nenabled = false\n'
                                      '[schedules.nightly]\nqueue = "cleanup"\ncron = "0 3 * * *"\n'
                                      'timezone = "America/Sao_Paulo"\npayload = {target = "tmp"}\n')
    config = load_config(Overrides(config_path=path), env={}, cwd=tmp_path)
    assert config.schedules["metrics-sync"].enabled is False
    assert config.schedules["metrics-sync"].every == 60.0
    assert config.schedules["nightly"].cron == "0 3 * * *"
    assert config.schedules["cleanup:jobs"].enabled is True
    assert config.sources["schedules.nightly.cron"] == "file"


def test_mask_url_hides_passwords() -> None:
    assert mask_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_url("rediss://:s3cret@host/0") == "rediss://:***@host/0"
    assert mask_url("unix:///run/r.sock?password=s3cret&db=1") == "unix:///run/r.sock?password=***&db=1"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_init_writes_complete_defaults_atomically(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "conf" / "siderctl.toml"
    result = cli("config", "init", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert tomllib.loads(target.read_text()) == json.loads(json.dumps(default_document()))
    assert [p.name for p in target.parent.iterdir()] == ["siderctl.toml"]  # no temp file left
    reloaded = load_config(Overrides(config_path=target), env={}, cwd=tmp_path)
    assert reloaded.values == load_config(env={}, cwd=tmp_path / "none").values

    before = target.read_text()
    refused = cli("config", "init", str(target))
    assert refused.exit_code == 3 and "already exists" in refused.stderr and target.read_text() == before
    target.write_text("# edited\n")
    assert cli("config", "init", str(target), "--force").exit_code == 0
    assert target.read_text() == before


def test_init_default_target_is_xdg(cli: Cli, isolated_env: Path) -> None:
    result = cli("config", "init")
    assert result.exit_code == 0
    assert Path(result.stdout.strip()) == isolated_env / "xdg-config" / "siderctl" / "config.toml"
    assert cli("config", "path").stdout.strip() == result.stdout.strip()


def test_show_reports_sources_and_masks_secrets(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[redis]\npassword = "filepass"\n[queues.cleanup]\nretries = 4\n')
    env = {"REDIS_URL": "redis://admin:urlpass@db:6379/2"}
    result = cli("--config", str(path), "--prefix", "flagged", "config", "show", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    settings = shown["settings"]
    assert shown["file"] == str(path)
    assert settings["redis.url"] == {"value": "redis://admin:***@db:6379/2", "source": "env"}
    assert settings["redis.password"] == {"value": "***", "source": "file"}
    assert settings["redis.prefix"] == {"value": "flagged", "source": "flag"}
    assert settings["queues.cleanup.retries"] == {"value": 4, "source": "file"}
    assert settings["queues.cleanup.timeout"] == {"value": "10m", "source": "default"}
    assert settings["schedules.metrics-sync.every"] == {"value": "1m", "source": "default"}
    table = cli("--config", str(path), "config", "show", env=env)
    assert table.exit_code == 0
    assert "urlpass" not in table.stdout + table.stderr and "filepass" not in table.stdout + table.stderr
    assert "redis.url" in table.stdout and "queues.cleanup.retries" in table.stdout


def test_path_without_file_says_so_on_stderr(cli: Cli) -> None:
    result = cli("config", "path")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no config file" in result.stderr


def test_bad_toml_is_one_line_exit_3(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[redis\nurl=")
    result = cli("--config", str(path), "config", "show")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "invalid TOML" in result.stderr and str(path) in result.stderr


def test_missing_named_config_is_an_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "absent.toml"), "config", "show")
    assert result.exit_code == 3 and "no such config file" in result.stderr


def test_retry_delays_back_off_with_jitter_and_a_cap() -> None:
    import random
    from dataclasses import replace

    policy = load_config(env={}, cwd=Path("/nonexistent")).queues["campaign-dispatch"]
    plain = replace(policy, retries=8, backoff_base=10.0, backoff_max=300.0, backoff_jitter=False)
    assert plain.retry_delays() == [10, 20, 40, 80, 160, 300, 300, 300]
    assert replace(plain, backoff="fixed").retry_delays() == [10] * 8
    jittered = replace(plain, backoff_jitter=True).retry_delays(random.Random(7))
    assert all(0.75 * a <= b <= min(1.25 * a, 300) for a, b in zip([10, 20, 40, 80, 160, 300, 300, 300], jittered,
                                                                     strict=True))
    assert jittered != plain.retry_delays()
