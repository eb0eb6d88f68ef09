"""The layout of a PyEdgeTwin configuration, checked key by key: one problem line per mistake.

    runtime: {twin_id, asset_id, workers, queue_size, queue_overflow_policy}
    mqtt:    {host, port, topics, qos, username, password, client_id, keepalive, reconnect_delay_min/max}
    model:   {module_path, version, params}
    sinks:   {influxdb2: {url, token, org, bucket, measurement, batch_size, flush_interval_ms},
              csv: {path, append, columns}, stdout: {pretty, include_fields, exclude_fields}}
    health:  {enabled, host, port}

Those are PyEdgeTwin's keys. A few EdgeFlow keys are accepted beside them (``mqtt.tls``, ``model.watch``,
``sinks.csv.flush``, ``health.token`` ...: ``EXTRA``); they are passed to the node that does the work. Every
other key is a problem ``config.yaml:7:3: mqtt.hots: unknown key (did you mean 'host'?)``, found before
anything starts, with the file, line and column of the key (the marks ``edgeflow.pipeline.tree`` keeps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from edgeflow.connectors._base import did_you_mean
from edgeflow.pipeline.errors import PipelineError
from edgeflow.pipeline.tree import Map, Mark, Seq, in_file_order, problem

Check = Callable[[Any], "str | None"]          # a value -> what is wrong with it, or None


def _got(value: Any) -> str:
    kind = {Map: "a mapping", Seq: "a list"}.get(type(value))
    return f"got {kind}" if kind else f"got {value!r}"


def text(value: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(value, str) and value else f"expected a text, {_got(value)}"


def flag(value: Any) -> str | None:
    """true or false."""
    return None if isinstance(value, bool) else f"expected true or false, {_got(value)}"


def integer(low: int, high: int | None = None) -> Check:
    """An integer in [low, high]."""
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low \
                and (high is None or value <= high):
            return None
        return f"expected an integer {f'from {low} to {high}' if high is not None else f'>= {low}'}, " \
               f"{_got(value)}"
    return check


def positive(value: Any) -> str | None:
    """A number > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return None
    return f"expected a number > 0, {_got(value)}"


def choice(*values: str) -> Check:
    """One of ``values``."""
    def check(value: Any) -> str | None:
        if value in values:
            return None
        return f"expected one of {', '.join(values)}, {_got(value)}{did_you_mean(value, values)}"
    return check


def texts(value: Any) -> str | None:
    """A text or a non-empty list of texts."""
    if isinstance(value, str) and value:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return None
    return f"expected a text or a list of texts, {_got(value)}"


def version(value: Any) -> str | None:
    """A version name (YAML may type ``1.0`` as a number: that is fine)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
        return None
    return f"expected a version name such as '1.0.0', {_got(value)}"


def mapping(value: Any) -> str | None:
    """A mapping."""
    return None if isinstance(value, dict) else f"expected a mapping, {_got(value)}"


def anything(value: Any) -> str | None:
    """Checked by the node that takes it (an EdgeFlow option passed on)."""
    return None


# section -> key -> check. PyEdgeTwin's keys first, then EdgeFlow's (EXTRA).
SECTIONS: dict[str, dict[str, Check]] = {
    "runtime": {"twin_id": text, "asset_id": text, "workers": integer(1, 32), "queue_size": integer(1),
                "queue_overflow_policy": choice("drop_oldest", "drop_newest", "block")},
    "mqtt": {"host": text, "port": integer(1, 65535), "topics": texts, "qos": integer(0, 2),
             "username": text, "password": text, "client_id": text, "keepalive": integer(1),
             "reconnect_delay_min": positive, "reconnect_delay_max": positive,
             "tls": flag, "ca": text, "cert": text, "key": text, "tls_insecure": flag, "protocol": anything,
             "payload": anything, "timestamp_field": text, "clean_session": flag, "session_expiry": anything,
             "max_pending": anything, "connect_timeout": positive},
    "model": {"module_path": text, "version": version, "params": mapping, "watch": flag,
              "watch_interval": positive},
    "health": {"enabled": flag, "host": text, "port": integer(1, 65535), "token": text},
}
SINKS: dict[str, dict[str, Check]] = {
    "influxdb2": {"url": text, "token": text, "org": text, "bucket": text, "measurement": text,
                  "batch_size": integer(1), "flush_interval_ms": positive,
                  "tags": anything, "fields": anything, "time_field": text, "time_unit": anything,
                  "timeout": positive, "ca_file": text},
    "csv": {"path": text, "append": flag, "columns": texts,
            "flush": anything, "flush_rows": anything, "flush_ms": anything, "fsync": flag,
            "rotate_bytes": anything, "rotate_s": anything, "meta": flag},
    "stdout": {"pretty": flag, "include_fields": texts, "exclude_fields": texts},
}
REQUIRED = {"runtime": ("twin_id", "asset_id"), "mqtt": ("topics",), "model": ("module_path",),
            "influxdb2": ("token", "org", "bucket"), "csv": ("path",)}
EXTRA = {"mqtt": ("tls", "ca", "cert", "key", "tls_insecure", "protocol", "payload", "timestamp_field",
                  "clean_session", "session_expiry", "max_pending", "connect_timeout"),
         "model": ("watch", "watch_interval"), "health": ("token",),
         "influxdb2": ("tags", "fields", "time_field", "time_unit", "timeout", "ca_file"),
         "csv": ("flush", "flush_rows", "flush_ms", "fsync", "rotate_bytes", "rotate_s", "meta")}
"""EdgeFlow's keys accepted beside PyEdgeTwin's (docs/twin.md)."""
TOP = (*SECTIONS, "sinks")


@dataclass
class Section:
    """One checked section: its values as written (after ``${VAR}`` substitution) and where each was.

    Attributes:
        path: the key path (``("sinks", "csv")``). mark: where the section starts (the file's top when it is
            absent). values: key -> value. marks: key -> the key's mark.
    """

    path: tuple
    mark: Mark
    values: dict[str, Any] = field(default_factory=dict)
    marks: dict[str, Mark] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent or null)."""
        value = self.values.get(key)
        return default if value is None else value

    def where(self, key: str | None = None) -> Mark:
        """The mark of ``key`` (the section's own when absent)."""
        return self.marks.get(key, self.mark) if key else self.mark

    def folder(self, key: str) -> str:
        """The folder of the file that wrote ``key`` (relative paths in it resolve against it)."""
        return os.path.dirname(os.path.abspath(self.where(key).file))


