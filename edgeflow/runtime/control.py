"""Control messages: a request from the gateway's web server to every replica of one node, and the answers.

    web thread: GatewayRuntime.control("kalman", {"action": "reload"}) -> a Future (never blocks)
    gateway runner (its loop thread, in _service)  --("control", {id, node, message})-->  supervisor
    supervisor (Relay)  --("control_sent", {id, replicas, known})-->  gateway runner
                        --("control", {id, message})-->  each running replica of "kalman"
    replica runner: node.on_control(message) -> an answer dict, or a Future of one (sent once it is done)
                    --("control_result", {id, answer})-->  supervisor  -->  gateway runner
    gateway runner: the Future resolves to {"node", "results": [answer per replica]} once all are in, or to
                    {"node", "error", "status"} when no replica runs (404: no such node, 503: none running).

Every message is a 2-tuple on the supervisor's pipes, like the statistics. Only the runner's own thread writes
to its pipe: a request from the web thread waits in a queue until the next ``_service``. A ``--node`` run has
no supervisor: ``GatewayRuntime.control`` raises NotImplementedError there (the route answers 501).
An answer: ``{"ok": bool, "status": int, "error": str | None, "replica": int, ...}``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import threading
from typing import Any, Callable

KINDS = ("control", "control_sent", "control_result")
MAX_OPEN = 64                 # requests remembered at once (one never answered is forgotten after 64 more)

_ids = itertools.count(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RunnerControl:
    """A node runner's side: requests it sends (a gateway) and control messages it answers (any node)."""

    def __init__(self, name: str, replica: int) -> None:
        self.name, self.replica = name, replica
        self.node: Any = None                       # the node object, once made (on_control is its hook)
        self._lock = threading.Lock()
        self._outbox: collections.deque = collections.deque()   # messages for the supervisor
        self._open: collections.OrderedDict = collections.OrderedDict()   # id -> [future, expected, answers]
        self._answers: list = []                    # (id, Future) the node has not finished yet

    def submit(self, node: str, message: dict) -> concurrent.futures.Future:
        """Queue a request to every replica of ``node`` (any thread); a Future of the collected answers."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        ident = f"{os.getpid()}-{next(_ids)}"
        with self._lock:
            self._open[ident] = [future, None, [], node]
            while len(self._open) > MAX_OPEN:
                _, old = self._open.popitem(last=False)
                if not old[0].done():
                    old[0].set_result({"node": old[3], "status": 504,
                                       "error": "forgotten: too many open requests"})
            self._outbox.append(("control", {"id": ident, "node": node, "message": dict(message)}))
        return future

    def handle(self, message: tuple) -> bool:
        """One supervisor message (the runner's thread); False when it is no control message."""
        kind = message[0]
        if kind not in KINDS:
            return False
        payload = message[1]
        if kind == "control":
            self._answer(payload["id"], payload.get("message") or {})
            return True
        with self._lock:
            entry = self._open.get(payload.get("id"))
            if entry is None:
                return True                          # forgotten (or timed out and answered already)
            if kind == "control_sent":
                entry[1] = payload["replicas"]
                if not entry[1]:
                    del self._open[payload["id"]]
                    entry[0].set_result({"node": entry[3], "status": 503 if payload.get("known") else 404,
                                         "error": f"node '{entry[3]}' has no running replica"
                                         if payload.get("known") else f"unknown node '{entry[3]}'"})
                    return True
            else:
                entry[2].append(payload["answer"])
            if entry[1] is not None and len(entry[2]) >= entry[1]:
                del self._open[payload["id"]]
                answers = sorted(entry[2], key=lambda a: a.get("replica") or 0)
                entry[0].set_result({"node": entry[3], "results": answers})
        return True

    def _answer(self, ident: str, message: dict) -> None:
        hook = getattr(self.node, "on_control", None)
        if hook is None:
            self._reply(ident, self._error(400, f"node '{self.name}' takes no control messages"))
            return
        try:
            answer = hook(message)
        except Exception as exc:            # a hook that raises answers with its error; the node goes on
            answer = self._error(500, f"node '{self.name}': on_control raised {_one_line(exc)}")
        if isinstance(answer, concurrent.futures.Future):
            self._answers.append((ident, answer))
        else:
            self._reply(ident, answer)

    def _error(self, status: int, text: str) -> dict:
        return {"ok": False, "status": status, "error": text, "replica": self.replica}

    def _reply(self, ident: str, answer: Any) -> None:
        if not isinstance(answer, dict):
            answer = {"ok": True, "status": 200, "error": None, "result": answer}
        answer = {"replica": self.replica, **answer}
        self._outbox.append(("control_result", {"id": ident, "answer": answer}))

    def flush(self, send: Callable[[tuple], None]) -> None:
        """Send what waits: queued requests, and answers whose Future is done (the runner's thread)."""
        if self._answers:
            waiting = []
            for ident, future in self._answers:
                if not future.done():
                    waiting.append((ident, future))
                elif future.exception() is not None:
                    error = _one_line(future.exception())
                    self._reply(ident, self._error(500, f"node '{self.name}': {error}"))
                else:
                    self._reply(ident, future.result())
            self._answers = waiting
        while self._outbox:
            send(self._outbox.popleft())


class Relay:
    """The supervisor's side: a request goes to every running replica of its node, answers back to the
    replica that asked."""

    def __init__(self) -> None:
        self._origins: collections.OrderedDict = collections.OrderedDict()   # id -> the asking Replica

    def handle(self, origin: Any, kind: str, payload: dict, replicas: list, send: Callable) -> None:
        """``kind`` ("control" or "control_result") arrived from ``origin``; ``send(replica, message)``."""
        if kind == "control":
            node = payload.get("node")
            targets = [r for r in replicas if r.job.spec.name == node and r.conn is not None
                       and r.state == "running"]
            known = any(r.job.spec.name == node for r in replicas)
            send(origin, ("control_sent", {"id": payload["id"], "replicas": len(targets), "known": known}))
            if targets:
                self._origins[payload["id"]] = origin
                while len(self._origins) > MAX_OPEN:
                    self._origins.popitem(last=False)
            for rep in targets:
                send(rep, ("control", {"id": payload["id"], "message": payload.get("message")}))
        elif kind == "control_result":
            asker = self._origins.get(payload.get("id"))
            if asker is not None:
                send(asker, ("control_result", payload))
