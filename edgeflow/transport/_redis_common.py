"""What the Redis publisher and subscriber share: names and keys, client construction, command execution (sync
and asyncio alike), and small checks."""

from __future__ import annotations

import itertools
import os
import re
import socket
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from edgeflow.comms.brokers import DualRedisBroker, RedisBroker
from edgeflow.config import settings
from edgeflow.errors import BrokenResourceError, ConfigError
from edgeflow.qos import QoS
from edgeflow.transport._redis_lua import CREATE_GROUP_SCRIPT, TAKE_SCRIPT, Script
from edgeflow.transport import codecs
from edgeflow.transport.backoff import Backoff

DEFAULT_APP = "default"
DEFAULT_MAX_LAG = 2                      # BALANCED: frames waiting beyond which a subscriber skips ahead
DEFAULT_BACKOFF = Backoff(initial=0.05, maximum=2.0, factor=2.0, jitter=0.2)
MAX_META_BYTES = codecs.MAX_META_BYTES   # JSON metadata limit per frame: every transport's (8 KiB)
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024    # Redis' own limit for one string (proto-max-bulk-len default)
MiB = 1024 * 1024
PRIVATE_GROUP_PREFIX = "private."        # DURABLE subscriber without group=: a consumer group of its own
# a lost or refused connection, a timeout, a server still loading its data: all mean "unreachable for now"
NET_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")       # the same rules as shared-memory names
_GROUP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,99}")
_consumers = itertools.count(1)


def names(app: str | None, topic: str) -> tuple[str, str]:
    """(app, topic), checked; the app defaults to ``$EDGEFLOW_APP`` or ``"default"``."""
    app = app if app is not None else settings.EDGEFLOW_APP
    if not isinstance(app, str) or not _APP.fullmatch(app):
        raise ConfigError(f"app name {app!r}: use 1-64 letters, digits, '-' or '_'")
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise ConfigError(f"topic {topic!r}: use 1-100 letters, digits, '-', '_' or '.', "
                          "not starting with '.'")
    return app, topic


def check_group(topic: str, what: str, name: Any) -> str:
    """A group or consumer name, checked (it becomes part of a key)."""
    if not isinstance(name, str) or not _GROUP.fullmatch(name):
        raise ConfigError(f"{topic}: {what} {name!r}: use 1-100 letters, digits, '-', '_', '.' or '@'")
    return name


def default_consumer() -> str:
    """A consumer name unique to this process: ``<host>-<pid>-<n>``."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{next(_consumers)}"


def stream_key(app: str, topic: str) -> str:
    return f"edgeflow:{app}:stream:{topic}"


def blob_prefix(app: str, topic: str, session: str) -> str:
    return f"edgeflow:{app}:blob:{topic}:{session}:"


def cursor_key(app: str, topic: str, group: str) -> str:
    return f"edgeflow:{app}:cursor:{topic}:{group}"


def live_key(app: str, topic: str) -> str:
    """The mark REALTIME/BALANCED readers keep on a topic (how many newest entries they may still fetch)."""
    return f"edgeflow:{app}:live:{topic}"


def topic_blob_prefix(app: str, topic: str) -> str:
    """What every blob key of a topic starts with (``blob_prefix`` without the session)."""
    return f"edgeflow:{app}:blob:{topic}:"


def is_full(exc: BaseException) -> bool:
    """True for Redis refusing a write because it is out of memory (maxmemory reached, noeviction): an OOM
    reply, or a transaction aborted because of one."""
    if isinstance(exc, OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and "OOM" in str(exc)[:200]


def as_broker(broker: Any, topic: str) -> RedisBroker | DualRedisBroker:
    """The broker given, or a RedisBroker for a URL string; ConfigError otherwise."""
    if isinstance(broker, str):
        return RedisBroker(broker)
    if not isinstance(broker, (RedisBroker, DualRedisBroker)):
        raise ConfigError(f"{topic}: broker must be a RedisBroker, a DualRedisBroker or a redis:// URL, "
                          f"got {type(broker).__name__}")
    return broker


def data_url(broker: RedisBroker | DualRedisBroker) -> str | None:
    """The data instance's URL when it is a separate one, else None (blobs go to the control instance)."""
    if isinstance(broker, DualRedisBroker) and broker.data_url != broker.url:
        return broker.data_url
    return None


