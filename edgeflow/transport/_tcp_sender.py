"""The TCP sender: newest-only, reconnecting, authenticating (split from edgeflow.transport.tcp, which documents the protocol)."""

from __future__ import annotations

import errno
import math
import os
import secrets
import select
import socket
import struct
import threading
import time
import warnings
from typing import Any

import numpy as np

from edgeflow.config import settings
from edgeflow.errors import ClosedResourceError, ConfigError, FrameTooLarge, ProtocolError
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import _wire, codecs, message
from edgeflow.transport.backoff import Backoff, RetrySchedule
from edgeflow.transport._tcp_loan import _EMPTY, TcpLoan, TcpSenderStats, _Outgoing  # noqa: F401
from edgeflow.transport._tcp_common import (  # noqa: F401
    BUSY_BACKOFF, DEFAULT_MAX_FRAME_BYTES, MIN_RECV_RATE, REJECT_REASONS, REJECT_TEXT, _SCRATCH_BYTES, _SPARE_BUFFERS,
    _DIRECT_BYTES, _REALTIME_ONLY, _Interrupted, _Stalled, _token_bytes, log)


class _Refused(ConnectionRefusedError):
    """The gateway sent REJECT: ``reason`` is its word for why (``too_many_connections``, ...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"gateway refused the connection: {REJECT_TEXT.get(reason, reason)}")


def _reject_reason(header: Any) -> str:
    return bytes(header).decode("ascii", errors="replace")[:200]


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
        self.direct: _Outgoing | None = None    # being written by a publishing thread (not the sender's)
        self.resume: _Outgoing | None = None    # begun by a publishing thread; the sender thread finishes it
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
        self.last_reason: str | None = None   # the gateway's REJECT reason of the last failed attempt
        self.busy = False                     # the last attempt was refused with too_many_connections
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

    def idle_wire(self) -> bool:
        """Nothing pending, nothing on the wire or being written (caller holds cond)."""
        return (self.pending is None and self.inflight is None and self.resume is None
                and self.direct is None)

    def write_direct(self, item: _Outgoing, owned: bool) -> int | None:
        """Write ``item`` from the calling thread without waiting; its frame id, or None when the sender
        thread has to take it (not connected, a frame ahead of it, a codec to apply). ``owned``: the payload
        is the sender's (a loan buffer, bytes), not a view of the caller's array, which may change once we
        return.

        One non-blocking ``sendmsg`` of prefix+header and payload straight from the frame's memory: no copy,
        no thread hop. What the socket cannot take now (back-pressure) the sender thread finishes; of the
        caller's array only that unsent tail is copied.
        """
        with self.cond:
            sock = self.sock
            if sock is None or self.codec != "raw" or self.closing or not self.idle_wire():
                return None
            # the gateway sends nothing after ACCEPT unless it is closing (REJECT "idle", EOF): a readable socket
            # means the frame would go to a connection already gone; the sender thread reconnects and sends it
            if select.select([sock], [], [], 0)[0]:
                return None
            self.next_id += 1
            item.frame_id = self.next_id
            self.counts["published"] += 1
            self.direct = item
        rest: list | None = None
        sent = 0
        try:
            header, payload = self.encode(item)
            head = _wire.message(_wire.FRAME, header, len(payload))
            item.size = len(payload)
            try:
                sent = sock.sendmsg([head, payload] if len(payload) else [head], (), socket.MSG_DONTWAIT)
            except OSError:           # full (EAGAIN) or broken: the sender thread sends it (or reconnects)
                pass
            if sent < len(head) + len(payload):
                rest = self.tail(item, head, payload, sent, owned)
        finally:
            with self.cond:
                self.direct = None
                if rest is None and sent:
                    self.counts["sent"] += 1
                    self.counts["bytes_sent"] += item.size
                    self.recycle(item)
                elif rest is None:                # failed before a byte went (a bug): count it lost
                    self.counts["dropped"] += 1
                elif sent == 0:                   # nothing went: a pending frame like any other
                    if self.pending is not None:  # unless a newer one came meanwhile (another thread)
                        self.counts["dropped"] += 1
                        self.recycle(item)
                    else:
                        self.pending = item
                else:
                    item.rest = rest              # the sender thread writes the rest, before anything else
                    self.resume = item
                wake = rest is not None and self.idle
                self.cond.notify_all()
        if wake:
            self.wake()
        return item.frame_id

    def tail(self, item: _Outgoing, head: bytes, payload: Any, sent: int, owned: bool) -> list:
        """The wire bytes after the first ``sent`` (in the writing thread). A payload that is the caller's
        array is copied into a sender buffer: all of it when nothing went (then it is a pending frame like
        any other), else only its unsent tail (the frame cannot be sent anew then: ``resend`` False)."""
        done = max(0, sent - len(head))
        if not owned and len(payload):
            buf, _ = self.buffer(len(payload))
            np.copyto(buf[done:], item.payload[done:])
            item.payload, item.pooled, item.resend = buf, True, done == 0
            payload = buf
        rest = [memoryview(head)[sent:]] if sent < len(head) else []
        if len(payload):
            rest.append(memoryview(payload).cast("B")[done:])
        return rest

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
                self.cond.wait_for(lambda: self.idle_wire() or not thread.is_alive(), timeout)
            self.stop_now = True
            self.interrupt()
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self.cond:
            self.cond.wait_for(lambda: self.direct is None, 5.0)    # a publish writing now: microseconds
            for left in (self.pending, self.resume):
                if left is not None:
                    self.counts["dropped"] += 1
            self.pending = self.resume = None
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
                if self.resume is not None:       # begun by a publish, never finished
                    self.counts["dropped"] += 1
                    self.resume = None
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
                    has_work = self.pending is not None or self.resume is not None
                    if self.closing and not has_work:
                        return
                if not has_work:
                    self.wait_idle(None)
                elif not self.connect():
                    now = time.monotonic()
                    delay = self.retry.failed(now) - now
                    if self.busy:                 # a full gateway: give it at least BUSY_BACKOFF
                        delay = max(delay, BUSY_BACKOFF)
                    self.sleep(delay)
                continue
            if self.peer_spoke():                 # EOF or a REJECT while idle: reconnect before sending
                continue
            with self.cond:
                while self.direct is not None and not self.stop_now:  # a publish is writing: microseconds
                    self.cond.wait(0.05)
                if self.resume is not None:       # the rest of a frame a publish began goes first
                    item, self.resume = self.resume, None
                else:
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
            if self.pending is not None or self.resume is not None or self.stop_now or self.closing:
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
        self.busy = False
        try:
            sock = self.open_socket()
            deadline = time.monotonic() + self.connect_timeout
            kind, header = self.recv_message(sock, deadline)
            if kind == _wire.REJECT:              # a full gateway answers REJECT instead of its hello
                raise _Refused(_reject_reason(header))
            if kind != _wire.HELLO_S:
                raise _wire.protocol_error("malformed", f"expected the server hello, got message kind {kind}")
            nonce, _auth_required, max_frame_bytes = _wire.parse_server_hello(header)
            mac = _wire.auth_mac(self.token, nonce, self.session, self.app) if self.token else b""
            self.send_all(sock, [_wire.client_hello(self.session, self.app, mac)])
            kind, header = self.recv_message(sock, deadline)
            if kind == _wire.REJECT:
                raise _Refused(_reject_reason(header))
            if kind != _wire.ACCEPT:
                raise _wire.protocol_error("malformed", f"expected accept, got message kind {kind}")
        except (OSError, ProtocolError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            reason = getattr(exc, "reason", None) if isinstance(exc, _Refused) else None
            with self.cond:
                self.counts["connect_failures"] += 1
                first = self.retry.failures == 0
                changed = reason != self.last_reason
                self.last_error = str(exc) or type(exc).__name__
                self.last_reason = reason
            self.busy = reason == "too_many_connections"
            # one line per new reason (and the first failure); repeats of it go to debug
            (log.warning if first or changed else log.debug)("%s: cannot connect (%s); retrying with "
                                                             "back-off", self.where, self.last_error)
            return False
        sock.setblocking(True)            # frames: one blocking sendmsg each, bounded by SO_SNDTIMEO
        seconds = max(self.stall_timeout, 0.001)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(seconds), int(seconds % 1 * 1e6)))
        with self.cond:
            self.sock, self.server_max = sock, max_frame_bytes
            self.counts["connects"] += 1
            self.last_error = self.last_reason = None
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
            word = _reject_reason(data[_wire.PREFIX_BYTES:])
            reason = f"gateway closed the connection: {REJECT_TEXT.get(word, word)}"
            if word == "idle":                # expected after a pause: reconnect quietly, the frame is not lost
                with self.cond:
                    self.cond.wait_for(lambda: self.direct is None)
                    sock, self.sock = self.sock, None
                    self.cond.notify_all()
                sock.close()
                log.info("%s: %s; reconnecting", self.where, reason)
                return True
        self.disconnect(reason)
        return True

    def send(self, item: _Outgoing) -> None:
        if item.rest is not None:
            self.send_rest(item)
            return
        try:
            header, payload = self.encode(item)
        except (ValueError, TypeError, ConfigError) as exc:     # e.g. jpeg asked for a float array
            self.discard(item, "encode_errors", f"frame {item.frame_id} cannot be sent with codec "
                                                f"{self.codec!r}: {exc}")
            return
        try:
            size = max(len(payload), len(item.payload))      # on the wire, and decoded (the gateway checks both)
            if self.server_max is not None and size > self.server_max:
                self.discard(item, "too_large", f"frame {item.frame_id} is {size} bytes; the gateway "
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

    def send_rest(self, item: _Outgoing) -> None:
        """Finish a frame a publishing thread began: the socket took its first bytes, these are the rest."""
        try:
            self.send_all(self.sock, item.rest)
        except OSError as exc:            # broken or stalled mid-frame: send it anew if we can
            if self.stop_now:
                raise _Interrupted from None
            with self.cond:
                item.rest = None
                if item.resend and self.pending is None and not self.closing:
                    self.pending = item
                else:
                    self.counts["dropped"] += 1
                    self.recycle(item)
                self.inflight = None
            self.disconnect(f"connection lost ({exc})")
            return
        with self.cond:
            self.counts["sent"] += 1
            self.counts["bytes_sent"] += item.size
            self.recycle(item)
            self.inflight = None
            self.cond.notify_all()

    def encode(self, item: _Outgoing) -> tuple[bytes, Any]:
        """The FRAME header and payload; codecs.encode makes the payload (raw: a view of the buffer)."""
        if item.kind == _wire.KIND_MESSAGE:             # encoded at publish; only a codec is left to apply
            codec, payload = codecs.compress(item.payload, self.codec)
            info: dict = {}
        else:
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
            self.cond.wait_for(lambda: self.direct is None)     # a publish writing on it: microseconds
            sock, self.sock = self.sock, None
            if reason is not None:
                self.last_error = reason
            self.cond.notify_all()
        if sock is not None:
            sock.close()
            if reason is not None:
                log.warning("%s: %s; reconnecting", self.where, reason)


class TcpSender:
    """Publishes one topic's frames over TCP to a TcpServer (the gateway). REALTIME only.

    ``publish`` never waits for the network. While the link is idle it writes the frame from the caller's
    thread with one non-blocking ``sendmsg`` (no copy, no thread hop); what the socket does not take at once
    is copied and finished by a sender thread. Otherwise the frame is copied and handed to that thread as the
    one pending frame, replacing (and counting as dropped) an older one that was not sent yet. The thread
    connects on the first publish, authenticates with ``token`` when given, and reconnects with back-off.

    Args:
        topic: the topic name (letters, digits, ``-``, ``_``, ``.``).
        host, port: the TcpServer to send to.
        app: the app namespace (default ``$EDGEFLOW_APP`` or ``"default"``); sent in the hello for the logs.
        token: the gateway's shared secret (str or bytes), or None when it has none.
        codec: None sends arrays raw; ``jpeg``, ``png`` or ``lz4`` encode them (edgeflow.transport.codecs) in
            the sender thread, and only the frames that are actually sent.
        connect_timeout: seconds for one connection attempt including the hello.
        stall_timeout: seconds without the gateway reading anything before the connection is dropped and
            made anew (the frame on the wire is resent unless a newer one is waiting, or unless it was begun
            from the caller's array: only its unsent tail was kept, and it counts as dropped).
        backoff: (first, longest) delay in seconds between failed attempts, doubled each failure with up to
            50 % jitter; or an edgeflow.transport.backoff.Backoff.

    Limits (docs/limits.md): the gateway's ``max_frame_bytes`` (learnt from its hello) bounds both the payload
    on the wire and the frame's decoded size, whatever the codec: a larger frame raises FrameTooLarge at
    publish once the limit is known, or is dropped and counted as ``too_large``. A gateway that is full
    answers REJECT ``too_many_connections``: the sender logs one line ("gateway refused the connection: too
    many connections"), keeps it in ``statistics().last_error`` and retries with back-off, waiting at least
    0.5 s each time. A gateway that closes the connection as ``idle`` is reconnected to when the next frame
    comes (nothing is lost). Arrays of a zero-size dtype cannot be sent (TypeError).

    Raises:
        ConfigError: a bad topic, app, port, token or codec.

    Example:
        >>> with TcpSender("camera", "gateway.lan", 8080, app="demo", token="s3cret") as sender:
        ...     fid = sender.publish(frame_array, meta={"exposure": 0.01})
    """

    SUPPORTED_QOS = _REALTIME_ONLY
    qos = QoS.REALTIME

    def __init__(self, topic: str, host: str, port: int, *, app: str | None = None,
                 token: str | bytes | None = None, codec: str | None = None, connect_timeout: float = 5.0,
                 stall_timeout: float = 10.0, backoff: Backoff | tuple[float, float] = (0.05, 5.0)) -> None:
        self._core: _SenderCore | None = None
        app = app if app is not None else settings.EDGEFLOW_APP
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
        """Hand ``data`` (ndarray of any dtype/shape, bytes-like, a dict/list message, or a Frame) to the
        sender; returns its id.

        Never blocks on the network. The caller may reuse the array at once: it was written to the socket
        before publish returned, or copied (all of it, or the tail the socket did not take yet).

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
            if data.dtype.itemsize == 0:
                raise TypeError(f"{self.topic}: arrays of a zero-size dtype ({data.dtype}) cannot be sent "
                                "(the gateway refuses them)")
            self._check_size(core, data.nbytes)
            if core.sock is not None and data.flags.c_contiguous:     # connected: write it from here
                flat = data.reshape(-1).view(np.uint8) if data.size else _EMPTY
                fid = core.write_direct(_Outgoing(0, ts, _wire.KIND_ARRAY, data.dtype, data.shape, meta_b,
                                                  flat, False), owned=False)
                if fid is not None:
                    return fid
            buf, pooled = core.buffer(data.nbytes)
            if data.nbytes:
                np.copyto(np.ndarray(data.shape, data.dtype, buffer=buf), data)
            item = _Outgoing(0, ts, _wire.KIND_ARRAY, data.dtype, data.shape, meta_b, buf, pooled)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = data if type(data) is bytes else bytes(data)     # bytes are immutable: no copy needed
            self._check_size(core, len(payload))
            item = _Outgoing(0, ts, _wire.KIND_BYTES, None, (), meta_b, payload, False)
        elif isinstance(data, (dict, list)):
            payload = message.encode(data, self.topic).to_bytes()      # the one copy of its arrays
            self._check_size(core, len(payload))
            item = _Outgoing(0, ts, _wire.KIND_MESSAGE, None, (), meta_b, payload, False)
        else:
            raise TypeError(f"{self.topic}: cannot publish {type(data).__name__}; "
                            "publish a numpy array, bytes, a dict/list message, or a Frame")
        if item.kind != _wire.KIND_ARRAY and core.sock is not None:
            fid = core.write_direct(item, owned=True)             # bytes are immutable: nothing to copy
            if fid is not None:
                return fid
        return core.hand_over(item)

    def loan(self, shape: Any, dtype: Any = np.uint8, *, timestamp: float | None = None,
             meta: dict | None = None) -> TcpLoan:
        """A writable array of ``shape`` and ``dtype`` in one of the sender's buffers, for zero-copy
        producing: ``with sender.loan((1080, 1920, 3)) as buf: camera.read_into(buf)`` publishes when the
        block exits without an error. The timestamp defaults to the moment the loan was taken."""
        return TcpLoan(self, shape, dtype, timestamp, meta)

    def _check_size(self, core: _SenderCore, nbytes: int) -> None:
        limit = core.server_max                 # bounds the decoded size too: a codec does not get around it
        if limit is not None and nbytes > limit:
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
            return core.cond.wait_for(core.idle_wire, timeout)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until no frame is pending, so the next publish drops nothing; True if so. Without a codec,
        also until the last frame is on its way (the socket took all of it), so that the next publish is
        written at once from the caller's array, with no copy. For producers that can make frames on demand
        (a file replay, a renderer); a camera just publishes and lets REALTIME drop."""
        core = self._core_or_raise()
        ready = core.idle_wire if self.codec == "raw" else lambda: core.pending is None
        with core.cond:
            return core.cond.wait_for(lambda: core.stop_now or ready(), timeout)

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

