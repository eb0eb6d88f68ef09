"""What every connector shares: option checks, its connection's state, event counters and back-off.

A connector is an ordinary node; this module gives it the pieces that make it keep EdgeFlow's promises the
same way everywhere:

- ``opt_*`` checks raise one-line ``ConfigError``s naming the node and the option, at registration.
- ``ConnectionState`` keeps "connecting" / "up" / "down" (with the last error) in the node's statistics
  (``extra["connections"]``); the gateway's ``/metrics`` exports it as ``edgeflow_connector_up`` and
  ``/readyz`` answers 503 while a connection is not up.
- ``count(node, event)`` adds to ``extra["events"]`` (``edgeflow_connector_events_total{node,event}``):
  spooled, overflow, bad_payload, retries, rows, ...
- ``Backoff``: the reconnect delays (0.5 s doubling to 30 s, with jitter so replicas do not retry together).
"""

from __future__ import annotations

import difflib
import random
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from edgeflow.errors import ConfigError

STATES = ("connecting", "up", "down")


def option_error(node: str, option: str, why: str) -> ConfigError:
    """``node 'db': option 'table': why`` as a ConfigError (one line)."""
    return ConfigError(f"node '{node}': option '{option}': {why}")


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_options(node: str, options: dict[str, Any], known: Iterable[str]) -> None:
    """Refuse an option the connector does not know, with a did-you-mean.

    Raises:
        ConfigError: naming the node and the first unknown option.
    """
    known = tuple(known)
    for key in options:
        if key not in known and key not in COMMON_OPTIONS:
            raise option_error(node, key, f"unknown option{did_you_mean(key, known)} "
                                          f"(known: {', '.join(sorted(known))})")


COMMON_OPTIONS = frozenset({"on_error", "on_backpressure", "exactly_once", "config"})   # runtime's own
# the runtime fields a node's config also holds (edgeflow._nodeload.RUNTIME_KEYS; a connector does not import
# the graph layer, tests/unit/test_layers.py checks the two agree)
RUNTIME_FIELDS = ("fps", "replicas", "device", "node_port", "group")


def connector_options(node: Any) -> dict[str, Any]:
    """The node's own options: its config without the runtime fields (fps, replicas, ...)."""
    return {k: v for k, v in (getattr(node, "config", None) or {}).items() if k not in RUNTIME_FIELDS}


def opt_str(node: str, options: dict, key: str, *, required: bool = False, default: Any = None,
            choices: Iterable[str] | None = None) -> Any:
    """A string option (or ``default`` when absent)."""
    if key not in options or options[key] is None:
        if required:
            raise option_error(node, key, "required")
        return default
    value = options[key]
    if not isinstance(value, str) or not value:
        raise option_error(node, key, f"expected a non-empty string, got {value!r}")
    if choices is not None and value not in tuple(choices):
        choices = tuple(choices)
        raise option_error(node, key, f"{value!r} is not one of {', '.join(map(repr, choices))}"
                                      f"{did_you_mean(value, choices)}")
    return value


def opt_number(node: str, options: dict, key: str, *, default: Any = None, low: float | None = None,
               high: float | None = None, integer: bool = False) -> Any:
    """A number option within [low, high] (or ``default`` when absent)."""
    if key not in options or options[key] is None:
        return default
    value = options[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise option_error(node, key, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"{low:g} to {high:g}" if low is not None and high is not None else \
            (f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise option_error(node, key, f"{value!r} is out of range ({span})")
    return value


def opt_bool(node: str, options: dict, key: str, *, default: bool = False) -> bool:
    """A True/False option."""
    if key not in options or options[key] is None:
        return default
    value = options[key]
    if not isinstance(value, bool):
        raise option_error(node, key, f"expected True or False, got {value!r}")
    return value


def opt_url(node: str, options: dict, key: str, schemes: Iterable[str], *, required: bool = True,
            default: str | None = None) -> urllib.parse.SplitResult | None:
    """A URL option whose scheme is one of ``schemes``, parsed (``None`` when absent and not required)."""
    text = opt_str(node, options, key, required=required, default=default)
    if text is None:
        return None
    schemes = tuple(schemes)
    try:
        url = urllib.parse.urlsplit(text)
        url.port                                  # raises for a port that is not a number
    except ValueError as exc:
        raise option_error(node, key, f"{redact(text)!r} is not a valid URL ({exc})") from None
    if url.scheme not in schemes:
        given = url.scheme + "://" if url.scheme else "(none)"
        expected = " or ".join(s + "://" for s in schemes)
        raise option_error(node, key, f"unknown URL scheme {given} in {redact(text)!r} (expected {expected})")
    if not url.hostname:
        raise option_error(node, key, f"{redact(text)!r} names no host")
    return url


def redact(url: str) -> str:
    """A URL with its password replaced by ``***`` (for logs, statistics and errors)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


class ConnectionState:
    """One connection of a connector node, kept in its statistics (``extra["connections"][target]``).

    ``target`` is what the connection is to, shown without a password (``mqtt://broker:1883``). Thread-safe
    enough for a client library's callback thread: each update replaces one small dict.
    """

    def __init__(self, node: Any, target: str) -> None:
        self._node = node
        self.target = redact(target)
        self.state = "connecting"
        self.error: str | None = None
        self.since = time.time()
        self.reconnects = 0
        self._publish()

    @property
    def is_up(self) -> bool:
        """True while connected."""
        return self.state == "up"

    def up(self) -> None:
        """Connected (again)."""
        if self.state != "up":
            if self.error is not None:
                self.reconnects += 1
            self.state, self.since = "up", time.time()
            self._publish()

    def down(self, error: str) -> None:
        """Not connected; ``error`` says why in a few words (shown in statistics and /readyz)."""
        if self.state != "down" or self.error != error:
            self.state, self.error, self.since = "down", error, time.time()
            self._publish()

    def _publish(self) -> None:
        metrics = _metrics_of(self._node)
        if metrics is None:
            return
        connections = dict(metrics.extra.get("connections") or {})
        connections[self.target] = {"state": self.state, "error": self.error, "since": round(self.since, 3),
                                    "reconnects": self.reconnects}
        metrics.extra["connections"] = connections


def count(node: Any, event: str, n: int = 1) -> None:
    """Add ``n`` to the node's ``event`` counter (statistics ``extra["events"]``, /metrics)."""
    metrics = _metrics_of(node)
    if metrics is None:
        return
    events = metrics.extra.get("events")
    if events is None:
        events = metrics.extra["events"] = {}
    events[event] = events.get(event, 0) + n


def events(node: Any) -> dict[str, int]:
    """The node's event counters so far (a copy)."""
    metrics = _metrics_of(node)
    return dict(metrics.extra.get("events") or {}) if metrics is not None else {}


def _metrics_of(node: Any):
    context = getattr(node, "context", None)
    return getattr(context, "metrics", None)


class Backoff:
    """Reconnect delays: ``first`` seconds doubling up to ``cap``, each with +-20 % jitter."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        """The delay before the next attempt (and double the one after)."""
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        """A success: start again from ``first``."""
        self._next = self.first
