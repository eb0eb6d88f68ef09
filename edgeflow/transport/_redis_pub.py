"""RedisPublisher: publishes a topic's frames to Redis, spools and retains DURABLE frames, and rebuilds what a
restarted Redis lost (see edgeflow.transport.redis for the whole picture).

The caller's thread sends (one pipelined round trip per instance); a poller thread per publisher reads the
groups' acknowledgements, keeps retained blobs alive, notices restarts and reconnects with back-off.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import warnings
import weakref
from typing import Any, Iterable

import numpy as np
from redis.exceptions import ResponseError

from edgeflow.errors import BackpressureTimeout, BrokenResourceError, ClosedResourceError, FrameTooLarge
from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import codecs
from edgeflow.transport._redis_common import (DEFAULT_BACKOFF, MAX_PAYLOAD_BYTES, NET_ERRORS,
                                              PRIVATE_GROUP_PREFIX, MiB, as_broker, blob_prefix, check_group,
                                              check_positive, client, data_url, declare_group, is_full,
                                              meta_json, names, run_one, script_cmd, stream_key, text)
from edgeflow.transport._redis_held import ZERO_ID, GroupPosition, Held, HeldFrames, parse_id
from edgeflow.transport._redis_lua import CREATE_GROUP_SCRIPT, Script
from edgeflow.transport._redis_pubtypes import RedisFull, RedisLoan, RedisPublisherStats, StreamVanished
from edgeflow.transport.backoff import Backoff, RetrySchedule

log = logging.getLogger("edgeflow.transport.redis")


class RedisPublisher:
    """Publishes a topic's frames to Redis.

    Args:
        topic: the topic name (letters, digits, ``-``, ``_``, ``.``).
        app: the app namespace (default ``$EDGEFLOW_APP`` or ``"default"``).
        broker: a RedisBroker, a DualRedisBroker (blobs on its data instance) or a ``redis://`` URL.
        codec: None (raw), ``"jpeg"``, ``"png"`` or ``"lz4"`` (see edgeflow.transport.codecs).
        durable_groups: DURABLE consumer groups to create before the first frame, so they receive every frame.
            Groups that consumers create later are found by polling and get the same care from then on.
        maxlen: stream entries kept (exact trimming below 1000, approximate above).
        blob_ttl: seconds a payload blob lives; frames the publisher retains for a durable group get their TTL
            extended until the group acknowledged them.
        spool_frames, spool_bytes: the bound on DURABLE frames held here (spooled while Redis is unreachable,
            retained until acknowledged).
        backpressure_timeout: seconds a DURABLE publish waits for room before BackpressureTimeout.
        poll_interval: seconds between checks of the groups' acknowledgements and of the server's identity.
        orphan_after: seconds without a read after which a private group (a DURABLE subscriber without
            ``group``) counts as abandoned and is removed, so a crashed ad-hoc subscriber cannot hold the
            publisher back for ever. Named groups are never removed.
        backoff: reconnection delays (default DEFAULT_BACKOFF).
        socket_timeout: seconds a Redis call may take before the connection counts as lost.

    Raises:
        ConfigError: a bad name, codec or option. Redis being unreachable is not an error here: the publisher
            starts offline and connects with back-off.

    Example:
        >>> with RedisPublisher("camera", app="demo", broker=RedisBroker("redis://10.0.0.5:6379/0")) as pub:
        ...     fid = pub.publish(np.zeros((480, 640, 3), np.uint8), meta={"exposure": 0.01})
    """

    def __init__(self, topic: str, *, app: str | None = None, broker: Any, codec: str | None = None,
                 durable_groups: Iterable[str] = (), maxlen: int = 10_000, blob_ttl: float = 60.0,
                 spool_frames: int = 1000, spool_bytes: int = 256 * MiB, backpressure_timeout: float = 5.0,
                 poll_interval: float = 0.2, orphan_after: float = 60.0, backoff: Backoff | None = None,
                 socket_timeout: float = 5.0) -> None:
        self._closed = True
        self.app, self.topic = names(app, topic)
        self.broker = as_broker(broker, topic)
        self.codec = codecs.check_codec(codec)
        check_positive(topic, maxlen=maxlen, blob_ttl=blob_ttl, spool_frames=spool_frames,
                       spool_bytes=spool_bytes, backpressure_timeout=backpressure_timeout,
                       poll_interval=poll_interval, orphan_after=orphan_after, socket_timeout=socket_timeout)
        self.orphan_after = float(orphan_after)
        self.maxlen, self.blob_ttl, self.poll_interval = int(maxlen), float(blob_ttl), float(poll_interval)
        self.backpressure_timeout = float(backpressure_timeout)
        groups = tuple(check_group(topic, "group", g) for g in durable_groups)
        self.where = self.broker.redacted()
        self._stream = stream_key(self.app, self.topic)
        self._session = secrets.token_hex(4)
        self._blob_prefix = blob_prefix(self.app, self.topic, self._session)
        self._ttl_ms = max(1, int(self.blob_ttl * 1000))
        name = f"edgeflow:{self.app}:pub:{self.topic}"
        self._ctrl = client(self.broker.url, name=name, socket_timeout=socket_timeout)
        data = data_url(self.broker)
        self._data = self._ctrl if data is None else client(data, name=name, socket_timeout=socket_timeout)
        self._dual = data is not None
        self._cond = threading.Condition(threading.RLock())
        self._held = HeldFrames(int(spool_frames), int(spool_bytes))
        self._groups: dict[str, GroupPosition | None] = dict.fromkeys(groups)
        self._retry = RetrySchedule(backoff or DEFAULT_BACKOFF)
        self._run_ids: dict[str, str | None] = {"ctrl": None, "data": None}
        self._up = self._connected_once = self._stopping = False
        self._down_since = time.monotonic()
        self._full = False                         # Redis refuses writes for memory (see _became_full)
        self._full_chunk = 1                       # frames per request while full (see _send_held)
        self._full_since = 0.0
        self._full_seconds = 0.0
        self._last_error: BaseException | None = None
        self._waiters = 0
        self._empty_since: dict[str, float] = {}   # private groups seen without a consumer, since when
        self._next_fid = 1
        self._counts = dict.fromkeys(("published", "sent", "dropped", "republished", "trimmed",
                                      "backpressure_waits", "disconnects", "full_events", "dropped_full"), 0)
        self._closed = False
        with self._cond:
            if not self._recover("start"):
                log.warning("%s: redis %s unreachable at start (%s); %s", self.topic, self.where,
                            self._last_error, self._offline_policy())
        self._last_poll = time.monotonic()
        self._next_poll = self._last_poll + self.poll_interval
        # the thread holds the publisher only through a weak reference, so a forgotten publisher is collected
        # (and warned about) instead of living on with its thread
        self._thread = threading.Thread(target=_poller, args=(weakref.ref(self),),
                                        name=f"edgeflow-redis-pub:{self.topic}", daemon=True)
        self._thread.start()

    # -- publishing ---------------------------------------------------------------------------------------

    def publish(self, data: Any, timestamp: float | None = None, meta: dict | None = None) -> int:
        """Publish ``data`` (ndarray, bytes-like, a dict/list message with arrays nested, or Frame); returns its
        frame_id.

        ``timestamp`` is the capture time in seconds (default: now, or the Frame's); ``meta`` a JSON-able
        dict. Never raises because Redis is unreachable or full, except for a DURABLE frame that does not fit the
        full spool. A full Redis (out of memory) is back-pressure: DURABLE frames are kept and sent as space
        frees, other frames are dropped and counted.

        Raises:
            BrokenResourceError: Redis is unreachable and the spool is full (the frame is not published),
                or Redis refused the frame for another reason than memory.
            BackpressureTimeout: durable groups left no room within ``backpressure_timeout``, or Redis stayed
                full that long with the bound reached (the frame is not published; nothing held is lost).
            TypeError, ValueError: data that cannot be sent, or a codec that does not fit it.
            FrameTooLarge: a payload over 512 MiB or meta over MAX_META_BYTES.
            ClosedResourceError: after close().
        """
        if isinstance(data, Frame):
            timestamp = data.timestamp if timestamp is None else timestamp
            meta = data.meta if meta is None else meta
            data = data.data
        ts = time.time() if timestamp is None else float(timestamp)
        header, payload = codecs.encode(data, self.codec)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise FrameTooLarge(f"{self.topic}: payload is {len(payload)} bytes, Redis takes at most "
                                f"{MAX_PAYLOAD_BYTES}")
        meta_blob = meta_json(self.topic, meta)
        head = json.dumps(header, separators=(",", ":"))
        with self._cond:
            self._check_open()
            durable = bool(self._groups)
            buffer = None
            if durable:
                self._wait_for_room(len(payload))
                if not isinstance(payload, bytes):    # kept until acknowledged; the caller may reuse it
                    payload, buffer = self._held.copy_of(payload)
            fid = self._next_fid
            self._next_fid += 1
            self._counts["published"] += 1
            fields = {b"f": fid, b"s": self._session, b"t": repr(ts), b"h": head}
            if meta_blob:
                fields[b"m"] = meta_blob
            frame = Held(fid, fields, payload, self._blob_prefix + str(fid), buffer)
            if not self._up or self._held.spool:
                self._offline(frame, durable)
                return fid
            try:
                entry = self._send([frame], nomkstream=durable)[0]
            except NET_ERRORS as exc:
                self._went_down(exc)
                self._offline(frame, durable)
                return fid
            except RedisFull as full:
                self._became_full(full.cause)
                if durable:                       # kept, sent by the poller as space frees
                    self._held.add_spooled(frame)
                    self._cond.notify_all()
                else:
                    self._counts["dropped"] += 1
                    self._counts["dropped_full"] += 1
                return fid
            except ResponseError as exc:
                raise BrokenResourceError(
                    f"{self.topic}: redis {self.where} refused frame {fid}: {exc}") from exc
            if self._full:
                self._room_again()
            if entry is None:                 # the stream vanished: Redis restarted empty, or a reset
                self._held.add_spooled(frame)
                self._recover("the stream vanished")
            else:
                self._counts["sent"] += 1
                if durable:
                    self._held.retain(frame, parse_id(entry), time.monotonic())
        return fid

    def loan(self, shape: tuple, dtype: Any = np.uint8, *, timestamp: float | None = None,
             meta: dict | None = None) -> RedisLoan:
        """A writable array to fill, published by ``commit()`` (or leaving ``with pub.loan(...) as buf:``).

        The same interface as the shared-memory Loan, so a node that fills loans runs over Redis unchanged;
        here the array is ordinary memory and ``commit`` publishes it like ``publish`` (a network transport
        copies the frame once anyway).
        """
        self._check_open()
        return RedisLoan(self, shape, dtype, timestamp, meta)

    def declare_group(self, group: str, qos: QoS | str = QoS.DURABLE) -> None:
        """Create a subscriber group now (see the module function ``declare_group``); a DURABLE one also gets
        this publisher's care from now on (its frames are kept until it acknowledges them).

        Raises:
            BrokenResourceError: Redis unreachable.
        """
        check_group(self.topic, "group", group)
        self._check_open()
        declare_group(self.topic, group, qos, app=self.app, broker=self.broker)
        if QoS.parse(qos) is QoS.DURABLE:
            with self._cond:
                self._groups.setdefault(group, None)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.topic}: publisher is closed")

    def _offline(self, frame: Held, durable: bool) -> None:
        if durable:
            self._held.add_spooled(frame)
            self._cond.notify_all()
        else:
            self._counts["dropped"] += 1

    def _bound(self) -> str:
        return f"{self._held.max_frames} frames / {self._held.max_bytes / MiB:g} MiB"

    def _offline_policy(self) -> str:
        if self._groups:
            return f"DURABLE frames are spooled here (bound {self._bound()}) until it is back"
        return "frames are dropped (and counted) until it is back"

    def _wait_for_room(self, size: int) -> None:
        """Wait (lock released) until the held frames leave room for ``size`` bytes, or raise."""
        if self._held.has_room(size):
            return
        deadline = time.monotonic() + self.backpressure_timeout
        self._counts["backpressure_waits"] += 1
        self._waiters += 1
        self._cond.notify_all()                   # the poller checks acknowledgements more often meanwhile
        try:
            while not self._held.has_room(size):
                self._check_open()
                if not self._up:
                    raise BrokenResourceError(
                        f"{self.topic}: redis {self.where} unreachable and the spool is full "
                        f"({len(self._held)} frames, {self._held.nbytes / MiB:.1f} MiB; "
                        f"bound {self._bound()}): frame not published") from self._last_error
                remaining = deadline - time.monotonic()
                if remaining <= 0 and self._full:
                    raise BackpressureTimeout(
                        f"{self.topic}: redis {self.where} is full (it refuses writes: maxmemory) and "
                        f"{len(self._held)} frames are held here (bound {self._bound()}) after "
                        f"{self.backpressure_timeout:g} s: frame not published")
                if remaining <= 0:
                    raise BackpressureTimeout(
                        f"{self.topic}: durable group(s) {', '.join(sorted(self._groups))} left "
                        f"{len(self._held)} frames unacknowledged for {self.backpressure_timeout:g} s "
                        f"(bound {self._bound()}): frame not published")
                self._cond.wait(remaining)
        finally:
            self._waiters -= 1

    def _send(self, frames: list[Held], *, nomkstream: bool) -> list:
        """SET each blob, then XADD each entry: one pipeline per instance, the blobs first (a consumer that
        sees an entry finds its payload). Returns the entry ids (None where NOMKSTREAM found no stream).

        Raises RedisFull when Redis refused a write for memory, with the entries of the frames it took: a
        prefix of ``frames``, in order, each with its blob, so what is left can be sent again later in order.
        Where one refusal could leave a later command accepted (an entry without its blob, or out of order:
        a refused SET frees its own payload, so the next command may fit), the commands go as one MULTI/EXEC
        transaction, which Redis runs whole or not at all.
        """
        xadd = {"maxlen": self.maxlen, "approximate": self.maxlen >= 1000, "nomkstream": nomkstream}
        if self._dual:
            pipe = self._data.pipeline(transaction=False)
            for f in frames:
                pipe.set(f.blob_key, f.payload, px=self._ttl_ms)
            replies = pipe.execute(raise_on_error=False)
            refused = None
            for k, reply in enumerate(replies):
                if isinstance(reply, Exception):
                    if not is_full(reply):
                        raise reply
                    refused, frames = reply, frames[:k]       # blobs after it are set again when resent
                    break
            entries = []
            if frames:
                pipe = self._ctrl.pipeline(transaction=len(frames) > 1)
                for f in frames:
                    pipe.xadd(self._stream, f.fields, **xadd)
                try:
                    entries = pipe.execute()
                except ResponseError as exc:
                    if not is_full(exc):
                        raise
                    raise RedisFull([], exc) from exc
            if refused is not None:
                raise RedisFull(entries, refused)
            return entries
        pipe = self._ctrl.pipeline(transaction=True)
        for f in frames:
            pipe.set(f.blob_key, f.payload, px=self._ttl_ms)
            pipe.xadd(self._stream, f.fields, **xadd)
        try:
            return pipe.execute()[1::2]
        except ResponseError as exc:
            if not is_full(exc):
                raise
            raise RedisFull([], exc) from exc

    def _send_held(self, frames: list[Held]) -> int:
        """Send DURABLE frames in order, in chunks; each one Redis took is retained. On failure the rest goes
        back to the front of the spool and the error propagates. While Redis is full chunks start at one frame
        (a probe, rather than megabytes that a full Redis reads only to refuse: a request's own bytes count
        toward its memory) and double with every chunk it takes, back to one after a refusal."""
        done = 0
        limit = self._full_chunk if self._full else 256
        while done < len(frames):
            chunk, size = [], 0
            for f in frames[done:]:
                if chunk and (len(chunk) >= limit or size + f.size > 32 * MiB):
                    break
                chunk.append(f)
                size += f.size
            try:
                entries = self._send(chunk, nomkstream=True)
            except RedisFull as full:
                self._full_chunk = 1
                now = time.monotonic()
                for f, entry in zip(chunk, full.entries):     # taken before the refusal: in Redis now
                    if entry is None:
                        break
                    self._held.retain(f, parse_id(entry), now)
                    done += 1
                self._held.respool_front(frames[done:])
                full.sent = done
                raise
            except BaseException:
                self._held.respool_front(frames[done:])
                raise
            now = time.monotonic()
            for k, (f, entry) in enumerate(zip(chunk, entries)):
                if entry is None:
                    self._held.respool_front(frames[done + k:])
                    raise StreamVanished()
                self._held.retain(f, parse_id(entry), now)
            done += len(chunk)
            if self._full:                        # it went through: larger chunks next
                self._full_chunk = limit = min(limit * 2, 256)
        return done

    # -- connection, recovery -----------------------------------------------------------------------------

    def _went_down(self, exc: BaseException, quietly: bool = False) -> None:
        self._last_error = exc
        if self._up:
            self._counts["disconnects"] += 1
            self._down_since = time.monotonic()
        if self._up and not quietly:
            log.warning("%s: redis %s unreachable (%s: %s); %s; reconnecting with back-off", self.topic,
                        self.where, type(exc).__name__, exc, self._offline_policy())
        self._up = False
        self._retry.failed(time.monotonic())
        self._cond.notify_all()

    def _recover(self, reason: str) -> bool:
        """(Re)connect: check the servers' identity, make sure the stream and groups exist, publish again
        what Redis lost, then the spool, in frame order. Called with the lock held; True when up."""
        for _ in range(3):
            republished, phase = 0, "republish"
            try:
                again = self._reconcile()
                republished = self._send_held(again)
                phase = "spool"
                spooled = self._send_held(self._held.take_spool())
            except StreamVanished:
                continue                          # reset or restarted again meanwhile: once more
            except NET_ERRORS as exc:
                self._went_down(exc)
                return False
            except RedisFull as full:            # connected, but Redis has no room: the poller sends the rest
                if phase == "republish":
                    self._frames_back(full.sent, 0)
                else:
                    self._frames_back(republished, full.sent)
                self._became_full(full.cause)
                self._up = self._connected_once = True
                self._retry.succeeded()
                self._cond.notify_all()
                return True
            except ResponseError as exc:
                if is_full(exc):                  # e.g. creating a group: not reconciled yet, so retry
                    self._became_full(exc)
                    self._went_down(exc, quietly=True)
                    return False
                log.error("%s: redis %s refused the reconnection (%s); retrying with back-off", self.topic,
                          self.where, exc)
                self._went_down(exc)
                return False
            self._counts["republished"] += republished
            self._counts["sent"] += spooled
            if not self._up and self._connected_once or republished:
                log.warning("%s: redis %s back after %.1f s (%s): %d spooled frames sent, %d published again",
                            self.topic, self.where, time.monotonic() - self._down_since, reason, spooled,
                            republished)
            self._up = self._connected_once = True
            self._retry.succeeded()
            self._cond.notify_all()
            return True
        self._went_down(ConnectionError("the stream kept vanishing while it was rebuilt"))
        return False

    def _frames_back(self, republished: int, sent: int) -> None:
        """Count frames a partly refused send got through (republished ones first, then spooled ones)."""
        self._counts["republished"] += republished
        self._counts["sent"] += sent

    def _became_full(self, exc: BaseException) -> None:
        """Redis refused a write for memory. Logged once per stretch; ``_room_again`` ends it."""
        self._last_error = exc
        if self._full:
            return
        self._full, self._full_since = True, time.monotonic()
        self._full_chunk = 1
        self._counts["full_events"] += 1
        policy = (f"DURABLE frames are kept here (bound {self._bound()}) and sent as space frees"
                  if self._groups else "frames are dropped (and counted) until it has room")
        log.warning("%s: redis %s is full (%s); %s", self.topic, self.where, exc, policy)

    def _room_again(self) -> None:
        """A write went through after Redis was full."""
        if not self._full:
            return
        now = time.monotonic()
        self._full = False
        self._full_seconds += now - self._full_since
        log.warning("%s: redis %s takes frames again after %.1f s full (%d frames dropped while full in all, "
                    "%d held here)", self.topic, self.where, now - self._full_since,
                    self._counts["dropped_full"], len(self._held))
        self._cond.notify_all()

    def _flush_spool(self) -> None:
        """Up (full, or full until now): try the spooled frames again, in order (one first while full, as a
        probe). Lock held."""
        try:
            sent = self._send_held(self._held.take_spool())
        except RedisFull as full:
            self._frames_back(0, full.sent)
            return
        except StreamVanished:
            self._recover("the stream vanished")
            return
        except NET_ERRORS as exc:
            self._went_down(exc)
            return
        except ResponseError as exc:
            log.error("%s: redis %s refused the spooled frames (%s); retrying", self.topic, self.where, exc)
            return
        self._counts["sent"] += sent
        self._room_again()
        self._cond.notify_all()

    def _reconcile(self) -> list[Held]:
        """Bring Redis up to date with what this publisher answers for; the frames to publish again."""
        pipe = self._ctrl.pipeline(transaction=False)
        pipe.info("server")
        pipe.exists(self._stream)
        pipe.xinfo_groups(self._stream)
        info, exists, groups_info = pipe.execute(raise_on_error=False)
        for reply in (info, exists):
            if isinstance(reply, Exception):
                raise reply
        run_id = info.get("run_id")
        if isinstance(groups_info, list):          # groups consumers made before this publisher started
            for g in groups_info:
                self._groups.setdefault(text(g["name"]), None)
        restarted = self._run_ids["ctrl"] is not None and run_id != self._run_ids["ctrl"]
        data_restarted = False
        if self._dual:
            data_id = self._data.info("server").get("run_id")
            data_restarted = self._run_ids["data"] is not None and data_id != self._run_ids["data"]
            self._run_ids["data"] = data_id
        self._run_ids["ctrl"] = run_id
        for group in self._groups:
            start = "all" if self._connected_once else "new"
            self._run_script(CREATE_GROUP_SCRIPT, [self._stream], [group, start])
        if not self._connected_once and self._counts["published"] == 0:
            self._continue_frame_ids()
        again: list[Held] = []
        if self._held.retained and (restarted or not exists):
            again = self._missing_from_stream(everything=not exists)
        if data_restarted:
            self._restore_blobs([f for f in self._held.retained.values()])
        return again

    def _run_script(self, script: Script, keys: list, args: list) -> Any:
        return run_one(self._ctrl, script_cmd(script, keys, args))

    def _continue_frame_ids(self) -> None:
        """A new publisher of an existing stream goes on from its newest frame id (ids increase per topic)."""
        newest = self._ctrl.xrevrange(self._stream, count=1)
        if newest:
            try:
                self._next_fid = int(newest[0][1][b"f"]) + 1
            except (KeyError, ValueError):
                log.warning("%s: the newest entry of %s is not an EdgeFlow frame; frame ids start at 1",
                            self.topic, self._stream)

    def _missing_from_stream(self, *, everything: bool) -> list[Held]:
        """Retained frames whose entries Redis no longer has (all of them when the stream was gone), taken
        out of the retained set to be published again."""
        frames = list(self._held.retained.values())
        if not everything:
            pipe = self._ctrl.pipeline(transaction=False)
            for f in frames:
                entry = f"{f.entry[0]}-{f.entry[1]}"
                pipe.xrange(self._stream, min=entry, max=entry, count=1)
            present = pipe.execute()
            frames = [f for f, hit in zip(frames, present) if not hit]
        self._held.forget(frames)
        return frames

    def _restore_blobs(self, frames: list[Held]) -> None:
        """The data instance lost blobs (restart): set those of the retained frames again."""
        if frames:
            pipe = self._data.pipeline(transaction=False)
            for f in frames:
                pipe.set(f.blob_key, f.payload, px=self._ttl_ms)
            pipe.execute()
            now = time.monotonic()
            for f in frames:
                f.set_at = now
            log.warning("%s: data redis lost %d retained blobs; set them again", self.topic, len(frames))

    # -- the poller thread --------------------------------------------------------------------------------

    def _step(self) -> bool:
        """One turn of the poller thread: wait for the next poll or reconnection, do it; False to stop."""
        with self._cond:
            if self._stopping:
                return False
            now = time.monotonic()
            if not self._up:
                wait = self._retry.remaining(now)
            else:
                due = self._next_poll
                if self._waiters or self._full:   # a publisher waits for room: look at the groups more often
                    due = min(due, self._last_poll + self.poll_interval / 4)
                wait = due - now
            if wait > 0:
                self._cond.wait(min(wait, self.poll_interval))
                return True
            down = not self._up
        if down:
            self._reconnect()
            return True
        self._last_poll = time.monotonic()
        try:
            self._poll()
            with self._cond:                      # acknowledged frames freed space (their blobs are deleted)
                # while full, and also once it is not: frames spooled meanwhile must not wait for the next
                # publish (a stream that ended has none)
                if self._up and self._held.spool and not self._stopping:
                    self._flush_spool()
        except Exception:                         # a bug must not silently end the poller: log it and go on
            log.exception("%s: polling redis %s failed", self.topic, self.where)
        self._next_poll = time.monotonic() + self.poll_interval
        return True

    def _reconnect(self) -> None:
        """Probe the server(s) without the lock (an unreachable host may take the whole connect timeout, and
        publishes must not wait for that), then recover under the lock."""
        try:
            self._ctrl.ping()
            if self._dual:
                self._data.ping()
        except NET_ERRORS as exc:
            with self._cond:
                self._went_down(exc)                  # the next attempt, later by the back-off
            return
        with self._cond:
            if not self._up and not self._stopping:
                self._recover("reconnected")
        self._next_poll = time.monotonic() + self.poll_interval

    def _poll(self) -> None:
        """Read the groups' progress and the servers' identity; release acknowledged frames, count trimmed
        ones, keep retained blobs alive, and recover when Redis restarted or lost the stream."""
        with self._cond:
            if not self._up or self._stopping:
                return
            groups = list(self._groups)
            due = self._held.due_for_refresh(time.monotonic(), self.blob_ttl / 2)
        try:
            pipe = self._ctrl.pipeline(transaction=False)
            pipe.info("server")
            pipe.xinfo_groups(self._stream)
            pipe.xinfo_stream(self._stream)
            for g in groups:
                pipe.xpending(self._stream, g)
            private = [g for g in groups if g.startswith(PRIVATE_GROUP_PREFIX)]
            for g in private:
                pipe.xinfo_consumers(self._stream, g)
            replies = pipe.execute(raise_on_error=False)
            refresh = self._data.pipeline(transaction=False)
            if self._dual:
                refresh.info("server")
            for f in due:
                refresh.pexpire(f.blob_key, self._ttl_ms)
            data_replies = refresh.execute(raise_on_error=False) if (due or self._dual) else []
        except NET_ERRORS as exc:
            with self._cond:
                self._went_down(exc)
            return
        with self._cond:
            if self._up and not self._stopping:
                consumers = replies[len(replies) - len(private):]
                self._apply_poll(groups, due, replies[:len(replies) - len(private)], data_replies)
                self._remove_orphans(dict(zip(private, consumers)))

    def _apply_poll(self, groups: list[str], due: list[Held], replies: list, data_replies: list) -> None:
        info, groups_info, stream_info = replies[:3]
        pending = dict(zip(groups, replies[3:]))
        if isinstance(info, dict) and info.get("run_id") != self._run_ids["ctrl"]:
            self._recover("redis restarted")
            return
        if self._dual:
            data_info, data_replies = data_replies[0], data_replies[1:]
            if isinstance(data_info, dict) and data_info.get("run_id") != self._run_ids["data"]:
                self._recover("data redis restarted")
                return
        if isinstance(groups_info, Exception):          # no stream
            if self._groups or self._held.retained:
                self._recover("the stream vanished")
            return
        self._update_groups(groups_info, pending)
        positions = [p for p in self._groups.values() if p is not None]
        if isinstance(stream_info, dict):
            first = stream_info.get("first-entry")
            first_id = parse_id(first[0]) if first else None
            gone = self._held.drop_trimmed(first_id, stream_info.get("length", 0), positions)
            if gone:
                self._counts["trimmed"] += len(gone)
                log.warning("%s: %d frames (%d-%d) were trimmed from the stream (maxlen %d) before every "
                            "durable group read them; raise maxlen or speed the consumer up", self.topic,
                            len(gone), gone[0], gone[-1], self.maxlen)
        if len(positions) == len(self._groups):
            self._held.release_acked(positions)
        now, lost = time.monotonic(), []
        for f, reply in zip(due, data_replies):
            if reply == 1:
                f.set_at = now
            elif reply == 0 and f.fid in self._held.retained:
                lost.append(f)
        try:
            self._restore_blobs(lost)
        except NET_ERRORS as exc:
            self._went_down(exc)
        except ResponseError as exc:              # full: the next poll finds them missing and tries again
            if not is_full(exc):
                raise
            self._became_full(exc)
        self._cond.notify_all()

    def _remove_orphans(self, consumers: dict[str, Any]) -> None:
        """Remove private groups (DURABLE subscribers without group=) whose subscriber is gone: no read for
        ``orphan_after`` seconds. Named groups belong to nodes the runtime restarts, and are never removed."""
        now = time.monotonic()
        for group, members in consumers.items():
            if not isinstance(members, list) or group not in self._groups:
                continue
            if members:
                self._empty_since.pop(group, None)
                idle = min(m.get("idle", 0) for m in members) / 1000
            else:
                idle = now - self._empty_since.setdefault(group, now)
            if idle > self.orphan_after:
                try:
                    self._ctrl.xgroup_destroy(self._stream, group)
                except NET_ERRORS as exc:
                    self._went_down(exc)
                    return
                del self._groups[group]
                self._empty_since.pop(group, None)
                log.warning("%s: removed private durable group '%s': no read for %.0f s (its subscriber is "
                            "gone)", self.topic, group, idle)

    def _update_groups(self, groups_info: list, pending: dict) -> None:
        found = {text(g["name"]): g for g in groups_info}
        for name in found.keys() - self._groups.keys():
            log.info("%s: found durable group '%s'; its frames are kept until it acknowledges them",
                     self.topic, name)
            self._groups[name] = None
        for name in self._groups.keys() - found.keys():
            log.warning("%s: durable group '%s' was removed from redis; no longer keeping frames for it",
                        self.topic, name)
            del self._groups[name]
        for name, g in found.items():
            p = pending.get(name)
            if g.get("pending", 0) == 0:
                oldest = None
            elif isinstance(p, dict) and p.get("min"):
                oldest = parse_id(p["min"])
            else:
                oldest = ZERO_ID                       # pending, but not known which: nothing is sure yet
            self._groups[name] = GroupPosition(parse_id(g["last-delivered-id"]), oldest)

    # -- the rest of the API ------------------------------------------------------------------------------

    def statistics(self) -> RedisPublisherStats:
        """A snapshot of this publisher (no Redis call)."""
        with self._cond:
            c = self._counts
            full_seconds = self._full_seconds + (time.monotonic() - self._full_since if self._full else 0.0)
            return RedisPublisherStats(self.topic, c["published"], c["sent"], c["dropped"],
                                       len(self._held.spool), len(self._held.retained), self._held.nbytes,
                                       self._held.max_frames, self._held.max_bytes, c["republished"],
                                       c["trimmed"], c["backpressure_waits"], c["disconnects"], self._up,
                                       tuple(sorted(self._groups)), self.codec, self.state(),
                                       c["full_events"], round(full_seconds, 3), c["dropped_full"])

    def state(self) -> str:
        """``"up"``, ``"down"`` (unreachable) or ``"full"`` (Redis refuses writes for memory)."""
        if self._full:
            return "full"
        return "up" if self._up else "down"

    def is_connected(self) -> bool:
        """True while Redis takes this publisher's frames (as of the last call or poll)."""
        return self._up

    def is_closed(self) -> bool:
        """True after close()."""
        return self._closed

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is spooled and every durable group acknowledged every
        frame; True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._cond.notify_all()
            try:
                while len(self._held):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiters -= 1

    def close(self, timeout: float = 0.0) -> None:
        """Stop publishing and close the connections. With ``timeout`` > 0, first wait that long for the spool
        to be sent and the groups to acknowledge (``drain``). Spooled frames still unsent are reported as lost
        (error log); retained ones stay in Redis for their groups. Idempotent."""
        if self._closed:
            return
        try:
            if timeout > 0:
                self.drain(timeout)
        finally:
            with self._cond:
                self._closed = self._stopping = True
                unsent = len(self._held.spool)
                self._cond.notify_all()
            if threading.current_thread() is not self._thread:
                self._thread.join()
            if unsent:
                log.error("%s: closed with %d DURABLE frames never sent to redis %s (lost)", self.topic,
                          unsent, self.where)
            self._ctrl.close()
            if self._dual:
                self._data.close()

    terminate = close

    def __enter__(self) -> "RedisPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self._closed = self._stopping = True   # the poller thread sees it and ends
            self._ctrl.close()
            if self._dual:
                self._data.close()

    def __repr__(self) -> str:
        return f"<RedisPublisher {self._stream} {self.where}{' closed' if self._closed else ''}>"


def _poller(ref: "weakref.ref[RedisPublisher]") -> None:
    while True:
        publisher = ref()
        if publisher is None or not publisher._step():
            return
        del publisher
