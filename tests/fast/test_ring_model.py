"""Stateful tests of the compiled ring (edgeflow._fast.ring) next to a plain-Python model (STYLE.md, 7).

The model knows what was published under each seq, each group's cursor, which views are held (pinned or
copied), which slots are pinned in which generation and how big the slots are. From that it predicts every
outcome of the real ring: the seq a take returns (or None), whether it is a copy, HeldFramesError,
BackpressureTimeout, FrameTooLarge and growth. Invariants then check that held views still show what was
published under their seq.

Machines:
  LatestWinsMachine    (a) REALTIME readers: never a repeat, never older, taken + drops add up
  DurableMachine       (b) DURABLE reader: every frame once, in order; back-pressure exactly when it must
  GroupMachine*        (d) a 2-3 member group, DURABLE and REALTIME: each frame to exactly one member
  GrowthMachine        (e) frames of growing and random sizes: nothing lost, held views survive growth
  *DrainMachine        (b, e) the writer closes at any point: DURABLE readers still get all it published
Held views never being overwritten (c) is an invariant of every machine. Plain tests at the end pin down, in
their smallest form, failures the machines found.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edgeflow._fast.ring import READY, TIMEOUT, WRITER_CLOSED, RingReader, RingWriter
from edgeflow.errors import BackpressureTimeout, FrameTooLarge, HeldFramesError

SHM = Path("/dev/shm")
# Covered by conftest's pytest_sessionfinish (edgeflow.t<pid>n...) but never equal to an `app` fixture
# namespace (those continue with digits), so a leak here cannot be blamed on another test.
PREFIX = f"edgeflow.t{os.getpid()}nring"
_rings = itertools.count()
PAGE = 4096
BP_TIMEOUT = 0.005          # back-pressure is modelled: a tiny timeout keeps the expected waits short

SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def unique_ring_name(kind: str) -> str:
    return f"{PREFIX}{next(_rings)}.{kind}"


def segments_of(name: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(name + "."))


def pattern(seq: int, seed: int, size: int) -> bytes:
    """Payload bytes that differ from frame to frame (the seq is in the first 8 bytes when they fit)."""
    body = ((np.arange(size, dtype=np.uint32) * 131 + seq * 7 + seed) & 0xFF).astype(np.uint8)
    if size >= 8:
        body[:8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)
    return body.tobytes()


def round_up(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


@dataclass
class Sent:
    payload: bytes
    kind: int
    dtype: bytes
    shape: tuple
    timestamp: float
    meta: bytes
    gen: int


@dataclass
class GroupModel:
    durable: bool
    cursor: int              # DURABLE: next seq to take; REALTIME: last seq taken (or the attach point)
    attach_point: int        # last seq published when the group was made
    delivered: list = field(default_factory=list)    # seqs delivered to any member, in delivery order
    retired_counts: int = 0  # taken + drops of members that left (REALTIME accounting)


@dataclass
class Member:
    reader: RingReader
    group: GroupModel
    max_held: int
    taken: int = 0
    drops: int = 0
    copies: int = 0
    seqs: list = field(default_factory=list)


@dataclass
class Held:
    member: Member
    view: object
    seq: int
    gen: int
    pinned: bool


@dataclass
class Zombie:
    """An array derived from a view whose release() was called: the slot stays pinned while it lives."""
    member: Member
    array: np.ndarray
    seq: int
    gen: int
    pinned: bool


class RingModelMachine(RuleBasedStateMachine):
    """The ring and its model; subclasses choose readers and add rules. Rules shared by all are here."""

    MAX_PAYLOAD = 4096

    def __init__(self):
        super().__init__()
        self.writer = None
        self.members: list[Member] = []
        self.held: list[Held] = []
        self.zombies: list[Zombie] = []
        self.sent: dict[int, Sent] = {}
        self.last = 0
        self.gen = 0
        self.gen_first: dict[int, int] = {}
        self.cur_bytes: int | None = None
        self.writer_closed = False

    # ------------------------------------------------------------------------------------------------- set-up

    def make_ring(self, kind: str, *, slots: int, slot_bytes: int = 0, grow: bool = True) -> None:
        self.name = unique_ring_name(kind)
        self.slots, self.min_bytes, self.grow = slots, slot_bytes, grow
        self.writer = RingWriter.create(self.name, slots=slots, slot_bytes=slot_bytes, grow=grow,
                                        backpressure_timeout=BP_TIMEOUT)
        if slot_bytes:
            self._model_new_generation(slot_bytes)

    def attach(self, group_model: GroupModel | None, *, durable: bool, group: str | None = None,
               max_held: int = 4) -> Member:
        reader = RingReader.attach(self.name, durable=durable, group=group, max_held=max_held)
        if group_model is None:
            cursor = self.last + 1 if durable else self.last
            group_model = GroupModel(durable, cursor, self.last)
        m = Member(reader, group_model, max_held)
        self.members.append(m)
        return m

    def teardown(self):
        self.held.clear()
        self.zombies.clear()
        for m in self.members:
            m.reader.close()
        if self.writer is not None:
            self.writer.close()
            assert segments_of(self.name) == [], "the writer's close() left segments behind"

    # ---------------------------------------------------------------------------------------------- the model

    def _model_new_generation(self, nbytes: int) -> None:
        want = max(nbytes, self.min_bytes, 1)
        if self.cur_bytes is not None:
            want = max(want, 2 * self.cur_bytes)
        self.gen += 1
        self.cur_bytes = round_up(want)
        self.gen_first[self.gen] = self.last + 1

    def pinned_seqs(self, gen: int | None = None) -> set[int]:
        """Seqs whose slot is pinned (by a held view or a zombie array), in one generation or all."""
        pins = {h.seq for h in self.held if h.pinned and (gen is None or h.gen == gen)}
        pins |= {z.seq for z in self.zombies if z.pinned and (gen is None or z.gen == gen)}
        return pins

    def pins_of(self, m: Member) -> int:
        return sum(1 for h in self.held if h.member is m and h.pinned) + \
            sum(1 for z in self.zombies if z.member is m and z.pinned)

    def groups(self) -> list[GroupModel]:
        out = []
        for m in self.members:
            if all(m.group is not g for g in out):
                out.append(m.group)
        return out

    def blocked(self) -> bool:
        """True when no slot of the current generation is free: each holds a seq a DURABLE group still needs
        or is pinned. The writer must then wait (and time out) rather than overwrite."""
        if self.gen == 0:
            return False
        protect = min((g.cursor for g in self.groups() if g.durable), default=None)
        first = self.gen_first[self.gen]
        busy = self.pinned_seqs(self.gen)
        if protect is not None:
            busy |= set(range(max(protect, first), self.last + 1))
        return len(busy) >= self.slots

    def expect_publish(self, nbytes: int) -> str:
        """'ok', 'grow', 'too_large' or 'blocked' for a frame of nbytes."""
        if self.cur_bytes is None or nbytes > self.cur_bytes:
            if self.cur_bytes is not None and not self.grow:
                return "too_large"
            return "grow"
        return "blocked" if self.blocked() else "ok"

    # ------------------------------------------------------------------------------------------------ actions

    def do_publish(self, size: int, seed: int, kind: int, meta_pad: int) -> None:
        seq = self.last + 1
        payload = pattern(seq, seed, size)
        dtype, shape = (b"|u1", (size,)) if kind == 1 else (b"", ())
        meta = b'{"seq":%d}' % seq + b" " * meta_pad
        ts = seq + seed / 256
        expected = self.expect_publish(size)
        event(f"publish: {expected}")
        if expected == "too_large":
            with pytest.raises(FrameTooLarge):
                self.writer.publish(payload, kind, dtype, shape, ts, meta)
        elif expected == "blocked":
            with pytest.raises(BackpressureTimeout):
                self.writer.publish(payload, kind, dtype, shape, ts, meta)
        else:
            if expected == "grow":
                self._model_new_generation(size)
            got = self.writer.publish(payload, kind, dtype, shape, ts, meta)
            assert got == seq, f"publish returned seq {got}, expected {seq}"
            self.last = seq
            self.sent[seq] = Sent(payload, kind, dtype, shape, ts, meta, self.gen)
        assert self.writer.last_seq == self.last

    def do_take(self, m: Member) -> None:
        g = m.group
        if g.durable:
            seq = g.cursor if g.cursor <= self.last else None
        else:
            seq = self.last if self.last > g.cursor else None
        at_limit = seq is not None and self.pins_of(m) >= m.max_held
        event("take: " + ("nothing" if seq is None else "held limit" if at_limit else "frame"))
        if seq is not None and self.pins_of(m) >= m.max_held:
            with pytest.raises(HeldFramesError, match=f"max_held={m.max_held}"):
                m.reader.take_nowait()
            return
        view = m.reader.take_nowait()
        if seq is None:
            assert view is None, f"took seq {view.seq} but nothing new was published (cursor {g.cursor})"
            return
        assert view is not None, f"nothing taken, expected seq {seq}"
        assert view.seq == seq, (f"{'DURABLE' if g.durable else 'REALTIME'} take returned seq {view.seq}, "
                                 f"expected {seq} (cursor {g.cursor}, last {self.last})")
        sent = self.sent[seq]
        pinned_here = self.pinned_seqs(sent.gen)
        if seq in pinned_here or sent.gen != self.gen:
            expect_copy = False      # another reader pins the slot already, or an old generation (no budget)
        else:
            expect_copy = len(pinned_here) + 1 + 2 > self.slots
        assert view.is_copy == expect_copy, (f"seq {seq}: is_copy {view.is_copy}, model says {expect_copy} "
                                             f"({len(pinned_here)} of {self.slots} slots pinned)")
        if g.durable:
            g.cursor += 1
        else:
            m.drops += seq - g.cursor - 1
            g.cursor = seq
        g.delivered.append(seq)
        m.seqs.append(seq)
        m.taken += 1
        m.copies += expect_copy
        event(f"take: {'copy' if expect_copy else 'pinned'}" + ("" if sent.gen == self.gen else " (old gen)"))
        self.held.append(Held(m, view, seq, sent.gen, not view.is_copy))
        self.check_view(view, seq)

    def check_view(self, view, seq: int) -> None:
        s = self.sent[seq]
        assert bytes(view) == s.payload, f"held view of seq {seq} no longer shows what was published"
        assert view.meta == s.meta and view.dtype == s.dtype, f"seq {seq}: meta or dtype changed"
        assert (view.kind, view.shape, view.timestamp, view.nbytes) == (s.kind, s.shape, s.timestamp,
                                                                          len(s.payload))

    # -------------------------------------------------------------------------------------------------- rules

    @precondition(lambda self: not self.writer_closed)
    @rule(size=st.integers(0, 4096), seed=st.integers(0, 255), kind=st.integers(0, 1),
          meta_pad=st.sampled_from([0, 0, 100, 8000]))
    def publish(self, size, seed, kind, meta_pad):
        self.do_publish(min(size, self.MAX_PAYLOAD), seed, kind, meta_pad)

    @precondition(lambda self: not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def take(self, i):
        self.do_take(self.members[i % len(self.members)])

    @precondition(lambda self: not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def wait_without_sleeping(self, i):
        m = self.members[i % len(self.members)]
        g = m.group
        ready = g.cursor <= self.last if g.durable else self.last > g.cursor
        assert m.reader.wait(0) == (READY if ready else TIMEOUT)

    @precondition(lambda self: self.held and not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def release(self, i):
        h = self.held.pop(i % len(self.held))
        h.view.release()
        with pytest.raises(BufferError):
            bytes(h.view)             # a released view exposes nothing any more

    @precondition(lambda self: self.held and not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def release_but_keep_array(self, i):
        """release() while an array views the slot: the pin lasts until the array is gone."""
        h = self.held.pop(i % len(self.held))
        arr = np.frombuffer(h.view, dtype=np.uint8)
        h.view.release()
        self.zombies.append(Zombie(h.member, arr, h.seq, h.gen, h.pinned))

    @precondition(lambda self: self.zombies and not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def drop_array(self, i):
        self.zombies.pop(i % len(self.zombies))       # the last reference: the slot is unpinned now

    # --------------------------------------------------------------------------------------------- invariants

    @invariant()
    def held_views_are_never_overwritten(self):
        for h in self.held:
            self.check_view(h.view, h.seq)
        for z in self.zombies:
            assert z.array.tobytes() == self.sent[z.seq].payload, \
                f"seq {z.seq}: an array kept after release() no longer shows what was published"

    @invariant()
    def counters_agree_with_the_model(self):
        if self.writer_closed:
            return
        assert self.writer.last_seq == self.last
        assert self.writer.generation == self.gen
        assert self.writer.slot_bytes == (self.cur_bytes or 0)
        stats = self.writer.statistics()
        assert stats["pinned_slots"] == len(self.pinned_seqs(self.gen)), "pinned slots of the generation"
        for m in self.members:
            s = m.reader.statistics()
            assert (s["taken"], s["drops"], s["copies"], s["held"]) == (m.taken, m.drops, m.copies,
                                                                         self.pins_of(m))

    @invariant()
    def durable_groups_get_every_frame_once_in_order(self):
        for g in self.groups():
            if g.durable:
                assert g.delivered == list(range(g.attach_point + 1, g.cursor))

    @invariant()
    def realtime_groups_never_repeat_or_go_back_and_drops_add_up(self):
        for g in self.groups():
            if g.durable:
                continue
            assert all(a < b for a, b in zip(g.delivered, g.delivered[1:])), g.delivered
            if g.delivered:
                members = [m for m in self.members if m.group is g]
                total = sum(m.reader.statistics()["taken"] + m.reader.statistics()["drops"] for m in members)
                assert total + g.retired_counts == g.delivered[-1] - g.attach_point


# ------------------------------------------------------------------------------------------------------------
# (a) latest-wins


class LatestWinsMachine(RingModelMachine):
    """One or two private REALTIME readers, attached after 0-3 frames; pins of both share the slot budget."""

    @initialize(slots=st.integers(3, 6), readers=st.integers(1, 2), before=st.integers(0, 3),
                max_held=st.integers(1, 4))
    def setup(self, slots, readers, before, max_held):
        self.make_ring("latest", slots=slots, slot_bytes=64, grow=False)
        for k in range(before):
            self.do_publish(16 * k, k, 1, 0)
        for _ in range(readers):
            self.attach(None, durable=False, max_held=max_held)

    @precondition(lambda self: not self.writer_closed)
    @rule(burst=st.integers(2, 12), seed=st.integers(0, 255))
    def publish_burst(self, burst, seed):
        """More frames than slots at once: a REALTIME-only ring never blocks and never refuses."""
        for k in range(burst):
            assert self.expect_publish(100) == "ok"
            self.do_publish(100, seed + k, 0, 0)

    @invariant()
    def each_reader_never_repeats_or_goes_back_and_drops_add_up(self):
        for m in self.members:
            assert all(a < b for a, b in zip(m.seqs, m.seqs[1:])), m.seqs
            s = m.reader.statistics()
            last_taken = m.seqs[-1] if m.seqs else m.group.attach_point
            assert s["taken"] + s["drops"] == last_taken - m.group.attach_point
            assert s["lag"] == self.last - m.group.cursor


# ------------------------------------------------------------------------------------------------------------
# (b) durable, with back-pressure


class DurableMachine(RingModelMachine):
    """One private DURABLE reader (plus, sometimes, a REALTIME one pinning slots too) on a ring that may not
    grow. The writer times out exactly when the model says every slot of the ring holds a frame the DURABLE
    reader has not taken yet or a pinned one, and never overwrites either."""

    @initialize(slots=st.integers(3, 6), before=st.integers(0, 3), max_held=st.integers(1, 4),
                with_realtime=st.booleans())
    def setup(self, slots, before, max_held, with_realtime):
        self.make_ring("durable", slots=slots, slot_bytes=64, grow=False)
        for k in range(before):
            self.do_publish(10, k, 0, 0)
        self.durable = self.attach(None, durable=True, max_held=max_held)
        if with_realtime:
            self.attach(None, durable=False, max_held=2)

    @precondition(lambda self: not self.writer_closed)
    @rule(size=st.integers(4097, 20000))
    def publish_too_large(self, size):
        """grow=False: a larger frame is refused whole (FrameTooLarge), never truncated, nothing published."""
        self.do_publish(size, 1, 1, 0)

    @precondition(lambda self: not self.writer_closed)
    @rule()
    def fill_until_backpressure(self):
        """Publish until the model says the ring is full, then once more: that one must time out."""
        for _ in range(self.slots + 1):
            if self.blocked():
                break
            self.do_publish(32, 3, 0, 0)
        assert self.blocked()
        self.do_publish(32, 4, 0, 0)

    @precondition(lambda self: not self.writer_closed)
    @rule()
    def drain(self):
        """Take (and release) everything the DURABLE reader has not taken, in order."""
        while self.durable.group.cursor <= self.last and self.pins_of(self.durable) < self.durable.max_held:
            self.do_take(self.durable)
            h = self.held.pop()
            h.view.release()

    @precondition(lambda self: not self.writer_closed)
    @rule(size=st.integers(0, 4096), seed=st.integers(0, 255))
    def loan_then_abort(self, size, seed):
        """A loan given back publishes nothing and does not disturb the frames in the ring."""
        if self.blocked():
            with pytest.raises(BackpressureTimeout):
                self.writer.begin(size)
        else:
            buf = self.writer.begin(size)
            memoryview(buf)[:] = pattern(999, seed, size)
            self.writer.abort()
        assert self.writer.last_seq == self.last

    @precondition(lambda self: not self.writer_closed)
    @rule(size=st.integers(0, 4096), seed=st.integers(0, 255))
    def loan_then_commit(self, size, seed):
        seq = self.last + 1
        if self.blocked():
            with pytest.raises(BackpressureTimeout):
                self.writer.begin(size)
            return
        payload = pattern(seq, seed, size)
        buf = self.writer.begin(size)
        memoryview(buf)[:] = payload
        assert self.writer.commit(1, b"|u1", (size,), 1.5, b"") == seq
        self.last = seq
        self.sent[seq] = Sent(payload, 1, b"|u1", (size,), 1.5, b"", self.gen)

    @invariant()
    def durable_lag_is_what_it_has_not_taken(self):
        if self.writer_closed:
            return
        assert self.durable.reader.statistics()["lag"] == self.last + 1 - self.durable.group.cursor
        assert self.durable.reader.statistics()["drops"] == 0


# ------------------------------------------------------------------------------------------------------------
# (d) groups


class _GroupMachine(RingModelMachine):
    """2-3 readers in one group (same process): each frame goes to exactly one member. Members leave and join;
    the group's position stays."""

    DURABLE = True

    @initialize(slots=st.integers(3, 6), members=st.integers(2, 3), before=st.integers(0, 2),
                max_held=st.integers(1, 3))
    def setup(self, slots, members, before, max_held):
        self.make_ring("group", slots=slots, slot_bytes=64, grow=False)
        for k in range(before):
            self.do_publish(10, k, 0, 0)
        self.gm = None
        for _ in range(members):
            self.gm = self.attach(self.gm, durable=self.DURABLE, group="workers", max_held=max_held).group
        self.max_held = max_held

    @precondition(lambda self: len(self.members) > 1 and not self.writer_closed)
    @rule(i=st.integers(0, 5))
    def member_leaves(self, i):
        m = self.members.pop(i % len(self.members))
        s = m.reader.statistics()
        m.reader.close()
        self.gm.retired_counts += s["taken"] + s["drops"]
        # its views lose their protection: the model stops tracking them
        self.held = [h for h in self.held if h.member is not m]
        self.zombies = [z for z in self.zombies if z.member is not m]

    @precondition(lambda self: len(self.members) < 3 and not self.writer_closed)
    @rule()
    def member_joins(self):
        self.attach(self.gm, durable=self.DURABLE, group="workers", max_held=self.max_held)

    @precondition(lambda self: not self.writer_closed)
    @rule(seed=st.integers(0, 255))
    def publish_then_every_member_takes(self, seed):
        """One frame and one take per member: exactly one of them gets it (if the ring had room for it)."""
        before = len(self.gm.delivered)
        self.do_publish(50, seed, 0, 0)
        for m in list(self.members):
            self.do_take(m)
        if not self.DURABLE:
            assert self.gm.delivered[before:] in ([], [self.last])

    @invariant()
    def each_frame_went_to_exactly_one_member(self):
        everyone = [s for m in self.members for s in m.seqs]
        assert len(everyone) == len(set(everyone)), "a frame went to two members"
        assert set(everyone) <= set(self.gm.delivered)
        for m in self.members:
            assert all(a < b for a, b in zip(m.seqs, m.seqs[1:])), m.seqs


