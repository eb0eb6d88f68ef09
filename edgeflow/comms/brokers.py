"""Where cross-host frames go: Redis broker settings, as plain configuration objects.

Constructing a broker never connects, resolves a host name or imports the Redis client: the app is defined
in every process that runs a node (and by ``edgeflow deploy``, which never talks to Redis), so the transport
opens its connections later, in the process that needs them.

    RedisBroker()                                   # $REDIS_URL, or REDIS_HOST / REDIS_PORT (+ REDIS_PASSWORD),
                                                    # else localhost:6379
    RedisBroker("rediss://:secret@redis.lan:6379/1")
    RedisBroker(host="redis", port=6379)
    DualRedisBroker()                               # control as above; data $DATA_REDIS_URL or DATA_REDIS_HOST /
                                                    # DATA_REDIS_PORT
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from edgeflow.config import settings
from edgeflow.errors import ConfigError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
DEFAULT_DATA_PORT = 6380          # seed 001: the data instance listens next to the control one
_SCHEMES = ("redis", "rediss")
_USERINFO = re.compile(r"(?<=://)[^@/]*@")


@dataclass(frozen=True)
class RedisAddress:
    """One Redis instance, parsed from its URL.

    Attributes:
        host, port, db: where it is; ``db`` is the database number from the URL path (default 0).
        username, password: credentials from the URL, or None (the password is left out of ``repr``).
        tls: True for ``rediss://``.
    """

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


class _RedisBrokerBase:
    """What both brokers share: the control instance's URL, equality by URL, and redaction."""

    kind = ""
    url: str
    address: RedisAddress

    @property
    def host(self) -> str:
        """The (control) Redis host."""
        return self.address.host

    @property
    def port(self) -> int:
        """The (control) Redis port."""
        return self.address.port

    def redacted(self) -> str:
        """The URL with its password replaced by ``***``, for logs and error messages."""
        return _redact(self.url)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description without secrets: ``{"kind", "url"}`` (the URL redacted)."""
        return {"kind": self.kind, "url": self.redacted()}

    def _key(self) -> tuple:
        return (self.url,)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted()!r})"


class RedisBroker(_RedisBrokerBase):
    """Frames between hosts go through one Redis instance (streams for ids, blobs for payloads).

    Args:
        url: ``redis://[user][:password]@host[:port][/db]`` or ``rediss://...`` (TLS). Leave it out to build
            the URL from ``host``/``port`` or the environment.
        host: the Redis host; default ``$REDIS_HOST``, else ``localhost``.
        port: the Redis port; default ``$REDIS_PORT``, else 6379.
        password: default ``$REDIS_PASSWORD``. With no argument at all, ``$REDIS_URL`` wins when set.
        password: for a URL built from ``host``/``port``.
        db: the database number for a URL built from ``host``/``port``.

    Attributes:
        url: the connection URL (it contains the password: log ``redacted()`` instead).
        address: the parsed RedisAddress; ``host`` and ``port`` are shortcuts.
        kind: ``"redis"``.

    Raises:
        ConfigError: a malformed URL, a port that is not a number, or both a URL and host/port.
    """

    kind = "redis"

    def __init__(self, url: str | None = None, *, host: str | None = None, port: int | str | None = None,
                 password: str | None = None, db: int = 0) -> None:
        self.url = _control_url("RedisBroker", url, host, port, password, db)
        self.address = _parse(self.url, "RedisBroker")


class DualRedisBroker(_RedisBrokerBase):
    """Frames between hosts use two Redis instances: ids and metadata on the control instance, payloads (with
    a TTL) on the data instance, so large frames never slow the control streams. One instance for both works.

    Args:
        url: the control instance's URL; default built from ``ctrl_host``/``ctrl_port``, else
            ``$REDIS_HOST`` / ``$REDIS_PORT``, else ``localhost:6379``.
        data_url: the data instance's URL; default built from ``data_host``/``data_port``, else
            ``$DATA_REDIS_HOST`` (default: the control host) / ``$DATA_REDIS_PORT`` (default 6380).
        ctrl_host, ctrl_port, data_host, data_port: the original EdgeFlow's keyword arguments.
        password: for URLs built from host/port; the data instance defaults to the control URL's password.

    Attributes:
        url, address: the control instance. data_url, data_address: the data instance. kind: ``"dual-redis"``.

    Raises:
        ConfigError: as RedisBroker, for either instance.
    """

    kind = "dual-redis"

    def __init__(self, url: str | None = None, data_url: str | None = None, *, ctrl_host: str | None = None,
                 ctrl_port: int | str | None = None, data_host: str | None = None,
                 data_port: int | str | None = None, password: str | None = None) -> None:
        self.url = _control_url("DualRedisBroker", url, ctrl_host, ctrl_port, password, 0)
        self.address = _parse(self.url, "DualRedisBroker")
        if data_url is not None and (data_host is not None or data_port is not None):
            raise ConfigError("DualRedisBroker: give either a data_url or data_host/data_port, not both")
        if data_url is None and data_host is None and data_port is None and settings.given("DATA_REDIS_URL"):
            data_url = settings.given("DATA_REDIS_URL")
        if data_url is None:
            data_url = _build_url(
                data_host or _env_host("DATA_REDIS_HOST", self.address.host),
                _port(data_port, "DualRedisBroker data_port") if data_port is not None
                else _env_port("DATA_REDIS_PORT", DEFAULT_DATA_PORT),
                password if password is not None else self.address.password, 0, tls=self.address.tls)
        self.data_address = _parse(data_url, "DualRedisBroker data")
        self.data_url = data_url

    def redacted(self) -> str:
        """Both URLs without passwords: ``"<control> + data <data>"``."""
        return f"{_redact(self.url)} + data {_redact(self.data_url)}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description without secrets: ``{"kind", "url", "data_url"}`` (both redacted)."""
        return {"kind": self.kind, "url": _redact(self.url), "data_url": _redact(self.data_url)}

    def _key(self) -> tuple:
        return (self.url, self.data_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_redact(self.url)!r}, {_redact(self.data_url)!r})"


