"""The shared-memory ring (compiled): one writer, many readers, zero-copy slots.

A ring named ``N`` is the control segment ``/dev/shm/N.ctl`` plus one data segment ``/dev/shm/N.g<k>`` per
generation. This layer knows bytes, slots and sequence numbers; edgeflow.transport.shm builds topics and Frames on
top of it. Sequence numbers start at 1 and are the frames' ids.
"""

from typing import Any

READY: int          #: wait(): something may be ready to take
TIMEOUT: int        #: wait(): the timeout passed
WRITER_CLOSED: int  #: wait(): the writer closed the ring (clean)
WRITER_DEAD: int    #: wait(): the writer's process is gone (crash)
MAX_META: int       #: JSON metadata bytes per frame
MAX_DTYPE: int      #: dtype description bytes per frame
MAX_READERS: int    #: readers attached at once (one bit each in a slot's pin mask)
MAX_SLOTS: int
MAX_NDIM: int


def process_start_time(pid: int) -> int:
    """Start time (clock ticks since boot) of a live process; 0 when it is gone or a zombie."""


def unlink_segment(name: str) -> bool:
    """Remove /dev/shm/<name>; True when it existed."""


class RingWriter:
    """The one writer of a ring: creates it, or takes over one whose writer died."""

    name: str
    slots: int
    grow: bool
    backpressure_timeout: float
    backpressure_waits: int
    generations_made: int
    last_seq: int
    slot_bytes: int
    generation: int

    @staticmethod
    def create(name: str, *, slots: int = 8, slot_bytes: int = 0, grow: bool = True,
               backpressure_timeout: float = 5.0) -> "RingWriter":
        """Create the ring ``name`` or take it over from a dead writer.

        Args:
            slots: 3 to 64 slots.
            slot_bytes: payload bytes per slot; 0 makes the first generation at the first frame, sized to it.
            grow: a frame larger than the slots makes a new generation (readers follow); False raises
                FrameTooLarge instead.
            backpressure_timeout: seconds a publish waits for a DURABLE reader that is a whole ring behind.

        Raises:
            ConfigError: bad option, or a live writer owns the ring.
            LayoutMismatch: a segment of that name is not a ring of this layout version.
            TransportError: shared memory could not be made (e.g. /dev/shm is full: the message says so).
        """

    def begin(self, nbytes: int) -> Any:
        """Loan a free slot of at least nbytes and return a writable buffer on it (the slot is not cleared).

        Blocks (back-pressure) while every slot is pinned or needed by a DURABLE reader, up to the timeout.
        Raises BackpressureTimeout, FrameTooLarge, ConfigError (a loan is already open), ClosedResourceError.
        """

    def commit(self, kind: int, dtype: bytes, shape: tuple, timestamp: float, meta: bytes) -> int:
        """Publish the open loan with its description; returns its seq. Wakes sleeping readers."""

    def abort(self) -> None:
        """Give back the open loan unpublished."""

    def publish(self, data: Any, kind: int, dtype: bytes, shape: tuple, timestamp: float, meta: bytes) -> int:
        """Copy a C-contiguous buffer into a slot (one memcpy, GIL released for large frames) and publish it."""

    def declare_group(self, group: str, *, durable: bool) -> None:
        """Create a persistent group now: it keeps its cursor while it has no member, until the ring closes."""

    def skip_oldest(self) -> int:
        """Back-pressure "drop_oldest": move each DURABLE group holding the oldest needed frame one frame on
        (counted in its drops); returns how many groups moved."""

    def cancel_wait(self) -> None:
        """Make a publish blocked on back-pressure raise BackpressureTimeout now (signal-safe)."""

    def housekeeping(self) -> None:
        """Reclaim dead readers and retire unneeded generations (also runs by itself every 0.5 s of publishing)."""

    def reclaim_dead(self) -> int:
        """Reclaim pins and private cursors of readers whose process is gone; returns how many readers."""

    def statistics(self) -> dict:
        """Snapshot: last_seq, generation, slots, slot_bytes, pinned_slots, backpressure_waits, readers, groups."""

    def is_closed(self) -> bool: ...

    def close(self) -> None:
        """Mark the ring closed, wake every reader, and unlink all its segments. Idempotent."""


class RingReader:
    """One reader of a ring, REALTIME (latest-wins) or DURABLE (every frame), alone or in a group."""

    name: str
    index: int
    durable: bool
    group_name: str | None
    max_held: int
    held: int
    taken: int
    drops: int
    copies: int
    spin_s: float
    """Seconds wait() spins (with a CPU pause) before it sleeps on the futex; 0: never spins, < 0: never sleeps.
    Default DEFAULT_SPIN_S (50 µs)."""

    @staticmethod
    def attach(name: str, *, durable: bool = False, group: str | None = None, max_held: int = 4) -> "RingReader":
        """Attach to ring ``name``, creating its control segment when no writer made it yet.

        A DURABLE reader gets every frame published after it attached; a named group's members share one cursor
        (each frame to one member) that survives their deaths. At most ``max_held`` views may be held at once.
        """

    def take_nowait(self) -> "SlotView | None":
        """The next frame (newest unseen for REALTIME, next in order for DURABLE), or None. Never blocks.

        Raises HeldFramesError when this reader already holds max_held views.
        """

    def wait(self, timeout: float | None = None) -> int:
        """Sleep (GIL released, no spinning) until READY, TIMEOUT, WRITER_CLOSED or WRITER_DEAD."""

    def writer_status(self) -> str:
        """'none', 'running', 'closed' or 'dead'."""
    def writer_state(self) -> str:
        """'none', 'running' or 'closed' as the writer last said (no liveness check)."""

    def ring_id(self) -> int:
        """Identity of the ring instance (a ring re-created after a clean close has another)."""

    def statistics(self) -> dict:
        """Snapshot: taken, drops, copies, held, lag, group_drops, group, durable."""

    def is_closed(self) -> bool: ...

    def close(self) -> None:
        """Detach: drop pins and membership; the last one out of a ring without a writer removes it."""


class SlotView:
    """A taken frame. Exposes its payload as read-only bytes through the buffer protocol; the slot stays pinned
    (never overwritten) while this view or any buffer derived from it is alive."""

    seq: int
    timestamp: float
    kind: int
    nbytes: int
    shape: tuple
    dtype: bytes
    meta: bytes
    is_copy: bool

    def release(self) -> None:
        """Unpin now, or when the last buffer derived from this view is released."""


def drop_group(name: str, group: str) -> str:
    """Free ring ``name``'s group ``group`` once it has no member: 'dropped', 'absent' or 'busy'."""


def peek(name: str, seq: int) -> tuple[float, bytes] | None:
    """(timestamp, meta bytes) of frame ``seq`` of ring ``name`` while a slot holds it, else None; read-only,
    no group joined, seqlock-checked."""


DEFAULT_SPIN_S: float
