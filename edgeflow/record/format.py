"""How one EdgeFlow frame is laid out in an MCAP message (the recording format; see docs/recording.md).

Every message carries the frame whole: data bit-exact (dtype, byte order, shape), frame id (u64), capture
timestamp (the float itself), meta (hop trace, origin, parents). The *envelope* is a small JSON object::

    {"id": frame_id, "ts": timestamp, "meta": {...}, "dtype": "<u2", "shape": [480, 640]}

(``dtype``/``shape`` for arrays only; ``"jpeg": true`` for a lossy --jpeg image). Per channel kind:

- ``image`` (uint8 HxW / HxWx3 / HxWx4, little-endian uint16 HxW): message encoding ``protobuf``, schema
  ``foxglove.RawImage`` (``foxglove.CompressedImage`` with --jpeg), so Foxglove shows it as an image. The
  envelope travels in protobuf field number ENVELOPE_FIELD (15000) of the same message, a field Foxglove's
  schema does not define: protobuf readers skip unknown fields, ours reads it.
- ``array`` (any other ndarray) and ``bytes``: message encoding ``edgeflow.frame`` (no schema):
  ``b"EFRC" + u32 envelope length + envelope JSON + the raw bytes``.
- ``message`` (a dict or list, arrays nested): message encoding ``json``, a JSON schema inferred from the
  topic's first message. The message is ``{"data": <the message as plain JSON>, "edgeflow": <envelope>}``;
  when the message holds arrays, bytes, numpy scalars or non-finite floats, plain JSON cannot carry it exactly
  (small arrays are shown as lists, bigger ones as ``{"dtype", "shape"}``), and the envelope's ``"efms"`` holds
  the exact EdgeFlow message encoding (edgeflow.transport.message) in base64.

Writers hand their big buffers over as memoryviews (``pieces``): nothing copies a frame before compression.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from importlib import resources
from typing import Any

import numpy as np

from edgeflow.errors import ProtocolError
from edgeflow.transport import codecs, message

__all__ = ["KINDS", "ENVELOPE_FIELD", "FRAME_MAGIC", "kind_of", "image_encoding", "encode_frame",
           "decode_frame", "schema_for", "published_json_schema", "infer_json_schema"]

KINDS = ("image", "array", "bytes", "message")
ENVELOPE_FIELD = 15000               #: protobuf field of the EdgeFlow envelope in foxglove image messages
FRAME_MAGIC = b"EFRC"
FRAME_ENCODING = "edgeflow.frame"    #: message encoding of array and bytes channels
_U32 = struct.Struct("<I")
_LIST_LIMIT = 1024                   # arrays up to this many elements are shown as JSON lists in "data"

# foxglove.RawImage / CompressedImage field numbers (foxglove_schemas_protobuf; checked by the tests)
_RAW = {"timestamp": 1, "width": 2, "height": 3, "encoding": 4, "step": 5, "data": 6, "frame_id": 7}
_COMPRESSED = {"timestamp": 1, "data": 2, "format": 3, "frame_id": 4}


def kind_of(data: Any) -> str:
    """The channel kind of a payload: "image", "array", "bytes" or "message"."""
    if isinstance(data, np.ndarray):
        return "image" if image_encoding(data) is not None else "array"
    if isinstance(data, (dict, list)):
        return "message"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "bytes"
    raise TypeError(f"cannot record {type(data).__name__} (an ndarray, bytes or a dict/list message)")


def image_encoding(array: np.ndarray, color: str = "bgr") -> str | None:
    """The foxglove.RawImage encoding of an image array, or None for an array that is not an image."""
    dtype, shape = array.dtype, array.shape
    if dtype == np.uint8 and dtype.byteorder in "|=":
        if len(shape) == 2:
            return "mono8"
        if len(shape) == 3 and shape[2] == 3:
            return f"{color}8"
        if len(shape) == 3 and shape[2] == 4:
            return f"{color}a8"
    elif dtype.str == "<u2" and len(shape) == 2:
        return "mono16"
    return None


# -- protobuf wire format (the few fields of two fixed schemas) -------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _timestamp(ns: int) -> bytes:
    sec, nsec = divmod(ns, 1_000_000_000)
    body = b""
    if sec:
        body += _key(1, 0) + _varint(sec)
    if nsec:
        body += _key(2, 0) + _varint(nsec)
    return _len_field(1, body)


def _fixed32(field: int, value: int) -> bytes:
    return _key(field, 5) + _U32.pack(value)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtocolError("recording: a truncated or bad protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: memoryview) -> dict[int, Any]:
    """Length-delimited fields of a protobuf message as memoryview slices (other wire types skipped)."""
    fields: dict[int, Any] = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            fields[field] = value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            fields[field] = _U32.unpack_from(buf, pos)[0]
            pos += 4
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > end:
                raise ProtocolError("recording: a protobuf field runs past the message")
            fields[field] = buf[pos:pos + n]
            pos += n
        else:
            raise ProtocolError(f"recording: protobuf wire type {wire} is not expected here")
    return fields


# -- frames <-> message pieces -----------------------------------------------------------------------------------

def _flat(array: np.ndarray) -> memoryview:
    """The array's bytes as a flat memoryview: no copy for a C-contiguous array."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return memoryview(array.reshape(-1).view(np.uint8))