class GroupDurableMachine(_GroupMachine):
    DURABLE = True


class GroupRealtimeMachine(_GroupMachine):
    DURABLE = False


# ------------------------------------------------------------------------------------------------------------
# (e) growth


class GrowthMachine(RingModelMachine):
    """Frames of growing and random sizes on a ring that may grow: a DURABLE reader gets every frame with the
    right bytes across generations, views held across a growth stay intact, and a generation is kept while a
    DURABLE reader still needs one of its frames."""

    MAX_PAYLOAD = 300_000

    @initialize(slots=st.integers(3, 5), initial=st.sampled_from([0, 64, 5000]), max_held=st.integers(1, 4),
                with_realtime=st.booleans())
    def setup(self, slots, initial, max_held, with_realtime):
        self.make_ring("grow", slots=slots, slot_bytes=initial, grow=True)
        self.durable = self.attach(None, durable=True, max_held=max_held)
        if with_realtime:
            self.attach(None, durable=False, max_held=2)

    @precondition(lambda self: not self.writer_closed)
    @rule(size=st.integers(0, 300_000), seed=st.integers(0, 255))
    def publish_random_size(self, size, seed):
        self.do_publish(size, seed, 1, 0)

    @precondition(lambda self: (self.cur_bytes or 0) < 512 * 1024 and not self.writer_closed)
    @rule(extra=st.integers(1, 70_000), seed=st.integers(0, 255))
    def publish_bigger(self, extra, seed):
        """A frame larger than the slots: a new generation, and the publish never blocks."""
        size = (self.cur_bytes or 0) + extra
        assert self.expect_publish(size) == "grow"
        self.do_publish(size, seed, 1, 0)

    @precondition(lambda self: not self.writer_closed)
    @rule()
    def housekeeping(self):
        self.writer.housekeeping()

    @invariant()
    def generations_a_durable_reader_needs_exist(self):
        if self.writer_closed:
            return            # close() unlinks every segment; readers keep what they mapped
        cursor = self.durable.group.cursor
        needed = {self.sent[s].gen for s in range(cursor, self.last + 1)}
        for n in needed:
            assert (SHM / f"{self.name}.g{n}").exists(), \
                f"generation {n} was removed while the DURABLE reader still needs frames from it"


