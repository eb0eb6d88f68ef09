"""MqttSink: one MQTT message per frame.

    app.node(MqttSink, name="publish", url="mqtt://127.0.0.1:1883", topic="twins/{asset}/estimate", qos=1)
"""

from __future__ import annotations

import collections
import json
import logging
import string
import threading
import time
from typing import Any, ClassVar

import numpy as np

from edgeflow.connectors import _mqtt
from edgeflow.connectors._base import count, opt_bool, opt_number, opt_str, option_error, unknown_options
from edgeflow.connectors._rows import plain
from edgeflow.nodes.base import SinkNode

log = logging.getLogger("edgeflow.connectors.mqtt")

PAYLOADS = ("auto", "json", "bytes", "jpeg", "png")
ON_FULL = ("block", "drop")
DEFAULT_SPOOL = 10_000                 # messages
DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024
WAIT = 0.25                            # seconds between looks while blocked on a full spool


class MqttSink(SinkNode):
    """Publishes each frame as an MQTT message to a topic filled from the frame's data or meta.

    Guarantee: at least once to the broker for QoS 1 and 2 while this node's process lives — a frame waits in
    a bounded spool (``spool`` messages, ``spool_bytes``) until the broker acknowledged it, across broker
    restarts, and spooled messages are sent in order after a reconnect; a full spool blocks (back-pressure up
    a DURABLE pipeline) or with ``on_full="drop"`` drops the frame and counts it (``overflow``), never
    silently. QoS 0 is at most once, also spooled while the broker is away.

    Options (besides the connection's, see edgeflow/connectors/_mqtt.py):
        topic: the topic, a template filled from the message's fields and then the meta (``twins/{asset}/x``,
            ``{mqtt_topic}`` sends a message back to where an MqttSource got it). A frame that does not fill
            it is counted as ``bad_topic`` and skipped.
        qos: 0, 1 (default) or 2. retain: False (default).
        payload: ``"auto"`` (default: a dict message or a list as JSON, bytes as they are, a uint8 image
            HxW or HxWx3 as JPEG), ``"json"``, ``"bytes"``, ``"jpeg"`` or ``"png"``. ``jpeg_quality``: 90.
        spool: messages (default 10,000) and spool_bytes (default 64 MiB) not yet acknowledged by the broker.
        on_full: ``"block"`` (default) or ``"drop"``.

    Statistics: the connection's state, events ``published``, ``acked``, ``spooled`` (sent while the broker
    was away), ``overflow``, ``bad_topic``, ``bad_payload``.
    """

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (_base.py)

    OPTIONS: ClassVar[tuple[str, ...]] = (*_mqtt.CONNECTION_OPTIONS, "topic", "qos", "retain", "payload",
                                          "jpeg_quality", "spool", "spool_bytes", "on_full")

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        unknown_options(name, options, cls.OPTIONS)
        _mqtt.check_connection_options(name, options)
        topic = opt_str(name, options, "topic", required=True)
        if "+" in topic or "#" in topic:
            raise option_error(name, "topic",
                               f"{topic!r}: wildcards are for subscriptions, not a topic to send to")
        try:
            list(string.Formatter().parse(topic))
        except ValueError as exc:
            raise option_error(name, "topic", f"{topic!r} is not a valid template ({exc})") from None
        opt_number(name, options, "qos", low=0, high=2, integer=True)
        opt_bool(name, options, "retain")
        opt_str(name, options, "payload", choices=PAYLOADS)
        opt_number(name, options, "jpeg_quality", low=1, high=100, integer=True)
        opt_number(name, options, "spool", low=1, high=10**7, integer=True)
        opt_number(name, options, "spool_bytes", low=1024, high=2**40, integer=True)
        opt_str(name, options, "on_full", choices=ON_FULL)

    def setup(self) -> None:
        cfg = self.config
        self._template = cfg["topic"]
        self._fields = [f for _, f, _, _ in string.Formatter().parse(self._template) if f]
        self._qos = int(cfg.get("qos", 1))
        self._retain = bool(cfg.get("retain", False))
        self._payload = cfg.get("payload", "auto")
        self._quality = int(cfg.get("jpeg_quality", 90))
        self._max_msgs = int(cfg.get("spool", DEFAULT_SPOOL))
        self._max_bytes = int(cfg.get("spool_bytes", DEFAULT_SPOOL_BYTES))
        self._drop = cfg.get("on_full", "block") == "drop"
        self._sizes: dict[int, int] = {}                 # mid -> bytes, sent and not yet acknowledged
        self._bytes = 0
        self._acked: collections.deque = collections.deque()   # mids acknowledged (paho's thread appends)
        self._early: set[int] = set()                    # acknowledged before publish() returned its mid
        self._changed = threading.Event()
        self._offline: collections.deque = collections.deque()  # QoS 0 while the broker is away
        self._warned: collections.Counter = collections.Counter()
        self.mqtt = _mqtt.MqttConnection(self, clean=True, on_connect=lambda flags: self._changed.set())
        self.mqtt.client.on_publish = self._on_publish
        # paho keeps QoS 1/2 messages it could not send yet, in order, and resends them after a reconnect:
        # that queue is the spool; the bound is ours (messages and bytes), so no paho limit is set
        self.mqtt.client.max_inflight_messages_set(100)
        self.mqtt.start()

    # -- paho's thread ---------------------------------------------------------------------------------------
    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked.append(mid)
        self._changed.set()

    # -- the node's thread -----------------------------------------------------------------------------------
    def consume(self, data: Any) -> None:
        """Send one frame (waits while the spool is full, unless on_full="drop")."""
        frame = self.current_frame
        meta = frame.meta if frame is not None else {}
        topic = self._topic(data, meta)
        if topic is None:
            return
        payload = self._encode(data)
        if payload is None:
            return
        self._settle()
        if self._offline and self.mqtt.connected.is_set():
            self._flush_offline()
        while self._full(len(payload)):
            if self._drop:
                count(self, "overflow")
                self._say("overflow", "spool full (%d messages, %d bytes): frames are dropped and counted"
                          % (self._spooled(), self._bytes))
                return
            context = getattr(self, "context", None)
            if context is not None and context.wait(0):       # statistics go on while we wait
                raise RuntimeError(f"stopped while the spool was full ({self._spooled()} messages waiting)")
            self._changed.wait(WAIT)
            self._changed.clear()
            self._settle()
            if self._offline and self.mqtt.connected.is_set():
                self._flush_offline()
        self._send(topic, payload)

    def idle(self) -> None:
        self._settle()
        if self._offline and self.mqtt.connected.is_set():
            self._flush_offline()

    def _send(self, topic: str, payload: bytes) -> None:
        if not self.mqtt.connected.is_set():
            count(self, "spooled")
            if self._qos == 0:
                self._offline.append((topic, payload))
                self._bytes += len(payload)
                return
        info = self.mqtt.client.publish(topic, payload, qos=self._qos, retain=self._retain)
        count(self, "published")
        if self._qos == 0:
            if info.rc != 0:                 # the connection dropped just now: keep it for the reconnect
                self._offline.append((topic, payload))
                self._bytes += len(payload)
            return
        mid = info.mid
        if mid in self._early:
            self._early.discard(mid)
            count(self, "acked")
        else:
            self._sizes[mid] = len(payload)
            self._bytes += len(payload)

    def _flush_offline(self) -> None:
        while self._offline and self.mqtt.connected.is_set():
            topic, payload = self._offline[0]
            info = self.mqtt.client.publish(topic, payload, qos=0, retain=self._retain)
            if info.rc != 0:
                return
            self._offline.popleft()
            self._bytes -= len(payload)

    def _settle(self) -> None:
        """Forget what the broker acknowledged."""
        acked = self._acked
        while acked:
            mid = acked.popleft()
            size = self._sizes.pop(mid, None)
            if size is None:
                self._early.add(mid)
                continue
            self._bytes -= size
            count(self, "acked")

    def _spooled(self) -> int:
        return len(self._sizes) + len(self._offline)

    def _full(self, size: int) -> bool:
        waiting = self._spooled()
        return waiting >= self._max_msgs or (waiting > 0 and self._bytes + size > self._max_bytes)

    def _topic(self, data: Any, meta: dict) -> str | None:
        if not self._fields:
            return self._template
        values = {}
        for field in self._fields:
            key = field.split(".")[0].split("[")[0]
            if isinstance(data, dict) and key in data:
                values[key] = data[key]
            elif key in meta:
                values[key] = meta[key]
            else:
                count(self, "bad_topic")
                self._say("bad_topic", f"topic {self._template!r}: the frame has no field or meta {key!r}; "
                                       "skipped")
                return None
        try:
            topic = self._template.format(**values)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            count(self, "bad_topic")
            self._say("bad_topic", f"topic {self._template!r} cannot be filled: {exc}; skipped")
            return None
        if not topic or "+" in topic or "#" in topic:
            count(self, "bad_topic")
            self._say("bad_topic",
                      f"topic {topic!r} (from {self._template!r}) cannot be published to; skipped")
            return None
        return topic

    def _encode(self, data: Any) -> bytes | None:
        kind = self._payload
        try:
            if kind == "auto":
                if isinstance(data, (dict, list)):
                    kind = "json"
                elif isinstance(data, (bytes, bytearray, memoryview)):
                    kind = "bytes"
                elif isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
                    kind = "jpeg"
                else:
                    kind = "json"
            if kind == "json":
                return json.dumps(data, separators=(",", ":"), default=_json_default).encode()
            if kind == "bytes":
                if isinstance(data, np.ndarray):
                    return data.tobytes()
                return bytes(data)
            return _image(data, kind, self._quality)
        except (TypeError, ValueError) as exc:
            count(self, "bad_payload")
            self._say("bad_payload", f"cannot encode the frame as {kind}: {exc}; skipped")
            return None

    def _say(self, what: str, message: str) -> None:
        self._warned[what] += 1
        n = self._warned[what]
        if n == 1 or n == 100 or n % 1000 == 0:
            log.warning("%s: %s (%d so far)", self.name, message, n)

    def teardown(self) -> None:
        mqtt = getattr(self, "mqtt", None)
        if mqtt is None:
            return
        # the stream ended: wait for the broker to acknowledge what is spooled, however long it is away (a
        # DURABLE pipeline's end waits the same way); when the app is being stopped, only a short grace
        context = getattr(self, "context", None)
        stopping = context.stopping if context is not None else threading.Event()
        grace = None
        next_log = time.monotonic() + 5.0
        self._settle()
        while self._sizes or self._offline:
            if stopping.is_set():
                grace = grace or time.monotonic() + 2.0
                if time.monotonic() >= grace:
                    break
            if time.monotonic() >= next_log:
                log.warning("%s: the stream ended; waiting for broker %s to take %d spooled messages",
                            self.name, mqtt.target, self._spooled())
                next_log = time.monotonic() + 60.0
            self._flush_offline()
            self._changed.wait(0.05)
            self._changed.clear()
            self._settle()
        if self._sizes or self._offline:
            log.error("%s: stopped with %d messages not acknowledged by broker %s: they are lost", self.name,
                      self._spooled(), mqtt.target)
            count(self, "lost", self._spooled())
        mqtt.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic, bytes, bytearray, memoryview)):
        return plain(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _image(data: Any, kind: str, quality: int) -> bytes:
    import cv2
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim not in (2, 3):
        raise ValueError(f"{kind} needs a uint8 image (HxW or HxWx3), got "
                         f"{getattr(data, 'dtype', type(data).__name__)}{list(getattr(data, 'shape', []))}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if kind == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", data, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {kind}")
    return buf.tobytes()