def _envelope(frame_id: int, timestamp: float, meta: dict, **more: Any) -> bytes:
    env = {"id": frame_id, "ts": timestamp, "meta": meta}
    env.update(more)
    return codecs.compact_json(env).encode()


def encode_frame(kind: str, frame: Any, log_ns: int, *, topic: str, color: str = "bgr",
                 jpeg_quality: int | None = None) -> list:
    """The message bytes of ``frame`` on a channel of ``kind``, as a list of bytes-like pieces to be written one
    after the other (a frame's array is one piece, a view of it: not copied).

    Raises:
        TypeError: the payload does not fit the channel's kind (a topic changed what it sends).
    """
    data = frame.data
    if kind != kind_of(data) and not (kind == "array" and isinstance(data, np.ndarray)):
        raise TypeError(f"{topic}: frame {frame.frame_id} is {kind_of(data)}, the channel was {kind}")
    if kind == "image":
        h, w = data.shape[:2]
        if jpeg_quality is not None:
            import cv2
            ok, jpg = cv2.imencode(".jpg", data, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise TypeError(f"{topic}: frame {frame.frame_id} could not be encoded as JPEG")
            env = _envelope(frame.frame_id, frame.timestamp, frame.meta, dtype=data.dtype.str,
                            shape=list(data.shape), jpeg=True)
            body = jpg.tobytes()
            head = (_timestamp(log_ns) + _len_field(_COMPRESSED["frame_id"], topic.encode())
                    + _len_field(_COMPRESSED["format"], b"jpeg") + _len_field(ENVELOPE_FIELD, env)
                    + _key(_COMPRESSED["data"], 2) + _varint(len(body)))
            return [head, body]
        view = _flat(data)
        env = _envelope(frame.frame_id, frame.timestamp, frame.meta, dtype=data.dtype.str,
                        shape=list(data.shape))
        head = (_timestamp(log_ns) + _len_field(_RAW["frame_id"], topic.encode())
                + _fixed32(_RAW["width"], w) + _fixed32(_RAW["height"], h)
                + _len_field(_RAW["encoding"], image_encoding(data, color).encode())
                + _fixed32(_RAW["step"], w * data.itemsize * (data.shape[2] if data.ndim == 3 else 1))
                + _len_field(ENVELOPE_FIELD, env) + _key(_RAW["data"], 2) + _varint(view.nbytes))
        return [head, view]
    if kind == "array":
        view = _flat(data)
        env = _envelope(frame.frame_id, frame.timestamp, frame.meta, dtype=codecs.dtype_code(data.dtype),
                        shape=list(data.shape))
        return [FRAME_MAGIC + _U32.pack(len(env)) + env, view]
    if kind == "bytes":
        env = _envelope(frame.frame_id, frame.timestamp, frame.meta)
        return [FRAME_MAGIC + _U32.pack(len(env)) + env, data]
    return [_json_message(frame, topic)]


def _plain(value: Any) -> Any:
    """``json.dumps`` default for the display copy of a message."""
    if isinstance(value, np.ndarray):
        if value.size <= _LIST_LIMIT and value.dtype.fields is None and value.dtype.kind in "biuf":
            return value.tolist()
        return {"dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": memoryview(value).nbytes}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_message(frame: Any, topic: str) -> bytes:
    data = frame.data
    encoded = message.encode(data, topic)
    env: dict[str, Any] = {"id": frame.frame_id, "ts": frame.timestamp, "meta": frame.meta}
    try:
        plain = json.dumps(data, default=_plain, allow_nan=False, separators=(",", ":"))
        exact = not encoded.buffers
    except ValueError:                 # NaN or an infinity: not JSON; the display copy leaves it out
        plain, exact = "null", False
    if not exact:
        env["efms"] = base64.b64encode(encoded.to_bytes()).decode()
    return b'{"data":' + plain.encode() + b',"edgeflow":' + codecs.compact_json(env).encode() + b"}"


def decode_frame(kind: str, encoding: str, data: Any, topic: str) -> tuple[Any, int, float, dict]:
    """(payload, frame_id, timestamp, meta) of one recorded message; arrays view ``data`` (read-only).

    Raises:
        ProtocolError: a message that is not in the EdgeFlow recording format.
    """
    buf = memoryview(data)
    if encoding == "protobuf":
        fields = _proto_fields(buf)
        env = fields.get(ENVELOPE_FIELD)
        if env is None:
            raise ProtocolError(f"{topic}: an image message without the EdgeFlow envelope "
                                f"(field {ENVELOPE_FIELD}): not recorded by EdgeFlow")
        head = json.loads(bytes(env))
        dtype, shape = np.dtype(head["dtype"]), tuple(head["shape"])
        if head.get("jpeg"):
            import cv2
            flag = cv2.IMREAD_GRAYSCALE if len(shape) == 2 else cv2.IMREAD_UNCHANGED
            payload = cv2.imdecode(np.frombuffer(fields[_COMPRESSED["data"]], np.uint8), flag)
            payload = payload.reshape(shape).astype(dtype, copy=False)
        else:
            payload = np.frombuffer(fields.get(_RAW["data"], b""), dtype, count=math.prod(shape)).reshape(shape)
        payload.flags.writeable = False
        return payload, head["id"], head["ts"], head["meta"]
    if encoding == FRAME_ENCODING:
        if bytes(buf[:4]) != FRAME_MAGIC:
            raise ProtocolError(f"{topic}: not an EdgeFlow frame message")
        n = _U32.unpack_from(buf, 4)[0]
        head = json.loads(bytes(buf[8:8 + n]))
        body = buf[8 + n:]
        if "dtype" in head:
            dtype, shape = codecs.dtype_from_code(head["dtype"]), tuple(head["shape"])
            payload = (np.frombuffer(body, dtype, count=math.prod(shape)).reshape(shape) if body.nbytes
                       else np.empty(shape, dtype))
            payload.flags.writeable = False
        else:
            payload = bytes(body)
        return payload, head["id"], head["ts"], head["meta"]
    if encoding == "json":
        obj = json.loads(bytes(buf))
        head = obj["edgeflow"]
        payload = message.decode(base64.b64decode(head["efms"]), topic) if "efms" in head else obj["data"]
        return payload, head["id"], head["ts"], head["meta"]
    raise ProtocolError(f"{topic}: message encoding {encoding!r} is not one EdgeFlow records")


# -- schemas -------------------------------------------------------------------------------------------------------

def _schema_file(name: str) -> bytes:
    return resources.files("edgeflow.record").joinpath("schemas", name).read_bytes()


def published_json_schema(name: str) -> dict:
    """Foxglove's published JSON schema of ``RawImage`` or ``CompressedImage`` (a copy kept in the package)."""
    return json.loads(_schema_file(f"{name}.json"))


def schema_for(kind: str, *, jpeg: bool = False, first: Any = None, topic: str = "") -> tuple[str, str, bytes]:
    """(schema name, schema encoding, schema data) and the channel's message encoding follow from the kind:
    protobuf FileDescriptorSets of Foxglove's image messages, a JSON schema for messages, none otherwise."""
    if kind == "image":
        name = "CompressedImage" if jpeg else "RawImage"
        return f"foxglove.{name}", "protobuf", _schema_file(f"{name}.fds")
    if kind == "message":
        schema = {"type": "object", "title": f"edgeflow.{topic}",
                  "properties": {"data": infer_json_schema(first),
                                 "edgeflow": {"type": "object", "description": "EdgeFlow frame envelope",
                                              "properties": {"id": {"type": "integer"},
                                                             "ts": {"type": "number"},
                                                             "meta": {"type": "object"},
                                                             "efms": {"type": "string",
                                                                      "contentEncoding": "base64"}}}}}
        return f"edgeflow.{topic}", "jsonschema", json.dumps(schema).encode()
    return "", "", b""


def message_encoding(kind: str) -> str:
    """The MCAP message encoding of a channel of ``kind``."""
    return {"image": "protobuf", "message": "json"}.get(kind, FRAME_ENCODING)


def infer_json_schema(value: Any, depth: int = 0) -> dict:
    """A JSON schema describing ``value`` (a topic's first message), for tools that plot fields by path."""
    if depth > 8:
        return {}
    if isinstance(value, dict):
        return {"type": "object",
                "properties": {str(k): infer_json_schema(v, depth + 1) for k, v in list(value.items())[:256]}}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": infer_json_schema(value[0], depth + 1) if value else {}}
    if isinstance(value, np.ndarray):
        if value.size <= _LIST_LIMIT and value.dtype.fields is None and value.dtype.kind in "biuf":
            item = {"type": {"b": "boolean", "f": "number"}.get(value.dtype.kind, "integer")}
            for _ in range(max(value.ndim, 1)):
                item = {"type": "array", "items": item}
            return item
        return {"type": "object"}
    if isinstance(value, (bool, np.bool_)):
        return {"type": "boolean"}
    if isinstance(value, (int, np.integer)):
        return {"type": "integer"}
    if isinstance(value, (float, np.floating)):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    return {}
