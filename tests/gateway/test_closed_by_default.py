"""Issue 12, section 2 (closed by default), the web server: it binds 127.0.0.1 unless told otherwise, refuses to
listen beyond loopback without a token (a real ``python main.py`` run exits 2 with one line saying how to fix
it), says where it listens, lets WebSockets in only from its own or an allowed origin, and counts malformed
HTTP requests instead of logging a traceback each. Real servers on real sockets; the runs are real processes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from edgeflow.errors import ConfigError
from edgeflow.gateway.app import StaticRuntime, serve
from edgeflow.nodes.gateway.interfaces.web import WebInterface
from tests.runtime.test_gateway_token import non_loopback_address, reachable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """The settings these tests are about come from the environment: start from none of them."""
    for name in ("EDGEFLOW_BIND", "EDGEFLOW_GATEWAY_TOKEN", "EDGEFLOW_ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- where it listens ----------------------------------------------------------------------------------------
def test_the_web_server_binds_loopback_unless_a_host_or_edgeflow_bind_is_given(monkeypatch):
    assert WebInterface(port=0).host == "127.0.0.1"
    assert WebInterface(port=0, host="10.1.2.3").host == "10.1.2.3"
    monkeypatch.setenv("EDGEFLOW_BIND", "0.0.0.0")
    assert WebInterface(port=0).host == "0.0.0.0"
    assert WebInterface(port=0, host="127.0.0.1").host == "127.0.0.1"      # the code's choice wins
    monkeypatch.delenv("EDGEFLOW_BIND")

    outside = non_loopback_address()
    with serve(WebInterface(port=0), StaticRuntime()) as server:
        assert get(server.url + "/healthz")[0] == 200
        if outside is not None:
            assert not reachable(outside, server.port), f"the web server answers on {outside}"
    if outside is None:
        pytest.skip("this machine has no non-loopback address to check the bind against")
    with serve(WebInterface(port=0, host="0.0.0.0", token="t"), StaticRuntime()) as server:
        assert reachable(outside, server.port)                   # the check above could have failed


def test_beyond_loopback_without_a_token_the_server_refuses_to_start(monkeypatch):
    with pytest.raises(ConfigError) as info:
        serve(WebInterface(port=8123, host="0.0.0.0"), StaticRuntime(node="gw"))
    assert str(info.value) == (
        "gateway 'gw': web server on 0.0.0.0:8123 is reachable from other hosts but has no token; set "
        "EDGEFLOW_GATEWAY_TOKEN (or WebInterface(token=...)), or bind 127.0.0.1 (WebInterface(host=...) / "
        "EDGEFLOW_BIND)")
    monkeypatch.setenv("EDGEFLOW_BIND", "0.0.0.0")
    with pytest.raises(ConfigError, match="no token"):
        serve(WebInterface(port=0), StaticRuntime())
    monkeypatch.setenv("EDGEFLOW_GATEWAY_TOKEN", "from-env")                 # the environment's token counts
    with serve(WebInterface(port=0), StaticRuntime()) as server:
        assert get(f"http://127.0.0.1:{server.port}/api/status")[0] == 401
        assert get(f"http://127.0.0.1:{server.port}/api/status", "from-env")[0] == 200


def test_startup_says_where_it_listens_and_whether_a_token_protects_it(caplog):
    caplog.set_level(logging.INFO, logger="edgeflow.gateway")
    with serve(WebInterface(port=0), StaticRuntime(node="gw")) as open_one, \
            serve(WebInterface(port=0, host="0.0.0.0", token="t"), StaticRuntime(node="gw")) as guarded:
        pass
    lines = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert f"gateway gw: web server listening on 127.0.0.1:{open_one.port} (this host only; no token); " \
           f"dashboard at http://127.0.0.1:{open_one.port}/dashboard" in lines
    assert any(line.startswith(f"gateway gw: web server listening on 0.0.0.0:{guarded.port} (reachable "
                               "from other hosts; token required)") for line in lines), lines
    assert len(lines) == 2


MAIN = '''
    import numpy as np
    from edgeflow import EdgeApp
    from edgeflow.nodes import ProducerNode
    from edgeflow.nodes.gateway import GatewayNode
    from edgeflow.nodes.gateway.interfaces.web import WebInterface

    app = EdgeApp("{app}")


    @app.node(name="cam", type="producer", fps=20)
    class Camera(ProducerNode):
        def produce(self):
            return np.zeros((32, 32, 3), np.uint8)


    @app.node(name="gateway", type="gateway")
    class Hub(GatewayNode):
        def configure(self):
            self.add_interface(WebInterface(port={port}))


    app.link("cam").to("gateway")

    if __name__ == "__main__":
        app.run()
'''


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--node", "gateway"], []], ids=["node-run", "all-in-one"])
def test_a_run_bound_beyond_loopback_without_a_token_fails_with_one_line_naming_the_fix(tmp_path, app, argv):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN.format(app=app, port=port)))
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFLOW_GATEWAY_TOKEN", "EDGEFLOW_BIND")}
    env.update(PYTHONPATH=str(ROOT), EDGEFLOW_BIND="0.0.0.0")
    # without the check the camera keeps the run alive: the timeout is the failure, not a wait
    done = subprocess.run([sys.executable, "main.py", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, env=env)
    output = done.stdout + done.stderr
    # a configuration error: exit code 2, in a --node run and in an all-in-one run alike
    assert done.returncode == 2, output
    lines = [line for line in output.splitlines() if "reachable from other hosts but has no token" in line]
    assert len(lines) == 1, output
    assert f"gateway 'gateway': web server on 0.0.0.0:{port}" in lines[0]
    assert "set EDGEFLOW_GATEWAY_TOKEN" in lines[0] and "bind 127.0.0.1" in lines[0]
    assert "Traceback" not in output


# -- WebSocket origins ---------------------------------------------------------------------------------------
async def _handshake(url: str, **headers: str) -> tuple[int, dict | None]:
    """(status, JSON body or None) of a WebSocket handshake; 101 when the socket opened (and a message came)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                message = await asyncio.wait_for(ws.receive(), 5)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                return 101, None
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status
        # the refusal's body: the same request as plain HTTP with the upgrade headers
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **headers}
        async with session.get(url.replace("ws://", "http://"), headers=upgrade) as resp:
            assert resp.status == status
            return status, await resp.json()


