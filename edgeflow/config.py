"""EdgeFlow's settings: one object, from defaults < a settings file < environment variables.

    from edgeflow.config import settings
    settings.REDIS_HOST, settings.DATA_REDIS_PORT, settings.GATEWAY_TCP_PORT   # as the original EdgeFlow's
    settings.source("GATEWAY_HTTP_PORT")      # "default", "file" or "env"

Every setting is in ``SETTINGS`` (its name, which is also its environment variable, its type, default and
help); docs/settings.md's table is generated from it (``edgeflow settings --reference``) and a test keeps the
two equal. The settings file is ``$EDGEFLOW_CONFIG`` when set (it must exist), else ``edgeflow.yaml`` in the
current folder when there is one: a YAML (or JSON) mapping of keys (a setting's name in lower case, without
``edgeflow_``: ``gateway_http_port: 8001``, ``bind: 0.0.0.0``) to values, checked as a whole the first time a
setting is asked for (an unknown key or a bad value is one ConfigError naming the file, line and column).
An environment variable that is set and not empty wins over the file.

Each setting is read when it is asked for (not at import), so tests and containers can set them late; the
file is parsed again only when it changed. Secrets (tokens, passwords, a URL's password) are masked
(``***``) wherever settings are shown (``settings.shown()``, ``settings.effective()``, ``edgeflow settings``).

Closed by default (docs/security.md): the gateway's listeners bind ``127.0.0.1`` unless a host is given
(``WebInterface(host=...)``, or ``$EDGEFLOW_BIND`` for both the web server and the TCP ingest), and one bound
beyond loopback needs a token (``$EDGEFLOW_GATEWAY_TOKEN`` or ``WebInterface(token=...)``); ``require_token``
is that rule, in one place.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from edgeflow.errors import ConfigError

DEFAULT_GATEWAY_HTTP_PORT = 8000
DEFAULT_GATEWAY_TCP_PORT = 8080          # the original EdgeFlow's port for frames sent to the gateway
DEFAULT_REDIS_PORT = 6379
DEFAULT_DATA_REDIS_PORT = 6380           # DualRedisBroker's data instance (edgeflow.comms.brokers)
DEFAULT_BIND = "127.0.0.1"               # closed by default: only this host reaches the gateway's listeners
CONFIG_FILE = "edgeflow.yaml"            # looked for in the current folder when $EDGEFLOW_CONFIG is unset
MASK = "***"
_RAISE = object()
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
_URL_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: ``name`` is its attribute on ``settings`` and its environment variable.

    Attributes:
        kind: "str", "port" (0-65535), "float", "bool", "list" (comma-separated in the environment) or
            "choice" (one of ``choices``, any case).
        default: the value when neither the environment nor the file sets it (None: unset).
        help: one or two sentences for the table in docs/settings.md.
        secret: True for a token or password (shown as ``***``); "url" for a URL whose password is masked.
        in_file: False for a setting only the environment can give (the file's own name).
        default_from: the setting whose value is the default (DATA_REDIS_HOST defaults to REDIS_HOST's).
        minimum: the smallest value of a "float".
    """

    name: str
    kind: str
    default: Any
    help: str
    secret: bool | str = False
    choices: tuple[str, ...] = ()
    in_file: bool = True
    default_from: str | None = None
    minimum: float | None = None

    @property
    def key(self) -> str:
        """The setting's key in the settings file: its name in lower case without ``edgeflow_``."""
        return self.name.lower().removeprefix("edgeflow_")


