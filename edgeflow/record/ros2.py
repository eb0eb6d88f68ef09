"""``--ros2``: recordings in ROS 2 encoding (profile "ros2", CDR messages, ``ros2msg`` schemas) for rosbag2
tools and ``rosbags``. Needs the ``rosbags`` package (extra ``edgeflow[ros2]``).

Per kind (ring topic ``detector.r0`` becomes ROS topic ``/detector/r0``):

- ``image``: ``sensor_msgs/msg/Image`` (``header.stamp`` = capture time, ``header.frame_id`` = ring topic).
- ``array`` and ``bytes``: ``std_msgs/msg/UInt8MultiArray`` (the raw bytes in ``data``).
- ``message``: ``std_msgs/msg/String`` holding the same JSON as the default format (envelope included).

ROS messages have no place for the EdgeFlow envelope (frame id, exact timestamp, meta, dtype/shape), so
images, arrays and bytes have a companion channel ``<ros topic>/edgeflow`` (``std_msgs/msg/String``, the
envelope as JSON): each frame's envelope is written right before its message, with the same log time and
sequence; our reader joins the two. The CDR bytes are rosbags' own serializer's (``serialize_cdr``), for
everything but the pixel data: the message is serialized with an empty ``data`` and the frame's bytes follow
its length field as a view (a uint8 sequence is the message's last field: the bytes are what
``serialize_cdr`` would write, which the tests check), so a frame is not copied before compression here either.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import numpy as np

from edgeflow.errors import ConfigError, ProtocolError
from edgeflow.record import format as fmt
from edgeflow.transport import codecs

__all__ = ["Ros2Encoder", "ros_topic", "decode_frame", "ENVELOPE_SUFFIX"]

ENVELOPE_SUFFIX = "/edgeflow"
QOS = ("- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n    sec: 2147483647\n"
       "    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n"
       "  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n"
       "  avoid_ros_namespace_conventions: false\n")
TYPES = {"image": "sensor_msgs/msg/Image", "array": "std_msgs/msg/UInt8MultiArray",
         "bytes": "std_msgs/msg/UInt8MultiArray", "message": "std_msgs/msg/String"}
_store = None


def typestore() -> Any:
    """rosbags' ROS 2 Humble type store (ConfigError when rosbags is not installed)."""
    global _store
    if _store is None:
        try:
            from rosbags.typesys import Stores, get_typestore
        except ImportError:
            raise ConfigError("--ros2 needs the rosbags package: pip install 'edgeflow[ros2]'") from None
        _store = get_typestore(Stores.ROS2_HUMBLE)
    return _store


def ros_topic(ring_topic: str) -> str:
    """A ROS 2 topic name for a ring topic: ``detector.r0`` -> ``/detector/r0`` (``-`` becomes ``_``)."""
    name = re.sub(r"[^A-Za-z0-9_/]", "_", ring_topic.replace(".", "/"))
    return "/" + ("_" + name if name[:1].isdigit() else name)


class Ros2Encoder:
    """Schemas, channels and CDR message pieces of the ROS 2 encoding (used by McapRecorder with ros2=True)."""

    def __init__(self) -> None:
        self.store = typestore()
        self._empty: dict[tuple, bytes] = {}

    def schema(self, topic: str, kind: str) -> tuple[str, str, bytes, str, str]:
        """(schema name, schema encoding, schema data, message encoding, channel topic) of a ring topic."""
        msgtype = TYPES[kind]
        return msgtype, "ros2msg", self.store.generate_msgdef(msgtype, ros_version=2)[0].encode(), "cdr", \
            ros_topic(topic)

    def envelope_schema(self) -> tuple[str, str, bytes]:
        """The companion channels' schema (std_msgs/msg/String)."""
        return TYPES["message"], "ros2msg", self.store.generate_msgdef(TYPES["message"], ros_version=2)[0].encode()

    def string(self, text: str) -> bytes:
        """A std_msgs/msg/String in CDR."""
        cls = self.store.types[TYPES["message"]]
        return bytes(self.store.serialize_cdr(cls(data=text), TYPES["message"]))

    def envelope(self, kind: str, frame: Any) -> bytes | None:
        """The envelope message written before a frame's message, or None for a kind that carries it itself."""
        if kind == "message":
            return None
        env: dict[str, Any] = {"id": frame.frame_id, "ts": frame.timestamp, "meta": frame.meta}
        data = frame.data
        if isinstance(data, np.ndarray):
            env["dtype"], env["shape"] = codecs.dtype_code(data.dtype), list(data.shape)
        return self.string(codecs.compact_json(env))

    def encode(self, kind: str, frame: Any, log_ns: int, topic: str) -> list:
        """The frame's CDR message as pieces (the payload bytes as a view, not copied)."""
        data = frame.data
        if kind != fmt.kind_of(data) and not (kind == "array" and isinstance(data, np.ndarray)):
            raise TypeError(f"{topic}: frame {frame.frame_id} is {fmt.kind_of(data)}, the channel was {kind}")
        if kind == "message":
            return [self.string(fmt._json_message(frame, topic).decode())]
        if kind == "image":
            h, w = data.shape[:2]
            sec, nsec = divmod(log_ns, 1_000_000_000)
            head = self._image_head(self.store, sec, nsec, topic, h, w, data)
            view = fmt._flat(data)
        else:
            head = self._empty.get(("array",))
            if head is None:
                cls = self.store.types[TYPES["array"]]
                layout = self.store.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
                head = bytes(self.store.serialize_cdr(cls(layout=layout, data=np.zeros(0, np.uint8)),
                                                      TYPES["array"]))
                self._empty[("array",)] = head
            view = fmt._flat(data) if isinstance(data, np.ndarray) else memoryview(data)
        # the empty message ends with the data sequence's length (0): put the real one there, the bytes after
        return [head[:-4], struct.pack("<I", view.nbytes), view]

    def _image_head(self, store: Any, sec: int, nsec: int, topic: str, h: int, w: int,
                    data: np.ndarray) -> bytes:
        types = store.types
        msg = types["sensor_msgs/msg/Image"](
            header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                                frame_id=topic),
            height=h, width=w, encoding=fmt.image_encoding(data), is_bigendian=0,
            step=w * data.itemsize * (data.shape[2] if data.ndim == 3 else 1), data=np.zeros(0, np.uint8))
        return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def decode_frame(kind: str, data: Any, envelope: dict | None, topic: str) -> tuple[Any, int, float, dict]:
    """(payload, frame_id, timestamp, meta) of a ROS 2 recorded message and its envelope (None for messages)."""
    store = typestore()
    msg = store.deserialize_cdr(bytes(data), TYPES[kind])
    if kind == "message":
        obj = json.loads(msg.data)
        head = obj["edgeflow"]
        if "efms" in head:
            import base64

            from edgeflow.transport import message
            return message.decode(base64.b64decode(head["efms"]), topic), head["id"], head["ts"], head["meta"]
        return obj["data"], head["id"], head["ts"], head["meta"]
    if envelope is None:
        raise ProtocolError(f"{topic}: a ROS 2 message without its EdgeFlow envelope")
    raw = np.asarray(msg.data, np.uint8)
    if kind == "bytes":
        return raw.tobytes(), envelope["id"], envelope["ts"], envelope["meta"]
    dtype = codecs.dtype_from_code(envelope["dtype"])
    shape = tuple(envelope["shape"])
    count = int(np.prod(shape))
    payload = np.frombuffer(raw.tobytes(), dtype, count=count).reshape(shape) if count else np.empty(shape, dtype)
    payload.flags.writeable = False
    return payload, envelope["id"], envelope["ts"], envelope["meta"]
