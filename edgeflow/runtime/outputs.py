"""A node's output: turn what a hook returned into a frame and publish it, zero-copy when the node filled a loan.

Output frames keep the capture timestamp of the frame that caused them, carry the input's meta forward (the
node's own meta wins), and gain one hop in the trace (meta key TRACE_KEY: [node, received, sent] per hop), so
end-to-end latency can be measured at any node, name their origin (runtime/delivered.py), so a duplicate
after a crash can be told from a new frame, and name their parents (meta key PARENTS_KEY: the ring topic and
frame id of each input frame they came from, one for a consumer, one per member of a fusion set): following
parents from any frame back to frames without them (a producer's) is its lineage (edgeflow/record/lineage.py).

Back-pressure: when a DURABLE consumer is a whole ring behind, the node's ``on_backpressure`` policy decides.
"block" (the default) waits as long as the consumer is alive or being restarted: the ring's wait gives up every
WAIT_SLICE seconds, the runtime's ``waiter`` looks after the node (statistics, the supervisor's messages) and
raises only when the node is stopping or the consumer is gone for good; the node's input frame stays unreleased
meanwhile, so nothing is lost. "drop_oldest" moves the lagging consumer one frame on, "drop_newest" leaves the
new frame out; both are counted (drops, reason "backpressure").
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from edgeflow.errors import BackpressureTimeout, EdgeFlowError, FrameTooLarge, NodeError
from edgeflow.frame import Frame
from edgeflow.runtime.delivered import ORIGIN_KEY
from edgeflow.transport import message

log = logging.getLogger("edgeflow.runtime")

TRACE_KEY = "edgeflow.trace"
PARENTS_KEY = "edgeflow.parents"  # meta: [[ring topic, frame id], ...] of the inputs a frame was made from
MAX_HOPS = 16                     # keep meta small however long the pipeline
WAIT_SLICE = 0.25                 # seconds of one back-pressure wait in the ring before the runtime looks up


def normalize(node: str, result: Any) -> tuple[Any, dict | None, float | None]:
    """(data, meta, timestamp) from a hook's return value; data None means nothing to send.

    Accepted: None, an ndarray, bytes-like, a message (a dict or list of JSON-able values with numpy arrays
    nested, see edgeflow.transport.message), a Frame, or (data, meta): a 2-tuple whose second item is a dict
    is always (data, meta), a bare dict is a message. Anything else raises NodeError naming the node and the
    type. What a message holds is checked when it is encoded (``Output.send``), also as a NodeError.
    """
    if result is None:
        return None, None, None
    if isinstance(result, Frame):
        return result.data, result.meta, result.timestamp
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        data, meta, _ = normalize(node, result[0])
        return data, result[1], None
    if isinstance(result, np.ndarray):
        if result.dtype.hasobject:
            raise NodeError(f"node '{node}' returned an array of Python objects (dtype {result.dtype}); "
                            "return a numeric array, bytes, a Frame, (data, meta) or None", node=node)
        return result, None, None
    if isinstance(result, (bytes, bytearray, memoryview, dict, list)):
        return result, None, None
    raise NodeError(f"node '{node}' returned {type(result).__name__}, which cannot be sent; return an ndarray, "
                    "bytes, a dict or list message, a Frame, (data, meta) or None", node=node)


def unsendable_message(node: str, exc: Exception) -> NodeError:
    """The NodeError for a dict/list message that cannot be encoded (an object array, a set, ...)."""
    return NodeError(f"node '{node}' returned a message that cannot be sent: {exc}", node=node)


def check_message(node: str, data: Any) -> None:
    """Raise NodeError naming the node when ``data`` is a message that cannot be encoded (tests: run_node)."""
    if isinstance(data, (dict, list)):
        try:
            message.encode(data, f"node '{node}'")
        except (TypeError, FrameTooLarge) as exc:
            raise unsendable_message(node, exc) from None


def hop_meta(node: str, source: Frame | None, meta: dict | None, received: float,
             origin: tuple | None = None, parents: list | None = None) -> dict:
    """The output frame's meta: the input's meta, overridden by the node's, plus this hop in the trace and the
    origin of the input (``origin``: its [ring topic, frame id], see runtime/delivered.py).

    A hop is ``[node, received_us, sent_us]``: integer microseconds since the epoch (cheaper to encode than
    floats, and exact), at most MAX_HOPS of them.
    """
    out = dict(source.meta) if source is not None and source.meta else {}
    if origin is not None:
        out[ORIGIN_KEY] = [origin[0], origin[1]]
    if parents is not None:
        out[PARENTS_KEY] = parents
    elif source is not None:
        out.pop(PARENTS_KEY, None)        # the input's parents are not this frame's
    if meta:
        out.update(meta)
    trace = out.get(TRACE_KEY)
    trace = trace[-(MAX_HOPS - 1):] if trace else []
    trace.append([node, int(received * 1e6), time.time_ns() // 1000])
    out[TRACE_KEY] = trace
    return out


class Output:
    """Publishes one node replica's results to its output ring (a Publisher made by the runtime)."""

    def __init__(self, node: str, publisher, *, on_backpressure: str = "block", waiter=None, metrics=None) -> None:
        self.node = node
        self.publisher = publisher
        self.remotes: list = []          # Redis / TCP publishers the router adds for consumers on other hosts
        self.remote_errors = 0
        self.on_backpressure = on_backpressure
        self.waiter = waiter             # waiter(exc, since): raises to give up a back-pressure wait
        self.metrics = metrics
        self._loan = None
        self._scratch = None             # a drop policy's stand-in for a loan while the ring is full
        # block: the ring gives up every WAIT_SLICE so the runtime can look after the node; drop: at once
        publisher.backpressure_timeout = WAIT_SLICE if on_backpressure == "block" else 0.0

    def _wait(self, exc: BackpressureTimeout, since: float | None, waited: float | None = None) -> float:
        """One back-pressure wait of ``waited`` seconds (default the ring's) ended without room: hand over to
        the waiter (which raises to give up); returns when the wait began."""
        if since is None:
            since = time.monotonic() - (self.publisher.backpressure_timeout if waited is None else waited)
        if self.waiter is None:
            raise exc
        self.waiter(exc, since)
        return since

    def _dropped(self) -> None:
        if self.metrics is not None:
            self.metrics.dropped("backpressure")

    def loan(self, shape, dtype) -> np.ndarray:
        """A writable array in a free slot; returning it from the hook publishes it with no copy.

        Under "block" this waits for room like a publish. Under a drop policy a full ring hands out a private
        array instead: the result is then published by copy if there is room by the time it is sent."""
        if self._loan is not None:
            self._loan.abort()
            self._loan = None
        self._scratch = None
        since = None
        while True:
            try:
                self._loan = self.publisher.loan(shape, dtype)
                return self._loan.array
            except BackpressureTimeout as exc:
                if self.on_backpressure == "block":
                    since = self._wait(exc, since)
                    continue
                if self.on_backpressure == "drop_oldest" and self.publisher.skip_oldest():
                    self._dropped()
                    continue
                self._scratch = np.empty(shape, dtype)
                return self._scratch

    def _publish(self, data, timestamp: float, meta: dict) -> int | None:
        """Publish by copy under the back-pressure policy; None when the frame was dropped."""
        since = None
        while True:
            try:
                return self.publisher.publish(data, timestamp=timestamp, meta=meta)
            except BackpressureTimeout as exc:
                if self.on_backpressure == "block":
                    since = self._wait(exc, since)
                elif self.on_backpressure == "drop_oldest" and self.publisher.skip_oldest():
                    self._dropped()
                else:
                    self._dropped()
                    return None

    def _publish_remote(self, remote, data, timestamp: float, meta: dict) -> None:
        """One frame to another host. A DURABLE route that is full (Redis out of memory, its spool at its bound)
        raises BackpressureTimeout: that is waited out like a full ring, never dropped under "block"."""
        since = None
        while True:
            try:
                remote.publish(data, timestamp=timestamp, meta=meta)
                return
            except BackpressureTimeout as exc:
                if self.on_backpressure != "block":
                    self._dropped()
                    return
                since = self._wait(exc, since, getattr(remote, "backpressure_timeout", None))

    def send(self, result: Any, source: Frame | None, received: float, origin: tuple | None = None,
             parents: list | None = None) -> int | None:
        """Publish a hook's result; returns its frame_id, or None when there was nothing to send (or a drop
        policy dropped it). ``origin``: the input's origin (runtime/delivered.py), carried in meta;
        ``parents``: [[ring topic, frame id], ...] of the inputs it came from (PARENTS_KEY)."""
        loan, self._loan = self._loan, None
        scratch, self._scratch = self._scratch, None
        try:
            data, meta, timestamp = normalize(self.node, result)
        except NodeError:
            if loan is not None:
                loan.abort()
            raise
        if data is None:
            if loan is not None:
                loan.abort()
            return None
        if timestamp is None:
            timestamp = source.timestamp if source is not None else (loan.timestamp if loan else time.time())
        meta = hop_meta(self.node, source, meta, received, origin, parents)
        if loan is not None and data is loan.array:          # the node filled its loan: publish in place
            fid = loan.commit(timestamp=timestamp, meta=meta)
        else:
            if loan is not None:
                loan.abort()
            try:
                fid = self._publish(data, timestamp, meta)
            except TypeError as exc:
                if isinstance(data, (dict, list)):           # what the message holds cannot be encoded
                    raise unsendable_message(self.node, exc) from None
                raise
            if fid is None:
                return None
        for remote in self.remotes:                          # the same frame to other hosts (still valid here)
            try:
                self._publish_remote(remote, data, timestamp, meta)
            except BackpressureTimeout:
                raise                                        # the node is stopping, or the consumer is gone
            except EdgeFlowError as exc:                    # counted; local consumers are not held up
                self.remote_errors += 1
                if self.remote_errors == 1 or self.remote_errors % 1000 == 0:
                    log.warning("%s: remote publish failed (%d so far): %s", self.node, self.remote_errors, exc)
        return fid

    def route_states(self) -> dict[str, str]:
        """"transport:topic" -> state ("up", "down", "full", ...) of each route to another host that says."""
        out = {}
        for remote in self.remotes:
            try:
                state = getattr(remote.statistics(), "state", None)
            except Exception:                  # a closed or failing route has no figures: not a reason to fail
                continue
            if state is not None:
                out[f"{type(remote).__name__.replace('Publisher', '').replace('Sender', '').lower()}:"
                    f"{getattr(remote, 'topic', '?')}"] = str(state)
        return out

    def abandon(self) -> None:
        """The node failed: leave the ring to the restarted process (consumers wait instead of finishing)."""
        self._loan = self._scratch = None
        self.publisher.abandon()

    def close(self, timeout: float = 0.0) -> None:
        if self._loan is not None:
            self._loan.abort()
            self._loan = None
        self.publisher.close(timeout)