SETTINGS: tuple[Setting, ...] = (
    Setting("EDGEFLOW_CONFIG", "str", None, "The settings file. Unset: `edgeflow.yaml` in the current "
            "folder, when there is one. A file named here must exist.", in_file=False),
    Setting("EDGEFLOW_LOG_FORMAT", "choice", "text", "Log lines as plain text, or one JSON object per line "
            "(time, level, logger, node, replica, pid, message; topic and frame_id while a frame is "
            "handled). "
            "`--log-format` on `python main.py` / `edgeflow run` sets it too.", choices=("text", "json")),
    Setting("EDGEFLOW_LOG_LEVEL", "choice", "INFO", "The lowest level logged (`--debug` on `python main.py`: "
            "DEBUG for the launcher).", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Setting("GATEWAY_HTTP_PORT", "port", DEFAULT_GATEWAY_HTTP_PORT, "The gateway's web port (dashboard, API, "
            "streams) when `WebInterface(port=...)` gives none."),
    Setting("GATEWAY_TCP_PORT", "port", DEFAULT_GATEWAY_TCP_PORT, "The port the gateway takes frames on from "
            "other hosts (TCP ingest)."),
    Setting("GATEWAY_HOST", "str", "localhost", "Where the gateway runs, for senders on other hosts; a "
            "distributed gateway advertises it (else the address of its route to the broker)."),
    Setting("EDGEFLOW_BIND", "str", None, "The address the gateway's web server and TCP ingest bind when the "
            "code gives none (e.g. `0.0.0.0`). Unset: 127.0.0.1 (docs/security.md)."),
    Setting("EDGEFLOW_GATEWAY_TOKEN", "str", None, "The gateway's shared token (web API, streams, TCP "
            "ingest; senders use it too). `WebInterface(token=...)` wins over it.", secret=True),
    Setting("EDGEFLOW_ALLOWED_ORIGINS", "list", (), "Origins (`scheme://host[:port]`) allowed to open the "
            "gateway's WebSockets besides its own; `*` allows any. Unset: the same origin only."),
    Setting("EDGEFLOW_APP", "str", "default", "The app namespace of a Publisher, Subscriber or sender made "
            "without `app=` (`edgeflow deploy` sets it in each container)."),
    Setting("REDIS_URL", "str", None, "The control Redis as a whole URL; wins over REDIS_HOST, REDIS_PORT "
            "and REDIS_PASSWORD for a broker made without arguments.", secret="url"),
    Setting("REDIS_HOST", "str", "localhost", "The control Redis's host."),
    Setting("REDIS_PORT", "port", DEFAULT_REDIS_PORT, "The control Redis's port."),
    Setting("REDIS_PASSWORD", "str", None, "The password of both Redis instances.", secret=True),
    Setting("DATA_REDIS_URL", "str", None, "DualRedisBroker's data Redis as a whole URL.", secret="url"),
    Setting("DATA_REDIS_HOST", "str", None, "DualRedisBroker's data Redis's host. Unset: the control Redis's "
            "host.", default_from="REDIS_HOST"),
    Setting("DATA_REDIS_PORT", "port", DEFAULT_DATA_REDIS_PORT, "DualRedisBroker's data Redis's port."),
    Setting("REDIS_KEY", "str", "default", "The original EdgeFlow's `REDIS_KEY`; EdgeFlow's keys use the app "
            "name."),
    Setting("EDGEFLOW_NODE", "str", None, "The node `python main.py` runs when `--node` is not given (unset: "
            "every node)."),
    Setting("NODE_NAME", "str", None, "The node a container runs (`edgeflow deploy` sets it)."),
    Setting("EDGEFLOW_DURABLE_GRACE", "float", 60.0, "Seconds a distributed DURABLE consumer may be missing "
            "from the registry before a node waiting for it gives up (read when the runtime is imported).",
            minimum=0.0),
    Setting("EDGEFLOW_PURE_MATCHER", "bool", False, "Use the pure-Python fusion matcher when none is named "
            "(the compiled one otherwise)."),
    Setting("EDGEFLOW_DEBUG", "bool", False, "The `edgeflow` command prints an error's traceback (as "
            "`--debug`)."),
    Setting("EDGEFLOW_STATE_DIR", "str", None, "The folder an app keeps its state in (the gateway's stream "
            "store `<app>.sqlite3`). Unset: `$XDG_STATE_HOME/edgeflow`, else `~/.local/state/edgeflow`."),
    Setting("EDGEFLOW_DB_URL", "str", None, "The gateway's stream store as a URL: "
            "`postgresql://user:pass@host/db` (PostgreSQL) or `sqlite:////abs/path/file.sqlite3`. Unset: "
            "SQLite in `EDGEFLOW_STATE_DIR` (docs/streams.md).", secret="url"),
)
"""Every setting, in the order of docs/settings.md's table and of ``edgeflow settings``."""

BY_NAME = {s.name: s for s in SETTINGS}


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``word``, or "" when none is close."""
    match = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _kind_text(s: Setting) -> str:
    if s.kind == "choice":
        return " or ".join(f"'{c}'" for c in s.choices)
    return {"port": "a port number (0-65535)", "float": "a number", "str": "a text value",
            "bool": "true or false (1/0, yes/no, on/off)", "list": "a comma-separated list"}[s.kind]


def _convert(s: Setting, value: Any, where: str) -> Any:
    """``value`` (a string from the environment, or a YAML value) as the setting's type; ConfigError naming
    ``where`` otherwise. A secret's value is never put in the message."""
    shown = "" if s.secret else f", got {value!r}"
    bad = ConfigError(f"{where}: expected {_kind_text(s)}{shown}")
    if isinstance(value, bool) and s.kind != "bool":
        raise bad                              # YAML's yes/on: never a port or a host
    if s.kind == "str":
        if not isinstance(value, (str, int, float)):
            raise bad
        return str(value)
    if s.kind == "port":
        text = str(value).strip()
        if isinstance(value, float) or not text.isdigit() or int(text) > 65535:
            raise bad
        return int(text)
    if s.kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if s.minimum is not None and not number >= s.minimum:
            raise ConfigError(f"{where}: must be at least {s.minimum:g}{shown}")
        return number
    if s.kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise bad
    if s.kind == "list":
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(v.strip() for v in value if v.strip())
        raise bad
    if isinstance(value, str):                 # a choice
        for choice in s.choices:
            if value.strip().lower() == choice.lower():
                return choice
    raise bad


def mask(s: Setting, value: Any) -> Any:
    """``value`` as it may be shown: ``***`` for a secret that is set, a URL without its password."""
    if value is None or not s.secret:
        return value
    if s.secret == "url":
        return _URL_PASSWORD.sub(rf"\1:{MASK}@", value)
    return MASK


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A setting's effective value and where it came from: ``source`` is "default", "file" or "env";
    ``where`` says exactly (``$GATEWAY_HTTP_PORT``, ``edgeflow.yaml:3``, ``default``)."""

    setting: Setting
    value: Any
    source: str
    where: str

    def __repr__(self) -> str:                 # masked: a Resolved printed by mistake shows no secret
        return f"Resolved({self.setting.name}={mask(self.setting, self.value)!r}, {self.where})"


class _File:
    """The settings file's values, parsed again only when its name or its text changed."""

    def __init__(self) -> None:
        self._seen: tuple[str, str] | None = None
        self._values: dict[str, tuple[Any, str]] = {}

    @staticmethod
    def path() -> tuple[Path | None, str]:
        """(the settings file, how it is shown) or (None, "") when there is none."""
        given = os.environ.get("EDGEFLOW_CONFIG")
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"$EDGEFLOW_CONFIG={given!r}: no such file")
            return path, given
        path = Path.cwd() / CONFIG_FILE
        return (path, CONFIG_FILE) if path.is_file() else (None, "")

    def values(self) -> dict[str, tuple[Any, str]]:
        """Setting name -> (value, ``file:line``) for every setting the file gives."""
        path, shown = self.path()
        if path is None:
            return {}
        # the text, not the modification time, decides: two writes within one clock tick look the same
        seen = (shown, path.read_text(encoding="utf-8"))
        if seen != self._seen:
            self._values = _parse_file(seen[1], shown)
            self._seen = seen
        return self._values


