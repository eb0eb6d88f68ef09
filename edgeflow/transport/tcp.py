"""Direct TCP transport into the gateway: a reconnecting TcpSender and a TcpServer with per-topic subscribers.

Wire: length-prefixed messages (see ``_wire`` for the byte layout): a 16-byte prefix (magic ``EFTP``, version,
kind, header length, payload length), a header, then the payload raw (or as a codec's output when asked).

Handshake and authentication: the server speaks first, with SERVER_HELLO (32 random bytes of nonce, whether a
token is required, its max frame size). The sender answers CLIENT_HELLO (its random 64-bit session id, its
app, and ``HMAC-SHA256(token, "edgeflow-tcp-auth/1\\0" + nonce + session + app)`` when it has a token). The
server compares the MAC with ``hmac.compare_digest`` (constant time) and answers ACCEPT, or REJECT and closes.
The token never crosses the wire and a recorded hello cannot be replayed (fresh nonce per connection). Frames
are not encrypted: across untrusted networks run the link inside a VPN or TLS tunnel.

Sender (REALTIME only): ``publish`` copies the frame into one of a few reused buffers and hands it to the
sender thread as *the* pending frame; a newer publish replaces an unsent one (counted as dropped). So a slow
or absent gateway never blocks the producer and memory stays bounded (at most: the frame on the wire, the
pending one, and two spare buffers). The thread connects on the first publish, reconnects with exponential
back-off and jitter, and gives up a connection whose gateway stops reading for ``stall_timeout`` seconds.

Server: one asyncio (uvloop) loop, in its own thread (``start()``) or in the caller's (``await serve()``).
Each connection reads straight into the frame's buffer (no copy for large payloads). A connection that sends a
malformed, oversized, unauthenticated or too slow message gets a REJECT naming the reason and is closed; the
reason is counted; every other connection carries on.

Example:
    >>> server = TcpServer(port=0); server.start()
    >>> sub = server.subscriber("camera")
    >>> with TcpSender("camera", "127.0.0.1", server.port, app="demo") as sender:
    ...     fid = sender.publish(np.zeros((480, 640, 3), np.uint8))
    ...     frame = sub.recv(timeout=1.0)
    >>> server.close()
"""

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

__all__ = ["TcpSender", "TcpLoan", "TcpServer", "TcpSubscriber", "TcpSenderStats", "TcpServerStats",
           "TcpSubscriberStats", "DEFAULT_MAX_FRAME_BYTES", "REJECT_REASONS"]

log = logging.getLogger("edgeflow.transport.tcp")

DEFAULT_MAX_FRAME_BYTES = 64 << 20
MIN_RECV_RATE = 1 << 20            # bytes/s a peer must keep up within a message (else: slowloris)
REJECT_REASONS = ("bad_magic", "bad_version", "malformed", "oversized", "unauthenticated", "timeout",
                  "too_many_connections", "bad_codec")
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

@dataclasses.dataclass(frozen=True)
class TcpSenderStats:
    """Snapshot of a TcpSender.

    ``published = sent + dropped + too_large + encode_errors + (the frame pending or on the wire)``.
    ``dropped`` counts frames superseded by a newer one before they were sent (gateway slow or away) and
    frames cut off mid-send when a connection broke; ``too_large`` frames over the gateway's limit;
    ``encode_errors`` frames the codec refused. ``reconnects`` counts connections after the first;
    ``connect_failures`` failed attempts (refused, timed out, or rejected: ``last_error`` says which).
    """
    topic: str
    published: int
    sent: int
    dropped: int
    too_large: int
    encode_errors: int
    bytes_sent: int
    connects: int
    reconnects: int
    connect_failures: int
    connected: bool
    last_error: str | None


@dataclasses.dataclass
class _Outgoing:
    frame_id: int
    timestamp: float
    kind: int
    dtype: np.dtype | None
    shape: tuple
    meta: bytes
    payload: Any                      # a uint8 ndarray (pooled) or bytes
    pooled: bool


