"""What every benchmark frame carries, and the frame sizes it comes in.

Payload layout, every case: ``<d Q Q>`` stamp, index, kind at offset 0 and the index again in the last 8
bytes, so a torn or truncated frame shows up as a mismatch (the consumer compares both ends). ``kind`` tells
the consumer which phase a frame belongs to: LAT (a paced latency frame, acknowledged), BURST and BURST_LAST
(the throughput burst), REPORT (send the samples so far) and STOP (report the checks and exit).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from edgeflow.errors import ConfigError

SIZES = ("64", "640x480x3", "1920x1080x3")

_HEAD = struct.Struct("<dQQ")        # stamp (time.time()), index, kind
_TAIL = struct.Struct("<Q")          # index again, in the last 8 bytes
MIN_BYTES = _HEAD.size + _TAIL.size
LAT, BURST, BURST_LAST, REPORT, STOP = range(5)
BODY_INDEX = 2**64 - 1                # index of a baseline's constant burst body frame


def parse_size(label: str) -> tuple[int, ...]:
    """Array shape for a size label: ``"64"`` is 64 bytes, ``"640x480x3"`` is width x height x channels.

    Raises:
        ConfigError: the label is malformed or smaller than the payload markers (32 bytes).
    """
    try:
        dims = [int(part) for part in label.lower().split("x")]
    except ValueError:
        raise ConfigError(f"frame size {label!r}: expected BYTES or WIDTHxHEIGHT[xCHANNELS]") from None
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ConfigError(f"frame size {label!r}: expected BYTES or WIDTHxHEIGHT[xCHANNELS]")
    shape = tuple(dims) if len(dims) == 1 else (dims[1], dims[0], *dims[2:])
    if int(np.prod(shape)) < MIN_BYTES:
        raise ConfigError(f"frame size {label!r}: at least {MIN_BYTES} bytes (stamp and index markers)")
    return shape


def write_markers(buf: Any, stamp: float, idx: int, kind: int) -> None:
    """Stamp, index and kind at the start of ``buf``, the index again in its last 8 bytes."""
    _HEAD.pack_into(buf, 0, stamp, idx, kind)
    _TAIL.pack_into(buf, buf.nbytes - _TAIL.size, idx)


def make_frame(shape: tuple[int, ...], idx: int = 0, kind: int = LAT) -> np.ndarray:
    """A pre-faulted uint8 frame of ``shape`` with a non-zero pattern and the markers of frame ``idx``."""
    arr = (np.arange(int(np.prod(shape)), dtype=np.uint32) % 251).astype(np.uint8).reshape(shape)
    write_markers(arr, 0.0, idx, kind)
    return arr


def read_markers(data: Any, nbytes: int) -> tuple[float, int, int, int]:
    """(stamp, index, kind, tail index) of a frame of ``nbytes`` bytes: ``write_markers`` read back."""
    stamp, idx, kind = _HEAD.unpack_from(data, 0)
    (tail,) = _TAIL.unpack_from(data, nbytes - _TAIL.size)
    return stamp, idx, kind, tail