def test_websockets_accept_their_own_and_allowed_origins_and_refuse_others_with_403():
    with serve(WebInterface(port=0, allowed_origins=["https://Ops.Example.com/"], stats_interval=0.1),
               StaticRuntime()) as server:
        url = f"ws://127.0.0.1:{server.port}/ws/stats"
        run = asyncio.run
        assert run(_handshake(url, Origin=f"http://127.0.0.1:{server.port}")) == (101, None)   # same origin
        assert run(_handshake(url, Origin="https://ops.example.com")) == (101, None)          # allowed
        assert run(_handshake(url)) == (101, None)              # no Origin: a non-browser client, on loopback
        status, body = run(_handshake(url, Origin="http://evil.example"))
        assert status == 403 and body["status"] == 403 and "evil.example" in body["error"]
        status, body = run(_handshake(f"ws://127.0.0.1:{server.port}/ws/video/camera",
                                      Origin=f"http://localhost:{server.port + 1}"))
        assert status == 403, body                             # another port is another origin


def test_a_foreign_origin_is_refused_even_with_the_token_and_the_env_list_is_honoured(monkeypatch):
    monkeypatch.setenv("EDGEFLOW_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    with serve(WebInterface(port=0, token="tok", stats_interval=0.1), StaticRuntime()) as server:
        url = f"ws://127.0.0.1:{server.port}/ws/stats?token=tok"
        assert asyncio.run(_handshake(url, Origin="https://b.example")) == (101, None)
        assert asyncio.run(_handshake(url, Origin="https://c.example"))[0] == 403
        assert asyncio.run(_handshake(url.replace("?token=tok", ""), Origin="https://b.example"))[0] == 401
    with pytest.raises(ConfigError, match="allowed origin 'ops.example.com'"):
        serve(WebInterface(port=0, allowed_origins=["ops.example.com"]), StaticRuntime())


# -- malformed HTTP ------------------------------------------------------------------------------------------
GARBAGE = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",   # TLS to an HTTP port
           b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",                           # a broken header
           b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",                       # an oversized line
           b"NOT HTTP AT ALL\r\n\r\n")


def _send_garbage(port: int, payload: bytes) -> bytes:
    """Send one malformed request and read until the server closes the connection (its answer is the event)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_flood_of_malformed_requests_is_counted_and_logged_in_a_couple_of_lines(caplog):
    caplog.set_level(logging.DEBUG)
    with serve(WebInterface(port=0), StaticRuntime()) as server:
        answers = [_send_garbage(server.port, GARBAGE[i % len(GARBAGE)]) for i in range(200)]
        assert all(answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400" for answer in answers), answers[:4]
        status, body = get(server.url + "/api/status")
        assert status == 200 and b'"bad_requests":200' in body
        _, metrics = get(server.url + "/metrics")
        assert b"edgeflow_gateway_bad_requests_total 200.0" in metrics
        assert get(server.url + "/healthz")[0] == 200           # and it still serves everyone else
    ours = [r.getMessage() for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert 1 <= len(ours) <= 2, ours
    assert "199 more malformed HTTP requests" in ours[-1] and "200 in all" in ours[-1]
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info], \
        "aiohttp logged tracebacks"
    assert not [r for r in caplog.records if "Error handling request" in r.getMessage()]