class _SenderCore:
    """The state and thread behind a TcpSender (kept apart so a forgotten TcpSender can be collected)."""

    def __init__(self, topic: str, host: str, port: int, app: str, token: bytes | None, codec: str,
                 connect_timeout: float, stall_timeout: float, backoff: Backoff) -> None:
        self.topic, self.host, self.port, self.app = topic, host, port, app
        self.where = f"{topic} -> {host}:{port}"
        self.token, self.codec = token, codec
        self.connect_timeout, self.stall_timeout = connect_timeout, stall_timeout
        self.retry = RetrySchedule(backoff)
        self.session = secrets.randbits(64)
        self.cond = threading.Condition()
        self.pending: _Outgoing | None = None
        self.inflight: _Outgoing | None = None
        self.spare: list[np.ndarray] = []
        self.idle = False
        self.closing = False
        self.stop_now = False
        self.next_id = 0
        self.server_max: int | None = None
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.counts = dict(published=0, sent=0, dropped=0, too_large=0, encode_errors=0, bytes_sent=0,
                           connects=0, connect_failures=0)
        self.last_error: str | None = None
        self.thread_done = False
        self.orphaned = False             # TcpSender collected unclosed: the thread closes the wake pair
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    # producer side (any thread) ------------------------------------------------------------------------
    def buffer(self, nbytes: int) -> tuple[np.ndarray, bool]:
        with self.cond:
            while self.spare:
                buf = self.spare.pop()
                if buf.nbytes == nbytes:
                    return buf, True
        # a reused buffer is already faulted in; a fresh one costs ~1,500 page faults at 1080p (RING-NOTES)
        return np.empty(nbytes, np.uint8), True

    def recycle(self, item: _Outgoing) -> None:
        """Give an item's buffer back (caller holds cond)."""
        if item.pooled and len(self.spare) < _SPARE_BUFFERS:
            self.spare.append(item.payload)

    def hand_over(self, item: _Outgoing) -> int:
        with self.cond:
            if self.closing:
                raise ClosedResourceError(f"{self.topic}: sender is closed")
            self.next_id += 1
            item.frame_id = self.next_id
            if self.pending is not None:
                self.counts["dropped"] += 1
                self.recycle(self.pending)
            self.pending = item
            self.counts["published"] += 1
            wake = self.idle
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name=f"edgeflow-tcp-sender-{self.topic}",
                                               daemon=True)
                self.thread.start()
        if wake:
            self.wake()
        return item.frame_id

    def wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass                          # already woken (buffer full) or closing

    def stop(self, timeout: float) -> None:
        """Send what is pending for up to ``timeout`` seconds, then stop the thread and close the sockets."""
        with self.cond:
            self.closing = True
            thread = self.thread
            if thread is not None and timeout > 0:
                self.cond.wait_for(lambda: (self.pending is None and self.inflight is None)
                                   or not thread.is_alive(), timeout)
            self.stop_now = True
            self.interrupt()
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self.cond:
            if self.pending is not None:
                self.counts["dropped"] += 1
                self.pending = None
            self.spare.clear()
        self.wake_r.close()
        self.wake_w.close()

    def stop_nowait(self) -> None:
        """From __del__: tell the thread to stop; it closes its sockets on the way out. Never blocks."""
        with self.cond:
            self.closing = self.stop_now = self.orphaned = True
            done = self.thread is None or self.thread_done
            self.interrupt()
        self.wake()
        if done:
            self.wake_r.close()
            self.wake_w.close()

    def interrupt(self) -> None:
        """Wake a sendmsg blocked on a full socket (caller holds cond, so the thread cannot close it now)."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass                      # not connected any more: nothing to wake

    def statistics(self) -> TcpSenderStats:
        with self.cond:
            c = self.counts
            return TcpSenderStats(self.topic, c["published"], c["sent"], c["dropped"], c["too_large"],
                                  c["encode_errors"], c["bytes_sent"], c["connects"],
                                  max(0, c["connects"] - 1), c["connect_failures"], self.sock is not None,
                                  self.last_error)

    # the sender thread ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.serve_forever()
        except _Interrupted:
            pass
        except Exception as exc:          # a bug: say so once, loudly, and stop sending
            log.exception("%s: sender thread failed", self.where)
            with self.cond:
                self.last_error = f"sender thread failed: {exc!r}"
        finally:
            self.disconnect(None)
            with self.cond:
                if self.inflight is not None:     # interrupted mid-send by close()
                    self.counts["dropped"] += 1
                    self.inflight = None
                self.thread_done = True
                orphaned = self.orphaned
                self.cond.notify_all()
            if orphaned:
                self.wake_r.close()
                self.wake_w.close()

    def serve_forever(self) -> None:
        while not self.stop_now:
            if self.sock is None:
                with self.cond:
                    has_work = self.pending is not None
                    if self.closing and not has_work:
                        return
                if not has_work:
                    self.wait_idle(None)
                elif not self.connect():
                    self.sleep(self.retry.failed(time.monotonic()) - time.monotonic())
                continue
            if self.peer_spoke():                 # EOF or a REJECT while idle: reconnect before sending
                continue
            with self.cond:
                item, self.pending = self.pending, None
                self.inflight = item
                if item is None and self.closing:
                    return
                if item is not None:
                    self.cond.notify_all()        # wait_ready(): the next publish supersedes nothing now
            if item is None:
                self.wait_idle(self.sock)
            else:
                self.send(item)

    def wait_idle(self, sock: socket.socket | None) -> None:
        with self.cond:
            if self.pending is not None or self.stop_now or self.closing:
                return
            self.idle = True
            self.cond.notify_all()                # flush() waiters: nothing pending, nothing in flight
        try:
            self.wait_fd(sock, select.POLLIN, None, wake_returns=True)
        finally:
            with self.cond:
                self.idle = False

    def wait_fd(self, sock: socket.socket | None, events: int, timeout: float | None, *,
                wake_returns: bool = False) -> bool:
        """Wait until ``sock`` is ready for ``events``; False after ``timeout``. A stop raises _Interrupted;
        any other wake-up returns (``wake_returns``) or resumes the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        if sock is not None:
            poller.register(sock, events)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = poller.poll(None if remaining is None else remaining * 1000)
            if self.stop_now:
                raise _Interrupted
            woken = False
            for fd, _ in ready:
                if fd == self.wake_r.fileno():
                    self.drain_wake()
                    woken = True
                else:
                    return True
            if woken and wake_returns:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.wait_fd(None, 0, seconds)

    def connect(self) -> bool:
        """One attempt: TCP connect, hello, authentication. True when the gateway accepted us."""
        sock = None
        try:
            sock = self.open_socket()
            deadline = time.monotonic() + self.connect_timeout
            kind, header = self.recv_message(sock, deadline)
            if kind != _wire.HELLO_S:
                raise _wire.protocol_error("malformed", f"expected the server hello, got message kind {kind}")
            nonce, _auth_required, max_frame_bytes = _wire.parse_server_hello(header)
            mac = _wire.auth_mac(self.token, nonce, self.session, self.app) if self.token else b""
            self.send_all(sock, [_wire.client_hello(self.session, self.app, mac)])
            kind, header = self.recv_message(sock, deadline)
            if kind == _wire.REJECT:
                raise ConnectionRefusedError(f"gateway rejected us: {bytes(header).decode(errors='replace')}")
            if kind != _wire.ACCEPT:
                raise _wire.protocol_error("malformed", f"expected accept, got message kind {kind}")
        except (OSError, ProtocolError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            with self.cond:
                self.counts["connect_failures"] += 1
                first = self.retry.failures == 0
                self.last_error = str(exc) or type(exc).__name__
            (log.warning if first else log.debug)("%s: cannot connect (%s); retrying with back-off",
                                                  self.where, self.last_error)
            return False
        sock.setblocking(True)            # frames: one blocking sendmsg each, bounded by SO_SNDTIMEO
        seconds = max(self.stall_timeout, 0.001)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(seconds), int(seconds % 1 * 1e6)))
        with self.cond:
            self.sock, self.server_max = sock, max_frame_bytes
            self.counts["connects"] += 1
            self.last_error = None
            self.cond.notify_all()
        self.retry.succeeded()
        log.info("%s: connected (session %016x)", self.where, self.session)
        return True

    def open_socket(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        last: OSError | None = None
        addresses = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        for family, type_, proto, _, addr in addresses:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = sock.connect_ex(addr)
                if err == errno.EINPROGRESS:
                    if not self.wait_fd(sock, select.POLLOUT, max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"connect timed out after {self.connect_timeout:g} s")
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                return sock
            except OSError as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        raise last if last is not None else OSError(f"{self.host}: no address")

    def recv_exact(self, sock: socket.socket, n: int, deadline: float) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                k = sock.recv_into(view[got:])
            except BlockingIOError:
                if not self.wait_fd(sock, select.POLLIN, max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no answer from the gateway within {self.connect_timeout:g} s") \
                        from None
                continue
            if k == 0:
                raise ConnectionResetError("the gateway closed the connection")
            got += k
        return buf

    def recv_message(self, sock: socket.socket, deadline: float) -> tuple[int, bytearray]:
        prefix = self.recv_exact(sock, _wire.PREFIX_BYTES, deadline)
        kind, header_len, payload_len = _wire.unpack_prefix(prefix)
        if payload_len:
            raise _wire.protocol_error("malformed", f"control message with a {payload_len}-byte payload")
        return kind, self.recv_exact(sock, header_len, deadline)

    def send_all(self, sock: socket.socket, buffers: list) -> None:
        """Write everything. During the handshake the socket is non-blocking (a stop interrupts the wait);
        once accepted it blocks with SO_SNDTIMEO = stall_timeout, so a frame is one ``sendmsg`` with the GIL
        released throughout, and ``stop`` interrupts it with ``shutdown``."""
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        blocking = sock.getblocking()
        while views:
            try:
                sent = sock.sendmsg(views)
            except BlockingIOError:
                if blocking:              # SO_SNDTIMEO ran out with not one byte taken
                    raise _Stalled(f"the gateway read nothing for {self.stall_timeout:g} s") from None
                sent = 0
            while sent:
                if sent >= len(views[0]):
                    sent -= len(views.pop(0))
                else:
                    views[0], sent = views[0][sent:], 0
            if views and not blocking and not self.wait_fd(sock, select.POLLOUT, self.stall_timeout):
                raise _Stalled(f"the gateway read nothing for {self.stall_timeout:g} s")

    def peer_spoke(self) -> bool:
        """The gateway never sends after ACCEPT unless it is closing: readable means EOF or a REJECT."""
        sock = self.sock
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.disconnect(f"connection lost ({exc})")
            return True
        reason = "the gateway closed the connection"
        if len(data) > _wire.PREFIX_BYTES and data[:4] == _wire.MAGIC and data[5] == _wire.REJECT:
            reason = f"gateway rejected us: {data[_wire.PREFIX_BYTES:].decode(errors='replace')}"
        self.disconnect(reason)
        return True

    def send(self, item: _Outgoing) -> None:
        try:
            header, payload = self.encode(item)
        except (ValueError, TypeError, ConfigError) as exc:     # e.g. jpeg asked for a float array
            self.discard(item, "encode_errors", f"frame {item.frame_id} cannot be sent with codec "
                                                f"{self.codec!r}: {exc}")
            return
        try:
            if self.server_max is not None and len(payload) > self.server_max:
                self.discard(item, "too_large", f"frame {item.frame_id} is {len(payload)} bytes; the gateway "
                                                f"accepts at most {self.server_max}")
                return
            self.send_all(self.sock, [_wire.message(_wire.FRAME, header, len(payload)), payload])
        except OSError as exc:            # broken or stalled: retry this frame unless a newer one is waiting
            if self.stop_now:
                raise _Interrupted from None  # stop() shut the socket down under us
            with self.cond:
                if self.pending is None and not self.closing:
                    self.pending = item
                else:
                    self.counts["dropped"] += 1
                    self.recycle(item)
                self.inflight = None
            self.disconnect(f"connection lost ({exc})")
            return
        with self.cond:
            self.counts["sent"] += 1
            self.counts["bytes_sent"] += len(payload)
            self.recycle(item)
            self.inflight = None
            self.cond.notify_all()

    def encode(self, item: _Outgoing) -> tuple[bytes, Any]:
        """The FRAME header and payload; codecs.encode makes the payload (raw: a view of the buffer)."""
        if item.kind == _wire.KIND_ARRAY:
            data = np.ndarray(item.shape, item.dtype, buffer=item.payload) if item.dtype.itemsize else \
                np.empty(item.shape, item.dtype)
        else:
            data = item.payload
        info, payload = codecs.encode(data, self.codec)
        codec = info["codec"]
        header = _wire.frame_header(item.frame_id, item.timestamp, item.kind, tuple(info.get("shape", ())),
                                    self.topic.encode(), b"" if codec == "raw" else codec.encode(),
                                    info.get("dtype", "").encode(), item.meta)
        return header, payload

    def discard(self, item: _Outgoing, counter: str, why: str) -> None:
        """Drop a frame that can never be sent (the connection stays up); count and say why."""
        with self.cond:
            n = self.counts[counter] = self.counts[counter] + 1
            self.last_error = why
            self.recycle(item)
            self.inflight = None
            self.cond.notify_all()
        if n & (n - 1) == 0:              # 1, 2, 4, 8 ...: loud but bounded
            log.warning("%s: %s; dropped (%d so far)", self.where, why, n)

    def disconnect(self, reason: str | None) -> None:
        with self.cond:
            sock, self.sock = self.sock, None
            if reason is not None:
                self.last_error = reason
            self.cond.notify_all()
        if sock is not None:
            sock.close()
            if reason is not None:
                log.warning("%s: %s; reconnecting", self.where, reason)


class TcpLoan:
    """A writable array in one of the sender's buffers: fill it in place, then ``commit()`` (or ``abort()``).

    The zero-copy way to publish: ``publish`` copies the frame (the caller may reuse its array at once), a
    loan does not. As a context manager (``with sender.loan(shape, dtype) as buf:``) it commits when the block
    ends without an exception and aborts otherwise. The buffer is handed out as it is, not cleared (a reused
    buffer holds an older frame). After commit the array is read-only, and arrays derived from it before must
    not be written any more: the buffer is the sender's until the frame is sent, then reused.
    """

    def __init__(self, sender: "TcpSender", shape: Any, dtype: Any, timestamp: float | None,
                 meta: dict | None) -> None:
        self.timestamp = time.time() if timestamp is None else float(timestamp)   # capture starts now
        self._sender = sender
        self.dtype = np.dtype(dtype)
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if self.dtype.hasobject or len(self.shape) > _wire.MAX_NDIM or min(self.shape, default=0) < 0:
            raise ValueError(f"{sender.topic}: cannot loan {self.dtype}{list(self.shape)} (object dtype, "
                             f"more than {_wire.MAX_NDIM} dimensions or a negative one)")
        self._meta = _wire.encode_meta(sender.topic, meta)
        nbytes = math.prod(self.shape) * self.dtype.itemsize
        core = sender._core_or_raise()
        sender._check_size(core, nbytes)
        self._buf, _ = core.buffer(nbytes)
        self.array = (np.ndarray(self.shape, self.dtype, buffer=self._buf) if self.dtype.itemsize
                      else np.empty(self.shape, self.dtype))
        self.frame_id: int | None = None

    def commit(self, *, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Hand the filled buffer to the sender (never blocks); returns its frame_id."""
        if self.frame_id is not None or not self.array.flags.writeable:
            raise ClosedResourceError(f"{self._sender.topic}: this loan was committed or aborted already")
        if meta is not None:
            self._meta = _wire.encode_meta(self._sender.topic, meta)
        ts = self.timestamp if timestamp is None else float(timestamp)
        item = _Outgoing(0, ts, _wire.KIND_ARRAY, self.dtype, self.shape, self._meta, self._buf, True)
        self.frame_id = self._sender._core_or_raise().hand_over(item)
        self.array.flags.writeable = False
        return self.frame_id

    def abort(self) -> None:
        """Give the buffer back unpublished."""
        if self.frame_id is None and self.array.flags.writeable and not self._sender.is_closed():
            core = self._sender._core
            with core.cond:
                core.recycle(_Outgoing(0, 0.0, _wire.KIND_ARRAY, None, (), b"", self._buf, True))
        self.array.flags.writeable = False

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class TcpSender:
    """Publishes one topic's frames over TCP to a TcpServer (the gateway). REALTIME only.

    ``publish`` never waits for the network: the frame is copied and handed to a sender thread as the one
    pending frame, replacing (and counting as dropped) an older one that was not sent yet. The thread connects
    on the first publish, authenticates with ``token`` when given, and reconnects with back-off.

    Args:
        topic: the topic name (letters, digits, ``-``, ``_``, ``.``).
        host, port: the TcpServer to send to.
        app: the app namespace (default ``$EDGEFLOW_APP`` or ``"default"``); sent in the hello for the logs.
        token: the gateway's shared secret (str or bytes), or None when it has none.
        codec: None sends arrays raw; ``jpeg``, ``png`` or ``lz4`` encode them (edgeflow.transport.codecs) in
            the sender thread, and only the frames that are actually sent.
        connect_timeout: seconds for one connection attempt including the hello.
        stall_timeout: seconds without the gateway reading anything before the connection is dropped and
            made anew (the frame on the wire is resent unless a newer one is waiting).
        backoff: (first, longest) delay in seconds between failed attempts, doubled each failure with up to
            50 % jitter; or an edgeflow.transport.backoff.Backoff.

    Raises:
        ConfigError: a bad topic, app, port, token or codec.

    Example:
        >>> with TcpSender("camera", "gateway.lan", 8001, app="demo", token="s3cret") as sender:
        ...     fid = sender.publish(frame_array, meta={"exposure": 0.01})
    """

    SUPPORTED_QOS = _REALTIME_ONLY
    qos = QoS.REALTIME

    def __init__(self, topic: str, host: str, port: int, *, app: str | None = None,
                 token: str | bytes | None = None, codec: str | None = None, connect_timeout: float = 5.0,
                 stall_timeout: float = 10.0, backoff: Backoff | tuple[float, float] = (0.05, 5.0)) -> None:
        self._core: _SenderCore | None = None
        app = app if app is not None else os.environ.get("EDGEFLOW_APP", "default")
        if not isinstance(topic, str) or not _wire.TOPIC.fullmatch(topic):
            raise ConfigError(f"topic {topic!r}: use 1-100 letters, digits, '-', '_' or '.', "
                              "not starting with '.'")
        if not isinstance(app, str) or not _wire.APP.fullmatch(app):
            raise ConfigError(f"app name {app!r}: use 1-64 letters, digits, '-' or '_'")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{topic}: port {port!r} is not a port number (1-65535)")
        if not isinstance(backoff, Backoff):
            backoff = Backoff(initial=backoff[0], maximum=backoff[1], jitter=0.5)
        codec = codecs.check_codec(codec)
        self.topic, self.host, self.port, self.app, self.codec = topic, host, port, app, codec
        self._core = _SenderCore(topic, host, port, app, _token_bytes(token, topic), codec, connect_timeout,
                                 stall_timeout, backoff)
        self._closed = False

    def publish(self, data: Any, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Hand ``data`` (ndarray of any dtype/shape, bytes-like, or a Frame) to the sender; returns its id.

        Never blocks on the network. The array is copied (the caller may reuse it at once).

        Raises:
            ClosedResourceError: after close().
            TypeError: data or meta that cannot be sent (object arrays, non-JSON meta).
            FrameTooLarge: meta over MAX_META_BYTES, or a frame larger than the gateway's limit (once known).
        """
        core = self._core_or_raise()
        if isinstance(data, Frame):
            timestamp = data.timestamp if timestamp is None else timestamp
            meta = data.meta if meta is None else meta
            data = data.data
        ts = time.time() if timestamp is None else float(timestamp)
        if not math.isfinite(ts):
            raise ValueError(f"{self.topic}: timestamp {ts!r} is not a finite number of seconds")
        meta_b = _wire.encode_meta(self.topic, meta)
        if isinstance(data, np.ndarray):
            if data.dtype.hasobject:
                raise TypeError(f"{self.topic}: arrays of Python objects (dtype {data.dtype}) cannot be "
                                "sent; use a numeric dtype, bytes, or JSON in meta")
            if data.ndim > _wire.MAX_NDIM:
                raise ValueError(f"{self.topic}: {data.ndim} dimensions, the limit is {_wire.MAX_NDIM}")
            self._check_size(core, data.nbytes)
            buf, pooled = core.buffer(data.nbytes)
            if data.nbytes:
                np.copyto(np.ndarray(data.shape, data.dtype, buffer=buf), data)
            item = _Outgoing(0, ts, _wire.KIND_ARRAY, data.dtype, data.shape, meta_b, buf, pooled)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = data if type(data) is bytes else bytes(data)     # bytes are immutable: no copy needed
            self._check_size(core, len(payload))
            item = _Outgoing(0, ts, _wire.KIND_BYTES, None, (), meta_b, payload, False)
        else:
            raise TypeError(f"{self.topic}: cannot publish {type(data).__name__}; "
                            "publish a numpy array, bytes, or a Frame")
        return core.hand_over(item)

    def loan(self, shape: Any, dtype: Any = np.uint8, *, timestamp: float | None = None,
             meta: dict | None = None) -> TcpLoan:
        """A writable array of ``shape`` and ``dtype`` in one of the sender's buffers, for zero-copy
        producing: ``with sender.loan((1080, 1920, 3)) as buf: camera.read_into(buf)`` publishes when the
        block exits without an error. The timestamp defaults to the moment the loan was taken."""
        return TcpLoan(self, shape, dtype, timestamp, meta)

    def _check_size(self, core: _SenderCore, nbytes: int) -> None:
        limit = core.server_max
        if limit is not None and nbytes > limit and core.codec == "raw":
            raise FrameTooLarge(f"{self.topic}: frame of {nbytes} bytes; the gateway at "
                                f"{self.host}:{self.port} accepts at most {limit}")

    def _core_or_raise(self) -> _SenderCore:
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: sender is closed")
        return self._core

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the newest published frame left (nothing pending or on the wire); True if it did."""
        core = self._core_or_raise()
        with core.cond:
            return core.cond.wait_for(lambda: core.pending is None and core.inflight is None, timeout)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until no frame is pending (the sender took the last one), so the next publish drops nothing;
        True if so. For producers that can make frames on demand (a file replay, a renderer); a camera just
        publishes and lets REALTIME drop."""
        core = self._core_or_raise()
        with core.cond:
            return core.cond.wait_for(lambda: core.pending is None or core.stop_now, timeout)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the gateway accepted this sender (it connects on the first publish); True if it did."""
        core = self._core_or_raise()
        with core.cond:
            return core.cond.wait_for(lambda: core.sock is not None, timeout)

    def is_connected(self) -> bool:
        """True while a connection to the gateway is up and accepted."""
        return self._core_or_raise().sock is not None

    def statistics(self) -> TcpSenderStats:
        """A snapshot: published, sent, dropped, reconnects, connected, last error..."""
        return self._core_or_raise().statistics()

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    def close(self, timeout: float = 1.0) -> None:
        """Stop: first wait up to ``timeout`` seconds for the pending frame to be sent, then close the
        connection and the thread. Idempotent; ``terminate()`` is ``close(timeout=0)``."""
        if not self._closed:
            self._closed = True
            self._core.stop(timeout)

    def terminate(self) -> None:
        """Close at once, dropping a frame not sent yet."""
        self.close(timeout=0)

    def __enter__(self) -> "TcpSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._core is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._closed = True
            self._core.stop_nowait()

    def __repr__(self) -> str:
        return f"<TcpSender {self.topic} -> {self.host}:{self.port}{' closed' if self._closed else ''}>"


# -- server -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TcpSubscriberStats:
    """Snapshot of a TcpSubscriber: frames received, and frames replaced by a newer one unread (drops)."""
    topic: str
    received: int
    drops: int


class TcpSubscriber:
    """The frames a TcpServer receives for one topic, REALTIME: ``recv`` gives the newest frame not taken yet.

    Made by ``TcpServer.subscriber(topic)``; several may watch one topic (each gets every frame). Frame ids
    strictly increase per sender; a frame older than one already delivered for the topic is discarded.
    ``frame.data`` is a read-only array owned by the frame (nothing is pinned); ``frame.copy()`` makes it
    writable. Closed by ``close()`` or by closing its server.
    """

    SUPPORTED_QOS = _REALTIME_ONLY
    qos = QoS.REALTIME

    def __init__(self, core: "_ServerCore", topic: str) -> None:
        self.topic = topic
        self._core = core
        self._lock = threading.Lock()     # guards the fields below
        self._frame: Frame | None = None
        self._bells: list = []            # one locked lock per blocked recv; released to wake it
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._received = self._drops = 0
        self._closed = False

    def _put(self, frame: Frame) -> None:
        """From the server's loop: make ``frame`` the newest; wake whoever waits."""
        with self._lock:
            if self._closed:
                return
            if self._frame is not None:
                self._drops += 1
            self._frame = frame
            bells, self._bells = self._bells, []
            waiters, self._waiters = self._waiters, []
        self._wake(bells, waiters)

    @staticmethod
    def _wake(bells: list, waiters: list) -> None:
        # outside the lock (unlike Condition.notify): the woken thread does not block on it again at once,
        # which costs a context switch per frame when the loop and the consumer share few cores
        for bell in bells:
            bell.release()
        _wake_all(waiters)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: subscriber is closed")

    def _take(self) -> Frame | None:
        """The newest frame, or None (caller holds the lock)."""
        self._check_open()
        frame, self._frame = self._frame, None
        if frame is not None:
            self._received += 1
        return frame

    def recv_nowait(self) -> Frame | None:
        """The newest frame not received yet, or None. Never blocks."""
        with self._lock:
            return self._take()

    def recv(self, timeout: float | None = None) -> Frame:
        """Wait at most ``timeout`` seconds (None: forever) for a frame newer than the last one received.

        Raises:
            ReceiveTimeout: nothing arrived in time (a TimeoutError).
            ClosedResourceError: the subscriber or its server was closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                frame = self._take()
                if frame is not None:
                    return frame
                remaining = -1 if deadline is None else deadline - time.monotonic()
                if deadline is not None and remaining <= 0:
                    raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
                bell = threading.Lock()
                bell.acquire()
                self._bells.append(bell)
            if not bell.acquire(timeout=remaining):
                with self._lock:
                    if bell in self._bells:
                        self._bells.remove(bell)

    async def arecv(self, timeout: float | None = None) -> Frame:
        """``recv`` for asyncio (any loop, uvloop included): awaits a wake-up, never blocks the loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self.recv_nowait()
            if frame is not None:
                return frame
            fut = loop.create_future()
            with self._lock:
                if self._frame is not None or self._closed:
                    continue
                self._waiters.append((loop, fut))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s") from None
            finally:
                with self._lock:
                    if (loop, fut) in self._waiters:
                        self._waiters.remove((loop, fut))

    def statistics(self) -> TcpSubscriberStats:
        """A snapshot: frames received and drops."""
        with self._lock:
            self._check_open()
            return TcpSubscriberStats(self.topic, self._received, self._drops)

    def is_closed(self) -> bool:
        """True after close() (or after the server closed)."""
        return self._closed

    def close(self) -> None:
        """Stop receiving; a recv waiting in another thread raises ClosedResourceError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._frame = None
            bells, self._bells = self._bells, []
            waiters, self._waiters = self._waiters, []
        self._wake(bells, waiters)
        self._core.unsubscribe(self)

    def __enter__(self) -> "TcpSubscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TcpSubscriber {self.topic}{' closed' if self._closed else ''}>"


def _wake_all(waiters: list) -> None:
    for loop, fut in waiters:
        try:
            loop.call_soon_threadsafe(_set_done, fut)
        except RuntimeError:              # that loop is closed: nobody is waiting any more
            pass


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclasses.dataclass(frozen=True)
class TcpServerStats:
    """Snapshot of a TcpServer.

    ``connections`` open now; ``accepted`` ever; ``authenticated`` passed the hello. ``frames``/``bytes``
    delivered; ``stale`` frames discarded as older than one delivered; ``incomplete`` connections that ended
    mid-message; ``rejected`` connections closed by the server, per reason (see REJECT_REASONS).
    """
    host: str
    port: int
    connections: int
    accepted: int
    authenticated: int
    frames: int
    bytes: int
    stale: int
    incomplete: int
    callback_errors: int
    rejected: dict


_HELLO, _READY, _CLOSED = "hello", "ready", "closed"


class _Connection(asyncio.BufferedProtocol):
    """One sender's connection: reads messages into scratch (small) or straight into their buffer (large)."""

    def __init__(self, core: "_ServerCore") -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.scratch = bytearray(_SCRATCH_BYTES)
        self.view = memoryview(self.scratch)
        self.filled = 0
        self.want = 0                     # bytes to read into scratch next; 0: as much as fits
        self.payload: np.ndarray | None = None
        self.payload_view: memoryview | None = None
        self.payload_pos = 0
        self.header: _wire.FrameHeader | None = None
        self.state = _HELLO
        self.nonce = secrets.token_bytes(_wire.NONCE_BYTES)
        self.deadline: float | None = time.monotonic() + core.read_timeout     # the hello must come by then
        self.session = 0
        self.peer: Any = None
        self.lost = core.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        core = self.core
        core.conns.add(self)
        core.counts["accepted"] += 1
        if core.stopping:
            self.close()
            return
        if len(core.conns) > core.max_connections:
            self.reject("too_many_connections", f"{len(core.conns) - 1} connections open already")
            return
        sock = transport.get_extra_info("socket")
        try:                              # a peer that vanished (power cut) is noticed within ~1 min
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        except (OSError, AttributeError):
            pass
        transport.write(_wire.server_hello(self.nonce, core.token is not None, core.max_frame_bytes))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.payload_view is not None:
            return self.payload_view[self.payload_pos:]
        if self.want > self.filled:       # after a large frame: read just the next prefix and header, so its
            return self.view[self.filled:self.want]     # payload lands in its own buffer, not in scratch
        return self.view[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        if self.state is _CLOSED:
            return
        try:
            if self.payload_view is not None:
                self.payload_pos += nbytes
                if self.payload_pos == len(self.payload_view):
                    header, payload = self.header, self.payload
                    self.header = self.payload = self.payload_view = None
                    self.deadline = None
                    self.deliver(header, payload)
                return
            self.filled += nbytes
            self.process()
        except ProtocolError as exc:
            self.reject(getattr(exc, "reason", "malformed"), str(exc))

    def process(self) -> None:
        """Handle every complete message in scratch; start reading a large payload in place; keep the rest."""
        buf, pos, filled, completed = self.scratch, 0, self.filled, False
        try:
            while filled - pos >= _wire.PREFIX_BYTES:
                kind, header_len, payload_len = _wire.unpack_prefix(buf, pos)
                self.check(kind, payload_len)
                start = pos + _wire.PREFIX_BYTES
                end = start + header_len
                if filled < end:
                    if self.want:
                        self.want = end - pos     # the rest of this header, and no payload byte
                    break
                if kind != _wire.FRAME:
                    self.hello(bytes(buf[start:end]))
                    pos, completed = end, True
                    continue
                header = _wire.parse_frame_header(self.view[start:end], payload_len)
                payload = np.empty(payload_len, np.uint8)
                have = min(payload_len, filled - end)
                if have:
                    payload[:have] = np.frombuffer(buf, np.uint8, have, end)
                if have == payload_len:
                    pos, completed, self.want = end + payload_len, True, 0
                    self.deliver(header, payload)
                    continue
                # the next message is likely alike: read its prefix and header alone (see get_buffer)
                self.want = end - pos if payload_len >= _DIRECT_BYTES else 0
                self.payload, self.payload_view, self.payload_pos = payload, memoryview(payload), have
                self.header, pos = header, filled
                self.deadline = time.monotonic() + self.core.read_timeout + payload_len / MIN_RECV_RATE
                return
        finally:
            if self.state is not _CLOSED:
                rest = filled - pos
                if pos and rest:
                    buf[:rest] = buf[pos:filled]
                self.filled = rest
                if self.state is _READY and self.payload is None:
                    if not rest:
                        self.deadline = None
                    elif completed or self.deadline is None:        # a new message has begun
                        self.deadline = time.monotonic() + self.core.read_timeout

    def check(self, kind: int, payload_len: int) -> None:
        if self.state is _HELLO and kind != _wire.HELLO_C:
            reason = "unauthenticated" if kind == _wire.FRAME and self.core.token is not None else "malformed"
            raise _wire.protocol_error(reason, f"message kind {kind} before the hello")
        if self.state is _READY and kind != _wire.FRAME:
            raise _wire.protocol_error("malformed", f"unexpected message kind {kind}")
        if payload_len > self.core.max_frame_bytes:
            raise _wire.protocol_error("oversized", f"a {payload_len}-byte frame; the limit is "
                                                    f"{self.core.max_frame_bytes}")
        if kind == _wire.HELLO_C and payload_len:
            raise _wire.protocol_error("malformed", "a hello with a payload")

    def hello(self, header: bytes) -> None:
        session, mac, app = _wire.parse_client_hello(header)
        token = self.core.token
        # compare_digest: constant time, so the MAC cannot be guessed byte by byte from response times
        if token is not None and not hmac.compare_digest(mac, _wire.auth_mac(token, self.nonce, session,
                                                                             app)):
            raise _wire.protocol_error("unauthenticated", f"app {app!r}: wrong or missing token")
        self.session, self.state, self.deadline = session, _READY, None
        self.core.counts["authenticated"] += 1
        self.transport.write(_wire.message(_wire.ACCEPT))
        log.debug("tcp server :%d: %s (app %s, session %016x) accepted", self.core.port, self.peer, app,
                  session)

    def deliver(self, header: _wire.FrameHeader, payload: np.ndarray) -> None:
        try:
            data = codecs.decode(_wire.payload_header(header, payload.nbytes), payload)
        except (ProtocolError, ConfigError) as exc:   # ConfigError: e.g. lz4 is not installed on this side
            raise _wire.protocol_error("bad_codec", f"{header.topic}: {exc}") from None
        if isinstance(data, np.ndarray):
            data.flags.writeable = False          # subscribers and on_frame share it
        self.core.dispatch(header, data, self.session, payload.nbytes)

    def reject(self, reason: str, detail: str) -> None:
        """Count, tell the peer why, and close this connection (only this one)."""
        if self.state is _CLOSED:
            return
        self.core.count_reject(reason, self.peer, detail)
        self.transport.write(_wire.reject(reason))
        self.close()

    def close(self) -> None:
        self.state = _CLOSED
        self.payload = self.payload_view = self.header = None
        self.transport.close()

    def check_deadline(self, now: float) -> None:
        if self.state is not _CLOSED and self.deadline is not None and now > self.deadline:
            what = "hello" if self.state is _HELLO else "message"
            self.reject("timeout", f"{what} not complete within {self.core.read_timeout:g} s")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.core.conns.discard(self)
        if self.state is not _CLOSED and (self.payload is not None or self.filled):
            self.core.counts["incomplete"] += 1
        self.state = _CLOSED
        self.payload = self.payload_view = self.header = None
        if not self.lost.done():
            self.lost.set_result(None)


class _ServerCore:
    """The state of a TcpServer, shared with its loop and connections (the TcpServer object itself is not)."""

    def __init__(self, sock: socket.socket, host: str, token: bytes | None, max_frame_bytes: int,
                 read_timeout: float, max_connections: int) -> None:
        self.sock: socket.socket | None = sock
        self.host, self.port = host, sock.getsockname()[1]
        self.token, self.max_frame_bytes = token, max_frame_bytes
        self.read_timeout, self.max_connections = read_timeout, max_connections
        self.lock = threading.Lock()
        self.subs: dict[str, tuple[TcpSubscriber, ...]] = {}
        self.last: dict[str, tuple[int, int]] = {}          # topic -> (session, frame_id) delivered last
        self.on_frame: Callable[[Frame], Any] | None = None
        self.conns: set[_Connection] = set()
        self.counts = dict(accepted=0, authenticated=0, frames=0, bytes=0, stale=0, incomplete=0,
                           callback_errors=0)
        self.rejected: dict[str, int] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.stop_event: asyncio.Event | None = None
        self.aserver: asyncio.AbstractServer | None = None
        self.sweeper: asyncio.TimerHandle | None = None
        self.thread: threading.Thread | None = None
        self.start_error: BaseException | None = None
        self.ready, self.stopped = threading.Event(), threading.Event()
        self.closed = self.stopping = False

    # serving --------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        with self.lock:
            if self.closed:
                raise ClosedResourceError(f"tcp server :{self.port} is closed")
            if self.loop is not None:
                raise ConfigError(f"tcp server :{self.port} is serving already")
            self.loop, self.loop_thread, self.stop_event = loop, threading.get_ident(), asyncio.Event()
        try:
            self.aserver = await loop.create_server(lambda: _Connection(self), sock=self.sock)
            self.sock = None                  # the asyncio server owns (and closes) it now
            self.sweep()
            log.info("tcp server %s:%d: listening (token %s, frames up to %d bytes)", self.host, self.port,
                     "required" if self.token else "none", self.max_frame_bytes)
            self.ready.set()
            await self.stop_event.wait()
        finally:
            self.shutdown()
            await self.drain()
            self.ready.set()
            self.stopped.set()

    def run_thread(self) -> None:
        try:
            import uvloop
            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.serve())
        except Exception as exc:
            self.start_error = exc
            log.error("tcp server :%d: stopped by %r", self.port, exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self.ready.set()
                self.stopped.set()

    def sweep(self) -> None:
        """Close connections whose hello or current message is overdue (slowloris, half-open peers)."""
        now = time.monotonic()
        for conn in list(self.conns):
            conn.check_deadline(now)
        interval = min(1.0, max(0.02, self.read_timeout / 4))
        self.sweeper = self.loop.call_later(interval, self.sweep)

    def request_stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
        self.shutdown()

    def shutdown(self) -> None:
        """In the loop: stop listening, close every connection and subscriber. Idempotent."""
        self.stopping = True
        if self.aserver is not None:
            self.aserver.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.sweeper is not None:
            self.sweeper.cancel()
        for conn in list(self.conns):
            if conn.state is not _CLOSED:
                conn.close()
        self.close_subscribers()

    async def drain(self) -> None:
        """Wait (briefly) until every connection is gone, so the loop closes with no transport left."""
        pending = [c.lost for c in self.conns if not c.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for conn in list(self.conns):
            conn.transport.abort()
        if self.aserver is not None:
            try:
                await asyncio.wait_for(self.aserver.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                log.warning("tcp server :%d: listener did not close within 2 s", self.port)

    def stop(self) -> None:
        with self.lock:
            self.closed = True
            loop = self.loop
        if loop is None:                    # never served: the listening socket is all there is
            self.shutdown()
            return
        if threading.get_ident() == self.loop_thread:
            self.request_stop()             # serve() returns once its connections are gone
            return
        try:
            loop.call_soon_threadsafe(self.request_stop)
        except RuntimeError:                # that loop is closed already
            pass
        self.stopped.wait(5.0)
        if self.thread is not None:
            self.thread.join()

    # frames ---------------------------------------------------------------------------------------------
    def dispatch(self, header: _wire.FrameHeader, data: Any, session: int, nbytes: int) -> None:
        topic, fid = header.topic, header.frame_id
        last = self.last.get(topic)
        if last is not None and last[0] == session and fid <= last[1]:
            self.counts["stale"] += 1     # e.g. the tail of a dead connection after its sender reconnected
            return
        self.last[topic] = (session, fid)
        self.counts["frames"] += 1
        self.counts["bytes"] += nbytes
        callback = self.on_frame           # first: a subscriber that has frame N knows on_frame saw it
        if callback is not None:
            try:
                callback(Frame(data, frame_id=fid, timestamp=header.timestamp, meta=dict(header.meta),
                               topic=topic))
            except Exception:
                n = self.counts["callback_errors"] = self.counts["callback_errors"] + 1
                if n & (n - 1) == 0:      # 1, 2, 4, 8 ...: loud but bounded
                    log.exception("tcp server :%d: on_frame failed for %s frame %d (%d failures)",
                                  self.port, topic, fid, n)
        for sub in self.subs.get(topic, ()):
            sub._put(Frame(data, frame_id=fid, timestamp=header.timestamp, meta=dict(header.meta),
                           topic=topic))

    def count_reject(self, reason: str, peer: Any, detail: str) -> None:
        n = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if n & (n - 1) == 0:
            log.warning("tcp server :%d: closed %s: %s (%s; %d so far)", self.port, peer, detail, reason, n)

    # subscribers ----------------------------------------------------------------------------------------
    def subscribe(self, topic: str) -> TcpSubscriber:
        sub = TcpSubscriber(self, topic)
        with self.lock:
            if self.closed:
                raise ClosedResourceError(f"tcp server :{self.port} is closed")
            self.subs[topic] = self.subs.get(topic, ()) + (sub,)     # replaced, never mutated: the loop
        return sub                                                    # iterates without the lock

    def unsubscribe(self, sub: TcpSubscriber) -> None:
        with self.lock:
            left = tuple(s for s in self.subs.get(sub.topic, ()) if s is not sub)
            if left:
                self.subs[sub.topic] = left
            else:
                self.subs.pop(sub.topic, None)

    def close_subscribers(self) -> None:
        with self.lock:
            subs = [s for group in self.subs.values() for s in group]
        for sub in subs:
            sub.close()

    def statistics(self) -> TcpServerStats:
        c = self.counts
        return TcpServerStats(self.host, self.port, len(self.conns), c["accepted"], c["authenticated"],
                              c["frames"], c["bytes"], c["stale"], c["incomplete"], c["callback_errors"],
                              dict(self.rejected))


class TcpServer:
    """Receives frames from TcpSenders: the gateway's ingest. Listens as soon as it is made (``.port``).

    Serve it in its own thread with ``start()`` (an asyncio loop, uvloop when installed), or in a running loop
    with ``await server.serve()`` (returns after ``close()``). Receive with ``subscriber(topic)`` (REALTIME,
    the newest frame), or set ``on_frame`` to a callable that the server's loop calls with every frame (keep
    it short: it runs on the loop).

    Args:
        host, port: where to listen (port 0: any free port, read it from ``.port``).
        token: a shared secret (str or bytes): senders must prove they know it (HMAC over a nonce); None
            accepts any sender.
        max_frame_bytes: larger payloads are refused (the connection gets REJECT ``oversized`` and is closed).
        read_timeout: seconds a connection may take for its hello, and for any message once its first byte
            came (plus 1 s per MiB of payload); slower peers are closed (``timeout``). Idle connections are
            fine.
        max_connections: connections beyond this are refused (``too_many_connections``).

    Raises:
        ConfigError: the port is in use (or cannot be listened on), or a bad option.

    Example:
        >>> with TcpServer(port=8001, token="s3cret") as server:
        ...     server.start()
        ...     frame = server.subscriber("camera").recv(timeout=5.0)
    """

    SUPPORTED_QOS = _REALTIME_ONLY

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | bytes | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, read_timeout: float = 10.0,
                 max_connections: int = 256) -> None:
        self._core: _ServerCore | None = None
        if not isinstance(max_frame_bytes, int) or max_frame_bytes < 0:
            raise ConfigError(f"tcp server: max_frame_bytes={max_frame_bytes!r} must be a non-negative int")
        if not read_timeout > 0 or not (isinstance(max_connections, int) and max_connections > 0):
            raise ConfigError("tcp server: read_timeout and max_connections must be positive")
        token_b = _token_bytes(token, "tcp server")
        try:
            sock = socket.create_server((host, port), backlog=128)
        except OSError as exc:
            what = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise ConfigError(f"tcp server {host}:{port}: cannot listen ({what})") from exc
        self._core = _ServerCore(sock, host, token_b, max_frame_bytes, read_timeout, max_connections)
        self.host, self.port = host, self._core.port
        self._closed = False

    def start(self) -> "TcpServer":
        """Serve in a new thread with its own event loop; returns once listening (self, for chaining)."""
        core = self._core_or_raise()
        with core.lock:
            if core.thread is not None or core.loop is not None:
                raise ConfigError(f"tcp server :{self.port} is serving already")
            core.thread = threading.Thread(target=core.run_thread, name=f"edgeflow-tcp-server-{self.port}",
                                           daemon=True)
        core.thread.start()
        core.ready.wait()
        if core.start_error is not None:
            raise core.start_error
        return self

    async def serve(self) -> None:
        """Serve in the running event loop until ``close()`` (from any thread) or cancellation."""
        await self._core_or_raise().serve()

    def subscriber(self, topic: str, qos: QoS | str = QoS.REALTIME) -> TcpSubscriber:
        """A view of the frames this server receives for ``topic``, from now on; TCP is REALTIME only.

        Raises:
            ConfigError: a bad topic name, or a QoS other than REALTIME.
        """
        core = self._core_or_raise()
        if not isinstance(topic, str) or not _wire.TOPIC.fullmatch(topic):
            raise ConfigError(f"topic {topic!r}: use 1-100 letters, digits, '-', '_' or '.', "
                              "not starting with '.'")
        qos = QoS.parse(qos)
        if qos not in _REALTIME_ONLY:
            raise ConfigError(f"{topic}: the TCP transport offers REALTIME only, not {qos.name}; "
                              "use Redis for durable links")
        return core.subscribe(topic)

    @property
    def on_frame(self) -> Callable[[Frame], Any] | None:
        """Called on the server's loop with every frame received (after the per-topic order check)."""
        return self._core.on_frame

    @on_frame.setter
    def on_frame(self, callback: Callable[[Frame], Any] | None) -> None:
        self._core.on_frame = callback

    def statistics(self) -> TcpServerStats:
        """A snapshot: connections, frames, bytes, rejected per reason."""
        return self._core_or_raise().statistics()

    def _core_or_raise(self) -> _ServerCore:
        if self._closed:
            raise ClosedResourceError(f"tcp server :{self.port} is closed")
        return self._core

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    def close(self) -> None:
        """Stop listening, close every connection and subscriber, and stop the thread. Idempotent."""
        if not self._closed:
            self._closed = True
            self._core.stop()

    terminate = close

    def __enter__(self) -> "TcpServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None and not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._closed = True
            with core.lock:
                core.closed = True
                loop = core.loop
            if loop is None:
                core.shutdown()
            else:
                try:
                    loop.call_soon_threadsafe(core.request_stop)
                except RuntimeError:
                    pass

    def __repr__(self) -> str:
        return f"<TcpServer {self.host}:{self.port}{' closed' if self._closed else ''}>"