def redact(url: str) -> str:
    return RedisBroker(url).redacted()


def client(url: str, *, name: str, socket_timeout: float, aio: bool = False) -> Any:
    """A Redis client that never retries on its own: the transport decides (back-off, spool, drop).

    RESP2 replies, raw bytes (payloads are binary), a client name that says who it is in CLIENT LIST.
    """
    module = redis.asyncio if aio else redis
    retry = (redis.asyncio.retry.Retry if aio else redis.retry.Retry)(NoBackoff(), 0)
    return module.Redis.from_url(url, socket_timeout=socket_timeout,
                                 socket_connect_timeout=min(2.0, socket_timeout), retry=retry, protocol=2,
                                 health_check_interval=0, client_name=name)


def cmd(name: str, *args: Any, **kwargs: Any) -> tuple:
    """A command for ``run``: a client method's name and its arguments."""
    return (name, args, kwargs)


def script_cmd(script: Script, keys: list, args: list) -> tuple:
    """A Lua script call for ``run`` (EVALSHA, falling back to EVAL once)."""
    return (script, keys, args)


def run(client: Any, commands: tuple | list) -> list:
    """Execute commands on a sync client (one directly, several as one pipeline); the replies, in order."""
    if len(commands) == 1:
        return [run_one(client, commands[0])]
    pipe = client.pipeline(transaction=False)
    for name, args, kwargs in commands:
        getattr(pipe, name)(*args, **kwargs)
    return pipe.execute()


def run_one(client: Any, command: tuple) -> Any:
    if isinstance(command[0], Script):
        script, keys, args = command
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:                     # first use on this server (or it restarted): send it
            return client.eval(script.source, len(keys), *keys, *args)
    name, args, kwargs = command
    return getattr(client, name)(*args, **kwargs)


async def arun(client: Any, commands: tuple | list) -> list:
    """``run`` for a redis.asyncio client."""
    if len(commands) == 1:
        return [await arun_one(client, commands[0])]
    pipe = client.pipeline(transaction=False)
    for name, args, kwargs in commands:
        getattr(pipe, name)(*args, **kwargs)
    return await pipe.execute()


async def arun_one(client: Any, command: tuple) -> Any:
    if isinstance(command[0], Script):
        script, keys, args = command
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(script.source, len(keys), *keys, *args)
    name, args, kwargs = command
    return await getattr(client, name)(*args, **kwargs)


def meta_json(topic: str, meta: dict | None) -> bytes:
    """Compact JSON of a frame's meta (b"" when empty); TypeError / FrameTooLarge naming the topic."""
    return codecs.encode_meta(topic, meta, MAX_META_BYTES)


def check_positive(topic: str, **values: Any) -> None:
    """ConfigError naming the option unless each value is a number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{topic}: {name}={value!r} must be a number > 0")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def declare_group(topic: str, group: str, qos: QoS | str = QoS.DURABLE, *, app: str | None = None,
                  broker: Any) -> None:
    """Create a subscriber group before any publisher or member exists.

    A DURABLE group declared this way receives every frame published from now on (a consumer group created at
    the stream's end, with the stream created if missing). A REALTIME or BALANCED group gets its shared cursor
    at the newest entry. Declaring an existing group changes nothing.

    Raises:
        ConfigError: a bad name or broker.
        BrokenResourceError: Redis unreachable.
    """
    app, topic = names(app, topic)
    check_group(topic, "group", group)
    qos = QoS.parse(qos)
    broker = as_broker(broker, topic)
    stream = stream_key(app, topic)
    conn = client(broker.url, name=f"edgeflow:{app}:declare:{topic}", socket_timeout=5.0)
    try:
        if qos is QoS.DURABLE:
            run_one(conn, script_cmd(CREATE_GROUP_SCRIPT, [stream], [group, "new"]))
        else:
            run_one(conn, script_cmd(TAKE_SCRIPT, [stream, live_key(app, topic), cursor_key(app, topic, group)],
                                     ["i", 1, ""]))
    except NET_ERRORS as exc:
        raise BrokenResourceError(f"{topic}: redis {broker.redacted()} unreachable") from exc
    finally:
        conn.close()
