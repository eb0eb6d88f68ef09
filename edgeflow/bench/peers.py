"""Peers of the ring in the two-process benchmark: iceoryx2 publish-subscribe, both sides.

iceoryx2 (``pip install iceoryx2``, the Python bindings of the Rust library) is the zero-copy IPC a Python user
would otherwise pick. Its cases run on the same ``Session`` as edgeflow's (``edgeflow.bench.producer``): the same
stamp (``time.time()`` just before the loan), the same payload markers, the same consumer checks (index, kind,
size, torn frames, every burst frame in order), the same latency and burst phases.

Cases (``PEER_CASES``):

- ``iox2-loan-event``: ``loan_uninit()``, the markers written in the sample in place, ``assume_init().send()``
  (zero-copy), then ``Notifier.notify()``; the consumer sleeps in ``Listener.timed_wait`` when its subscriber
  is empty ("event wake-up", iceoryx2's way to wake a process).
- ``iox2-loan-poll``: the same sends, no notifier; the consumer calls ``Subscriber.receive()`` in a tight loop
  ("busy poll": one core busy while it waits).
- ``iox2-copy-event`` / ``iox2-copy-poll``: ``Publisher.send_copy()`` of a prepared frame (iceoryx2's copy-in
  path: a loan plus one memmove), to compare with edgeflow's ``publish()``.

Every case delivers every frame (``enable_safe_overflow(False)`` with ``RetryUntilDelivered``: a full subscriber
buffer blocks the publisher, like DURABLE); the subscriber buffer holds ``cfg.slots`` samples, as the ring does.
Each case runs under an iceoryx2 config of its own (a unique file prefix and root directory), so whatever
iceoryx2 leaves in /dev/shm (its global management segment stays after the last node) is removed at close
without touching other iceoryx2 users.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import shutil
import tempfile
import time
from typing import Any

from edgeflow.bench.payload import BURST, make_frame, read_markers, write_markers
from edgeflow.bench.results import BenchConfig

PEER_CASES = {
    "iox2-loan-event": ("iceoryx2 loan event wake-up", "loan", "event"),
    "iox2-loan-poll": ("iceoryx2 loan busy poll", "loan", "poll"),
    "iox2-copy-event": ("iceoryx2 send_copy event wake-up", "copy", "event"),
    "iox2-copy-poll": ("iceoryx2 send_copy busy poll", "copy", "poll"),
}
"""case id -> (table label, produce mode, consumer wake-up)."""

_COUNTER = itertools.count()
_POLL_CHECK = 4096                    # busy poll: look at the clock once per this many empty receives


def iceoryx2_missing() -> str | None:
    """Why the iceoryx2 cases cannot run (the bindings are not importable), or None."""
    try:
        import iceoryx2 as iox

        iox.NodeBuilder, iox.Listener, iox.BackpressureStrategy  # noqa: B018 - the names the cases use
    except (ImportError, AttributeError) as exc:
        return f"iceoryx2 not installed (pip install iceoryx2: {exc})"
    return None


def iceoryx2_version() -> str | None:
    """The installed iceoryx2 version, or None."""
    from importlib import metadata

    try:
        return metadata.version("iceoryx2")
    except metadata.PackageNotFoundError:
        return None


def _node(iox: Any, spec: dict[str, Any]) -> Any:
    """An iceoryx2 node under the case's own prefix and root directory (see the module docstring)."""
    cfg = iox.config.default()
    glob_cfg = cfg.global_cfg                 # a reference into cfg: setting its fields changes cfg
    glob_cfg.prefix = iox.FileName.new(spec["prefix"])
    glob_cfg.root_path = iox.Path.new(spec["root"].rstrip("/") + "/")
    return iox.NodeBuilder.new().config(cfg).create(iox.ServiceType.Ipc)


def _payload_type(nbytes: int) -> Any:
    # a fixed-size payload of the frame's size: loan_uninit() hands out exactly one frame
    return ctypes.c_uint8 * nbytes


def _pubsub(iox: Any, node: Any, spec: dict[str, Any]) -> Any:
    return (node.service_builder(iox.ServiceName.new(spec["service"]))
            .publish_subscribe(_payload_type(spec["nbytes"]))
            .max_publishers(1).max_subscribers(1)          # the data segment: (buffer + borrowed) + loans
            .subscriber_max_buffer_size(spec["slots"]).subscriber_max_borrowed_samples(2)
            .history_size(0).enable_safe_overflow(False)
            .open_or_create())


def _event(iox: Any, node: Any, spec: dict[str, Any]) -> Any:
    return node.service_builder(iox.ServiceName.new(spec["service"] + ".wake")).event().open_or_create()


def _view(address: int, nbytes: int) -> memoryview:
    """A writable memoryview of ``nbytes`` at ``address`` (a sample's payload), for the marker helpers."""
    return memoryview((ctypes.c_char * nbytes).from_address(address))


