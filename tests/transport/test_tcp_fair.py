"""Fair connections (issue 12, section 3): a TcpServer's slots cannot be exhausted by idle or unauthenticated
peers, and a refused sender says why and backs off.

Caps (unauthenticated, per address, total), the hello deadline and the idle timeout are each shown to hold
on real sockets; then a legitimate authenticated sender at 100 fps keeps at least 0.9x its frame count during
each flood (300 idle connections, 300 unauthenticated ones, a flood of topic names), and a new sender still
gets in during each.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from edgeflow.transport import _wire
from edgeflow.transport.tcp import TcpSender, TcpServer

from _tcp_floods import LOOPBACK, TOKEN, Flooder, RawClient, ServerChild, raise_nofile


def wait_until(predicate, what: str, timeout: float = 5.0) -> None:
    """Poll a counter (statistics have no event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def deliver(server: TcpServer, sender: TcpSender, value: int) -> None:
    sub = server.subscriber(sender.topic)
    try:
        fid = sender.publish(np.full(8, value, np.uint8))
        frame = sub.recv(timeout=5)
        assert frame.frame_id == fid and frame.data[0] == value
    finally:
        sub.close()


def test_a_full_server_refuses_with_too_many_connections_and_the_sender_says_so(app, caplog):
    with TcpServer(LOOPBACK, 0, max_connections=1) as server:
        server.start()
        holder = RawClient(server.port)
        holder.hello(token=None)                       # the one slot, authenticated: nothing to evict
        with caplog.at_level(logging.DEBUG, logger="edgeflow.transport.tcp"), \
                TcpSender("cam", LOOPBACK, server.port, app=app, backoff=(0.01, 0.02)) as sender:
            sender.publish(b"waiting")
            wait_until(lambda: sender.statistics().connect_failures >= 2, "two refusals")
            started, failures = time.monotonic(), sender.statistics().connect_failures
            wait_until(lambda: sender.statistics().connect_failures >= failures + 2, "two more refusals")
            # the back-off asked for 10-20 ms; a full gateway gets at least BUSY_BACKOFF (0.5 s) per attempt
            assert time.monotonic() - started >= 0.9
            stats = sender.statistics()
            assert stats.last_error == "gateway refused the connection: too many connections (the gateway is full)"
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len([w for w in warnings if "too many connections" in w]) == 1, warnings   # one line, once
            assert not any("expected the server hello" in r.getMessage() for r in caplog.records)
            holder.close()                             # a slot frees: the sender gets in and delivers
            sub = server.subscriber("cam")
            assert sender.wait_connected(5)
            assert sender.publish(b"in")
            # the frame that waited through the refusals may go first (unless "in" replaced it: newest-only)
            got = sub.recv(timeout=5).data
            assert got == b"in" or (got == b"waiting" and sub.recv(timeout=5).data == b"in")
        assert server.statistics().rejected["too_many_connections"] >= 4


def test_unauthenticated_connections_have_their_own_cap_and_the_oldest_is_evicted(app):
    with TcpServer(LOOPBACK, 0, token=TOKEN, max_unauthenticated=4) as server:
        server.start()
        silent = [RawClient(server.port, source="127.0.0.2") for _ in range(4)]
        wait_until(lambda: server.statistics().unauthenticated == 4, "4 in their hello")
        fifth = RawClient(server.port, source="127.0.0.3")
        assert silent[0].rejected() == "too_many_connections"          # the oldest made room
        wait_until(lambda: server.statistics().evicted == 1, "one eviction")
        with TcpSender("cam", LOOPBACK, server.port, app=app, token=TOKEN) as sender:
            deliver(server, sender, 1)                                  # evicts one more on its way in
        stats = server.statistics()
        assert stats.unauthenticated == 3 and stats.evicted == 2 and stats.authenticated == 1   # it left
        for peer in silent + [fifth]:
            peer.close()


def test_one_address_cannot_take_more_than_its_share(app):
    with TcpServer(LOOPBACK, 0, max_per_address=3) as server:
        server.start()
        mine = [RawClient(server.port, source="127.0.0.2") for _ in range(3)]
        for peer in mine:
            peer.hello(token=None)
        extra = RawClient(server.port, source="127.0.0.2")
        kind, header = extra.message()                                  # REJECT instead of the server hello
        assert (kind, header) == (_wire.REJECT, b"too_many_connections")
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:  # from 127.0.0.1: its own share
            deliver(server, sender, 1)
        mine[0].close()                                                 # a slot of that address frees
        wait_until(lambda: server.statistics().connections == 2, "the closed one gone")
        again = RawClient(server.port, source="127.0.0.2")
        again.hello(token=None)
        for peer in mine[1:] + [extra, again]:
            peer.close()


def test_the_hello_has_a_short_deadline_and_idle_connections_are_closed(app):
    with TcpServer(LOOPBACK, 0, read_timeout=10.0, hello_timeout=0.3, idle_timeout=0.4) as server:
        server.start()
        started = time.monotonic()
        silent = RawClient(server.port)
        assert silent.rejected() == "timeout"
        assert time.monotonic() - started < 3.0                        # the hello deadline, not read_timeout
        idle = RawClient(server.port)
        idle.hello(token=None)
        assert idle.rejected() == "idle"
        with TcpSender("cam", LOOPBACK, server.port, app=app) as sender:
            deliver(server, sender, 1)
            wait_until(lambda: server.statistics().rejected.get("idle") == 2, "the sender idled out too")
            deliver(server, sender, 2)                                  # it reconnects for the next frame
            assert sender.statistics().reconnects >= 1
        silent.close()
        idle.close()


# ------------------------------------------------------------------------------------------------------------
# floods: a legitimate sender keeps >= 0.9x its frames

FPS, WINDOW = 100, 2.0


class PacedSender:
    """A TcpSender publishing small frames at FPS from its own thread-free loop, driven by ``run(seconds)``."""

    def __init__(self, port: int, app: str) -> None:
        self.sender = TcpSender("legit", LOOPBACK, port, app=app, token=TOKEN)
        self.next = time.monotonic()
        self.frame = np.zeros(64, np.uint8)

    def run(self, seconds: float) -> None:
        now = time.monotonic()
        self.next, end = max(self.next, now), now + seconds     # no catching up on the time between runs
        while self.next < end:
            delay = self.next - time.monotonic()
            if delay > 0:
                time.sleep(delay)                      # pacing the producer, not synchronisation
            self.sender.publish(self.frame)
            self.next += 1 / FPS

    def close(self) -> None:
        self.sender.close()


def delivered(server: ServerChild, topic: str = "legit") -> int:
    return server.stats()["counts"].get(topic, 0)


@pytest.mark.slow
def test_a_legitimate_sender_keeps_its_rate_during_each_flood(app):
    raise_nofile()
    with ServerChild(token=TOKEN, topic_idle=60.0) as server:
        legit = PacedSender(server.port, app)
        try:
            legit.run(0.5)                             # connected and steady
            rates = {}
            for flood in (None, "idle", "unauth", "topics"):
                flooder = Flooder(flood, server.port) if flood else None
                try:
                    if flood in ("idle", "unauth"):    # the flood holds the unauthenticated slots
                        server.wait_for(lambda s: s["unauthenticated"] >= 60, what=f"the {flood} flood")
                    elif flood == "topics":
                        server.wait_for(lambda s: s["topics_refused"] > 0, what="the topic flood")
                    # the best of a few windows: the machine is shared (2 cores, other processes), and a window
                    # that another process's burst slowed says nothing about the server's fairness
                    for _ in range(3):
                        before = delivered(server)
                        legit.run(WINDOW)
                        rates[flood] = max(rates.get(flood, 0), delivered(server) - before)
                        if rates[flood] >= 0.95 * FPS * WINDOW:
                            break
                    if flood:                          # and a new sender still gets in, during the flood
                        # (a topic flood fills the table with active names: a new sender gets in on a known
                        # topic; new names wait for the flood's to idle out, docs/limits.md)
                        topic = "legit" if flood == "topics" else f"legit-{flood}"
                        had = delivered(server, topic)
                        with TcpSender(topic, LOOPBACK, server.port, app=app, token=TOKEN,
                                       backoff=(0.01, 0.2)) as fresh:
                            fresh.publish(b"hello")
                            server.wait_for(lambda s: s["counts"].get(topic, 0) > had,
                                            what=f"a new sender during the {flood} flood")
                finally:
                    if flooder is not None:
                        flooder.close()
            stats = server.stats()
        finally:
            legit.close()
    baseline = rates[None]
    assert baseline >= 0.8 * FPS * WINDOW, rates        # sanity: the machine kept up at all
    for flood in ("idle", "unauth", "topics"):
        assert rates[flood] >= 0.9 * baseline, (flood, rates)
    assert stats["evicted"] > 0 and stats["rejected"].get("too_many_connections", 0) > 0
    assert stats["topics"] <= 1024 and stats["topics_refused"] > 0
