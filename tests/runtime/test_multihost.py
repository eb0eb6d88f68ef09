"""Real hosts: three network namespaces (camera, worker, infra) joined by a bridge, each with its own IPC
namespace and its own /dev/shm, each running ``python main.py --node X``. Frames cross them over Redis and TCP.

Needs root and iproute2 (`ip netns`); CI runs as root. Skips, saying why, only when those are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "unshare", "nsenter")),
    reason="multi-host tests need root, iproute2 (ip netns), unshare and nsenter")

APP = textwrap.dedent('''
    import hashlib, json, os, sys, time
    import numpy as np
    from edgeflow import EdgeApp, ProducerNode, ConsumerNode, SinkNode, GatewayNode, QoS, RedisBroker

    app = EdgeApp("multihost", broker=RedisBroker())
    OUT = os.environ["MULTIHOST_OUT"]

    def payload(i):
        return (np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3) * (i + 1) % 251).astype(np.uint8)

    @app.node(name="camera", fps=50)
    class Camera(ProducerNode):
        def setup(self):
            self.i = 0
        def produce(self):
            self.i += 1
            return payload(self.i), {"i": self.i}

    @app.node(name="detector")
    class Detector(ConsumerNode):
        def process(self, data):
            return data            # passed on unchanged: the logger checks every byte

    @app.node(name="logger")
    class Logger(SinkNode):
        def consume(self, data):
            i = self.current_frame.meta["i"]
            ok = data.shape == (480, 640, 3) and np.array_equal(data, payload(i))
            with open(os.path.join(OUT, "logger.jsonl"), "a") as f:
                f.write(json.dumps({"i": i, "ok": bool(ok)}) + "\\n")

    class Tap:
        def on_frame(self, frame):
            with open(os.path.join(OUT, "gateway.jsonl"), "a") as f:
                f.write(json.dumps({"topic": frame.topic, "i": frame.meta.get("i")}) + "\\n")

    @app.node(name="gateway")
    class Gateway(GatewayNode):
        def configure(self):
            self.add_interface(Tap())

    if __name__ == "__main__":
        app.link("camera").to("detector", qos=QoS.DURABLE)      # every frame reaches the logger
        app.link("detector").to("logger", qos=QoS.DURABLE)
        app.link("detector").to("gateway")
        app.run()
''')


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


class Hosts:
    """A switch namespace with a bridge, and one namespace per host with an address on it."""

    def __init__(self, names: list[str]) -> None:
        tag = os.getpid() % 100000
        self.subnet = f"10.213.{os.getpid() % 250}"
        self.switch = f"efsw{tag}"
        self.ns = {name: f"ef{tag}{name[:3]}" for name in names}
        self.ip = {name: f"{self.subnet}.{k + 1}" for k, name in enumerate(names)}
        self.procs: list[subprocess.Popen] = []
        self.holders: dict[str, subprocess.Popen] = {}

    def create(self) -> None:
        sh("ip", "netns", "add", self.switch)
        sh("ip", "netns", "exec", self.switch, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", self.switch, "ip", "link", "set", "br0", "up")
        for k, (name, ns) in enumerate(self.ns.items()):
            a, b = f"{ns}a", f"{ns}b"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", ns)
            sh("ip", "link", "set", b, "netns", self.switch)
            sh("ip", "netns", "exec", self.switch, "ip", "link", "set", b, "master", "br0", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip[name]}/24", "dev", a)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", a, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def _holder(self, host: str) -> int:
        """The pid of a process that keeps the host's IPC namespace and private /dev/shm; made on first use."""
        if host not in self.holders:
            inner = "mount -t tmpfs -o size=512m tmpfs /dev/shm && echo ready && exec sleep 3600"
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], "unshare", "--ipc", "--mount",
                                     "--propagation", "private", "sh", "-c", inner],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "ready"
            proc.stdout.close()
            self.holders[host] = proc
        return self.holders[host].pid

    def spawn(self, host: str, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        """Run argv on a host: its network namespace, its IPC namespace and its /dev/shm (shared by every
        process of that host, as on a real machine)."""
        cmd = ["nsenter", "--target", str(self._holder(host)), "--net", "--ipc", "--mount", "--", *argv]
        with log.open("w") as out:                  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc in self.holders.values():
            proc.kill()
            proc.wait()
        for ns in [*self.ns.values(), self.switch]:
            sh("ip", "netns", "del", ns, check=False)


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def hosts():
    h = Hosts(["camera", "worker", "infra"])
    try:
        h.create()
        yield h
    finally:
        h.destroy()


def test_three_hosts_route_over_redis_and_tcp_and_deliver_bit_exact(hosts, tmp_path):
    (tmp_path / "main.py").write_text(APP)
    out = tmp_path / "out"
    out.mkdir()
    redis_port, tcp_port, http_port = 6390, 8101, 8102
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MULTIHOST_OUT": str(out), "REDIS_HOST": hosts.ip["infra"],
           "REDIS_PORT": str(redis_port), "GATEWAY_TCP_PORT": str(tcp_port), "GATEWAY_HTTP_PORT": str(http_port),
           "PYTHONUNBUFFERED": "1"}
    hosts.spawn("infra", [shutil.which("redis-server"), "--port", str(redis_port), "--bind", hosts.ip["infra"],
                          "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                env, tmp_path / "redis.log")
    main = str(tmp_path / "main.py")
    logs = {}
    for node, host in (("gateway", "infra"), ("logger", "infra"), ("detector", "worker"), ("camera", "camera")):
        logs[node] = tmp_path / f"{node}.log"
        hosts.spawn(host, [sys.executable, main, "--node", node], env, logs[node])

    try:
        got = wait_for(lambda: len(lines(out / "logger.jsonl")) >= 40 and lines(out / "logger.jsonl"), 60,
                       "40 frames at the logger on the infra host")
    except AssertionError:
        tails = "\n".join(f"--- {n}:\n" + p.read_text()[-1500:] for n, p in logs.items())
        raise AssertionError(f"no frames at the logger; node logs:\n{tails}") from None
    assert all(r["ok"] for r in got), "every frame arrives bit-exact"
    ids = [r["i"] for r in got]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "DURABLE: in order, none missing"
    wait_for(lambda: len(lines(out / "gateway.jsonl")) >= 10, 30, "frames at the gateway over TCP")

    routes = {node: logs[node].read_text() for node in logs}
    assert "camera -> detector: redis (other host: different IPC namespace), DURABLE" in routes["camera"]
    assert "detector -> logger: redis (other host: different IPC namespace), DURABLE" in routes["detector"]
    assert "detector -> gateway: tcp (other host: different IPC namespace; direct to the gateway at" \
        in routes["detector"]


FAULT_APP = textwrap.dedent('''
    import json, os
    import numpy as np
    from edgeflow import EdgeApp, ProducerNode, SinkNode, QoS, RedisBroker

    app = EdgeApp("multihost-faults", broker=RedisBroker())
    OUT = os.environ["MULTIHOST_OUT"]

    @app.node(name="camera", fps=40)
    class Camera(ProducerNode):
        def setup(self):
            self.i = 0
        def produce(self):
            self.i += 1
            return np.full((64, 64), self.i % 256, np.uint8), {"i": self.i}

    class Log(SinkNode):
        def consume(self, data):
            i = self.current_frame.meta["i"]
            with open(os.path.join(OUT, self.name + ".jsonl"), "a") as f:
                f.write(json.dumps({"i": i, "ok": bool((data == i % 256).all())}) + "\\n")

    app.node(Log, name="local_log")
    app.node(Log, name="remote_log")

    if __name__ == "__main__":
        app.link("camera").to("local_log", qos=QoS.DURABLE)
        app.link("camera").to("remote_log", qos=QoS.DURABLE)
        app.run()
''')


def test_redis_killed_and_restarted_empty_mid_run_loses_no_durable_frame(hosts, tmp_path):
    (tmp_path / "main.py").write_text(FAULT_APP)
    out = tmp_path / "out"
    out.mkdir()
    redis_port = 6391
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MULTIHOST_OUT": str(out), "REDIS_HOST": hosts.ip["infra"],
           "REDIS_PORT": str(redis_port), "PYTHONUNBUFFERED": "1"}
    redis_cmd = [shutil.which("redis-server"), "--port", str(redis_port), "--bind", hosts.ip["infra"],
                 "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    redis = hosts.spawn("infra", redis_cmd, env, tmp_path / "redis.log")
    main, frames = str(tmp_path / "main.py"), 400
    logs = {node: tmp_path / f"{node}.log" for node in ("remote_log", "local_log", "camera")}
    hosts.spawn("infra", [sys.executable, main, "--node", "remote_log"], env, logs["remote_log"])
    hosts.spawn("camera", [sys.executable, main, "--node", "local_log"], env, logs["local_log"])
    hosts.spawn("camera", [sys.executable, main, "--node", "camera", "--frames", str(frames)], env, logs["camera"])

    def diagnose() -> str:
        return "\n".join(f"--- {n}:\n" + p.read_text()[-1500:] for n, p in logs.items())

    try:
        wait_for(lambda: len(lines(out / "remote_log.jsonl")) >= 40, 60, "frames over Redis")
        redis.kill()                                              # Redis dies: nothing of it survives
        redis.wait()
        at_kill = len(lines(out / "local_log.jsonl"))
        wait_for(lambda: len(lines(out / "local_log.jsonl")) >= at_kill + 40, 30,
                 "local frames while Redis is down")
        hosts.spawn("infra", redis_cmd, env, tmp_path / "redis2.log")   # back, empty
        # DURABLE across hosts: every frame from the first one published after the consumer registered
        # (earlier frames had no remote consumer to go to) through the outage to the last one.
        first = min(r["i"] for r in lines(out / "remote_log.jsonl"))
        wait_for(lambda: {r["i"] for r in lines(out / "remote_log.jsonl")} >= set(range(first, frames + 1)), 90,
                 "every frame at the remote DURABLE logger after Redis came back empty")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; node logs:\n{diagnose()}") from None
    remote = lines(out / "remote_log.jsonl")
    assert all(r["ok"] for r in remote)
    local = [r["i"] for r in lines(out / "local_log.jsonl")]
    # from the first frame after the local logger attached (a --node run declares no groups ahead) to the last
    assert local == list(range(local[0], frames + 1)), "the local DURABLE edge never stopped nor skipped"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_full_redis_back_pressures_a_durable_edge_and_loses_nothing_once_space_frees(hosts, tmp_path):
    """Redis at its maxmemory (noeviction) while the remote DURABLE consumer is paused: the camera's frames are
    refused, kept in its publisher's spool up to its bound, then the camera waits (back-pressure, no limit while
    the consumer lives) instead of dropping; once the consumer reads again and acked blobs are deleted, every
    frame arrives, bit-exact and in order."""
    (tmp_path / "main.py").write_text(FAULT_APP.replace("fps=40", "fps=200"))
    out = tmp_path / "out"
    out.mkdir()
    redis_port = 6392
    # the paused consumer leaves the registry after 4 s: the grace must outlast the pause
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MULTIHOST_OUT": str(out), "REDIS_HOST": hosts.ip["infra"],
           "REDIS_PORT": str(redis_port), "PYTHONUNBUFFERED": "1", "EDGEFLOW_DURABLE_GRACE": "120"}
    hosts.spawn("infra", [shutil.which("redis-server"), "--port", str(redis_port), "--bind", hosts.ip["infra"],
                          "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
                          "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"], env, tmp_path / "redis.log")
    main, frames = str(tmp_path / "main.py"), 2400
    logs = {node: tmp_path / f"{node}.log" for node in ("remote_log", "local_log", "camera")}
    remote = hosts.spawn("infra", [sys.executable, main, "--node", "remote_log"], env, logs["remote_log"])
    hosts.spawn("camera", [sys.executable, main, "--node", "local_log"], env, logs["local_log"])
    camera = hosts.spawn("camera", [sys.executable, main, "--node", "camera", "--frames", str(frames)], env,
                         logs["camera"])

    def diagnose() -> str:
        return "\n".join(f"--- {n}:\n" + p.read_text()[-2000:] for n, p in logs.items())

    try:
        wait_for(lambda: len(lines(out / "remote_log.jsonl")) >= 20, 60, "frames over Redis")
        # the remote consumer stops reading (its process, not only its node: a real stall); the camera goes
        # on at 200 fps until Redis is full and the spool is at its bound, then it must wait
        os.kill(remote.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "is full" in logs["camera"].read_text(), 60, "Redis to refuse frames for memory")
            wait_for(lambda: "waiting" in logs["camera"].read_text() and "back-pressure" in
                     logs["camera"].read_text(), 60, "the camera to wait for its DURABLE consumer")
        finally:
            os.kill(remote.pid, signal.SIGCONT)
        first = min(r["i"] for r in lines(out / "remote_log.jsonl"))
        wait_for(lambda: {r["i"] for r in lines(out / "remote_log.jsonl")} >= set(range(first, frames + 1)), 60,
                 "every frame at the remote DURABLE logger once Redis has room again")
        assert camera.wait(30) == 0
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        raise AssertionError(f"{exc}; node logs:\n{diagnose()}") from None
    got = lines(out / "remote_log.jsonl")
    assert all(r["ok"] for r in got), "bit-exact"
    ids = [r["i"] for r in got]
    assert sorted(set(ids)) == list(range(first, frames + 1))
    assert "takes frames again" in logs["camera"].read_text()
