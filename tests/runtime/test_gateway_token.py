"""Issue 12, section 2 (closed by default), the TCP ingest of a real ``python main.py --node gw`` run with a real
redis-server on a free loopback port: with a token, a sender without it or with a wrong one is rejected and
counted (on the gateway's /metrics), the right one delivers; without a token the gateway creates one, shares it
through the control Redis, and still refuses unauthenticated senders; the ingest binds loopback by default."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeflow.transport.tcp import TcpSender
from tests.runtime.test_distributed_stats import free_port, redis_url  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]

APP = '''
import os
import numpy as np
from edgeflow import EdgeApp, GatewayNode, ProducerNode, RedisBroker
from edgeflow.nodes.gateway.interfaces.web import WebInterface

app = EdgeApp(os.environ["TEST_APP"], broker=RedisBroker(os.environ["TEST_REDIS_URL"]))


@app.node(name="cam", fps=20)
class Cam(ProducerNode):
    def produce(self):
        return np.zeros((8, 8), np.uint8)


@app.node(name="gw")
class Gw(GatewayNode):
    def configure(self):
        self.add_interface(WebInterface(port=int(os.environ["TEST_HTTP_PORT"])))


if __name__ == "__main__":
    app.link("cam").to("gw")
    app.run()
'''

LISTENING = re.compile(r"gateway gw: TCP ingest listening on (\S+):(\d+) \(([^)]*)\)")


class Child:
    """``python main.py --node gw`` with its output read line by line (so a test waits on a line, not a
    sleep)."""

    def __init__(self, tmp_path: Path, env: dict) -> None:
        (tmp_path / "main.py").write_text(APP)
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "main.py", "--node", "gw"], cwd=tmp_path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)
        self._new.put(None)

    def wait_line(self, pattern: re.Pattern, timeout: float = 30.0) -> re.Match:
        """The first output line matching ``pattern`` (waits for it); fails when the child ends first."""
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if (found := pattern.search(line)):
                return found
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + self.output()) from None
            if line is None:
                raise AssertionError(f"the run ended ({self.proc.wait()}) without {pattern.pattern!r}:\n"
                                     + self.output())
            if (found := pattern.search(line)):
                return found

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        if not self._reader.is_alive():
            self.proc.stdout.close()
        return code


@pytest.fixture
def gateway_run(tmp_path, app, redis_url):  # noqa: F811 (the imported fixture)
    """Start the gateway of a ``--node`` run: ``start(**env)`` -> (Child, http port, tcp port)."""
    children = []

    def start(**extra: str):
        http, tcp = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TEST_APP": app,
               "TEST_REDIS_URL": redis_url, "TEST_HTTP_PORT": str(http), "GATEWAY_TCP_PORT": str(tcp)}
        for name in ("EDGEFLOW_GATEWAY_TOKEN", "EDGEFLOW_BIND", "GATEWAY_HOST"):
            env.pop(name, None)
        env.update(extra)
        child = Child(tmp_path, env)
        children.append(child)
        return child, http, tcp

    yield start
    for child in children:
        code = child.stop()
        assert code == 0, f"the gateway exited {code}:\n{child.output()}"


def scrape(port: int, token: str | None = None) -> dict:
    """/metrics as {(name, sorted labels): value}; {} while the server does not answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_metric(port: int, token: str | None, name: str, at_least: float, timeout: float = 20.0,
                **labels: str) -> dict:
    """Poll /metrics until ``name{labels}`` >= at_least (an HTTP endpoint: no event to wait on)."""
    key = (name, tuple(sorted(labels.items())))
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(port, token)
        if got.get(key, 0.0) >= at_least:
            return got
        assert time.monotonic() < deadline, f"{name}{labels} stayed at {got.get(key)} (< {at_least})"
        time.sleep(0.2)