# ------------------------------------------------------------------------------------------------------------
# the writer closes: DURABLE readers still drain every frame published before close()


class CloseAndDrain(RuleBasedStateMachine):
    """Mixed into a machine: at any point the writer may close; then every DURABLE group takes each frame it
    had not taken yet, in order, with the right bytes, and after that sees nothing more and WRITER_CLOSED."""

    @precondition(lambda self: not self.writer_closed and any(g.durable for g in self.groups()))
    @rule()
    def writer_closes_then_durable_readers_drain(self):
        for h in self.held:
            h.view.release()
        self.held.clear()
        self.zombies.clear()
        self.writer.close()
        self.writer_closed = True
        for g in self.groups():
            if not g.durable:
                continue
            m = next(m for m in self.members if m.group is g)
            while g.cursor <= self.last:
                self.do_take(m)
                self.held.pop().view.release()

    @precondition(lambda self: self.writer_closed)
    @rule(i=st.integers(0, 5))
    def after_close_nothing_more(self, i):
        m = self.members[i % len(self.members)]
        if m.group.durable:
            assert m.reader.take_nowait() is None
        if m.group.durable or self.last == m.group.cursor:
            assert m.reader.wait(0) == WRITER_CLOSED


class DurableDrainMachine(CloseAndDrain, DurableMachine):
    pass


