"""A node's output: turn what a hook returned into a frame and publish it, zero-copy when the node filled a loan.

Output frames keep the capture timestamp of the frame that caused them, carry the input's meta forward (the
node's own meta wins), and gain one hop in the trace (meta key TRACE_KEY: [node, received, sent] per hop), so
end-to-end latency can be measured at any node.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from edgeflow.errors import EdgeFlowError, FrameTooLarge, NodeError
from edgeflow.frame import Frame
from edgeflow.transport import message

log = logging.getLogger("edgeflow.runtime")

TRACE_KEY = "edgeflow.trace"
MAX_HOPS = 16                     # keep meta small however long the pipeline


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


def hop_meta(node: str, source: Frame | None, meta: dict | None, received: float) -> dict:
    """The output frame's meta: the input's meta, overridden by the node's, plus this hop in the trace.

    A hop is ``[node, received_us, sent_us]``: integer microseconds since the epoch (cheaper to encode than
    floats, and exact), at most MAX_HOPS of them.
    """
    out = dict(source.meta) if source is not None and source.meta else {}
    if meta:
        out.update(meta)
    trace = out.get(TRACE_KEY)
    trace = trace[-(MAX_HOPS - 1):] if trace else []
    trace.append([node, int(received * 1e6), time.time_ns() // 1000])
    out[TRACE_KEY] = trace
    return out


class Output:
    """Publishes one node replica's results to its output ring (a Publisher made by the runtime)."""

    def __init__(self, node: str, publisher) -> None:
        self.node = node
        self.publisher = publisher
        self.remotes: list = []          # Redis / TCP publishers the router adds for consumers on other hosts
        self.remote_errors = 0
        self._loan = None

    def loan(self, shape, dtype) -> np.ndarray:
        """A writable array in a free slot; returning it from the hook publishes it with no copy."""
        if self._loan is not None:
            self._loan.abort()
        self._loan = self.publisher.loan(shape, dtype)
        return self._loan.array

    def send(self, result: Any, source: Frame | None, received: float) -> int | None:
        """Publish a hook's result; returns its frame_id, or None when there was nothing to send."""
        loan, self._loan = self._loan, None
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
        meta = hop_meta(self.node, source, meta, received)
        if loan is not None and data is loan.array:          # the node filled its loan: publish in place
            fid = loan.commit(timestamp=timestamp, meta=meta)
        else:
            if loan is not None:
                loan.abort()
            try:
                fid = self.publisher.publish(data, timestamp=timestamp, meta=meta)
            except TypeError as exc:
                if isinstance(data, (dict, list)):           # what the message holds cannot be encoded
                    raise unsendable_message(self.node, exc) from None
                raise
        for remote in self.remotes:                          # the same frame to other hosts (still valid here)
            try:
                remote.publish(data, timestamp=timestamp, meta=meta)
            except EdgeFlowError as exc:                    # counted; local consumers are not held up
                self.remote_errors += 1
                if self.remote_errors == 1 or self.remote_errors % 1000 == 0:
                    log.warning("%s: remote publish failed (%d so far): %s", self.node, self.remote_errors, exc)
        return fid

    def abandon(self) -> None:
        """The node failed: leave the ring to the restarted process (consumers wait instead of finishing)."""
        self._loan = None
        self.publisher.abandon()

    def close(self, timeout: float = 0.0) -> None:
        if self._loan is not None:
            self._loan.abort()
            self._loan = None
        self.publisher.close(timeout)
