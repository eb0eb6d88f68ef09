"""What the TCP sender and server share: limits, reasons, the token (split from edgeflow.transport.tcp, which documents the protocol)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hmac
import logging
import math
import os
import secrets
import select
import socket
import struct
import threading
import time
import warnings
from typing import Any, Callable

import numpy as np

from edgeflow.errors import ClosedResourceError, ConfigError, FrameTooLarge, ProtocolError, ReceiveTimeout
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import _wire, codecs
from edgeflow.transport.backoff import Backoff, RetrySchedule

log = logging.getLogger("edgeflow.transport.tcp")

DEFAULT_MAX_FRAME_BYTES = 64 << 20
MIN_RECV_RATE = 1 << 20            # bytes/s a peer must keep up within a message (else: slowloris)
REJECT_REASONS = ("bad_magic", "bad_version", "malformed", "oversized", "unauthenticated", "timeout",
                  "too_many_connections", "bad_codec", "idle")
# what a sender says for a REJECT reason (an unknown reason is shown as it is)
REJECT_TEXT = {"too_many_connections": "too many connections (the gateway is full)",
               "unauthenticated": "unauthenticated (wrong or missing token)",
               "oversized": "oversized (a frame over the gateway's limit)",
               "timeout": "timeout (the hello or a message came too slowly)",
               "idle": "idle (nothing sent for the gateway's idle timeout)"}
BUSY_BACKOFF = 0.5                 # seconds a sender waits at least after "too many connections"
_SCRATCH_BYTES = 128 * 1024        # per connection: prefixes, headers (<= 64 KiB), small payloads
_SPARE_BUFFERS = 2
_DIRECT_BYTES = 64 * 1024          # payloads this large are read straight into their buffer, no scratch copy
_REALTIME_ONLY = frozenset({QoS.REALTIME})


class _Interrupted(Exception):
    """The sender is being stopped: leave whatever wait this is."""


class _Stalled(OSError):
    """The gateway made no progress reading for ``stall_timeout`` seconds."""


def _token_bytes(token: str | bytes | None, what: str) -> bytes | None:
    if token is None:
        return None
    if isinstance(token, str):
        token = token.encode()
    if not isinstance(token, bytes) or not token:
        raise ConfigError(f"{what}: token must be a non-empty str or bytes")
    return token


# -- sender -------------------------------------------------------------------------------------------------
