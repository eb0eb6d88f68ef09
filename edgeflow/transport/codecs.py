"""A frame's payload as bytes plus a small JSON-able header, and back: raw, jpeg, png or lz4.

Transport-neutral (Redis and TCP both use it): ``encode`` turns an ndarray, bytes or a message (a dict or
list of JSON-able values and numpy arrays, encoded by edgeflow.transport.message) into ``(header, payload)``,
and ``decode(header, payload)`` gives the data back. Arrays travel raw by default:
dtype and shape in the header, the array's own memory as the payload (no copy for a C-contiguous array). A
codec is used only when a link asks for one:

- ``jpeg`` / ``png``: uint8 images (H x W, H x W x 1, H x W x 3; png also H x W x 4), through OpenCV. jpeg is
  lossy. Arrays of any other dtype or shape raise ``ValueError`` rather than being sent some other way.
- ``lz4``: any payload, lossless; needs the ``lz4`` package (``ConfigError`` telling to install it otherwise).

Bytes and messages are never image-encoded (``jpeg``/``png`` leave them raw); ``lz4`` compresses them too.
Payload headers of kind ``json`` (plain JSON dicts, what EdgeFlow 0.2 sent before messages) are still decoded.

Frame meta is compact JSON of at most MAX_META_BYTES (8 KiB) on every transport (``encode_meta``), so a meta
that crosses hosts fits shared memory too.

Decoding is bounded before it runs (docs/limits.md): an array's declared ``dtype`` x ``shape`` must be at most
``max_bytes`` (a zero-size dtype, or a shape whose product is absurd, is refused); lz4 output is capped at the
declared size (arrays) or ``max_bytes`` (bytes, messages) and never grows past it; a png/jpeg payload's
dimensions, channels and bit depth are read from its header (PNG IHDR, JPEG SOFn) and must match the declared
shape before OpenCV decodes anything. A payload over a limit raises ProtocolError with ``reason`` ``oversized``.

    >>> header, payload = encode(np.zeros((2, 3), np.uint16))
    >>> header
    {'kind': 'array', 'codec': 'raw', 'dtype': '<u2', 'shape': [2, 3], 'size': 12}
    >>> decode(header, bytes(payload)).shape
    (2, 3)
"""

from __future__ import annotations

import ast
import json
import math
import struct
from typing import Any

import numpy as np

from edgeflow.errors import ConfigError, FrameTooLarge, ProtocolError
from edgeflow.frame import Frame

__all__ = ["CODECS", "check_codec", "encode", "decode", "dtype_code", "dtype_from_code", "encode_meta",
           "compress", "array_nbytes", "png_header", "jpeg_header", "MAX_META_BYTES", "MAX_DECODED_BYTES"]

CODECS = ("raw", "jpeg", "png", "lz4")   #: codec names; None means raw
KIND_ARRAY, KIND_BYTES, KIND_JSON, KIND_MESSAGE = "array", "bytes", "json", "message"
MAX_META_BYTES = 8 * 1024                 #: JSON meta limit per frame, the same on every transport (shm's slot)
JPEG_QUALITY = 90                         #: default jpeg quality (0-100)
PNG_LEVEL = 1                             #: default png compression (0-9): fast, most of the gain
MAX_DTYPE_CODE = 4096                     #: longest dtype description accepted from a peer
MAX_DECODED_BYTES = 512 * 1024 * 1024     #: default decode limit: the largest payload a transport carries (Redis')
_MAX_NDIM = 32                            # numpy's own limit
_LZ4_CHUNK = 4 << 20                      # lz4 output is produced in pieces this large when no size is declared
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: (1,), 2: (3,), 3: (3, 4), 4: (4,), 6: (4,)}    # IHDR colour type -> what OpenCV yields
_JPEG_MAX_SEGMENTS = 1024                 # segments scanned for the SOF marker before giving up

_dtype_codes: dict[np.dtype, str] = {}
_dtypes: dict[str, np.dtype] = {}