def _parse_file(text: str, shown: str) -> dict[str, tuple[Any, str]]:
    """The file's settings, every key and value checked (module docstring)."""
    import yaml                                # only when there is a file: `import edgeflow` stays light
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
            raise ConfigError(f"{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
        if root is None:
            return {}
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"{shown}:{root.start_mark.line + 1}:{root.start_mark.column + 1}: expected a "
                              "mapping of settings (key: value)")
        keys = {s.key: s for s in SETTINGS} | {s.name.lower(): s for s in SETTINGS}
        out: dict[str, tuple[Any, str]] = {}
        for key_node, value_node in root.value:
            mark = key_node.start_mark
            at = f"{shown}:{mark.line + 1}:{mark.column + 1}"
            key = str(key_node.value)
            s = keys.get(key.lower()) if isinstance(key_node, yaml.ScalarNode) else None
            if s is None:
                raise ConfigError(f"{at}: unknown setting '{key}'"
                                  f"{did_you_mean(key.lower(), [t.key for t in SETTINGS if t.in_file])}")
            if not s.in_file:
                raise ConfigError(f"{at}: {s.key}: ${s.name} can only be set in the environment")
            if s.name in out:
                raise ConfigError(f"{at}: {s.key}: set twice (first at {out[s.name][1]})")
            value = loader.construct_object(value_node, deep=True)
            vmark = value_node.start_mark
            if value is not None:              # `key:` with nothing after it: as if absent
                out[s.name] = (_convert(s, value, f"{shown}:{vmark.line + 1}:{vmark.column + 1}: {s.key}"),
                               f"{shown}:{mark.line + 1}")
        return out
    finally:
        loader.dispose()


