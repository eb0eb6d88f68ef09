"""What MqttSource and MqttSink share: their connection options, and a paho-mqtt client made from them.

paho-mqtt (Eclipse's client, 2.x) speaks MQTT 3.1.1 and 5, TLS, and lets a subscriber acknowledge a QoS 1/2
message itself (``manual_ack``), which is what lets MqttSource acknowledge only what reached its output ring.

Options common to both (checked by ``check_connection_options``):
    url: ``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (8883, TLS).
    username, password: instead of the URL's; a password is never logged or shown.
    protocol: ``"3.1.1"`` (default, every broker) or ``"5"``.
    client_id: default ``edgeflow-<app>-<node>-<replica>``: fixed, so a persistent session survives restarts.
    keepalive: seconds (default 30).
    ca, cert, key: TLS files (PEM): the CA that signed the broker's certificate (default: the system's), and a
        client certificate and key for brokers that ask for one. ``tls_insecure=True`` skips the host name
        check.
    connect_timeout: seconds ``setup()`` waits for the first answer (default 5): refused credentials fail the
        node at start (a configuration error, not retried); an unreachable broker is logged and retried.
    reconnect_min, reconnect_max: the back-off between reconnect attempts (default 0.5 s doubling to 30 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from edgeflow.connectors._base import (Backoff, ConnectionState, opt_bool, opt_number, opt_str, opt_url,
                                      option_error, redact)
from edgeflow.errors import ConfigError

log = logging.getLogger("edgeflow.connectors.mqtt")

CONNECTION_OPTIONS = ("url", "username", "password", "protocol", "client_id", "keepalive", "ca", "cert",
                      "key", "tls_insecure", "connect_timeout", "reconnect_min", "reconnect_max")
PROTOCOLS = ("3.1.1", "5")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# CONNACK reason codes that retrying cannot fix (3.1.1: 4, 5; MQTT 5: 134, 135, 138, 140)
REFUSED_FOR_GOOD = ("bad user name or password", "not authorized", "not authorised", "banned",
                    "client identifier not valid", "bad authentication method")


def check_connection_options(node: str, options: dict) -> None:
    """Validate the connection options (see the module docstring).

    Raises:
        ConfigError: naming the node and the option.
    """
    opt_url(node, options, "url", DEFAULT_PORTS)
    opt_str(node, options, "username")
    opt_str(node, options, "password")
    protocol = options.get("protocol", "3.1.1")
    if str(protocol) not in PROTOCOLS:
        raise option_error(node, "protocol", f"{protocol!r} is not one of '3.1.1', '5'")
    opt_str(node, options, "client_id")
    opt_number(node, options, "keepalive", low=5, high=3600)
    for key in ("ca", "cert", "key"):
        path = opt_str(node, options, key)
        if path is not None and not os.path.isfile(path):
            raise option_error(node, key, f"no such file: {path!r}")
    if (options.get("cert") is None) != (options.get("key") is None):
        raise option_error(node, "cert", "a client certificate needs both 'cert' and 'key'")
    opt_bool(node, options, "tls_insecure")
    opt_number(node, options, "connect_timeout", low=0, high=600)
    low = opt_number(node, options, "reconnect_min", low=0.05, high=3600, default=0.5)
    high = opt_number(node, options, "reconnect_max", low=0.05, high=3600, default=30.0)
    if high < low:
        raise option_error(node, "reconnect_max", f"{high!r} is below reconnect_min ({low!r})")


class MqttConnection:
    """A paho client for one connector node: connects in the background, reconnects with back-off, and keeps
    its state in the node's statistics. ``on_message`` / ``on_publish`` are the caller's callbacks (they run
    on paho's network thread)."""

    def __init__(self, node: Any, *, clean: bool, manual_ack: bool = False, on_connect=None,
                 threaded: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self._mqtt = mqtt
        self.node = node
        url = opt_url(node.name, {"url": node.url}, "url", DEFAULT_PORTS)
        self.host, self.port = url.hostname, url.port or DEFAULT_PORTS[url.scheme]
        self.tls = url.scheme == "mqtts"
        self.v5 = str(getattr(node, "protocol", "3.1.1")) == "5"
        self.target = redact(f"{url.scheme}://{self.host}:{self.port}")
        self.state = ConnectionState(node, self.target)
        self.client_id = getattr(node, "client_id", None) or default_client_id(node)
        self.clean = clean
        self.threaded = threaded
        self._on_connect = on_connect
        self.answered = threading.Event()     # the broker said yes or no once (or the socket failed)
        self.refused: str | None = None        # a CONNACK refusal that retrying cannot fix
        self.connected = threading.Event()
        self._connecting = False              # unthreaded: a CONNECT sent, its CONNACK not read yet
        self._warned = False
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2,
                                  "client_id": self.client_id, "manual_ack": manual_ack}
        if self.v5:
            kwargs["protocol"] = MQTTProtocolVersion.MQTTv5
        else:
            kwargs["protocol"] = MQTTProtocolVersion.MQTTv311
            kwargs["clean_session"] = clean
        client = self.client = (mqtt.Client if threaded else _buffered_client_class())(**kwargs)
        username = getattr(node, "username", None) or url.username
        password = getattr(node, "password", None) or url.password
        if username is not None:
            client.username_pw_set(username, password)
        if self.tls:
            import ssl
            client.tls_set(ca_certs=getattr(node, "ca", None), certfile=getattr(node, "cert", None),
                           keyfile=getattr(node, "key", None), cert_reqs=ssl.CERT_REQUIRED)
            if getattr(node, "tls_insecure", False):
                client.tls_insecure_set(True)
        low = float(getattr(node, "reconnect_min", None) or 0.5)
        high = float(getattr(node, "reconnect_max", None) or 30.0)
        client.reconnect_delay_set(min_delay=low, max_delay=high)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_connect_fail = self._connect_failed

    def start(self) -> None:
        """Connect and wait up to ``connect_timeout`` for the broker's first answer.

        Threaded (the constructor's ``threaded``): paho's network thread does the I/O and the reconnects;
        else the caller calls ``service()`` often (a source: one thread, no hand-over between threads per
        message, and reads buffered: see _buffered_client_class).

        Raises:
            ConfigError: the broker refused the credentials or the client id (retrying cannot help).
        """
        props = None
        kwargs: dict[str, Any] = {}
        if self.v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            expiry = getattr(self.node, "session_expiry", None)
            props.SessionExpiryInterval = 0 if self.clean else int(expiry if expiry is not None else 86400)
            kwargs = {"clean_start": self.clean, "properties": props}
        keepalive = int(getattr(self.node, "keepalive", None) or 30)
        self.client.connect_async(self.host, self.port, keepalive=keepalive, **kwargs)
        timeout = getattr(self.node, "connect_timeout", None)
        timeout = 5.0 if timeout is None else float(timeout)
        if self.threaded:
            self.client.loop_start()
            self.answered.wait(timeout)
        else:
            # paho writes each packet at once unless an outside loop watches the socket: saying one does makes
            # it queue them (the caller's loop_write() then sends many PUBACKs in one system call)
            self.client.on_socket_register_write = lambda client, userdata, sock: None
            self.client.on_socket_unregister_write = lambda client, userdata, sock: None
            self._backoff = Backoff(float(getattr(self.node, "reconnect_min", None) or 0.5),
                                    float(getattr(self.node, "reconnect_max", None) or 30.0))
            self._next_attempt = 0.0
            deadline = time.monotonic() + timeout
            while not self.answered.is_set() and time.monotonic() < deadline:
                self.service(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.refused is not None:
            self.close()
            raise ConfigError(f"node '{self.node.name}': broker {self.target} refused the connection: "
                              f"{self.refused}")
        if not self.connected.is_set():
            log.warning("%s: broker %s is not reachable yet (%s); retrying in the background", self.node.name,
                        self.target, self.state.error or "no answer")
            self._warned = True

    def service(self, timeout: float) -> None:
        """Unthreaded mode: read and handle what arrived (waiting up to ``timeout``), send what is due, and
        reconnect with back-off when the connection is down."""
        client = self._mqtt
        if self.connected.is_set() or self._connecting:
            rc = self.client.loop(timeout)
            # loop() reads one packet after its select(): what is already buffered is read now, without a
            # select that would wait for the socket while the buffer holds whole packets
            paho = self.client
            while rc == client.MQTT_ERR_SUCCESS and paho.buffered():
                rc = paho.loop_read()
            if rc == client.MQTT_ERR_SUCCESS:
                return
            self._connecting = False
            self.connected.clear()
            if self.state.state == "up":
                self.state.down(f"connection lost ({client.error_string(rc)})")
            self._next_attempt = time.monotonic() + self._backoff.next()
            return
        now = time.monotonic()
        if now < self._next_attempt:
            time.sleep(min(timeout, self._next_attempt - now))    # nothing to read: wait for the next attempt
            return
        try:
            self.client.reconnect()
            self._connecting = True           # CONNACK comes through loop()
        except (OSError, ValueError) as exc:
            self._connect_failed(self.client, None, f"unreachable ({exc.__class__.__name__}: {exc})")
            self._next_attempt = time.monotonic() + self._backoff.next()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        try:
            self.client.disconnect()
            if not self.threaded:
                self.client.loop(0.0)             # let the DISCONNECT out
        finally:
            self.client.loop_stop()

    # -- paho callbacks (network thread) ------------------------------------------------------------------
    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            why = str(reason_code)
            self.state.down(f"refused: {why}")
            if why.lower() in REFUSED_FOR_GOOD:
                self.refused = why
                if self.answered.is_set():      # after start: say it once, keep trying (a fixed broker heals)
                    log.error("%s: broker %s refused the connection: %s", self.node.name, self.target, why)
            self.answered.set()
            return
        self.connected.set()
        self._connecting = False
        if not self.threaded:
            self._backoff.reset()
        self.state.up()
        if self._warned:
            log.info("%s: connected to broker %s", self.node.name, self.target)
            self._warned = False
        if self._on_connect is not None:
            self._on_connect(flags)
        self.answered.set()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code.is_failure or str(reason_code) != "Normal disconnection":
            if not self._warned:
                log.warning("%s: lost broker %s (%s); reconnecting", self.node.name, self.target, reason_code)
                self._warned = True
            self.state.down(f"disconnected: {reason_code}")

    def _connect_failed(self, client, userdata, why: str = "unreachable") -> None:
        self.state.down(why)
        self.answered.set()


_BUFFERED_CLIENT = None


def _buffered_client_class() -> type:
    """A paho Client whose reads are buffered: one ``recv`` of up to READ_BYTES serves many packets.

    paho reads each packet with two or three ``recv`` calls (the command byte, the length bytes, the body),
    and ``loop()`` makes a ``select`` before each packet: for small messages those system calls are most of
    a subscriber's time (measured with 200-byte QoS 1 messages: buffered reads and one PUBACK write per
    batch take a subscriber loop from 1.0x to 1.8x a plain paho loop). ``_sock_recv`` is the one place
    paho reads its socket (plain, TLS and WebSocket alike); ``buffered()`` tells MqttConnection.service()
    to go on reading without a ``select``. Made on first use: paho is imported only by MQTT nodes.
    """
    global _BUFFERED_CLIENT
    if _BUFFERED_CLIENT is not None:
        return _BUFFERED_CLIENT
    import paho.mqtt.client as mqtt

    class BufferedClient(mqtt.Client):
        READ_BYTES = 65536

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._read_buffer = b""
            self._read_pos = 0

        def _sock_recv(self, bufsize: int) -> bytes:
            data, pos = self._read_buffer, self._read_pos
            if pos >= len(data):
                data = super()._sock_recv(self.READ_BYTES)   # BlockingIOError when nothing came: paho's AGAIN
                if not data:
                    return data                              # the broker closed the connection
                self._read_buffer, pos = data, 0
            out = data[pos:pos + bufsize]
            self._read_pos = pos + len(out)
            return out

        def buffered(self) -> int:
            """Bytes read from the socket and not handed to paho yet."""
            return len(self._read_buffer) - self._read_pos

        def _sock_close(self) -> None:
            self._read_buffer, self._read_pos = b"", 0           # what the old connection sent is void
            super()._sock_close()

    if not hasattr(mqtt.Client, "_sock_recv") or not hasattr(mqtt.Client, "_sock_close"):
        raise ImportError("paho-mqtt without Client._sock_recv/_sock_close: the versions pinned in "
                          "pyproject.toml (2.1 .. <3) have them")
    _BUFFERED_CLIENT = BufferedClient
    return BufferedClient


def default_client_id(node: Any) -> str:
    """``edgeflow-<app>-<node>-<replica>``: the same on every restart (a persistent session's key)."""
    app = getattr(getattr(node, "context", None), "app", "") or "app"
    return f"edgeflow-{app}-{node.name}-{getattr(node, 'replica', 0)}"[:128]
