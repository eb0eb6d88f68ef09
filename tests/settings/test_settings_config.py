"""Issue 14 §3: one settings object from defaults < edgeflow.yaml (or $EDGEFLOW_CONFIG) < the environment,
checked with file:line:column errors, secrets masked; the modules that read settings go through it."""

from __future__ import annotations

import json

import pytest

from edgeflow.config import SETTINGS, settings
from edgeflow.errors import ConfigError

ORIGINAL = {"GATEWAY_HTTP_PORT": 8000, "GATEWAY_TCP_PORT": 8080, "GATEWAY_HOST": "localhost",
            "EDGEFLOW_BIND": None, "EDGEFLOW_GATEWAY_TOKEN": None, "EDGEFLOW_ALLOWED_ORIGINS": (),
            "REDIS_HOST": "localhost", "REDIS_PORT": 6379, "DATA_REDIS_HOST": "localhost",
            "DATA_REDIS_PORT": 6380, "REDIS_KEY": "default", "NODE_NAME": None}


def test_the_original_settings_keep_their_names_and_defaults(clean):
    assert {name: getattr(settings, name) for name in ORIGINAL} == ORIGINAL
    assert all(settings.source(name) == "default" for name in ORIGINAL)


def test_the_file_overrides_the_defaults_and_the_environment_overrides_the_file(clean, monkeypatch):
    (clean / "edgeflow.yaml").write_text("gateway_http_port: 8001\nredis_host: redis.site\n"
                                         "EDGEFLOW_BIND: 0.0.0.0\nallowed_origins: [http://a, http://b]\n")
    assert settings.GATEWAY_HTTP_PORT == 8001 and settings.source("GATEWAY_HTTP_PORT") == "file"
    assert settings.resolve("GATEWAY_HTTP_PORT").where == "edgeflow.yaml:1"
    assert settings.EDGEFLOW_BIND == "0.0.0.0"
    assert settings.EDGEFLOW_ALLOWED_ORIGINS == ("http://a", "http://b")
    assert settings.DATA_REDIS_HOST == "redis.site"                 # its default is REDIS_HOST's value
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9001")
    monkeypatch.setenv("EDGEFLOW_ALLOWED_ORIGINS", "http://c, http://d")
    assert settings.GATEWAY_HTTP_PORT == 9001 and settings.source("GATEWAY_HTTP_PORT") == "env"
    assert settings.EDGEFLOW_ALLOWED_ORIGINS == ("http://c", "http://d")
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "")                     # empty: as unset, as the original
    assert settings.GATEWAY_HTTP_PORT == 8001