class Settings:
    """The effective settings; each one is an attribute (``settings.GATEWAY_HTTP_PORT``) read when asked for.

    Also: ``resolve(name)`` (value and source), ``source(name)``, ``given(name)`` (the value the environment
    or the file gives, None when the default applies), ``shown(name)`` (masked), ``effective()`` (every
    setting, masked, JSON-able) and ``file()`` (the settings file in use).
    """

    def __init__(self) -> None:
        self._file = _File()

    def __repr__(self) -> str:                # never the values: a secret could be among them
        return f"<Settings file={self.file()!r}>"

    def _setting(self, name: str) -> Setting:
        try:
            return BY_NAME[name]
        except KeyError:
            raise ConfigError(f"unknown setting '{name}'{did_you_mean(name, BY_NAME)}") from None

    def resolve(self, name: str) -> Resolved:
        """The setting's value and where it came from (environment, else file, else default)."""
        s = self._setting(name)
        if s.name == "EDGEFLOW_CONFIG":
            shown = self._file.path()[1]
            return Resolved(s, shown or None, "env" if os.environ.get(s.name) else "default",
                            f"${s.name}" if os.environ.get(s.name) else "default")
        raw = os.environ.get(s.name)
        if raw:                                # set and not empty, as the original's `os.environ.get(...) or`
            return Resolved(s, _convert(s, raw, f"${s.name}"), "env", f"${s.name}")
        given = self._file.values().get(s.name) if s.in_file else None
        if given is not None:
            return Resolved(s, given[0], "file", given[1])
        if s.default_from is not None:
            return Resolved(s, self.resolve(s.default_from).value, "default", f"default (= {s.default_from})")
        return Resolved(s, s.default, "default", "default")

    def get(self, name: str, fallback: Any = _RAISE) -> Any:
        """The setting's effective value (as ``getattr(settings, name)``); ``fallback`` instead of the
        ConfigError of a bad value or file, when given (for code that runs while an error is reported)."""
        if fallback is _RAISE:
            return self.resolve(name).value
        try:
            return self.resolve(name).value
        except ConfigError:
            return fallback

    def source(self, name: str) -> str:
        """Where the setting's value comes from: "default", "file" or "env"."""
        return self.resolve(name).source

    def given(self, name: str) -> Any:
        """The value the environment (a string) or the settings file gives, None when the default applies:
        for code that has its own default or its own checks (``os.environ.get(name)``, file included)."""
        s = self._setting(name)
        raw = os.environ.get(name)
        if raw:
            return raw
        given = self._file.values().get(name) if s.in_file else None
        return None if given is None else given[0]

    def shown(self, name: str) -> Any:
        """The setting's effective value as it may be printed (secrets masked)."""
        resolved = self.resolve(name)
        return mask(resolved.setting, resolved.value)

    def file(self) -> str | None:
        """The settings file in use, as given (``$EDGEFLOW_CONFIG``) or ``edgeflow.yaml``; None if none."""
        return self._file.path()[1] or None

    def effective(self) -> list[dict[str, Any]]:
        """Every setting as ``{"name", "key", "value", "source", "where"}``, secrets masked, JSON-able."""
        out = []
        for s in SETTINGS:
            r = self.resolve(s.name)
            value = list(r.value) if isinstance(r.value, tuple) else r.value
            out.append({"name": s.name, "key": s.key if s.in_file else None, "value": mask(s, value),
                        "source": r.source, "where": r.where})
        return out


