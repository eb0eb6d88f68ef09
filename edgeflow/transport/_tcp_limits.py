"""The TCP server's bounds (split from edgeflow.transport._tcp_server): connection slots, the per-topic table,
and the pool that decodes codec payloads off the event loop. docs/limits.md lists every limit.

Everything here runs on the server's event loop thread (the decode pool's workers only run the decode
function), so none of it takes a lock. Each operation is O(1) per frame or per connection; the periodic
sweeps are O(what they remove) for topics and O(connections) for deadlines.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import sys
from typing import Any, Callable, Hashable

import numpy as np

log = logging.getLogger("edgeflow.transport.tcp")

DEFAULT_HELLO_TIMEOUT = 2.0          #: seconds from connect to a complete, authenticated hello
DEFAULT_MAX_UNAUTHENTICATED = 64     #: connections that have not passed the hello yet, at once
DEFAULT_MAX_PER_ADDRESS = 64         #: connections from one IP address, authenticated or not
DEFAULT_IDLE_TIMEOUT = 120.0         #: seconds an authenticated connection may send nothing before it is closed
DEFAULT_MAX_TOPICS = 1024            #: distinct topics the server keeps per-topic state for
DEFAULT_TOPIC_IDLE = 60.0            #: seconds without a frame after which a topic's state is forgotten
DEFAULT_DECODE_WORKERS = 2           #: threads that decode lz4/png/jpeg payloads (and large messages)
POOL_BYTES = 256 << 20               #: payload buffers the server keeps for reuse, in all
POOL_PER_SIZE = 4                    #: buffers kept per payload size (one being read, a few held downstream)
POOL_MIN_BYTES = 64 * 1024           #: smaller payloads are allocated each time (cheap: no page faults)
POOL_IDLE = 10.0                     #: seconds a size goes unused before its buffers are given back


class ConnectionSlots:
    """Who may hold a connection: a total cap, a cap for connections still in their hello, a per-address cap.

    ``admit`` decides for a new connection and names the unauthenticated connections to evict for it. The
    policy (docs/limits.md): a connection whose address already holds ``per_address`` is refused; otherwise,
    when the unauthenticated cap or the total is full, the *oldest unauthenticated* connection is evicted to
    make room, so a flood of silent or slow-hello connections can never keep an authenticated sender out
    (it only needs its hello to complete before ``max_unauthenticated`` newer connections arrive). A new
    connection is refused only when every slot is held by an authenticated connection.
    """

    def __init__(self, total: int, unauthenticated: int, per_address: int) -> None:
        self.total, self.max_unauth, self.per_address = total, unauthenticated, per_address
        self.held: set = set()                                     # every connection holding a slot
        self.unauth: collections.OrderedDict = collections.OrderedDict()   # oldest first
        self.by_address: dict[Hashable, int] = {}                  # address -> connections (entries > 0 only)

    def admit(self, conn: Any, address: Hashable) -> tuple[str | None, list]:
        """``(refusal, evict)``: a refusal text (the connection is not admitted) or None and the connections
        to evict (oldest unauthenticated first) so that this one fits."""
        if self.by_address.get(address, 0) >= self.per_address:
            return f"{self.per_address} connections from {address} already", []
        evict: list = []
        unauth = iter(self.unauth)
        need_unauth = len(self.unauth) - self.max_unauth + 1
        need_total = len(self.held) - self.total + 1
        while need_unauth > 0 or need_total > 0:
            victim = next(unauth, None)
            if victim is None:
                return f"{len(self.held)} connections open already, all authenticated", []
            evict.append(victim)
            need_unauth -= 1
            need_total -= 1
        self.held.add(conn)
        self.unauth[conn] = None
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None, evict

    def authenticated(self, conn: Any) -> None:
        """``conn`` passed its hello: it no longer counts against the unauthenticated cap."""
        self.unauth.pop(conn, None)

    def release(self, conn: Any, address: Hashable) -> None:
        """``conn`` is closing: free its slot (idempotent)."""
        if conn not in self.held:
            return
        self.held.discard(conn)
        self.unauth.pop(conn, None)
        n = self.by_address.get(address, 0) - 1
        if n > 0:
            self.by_address[address] = n
        else:
            self.by_address.pop(address, None)


class TopicTable:
    """The last (session, frame_id) delivered per topic, bounded: at most ``cap`` topics, least recently used
    first, a topic forgotten after ``idle`` seconds without a frame.

    ``admit`` is O(1): a topic seen before moves to the end; a new one takes a free entry, or the least
    recently used one if that is idle, or is refused (counted; the caller drops the frame and keeps the
    connection). ``expire`` (from the server's sweep) forgets idle topics, so the table empties after a flood.
    """

    OK, STALE, REFUSED = "ok", "stale", "refused"

    def __init__(self, cap: int, idle: float) -> None:
        self.cap, self.idle = cap, idle
        self.entries: collections.OrderedDict[str, list] = collections.OrderedDict()   # topic -> [session, fid, seen]
        self.refused = self.forgotten = 0

    def admit(self, topic: str, session: int, frame_id: int, now: float) -> str:
        entries = self.entries
        entry = entries.get(topic)
        if entry is not None:
            if entry[0] == session and frame_id <= entry[1]:
                return self.STALE           # e.g. the tail of a dead connection after its sender reconnected
            entry[0], entry[1], entry[2] = session, frame_id, now
            entries.move_to_end(topic)
            return self.OK
        if len(entries) >= self.cap:
            oldest = next(iter(entries.values()))
            if now - oldest[2] <= self.idle:
                self.refused += 1
                return self.REFUSED
            entries.popitem(last=False)
            self.forgotten += 1
        entries[topic] = [session, frame_id, now]
        return self.OK

    def expire(self, now: float) -> int:
        """Forget every topic idle for more than ``idle`` seconds; returns how many."""
        entries, n = self.entries, 0
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest[2] <= self.idle:
                break
            entries.popitem(last=False)
            n += 1
        self.forgotten += n
        if not entries and n:
            # an emptied OrderedDict keeps its grown table: a fresh one gives the memory back after a flood
            self.entries = collections.OrderedDict()
        return n

    def __len__(self) -> int:
        return len(self.entries)


class DecodePool:
    """Decodes payloads in ``workers`` threads, with back-pressure: at most ``workers`` decodes run at once,
    the rest wait in FIFO order. The caller pauses the connection whose frame waits (one frame per connection
    at a time), so what waits is bounded by the connections and nothing queues without bound.

    ``submit(fn, done)`` runs ``fn()`` in a worker and then ``done(result, exc)`` on the loop.
    """

    def __init__(self, loop: Any, workers: int) -> None:
        self.loop, self.workers = loop, workers
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.running = 0
        self.waiting: collections.deque = collections.deque()
        self.closed = False

    def submit(self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        if self.closed:
            return
        if self.running >= self.workers:
            self.waiting.append((fn, done))
            return
        self._start(fn, done)

    def _start(self, fn: Callable[[], Any], done: Callable) -> None:
        if self.executor is None:             # made on the first codec frame: raw-only servers have no threads
            self.executor = concurrent.futures.ThreadPoolExecutor(self.workers,
                                                                  thread_name_prefix="edgeflow-tcp-decode")
        self.running += 1
        future = self.loop.run_in_executor(self.executor, fn)
        future.add_done_callback(lambda fut: self._finished(fut, done))

    def _finished(self, fut: Any, done: Callable) -> None:
        self.running -= 1
        if self.waiting and not self.closed:
            self._start(*self.waiting.popleft())
        if fut.cancelled() or self.closed:
            return
        exc = fut.exception()
        done(None if exc is not None else fut.result(), exc)

    def pending(self) -> int:
        """Decodes running or waiting."""
        return self.running + len(self.waiting)

    def close(self) -> None:
        """Drop what waits; running decodes finish in their threads, their results are discarded."""
        self.closed = True
        self.waiting.clear()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


class PayloadBuffers:
    """Reused payload buffers, so a large frame is read into memory that is already faulted in (a fresh 1080p
    array costs ~1,500 page faults: more CPU than the read itself).

    A buffer is handed out again only when nothing outside the pool refers to it any more (its reference
    count: a Frame, its ``data`` view, a memoryview or an array derived from it all hold the buffer), so a
    consumer that keeps a frame keeps its bytes; the pool then allocates another. Bounded: at most
    ``per_size`` buffers per payload size and ``budget`` bytes in all (beyond that, buffers are one-off
    allocations as before); a size unused for ``idle`` seconds is forgotten (``expire``).
    """

    def __init__(self, budget: int = POOL_BYTES, per_size: int = POOL_PER_SIZE, idle: float = POOL_IDLE) -> None:
        self.budget, self.per_size, self.idle = budget, per_size, idle
        self.free: dict[int, list] = {}          # payload size -> [last use, buffers...]
        self.bytes = 0

    def take(self, nbytes: int, now: float) -> np.ndarray:
        """A writable uint8 buffer of ``nbytes`` that nobody else holds."""
        if nbytes < POOL_MIN_BYTES:
            return np.empty(nbytes, np.uint8)
        entry = self.free.get(nbytes)
        if entry is None:
            entry = self.free[nbytes] = [now]
        entry[0] = now
        for i in range(1, len(entry)):
            buf = entry[i]
            # references: the list, ``buf`` and getrefcount's argument: nobody else has it
            if sys.getrefcount(buf) == 3:
                return buf
        if len(entry) <= self.per_size and self.bytes + nbytes <= self.budget:
            buf = np.empty(nbytes, np.uint8)
            entry.append(buf)
            self.bytes += nbytes
            return buf
        return np.empty(nbytes, np.uint8)

    def expire(self, now: float) -> None:
        """Give back the buffers of sizes not used for ``idle`` seconds."""
        for nbytes in [n for n, entry in self.free.items() if now - entry[0] > self.idle]:
            self.bytes -= nbytes * (len(self.free.pop(nbytes)) - 1)

    def clear(self) -> None:
        """Forget every buffer (held frames keep theirs)."""
        self.free.clear()
        self.bytes = 0