def check_codec(codec: str | None) -> str:
    """The codec's canonical name (``"raw"`` for None); ConfigError for an unknown one, or lz4 without lz4."""
    if codec is None or codec == "raw":
        return "raw"
    if codec not in CODECS:
        raise ConfigError(f"codec {codec!r}: expected one of {', '.join(CODECS)} or None")
    if codec == "lz4":
        _lz4()
    elif codec in ("jpeg", "png"):
        _cv2()
    return codec


def _lz4() -> Any:
    try:
        import lz4.frame
    except ImportError as exc:
        raise ConfigError("codec 'lz4' needs the lz4 package: pip install lz4 (or pick codec None, 'jpeg' or "
                          "'png')") from exc
    return lz4.frame


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:             # a base dependency, so only a broken install ends up here
        raise ConfigError("codecs 'jpeg' and 'png' need OpenCV: pip install opencv-python") from exc
    return cv2


def dtype_code(dtype: np.dtype) -> str:
    """A string that describes ``dtype`` exactly (byte order, structured fields and padding included)."""
    code = _dtype_codes.get(dtype)
    if code is None:
        if dtype.fields is None and dtype.subdtype is None:
            code = dtype.str
        else:
            code = "D:" + repr(np.lib.format.dtype_to_descr(dtype))
        _dtype_codes[dtype] = code
    return code


def dtype_from_code(code: str) -> np.dtype:
    """The dtype ``dtype_code`` described; ProtocolError when ``code`` is not one."""
    dtype = _dtypes.get(code) if isinstance(code, str) else None
    if dtype is None:
        if not isinstance(code, str) or len(code) > MAX_DTYPE_CODE:
            raise ProtocolError(f"bad dtype description {str(code)[:80]!r}")
        try:
            if code.startswith("D:"):
                dtype = np.lib.format.descr_to_dtype(ast.literal_eval(code[2:]))
            else:
                dtype = np.dtype(code)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, KeyError, IndexError,
                AttributeError, OverflowError) as exc:
            raise ProtocolError(f"bad dtype description {code[:80]!r}: {exc}") from None
        if dtype.hasobject:
            raise ProtocolError(f"dtype {code[:80]!r} holds Python objects")
        if len(_dtypes) < 1024:
            _dtypes[code] = dtype
    return dtype


def encode(data: Any, codec: str | None = None, *, quality: int | None = None) -> tuple[dict, Any]:
    """``(header, payload)`` for a payload (or a Frame's ``data``).

    Args:
        data: an ndarray (any numeric, bool, string, datetime or structured dtype), bytes-like, a
            message (dict or list, see edgeflow.transport.message), or an ``edgeflow.frame.Frame`` (its data
            is encoded; frame_id, timestamp and meta are the transport's business).
        codec: None/"raw", "jpeg", "png" or "lz4".
        quality: jpeg quality (0-100, default JPEG_QUALITY) or png compression level (0-9, default PNG_LEVEL).

    Returns:
        ``header``: a JSON-able dict ``{"kind", "codec", "size"}`` plus ``"dtype"`` and ``"shape"`` for
        arrays, where ``size`` is ``len(payload)``. ``payload``: bytes-like (``bytes``, or a flat
        ``memoryview`` of the array's own memory when raw: valid while the array is, and not to be modified
        before it is sent).

    Raises:
        TypeError: a type that cannot be sent (object arrays, sets, ...), or a message holding one.
        ValueError: jpeg/png asked for an array that is not a uint8 image of a supported shape.
        ConfigError: an unknown codec, or lz4 without the lz4 package.
    """
    codec = check_codec(codec)
    if isinstance(data, Frame):
        data = data.data
    if isinstance(data, np.ndarray):
        return _encode_array(data, codec, quality)
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = data if isinstance(data, bytes) else _flat(memoryview(data))
        kind = KIND_BYTES
    elif isinstance(data, (dict, list)):
        from edgeflow.transport import message
        payload = message.encode(data).to_bytes()
        kind = KIND_MESSAGE
    else:
        raise TypeError(f"cannot send {type(data).__name__}: send a numpy array, bytes, or a dict/list message")
    codec, payload = compress(payload, codec)
    return {"kind": kind, "codec": codec, "size": len(payload)}, payload


def compress(payload: Any, codec: str) -> tuple[str, Any]:
    """``(codec, payload)`` for bytes or an encoded message: lz4-compressed when asked, raw otherwise (the
    image codecs leave them as they are)."""
    if codec == "lz4":
        return codec, _lz4().compress(payload)
    return "raw", payload