@dataclass
class Layout:
    """A checked configuration: ``runtime``, ``mqtt``, ``model``, ``health`` and the ``sinks`` configured."""

    runtime: Section
    mqtt: Section
    model: Section
    health: Section
    sinks: dict[str, Section]
    top: Mark


def check(tree: Map) -> Layout:
    """Check a substituted configuration tree against the layout.

    Raises:
        PipelineError: every problem found, one line each, in file order.
    """
    out: list[str] = []
    _unknown(tree, (), TOP, out, "sections")
    sections = {name: _section(tree, name, keys, out) for name, keys in SECTIONS.items()}
    sinks: dict[str, Section] = {}
    given = tree.get("sinks")
    if given is not None and not isinstance(given, Map):
        out.append(problem(tree.where("sinks"), ("sinks",), f"expected a mapping of sinks, {_got(given)}"))
    elif given is not None:
        _unknown(given, ("sinks",), tuple(SINKS), out, "sinks")
        for name, keys in SINKS.items():
            if name in given and (given[name] is not None or name == "stdout"):
                sinks[name] = _section(given, name, keys, out, ("sinks",), empty_ok=name == "stdout")
    if out:
        raise PipelineError(*in_file_order(out))
    return Layout(sections["runtime"], sections["mqtt"], sections["model"], sections["health"], sinks,
                  tree.mark)


def _section(parent: Map, name: str, keys: dict[str, Check], out: list, at: tuple = (),
             empty_ok: bool = False) -> Section:
    path = (*at, name)
    entry = parent.get(name)
    if entry is None and name in REQUIRED and not empty_ok:
        out.append(problem(parent.where(name), path, f"required: a mapping with {', '.join(REQUIRED[name])}"))
        return Section(path, parent.where(name))
    if entry is None or (empty_ok and entry is True):
        section = Section(path, parent.where(name))
        entry = Map(section.mark)
    elif not isinstance(entry, Map):
        out.append(problem(parent.where(name), path, f"expected a mapping, {_got(entry)}"))
        return Section(path, parent.where(name))
    else:
        section = Section(path, entry.mark)
    _unknown(entry, path, tuple(keys), out, "keys")
    for key, value in entry.items():
        if key in keys and value is not None:
            why = keys[key](value)
            if why:
                out.append(problem(entry.value_marks[key], (*path, key), why))
            section.values[key] = value
            section.marks[key] = entry.where(key)
    for key in REQUIRED.get(name, ()):
        if section.values.get(key) is None:
            out.append(problem(section.mark, (*path, key), "required" + _what(name, key)))
    return section


def _what(section: str, key: str) -> str:
    return {"twin_id": " (this twin's identifier)", "asset_id": " (the physical asset's identifier)",
            "topics": " (the MQTT topics to subscribe to)",
            "module_path": " ('package.module:Class' or a .py file)"}.get(key, "")


def _unknown(entry: Map, path: tuple, known: tuple, out: list, what: str) -> None:
    """A problem per unknown key, with a did-you-mean when one is close, else the keys it may be."""
    for key in entry:
        if key not in known:
            close = did_you_mean(key, known).strip()
            said = close or f"({what}: {', '.join(known)})"
            out.append(problem(entry.where(key), (*path, key), f"unknown key {said}"))