def _property(s: Setting) -> property:
    return property(lambda self: self.get(s.name), doc=f"{s.help} (``${s.name}``; default {s.default!r})")


for _s in SETTINGS:
    setattr(Settings, _s.name, _property(_s))
del _s

settings = Settings()


def _default_text(s: Setting) -> str:
    if s.default_from:
        return f"= `{s.default_from}`"
    if s.name == "EDGEFLOW_CONFIG":
        return f"`{CONFIG_FILE}` if present"
    if s.default is None or s.default == ():
        return "unset"
    return f"`{str(s.default).lower() if isinstance(s.default, bool) else s.default}`"


def reference_table() -> str:
    """The Markdown table of every setting that docs/settings.md embeds (a test checks they agree)."""
    kinds = {"str": "text", "port": "port", "float": "number", "bool": "bool", "list": "list"}
    lines = ["| Setting (environment) | File key | Type | Default | Meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        kind = " \\| ".join(f"`{c}`" for c in s.choices) if s.kind == "choice" else kinds[s.kind]
        if s.kind == "float" and s.minimum is not None:
            kind += f" ≥ {s.minimum:g}"
        note = {True: " **Secret**: shown as `***`.", "url": " **Secret**: its password is shown as `***`.",
                False: ""}[s.secret]
        key = f"`{s.key}`" if s.in_file else "(environment only)"
        lines.append(f"| `{s.name}` | {key} | {kind} | {_default_text(s)} | {s.help}{note} |")
    return "\n".join(lines) + "\n"


def state_dir() -> Path:
    """The folder an app keeps its state in: ``$EDGEFLOW_STATE_DIR`` (or the settings file's ``state_dir``),
    else ``$XDG_STATE_HOME/edgeflow``, else ``~/.local/state/edgeflow`` (the XDG base directory rule for
    state that outlives a run). Not created here."""
    given = settings.EDGEFLOW_STATE_DIR
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):                 # the XDG rule: a relative value is ignored
        return Path(xdg) / "edgeflow"
    return Path.home() / ".local" / "state" / "edgeflow"


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``; an empty host, a
    wildcard (0.0.0.0, ::) and any other name count as reachable from other hosts."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token(what: str, host: str, port: int, token: object) -> None:
    """The closed-by-default rule: a listener bound beyond loopback must have a token.

    Args:
        what: the listener, as the message names it (``gateway 'gw': web server``).

    Raises:
        ConfigError: one line naming the listener and its address, and the two ways to fix it.
    """
    if token or is_loopback(host):
        return
    raise ConfigError(f"{what} on {host}:{port} is reachable from other hosts but has no token; set "
                      "EDGEFLOW_GATEWAY_TOKEN (or WebInterface(token=...)), or bind 127.0.0.1 "
                      "(WebInterface(host=...) / EDGEFLOW_BIND)")
