"""The TCP server: the gateway's ingest (split from edgeflow.transport.tcp, which documents the protocol)."""

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

from edgeflow._loopthread import new_event_loop, stop_loop_thread
from edgeflow.errors import ClosedResourceError, ConfigError, FrameTooLarge, ProtocolError, ReceiveTimeout
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import _wire, codecs
from edgeflow.transport.backoff import Backoff, RetrySchedule
from edgeflow.transport._tcp_common import (  # noqa: F401
    DEFAULT_MAX_FRAME_BYTES, MIN_RECV_RATE, REJECT_REASONS, _SCRATCH_BYTES, _SPARE_BUFFERS, _DIRECT_BYTES, _REALTIME_ONLY,
    _Interrupted, _Stalled, _token_bytes, log)
from edgeflow.transport._tcp_subscriber import TcpSubscriber, TcpSubscriberStats  # noqa: F401
from edgeflow.transport._tcp_limits import (
    DEFAULT_DECODE_WORKERS, DEFAULT_HELLO_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PER_ADDRESS, DEFAULT_MAX_TOPICS,
    DEFAULT_MAX_UNAUTHENTICATED, DEFAULT_TOPIC_IDLE, ConnectionSlots, DecodePool, PayloadBuffers, TopicTable)

STOP_TIMEOUT = 10.0                    # seconds close() waits for the server's loop thread to end
_INLINE_MESSAGE_HEADER = 64 * 1024     # a raw message whose JSON header is larger is parsed off the loop
# frames one connection may have handled in one loop iteration before it yields to the others: libuv reads a
# busy socket up to 32 times per wake-up, so without a budget one fast peer (a topic flood of 40-byte frames)
# would keep every other connection waiting for seconds
_TURN_FRAMES = 256


