"""The TCP transport's wire format: message prefixes and headers, packed and unpacked.

Every message is a 16-byte prefix, ``header_len`` header bytes, then ``payload_len`` payload bytes. All
integers are little-endian. The prefix is the same for every kind of message, so a reader always knows how
much to read (and can refuse an oversized message) before it reads it::

    prefix  0  4  magic  b"EFTP"
            4  1  version (1)
            5  1  kind: 1 SERVER_HELLO, 2 CLIENT_HELLO, 3 ACCEPT, 4 REJECT, 5 FRAME
            6  2  header_len (u16)
            8  8  payload_len (u64)

    FRAME header (header_len bytes; everything must add up to exactly header_len)
            0  8  frame_id (u64)
            8  8  timestamp (f64, seconds since the epoch)
           16  1  data kind: 0 bytes, 1 numpy array, 2 message (ndim 0, no dtype)
           17  1  ndim (0..32)
           18  1  topic_len (1..100)
           19  1  codec_len (0 = raw)
           20  2  dtype_len (u16)
           22  2  meta_len (u16; JSON, at most MAX_META_BYTES)
           24  8*ndim  shape (u64 each)
            .  topic (UTF-8), codec name (ASCII), dtype code (ASCII), meta (JSON, UTF-8)
            dtype codes and payloads are edgeflow.transport.codecs' (``dtype_code``, ``encode``/``decode``)
    FRAME payload: the array's bytes in C order (or the bytes, or a message in edgeflow.transport.message's
    encoding), or the codec's output when a codec is named.

    SERVER_HELLO header: nonce (32 random bytes), flags (u8, bit 0: a token is required),
                         max_frame_bytes (u64)
    CLIENT_HELLO header: session (u64), mac_len (u8: 0 or 32), app_len (u8), mac, app (UTF-8)
    ACCEPT: no header.   REJECT header: the reason as ASCII (``oversized``, ``unauthenticated`` ...).

    REJECT may come at any point, then the server closes: instead of SERVER_HELLO when the server is full
    (``too_many_connections``: refused, or evicted as the oldest connection still in its hello), after the
    hello (``unauthenticated``, ``timeout``), or between frames (``idle``: an authenticated connection that
    sent nothing for the server's idle timeout; the sender reconnects when it has a frame). Reasons are
    open-ended ASCII words: a sender shows an unknown one as it is, so new reasons need no new version.

Limits a FRAME header is checked against before its payload is read (docs/limits.md): a zero-size dtype is
malformed; an array whose declared ``dtype`` x ``shape`` exceeds the server's ``max_frame_bytes`` is
``oversized`` even when a codec makes its payload small (that is how an lz4 or PNG bomb is refused).

This module is pure: bytes in, values out. Every malformed input raises ProtocolError with a ``reason`` (the
short name the server counts rejections under: ``bad_magic``, ``bad_version``, ``malformed``, ...).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import struct
from typing import Any, NamedTuple

import numpy as np

from edgeflow.errors import ProtocolError
from edgeflow.transport import codecs

MAGIC = b"EFTP"
VERSION = 1
HELLO_S, HELLO_C, ACCEPT, REJECT, FRAME = 1, 2, 3, 4, 5
KINDS = frozenset((HELLO_S, HELLO_C, ACCEPT, REJECT, FRAME))

PREFIX = struct.Struct("<4sBBHQ")
PREFIX_BYTES = PREFIX.size                       # 16
FRAME_FIXED = struct.Struct("<QdBBBBHH")         # 24 bytes, then shape, topic, codec, dtype, meta
HELLO_S_HDR = struct.Struct("<32sBQ")
HELLO_C_FIXED = struct.Struct("<QBB")
NONCE_BYTES = 32
MAC_BYTES = 32                                   # HMAC-SHA256
MAX_HEADER_BYTES = 0xFFFF
MAX_META_BYTES = codecs.MAX_META_BYTES           #: JSON metadata limit per frame: every transport's (8 KiB)
MAX_NDIM = 32
MAX_DTYPE_BYTES = codecs.MAX_DTYPE_CODE
AUTH_REQUIRED = 0x01
KIND_BYTES, KIND_ARRAY, KIND_MESSAGE = 0, 1, 2
AUTH_CONTEXT = b"edgeflow-tcp-auth/1\0"

TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")      # the same rule as shm.ring_name
APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


def protocol_error(reason: str, detail: str) -> ProtocolError:
    """A ProtocolError carrying the short ``reason`` the server counts it under."""
    err = ProtocolError(detail)
    err.reason = reason
    return err


# -- prefix -------------------------------------------------------------------------------------------------

def pack_prefix(kind: int, header_len: int, payload_len: int) -> bytes:
    return PREFIX.pack(MAGIC, VERSION, kind, header_len, payload_len)


def unpack_prefix(buf: Any, offset: int = 0) -> tuple[int, int, int]:
    """(kind, header_len, payload_len) of the prefix at ``offset``; ProtocolError for a foreign one."""
    magic, version, kind, header_len, payload_len = PREFIX.unpack_from(buf, offset)
    if magic != MAGIC:
        raise protocol_error("bad_magic", f"not an EdgeFlow TCP stream (starts with {bytes(magic)!r})")
    if version != VERSION:
        raise protocol_error("bad_version", f"wire version {version}, this EdgeFlow speaks {VERSION}")
    if kind not in KINDS:
        raise protocol_error("malformed", f"unknown message kind {kind}")
    return kind, header_len, payload_len


def message(kind: int, header: bytes = b"", payload_len: int = 0) -> bytes:
    """A prefix and its header, ready to send (the payload, if any, follows separately)."""
    return pack_prefix(kind, len(header), payload_len) + header


# -- hello and authentication -------------------------------------------------------------------------------

def server_hello(nonce: bytes, auth_required: bool, max_frame_bytes: int) -> bytes:
    return message(HELLO_S, HELLO_S_HDR.pack(nonce, AUTH_REQUIRED if auth_required else 0, max_frame_bytes))


def parse_server_hello(header: bytes) -> tuple[bytes, bool, int]:
    """(nonce, auth_required, max_frame_bytes)."""
    if len(header) != HELLO_S_HDR.size:
        raise protocol_error("malformed", f"server hello of {len(header)} bytes")
    nonce, flags, max_frame_bytes = HELLO_S_HDR.unpack(header)
    return nonce, bool(flags & AUTH_REQUIRED), max_frame_bytes


def auth_mac(token: bytes, nonce: bytes, session: int, app: str) -> bytes:
    """HMAC-SHA256 over the server's nonce, the sender's session and app: proves the token, never sends it."""
    msg = AUTH_CONTEXT + nonce + session.to_bytes(8, "little") + app.encode()
    return hmac.new(token, msg, hashlib.sha256).digest()


def client_hello(session: int, app: str, mac: bytes) -> bytes:
    app_b = app.encode()
    return message(HELLO_C, HELLO_C_FIXED.pack(session, len(mac), len(app_b)) + mac + app_b)


def parse_client_hello(header: bytes) -> tuple[int, bytes, str]:
    """(session, mac, app)."""
    if len(header) < HELLO_C_FIXED.size:
        raise protocol_error("malformed", f"client hello of {len(header)} bytes")
    session, mac_len, app_len = HELLO_C_FIXED.unpack_from(header)
    if mac_len not in (0, MAC_BYTES) or HELLO_C_FIXED.size + mac_len + app_len != len(header):
        raise protocol_error("malformed", "client hello lengths do not add up")
    mac = bytes(header[HELLO_C_FIXED.size:HELLO_C_FIXED.size + mac_len])
    try:
        app = bytes(header[HELLO_C_FIXED.size + mac_len:]).decode()
    except UnicodeDecodeError:
        raise protocol_error("malformed", "app name is not UTF-8") from None
    if not APP.fullmatch(app):
        raise protocol_error("malformed", f"bad app name {app[:80]!r}")
    return session, mac, app


def reject(reason: str) -> bytes:
    return message(REJECT, reason.encode("ascii", "replace")[:200])


# -- frames -------------------------------------------------------------------------------------------------

class FrameHeader(NamedTuple):
    """A FRAME header, decoded."""
    frame_id: int
    timestamp: float
    kind: int
    shape: tuple
    topic: str
    codec: str
    dtype: np.dtype | None
    meta: dict


def encode_meta(topic: str, meta: dict | None) -> bytes:
    """Meta as compact JSON; TypeError for something not JSON-able, FrameTooLarge past MAX_META_BYTES."""
    return codecs.encode_meta(topic, meta, MAX_META_BYTES)


def frame_header(frame_id: int, timestamp: float, kind: int, shape: tuple, topic_b: bytes, codec_b: bytes,
                 dtype_b: bytes, meta_b: bytes) -> bytes:
    """The FRAME header (without prefix)."""
    fixed = FRAME_FIXED.pack(frame_id, timestamp, kind, len(shape), len(topic_b), len(codec_b), len(dtype_b),
                             len(meta_b))
    dims = struct.pack(f"<{len(shape)}Q", *shape) if shape else b""
    return b"".join((fixed, dims, topic_b, codec_b, dtype_b, meta_b))


def parse_frame_header(header: Any, payload_len: int, max_bytes: int | None = None) -> FrameHeader:
    """Decode and check a FRAME header; for a raw array the payload must be exactly its size, and an array's
    declared size (with or without a codec) at most ``max_bytes`` (``oversized``)."""
    if len(header) < FRAME_FIXED.size:
        raise protocol_error("malformed", f"frame header of {len(header)} bytes")
    frame_id, ts, kind, ndim, topic_len, codec_len, dtype_len, meta_len = FRAME_FIXED.unpack_from(header)
    pos = FRAME_FIXED.size
    if (kind not in (KIND_BYTES, KIND_ARRAY, KIND_MESSAGE) or ndim > MAX_NDIM
            or (kind != KIND_ARRAY and (ndim or dtype_len))):
        raise protocol_error("malformed", f"frame kind {kind} with {ndim} dimensions")
    if pos + 8 * ndim + topic_len + codec_len + dtype_len + meta_len != len(header):
        raise protocol_error("malformed", "frame header lengths do not add up")
    shape = struct.unpack_from(f"<{ndim}Q", header, pos) if ndim else ()
    pos += 8 * ndim
    topic = _text(header, pos, topic_len, "topic")
    if not TOPIC.fullmatch(topic):
        raise protocol_error("malformed", f"bad topic {topic[:80]!r}")
    pos += topic_len
    codec = _text(header, pos, codec_len, "codec")
    pos += codec_len
    dtype = _dtype(header, pos, dtype_len) if kind == KIND_ARRAY else None
    pos += dtype_len
    meta = _meta(header, pos, meta_len)
    if codec and (codec not in codecs.CODECS or codec == "raw"):
        raise protocol_error("malformed", f"{topic}: unknown codec {codec[:20]!r}")
    if kind == KIND_ARRAY:
        if dtype.itemsize == 0:
            raise protocol_error("malformed", f"{topic}: an array of a zero-size dtype ({dtype})")
        nbytes = math.prod(shape) * dtype.itemsize      # Python ints: no overflow, just a large number
        if not codec and nbytes != payload_len:
            raise protocol_error("malformed",
                                 f"{topic}: payload of {payload_len} bytes for {dtype}{list(shape)[:8]}")
        if max_bytes is not None and nbytes > max_bytes:
            raise protocol_error("oversized", f"{topic}: {dtype}{list(shape)[:8]} is {nbytes} bytes "
                                              f"decoded; the limit is {max_bytes}")
    if not math.isfinite(ts):
        raise protocol_error("malformed", f"{topic}: timestamp {ts}")
    return FrameHeader(frame_id, ts, kind, tuple(shape), topic, codec, dtype, meta)


def _dtype(buf: Any, pos: int, n: int) -> np.dtype:
    try:
        return codecs.dtype_from_code(_text(buf, pos, n, "dtype"))
    except ProtocolError as exc:
        raise protocol_error("malformed", str(exc)) from None


def payload_header(header: FrameHeader, payload_len: int) -> dict:
    """The codecs module's header for a FRAME's payload (what ``codecs.decode`` needs)."""
    if header.kind == KIND_BYTES:
        return {"kind": codecs.KIND_BYTES, "codec": header.codec or "raw", "size": payload_len}
    if header.kind == KIND_MESSAGE:
        return {"kind": codecs.KIND_MESSAGE, "codec": header.codec or "raw", "size": payload_len}
    return {"kind": codecs.KIND_ARRAY, "codec": header.codec or "raw",
            "dtype": codecs.dtype_code(header.dtype), "shape": list(header.shape), "size": payload_len}


def _text(buf: Any, pos: int, n: int, what: str) -> str:
    try:
        return bytes(buf[pos:pos + n]).decode()
    except UnicodeDecodeError:
        raise protocol_error("malformed", f"{what} is not UTF-8") from None


def _meta(buf: Any, pos: int, n: int) -> dict:
    if not n:
        return {}
    try:
        meta = json.loads(bytes(buf[pos:pos + n]))
    except (ValueError, RecursionError):
        raise protocol_error("malformed", "meta is not JSON") from None
    if not isinstance(meta, dict):
        raise protocol_error("malformed", "meta is not a JSON object")
    return meta
