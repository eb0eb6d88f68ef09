"""Redis transport: frames between hosts through one Redis (RedisBroker) or a control + data pair
(DualRedisBroker).

A publish writes the payload as a blob with a TTL (``SET ... PX``, data instance) and the frame's id,
timestamp, meta and payload header to the topic's stream (``XADD``, control instance): one pipelined round
trip per instance. Payloads travel raw (dtype, shape, bytes) unless the publisher asks for a codec
(edgeflow.transport.codecs); a dict/list message travels as edgeflow.transport.message's encoding (payload
kind ``message``); a frame is encoded once however many consumers read it. Meta is at most 8 KiB, as on every
transport.

Keys (nothing else is ever written, and nothing ever runs FLUSHALL or FLUSHDB):

    edgeflow:{app}:stream:{topic}                        the stream of frame entries (control instance)
    edgeflow:{app}:blob:{topic}:{session}:{frame_id}     a payload, expiring after blob_ttl (data instance)
    edgeflow:{app}:cursor:{topic}:{group}                a REALTIME/BALANCED group's shared position (control)
    edgeflow:{app}:live:{topic}                          REALTIME/BALANCED readers are at the topic (control;
                                                         expires 30 s after their last read)

``session`` identifies one RedisPublisher instance, so frames of a restarted publisher never collide with
older ones. ``reset_app`` deletes exactly the keys of one app.

A blob is deleted as soon as every DURABLE group of the topic acknowledged its frame: the acknowledging
script (DURABLE_READ, on the control instance) checks every group's last-delivered id and pending list, and
deletes the blob there (single) or returns its key, which the subscriber deletes on the data instance with its
next call there (dual). While REALTIME/BALANCED readers are at the topic (the ``live`` key), the newest few
entries keep their blobs for them and are freed by later acknowledgements. The TTL stays as the safety net
(a crashed consumer, a removed group, frames the stream trimmed).

QoS, per subscriber:

- REALTIME: the newest entry (one atomic script: never a frame twice, never an older one); skipped frames
  count as drops. Members of a ``group`` share one cursor: each frame goes to at most one of them.
- BALANCED: every frame in order while at most ``max_lag`` wait, then skip to the newest.
- DURABLE: a Redis consumer group per consuming node (``group``), shared by its replicas (``consumer`` names
  each); without ``group`` a subscriber gets a private group of its own, removed when it closes. A frame is
  acknowledged (XACK) at the subscriber's next ``recv``/``recv_nowait``/``arecv``, or at ``close()``: after
  the node processed it. A dead consumer's pending entries are reclaimed by the others
  (XAUTOCLAIM after ``claim_idle`` seconds); a restarted consumer of the same name gets its own pending
  entries first. Entries trimmed away (stream MAXLEN) before the group read them are counted (``lost``) and
  logged.

Faults: a publisher never raises because Redis is down. Non-durable frames are dropped and counted; DURABLE
frames (the topic has a durable group) are spooled, bounded by ``spool_frames`` / ``spool_bytes``, and sent in
order when Redis is back; a full spool fails the publish with BrokenResourceError naming the topic and the
bound. A full Redis (``maxmemory`` reached with ``noeviction``: it refuses SET and XADD) is back-pressure,
never a loss: DURABLE frames are kept in the same spool and sent, in order, as space frees (the poller tries
one frame, then the rest); once the bound is reached, publish raises BackpressureTimeout after
``backpressure_timeout``. Non-durable frames are dropped and counted (``dropped_full``). A frame goes in whole
or not at all (single mode: SET and XADD in one MULTI/EXEC), so no entry ever lacks its blob. The publisher's
``statistics().state`` says ``up``, ``down`` or ``full``; it logs once when Redis becomes full and once when it
takes frames again. The same bound covers DURABLE frames already in Redis but not yet acknowledged by every group: the
publisher keeps them, and when Redis comes back empty (restart without persistence, noticed by its run_id or
the stream vanishing) it recreates the stream and groups and publishes them again; consumers drop the
duplicates by frame id. A slow durable group applies back-pressure: a publish waits up to
``backpressure_timeout`` for room, then raises BackpressureTimeout. Reconnection follows exponential back-off
(edgeflow.transport.backoff).

This module is the public face; the publisher lives in ``_redis_pub`` (its statistics and loans in
``_redis_pubtypes``), the subscriber in ``_redis_sub``, the Lua scripts in ``_redis_lua`` and the publisher's
bookkeeping of held frames in ``_redis_held``.
"""

from __future__ import annotations

from typing import Any

from edgeflow.errors import BrokenResourceError
from edgeflow.transport._redis_common import (DEFAULT_APP, DEFAULT_BACKOFF, DEFAULT_MAX_LAG, MAX_META_BYTES,
                                              MAX_PAYLOAD_BYTES, NET_ERRORS, as_broker, client, data_url,
                                              declare_group, names, redact)
from edgeflow.transport._redis_common import stream_key as _stream_key
from edgeflow.transport._redis_pub import RedisLoan, RedisPublisher, RedisPublisherStats
from edgeflow.transport._redis_sub import RedisSubscriber, RedisSubscriberStats

__all__ = ["RedisPublisher", "RedisSubscriber", "RedisPublisherStats", "RedisSubscriberStats", "RedisLoan",
           "declare_group", "reset_app", "stream_key", "DEFAULT_APP", "DEFAULT_MAX_LAG", "DEFAULT_BACKOFF",
           "MAX_META_BYTES", "MAX_PAYLOAD_BYTES"]


def stream_key(app: str | None, topic: str) -> str:
    """The Redis key of a topic's stream: ``edgeflow:{app}:stream:{topic}``; ConfigError for a bad name."""
    return _stream_key(*names(app, topic))


def reset_app(app: str, *, broker: Any) -> int:
    """Delete every key of ``app`` (``edgeflow:{app}:*``, SCAN + UNLINK) on the broker's instances; returns
    how many. Other apps' keys and everything else in the database stay: nothing here flushes.

    Raises:
        ConfigError: a bad app name or broker.
        BrokenResourceError: Redis unreachable.
    """
    app, _ = names(app, "x")
    broker = as_broker(broker, app)
    urls = [broker.url] + ([u] if (u := data_url(broker)) else [])
    deleted = 0
    for url in urls:
        conn = client(url, name=f"edgeflow:{app}:reset", socket_timeout=10.0)
        try:
            batch = []
            for key in conn.scan_iter(match=f"edgeflow:{app}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += conn.unlink(*batch)
                    batch = []
            if batch:
                deleted += conn.unlink(*batch)
        except NET_ERRORS as exc:
            raise BrokenResourceError(f"reset of app {app}: redis {redact(url)} unreachable") from exc
        finally:
            conn.close()
    return deleted