@dataclasses.dataclass(frozen=True)
class TcpServerStats:
    """Snapshot of a TcpServer.

    ``connections`` open now; ``accepted`` ever; ``authenticated`` passed the hello. ``frames``/``bytes``
    delivered; ``stale`` frames discarded as older than one delivered; ``incomplete`` connections that ended
    mid-message; ``rejected`` connections closed by the server, per reason (see REJECT_REASONS).
    ``unauthenticated`` connections still in their hello now; ``evicted`` of them closed to make room (also
    counted under ``rejected["too_many_connections"]``). ``topics`` in the per-topic table now;
    ``topics_refused`` frames dropped because the table was full of active topics; ``topics_forgotten``
    topics dropped from it after ``topic_idle``. ``decoding``: codec payloads being decoded or waiting.
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
    unauthenticated: int = 0
    evicted: int = 0
    topics: int = 0
    topics_refused: int = 0
    topics_forgotten: int = 0
    decoding: int = 0


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
        self.deadline: float | None = time.monotonic() + core.hello_timeout    # the hello must come by then
        self.session = 0
        self.peer: Any = None
        self.address: Any = None
        self.active = core.now              # the sweep's clock when this connection last read something
        self.decoding = False               # a frame of this connection is in the decode pool: reading paused
        self.turn, self.turn_at = 0, -1.0   # frames handled in the loop iteration at turn_at (its cached time)
        self.lost = core.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.address = self.peer[0] if isinstance(self.peer, tuple) and self.peer else self.peer
        core = self.core
        core.conns.add(self)
        core.counts["accepted"] += 1
        if core.stopping:
            self.close()
            return
        refusal, evict = core.slots.admit(self, self.address)
        if refusal is not None:             # REJECT instead of the server hello: the sender says why and backs off
            self.reject("too_many_connections", refusal)
            return
        for victim in evict:                # the oldest still in their hello make room (docs/limits.md)
            core.counts["evicted"] += 1
            victim.reject("too_many_connections", "evicted (the oldest connection still in its hello) to make "
                                                  "room for a new one")
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
        self.active = self.core.now
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
        now = self.core.loop.time()         # uvloop: the iteration's cached time, no syscall
        if now != self.turn_at:
            self.turn_at, self.turn = now, 0
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
                header = _wire.parse_frame_header(self.view[start:end], payload_len, self.core.max_frame_bytes)
                payload = self.core.buffers.take(payload_len, self.core.now)
                have = min(payload_len, filled - end)
                if have:
                    payload[:have] = np.frombuffer(buf, np.uint8, have, end)
                if have == payload_len:
                    pos, completed, self.want = end + payload_len, True, 0
                    if not self.deliver(header, payload):
                        break                 # decoding off the loop: the rest waits in scratch, unread
                    self.turn += 1
                    if self.turn >= _TURN_FRAMES and self.state is _READY:
                        self.transport.pause_reading()      # the rest waits in scratch for the next turn
                        self.core.loop.call_soon(self.next_turn)
                        break
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

    def next_turn(self) -> None:
        """The next loop iteration after this connection used its turn: read and handle the rest."""
        self.turn, self.turn_at = 0, self.core.loop.time()
        if self.state is _CLOSED or self.decoding:
            return                            # decoded() resumes a decoding connection itself
        self.transport.resume_reading()
        try:
            self.process()
        except ProtocolError as exc:
            self.reject(getattr(exc, "reason", "malformed"), str(exc))

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
        self.core.slots.authenticated(self)
        self.core.counts["authenticated"] += 1
        self.transport.write(_wire.message(_wire.ACCEPT))
        log.debug("tcp server :%d: %s (app %s, session %016x) accepted", self.core.port, self.peer, app,
                  session)

    def deliver(self, header: _wire.FrameHeader, payload: np.ndarray) -> bool:
        """Decode and dispatch a complete frame. True when done; False when its decoding went to the pool
        (codecs, large messages): reading pauses until ``decoded`` resumes it, so frames stay in order and
        one connection has at most one frame waiting (the pool's back-pressure)."""
        core = self.core
        info = _wire.payload_header(header, payload.nbytes)
        if header.codec or (header.kind == _wire.KIND_MESSAGE and payload.nbytes >= 12
                            and int.from_bytes(payload[8:12], "little") > _INLINE_MESSAGE_HEADER):
            self.decoding, self.deadline = True, None
            self.transport.pause_reading()
            core.pool.submit(lambda: codecs.decode(info, payload, max_bytes=core.max_frame_bytes),
                             lambda data, exc: self.decoded(header, payload.nbytes, data, exc))
            return False
        try:
            data = codecs.decode(info, payload, max_bytes=core.max_frame_bytes)
        except (ProtocolError, ConfigError) as exc:   # ConfigError: e.g. lz4 is not installed on this side
            raise _wire.protocol_error(getattr(exc, "reason", "bad_codec"), f"{header.topic}: {exc}") from None
        self.finish(header, data, payload.nbytes)
        return True

    def finish(self, header: _wire.FrameHeader, data: Any, nbytes: int) -> None:
        if isinstance(data, np.ndarray):
            data.flags.writeable = False          # subscribers and on_frame share it
        self.core.dispatch(header, data, self.session, nbytes)

    def decoded(self, header: _wire.FrameHeader, nbytes: int, data: Any, exc: BaseException | None) -> None:
        """On the loop, when the pool decoded this connection's frame: dispatch it, read on."""
        self.decoding = False
        if self.core.stopping:
            return
        if exc is not None:
            reason = getattr(exc, "reason", "bad_codec") if isinstance(exc, ProtocolError) else "bad_codec"
            if not isinstance(exc, (ProtocolError, ConfigError)):     # e.g. cv2.error, MemoryError: say what
                log.debug("tcp server :%d: decoding %s failed", self.core.port, header.topic, exc_info=exc)
            self.reject(reason, f"{header.topic}: {exc}")
            return
        self.finish(header, data, nbytes)
        if self.state is _CLOSED:
            return
        self.active = self.core.now
        self.transport.resume_reading()
        try:
            self.process()                        # what arrived behind the frame waited in scratch
        except ProtocolError as exc:
            self.reject(getattr(exc, "reason", "malformed"), str(exc))

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
        self.core.slots.release(self, self.address)
        self.transport.close()

    def check_deadline(self, now: float) -> None:
        """From the sweep: close a connection whose hello or message is overdue, or that sat idle too long."""
        if self.state is _CLOSED or self.decoding:
            return
        if self.deadline is not None and now > self.deadline:
            if self.state is _HELLO:
                self.reject("timeout", f"hello not complete within {self.core.hello_timeout:g} s")
            else:
                self.reject("timeout", f"message not complete within {self.core.read_timeout:g} s")
        elif (self.state is _READY and self.deadline is None and not self.filled
              and now - self.active > self.core.idle_timeout):
            self.reject("idle", f"nothing received for {self.core.idle_timeout:g} s")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.core.conns.discard(self)
        self.core.slots.release(self, self.address)
        if self.state is not _CLOSED and (self.payload is not None or self.filled):
            self.core.counts["incomplete"] += 1
        self.state = _CLOSED
        self.payload = self.payload_view = self.header = None
        if not self.lost.done():
            self.lost.set_result(None)


class _ServerCore:
    """The state of a TcpServer, shared with its loop and connections (the TcpServer object itself is not)."""

    def __init__(self, sock: socket.socket, host: str, token: bytes | None, max_frame_bytes: int,
                 read_timeout: float, max_connections: int, limits: dict) -> None:
        self.sock: socket.socket | None = sock
        self.host, self.port = host, sock.getsockname()[1]
        self.token, self.max_frame_bytes = token, max_frame_bytes
        self.read_timeout, self.max_connections = read_timeout, max_connections
        self.hello_timeout = min(limits["hello_timeout"], read_timeout)
        self.idle_timeout, self.decode_workers = limits["idle_timeout"], limits["decode_workers"]
        self.slots = ConnectionSlots(max_connections, limits["max_unauthenticated"], limits["max_per_address"])
        self.topics = TopicTable(limits["max_topics"], limits["topic_idle"])   # topic -> last (session, fid)
        self.pool: DecodePool | None = None
        self.buffers = PayloadBuffers()     # large payloads are read into reused, warm buffers
        self.now = time.monotonic()         # the sweep's clock: idle and topic ages (no syscall per frame)
        self.lock = threading.Lock()
        self.subs: dict[str, tuple[TcpSubscriber, ...]] = {}
        self.on_frame: Callable[[Frame], Any] | None = None
        self.conns: set[_Connection] = set()
        self.counts = dict(accepted=0, authenticated=0, frames=0, bytes=0, stale=0, incomplete=0,
                           callback_errors=0, evicted=0)
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
            self.pool = DecodePool(loop, self.decode_workers)
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
        loop = new_event_loop()
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
        """Close connections whose hello or current message is overdue (slowloris, half-open peers) or that
        sat idle too long; forget idle topics. Also advances the coarse clock the per-frame code reads."""
        now = self.now = time.monotonic()
        for conn in list(self.conns):
            conn.check_deadline(now)
        self.topics.expire(now)
        self.buffers.expire(now)
        shortest = min(self.read_timeout, self.hello_timeout, self.idle_timeout, self.topics.idle)
        self.sweeper = self.loop.call_later(min(1.0, max(0.02, shortest / 4)), self.sweep)

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
        if self.pool is not None:
            self.pool.close()
        self.buffers.clear()
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
        if not stop_loop_thread(loop, self.request_stop, thread=self.thread, done=self.stopped,
                                timeout=STOP_TIMEOUT):
            log.warning("tcp server :%d: did not stop within %g s", self.port, STOP_TIMEOUT)

    # frames ---------------------------------------------------------------------------------------------
    def dispatch(self, header: _wire.FrameHeader, data: Any, session: int, nbytes: int) -> None:
        topic, fid = header.topic, header.frame_id
        verdict = self.topics.admit(topic, session, fid, self.now)
        if verdict is not TopicTable.OK:
            if verdict is TopicTable.STALE:
                self.counts["stale"] += 1
                return
            n = self.topics.refused       # the table is full of topics active within topic_idle
            if n & (n - 1) == 0:
                log.warning("tcp server :%d: %s: frame dropped, %d topics active already (max_topics; %d "
                            "dropped so far)", self.port, topic, len(self.topics), n)
            return
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
                              dict(self.rejected), len(self.slots.unauth), c["evicted"], len(self.topics),
                              self.topics.refused, self.topics.forgotten,
                              self.pool.pending() if self.pool is not None else 0)


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
        max_frame_bytes: larger payloads are refused (the connection gets REJECT ``oversized`` and is closed);
            so is an array whose declared dtype x shape is larger, whatever its codec: lz4 output and decoded
            images never exceed it (bombs are refused before anything is allocated).
        read_timeout: seconds a connection may take for any message once its first byte came (plus 1 s per
            MiB of payload); slower peers are closed (``timeout``).
        max_connections: connections open at once. When full, the oldest connection still in its hello is
            evicted for a new one; only when all are authenticated is the new one refused. Both get REJECT
            ``too_many_connections`` (a TcpSender reports it as such and backs off).
        hello_timeout: seconds from connect to a complete, authenticated hello (at most ``read_timeout``);
            later: REJECT ``timeout``.
        max_unauthenticated: connections still in their hello at once; one more evicts the oldest of them.
        max_per_address: connections from one IP address; one more is refused (``too_many_connections``).
        idle_timeout: seconds an authenticated connection may send nothing; then REJECT ``idle`` and closed
            (a TcpSender reconnects when it next has a frame).
        max_topics: topics the server keeps per-topic state for (the last frame id, for the order check). A
            frame for a new topic while all are active within ``topic_idle`` is dropped and counted
            (``topics_refused``); the connection stays.
        topic_idle: seconds without a frame after which a topic's state is forgotten.
        decode_workers: threads that decode lz4/png/jpeg payloads (and messages with a JSON header over 64
            KiB) off the event loop; a connection whose frame waits for them is not read meanwhile.

    Every limit, its default and what happens beyond it: docs/limits.md. Raw frames are decoded on the loop
    (a zero-copy view); the bounds cost O(1) per frame.

    Raises:
        ConfigError: the port is in use (or cannot be listened on), or a bad option.

    Example:
        >>> with TcpServer(port=8080, token="s3cret") as server:
        ...     server.start()
        ...     frame = server.subscriber("camera").recv(timeout=5.0)
    """

    SUPPORTED_QOS = _REALTIME_ONLY

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | bytes | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, read_timeout: float = 10.0,
                 max_connections: int = 256, hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
                 max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED,
                 max_per_address: int = DEFAULT_MAX_PER_ADDRESS, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_topics: int = DEFAULT_MAX_TOPICS, topic_idle: float = DEFAULT_TOPIC_IDLE,
                 decode_workers: int = DEFAULT_DECODE_WORKERS) -> None:
        self._core: _ServerCore | None = None
        if not isinstance(max_frame_bytes, int) or max_frame_bytes < 0:
            raise ConfigError(f"tcp server: max_frame_bytes={max_frame_bytes!r} must be a non-negative int")
        if not read_timeout > 0 or not (isinstance(max_connections, int) and max_connections > 0):
            raise ConfigError("tcp server: read_timeout and max_connections must be positive")
        limits = dict(hello_timeout=hello_timeout, max_unauthenticated=max_unauthenticated,
                      max_per_address=max_per_address, idle_timeout=idle_timeout, max_topics=max_topics,
                      topic_idle=topic_idle, decode_workers=decode_workers)
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
                    name.startswith(("max_", "decode_")) and not isinstance(value, int)):
                raise ConfigError(f"tcp server: {name}={value!r} must be a positive "
                                  f"{'int' if name.startswith(('max_', 'decode_')) else 'number'}")
        token_b = _token_bytes(token, "tcp server")
        try:
            sock = socket.create_server((host, port), backlog=128)
        except OSError as exc:
            what = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise ConfigError(f"tcp server {host}:{port}: cannot listen ({what})") from exc
        self._core = _ServerCore(sock, host, token_b, max_frame_bytes, read_timeout, max_connections, limits)
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