# -- helpers ------------------------------------------------------------------------------------------------

def _control_url(what: str, url: str | None, host: str | None, port: Any, password: str | None,
                 db: int) -> str:
    """The URL given, or one built from host/port/password, each defaulting from the environment."""
    if url is not None:
        if host is not None or port is not None or password is not None:
            raise ConfigError(f"{what}: give either a URL or host/port/password, not both")
        return url
    if host is None and port is None and password is None and settings.given("REDIS_URL"):
        return settings.given("REDIS_URL")        # a whole URL (deploy sets it in the environment)
    port = _port(port, f"{what} port") if port is not None else _env_port("REDIS_PORT", DEFAULT_PORT)
    if password is None:
        password = settings.given("REDIS_PASSWORD") or None
    return _build_url(host or _env_host("REDIS_HOST", DEFAULT_HOST), port, password, db)


def _env_host(var: str, default: str) -> str:
    return settings.given(var) or default


def _env_port(var: str, default: int) -> int:
    raw = settings.given(var)
    if not raw:
        return default
    return _port(raw, f"${var}")


def _port(value: Any, what: str) -> int:
    """A TCP port from an int or a string of digits; ConfigError names ``what`` otherwise."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigError(f"{what}={value!r} is not a port number (1-65535)")
    return value


def _build_url(host: str, port: int, password: str | None, db: int, *, tls: bool = False) -> str:
    netloc = f"[{host}]" if ":" in host else host          # a bare IPv6 address needs brackets in a URL
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{'rediss' if tls else 'redis'}://{auth}{netloc}:{port}/{db}"


def _parse(url: Any, what: str) -> RedisAddress:
    """Parse a redis:// or rediss:// URL; ConfigError (without the password) when it is malformed."""
    if not isinstance(url, str):
        raise ConfigError(f"{what}: expected a redis:// URL string, got {type(url).__name__}")
    shown = _USERINFO.sub("***@", url)               # never put a password into an error message
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{what} URL {shown!r}: {exc}") from exc
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ConfigError(f"{what} URL {shown!r}: expected redis://[:password@]host[:port][/db] "
                          "(or rediss:// for TLS)")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"{what} URL {shown!r}: the database {path!r} is not a number")
    return RedisAddress(host=parts.hostname, port=port or DEFAULT_PORT, db=int(path or 0),
                        username=unquote(parts.username) if parts.username else None,
                        password=unquote(parts.password) if parts.password else None,
                        tls=parts.scheme == "rediss")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