class Iox2Sender:
    """The producer side of an iceoryx2 case: a publisher (and a notifier for the event wake-up).

    ``mode`` "loan": loan_uninit, markers written in the sample (the whole frame copied in too with
    ``cfg.loan_fill``), send. "copy": markers written in a prepared frame, ``send_copy`` of it.
    """

    kind, every, burst_seq = "iox2", True, True

    def __init__(self, shape: tuple[int, ...], cfg: BenchConfig, *, mode: str, wake: str) -> None:
        import iceoryx2 as iox

        iox.set_log_level(iox.LogLevel.Error)      # its warnings (stale nodes of other users) are not ours
        self._iox, self._loan, self._fill = iox, mode == "loan", cfg.loan_fill
        self._src = make_frame(shape)
        self.nbytes = self._src.nbytes
        self._src_c = _payload_type(self.nbytes).from_buffer(self._src)    # send_copy's argument, no copy
        tag = f"efb{os.getpid()}x{next(_COUNTER)}_"
        self._root = tempfile.mkdtemp(prefix="edgeflow-iox2-")
        self.spec = {"prefix": tag, "root": self._root, "service": f"edgeflow-bench/{tag}",
                     "nbytes": self.nbytes, "slots": cfg.slots, "wake": wake}
        self._node = self._service = self._pub = self._event = self._notifier = None
        try:
            self._node = _node(iox, self.spec)
            self._service = _pubsub(iox, self._node, self.spec)
            self._pub = (self._service.publisher_builder().max_loaned_samples(2)
                         .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create())
            if wake == "event":
                self._event = _event(iox, self._node, self.spec)
                self._notifier = self._event.notifier_builder().create()
        except BaseException:
            self.close(peer_ok=False)
            raise

    def channel(self) -> None:
        """What the consumer child gets to receive from (None: it connects by itself)."""
        return None

    def send(self, kind: int, idx: int) -> None:
        """Stamp frame ``idx`` of ``kind`` with time.time() and send it (and notify, for the event wake-up)."""
        if self._loan:
            stamp = time.time()
            sample = self._pub.loan_uninit()
            if self._fill:
                ctypes.memmove(sample.payload_ptr, self._src.ctypes.data, self.nbytes)
            write_markers(_view(sample.payload_ptr, self.nbytes), stamp, idx, kind)
            sample.assume_init().send()
        else:
            stamp = time.time()
            write_markers(self._src, stamp, idx, kind)
            self._pub.send_copy(self._src_c)
        if self._notifier is not None:
            self._notifier.notify()

    def send_body(self, idx: int) -> None:
        """Send one burst frame (``idx``: its position in the burst)."""
        self.send(BURST, idx)                      # checked frame by frame, in order, like edgeflow's

    def close(self, *, peer_ok: bool) -> None:
        """Release the ports and the node, then remove what the case's prefix left (idempotent)."""
        for name in ("_notifier", "_pub"):
            port = getattr(self, name)
            if port is not None:
                setattr(self, name, None)
                port.delete()
        self._event = self._service = self._node = None     # the node goes with its last reference
        remove_iox2_files(self.spec["prefix"], self._root)


def remove_iox2_files(prefix: str, root: str) -> list[str]:
    """Unlink /dev/shm files of this case's iceoryx2 prefix and its root directory; returns what was there."""
    found = glob.glob(f"/dev/shm/{prefix}*")
    for path in found:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    return found


def leftover_iox2_files() -> list[str]:
    """/dev/shm files of this process's iceoryx2 cases still there (nothing, after every case closed)."""
    return sorted(glob.glob(f"/dev/shm/efb{os.getpid()}x*"))


class Iox2Receiver:
    """The consumer side: an iceoryx2 subscriber, waking on a listener (event) or polling (busy poll)."""

    def __init__(self, spec: dict[str, Any], chan: Any) -> None:
        import iceoryx2 as iox

        iox.set_log_level(iox.LogLevel.Error)
        self._iox, self.nbytes, self.notes = iox, spec["nbytes"], []
        self._node = _node(iox, spec)
        self._service = _pubsub(iox, self._node, spec)
        self._sub = self._service.subscriber_builder().buffer_size(spec["slots"]).create()
        self._listener = self._event = None
        if spec["wake"] == "event":
            self._event = _event(iox, self._node, spec)
            self._listener = self._event.listener_builder().create()

    def _next(self, timeout: float) -> Any:
        receive = self._sub.receive
        sample = receive()
        if sample is not None:
            return sample
        deadline = time.monotonic() + timeout
        if self._listener is not None:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"iceoryx2: nothing received in {timeout}s")
                # a notification sent after the receive above is still pending, so this wait cannot miss it
                self._listener.timed_wait(self._iox.Duration.from_secs_f64(left))
                sample = receive()
                if sample is not None:
                    return sample
        while True:
            for _ in range(_POLL_CHECK):
                sample = receive()
                if sample is not None:
                    return sample
            if time.monotonic() > deadline:
                raise TimeoutError(f"iceoryx2: nothing received in {timeout}s")

    def recv(self, timeout: float) -> tuple[float, float, int, int, int, None, int]:
        """The next frame as (now, stamp, index, kind, tail index, frame_id or None, nbytes)."""
        sample = self._next(timeout)
        now = time.time()
        nbytes = sample.header.number_of_elements * self.nbytes     # one fixed-size payload per sample
        stamp, idx, kind, tail = read_markers(_view(sample.payload_ptr, self.nbytes), self.nbytes)
        sample.delete()
        return now, stamp, idx, kind, tail, None, nbytes

    def close(self) -> None:
        """Release the ports and the node."""
        for port in (self._listener, self._sub):
            if port is not None:
                port.delete()
        self._listener = self._sub = self._event = self._service = self._node = None
