"""Messages: a dict (or list) of JSON-able values with numpy arrays nested in it, as one self-describing buffer.

A producer may return ``{"angle": 1.5, "raw_points": points}`` (``points`` an ``(N, 3) float32`` array); the
message reaches its consumers as the same dict, the arrays bit-exact (dtype, byte order, shape, structured
fields and padding kept). Every transport uses this one encoding: shared memory writes it straight into a
slot (one copy of each array) and hands out the arrays as read-only, zero-copy views of the slot; Redis and
TCP carry the same bytes as their payload. Pickle is never used.

Layout, version 1 (all integers little-endian)::

    offset  size  field
         0     4  magic b"EFMS"
         4     1  version (1)
         5     1  flags (0; a decoder refuses other values)
         6     2  reserved (0)
         8     4  header_len (u32): bytes of the JSON header that follows the prefix
        12     4  buffer_count (u32): how many placeholders the header holds
        16     8  data_len (u64): bytes of the data area
        24     .  header: the message as JSON (UTF-8, ASCII-escaped), each array replaced by a placeholder
         .     .  zero padding up to the next multiple of 64: the data area starts there
         .     .  data area: every buffer at an offset (from the data area's start) that is a multiple of 64,
                  zero padding between them

    total size = align64(24 + header_len) + data_len: exactly the payload's length.

A placeholder is a JSON object with the single key ``"__ef_buf__"``::

    {"__ef_buf__": [kind, dtype, shape, offset, nbytes]}

    kind    "a" a numpy array, decoded as a read-only view of the buffer (no copy);
            "s" a numpy scalar (np.int64(3), np.float32(1.5), np.bool_ ...), decoded as the same numpy scalar;
            "b" bytes (bytes, bytearray, memoryview), decoded as bytes (a copy).
    dtype   edgeflow.transport.codecs.dtype_code: ``dtype.str`` (``"<f4"``), or ``"D:"`` + the
            ``numpy.lib.format`` description for structured and sub-array dtypes. ``"|u1"`` for bytes.
    shape   a list of at most 32 non-negative ints (``[]`` for 0-d arrays and scalars). A dtype of zero
            itemsize (``|V0``) is refused either way: any count of it would be "valid" at 0 bytes.
    offset  from the start of the data area, a multiple of 64.
    nbytes  must equal prod(shape) * itemsize; offset + nbytes <= data_len.

Everything else in the header is plain JSON: dicts (keys are strings, as in JSON: other keys are converted the
way ``json.dumps`` converts them), lists (tuples travel as lists), strings, numbers (NaN and infinities as
Python's json writes them), true/false/null. ``"__ef_buf__"`` is reserved: a message that uses it as a key or
string value is refused. Arrays of Python objects are refused (TypeError).

Decoding is bounded and checks everything before it builds anything: the prefix, the version, that the lengths
add up to the payload's size, the header's size (MAX_HEADER_BYTES) and nesting (as deep as Python's json
parser allows), every placeholder's dtype string (no eval: ``ast.literal_eval`` of a bounded string, object
dtypes refused), shape, offset and size. Nothing is allocated from a claimed length: arrays view the payload.
Any violation raises ProtocolError. The payload's total size is bounded by the transport that carried it (the
ring's slot, the TCP server's ``max_frame_bytes``, Redis' MAX_PAYLOAD_BYTES).

    >>> enc = encode({"angle": 1.5, "pts": np.zeros((2, 3), np.float32)})
    >>> msg = decode(enc.to_bytes())
    >>> msg["angle"], msg["pts"].dtype, msg["pts"].shape
    (1.5, dtype('float32'), (2, 3))
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from edgeflow.errors import FrameTooLarge, ProtocolError
from edgeflow.transport import codecs

__all__ = ["MAGIC", "VERSION", "ALIGN", "MAX_HEADER_BYTES", "MAX_BUFFERS", "Encoded", "is_message", "encode",
           "decode", "copy_message"]

MAGIC = b"EFMS"
VERSION = 1
ALIGN = 64                                   #: every buffer starts at a multiple of this (a cache line)
PREFIX = struct.Struct("<4sBBHIIQ")          # magic, version, flags, reserved, header_len, count, data_len
PREFIX_BYTES = PREFIX.size                   # 24
MAX_HEADER_BYTES = 16 * 1024 * 1024          #: largest JSON header accepted (either way)
MAX_BUFFERS = 1 << 16                        #: most arrays/bytes/scalars in one message
MAX_NDIM = 32
KEY = "__ef_buf__"
_KEY_JSON = '"__ef_buf__"'
_KEY_BYTES = KEY.encode()
_PAD = bytes(ALIGN)


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def is_message(data: Any) -> bool:
    """True for the payloads this module carries: a dict or a list."""
    return isinstance(data, (dict, list))


class Encoded:
    """A message ready to be written: its prefix and JSON header, and the buffers it refers to (not copied yet).

    ``nbytes`` is the size of the encoding; ``write_into(buf)`` writes it into a writable buffer of at least
    that size (one copy of each array: how shared memory fills a slot), ``to_bytes()`` returns it as bytes (one
    copy of each contiguous array: what Redis and TCP send). The arrays must not change before either is done.
    """

    __slots__ = ("head", "buffers", "data_len", "nbytes")

    def __init__(self, head: bytes, buffers: list, data_len: int) -> None:
        self.head = head                          # prefix + header + padding: the data area starts after it
        self.buffers = buffers                    # [(offset in the data area, array or bytes-like)]
        self.data_len = data_len
        self.nbytes = len(head) + data_len

    def write_into(self, buf: Any) -> None:
        """Write the encoding at the start of ``buf`` (writable, at least ``nbytes``; padding is zeroed)."""
        out = np.frombuffer(buf, np.uint8, count=self.nbytes)
        base = len(self.head)
        out[:base] = np.frombuffer(self.head, np.uint8)
        pos = base
        for offset, item in self.buffers:
            start = base + offset
            if start > pos:
                out[pos:start] = 0
            if isinstance(item, np.ndarray):
                n = item.nbytes
                if n:
                    if item.flags.c_contiguous:
                        out[start:start + n] = item.reshape(-1).view(np.uint8)
                    else:                          # strided: copied once, element by element, into place
                        np.copyto(np.frombuffer(buf, item.dtype, count=item.size, offset=start)
                                  .reshape(item.shape), item)
            else:
                n = len(item)
                out[start:start + n] = np.frombuffer(item, np.uint8)
            pos = start + n

    def to_bytes(self) -> bytes:
        """The encoding as one bytes object."""
        parts = [self.head]
        pos = 0
        for offset, item in self.buffers:
            if offset > pos:
                parts.append(_PAD[:offset - pos])
            if isinstance(item, np.ndarray):
                n = item.nbytes
                if n:
                    if not item.flags.c_contiguous:
                        item = np.ascontiguousarray(item)
                    parts.append(item.reshape(-1).view(np.uint8))
            else:
                n = len(item)
                parts.append(item)
            pos = offset + n
        return b"".join(parts)


def encode(message: Any, where: str = "message") -> Encoded:
    """Plan the encoding of a dict or list message (nothing is copied until ``write_into``/``to_bytes``).

    Args:
        message: a dict or list of JSON-able values, numpy arrays (any fixed-size dtype, any shape), numpy
            scalars and bytes, nested to any depth Python's json handles.
        where: names the topic or node in error messages.

    Raises:
        TypeError: not a dict or list, a value that is neither JSON-able nor an array/scalar/bytes, an array
            of Python objects, a circular or too deeply nested structure, or the reserved name ``__ef_buf__``.
        FrameTooLarge: a header over MAX_HEADER_BYTES or more than MAX_BUFFERS buffers.
    """
    if not isinstance(message, (dict, list)):
        raise TypeError(f"{where}: a message is a dict or a list, not {type(message).__name__}")
    buffers: list = []
    size = [0]

    def placeholder(value: Any) -> dict:
        if isinstance(value, np.ndarray):
            kind, array = "a", value
        elif isinstance(value, np.generic):
            kind, array = "s", np.asarray(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            view = memoryview(value)
            if not (view.c_contiguous and view.format in ("B", "b", "c")):
                view = memoryview(view.tobytes())
            buffers_append(view, "b", "|u1", [view.nbytes], view.nbytes)
            return {KEY: buffers[-1][2]}
        else:
            raise TypeError(f"{where}: a message cannot hold {type(value).__name__} values (only JSON-able "
                            "values, numpy arrays, numpy scalars and bytes)")
        if array.dtype.hasobject:
            raise TypeError(f"{where}: a message cannot hold arrays of Python objects (dtype {array.dtype}); "
                            "use a numeric, string or structured dtype")
        if array.ndim > MAX_NDIM:
            raise TypeError(f"{where}: an array of {array.ndim} dimensions in a message (limit {MAX_NDIM})")
        if array.dtype.itemsize == 0:
            raise TypeError(f"{where}: a message cannot hold arrays of a zero-size dtype ({array.dtype}): "
                            "receivers refuse them")
        buffers_append(array, kind, codecs.dtype_code(array.dtype), list(array.shape), array.nbytes)
        return {KEY: buffers[-1][2]}

    def buffers_append(item: Any, kind: str, dtype: str, shape: list, nbytes: int) -> None:
        if len(buffers) >= MAX_BUFFERS:
            raise FrameTooLarge(f"{where}: more than {MAX_BUFFERS} arrays, scalars or bytes in one message")
        offset = _align(size[0])
        size[0] = offset + nbytes
        buffers.append((offset, item, [kind, dtype, shape, offset, nbytes]))

    try:
        text = codecs.compact_json(message, default=placeholder)
    except RecursionError:
        raise TypeError(f"{where}: a message nested too deeply to encode") from None
    except ValueError as exc:                      # circular reference, or an int too long to write
        raise TypeError(f"{where}: a message that cannot be written as JSON ({exc})") from None
    if text.count(_KEY_JSON) != len(buffers):
        raise TypeError(f"{where}: '{KEY}' is reserved in messages (as a key or a string value)")
    header = text.encode()
    if len(header) > MAX_HEADER_BYTES:
        raise FrameTooLarge(f"{where}: a message header of {len(header)} bytes as JSON (limit "
                            f"{MAX_HEADER_BYTES}); put bulk numbers in numpy arrays")
    head_len = PREFIX_BYTES + len(header)
    head = b"".join((PREFIX.pack(MAGIC, VERSION, 0, 0, len(header), len(buffers), size[0]), header,
                     _PAD[:_align(head_len) - head_len]))
    return Encoded(head, [(offset, item) for offset, item, _ in buffers], size[0])


def decode(payload: Any, where: str = "message") -> Any:
    """The dict or list ``encode`` was given, from its encoding (bytes-like; a shared-memory slot view).

    Arrays are read-only views of ``payload`` (no copy; they keep it alive), numpy scalars and bytes are copies,
    everything else the JSON values. ``where`` names the topic in error messages.

    Raises:
        ProtocolError: a payload that is not a message of this version, or whose lengths, header,
            placeholders, dtypes, shapes or offsets do not check out.
    """
    view = payload if isinstance(payload, memoryview) else memoryview(payload)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = view.nbytes
    if total < PREFIX_BYTES:
        raise ProtocolError(f"{where}: a message of {total} bytes is shorter than its {PREFIX_BYTES}-byte "
                            "prefix (truncated?)")
    magic, version, flags, reserved, header_len, count, data_len = PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(f"{where}: not an EdgeFlow message (starts with {bytes(magic)!r})")
    if version != VERSION:
        raise ProtocolError(f"{where}: message encoding version {version}; this EdgeFlow reads version "
                            f"{VERSION}")
    if flags or reserved:
        raise ProtocolError(f"{where}: message flags {flags:#x}/{reserved:#x} are not understood")
    if header_len > MAX_HEADER_BYTES or count > MAX_BUFFERS:
        raise ProtocolError(f"{where}: message header of {header_len} bytes with {count} buffers (limits "
                            f"{MAX_HEADER_BYTES}, {MAX_BUFFERS})")
    start = _align(PREFIX_BYTES + header_len)
    if start + data_len != total:
        raise ProtocolError(f"{where}: message of {total} bytes, its prefix says {start + data_len} "
                            f"(header {header_len}, data {data_len}): truncated or corrupt")
    seen = [0]

    def hook(obj: dict) -> Any:
        if KEY not in obj:
            return obj
        if len(obj) != 1:
            raise ProtocolError(f"{where}: a placeholder with other keys")
        seen[0] += 1
        if seen[0] > count:
            raise ProtocolError(f"{where}: more placeholders than the {count} the prefix announces")
        return _buffer(view, start, data_len, obj[KEY], where)

    header = bytes(view[PREFIX_BYTES:PREFIX_BYTES + header_len])
    try:
        if count == 0 and _KEY_BYTES not in header:     # no placeholders: the C parser alone (no hook per dict)
            message = codecs.loads_json(header)
        else:
            message = json.loads(header, object_hook=hook)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"{where}: message header is not valid JSON ({str(exc)[:120]})") from None
    if seen[0] != count:
        raise ProtocolError(f"{where}: {seen[0]} placeholders, the prefix announces {count}")
    if not isinstance(message, (dict, list)):
        raise ProtocolError(f"{where}: a message is a JSON object or array, got {type(message).__name__}")
    return message


def _buffer(view: memoryview, start: int, data_len: int, entry: Any, where: str) -> Any:
    if not (isinstance(entry, list) and len(entry) == 5):
        raise ProtocolError(f"{where}: a placeholder must be [kind, dtype, shape, offset, nbytes]")
    kind, code, shape, offset, nbytes = entry
    if kind not in ("a", "s", "b"):
        raise ProtocolError(f"{where}: unknown buffer kind {str(kind)[:20]!r}")
    dtype = codecs.dtype_from_code(code)           # ProtocolError for anything that is not a dtype description
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError(f"{where}: bad array shape {str(shape)[:80]}")
    if type(offset) is not int or type(nbytes) is not int or offset < 0 or offset % ALIGN:
        raise ProtocolError(f"{where}: bad buffer offset {offset!r} (a non-negative multiple of {ALIGN})")
    if dtype.itemsize == 0:                        # any count of nothing: refused rather than bounded
        raise ProtocolError(f"{where}: a buffer of a zero-size dtype ({dtype})")
    count = math.prod(shape)
    if nbytes != count * dtype.itemsize or offset + nbytes > data_len:
        raise ProtocolError(f"{where}: a buffer of {nbytes} bytes at {offset} for {dtype}{shape}: does not "
                            f"match its shape or runs past the {data_len}-byte data area")
    pos = start + offset
    if kind == "b":
        if dtype != np.uint8 or len(shape) != 1:
            raise ProtocolError(f"{where}: a bytes buffer must be |u1 of one dimension")
        return bytes(view[pos:pos + nbytes])
    if kind == "s" and shape:
        raise ProtocolError(f"{where}: a scalar buffer must have shape []")
    if nbytes == 0:                                # an empty array (a 0 in its shape)
        array = np.empty(shape, dtype)
    else:
        array = np.ndarray(shape, dtype, view, offset=pos)      # one call: frombuffer + reshape is 4x the time
    if kind == "s":
        return array.copy()[()]
    array.flags.writeable = False
    return array


def copy_message(message: Any) -> Any:
    """A deep copy of a decoded message: arrays become writable copies that pin nothing."""
    if isinstance(message, dict):
        return {k: copy_message(v) for k, v in message.items()}
    if isinstance(message, (list, tuple)):
        return type(message)(copy_message(v) for v in message)
    if isinstance(message, np.ndarray):
        return message.copy()
    return message
