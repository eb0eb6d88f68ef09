"""Issue 8: `edgeflow doctor`: each check with its fix, --json, exit 1 when a check fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from click.testing import CliRunner

from _clitools import cli_env, edgeflow, free_port
from edgeflow.cli import cli, doctor
from edgeflow.transport import shm

NAMES = ["compiled core", "/dev/shm", "stale segments", "redis", "GATEWAY_HTTP_PORT", "GATEWAY_TCP_PORT",
         "docker", "kubectl"]


def test_json_has_every_check(redis_url):
    out = edgeflow("doctor", "--json", "--redis", redis_url)
    report = json.loads(out.stdout)
    assert [c["name"] for c in report["checks"]] == NAMES
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])
    assert all(c["fix"] for c in report["checks"] if c["status"] != "ok")
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["compiled core"]["status"] == "ok"
    assert by_name["redis"]["status"] == "ok" and "Redis 7" in by_name["redis"]["detail"]
    assert report["ok"] == (out.returncode == 0)


def test_unreachable_redis_given_with_redis_fails_and_exits_1():
    port = free_port()                                   # nobody listens there
    out = edgeflow("doctor", "--redis", f"redis://127.0.0.1:{port}/0")
    assert out.returncode == 1
    line = next(l for l in out.stdout.splitlines() if " redis " in l)
    assert line.startswith("FAIL") and f"127.0.0.1:{port}" in line
    assert "fix: start one" in out.stdout
    assert "1 failed (redis)" in out.stdout


def test_default_redis_from_the_environment_is_only_a_warning_when_unreachable():
    port = free_port()
    out = edgeflow("doctor", "--json", env=cli_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port)))
    check = next(c for c in json.loads(out.stdout)["checks"] if c["name"] == "redis")
    assert check["status"] == "warn" and "needed only for runs across hosts" in check["detail"]


def test_a_port_in_use_is_reported_with_the_variable_to_change():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner(env={"GATEWAY_HTTP_PORT": str(port)}).invoke(cli, ["doctor", "--json"])
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "GATEWAY_HTTP_PORT")
    assert check["status"] == "warn" and f"port {port} is in use" in check["detail"]
    assert "GATEWAY_HTTP_PORT" in check["fix"]


def test_stale_segments_of_a_dead_writer_are_listed_not_removed(app):
    code = (f"import os, edgeflow as ef; p = ef.Publisher('cam', app={app!r}); p.publish(b'x' * 64); "
            "os._exit(0)")                               # dies without closing: its ring stays behind
    subprocess.run([sys.executable, "-c", code], env=cli_env(), check=True, timeout=30)
    try:
        check = doctor.check_stale()
        assert check.status == "warn" and "whose writer is dead" in check.detail
        assert f"rm /dev/shm/edgeflow.{app}.*" in check.fix or "more" in check.detail
        assert shm.live_writers(app) == []
        assert any(name.startswith(f"edgeflow.{app}.") for name in os.listdir("/dev/shm"))   # not removed
    finally:
        shm.sweep_app(app)


def test_shm_check_explains_a_missing_dev_shm(tmp_path):
    check = doctor.check_shm(str(tmp_path / "no-shm"))
    assert check.status == "fail" and "--shm-size" in check.fix and "emptyDir" in check.fix
    assert doctor.check_shm(str(tmp_path)).status in ("ok", "warn")


def test_missing_tools_are_warnings_with_a_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    for tool in ("docker", "kubectl"):
        check = doctor.check_tool(tool)
        assert check.status == "warn" and "not installed" in check.detail and check.fix