def _flat(view: memoryview) -> Any:
    if view.ndim == 1 and view.format in ("B", "b", "c"):
        return view
    return view.cast("B") if view.c_contiguous else view.tobytes()


def _encode_array(array: np.ndarray, codec: str, quality: int | None) -> tuple[dict, Any]:
    if array.dtype.hasobject:
        raise TypeError(f"arrays of Python objects (dtype {array.dtype}) cannot be sent; use a numeric "
                        "dtype, bytes, or a dict")
    if array.dtype.itemsize == 0:
        raise TypeError(f"arrays of a zero-size dtype ({array.dtype}) cannot be sent (receivers refuse them)")
    header = {"kind": KIND_ARRAY, "codec": codec, "dtype": dtype_code(array.dtype),
              "shape": list(array.shape)}
    if codec in ("jpeg", "png"):
        payload = _encode_image(array, codec, quality)
    else:
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)     # one copy, in C order, for strided or Fortran arrays
        payload = memoryview(array.reshape(-1).view(np.uint8)) if array.size else b""
        if codec == "lz4":
            payload = _lz4().compress(payload)
    header["size"] = len(payload)
    return header, payload


def _encode_image(array: np.ndarray, codec: str, quality: int | None) -> bytes:
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else 0)
    allowed = (1, 3) if codec == "jpeg" else (1, 3, 4)
    if array.dtype != np.uint8 or channels not in allowed or 0 in array.shape:
        shapes = "H x W, H x W x 1 or H x W x 3" + (" or H x W x 4" if codec == "png" else "")
        raise ValueError(f"codec {codec!r} encodes uint8 images ({shapes}); got {array.dtype} "
                         f"{list(array.shape)}: send it raw (codec None) or with 'lz4'")
    cv2 = _cv2()
    if codec == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY if quality is None else int(quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL if quality is None else int(quality)]
    ok, buf = cv2.imencode("." + codec[:4], array, params)
    if not ok:
        raise ValueError(f"OpenCV could not {codec}-encode a {list(array.shape)} image")
    return buf.tobytes()


def decode(header: dict, payload: bytes | bytearray | memoryview, *, max_bytes: int | None = None) -> Any:
    """The data ``encode`` was given (an ndarray, bytes, or a dict/list message), from its header and payload.

    Raw arrays view ``payload`` without copying (read-only when ``payload`` is bytes; a message's arrays are
    read-only views in any case). jpeg gives back an
    approximation of the image; every other codec the exact values.

    ``max_bytes`` (default MAX_DECODED_BYTES) bounds what decoding may produce: an array's declared size,
    lz4's output, an image's decoded size. Everything is checked before anything that large is allocated.

    Raises:
        ProtocolError: a malformed header, a payload whose size does not match it, data the codec cannot
            read, or a result over ``max_bytes`` (``reason`` ``oversized``).
        ConfigError: an lz4 payload and no lz4 package here.
    """
    if not isinstance(header, dict):
        raise ProtocolError(f"payload header must be a dict, got {type(header).__name__}")
    limit = MAX_DECODED_BYTES if max_bytes is None else max_bytes
    kind, codec, size = header.get("kind"), header.get("codec", "raw"), header.get("size")
    if codec not in CODECS:
        raise ProtocolError(f"unknown codec {codec!r} in a payload header")
    if size is not None and size != len(payload):
        raise ProtocolError(f"payload is {len(payload)} bytes, its header says {size}")
    if kind == KIND_ARRAY:
        return _decode_array(header, codec, payload, limit)
    if codec == "lz4":
        payload = _decompress(payload, limit)
    elif len(payload) > limit:
        raise oversized(f"a payload of {len(payload)} bytes; the limit is {limit}")
    if kind == KIND_BYTES:
        return payload if isinstance(payload, bytes) else bytes(payload)
    if kind == KIND_MESSAGE:
        from edgeflow.transport import message
        return message.decode(payload)
    if kind == KIND_JSON:
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"JSON payload does not parse: {exc}") from None
    raise ProtocolError(f"unknown payload kind {kind!r}")


