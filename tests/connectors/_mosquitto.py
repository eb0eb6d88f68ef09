"""A real mosquitto broker for the tests: loopback, a free port, its files in a temporary folder.

``Broker(directory).start()``; ``stop()`` (SIGTERM: mosquitto saves its persistent sessions), ``kill()``
(SIGKILL), ``start()`` again on the same port with the same data. Options: ``users={"name": "password"}``
(no anonymous access then), ``tls=True`` (a CA and a server certificate made with openssl; ``.ca`` is the CA
file clients trust), ``persistence`` (default True), ``max_queued`` messages per offline session (default
100,000: the tests send more than mosquitto's default 1000 while a client is away).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ._servers import find_exe, free_port, wait_listening


class Broker:
    """One mosquitto process of ours."""

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None, tls: bool = False,
                 persistence: bool = True, max_queued: int = 100_000) -> None:
        self.exe = find_exe("mosquitto", "/usr/sbin")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users, self.tls, self.persistence, self.max_queued = users, tls, persistence, max_queued
        self.proc: subprocess.Popen | None = None
        self.ca: str | None = None
        self.conf = self.dir / "mosquitto.conf"
        self._write_config()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1",
                 f"persistence {'true' if self.persistence else 'false'}",
                 f"persistence_location {self.dir}/",
                 f"max_queued_messages {self.max_queued}",
                 "max_inflight_messages 20",
                 "log_dest file " + str(self.dir / "mosquitto.log"),
                 "log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            lines.append("user root")      # else mosquitto drops to its own user, who cannot read our folder
        if self.users:
            passwd = self.dir / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run([find_exe("mosquitto_passwd"), "-b", str(passwd), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            ca, cert, key = make_certificates(self.dir)
            self.ca = str(ca)
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            wait_listening(self.port, self.proc, what="mosquitto")
        except RuntimeError as exc:
            log = (self.dir / "mosquitto.log")
            raise RuntimeError(f"{exc}: {self.proc.stderr.read().decode(errors='replace')[-500:]} "
                               f"{log.read_text()[-500:] if log.exists() else ''}") from None
        return self

    def stop(self) -> None:
        """SIGTERM and wait (persistent sessions are saved)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait."""
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def client(self, client_id: str = "", clean: bool = True, **kw) -> mqtt.Client:
        """A plain paho client connected to this broker (call ``loop_start()`` or ``loop()`` on it)."""
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, **kw)
        if self.tls:
            c.tls_set(ca_certs=self.ca)
        c.connect("127.0.0.1", self.port)
        return c


def start(directory: Path) -> Broker:
    """The shared broker of the connector tests (conftest.py)."""
    return Broker(directory).start()


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 / localhost signed by it (openssl)."""
    openssl = find_exe("openssl")
    d = Path(directory)
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=edgeflow-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key
