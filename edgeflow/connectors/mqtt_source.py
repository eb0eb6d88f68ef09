"""MqttSource: MQTT messages in, one frame each.

    app.node(MqttSource, name="sensors", url="mqtt://127.0.0.1:1883", topics=["sensors/+/temperature"], qos=1)
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
from typing import Any, ClassVar

from edgeflow.connectors import _mqtt
from edgeflow.connectors._base import count, opt_number, opt_str, option_error, unknown_options
from edgeflow.frame import Frame
from edgeflow.nodes.base import ProducerNode

log = logging.getLogger("edgeflow.connectors.mqtt")

PAYLOADS = ("json", "bytes", "auto")
POLL = 0.1          # seconds produce() waits for a message before it returns nothing (the runtime's tick)


class MqttSource(ProducerNode):
    """Subscribes MQTT topics (wildcards ``+`` and ``#``) and sends each message on as a frame.

    Guarantee: at least once for QoS 1 and 2 — a message is acknowledged to the broker only once its frame is
    in this node's output ring, and its persistent session (a fixed client id, no clean start) keeps what is
    sent while the node is away, so a crash or restart loses nothing; a message whose frame was written but
    not yet acknowledged when the node died comes again (``meta["mqtt_dup"]`` is True). QoS 0 is at most
    once.

    Options (besides the connection's, see edgeflow/connectors/_mqtt.py):
        topics: a topic filter or a list of them (required).
        qos: 0, 1 (default) or 2, for every subscription.
        payload: ``"json"`` (default: the payload must be JSON; a dict or list becomes a dict message, any
            other value ``{"value": v}``; anything else is counted as ``bad_payload`` and skipped),
            ``"bytes"`` (the payload as bytes) or ``"auto"`` (JSON when it parses, else bytes).
        timestamp_field: a field of the JSON message holding the frame's timestamp: seconds since the epoch
            (values above 1e11 are taken as milliseconds) or an ISO 8601 string; default: the arrival time.
        clean_session: False (default): a persistent session; True starts empty every time.
        session_expiry: MQTT 5: seconds the broker keeps the session while the node is away (default 86400).
        max_pending: messages received but not yet sent on (default 1000). MQTT flow control (the broker's
            in-flight window, 20 per client for mosquitto) keeps QoS 1/2 below it; QoS 0 beyond it is dropped
            and counted as ``overflow``.

    Each frame's meta: ``mqtt_topic``, ``mqtt_qos``, ``mqtt_retain`` and ``mqtt_dup``. Statistics: the
    connection's state (``extra["connections"]``) and events ``messages``, ``bad_payload``, ``overflow``.
    The broker keeps what a persistent session misses only up to its own limit (mosquitto:
    ``max_queued_messages``, 1000 by default): raise it for long absences.
    """

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (_base.py)

    fps: ClassVar[float | None] = None          # as fast as messages come
    OPTIONS: ClassVar[tuple[str, ...]] = (*_mqtt.CONNECTION_OPTIONS, "topics", "qos", "payload",
                                          "timestamp_field", "clean_session", "session_expiry", "max_pending")

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        unknown_options(name, options, cls.OPTIONS)
        _mqtt.check_connection_options(name, options)
        topics = options.get("topics")
        if isinstance(topics, str):
            topics = [topics]
        if not topics or not isinstance(topics, (list, tuple)) or \
                not all(isinstance(t, str) and t for t in topics):
            raise option_error(name, "topics", f"expected a topic filter or a list of them, got {topics!r}")
        for topic in topics:
            _check_filter(name, topic)
        opt_number(name, options, "qos", low=0, high=2, integer=True)
        opt_str(name, options, "payload", choices=PAYLOADS)
        opt_str(name, options, "timestamp_field")
        opt_number(name, options, "session_expiry", low=0, high=2**32 - 1, integer=True)
        opt_number(name, options, "max_pending", low=1, high=10**7, integer=True)

    def setup(self) -> None:
        topics = self.config["topics"]
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._qos = int(self.config.get("qos", 1))
        self._payload = self.config.get("payload", "json")
        self._ts_field = self.config.get("timestamp_field")
        self._inbox: collections.deque = collections.deque()    # received, not yet sent on
        self._max_pending = int(self.config.get("max_pending", 1000))
        self._to_ack: collections.deque = collections.deque()     # (mid, qos) whose frames are in the ring
        self._warned_bad = 0
        clean = bool(self.config.get("clean_session", False))
        # no network thread: produce() reads the socket itself, so a message costs no hand-over between
        # threads (and no fight for the GIL); acknowledgements go out from here too
        self.mqtt = _mqtt.MqttConnection(self, clean=clean, manual_ack=True, on_connect=self._subscribe,
                                         threaded=False)
        self.mqtt.client.on_message = self._on_message    # before connecting: a backlog comes first
        self.mqtt.start()

    def _subscribe(self, flags) -> None:
        # every (re)connect: messages received on the old connection and not acknowledged come again (the
        # broker resends them), so the copies still waiting here are dropped; acknowledgements owed on the
        # old connection cannot be sent any more (their frames are in the ring: the resent copies are
        # duplicates, marked mqtt_dup). A persistent session keeps subscriptions, but a broker that lost it
        # (restarted without persistence) does not: subscribing again makes a reconnect whole.
        self._inbox = collections.deque(m for m in self._inbox if m.qos == 0)
        self._to_ack.clear()
        self.mqtt.client.subscribe([(topic, self._qos) for topic in self._topics])

    def _on_message(self, client, userdata, message) -> None:
        if message.qos == 0 and len(self._inbox) >= self._max_pending:
            count(self, "overflow")
            return
        self._inbox.append(message)

    def produce(self) -> Any:
        """The next message as a Frame (None when none came within POLL seconds)."""
        # every message returned so far is in the ring now. What one read brought (up to the broker's in-flight
        # window, 20 for mosquitto) is acknowledged in one write once it is all in the ring: measured against a
        # PUBACK per message, 1.5x the messages/s (the window refills while the next batch is read)
        if self._to_ack and not self._inbox:
            self._ack_sent()
        if not self._inbox:
            self.mqtt.service(POLL)
            if not self._inbox:
                return None
        message = self._inbox.popleft()
        frame = self._frame_of(message)
        if frame is not None and message.qos:
            # acknowledged at the next call: by then the runtime has written this frame into the ring
            self._to_ack.append((message.mid, message.qos))
        return frame

    def _ack_sent(self) -> None:
        if not self._to_ack:
            return
        client = self.mqtt.client
        while self._to_ack:
            mid, qos = self._to_ack.popleft()
            client.ack(mid, qos)
        if self.mqtt.connected.is_set():
            client.loop_write()           # the queued PUBACKs go out together (see MqttConnection.start)

    def _frame_of(self, message) -> Frame | None:
        count(self, "messages")
        meta = {"mqtt_topic": message.topic, "mqtt_qos": message.qos, "mqtt_retain": bool(message.retain),
                "mqtt_dup": bool(message.dup)}
        raw = message.payload
        data: Any = raw
        if self._payload != "bytes":
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                if self._payload == "json":
                    self._bad(message, f"not JSON ({exc})")
                    return None
                data = raw
            else:
                if not isinstance(data, (dict, list)):
                    data = {"value": data}
        stamp = None
        if self._ts_field is not None and isinstance(data, dict):
            stamp = _timestamp(data.get(self._ts_field))
            if stamp is None:
                self._bad(message, f"timestamp field {self._ts_field!r} missing or not a time "
                                   f"({data.get(self._ts_field)!r})")
                return None
        return Frame(data, timestamp=stamp, meta=meta)

    def _bad(self, message, why: str) -> None:
        # counted, logged at the 1st, 100th, 1000th and every 1000th; the message is acknowledged (dropped):
        # redelivering a payload that cannot be decoded would only fail again
        count(self, "bad_payload")
        self._warned_bad += 1
        n = self._warned_bad
        if n == 1 or n == 100 or n % 1000 == 0:
            log.warning("%s: message on %r skipped: %s (%d so far)", self.name, message.topic, why, n)
        if message.qos:
            self._to_ack.append((message.mid, message.qos))

    def teardown(self) -> None:
        mqtt = getattr(self, "mqtt", None)
        if mqtt is None:
            return
        self._ack_sent()       # the last frame is in the ring; messages still in the inbox come again
        mqtt.close()


def _check_filter(node: str, topic: str) -> None:
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            raise option_error(node, "topics", f"{topic!r} is not a valid topic filter ('+' is a whole "
                                               "level, '#' the whole last level)")


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a message's field (seconds, milliseconds or ISO 8601), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1e3 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    return None