def oversized(detail: str) -> ProtocolError:
    """A ProtocolError for a result over its limit (``reason`` ``oversized``, as the TCP server counts it)."""
    err = ProtocolError(detail)
    err.reason = "oversized"
    return err


def array_nbytes(dtype: np.dtype, shape: Any, limit: int) -> int:
    """The bytes a ``dtype`` x ``shape`` array needs; ProtocolError for a bad shape, a zero-size dtype, or more
    than ``limit`` bytes (``oversized``). Python ints: a product that would overflow int64 is just large."""
    if (not isinstance(shape, (list, tuple)) or len(shape) > _MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError(f"bad array shape {str(shape)[:80]} in a payload header")
    if dtype.itemsize == 0:
        raise ProtocolError(f"arrays of a zero-size dtype ({dtype}) are refused")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise oversized(f"{dtype}{list(shape)[:8]} is {nbytes} bytes; the limit is {limit}")
    return nbytes


def _decompress(payload: Any, limit: int) -> bytes:
    """lz4 frame -> bytes, never more than ``limit`` bytes of output (``oversized`` beyond)."""
    lz4f = _lz4()
    try:
        declared = lz4f.get_frame_info(payload)["content_size"]
        if declared:
            if declared > limit:
                raise oversized(f"lz4 payload declares {declared} bytes; the limit is {limit}")
            # the C library allocates the declared size and fails (frameSize_wrong) rather than grow past it
            return lz4f.decompress(payload)
        # no size in the frame header (not an EdgeFlow sender): produce the output piece by piece, capped
        dec = lz4f.LZ4FrameDecompressor()
        pieces, total, data = [], 0, payload
        while True:
            piece = dec.decompress(data, max_length=min(limit - total + 1, _LZ4_CHUNK))
            data = b""
            total += len(piece)
            if total > limit:
                raise oversized(f"lz4 payload expands past the limit of {limit} bytes")
            pieces.append(piece)
            if dec.eof:
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if dec.needs_input:
                raise ProtocolError("lz4 payload is truncated")
    except RuntimeError as exc:                # lz4.frame reports corrupt input as RuntimeError
        raise ProtocolError(f"lz4 payload does not decompress: {exc}") from None


def png_header(payload: Any) -> tuple[int, int, int, int]:
    """``(width, height, bit_depth, colour_type)`` from a PNG's IHDR chunk; ProtocolError if it is not one."""
    head = bytes(payload[:33])
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[8:16] != b"\0\0\0\x0dIHDR":
        raise ProtocolError("png payload has no PNG signature and IHDR chunk")
    width, height, depth, colour = struct.unpack_from(">IIBB", head, 16)
    return width, height, depth, colour


def jpeg_header(payload: Any) -> tuple[int, int, int, int]:
    """``(width, height, precision, components)`` from a JPEG's SOFn marker; ProtocolError if none is found
    among the first segments (bounded: at most _JPEG_MAX_SEGMENTS are skipped)."""
    view = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    n = len(view)
    if n < 4 or view[0] != 0xFF or view[1] != 0xD8:
        raise ProtocolError("jpeg payload does not start with a JPEG SOI marker")
    i = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        if i + 4 > n or view[i] != 0xFF:
            break
        marker = view[i + 1]
        if marker == 0xFF:                      # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:     # stand-alone markers: no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):              # end of image, start of scan: no frame header came
            break
        length = (view[i + 2] << 8) | view[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if length < 8 or i + 10 > n:
                break
            height = (view[i + 5] << 8) | view[i + 6]
            width = (view[i + 7] << 8) | view[i + 8]
            return width, height, view[i + 4], view[i + 9]
        if length < 2:
            break
        i += 2 + length
    raise ProtocolError("jpeg payload has no readable SOF marker")


def _check_image(codec: str, payload: Any, dtype: np.dtype, shape: tuple) -> None:
    """The image header must promise exactly the declared uint8 H x W (x C) image, before it is decoded."""
    if dtype != np.uint8 or len(shape) not in (2, 3):
        raise ProtocolError(f"{codec} payload declared as {dtype}{list(shape)}: images are uint8 H x W (x C)")
    channels = 1 if len(shape) == 2 else shape[2]
    if codec == "png":
        width, height, depth, colour = png_header(payload)
        ok = depth <= 8 and channels in _PNG_CHANNELS.get(colour, ())
        what = f"{width}x{height} colour type {colour}, {depth}-bit"
    else:
        width, height, precision, components = jpeg_header(payload)
        ok = precision == 8 and components == channels and channels in (1, 3)
        what = f"{width}x{height}, {components} components, {precision}-bit"
    if not ok or (height, width) != tuple(shape[:2]):
        raise ProtocolError(f"{codec} payload is {what}; the frame declares {list(shape)}")


def _decode_array(header: dict, codec: str, payload: Any, limit: int) -> np.ndarray:
    dtype = dtype_from_code(header.get("dtype"))
    shape = header.get("shape")
    expected = array_nbytes(dtype, shape, limit)
    shape = tuple(shape)
    if codec in ("jpeg", "png"):
        _check_image(codec, payload, dtype, shape)
        cv2 = _cv2()
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None or image.size != math.prod(shape) or image.dtype != np.uint8:
            raise ProtocolError(f"{codec} payload does not decode to a uint8 image of shape {list(shape)}")
        return image.reshape(shape)
    if codec == "lz4":
        payload = _decompress(payload, expected)
    if len(payload) != expected:
        raise ProtocolError(f"array payload is {len(payload)} bytes, {dtype} {list(shape)} needs {expected}")
    if expected == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)


def compact_json(obj: Any, default: Any = None, allow_nan: bool = True, check_circular: bool = True) -> str:
    """``json.dumps(obj, separators=(",", ":"), ...)`` without building a JSONEncoder per call: half the
    time of ``json.dumps`` for a frame's small meta, which every frame writes. Without ``check_circular`` a
    circular structure raises RecursionError."""
    if _C_ENCODER is None or isinstance(obj, str):           # no C accelerator (or a bare string): plainly
        return json.dumps(obj, separators=(",", ":"), default=default, allow_nan=allow_nan,
                          check_circular=check_circular)
    chunks = _C_ENCODER({} if check_circular else None, default or _no_default,
                        json.encoder.encode_basestring_ascii, None, ":", ",", False, False, allow_nan)(obj, 0)
    return "".join(chunks)


_SCAN = None
try:
    from json.scanner import c_make_scanner as _c_make_scanner
    _SCAN = _c_make_scanner(json.JSONDecoder()) if _c_make_scanner is not None else None
except ImportError:                                            # no C accelerator: json.loads
    pass


def loads_json(data: Any) -> Any:
    """``json.loads`` of UTF-8 bytes (a frame's meta, a message's header) without its per-call set-up: the C
    scanner straight on the text (2.5 -> 1.1 µs for a frame's meta). Anything it does not take whole (leading
    or trailing text, another encoding, an error) goes to ``json.loads``, which raises as usual."""
    if _SCAN is not None:
        try:
            text = data.decode("utf-8") if not isinstance(data, str) else data
            obj, end = _SCAN(text, 0)
        except (StopIteration, ValueError, AttributeError):
            return json.loads(data)
        if end == len(text):
            return obj
    return json.loads(data)


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")




def encode_meta(topic: str, meta: dict | None, limit: int = MAX_META_BYTES, where: str = "") -> bytes:
    """A frame's meta as compact JSON (b"" when empty), the same on every transport.

    Raises TypeError (naming the topic) for a meta that is not a JSON-able dict, and FrameTooLarge past
    ``limit`` bytes (MAX_META_BYTES, the one limit of every transport; ``where`` names the transport).
    """
    if not meta:
        return b""
    if not isinstance(meta, dict):
        raise TypeError(f"{topic}: meta must be a dict, not {type(meta).__name__}")
    try:
        blob = compact_json(meta, allow_nan=False, check_circular=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{topic}: meta must be a JSON-able dict ({exc})") from None
    except RecursionError:
        raise TypeError(f"{topic}: meta nested too deeply (or circular) to write as JSON") from None
    if len(blob) > limit:
        raise FrameTooLarge(f"{topic}: meta is {len(blob)} bytes as JSON, the limit{where} is {limit}")
    return blob