class GrowthDrainMachine(CloseAndDrain, GrowthMachine):
    pass


for _machine in (LatestWinsMachine, DurableMachine, GroupDurableMachine, GroupRealtimeMachine, GrowthMachine,
                 DurableDrainMachine, GrowthDrainMachine):
    _machine.TestCase.settings = SETTINGS

TestLatestWins = LatestWinsMachine.TestCase
TestDurable = DurableMachine.TestCase
TestGroupDurable = GroupDurableMachine.TestCase
TestGroupRealtime = GroupRealtimeMachine.TestCase
TestGrowth = GrowthMachine.TestCase
TestDurableDrainAfterClose = DurableDrainMachine.TestCase
TestGrowthDrainAfterClose = GrowthDrainMachine.TestCase


# ------------------------------------------------------------------------------------------------------------
# plain regression tests found by the machines above


@pytest.mark.parametrize("durable", [False, True], ids=["realtime", "durable"])
def test_a_reader_closed_while_holding_a_view_of_an_old_generation_lets_it_retire(durable):
    """A generation is retired once nobody needs it. A reader that closes drops all its pins, including one in
    a generation it no longer maps (it moved on to a newer one), so housekeeping can remove the old one."""
    name = unique_ring_name("retire")
    writer = RingWriter.create(name, slots=4, slot_bytes=64)
    try:
        reader = RingReader.attach(name, durable=durable)
        writer.publish(b"a" * 10, 0, b"", (), 0.0, b"")
        old_view = reader.take_nowait()              # pins a slot of generation 1
        writer.publish(b"b" * 10_000, 0, b"", (), 0.0, b"")    # grows: generation 2
        reader.take_nowait().release()              # the reader maps generation 2 and moves on
        assert bytes(old_view) == b"a" * 10
        reader.close()                              # drops every pin of this reader
        writer.housekeeping()
        assert segments_of(name) == [f"{name}.ctl", f"{name}.g2"], \
            "generation 1 is still pinned by a reader that closed"
        del old_view
    finally:
        writer.close()
    assert segments_of(name) == []


def test_a_durable_reader_drains_after_close_without_having_mapped_the_generation():
    """Minimal form of what DurableDrainMachine finds: frames published before close() reach a DURABLE reader
    that had not taken anything yet (so had not mapped the data segment before the writer unlinked it)."""
    name = unique_ring_name("drain")
    writer = RingWriter.create(name, slots=8)
    reader = RingReader.attach(name, durable=True)
    try:
        for k in range(3):
            writer.publish(bytes([k]) * 10, 0, b"", (), 0.0, b"")
        writer.close()
        got = [reader.take_nowait() for _ in range(3)]
        assert [None if v is None else bytes(v) for v in got] == [bytes([k]) * 10 for k in range(3)]
        assert reader.statistics()["drops"] == 0
        assert reader.wait(0) == WRITER_CLOSED
    finally:
        reader.close()
        writer.close()
    assert segments_of(name) == []
