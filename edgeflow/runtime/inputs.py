"""A node's inputs: every ring it reads (one per input and source replica), served fairly as one stream.

A source that closes cleanly (its stream ended) counts as finished once drained; one that died is waited for
(the supervisor restarts it and the new process takes the ring over).
"""

from __future__ import annotations

import time

from edgeflow.frame import Frame
from edgeflow.qos import QoS
from edgeflow.transport import shm


class Input:
    """One ring read by this node replica."""

    __slots__ = ("label", "source", "sub", "finished", "qos", "topic")

    def __init__(self, label: str, source: str, sub: "shm.Subscriber", qos: QoS | None = None) -> None:
        self.label = label
        self.source = source
        self.sub = sub
        self.finished = False
        self.qos = qos if qos is not None else getattr(sub, "qos", QoS.REALTIME)
        self.topic = getattr(sub, "topic", label)      # the ring (or stream) topic: a frame id's namespace


class InputSet:
    """All of a node replica's input rings, read round-robin so no input starves another."""

    def __init__(self, inputs: list[Input], keep_open: bool = False) -> None:
        self.inputs = inputs
        self.keep_open = keep_open        # inputs come and go at run time (streams): never finished
        self._next = 0
        self._done_sources: set[str] = set()
        self._pending: list[tuple[Frame, Input]] = []     # found while checking on a closing writer

    @classmethod
    def open(cls, app: str, plans, *, max_held: int = 4, keep_open: bool = False) -> "InputSet":
        """Subscribe to every ring of the given InputPlans, as their groups."""
        return cls(_subscribe(app, plans, max_held), keep_open)

    def add_plans(self, app: str, plans, *, max_held: int = 4) -> None:
        """Subscribe to the rings of more InputPlans (a node or stream added to the running app)."""
        self.inputs.extend(_subscribe(app, plans, max_held))

    def remove_source(self, source: str) -> int:
        """Close and forget every input from ``source`` (a node removed from the running app); how many."""
        gone = [inp for inp in self.inputs if inp.source == source]
        for inp in gone:
            inp.sub.close()
        self.inputs = [inp for inp in self.inputs if inp.source != source]
        self._pending = [(f, inp) for f, inp in self._pending if inp.source != source]
        self._done_sources.discard(source)
        self._next = 0
        return len(gone)

    def add(self, inp: Input) -> None:
        """Read one more input (the router adds Redis or TCP subscriptions for sources on other hosts)."""
        self.inputs.append(inp)

    def next(self, timeout: float) -> tuple[Frame, Input] | tuple[None, None]:
        """The next frame from any input, waiting at most ``timeout`` seconds; (None, None) when none came."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._poll()
            if got[0] is not None:
                return got
            active = [inp for inp in self.inputs if not inp.finished]
            remaining = deadline - time.monotonic()
            if not active or remaining <= 0:
                return None, None
            local = [inp for inp in active if isinstance(inp.sub, shm.Subscriber)]
            # rings can all be slept on at once; network inputs are polled every few milliseconds
            nap = min(remaining, 0.1 if len(local) == len(active) else 0.003)
            if not local:
                time.sleep(nap)
            elif shm.wait_any([inp.sub for inp in local], nap) < 0:
                self._check_writers(local)

    def _poll(self) -> tuple[Frame, Input] | tuple[None, None]:
        if self._pending:
            return self._pending.pop(0)
        n = len(self.inputs)
        for k in range(n):
            inp = self.inputs[(self._next + k) % n]
            if inp.finished:
                continue
            frame = inp.sub.recv_nowait()
            if frame is not None:
                self._next = (self._next + k + 1) % n
                frame.topic = inp.label
                return frame, inp
        return None, None

    def _check_writers(self, active: list[Input]) -> None:
        """Mark inputs whose writer closed (or never came, when the supervisor said the source is done)."""
        for inp in active:
            # whether a writer died matters only once the supervisor said its node is done (a dead one is
            # otherwise restarted and takes the ring over): an idle reader skips the /proc read till then
            done = inp.source in self._done_sources
            status = inp.sub.writer_status() if done else inp.sub.writer_state()
            if status == "closed" or (status in ("none", "dead") and done):
                frame = inp.sub.recv_nowait()          # published just before it closed?
                if frame is None:
                    inp.finished = True
                else:
                    frame.topic = inp.label
                    self._pending.append((frame, inp))

    def source_done(self, source: str) -> None:
        """The supervisor says every replica of ``source`` finished its stream."""
        self._done_sources.add(source)

    def finished(self) -> bool:
        """True when every input's source ended its stream and everything was read (never with keep_open)."""
        return not self.keep_open and bool(self.inputs) and all(inp.finished for inp in self.inputs)

    def statistics(self) -> dict[str, dict]:
        """Per input label: frames received and skipped (drops) as the rings count them."""
        out: dict[str, dict] = {}
        for inp in self.inputs:
            s = inp.sub.statistics()
            agg = out.setdefault(inp.label, {"received": 0, "drops": 0, "lag": 0})
            agg["received"] += _stat(s, "received")
            agg["drops"] += _stat(s, "drops")
            agg["lag"] = max(agg["lag"], _stat(s, "lag"))
        return out

    def close(self) -> None:
        for inp in self.inputs:
            inp.sub.close()



def _subscribe(app: str, plans, max_held: int) -> list[Input]:
    """An Input per ring of the InputPlans (all or none: a failure closes what was opened)."""
    inputs = []
    try:
        for p in plans:
            for topic in p.topics:
                balanced = p.qos is QoS.BALANCED
                sub = shm.Subscriber(topic, app=app, qos=p.qos, group=p.group, max_held=max_held,
                                     max_lag=(p.max_lag or None) if balanced else None)
                inputs.append(Input(p.label, p.source, sub, p.qos))
    except BaseException:
        for inp in inputs:
            inp.sub.close()
        raise
    return inputs


def _stat(stats, name: str) -> int:
    """A counter from a transport's statistics (a dataclass or a dict; 0 when it does not count that)."""
    value = stats.get(name, 0) if isinstance(stats, dict) else getattr(stats, name, 0)
    return int(value or 0)
