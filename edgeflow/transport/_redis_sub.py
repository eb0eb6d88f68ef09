"""RedisSubscriber: reads a topic's stream per QoS, fetches each frame's blob (see edgeflow.transport.redis).

The reading logic is written once, as generators that yield the Redis calls they need (``_Call``) and receive
the replies; ``recv`` drives them with the sync client, ``arecv`` with redis.asyncio, so both behave the same
and ``arecv`` never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import warnings
from collections import deque
from typing import Any, Generator, NamedTuple

from redis.exceptions import ResponseError

from edgeflow.errors import (BrokenResourceError, ClosedResourceError, ConfigError, ProtocolError,
                             ReceiveTimeout)
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import codecs
from edgeflow.transport._redis_common import (DEFAULT_BACKOFF, DEFAULT_MAX_LAG, NET_ERRORS,
                                              PRIVATE_GROUP_PREFIX, arun, as_broker, blob_prefix,
                                              check_group, check_positive, client, cmd, cursor_key, data_url,
                                              default_consumer, is_full, live_key, names, run, script_cmd,
                                              stream_key, text, topic_blob_prefix)
from edgeflow.transport._redis_held import parse_id
from edgeflow.transport._redis_lua import (CREATE_GROUP_SCRIPT, DURABLE_READ_SCRIPT, FORGET_CONSUMER_SCRIPT,
                                           TAKE_SCRIPT)
from edgeflow.transport.backoff import Backoff, RetrySchedule

log = logging.getLogger("edgeflow.transport.redis")

_CTRL, _DATA, _SLEEP = 0, 1, 2
BLOCK_CHUNK = 1.0            # longest single blocking wait on Redis (reclaim checks come between)
SEEN_FRAMES = 65536          # DURABLE: frame ids remembered, to drop those published again after a restart
_AGAIN = object()            # a read that changed state but produced no entry: read once more


class _Call(NamedTuple):
    target: int              # _CTRL, _DATA or _SLEEP
    commands: Any            # commands for run()/arun(), or seconds to sleep


@dataclasses.dataclass(frozen=True)
class RedisSubscriberStats:
    """Snapshot of a RedisSubscriber.

    ``received`` frames were returned; ``drops`` were skipped by the QoS (REALTIME, BALANCED); ``lost`` never
    arrived although the QoS promised them (DURABLE entries trimmed or blobs expired before they were read;
    each is also logged); ``duplicates`` (frames seen before, published again after Redis lost them) and
    ``reclaimed`` (taken over from a dead consumer) are DURABLE bookkeeping. ``lag`` is the group's backlog at
    the last read (DURABLE; -1 when Redis could not say). ``copies`` equals ``received``: every frame arrives
    in its own buffer, and ``held`` is 0 (nothing is pinned).
    """
    topic: str
    received: int
    drops: int
    copies: int
    held: int
    lag: int
    lost: int
    duplicates: int
    reclaimed: int
    disconnects: int
    connected: bool


class RedisSubscriber:
    """Receives a topic's frames from Redis, as Frames (same frame_id, timestamp, meta and data).

    Args:
        topic, app, broker: as for RedisPublisher.
        qos: REALTIME (the newest frame; never one twice, never an older one), BALANCED (in order while at
            most ``max_lag`` frames wait, then the newest), or DURABLE (every frame, via a consumer group).
        group: DURABLE: the Redis consumer group, one per consuming node, shared by its replicas; without
            one, a private group of this subscriber's own (created now, removed by close()). REALTIME /
            BALANCED: members of a group share one cursor, so each frame goes to at most one of them; without
            a group the subscriber has its own.
        consumer: DURABLE: this member's name in the group (default ``<host>-<pid>-<n>``). A replica restarted
            under the same name gets its own unacknowledged frames first.
        max_lag: BALANCED only (default 2).
        claim_idle: DURABLE: seconds a frame may stay unacknowledged with another (dead) member before
            this one takes it over.
        blob_wait: DURABLE: seconds to wait for a payload the data instance lost in a restart to be
            restored by the publisher, before the frame counts as lost.
        socket_timeout: seconds a Redis reply may take (more than the 1 s blocking reads).
        backoff: reconnection delays (default DEFAULT_BACKOFF).

    DURABLE frames are acknowledged at the next ``recv`` / ``recv_nowait`` / ``arecv`` (pipelined with that
    read), or at ``close()``: a frame is acknowledged once the node is done with it, never before. A
    subscriber is used from one thread (or one asyncio task) at a time.

    Raises:
        ConfigError: a bad name or option. An unreachable Redis is not an error here: the subscriber
            attaches once it is reachable.

    Example:
        >>> with RedisSubscriber("camera", app="demo", broker=broker, qos=QoS.DURABLE, group="logger") as sub:
        ...     frame = sub.recv(timeout=1.0)
    """

    def __init__(self, topic: str, *, app: str | None = None, broker: Any, qos: QoS | str = QoS.REALTIME,
                 group: str | None = None, consumer: str | None = None, max_lag: int | None = None,
                 claim_idle: float = 30.0, blob_wait: float = 3.0, backoff: Backoff | None = None,
                 socket_timeout: float = 10.0) -> None:
        self._closed = True
        self.app, self.topic = names(app, topic)
        self.broker = as_broker(broker, topic)
        self.qos = QoS.parse(qos)
        if max_lag is not None and (self.qos is not QoS.BALANCED or isinstance(max_lag, bool)
                                    or not isinstance(max_lag, int) or max_lag < 1):
            raise ConfigError(f"{topic}: max_lag={max_lag!r} needs qos=BALANCED and an integer >= 1")
        self.max_lag = (max_lag or DEFAULT_MAX_LAG) if self.qos is QoS.BALANCED else 0
        self.consumer = check_group(topic, "consumer", default_consumer() if consumer is None else consumer)
        self._private = self.qos is QoS.DURABLE and group is None
        if self._private:                      # a group of its own, removed at close
            group = PRIVATE_GROUP_PREFIX + self.consumer
        self.group = None if group is None else check_group(topic, "group", group)
        check_positive(topic, claim_idle=claim_idle, blob_wait=blob_wait, socket_timeout=socket_timeout)
        if socket_timeout <= BLOCK_CHUNK:
            raise ConfigError(f"{topic}: socket_timeout={socket_timeout!r} must exceed {BLOCK_CHUNK} s (the "
                              "longest blocking read)")
        self.claim_idle, self.blob_wait = float(claim_idle), float(blob_wait)
        self.where = self.broker.redacted()
        self._stream = stream_key(self.app, self.topic)
        self._cursor_key = (cursor_key(self.app, self.topic, self.group)
                            if self.group is not None and self.qos is not QoS.DURABLE else None)
        self._urls = (self.broker.url, data_url(self.broker))
        self._socket_timeout = float(socket_timeout)
        name = f"edgeflow:{self.app}:sub:{self.topic}"
        self._clients = [client(self.broker.url, name=name, socket_timeout=socket_timeout)]
        if self._urls[1] is not None:
            self._clients.append(client(self._urls[1], name=name, socket_timeout=socket_timeout))
        self._aclients: list | None = None
        self._aloop: Any = None
        self._keeper: Any = None
        self._retry = RetrySchedule(backoff or DEFAULT_BACKOFF)
        self._up, self._last_error = True, None
        self._attached = self._attached_once = False
        self._history = True                   # DURABLE: read this consumer's own pending entries first
        self._cursor = ""                      # REALTIME/BALANCED without a group: "<entry> <session> <fid>"
        self._wake_id = "0-0"                  # a blocking wait returns once an entry after this one exists
        self._to_ack: list[bytes] = []
        self._to_unlink: list[bytes] = []      # dual: blobs every group acknowledged, to delete on the data side
        self._live_key = live_key(self.app, self.topic)
        # 'd': the blobs are on the control instance, the ack script deletes them; 'r': it returns their keys
        self._blob_arg = ("r" if self._urls[1] is not None else "d") + topic_blob_prefix(self.app, self.topic)
        self._full_logged = False
        self._stalled: tuple | None = None     # DURABLE: (entry, since) whose blob is being restored
        self._seen: set[tuple[str, int]] = set()
        self._seen_order: deque = deque()
        self._claim_every = min(self.claim_idle / 2, BLOCK_CHUNK)
        self._next_claim = time.monotonic()
        self._lag = -1
        self._counts = dict.fromkeys(("received", "drops", "lost", "duplicates", "reclaimed", "disconnects"),
                                     0)
        self._closed = False
        try:                                   # attach now, so frames published from here on are ours
            self._drive(self._attach())
        except NET_ERRORS as exc:
            self._went_down(exc)
        except ResponseError as exc:
            if not is_full(exc):
                self.close()
                raise BrokenResourceError(f"{self.topic}: redis {self.where} refused to attach: {exc}") from exc
            self._refused_full(exc)

    # -- receiving -------------------------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame per the QoS, waiting at most ``timeout`` seconds (None: forever).

        Raises:
            ReceiveTimeout: nothing arrived in time (a TimeoutError).
            BrokenResourceError: Redis stayed unreachable for the whole wait (it is retried with back-off
                meanwhile; the cause is chained).
            ProtocolError: a malformed entry or payload (acknowledged, so it is not delivered again).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if not self._retry.is_due(now):
                if deadline is not None and now >= deadline:
                    if self._up:                  # only full (refused a write): nothing arrived
                        raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
                    raise self._unreachable(timeout)
                pause = self._retry.remaining(now)
                time.sleep(pause if deadline is None else min(pause, deadline - now))
                continue
            frame = self._attempt(self._wait_time(deadline))
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                if not self._up:
                    raise self._unreachable(timeout)
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")

    def recv_nowait(self) -> Frame | None:
        """The next frame per the QoS, or None when there is none (or Redis is unreachable now: see
        ``is_connected``). Never waits for a frame; a Redis round trip or two is all it costs."""
        if not self._retry.is_due(time.monotonic()):
            self._check_open()
            return None
        return self._attempt(0.0)

    async def arecv(self, timeout: float | None = None) -> Frame:
        """``recv`` for asyncio (uvloop too), over redis.asyncio: waits without blocking the event loop.

        Cancelling it loses nothing: a DURABLE frame read but not returned stays pending and is delivered
        again after ``claim_idle``. The asyncio connections belong to the running loop and are closed when it
        shuts down (``asyncio.run`` does that), or earlier by ``await aclose()`` / ``async with``.
        """
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if not self._retry.is_due(now):
                if deadline is not None and now >= deadline:
                    if self._up:                  # only full (refused a write): nothing arrived
                        raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")
                    raise self._unreachable(timeout)
                pause = self._retry.remaining(now)
                await asyncio.sleep(pause if deadline is None else min(pause, deadline - now))
                continue
            self._check_open()
            try:
                frame = await self._adrive(self._take(self._wait_time(deadline)))
            except NET_ERRORS as exc:
                self._went_down(exc)
                frame = None
            except ResponseError as exc:
                if not is_full(exc):
                    raise BrokenResourceError(f"{self.topic}: redis {self.where}: {exc}") from exc
                self._refused_full(exc)
                frame = None
            else:
                self._came_up()
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                if not self._up:
                    raise self._unreachable(timeout)
                raise ReceiveTimeout(f"{self.topic}: nothing received within {timeout:g} s")

    def _wait_time(self, deadline: float | None) -> float:
        longest = min(BLOCK_CHUNK, self._claim_every) if self.qos is QoS.DURABLE else BLOCK_CHUNK
        if deadline is None:
            return longest
        return max(0.0, min(longest, deadline - time.monotonic()))

    def _attempt(self, block: float) -> Frame | None:
        self._check_open()
        try:
            frame = self._drive(self._take(block))
        except NET_ERRORS as exc:
            self._went_down(exc)
            return None
        except ResponseError as exc:
            if not is_full(exc):
                raise BrokenResourceError(f"{self.topic}: redis {self.where}: {exc}") from exc
            self._refused_full(exc)
            return None
        self._came_up()
        return frame

    def _unreachable(self, timeout: float | None) -> BrokenResourceError:
        exc = BrokenResourceError(f"{self.topic}: redis {self.where} unreachable for {timeout:g} s "
                                  f"({self._last_error}); retrying with back-off")
        exc.__cause__ = self._last_error
        return exc

    # -- the reading logic, as generators of Redis calls --------------------------------------------------

    def _take(self, block: float) -> Generator[_Call, Any, Frame | None]:
        """The next frame, or None; waits up to ``block`` seconds once for the stream to grow."""
        if not self._attached:
            yield from self._attach()
        waited = False
        while True:
            if self._stalled is not None:
                entry = self._stalled[0]
            elif self.qos is QoS.DURABLE:
                entry = yield from self._durable_next()
            else:
                entry = yield from self._take_next()
            if entry is _AGAIN:
                continue
            if entry is None:
                if self._to_unlink:               # nothing to fetch: free the acknowledged blobs now
                    yield _Call(_DATA, (self._unlink_cmd(),))
                if waited or block < 0.001:
                    return None
                yield _Call(_CTRL, (cmd("xread", {self._stream: self._wake_id}, count=1,
                                        block=max(1, int(block * 1000))),))
                waited = True
                continue
            frame = yield from self._load(entry)
            if frame is _AGAIN:                   # a blob being restored: come back later
                return None
            if frame is not None:
                return frame

    def _attach(self) -> Generator[_Call, Any, None]:
        if self.qos is QoS.DURABLE:
            # 'new' at first: frames from now on. Later (the group vanished with a Redis restart) 'all':
            # whatever the stream holds now was published after the restart, or again by the publisher.
            yield _Call(_CTRL, (script_cmd(CREATE_GROUP_SCRIPT, [self._stream],
                                           [self.group, "all" if self._attached_once else "new"]),))
            self._history = True
        else:
            keys = [self._stream, self._live_key] + ([self._cursor_key] if self._cursor_key else [])
            call = _Call(_CTRL, (script_cmd(TAKE_SCRIPT, keys, ["i", self.max_lag, self._cursor]),))
            reply = (yield call)[0]
            self._cursor, self._wake_id = text(reply[1]), text(reply[3])
        self._attached = self._attached_once = True

    def _durable_next(self) -> Generator[_Call, Any, Any]:
        now = time.monotonic()
        claim = now >= self._next_claim
        args = [self.group, self.consumer, "h" if self._history else "n",
                int(self.claim_idle * 1000) if claim else -1, 1, self._blob_arg, *self._to_ack]
        reply = (yield _Call(_CTRL, (script_cmd(DURABLE_READ_SCRIPT, [self._stream, self._live_key], args),)))[0]
        self._to_ack = []                         # sent with that call: acknowledged
        self._freed(reply)                        # deleted with the next call to the data instance
        if claim:
            self._next_claim = now + self._claim_every
        source = text(reply[0])
        if source == "nogroup":                   # Redis restarted empty, or the group was removed
            yield from self._attach()
            return _AGAIN
        lost, entries, deleted = int(reply[1]), reply[2], reply[3]
        if deleted:
            self._lose(len(deleted), f"{len(deleted)} unacknowledged frames of group '{self.group}' were "
                                     "trimmed from the stream before they could be reclaimed")
        if lost:
            self._lose(max(lost, 1), (f"{lost}" if lost > 0 else "some") + " frames were trimmed from the "
                       f"stream before group '{self.group}' read them (stream maxlen too small for its "
                       "backlog)")
        if source == "new":
            self._history = False
            self._wake_id, self._lag = text(reply[4]), int(reply[5])
        elif source == "claim":
            self._counts["reclaimed"] += len(entries)
        if not entries:
            return _AGAIN if source != "new" else None
        entry_id, fields = entries[0]
        return entry_id, fields

    def _take_next(self) -> Generator[_Call, Any, Any]:
        keys = [self._stream, self._live_key] + ([self._cursor_key] if self._cursor_key else [])
        mode = "r" if self.qos is QoS.REALTIME else "b"
        reply = (yield _Call(_CTRL, (script_cmd(TAKE_SCRIPT, keys, [mode, self.max_lag, self._cursor]),)))[0]
        entry, self._cursor, skipped, self._wake_id = reply[0], text(reply[1]), int(reply[2]), text(reply[3])
        self._counts["drops"] += max(0, skipped)
        return (entry[0], entry[1]) if entry else None

    def _load(self, entry: tuple) -> Generator[_Call, Any, Any]:
        """The Frame of a stream entry (payload fetched from the data instance), or None when the entry yields
        none (a duplicate, a lost payload), or _AGAIN when its payload is being restored."""
        entry_id, fields = entry
        durable = self.qos is QoS.DURABLE
        if fields is None:                        # own pending entry whose stream entry was trimmed meanwhile
            self._to_ack.append(entry_id)
            self._lose(1, f"frame entry {text(entry_id)} was trimmed from the stream before it was processed")
            return None
        try:
            fid, session, ts, header, meta = _parse(fields)
        except ProtocolError as exc:
            if durable:
                self._to_ack.append(entry_id)     # acknowledged, so it is not delivered again
            raise ProtocolError(f"{self.topic}: malformed stream entry {text(entry_id)}: {exc}") from None
        if durable and (session, fid) in self._seen:
            self._counts["duplicates"] += 1
            self._to_ack.append(entry_id)
            return None
        key = blob_prefix(self.app, self.topic, session) + str(fid)
        if self._to_unlink:                       # blobs every group acknowledged: same round trip as the GET
            payload = (yield _Call(_DATA, (self._unlink_cmd(), cmd("get", key))))[1]
        else:
            payload = (yield _Call(_DATA, (cmd("get", key),)))[0]
        if payload is None:
            if not durable:
                self._counts["drops"] += 1       # REALTIME/BALANCED: the next frame will do
                return None
            return (yield from self._missing_blob(entry, fid))
        self._stalled = None
        try:
            data = codecs.decode(header, payload)
        except ProtocolError as exc:
            if durable:
                self._to_ack.append(entry_id)
            raise ProtocolError(f"{self.topic}: frame {fid}: {exc}") from None
        if durable:
            self._to_ack.append(entry_id)         # acknowledged by the next read: the node is done then
            self._remember(session, fid)
        self._counts["received"] += 1
        return Frame(data, frame_id=fid, timestamp=ts, meta=meta, topic=self.topic)

    def _missing_blob(self, entry: tuple, fid: int) -> Generator[_Call, Any, Any]:
        """A DURABLE entry without its payload. If the data instance restarted after the frame was published,
        the publisher (which keeps unacknowledged frames) sets the payload again: wait up to blob_wait for it.
        Otherwise the payload expired (blob_ttl) and the frame is lost: count, log, acknowledge, go on."""
        now = time.monotonic()
        if self._stalled is None or self._stalled[0][0] != entry[0]:
            info = (yield _Call(_DATA, (cmd("info", "server"),)))[0]
            now_ms = int(info.get("server_time_usec", 0)) // 1000
            started_ms = now_ms - int(info.get("uptime_in_seconds", 0)) * 1000
            if started_ms < parse_id(entry[0])[0] - 1000:
                self._stalled = None
                self._to_ack.append(entry[0])
                self._lose(1, f"the payload of frame {fid} expired before it was read (blob_ttl too short "
                              "for this consumer's backlog)")
                return None
            self._stalled = (entry, now)
            log.info("%s: the payload of frame %d is gone with a data redis restart; waiting up to %g s for "
                     "the publisher to restore it", self.topic, fid, self.blob_wait)
        elif now - self._stalled[1] > self.blob_wait:
            self._stalled = None
            self._to_ack.append(entry[0])
            self._lose(1, f"the payload of frame {fid} was lost in a data redis restart and not restored "
                          f"within {self.blob_wait:g} s")
            return None
        yield _Call(_SLEEP, 0.02)
        return _AGAIN

    def _freed(self, reply: Any) -> None:
        """Note the blob keys an ack script freed (dual mode: they are deleted on the data instance)."""
        if isinstance(reply, list) and len(reply) > 6 and reply[6] and self._blob_arg[0] == "r":
            self._to_unlink.extend(reply[6])

    def _unlink_cmd(self) -> tuple:
        keys, self._to_unlink = self._to_unlink, []
        return cmd("unlink", *keys)

    def _remember(self, session: str, fid: int) -> None:
        self._seen.add((session, fid))
        self._seen_order.append((session, fid))
        if len(self._seen_order) > SEEN_FRAMES:
            self._seen.discard(self._seen_order.popleft())

    def _lose(self, n: int, why: str) -> None:
        self._counts["lost"] += n
        log.warning("%s: %s", self.topic, why)

    # -- drivers: the same generators over the sync or the asyncio client ------------------------------------

    def _drive(self, gen: Generator) -> Any:
        try:
            call = next(gen)
            while True:
                if call.target == _SLEEP:
                    time.sleep(call.commands)
                    reply = None
                else:
                    reply = run(self._clients[min(call.target, len(self._clients) - 1)], call.commands)
                call = gen.send(reply)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()

    async def _async_clients(self) -> list:
        """The redis.asyncio clients of the running loop, made on first use in that loop.

        A small async generator (``_keeper``) is started in the loop and kept: asyncio.run() (and uvloop)
        close every live async generator before closing the loop (``shutdown_asyncgens``), and the keeper's
        ``finally`` closes the clients then, inside their loop, even when nobody called ``aclose()``.
        """
        loop = asyncio.get_running_loop()
        if self._aclients is None or self._aloop is not loop:
            name = f"edgeflow:{self.app}:asub:{self.topic}"
            clients = [client(u, name=name, socket_timeout=self._socket_timeout, aio=True)
                       for u in self._urls if u is not None]
            self._aclients, self._aloop = clients, loop
            self._keeper = _keeper(clients)
            await self._keeper.__anext__()
        return self._aclients

    async def _adrive(self, gen: Generator) -> Any:
        clients = await self._async_clients()
        try:
            call = next(gen)
            while True:
                if call.target == _SLEEP:
                    await asyncio.sleep(call.commands)
                    reply = None
                else:
                    reply = await arun(clients[min(call.target, len(clients) - 1)], call.commands)
                call = gen.send(reply)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()

    # -- state ------------------------------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        self._last_error = exc
        if self._up:
            self._counts["disconnects"] += 1
            log.warning("%s: redis %s unreachable (%s: %s); reconnecting with back-off", self.topic,
                        self.where, type(exc).__name__, exc)
        self._up = False
        self._retry.failed(time.monotonic())

    def _came_up(self) -> None:
        if not self._up:
            log.warning("%s: redis %s reachable again", self.topic, self.where)
            self._up = True
        if self._full_logged:
            log.warning("%s: redis %s takes writes again; subscriber attached", self.topic, self.where)
            self._full_logged = False
        self._retry.succeeded()

    def _refused_full(self, exc: BaseException) -> None:
        """Redis is full and refused a write this subscriber needs (creating its group when it attaches; reads
        and acknowledgements run when full): retry with back-off, logged once."""
        if not self._full_logged:
            log.warning("%s: redis %s is full (%s); attaching again with back-off", self.topic, self.where, exc)
            self._full_logged = True
        self._retry.failed(time.monotonic())

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: subscriber is closed")

    def statistics(self) -> RedisSubscriberStats:
        """A snapshot of this subscriber (no Redis call)."""
        c = self._counts
        return RedisSubscriberStats(self.topic, c["received"], c["drops"], c["received"], 0, self._lag,
                                    c["lost"], c["duplicates"], c["reclaimed"], c["disconnects"], self._up)

    def is_connected(self) -> bool:
        """True unless the last Redis call failed (reconnection is then retried with back-off)."""
        return self._up

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    def _farewell(self) -> list:
        """What close() sends: the last acknowledgements, and forgetting this consumer if it holds nothing."""
        commands = []
        if self.qos is QoS.DURABLE and self._attached:
            if self._private:
                commands.append(cmd("xgroup_destroy", self._stream, self.group))
                return commands
            if self._to_ack:                      # acknowledge only ('a'), freeing blobs as every read does
                args = [self.group, self.consumer, "a", -1, 1, self._blob_arg, *self._to_ack]
                commands.append(script_cmd(DURABLE_READ_SCRIPT, [self._stream, self._live_key], args))
            commands.append(script_cmd(FORGET_CONSUMER_SCRIPT, [self._stream], [self.group, self.consumer]))
        return commands

    def close(self) -> None:
        """Acknowledge the last DURABLE frame, then close the connections. Idempotent. If Redis is
        unreachable, the frame stays pending and is delivered again (to this consumer name, or reclaimed by
        another)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._up:
                for command in self._farewell():
                    self._freed(run(self._clients[0], (command,))[0])
                if self._to_unlink:
                    run(self._clients[1], (self._unlink_cmd(),))
        except (NET_ERRORS + (ResponseError,)) as exc:
            log.warning("%s: could not acknowledge the last frame at close (%s); it will be delivered again",
                        self.topic, exc)
        finally:
            for c in self._clients:
                c.close()
            self._close_async_now()

    async def aclose(self) -> None:
        """``close`` for a subscriber that used ``arecv``: closes the asyncio connections in their loop."""
        if self._closed:
            return
        if self._aclients is None or self._aloop is not asyncio.get_running_loop():
            self.close()
            return
        self._closed = True
        try:
            if self._up:
                for command in self._farewell():
                    self._freed((await arun(self._aclients[0], (command,)))[0])
                if self._to_unlink:
                    await arun(self._aclients[1], (self._unlink_cmd(),))
        except (NET_ERRORS + (ResponseError,)) as exc:
            log.warning("%s: could not acknowledge the last frame at close (%s); it will be delivered again",
                        self.topic, exc)
        finally:
            for c in self._clients:
                c.close()
            keeper, self._keeper, self._aclients = self._keeper, None, None
            await keeper.aclose()                 # closes the asyncio clients

    def _close_async_now(self) -> None:
        """Without awaiting: drop the asyncio connections' transports at once. Their loop's shutdown (the
        keeper) or ``aclose`` is the clean way; this covers a sync ``close()`` while that loop still runs."""
        aclients, self._aclients, self._keeper = self._aclients, None, None
        for c in aclients or ():
            pool = c.connection_pool
            conns = [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]
            for conn in conns:
                try:
                    conn._close()
                except RuntimeError:              # its loop is closed already: nothing left to do
                    pass

    def __enter__(self) -> "RedisSubscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "RedisSubscriber":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._closed = True
            for c in self._clients:
                c.close()
            self._close_async_now()

    def __repr__(self) -> str:
        group = f" group={self.group}" if self.group else ""
        return f"<RedisSubscriber {self._stream} {self.qos.name}{group}{' closed' if self._closed else ''}>"


def _parse(fields: list) -> tuple[int, str, float, dict, dict]:
    """(frame id, session, timestamp, payload header, meta) of a stream entry's field list."""
    try:
        d = dict(zip(fields[::2], fields[1::2]))
        meta = json.loads(d[b"m"]) if b"m" in d else {}
        header = json.loads(d[b"h"])
        return int(d[b"f"]), d[b"s"].decode(), float(d[b"t"]), header, meta
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{type(exc).__name__}: {exc}") from None


async def _keeper(clients: list) -> Any:
    """Lives as long as the event loop that runs it; closes the asyncio clients when the loop shuts down."""
    try:
        yield
    finally:
        for c in clients:
            try:
                await c.aclose()
            except (RuntimeError, *NET_ERRORS) as exc:      # a loop that is going away: nothing more to do
                log.debug("closing an asyncio redis client: %s", exc)