def send(port: int, app: str, token: str | None, frames: int = 5) -> TcpSender:
    """A sender of topic "cam" (the gateway's input) that published ``frames`` frames."""
    sender = TcpSender("cam", "127.0.0.1", port, app=app, token=token, backoff=(0.05, 0.2))
    for i in range(frames):
        sender.publish(np.full((8, 8), i, np.uint8))
    return sender


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the one routes to the outside use), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))          # TEST-NET: nothing is sent, the kernel only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_with_a_token_senders_without_it_or_with_a_wrong_one_are_rejected_and_counted(gateway_run, app):
    token = "s3cret-" + app
    child, http, tcp = gateway_run(EDGEFLOW_GATEWAY_TOKEN=token)
    found = child.wait_line(LISTENING)
    assert (found.group(1), int(found.group(2))) == ("127.0.0.1", tcp)
    assert "token required, from EDGEFLOW_GATEWAY_TOKEN" in found.group(3)
    web = child.wait_line(re.compile(r"web server listening on (\S+):(\d+) \(([^)]*)\)"))
    assert web.group(1) == "127.0.0.1" and "token required" in web.group(3)
    assert scrape(http) == {}                              # /metrics itself wants the token

    rejected = "edgeflow_gateway_tcp_rejected_total"
    with send(tcp, app, None):
        got = wait_metric(http, token, rejected, 1, reason="unauthenticated")
    before = got[(rejected, (("reason", "unauthenticated"),))]
    with send(tcp, app, "not-the-token"):
        got = wait_metric(http, token, rejected, before + 1, reason="unauthenticated")
    assert got.get(("edgeflow_gateway_tcp_frames_total", ()), 0) == 0        # nothing got in

    with send(tcp, app, token) as sender:
        got = wait_metric(http, token, "edgeflow_gateway_tcp_frames_total", 1)
        stats = sender.statistics()
        assert stats.sent >= 1 and stats.connect_failures == 0, stats        # the right one was not refused
    assert got[("edgeflow_node_frames_in_total", (("node", "gw"),))] >= 1     # and reached the gateway node
    assert got[("edgeflow_gateway_tcp_authenticated_total", ())] >= 1


def test_without_a_token_the_gateway_shares_an_automatic_one_through_redis(gateway_run, app, redis_url):  # noqa: F811
    import redis
    child, http, tcp = gateway_run()
    found = child.wait_line(LISTENING)
    assert "token required, automatic, shared through the control Redis" in found.group(3)
    client = redis.Redis.from_url(redis_url)
    try:
        shared = client.get(f"edgeflow:{app}:gateway_token")
        assert shared and len(shared) >= 32                    # secrets.token_urlsafe(32): 43 characters
        assert 0 < client.pttl(f"edgeflow:{app}:gateway_token") <= 30_000      # kept alive, not forever
        entry = json.loads(client.get(f"edgeflow:{app}:registry:gw:0"))
        assert entry["gateway_auth"] == "shared" and entry["gateway_tcp"] == f"127.0.0.1:{tcp}"
    finally:
        client.close()
    rejected = "edgeflow_gateway_tcp_rejected_total"
    with send(tcp, app, None):                                 # not open: a sender must know the token
        wait_metric(http, None, rejected, 1, reason="unauthenticated")
    with send(tcp, app, shared.decode()):                      # what the router's senders read from Redis
        got = wait_metric(http, None, "edgeflow_gateway_tcp_frames_total", 1)
    assert got[(rejected, (("reason", "unauthenticated"),))] >= 1


def test_the_tcp_ingest_binds_loopback_by_default_and_edgeflow_bind_opens_it(gateway_run, app):
    outside = non_loopback_address()
    child, _, tcp = gateway_run()
    found = child.wait_line(LISTENING)
    assert found.group(1) == "127.0.0.1" and "this host only" in found.group(3)
    assert reachable("127.0.0.1", tcp)
    if outside is None:
        pytest.skip("this machine has no non-loopback address to check the bind against")
    assert not reachable(outside, tcp), f"the TCP ingest answers on {outside}"
    assert child.stop() == 0

    opened, _, tcp = gateway_run(EDGEFLOW_BIND="0.0.0.0", EDGEFLOW_GATEWAY_TOKEN="t-" + app)   # web needs it
    found = opened.wait_line(LISTENING)
    assert found.group(1) == "0.0.0.0" and "reachable from other hosts; token required" in found.group(3)
    assert reachable(outside, tcp)                            # the check above could have failed