def test_edgeflow_config_names_the_file_and_it_must_exist(clean, monkeypatch):
    site = clean / "site.yml"
    site.write_text('{"redis_port": 7001}')                            # JSON is YAML
    (clean / "edgeflow.yaml").write_text("redis_port: 7002\n")
    monkeypatch.setenv("EDGEFLOW_CONFIG", str(site))
    assert settings.REDIS_PORT == 7001 and settings.file() == str(site)
    monkeypatch.setenv("EDGEFLOW_CONFIG", str(clean / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"^\$EDGEFLOW_CONFIG='.*missing.yaml': no such file$"):
        settings.REDIS_PORT


def test_a_changed_file_is_read_again(clean):
    path = clean / "edgeflow.yaml"
    path.write_text("redis_port: 7001\n")
    assert settings.REDIS_PORT == 7001
    path.write_text("redis_port: 7002\n")                              # same size, maybe the same mtime
    assert settings.REDIS_PORT == 7002
    path.unlink()
    assert settings.REDIS_PORT == 6379


@pytest.mark.parametrize("text, message", [
    ("redis_port: 1\ngatway_http_port: 1\n",
     "edgeflow.yaml:2:1: unknown setting 'gatway_http_port' (did you mean 'gateway_http_port'?)"),
    ("gateway_http_port: eight\n", "edgeflow.yaml:1:20: gateway_http_port: expected a port number (0-65535), "
                                   "got 'eight'"),
    ("redis_port: 70000\n", "edgeflow.yaml:1:13: redis_port: expected a port number (0-65535), got 70000"),
    ("bind: yes\n", "edgeflow.yaml:1:7: bind: expected a text value, got True"),
    ("durable_grace: -1\n", "edgeflow.yaml:1:16: durable_grace: must be at least 0, got -1"),
    ("log_format: xml\n", "edgeflow.yaml:1:13: log_format: expected 'text' or 'json', got 'xml'"),
    ("bind: a\nEDGEFLOW_BIND: b\n", "edgeflow.yaml:2:1: bind: set twice (first at edgeflow.yaml:1)"),
    ("config: other.yaml\n",
     "edgeflow.yaml:1:1: config: $EDGEFLOW_CONFIG can only be set in the environment"),
    ("- redis_port\n", "edgeflow.yaml:1:1: expected a mapping of settings (key: value)"),
    ("redis_port: [1\n", "edgeflow.yaml:2:1: not valid YAML: expected ',' or ']', but got '<stream end>'"),
], ids=["unknown", "port", "range", "yaml-bool", "minimum", "choice", "twice", "env-only", "list", "syntax"])
def test_file_errors_name_the_file_line_and_column(clean, text, message):
    (clean / "edgeflow.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        settings.REDIS_HOST                  # any setting: the whole file is checked
    assert str(err.value) == message


@pytest.mark.parametrize("name, value, message", [
    ("REDIS_PORT", "x", "$REDIS_PORT: expected a port number (0-65535), got 'x'"),
    ("EDGEFLOW_DEBUG", "maybe", "$EDGEFLOW_DEBUG: expected true or false (1/0, yes/no, on/off), got 'maybe'"),
    ("EDGEFLOW_DURABLE_GRACE", "soon", "$EDGEFLOW_DURABLE_GRACE: expected a number, got 'soon'"),
])
def test_bad_environment_values_are_one_line_errors(clean, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        settings.get(name)
    assert str(err.value) == message


def test_an_unknown_setting_has_a_did_you_mean(clean):
    with pytest.raises(ConfigError, match=r"unknown setting 'REDIS_HOTS' \(did you mean 'REDIS_HOST'\?\)"):
        settings.get("REDIS_HOTS")


def test_secrets_are_masked_wherever_settings_are_shown(clean, monkeypatch):
    (clean / "edgeflow.yaml").write_text("gateway_token: file-secret\nredis_url: redis://u:pw-secret@h:1/0\n"
                                         "redis_password: [1]\n")
    with pytest.raises(ConfigError) as err:                           # a bad secret: its value is not shown
        settings.REDIS_HOST
    assert str(err.value) == "edgeflow.yaml:3:17: redis_password: expected a text value"
    (clean / "edgeflow.yaml").write_text("gateway_token: file-secret\nredis_url: redis://u:pw-secret@h:1/0\n")
    monkeypatch.setenv("REDIS_PASSWORD", "env-secret")
    assert settings.EDGEFLOW_GATEWAY_TOKEN == "file-secret"           # the value itself is there for the code
    assert settings.shown("EDGEFLOW_GATEWAY_TOKEN") == "***"
    assert settings.shown("REDIS_URL") == "redis://u:***@h:1/0"
    shown = json.dumps(settings.effective()) + repr(settings) + repr(settings.resolve("REDIS_PASSWORD"))
    assert "secret" not in shown and shown.count("***") >= 4
    assert {s.name for s in SETTINGS if s.secret} == {"EDGEFLOW_GATEWAY_TOKEN", "REDIS_PASSWORD", "REDIS_URL",
                                                      "DATA_REDIS_URL", "EDGEFLOW_DB_URL"}


def test_every_edgeflow_variable_the_code_reads_is_a_setting():
    import pathlib
    import re

    import edgeflow
    # set by EdgeFlow itself for its own child processes, never by a user
    internal = {"EDGEFLOW_CAPTURE_GRAPH", "EDGEFLOW_BENCH_APP", "EDGEFLOW_BENCH_STAMP"}
    read = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["'](EDGEFLOW_\w+)""")
    found = set()
    for src in pathlib.Path(edgeflow.__file__).parent.rglob("*.py"):
        found |= set(read.findall(src.read_text()))
    assert found - internal <= {s.name for s in SETTINGS}, found - internal - {s.name for s in SETTINGS}
    assert {"EDGEFLOW_LOG_FORMAT", "EDGEFLOW_DURABLE_GRACE", "EDGEFLOW_NODE", "EDGEFLOW_APP",
            "EDGEFLOW_PURE_MATCHER", "EDGEFLOW_DEBUG"} <= {s.name for s in SETTINGS}


def test_the_modules_that_read_settings_take_them_from_the_file(clean, monkeypatch):
    """Each module changed to go through `settings` sees a value only the settings file gives."""
    from edgeflow.cli import doctor, is_debug
    from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
    from edgeflow.fusion import _load_core
    from edgeflow.runtime import launcher, router
    from edgeflow.transport import _redis_common, shm
    (clean / "edgeflow.yaml").write_text(
        "redis_host: r.site\nredis_port: 7010\nredis_password: pw\ndata_redis_port: 7011\napp: siteapp\n"
        "node: cam\ngateway_host: 10.9.8.7\npure_matcher: true\ndebug: on\ngateway_http_port: 1\n")
    assert RedisBroker().url == "redis://:pw@r.site:7010/0"
    assert DualRedisBroker().data_url == "redis://:pw@r.site:7011/0"
    assert shm.ring_name(None, "t") == "edgeflow.siteapp.t"
    assert _redis_common.names(None, "t") == ("siteapp", "t")
    assert launcher.parse_args([]).node == "cam"
    assert router.advertised_address(RedisBroker()) == "10.9.8.7"
    assert _load_core(None)[0] == "python"
    assert is_debug() is True
    assert "port 1 " in doctor.check_port("GATEWAY_HTTP_PORT", 8000).detail   # not 8000: the file's port
    monkeypatch.setenv("REDIS_URL", "redis://env-host:7020/0")                # the environment still wins
    assert RedisBroker().url == "redis://env-host:7020/0"


def test_durable_grace_comes_from_the_file_when_the_runtime_is_imported(clean):
    import subprocess
    import sys
    (clean / "edgeflow.yaml").write_text("durable_grace: 7.5\n")
    out = subprocess.run([sys.executable, "-c", "import edgeflow.runtime.loop as l; print(l.DURABLE_GRACE)"],
                         cwd=clean, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7.5"


def test_the_log_format_flag_is_parsed_by_its_whole_name_only(clean):
    """A script's own --log (examples/folder_style) is not taken for an abbreviated --log-format."""
    from edgeflow.runtime import launcher
    args = launcher.parse_args(["--log", "out.csv", "--log-format", "json", "--frames", "3"])
    assert (args.log_format, args.frames) == ("json", 3)
    assert launcher.parse_args(["--log", "out.csv"]).log_format is None
