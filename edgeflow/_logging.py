"""Log setup of every EdgeFlow process: plain text (the default) or one JSON object per line.

    configure()                        the launcher / supervisor (``python main.py``, ``edgeflow run``)
    configure("detector", 1)           a node process: its records carry the node and the replica

``$EDGEFLOW_LOG_FORMAT`` (a setting: edgeflow.config) chooses; ``--log-format`` on ``python main.py`` sets
it for the run, node processes included (they inherit the environment). A JSON line has ``time`` (UTC, ISO
8601, milliseconds), ``level``, ``logger``, ``node`` and ``replica`` (null in the launcher), ``pid`` and
``message``; ``topic`` and ``frame_id`` while a node handles a frame (the frame is found on the logging call's
stack, so the runtime's own lines about a failing frame carry them as well as the node's); ``exc`` with a
traceback. A record's own ``topic`` / ``frame_id`` (``log.info(..., extra={"topic": ...})``) wins.

Like ``logging.basicConfig``, nothing is changed when the root logger already has a handler (an application
that set up its own logging keeps it).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any

from edgeflow.config import settings
from edgeflow.errors import ConfigError

FORMATS = ("text", "json")
_FRAME_LOCALS = ("frame", "first", "source")    # the runtime loops' names for the frame being handled
_MAX_DEPTH = 40                                 # stack frames looked at for it (a node's hook is a few deep)


def configure(node: str | None = None, replica: int | None = None, *, level: int | str | None = None,
              log_format: str | None = None) -> None:
    """Send this process's log records to stderr, as text or JSON (module docstring).

    Args:
        node, replica: the node this process runs (None in the launcher and the supervisor).
        level: the lowest level logged (default ``$EDGEFLOW_LOG_LEVEL``, INFO).
        log_format: "text" or "json" (default ``$EDGEFLOW_LOG_FORMAT``); when given it is also put in the
            environment so that the node processes started later use it too.

    Raises:
        ConfigError: a bad format or level (from the argument, the environment or the settings file).
    """
    if log_format is not None:
        if log_format not in FORMATS:
            raise ConfigError(f"log format {log_format!r}: must be 'text' or 'json'")
        os.environ["EDGEFLOW_LOG_FORMAT"] = log_format
    fmt = settings.EDGEFLOW_LOG_FORMAT          # checked here (also a value given as log_format)
    level = settings.EDGEFLOW_LOG_LEVEL if level is None else level
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()           # stderr, as basicConfig
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node, replica))
        logging.captureWarnings(True)           # a warning is a log line too, not a stray text line on stderr
    else:
        handler.setFormatter(logging.Formatter(text_format(node, replica)))
    root.addHandler(handler)
    root.setLevel(level)


def text_format(node: str | None, replica: int | None) -> str:
    """The plain-text format: ``%(asctime)s node[replica] %(message)s`` in a node, the message alone else."""
    if node is None:
        return "%(message)s"
    return f"%(asctime)s {node.replace('%', '%%')}[{replica}] %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or a traceback are escaped)."""

    def __init__(self, node: str | None = None, replica: int | None = None) -> None:
        super().__init__()
        self.node, self.replica = node, replica

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (module docstring lists the fields)."""
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
            "node": getattr(record, "node", self.node), "replica": getattr(record, "replica", self.replica),
            "pid": record.process, "message": record.getMessage()}
        topic, frame_id = getattr(record, "topic", None), getattr(record, "frame_id", None)
        if topic is None and frame_id is None and self.node is not None:
            topic, frame_id = frame_in_hand()
        if topic is not None:
            out["topic"] = topic
        if frame_id is not None:
            out["frame_id"] = frame_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)     # ASCII only: no U+2028 that a reader would split lines at


def frame_in_hand() -> tuple[str | None, int | None]:
    """(topic, frame_id) of the input frame the calling thread is handling, or (None, None).

    The runtime's loops (runtime/loop.py, fusionloop.py) hold it in a local while the hook runs and while a
    failure is logged; reading it from the stack keeps the loops free of any logging bookkeeping per frame.
    """
    from edgeflow.frame import Frame
    caller = sys._getframe(1)
    for _ in range(_MAX_DEPTH):
        if caller is None:
            break
        local = caller.f_locals
        for name in _FRAME_LOCALS:
            frame = local.get(name)
            if isinstance(frame, Frame) and frame.topic is not None:
                return frame.topic, int(frame.frame_id)
        caller = caller.f_back
    return None, None
