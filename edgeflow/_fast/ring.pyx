# cython: language_level=3
"""The shared-memory ring: one writer, many readers, zero-copy slots, latest-wins and durable cursors.

Layout and invariants are in _layout.h. In short:
- A slot is reused only when no reader pins it and no DURABLE group still needs its seq (cursor or redelivery).
- The writer marks a slot WRITING with a seq_cst store and then checks its pin mask with a seq_cst load; a reader
  sets its pin bit with a seq_cst RMW and then checks the slot's seq with a seq_cst load. One of the two always
  sees the other, so a pinned view is never overwritten.
- Readers sleep on ctl.seq_futex (FUTEX_WAIT on the value they last saw, so no publish is missed) and the writer
  wakes them only while ctl.readers_waiting is non-zero.
- A reader's pins and a private reader's cursor are reclaimed by the writer once the reader's process is gone
  (pid plus start time from /proc, so a reused pid does not fool it).
This module knows segments, slots, sequence numbers and bytes; nothing of topics, nodes or QoS objects.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBUF_FORMAT
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t
from libc.limits cimport INT_MAX

from edgeflow._fast._atomics cimport *
from edgeflow._fast._layout cimport *
from edgeflow._fast._posix cimport *

import os
import time
import warnings

from edgeflow.errors import (BackpressureTimeout, ClosedResourceError, ConfigError, FrameTooLarge,
                             HeldFramesError, InternalError, LayoutMismatch, TransportError)

# wait() results
READY, TIMEOUT, WRITER_CLOSED, WRITER_DEAD = 0, 1, 2, 3
_MODE_NAMES = {EF_MODE_REALTIME: "REALTIME", EF_MODE_DURABLE: "DURABLE", EF_MODE_BALANCED: "BALANCED"}

cdef uint64_t NO_LIMIT = 0xFFFFFFFFFFFFFFFFULL
# Rings whose slots together pass this (a typical last-level cache) reuse the most recently freed slot first
# (RingWriter._choose_slot): 8 slots of 640x480x3 (7.4 MB) stay oldest-first, 8 of 1920x1080x3 (50 MB) do not.
cdef uint64_t MRU_RING_BYTES = 16 * 1024 * 1024
cdef double LIVENESS_PERIOD = 0.1      # how often a sleeping reader checks that the writer is alive
# A waiting reader spins this long (checking for a frame, with a CPU pause) before it sleeps on the futex: a frame
# that comes within it is taken without the writer's wake-up system call and the reader's trip through the
# scheduler (tens of microseconds on a loaded machine). An idle reader spins once per wait() and then sleeps.
DEFAULT_SPIN_S = 50e-6
cdef double SPIN_YIELD_S = 20e-6       # a never-sleeping reader yields its CPU this often (see RingReader._spin)
cdef double WRITER_SPIN_S = 50e-6      # a writer waiting for a free slot spins this long before it sleeps

cdef extern from "<sched.h>" nogil:
    int sched_yield()
cdef double HOUSEKEEPING_PERIOD = 0.5  # how often the writer reclaims dead readers and retires generations
cdef size_t NOGIL_COPY_BYTES = 65536   # copies larger than this release the GIL
MAX_META = EF_MAX_META
MAX_DTYPE = EF_MAX_DTYPE
MAX_READERS = EF_MAX_READERS
MAX_SLOTS = EF_MAX_SLOTS
MAX_NDIM = EF_MAX_NDIM


# ---------------------------------------------------------------------------------------------------------------
# processes, clocks, futexes

def process_start_time(int pid):
    """Start time of a live process (clock ticks since boot), or 0 when it is gone or a zombie.

    A pid alone does not identify a process (pids are reused); pid plus start time does.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):          # killed but not yet reaped: as good as dead
        return 0
    return int(fields[19])


_identity = (0, 0)

cdef tuple _me():
    global _identity
    cdef int pid = getpid()
    if _identity[0] != pid:                # recomputed after a fork
        _identity = (pid, process_start_time(pid))
    return _identity


cdef bint _alive(int pid, uint64_t start):
    return pid > 0 and process_start_time(pid) == start


cdef inline double _mono() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline void _futex_wait(uint32_t *addr, uint32_t expected, double timeout) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = <long>timeout
    ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
    syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0)


cdef inline void _futex_wake(uint32_t *addr, int count) noexcept nogil:
    syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0)


# ---------------------------------------------------------------------------------------------------------------
# segments

cdef object _os_error(str what, str name, int err):
    """Turn an errno from a segment operation into one TransportError that names the segment."""
    msg = strerror(err).decode()
    if err == 28:   # ENOSPC
        return TransportError(
            f"/dev/shm/{name}: {what} failed: not enough shared memory ({msg}); free space in /dev/shm or "
            "raise its size (docker --shm-size, or a larger emptyDir with medium: Memory in Kubernetes)")
    return TransportError(f"/dev/shm/{name}: {what} failed: {msg}")


cdef int _open(str name, int flags) except -2:
    """shm_open; returns -1 with errno set when it fails."""
    b = ("/" + name).encode()
    return shm_open(b, flags, 0o600)


def unlink_segment(str name):
    """Remove /dev/shm/<name>; True when it existed."""
    b = ("/" + name).encode()
    return shm_unlink(b) == 0


cdef _Mapping _map(int fd, size_t length, str name, bint populate):
    cdef int flags = MAP_SHARED | (MAP_POPULATE if populate else 0)
    cdef void *addr = mmap(NULL, length, PROT_READ | PROT_WRITE, flags, fd, 0)
    if addr == MAP_FAILED:
        raise _os_error("mmap", name, errno)
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    m.addr = <char *>addr
    m.length = length
    m.name = name
    return m


cdef void _reserve(int fd, size_t length, str name) except *:
    """Give the segment its size and real pages now: a full /dev/shm fails here with a message, not with SIGBUS on
    the first write later."""
    if ftruncate(fd, length) != 0:
        raise _os_error("ftruncate", name, errno)
    cdef int err = posix_fallocate(fd, 0, length)
    if err != 0:
        raise _os_error(f"reserving {length} bytes", name, err)


cdef class _Mapping:
    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, self.length)
            self.addr = NULL


cdef _Mapping _open_ctl(str name):
    """Open the control segment, creating it when absent. A half-created segment left by a crashed process is
    removed; one with another magic, version or layout raises LayoutMismatch naming it."""
    cdef size_t size = sizeof(ef_ctl)
    cdef stat st
    cdef int fd
    cdef ef_ctl *c
    deadline = time.monotonic() + 1.0
    while True:
        fd = _open(name, O_RDWR | O_CREAT | O_EXCL)
        if fd >= 0:
            try:
                _reserve(fd, size, name)
                m = _map(fd, size, name, True)
            except BaseException:
                close(fd)
                unlink_segment(name)
                raise
            close(fd)
            _init_ctl(<ef_ctl *>m.addr)
            return m
        if errno != EEXIST:
            raise _os_error("shm_open", name, errno)
        fd = _open(name, O_RDWR)
        if fd < 0:
            if errno == ENOENT:
                continue                                   # removed between our two opens: create it
            raise _os_error("shm_open", name, errno)
        try:
            fstat(fd, &st)
            if st.st_size == 0:
                m = None                                   # creator between shm_open and ftruncate
            elif st.st_size < 64:
                raise LayoutMismatch(f"/dev/shm/{name}: {st.st_size} bytes, not an EdgeFlow ring; remove it")
            else:
                m = _map(fd, min(<size_t>st.st_size, size), name, False)
        finally:
            close(fd)
        if m is not None:
            c = <ef_ctl *>m.addr
            magic = ef_load64_acq(&c.magic)
            if magic != 0:
                _check_ctl(c, name, st.st_size)
                if <size_t>st.st_size == size:
                    return m
        if time.monotonic() > deadline:                   # never finished: its creator died while creating it
            unlink_segment(name)
            deadline = time.monotonic() + 1.0
        else:
            time.sleep(0.001)


cdef void _check_ctl(ef_ctl *c, str name, size_t actual) except *:
    cdef size_t size = sizeof(ef_ctl)
    if c.magic != EF_CTL_MAGIC:
        raise LayoutMismatch(f"/dev/shm/{name}: not an EdgeFlow ring (magic {c.magic:#018x}); remove it")
    if c.version != EF_LAYOUT_VERSION or c.ctl_bytes != size or actual != size \
            or c.max_readers != EF_MAX_READERS or c.max_groups != EF_MAX_GROUPS:
        raise LayoutMismatch(
            f"/dev/shm/{name}: ring layout version {c.version} ({c.ctl_bytes} bytes), this EdgeFlow uses "
            f"version {EF_LAYOUT_VERSION} ({size} bytes); stop the processes using it and remove it")


cdef void _init_ctl(ef_ctl *c):
    c.version = EF_LAYOUT_VERSION
    c.ctl_bytes = sizeof(ef_ctl)
    c.max_readers = EF_MAX_READERS
    c.max_groups = EF_MAX_GROUPS
    c.created_ns = time.time_ns()
    c.ring_id = c.created_ns ^ (<uint64_t>getpid() << 40)
    ef_store64_rel(&c.magic, EF_CTL_MAGIC)        # release: every field above is visible before the magic


cdef class _Generation:
    cdef inline ef_slot *slot(self, uint32_t i) noexcept nogil:
        return &self.slots[i]

    cdef inline char *payload_of(self, uint32_t i) noexcept nogil:
        return self.payload + <uint64_t>i * self.slot_bytes

    cdef inline char *meta_of(self, uint32_t i) noexcept nogil:
        return self.meta + <uint64_t>i * EF_META_AREA


cdef _Generation _wrap_gen(_Mapping m, uint32_t number):
    cdef _Generation g = _Generation.__new__(_Generation)
    g.mapping = m
    g.hdr = <ef_gen *>m.addr
    g.number = number
    g.slot_count = g.hdr.slot_count
    g.slot_bytes = g.hdr.slot_bytes
    g.slots = <ef_slot *>(m.addr + ef_slots_offset())
    g.meta = m.addr + ef_meta_offset(g.slot_count)
    g.payload = m.addr + ef_payload_offset(g.slot_count)
    return g


cdef str _gen_name(str ring, uint32_t number):
    return f"{ring}.g{number}"


cdef _Generation _create_gen(str ring, ef_ctl *c, uint32_t number, uint32_t slots, uint64_t slot_bytes):
    name = _gen_name(ring, number)
    cdef uint64_t total = ef_gen_bytes(slots, slot_bytes)
    cdef int fd = _open(name, O_RDWR | O_CREAT | O_EXCL)
    if fd < 0 and errno == EEXIST:
        unlink_segment(name)      # only the writer makes generations: this one is left from a crashed writer
        fd = _open(name, O_RDWR | O_CREAT | O_EXCL)
    if fd < 0:
        raise _os_error("shm_open", name, errno)
    try:
        _reserve(fd, total, name)
        m = _map(fd, total, name, True)      # MAP_POPULATE: pages are faulted in now, not on the first frames
    except BaseException:
        close(fd)
        unlink_segment(name)
        raise
    close(fd)
    cdef ef_gen *h = <ef_gen *>m.addr
    h.version = EF_LAYOUT_VERSION
    h.generation = number
    h.slot_count = slots
    h.meta_area = EF_META_AREA
    h.slot_bytes = slot_bytes
    h.total_bytes = total
    h.first_seq = c.last_seq + 1
    h.sealed_last = EF_WRITING
    h.ring_id = c.ring_id
    ef_store64_rel(&h.magic, EF_GEN_MAGIC)
    return _wrap_gen(m, number)


cdef _Generation _open_gen(str ring, ef_ctl *c, uint32_t number):
    """Map an existing generation, or None when it is gone (or belongs to another instance of the ring)."""
    name = _gen_name(ring, number)
    cdef stat st
    cdef int fd = _open(name, O_RDWR)
    if fd < 0:
        if errno == ENOENT:
            return None
        raise _os_error("shm_open", name, errno)
    try:
        fstat(fd, &st)
        if <size_t>st.st_size < EF_PAGE:
            return None
        m = _map(fd, st.st_size, name, True)
    finally:
        close(fd)
    cdef ef_gen *h = <ef_gen *>m.addr
    if ef_load64_acq(&h.magic) != EF_GEN_MAGIC or h.version != EF_LAYOUT_VERSION:
        raise LayoutMismatch(f"/dev/shm/{name}: not an EdgeFlow ring generation of layout {EF_LAYOUT_VERSION}")
    if h.ring_id != c.ring_id or h.generation != number:
        return None
    if h.total_bytes != <uint64_t>st.st_size or h.slot_count > EF_MAX_SLOTS \
            or h.total_bytes != ef_gen_bytes(h.slot_count, h.slot_bytes):
        raise LayoutMismatch(f"/dev/shm/{name}: generation header does not match its size")
    return _wrap_gen(m, number)


# ---------------------------------------------------------------------------------------------------------------
# the table lock and groups (rare operations: attach, detach, reclaim)

cdef void _lock(ef_ctl *c) except *:
    cdef int32_t me = getpid()
    cdef int32_t holder
    cdef int spins = 0
    while not ef_cas_i32_sc(&c.lock_pid, 0, me):
        spins += 1
        holder = ef_load_i32_acq(&c.lock_pid)
        if spins % 200 == 0 and holder != 0 and holder != me and process_start_time(holder) == 0:
            ef_cas_i32_sc(&c.lock_pid, holder, 0)      # the holder died inside the lock: the tables are
            continue                                   # consistent between operations, so take it over
        time.sleep(0 if spins < 50 else 0.0005)        # same-process holders are other threads: yield the GIL


cdef inline void _unlock(ef_ctl *c) noexcept:
    ef_store_i32_rel(&c.lock_pid, 0)


cdef void _free_group(ef_ctl *c, uint32_t gi) noexcept:
    cdef ef_group *g = &c.groups[gi]
    if g.mode == EF_MODE_DURABLE:
        ef_sub32_sc(&c.durable_groups, 1)
    ef_store32_rel(&g.state, EF_GROUP_FREE)
    memset(g.name, 0, EF_GROUP_NAME_BYTES)
    g.members = 0
    g.flags = 0
    g.redeliver_n = 0
    memset(g.redeliver, 0, sizeof(g.redeliver))


cdef int _join_group(ef_ctl *c, bytes name, uint32_t mode, uint32_t flags, uint32_t add_members,
                     uint32_t max_lag) except -1:
    """Index of the group called name (created when absent). Call with the table lock held."""
    cdef uint32_t i
    cdef ef_group *g
    cdef bint private = (flags & EF_GROUP_PRIVATE) != 0
    if not private:
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if g.state == EF_GROUP_ACTIVE and not (g.flags & EF_GROUP_PRIVATE) and g.name == name:
                if g.mode != mode:
                    raise ConfigError(f"group {name.decode()!r} is {_MODE_NAMES[g.mode]}; "
                                      f"cannot join it as {_MODE_NAMES[mode]}")
                g.members += add_members
                g.flags |= flags
                return i
    for i in range(EF_MAX_GROUPS):
        g = &c.groups[i]
        if g.state == EF_GROUP_FREE:
            memset(g.name, 0, EF_GROUP_NAME_BYTES)
            memcpy(g.name, <char *>name, len(name))
            g.mode = mode
            g.max_lag = max_lag
            g.flags = flags
            g.members = add_members
            g.drops = 0
            g.taken = 0
            g.redeliver_n = 0
            memset(g.redeliver, 0, sizeof(g.redeliver))
            # DURABLE, BALANCED: the first frame published after now. REALTIME: cursor is the last seq taken.
            last = ef_load64_acq(&c.last_seq)
            ef_store64_sc(&g.cursor, last if mode == EF_MODE_REALTIME else last + 1)
            if mode == EF_MODE_DURABLE:
                ef_add32_sc(&c.durable_groups, 1)
            ef_store32_rel(&g.state, EF_GROUP_ACTIVE)
            if i + 1 > c.group_hwm:
                c.group_hwm = i + 1
            return i
    raise TransportError(f"{EF_MAX_GROUPS} subscriber groups already attached; close some subscribers")


cdef uint32_t _mode(bint durable, uint32_t max_lag):
    if durable:
        return EF_MODE_DURABLE
    return EF_MODE_BALANCED if max_lag else EF_MODE_REALTIME


cdef void _declare(ef_ctl *c, str group, bint durable, uint32_t max_lag) except *:
    _lock(c)
    try:
        _join_group(c, _group_name(group), _mode(durable, max_lag), EF_GROUP_PERSISTENT, 0, max_lag)
    finally:
        _unlock(c)


def declare_group(str name, str group, *, bint durable, uint32_t max_lag=0):
    """Create ring ``name``'s control segment if needed and a persistent group in it, before any writer or
    member exists (a DURABLE group then keeps every frame from the writer's first). The caller owns the cleanup
    of a ring nobody writes to (remove_ring)."""
    m = _open_ctl(name + ".ctl")
    _declare(<ef_ctl *>m.addr, group, durable, max_lag)


def drop_group(str name, str group):
    """Free ring ``name``'s group ``group`` once it has no member (a consumer removed from a running app): a
    DURABLE group no longer holds the writer back. Returns 'dropped', 'absent' (no such ring or group) or
    'busy' (members still attached, e.g. a killed reader the writer has not reclaimed yet: try again)."""
    cdef int fd = _open(name + ".ctl", O_RDWR)
    cdef ef_ctl *c
    cdef ef_group *g
    cdef uint32_t i
    cdef stat st
    if fd < 0:
        return "absent"
    try:
        fstat(fd, &st)
        if <size_t>st.st_size != sizeof(ef_ctl):
            return "absent"
        m = _map(fd, sizeof(ef_ctl), name + ".ctl", False)
    finally:
        close(fd)
    c = <ef_ctl *>m.addr
    if c.magic != EF_CTL_MAGIC:
        return "absent"
    wanted = _group_name(group)
    _lock(c)
    try:
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if g.state == EF_GROUP_ACTIVE and not (g.flags & EF_GROUP_PRIVATE) and g.name == wanted:
                if g.members:
                    return "busy"
                _free_group(c, i)
                # a writer waiting for this group's cursor wakes and sees it gone (as when a frame is consumed)
                ef_add32_sc(&c.consumed_futex, 1)
                _futex_wake(&c.consumed_futex, INT_MAX)
                return "dropped"
    finally:
        _unlock(c)
    return "absent"


def remove_ring(str name):
    """Unlink every segment of ring ``name`` (its generations and its control segment); returns how many.
    Processes that still map them keep their mappings."""
    cdef stat st
    cdef int fd = _open(name + ".ctl", O_RDWR)
    removed = 0
    cdef ef_ctl *c
    if fd >= 0:
        try:
            fstat(fd, &st)
            if <size_t>st.st_size == sizeof(ef_ctl):
                m = _map(fd, sizeof(ef_ctl), name + ".ctl", False)
                c = <ef_ctl *>m.addr
                if c.magic == EF_CTL_MAGIC:
                    for n in range(max(c.oldest_gen, 1), c.generation + 1):
                        removed += unlink_segment(_gen_name(name, n))
        finally:
            close(fd)
        removed += unlink_segment(name + ".ctl")
    return removed


def writer_of(str name):
    """(status, pid) of ring ``name``'s writer without attaching: status is 'absent' (no such ring), 'none',
    'running', 'closed' or 'dead'."""
    cdef stat st
    cdef int fd = _open(name + ".ctl", O_RDWR)
    cdef ef_ctl *c
    if fd < 0:
        return ("absent", 0)
    try:
        fstat(fd, &st)
        if <size_t>st.st_size != sizeof(ef_ctl):
            return ("absent", 0)
        m = _map(fd, sizeof(ef_ctl), name + ".ctl", False)
    finally:
        close(fd)
    c = <ef_ctl *>m.addr
    if c.magic != EF_CTL_MAGIC or c.writer_state == EF_WRITER_NONE:
        return ("none", 0)
    if c.writer_state == EF_WRITER_CLOSED:
        return ("closed", c.writer_pid)
    return ("running" if _alive(c.writer_pid, c.writer_start) else "dead", c.writer_pid)


cdef bytes _group_name(str group):
    if group is None:
        return b""
    b = group.encode()
    if not 0 < len(b) < EF_GROUP_NAME_BYTES:
        raise ConfigError(f"group name {group!r}: 1 to {EF_GROUP_NAME_BYTES - 1} bytes")
    return b


cdef str _describe_group(ef_ctl *c, uint32_t gi):
    cdef ef_group *g = &c.groups[gi]
    pids = [c.readers[r].pid for r in range(EF_MAX_READERS)
            if c.readers[r].state == EF_READER_ACTIVE and c.readers[r].group == gi]
    who = f"pid {', '.join(map(str, pids))}" if pids else "no live member"
    if g.flags & EF_GROUP_PRIVATE:
        return f"durable subscriber ({who})"
    return f"durable group {g.name.decode()!r} ({who})"


# ---------------------------------------------------------------------------------------------------------------
# the writer

cdef class _LoanBuffer:
    """A writable window on a loaned slot; keeps the generation mapped while any array views it."""
    cdef _Generation gen
    cdef char *ptr
    cdef Py_ssize_t length

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        buffer.buf = self.ptr
        buffer.len = self.length
        buffer.readonly = 0
        buffer.itemsize = 1
        buffer.format = NULL
        if flags & PyBUF_FORMAT:
            buffer.format = "B"
        buffer.ndim = 1
        buffer.shape = &self.length
        buffer.strides = &buffer.itemsize
        buffer.suboffsets = NULL
        buffer.internal = NULL
        buffer.obj = self

    def __releasebuffer__(self, Py_buffer *buffer):
        pass


cdef class RingWriter:
    """The one writer of a ring. See ring.pyi for the documented API."""

    @staticmethod
    def create(str name, *, slots=8, slot_bytes=0, bint grow=True, backpressure_timeout=5.0):
        if type(slots) is not int or not 3 <= slots <= EF_MAX_SLOTS:
            raise ConfigError(f"{name}: slots={slots!r}: a ring has 3 to {EF_MAX_SLOTS} slots")
        if type(slot_bytes) is not int or not 0 <= slot_bytes < (1 << 40):
            raise ConfigError(f"{name}: slot_bytes={slot_bytes!r}: 0 (size from the first frame) or a byte count")
        if not isinstance(backpressure_timeout, (int, float)) or not backpressure_timeout >= 0:
            raise ConfigError(f"{name}: backpressure_timeout={backpressure_timeout!r}: seconds, >= 0")
        cdef RingWriter w = RingWriter.__new__(RingWriter)
        w.closed = True
        w.name = name
        w.slots = slots
        w.min_slot_bytes = slot_bytes
        w.grow = grow
        w.backpressure_timeout = backpressure_timeout
        w.old_gens = []
        w.loan_slot = -1
        w.ctl_map = _open_ctl(name + ".ctl")
        w.ctl = <ef_ctl *>w.ctl_map.addr
        w._take_ownership()
        w.closed = False
        w._adopt_generations()
        w.reclaim_dead()
        if slot_bytes:
            w._new_generation(slot_bytes)
        w.next_housekeeping = _mono() + HOUSEKEEPING_PERIOD
        return w

    def _take_ownership(self):
        cdef ef_ctl *c = self.ctl
        pid, start = _me()
        while True:
            wp, ws, state = c.writer_pid, c.writer_start, c.writer_state
            alive = state == EF_WRITER_RUNNING and _alive(wp, ws)
            _lock(c)
            try:
                if (c.writer_pid, c.writer_start, c.writer_state) != (wp, ws, state):
                    continue                                   # changed while we checked: look again
                if alive:
                    raise ConfigError(f"{self.name}: already has a live publisher (pid {wp}); "
                                      "a ring has exactly one writer")
                c.writer_pid = pid
                c.writer_start = start
                c.writer_epoch += 1
                ef_store32_rel(&c.writer_state, EF_WRITER_RUNNING)
                return
            finally:
                _unlock(c)

    def _adopt_generations(self):
        """After a crashed writer: keep its generations readable (durable readers drain them) and seal the last
        one; the next publish starts a fresh generation."""
        cdef ef_ctl *c = self.ctl
        cdef uint32_t n
        if c.generation == 0:
            return
        for n in range(max(c.oldest_gen, 1), c.generation + 1):
            g = _open_gen(self.name, c, n)
            if g is not None:
                if g.hdr.sealed_last == EF_WRITING:
                    ef_store64_rel(&g.hdr.sealed_last, c.last_seq)
                self.old_gens.append(g)

    def _new_generation(self, uint64_t nbytes):
        cdef ef_ctl *c = self.ctl
        cdef uint64_t want = max(nbytes, self.min_slot_bytes, 1)
        if self.cur is not None:
            want = max(want, 2 * self.cur.slot_bytes)      # grow geometrically: few generations
        want = (want + EF_PAGE - 1) // EF_PAGE * EF_PAGE
        cdef uint32_t number = c.generation + 1
        g = _create_gen(self.name, c, number, self.slots, want)
        if self.cur is not None:
            ef_store64_rel(&self.cur.hdr.sealed_last, c.last_seq)
            self.old_gens.append(self.cur)
        self.cur = g
        if c.oldest_gen == 0:
            c.oldest_gen = number
        ef_store32_rel(&c.generation, number)             # release: the header above is complete
        self.generations_made += 1

    cdef uint64_t _protected_from(self):
        """Lowest seq some DURABLE group still needs (its cursor or a redelivery); NO_LIMIT when none."""
        cdef ef_ctl *c = self.ctl
        if ef_load32_acq(&c.durable_groups) == 0:
            return NO_LIMIT
        cdef uint64_t low = NO_LIMIT, v
        cdef uint32_t i, k
        cdef ef_group *g
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if ef_load32_acq(&g.state) != EF_GROUP_ACTIVE or g.mode != EF_MODE_DURABLE:
                continue
            v = ef_load64_sc(&g.cursor)      # seq_cst: ordered after writer_waiting's store when we sleep
            if v < low:
                low = v
            if ef_load32_acq(&g.redeliver_n):
                for k in range(EF_REDELIVER):
                    v = ef_load64_acq(&g.redeliver[k])
                    if v and v < low:
                        low = v
        return low

    cdef uint64_t _in_order_from(self) noexcept nogil:
        """Lowest seq a BALANCED group has not taken yet (it reads in order while within max_lag); NO_LIMIT
        when there is none. Not protected (an overrun skips), only kept from the most-recently-freed choice."""
        cdef ef_ctl *c = self.ctl
        cdef uint64_t low = NO_LIMIT, v
        cdef uint32_t i
        cdef ef_group *g
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if ef_load32_acq(&g.state) == EF_GROUP_ACTIVE and g.mode == EF_MODE_BALANCED:
                v = ef_load64_acq(&g.cursor)
                if v < low:
                    low = v
        return low

    cdef int _choose_slot(self, uint64_t protect) except -2:
        """Mark and return a reusable slot, or -1 when every slot is pinned or needed.

        In a ring bigger than MRU_RING_BYTES, the most recently freed one first: the frame published before the
        newest, once every reader is done with it. When consumers keep up the ring then cycles through two
        slots, whose pages stay in the CPU cache, instead of all of them (8 slots of 1080p frames are 50 MB:
        more than the cache). The newest frame is never taken this way (a REALTIME reader may still come for
        it), nor one a DURABLE group still needs (``protect``) or a BALANCED group has not read yet. Otherwise
        (a small ring: it fits the cache anyway, and keeps its last frames for ring.peek), or when no slot
        qualifies: the oldest reusable one, empty slots first."""
        cdef _Generation gm = self.cur
        cdef uint32_t i, attempt
        cdef int best
        cdef uint64_t s, best_seq
        cdef bint recent_first = gm.slot_count * gm.slot_bytes > MRU_RING_BYTES
        cdef uint64_t newest = ef_load64_acq(&self.ctl.last_seq) if recent_first else 0
        cdef uint64_t below = min(protect, self._in_order_from(), newest) if recent_first else 0
        cdef ef_slot *sl
        for attempt in range(4):
            best = -1
            best_seq = 0
            for i in range(gm.slot_count if recent_first else 0):    # most recently freed
                sl = gm.slot(i)
                s = ef_load64_acq(&sl.seq)
                if s == EF_WRITING or s == 0 or s >= below or ef_load64_acq(&sl.pin_mask):
                    continue
                if s > best_seq:
                    best, best_seq = i, s
            if best < 0:
                best_seq = NO_LIMIT
                for i in range(gm.slot_count):            # else the oldest reusable
                    sl = gm.slot(i)
                    s = ef_load64_acq(&sl.seq)
                    if s == EF_WRITING or (s != 0 and s >= protect) or ef_load64_acq(&sl.pin_mask):
                        continue
                    if s < best_seq:
                        best, best_seq = i, s
                        if s == 0:
                            break
            if best < 0:
                return -1
            sl = gm.slot(best)
            # seq_cst store, then seq_cst load of the pins: a reader pinning right now either sees WRITING and
            # backs off, or we see its pin and leave the slot alone.
            ef_store64_sc(&sl.seq, EF_WRITING)
            if ef_load64_sc(&sl.pin_mask) == 0:
                return best
            ef_store64_rel(&sl.seq, best_seq)
        return -1

    cdef int _acquire_slot(self) except -1:
        cdef int idx = self._choose_slot(self._protected_from())
        if idx >= 0:
            return idx
        return self._wait_for_slot()

    def _wait_for_slot(self):
        """Back-pressure: every slot is pinned or needed by a DURABLE reader. Sleep until a reader moves on."""
        cdef ef_ctl *c = self.ctl
        cdef uint32_t seen
        cdef int idx
        cdef double deadline = _mono() + self.backpressure_timeout
        cdef double remaining, next_reclaim = _mono() + 0.2
        self.backpressure_waits += 1
        while True:
            ef_store32_sc(&c.writer_waiting, 1)
            seen = ef_load32_sc(&c.consumed_futex)
            idx = self._choose_slot(self._protected_from())
            if idx >= 0:
                ef_store32_rel(&c.writer_waiting, 0)
                return idx
            remaining = deadline - _mono()
            if remaining <= 0:
                ef_store32_rel(&c.writer_waiting, 0)
                raise BackpressureTimeout(f"{self._lag_report()}; waited {self.backpressure_timeout:g} s")
            # a reader that keeps up frees a slot within microseconds: spin on the word first (no sleep, and no
            # wake-up system call on the reader's side once we are looking again), then sleep on it
            with nogil:
                if _spin_word(&c.consumed_futex, seen, _mono() + min(WRITER_SPIN_S, remaining)):
                    continue
                _futex_wait(&c.consumed_futex, seen, min(remaining, 0.05))
            PyErr_CheckSignals()                         # let a Ctrl-C / SIGTERM handler run while we wait
            if self.cancelled:
                ef_store32_rel(&c.writer_waiting, 0)
                self.cancelled = False
                raise BackpressureTimeout(f"{self.name}: publish cancelled while waiting for a durable reader")
            if _mono() >= next_reclaim:                   # a dead reader must not wedge us
                self.reclaim_dead()
                next_reclaim = _mono() + 0.2

    def skip_oldest(self):
        """Back-pressure policy "drop_oldest": move every DURABLE group that still needs the oldest frame one
        frame on (counted in that group's drops), so the next publish finds a slot. Returns how many groups
        moved (0 when no group holds the oldest frame, e.g. it waits in a redelivery or every slot is pinned).

        A member reading that frame right now fails its cursor CAS and takes the next one instead; a frame it
        already pinned stays valid until it lets go (the writer never takes a pinned slot)."""
        cdef ef_ctl *c = self.ctl
        cdef uint64_t low = self._protected_from()
        cdef uint32_t i, moved = 0
        cdef ef_group *g
        if low == NO_LIMIT or low > ef_load64_acq(&c.last_seq):
            return 0
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if ef_load32_acq(&g.state) != EF_GROUP_ACTIVE or g.mode != EF_MODE_DURABLE:
                continue
            if ef_cas64_sc(&g.cursor, low, low + 1):
                ef_add64_rlx(&g.drops, 1)
                moved += 1
        return moved

    def _lag_report(self):
        cdef ef_ctl *c = self.ctl
        cdef ef_group *g
        cdef uint64_t low = self._protected_from()
        cdef uint32_t i
        for i in range(c.group_hwm):
            g = &c.groups[i]
            if g.state != EF_GROUP_ACTIVE or g.mode != EF_MODE_DURABLE:
                continue
            if g.cursor == low:
                return (f"{self.name}: {_describe_group(c, i)} is {c.last_seq - low + 1} frames behind "
                        f"(next frame {low}, newest {c.last_seq}, {self.slots} slots)")
            if any(g.redeliver[k] == low for k in range(EF_REDELIVER)):
                return (f"{self.name}: {_describe_group(c, i)} has not taken frame {low} back from a member "
                        f"that died holding it (newest {c.last_seq}, {self.slots} slots)")
        pins = [c.readers[r].pid for r in range(EF_MAX_READERS)
                if c.readers[r].state == EF_READER_ACTIVE and c.readers[r].held]
        return f"{self.name}: every slot is held by subscribers (pid {', '.join(map(str, pins)) or '?'})"

    cdef inline void _check_open(self) except *:
        if self.closed:
            raise ClosedResourceError(f"{self.name}: publisher is closed")

    def begin(self, uint64_t nbytes):
        """Loan a slot of at least nbytes; returns a writable buffer. Commit or abort it next."""
        self._check_open()
        if self.loan_slot >= 0:
            raise ConfigError(f"{self.name}: a loan is already open; commit or abort it first")
        if self.cur is None or nbytes > self.cur.slot_bytes:
            if self.cur is not None and not self.grow:
                raise FrameTooLarge(f"{self.name}: frame of {nbytes} bytes exceeds the slot size of "
                                    f"{self.cur.slot_bytes} bytes and growth is disabled")
            self._new_generation(nbytes)
        self.loan_slot = self._acquire_slot()
        self.cur.slot(self.loan_slot).nbytes = nbytes
        cdef _LoanBuffer buf = _LoanBuffer.__new__(_LoanBuffer)
        buf.gen = self.cur
        buf.ptr = self.cur.payload_of(self.loan_slot)
        buf.length = nbytes
        return buf

    def abort(self):
        """Give back an open loan without publishing it."""
        if self.loan_slot >= 0 and self.cur is not None:
            ef_store64_rel(&self.cur.slot(self.loan_slot).seq, EF_EMPTY_SEQ)
        self.loan_slot = -1

    cpdef uint64_t commit(self, uint32_t kind, bytes dtype, tuple shape, double timestamp, bytes meta) except 0:
        """Publish the open loan; returns its seq (the frame_id)."""
        self._check_open()
        if self.loan_slot < 0:
            raise ConfigError(f"{self.name}: commit without an open loan")
        cdef Py_ssize_t dlen = len(dtype), mlen = len(meta), ndim = len(shape), k
        if dlen > EF_MAX_DTYPE or mlen > EF_MAX_META or ndim > EF_MAX_NDIM:
            self.abort()
            raise FrameTooLarge(f"{self.name}: metadata of {mlen} bytes (limit {EF_MAX_META}), dtype of {dlen} "
                                f"bytes (limit {EF_MAX_DTYPE}) or {ndim} dimensions (limit {EF_MAX_NDIM})")
        cdef ef_ctl *c = self.ctl
        cdef _Generation gm = self.cur
        cdef uint32_t idx = self.loan_slot
        cdef ef_slot *sl = gm.slot(idx)
        cdef char *mp = gm.meta_of(idx)
        if dlen:
            memcpy(mp, PyBytes_AS_STRING(dtype), dlen)
        if mlen:
            memcpy(mp + dlen, PyBytes_AS_STRING(meta), mlen)
        sl.timestamp = timestamp
        sl.kind = kind
        sl.ndim = ndim
        for k in range(ndim):
            sl.shape[k] = shape[k]
        sl.dtype_len = dlen
        sl.meta_len = mlen
        cdef uint64_t s = c.last_seq + 1
        gm.hdr.index[s % gm.slot_count] = idx
        ef_store64_rel(&sl.seq, s)                 # release: payload, descriptor and meta visible before the seq
        ef_store64_rel(&c.latest_loc, (<uint64_t>gm.number << 32) | idx)
        ef_store64_rel(&c.last_seq, s)
        ef_store32_sc(&c.seq_futex, <uint32_t>s)   # seq_cst: ordered before the load of the sleepers' count
        if ef_load32_sc(&c.readers_waiting):
            _futex_wake(&c.seq_futex, INT_MAX)
        self.loan_slot = -1
        if _mono() >= self.next_housekeeping:
            self.housekeeping()
        return s

    def publish(self, object data, uint32_t kind, bytes dtype, tuple shape, double timestamp, bytes meta):
        """Copy a C-contiguous buffer into a slot and publish it; returns its seq."""
        cdef Py_buffer pb
        PyObject_GetBuffer(data, &pb, PyBUF_C_CONTIGUOUS)
        try:
            buf = self.begin(pb.len)
            if <size_t>pb.len > NOGIL_COPY_BYTES:
                with nogil:
                    memcpy((<_LoanBuffer>buf).ptr, pb.buf, pb.len)
            else:
                memcpy((<_LoanBuffer>buf).ptr, pb.buf, pb.len)
        except BaseException:
            self.abort()
            raise
        finally:
            PyBuffer_Release(&pb)
        return self.commit(kind, dtype, shape, timestamp, meta)

    def declare_group(self, str group, *, bint durable, uint32_t max_lag=0):
        """Create a persistent group (it keeps its cursor while no member is attached, until the ring closes)."""
        self._check_open()
        _declare(self.ctl, group, durable, max_lag)

    def housekeeping(self):
        """Reclaim dead readers and remove generations nobody needs any more (runs every 0.5 s by itself)."""
        self.next_housekeeping = _mono() + HOUSEKEEPING_PERIOD
        self.reclaim_dead()
        self._retire_generations()

    def _retire_generations(self):
        cdef ef_ctl *c = self.ctl
        cdef uint64_t protect = self._protected_from()
        cdef _Generation g
        while self.old_gens:
            g = self.old_gens[0]
            if g.hdr.sealed_last >= protect or ef_load32_acq(&g.hdr.pinned_slots):
                return
            unlink_segment(g.mapping.name)
            self.old_gens.pop(0)
            c.oldest_gen = (<_Generation>self.old_gens[0]).number if self.old_gens else self.cur.number

    def reclaim_dead(self):
        """Reclaim the pins and private cursors of readers whose process is gone; returns how many."""
        if self.closed:
            return 0
        cdef ef_ctl *c = self.ctl
        cdef uint32_t r
        dead = [(r, c.readers[r].pid, c.readers[r].start_time) for r in range(EF_MAX_READERS)
                if ef_load32_acq(&c.readers[r].state) == EF_READER_ACTIVE
                and not _alive(c.readers[r].pid, c.readers[r].start_time)]
        if not dead:
            return 0
        gens = self.old_gens + ([self.cur] if self.cur is not None else [])
        _lock(c)
        try:
            for r, pid, start in dead:
                if c.readers[r].state == EF_READER_ACTIVE and c.readers[r].pid == pid \
                        and c.readers[r].start_time == start:
                    _reclaim_reader(c, r, gens)
        finally:
            _unlock(c)
        return len(dead)

    def statistics(self):
        """A dict snapshot: seq, generation, slots, slot size, back-pressure waits, readers and groups."""
        self._check_open()
        return _ring_statistics(self.ctl, self.cur, self.name, self.backpressure_waits, self.generations_made)

    @property
    def last_seq(self):
        return self.ctl.last_seq if not self.closed else 0

    @property
    def slot_bytes(self):
        return self.cur.slot_bytes if self.cur is not None else 0

    @property
    def generation(self):
        return self.ctl.generation if not self.closed else 0

    def is_closed(self):
        return self.closed

    def drain(self, double timeout):
        """Wait up to timeout seconds until every DURABLE group has taken every published frame; True if so."""
        self._check_open()
        cdef ef_ctl *c = self.ctl
        cdef double deadline = _mono() + timeout
        cdef uint32_t seen
        while True:
            ef_store32_sc(&c.writer_waiting, 1)
            seen = ef_load32_sc(&c.consumed_futex)
            if self._protected_from() > c.last_seq:
                ef_store32_rel(&c.writer_waiting, 0)
                return True
            if _mono() >= deadline:
                ef_store32_rel(&c.writer_waiting, 0)
                return False
            with nogil:
                _futex_wait(&c.consumed_futex, seen, min(deadline - _mono(), 0.05))
            self.reclaim_dead()

    def cancel_wait(self):
        """Make a publish that is waiting on back-pressure give up now (BackpressureTimeout); signal-safe."""
        self.cancelled = True

    def abandon(self):
        """Let go of the ring as a crashed writer would: readers see the writer dead (not closed) and wait for a
        new writer to take the ring over where this one stopped. For a process that fails and will be
        restarted; a stream that ended uses close()."""
        if self.closed:
            return
        self.closed = True
        self.cur = None
        self.old_gens = []
        self.ctl = NULL
        self.ctl_map = None

    def close(self):
        """Stop writing, wake every reader (they see 'writer closed') and remove the ring's segments."""
        if self.closed:
            return
        self.closed = True
        cdef ef_ctl *c = self.ctl
        cdef uint32_t n, r
        # With live readers attached the ring stays: they drain what is left (generations they have not mapped
        # yet included), a new writer may take it over where this one stopped, and the last reader out removes
        # it. Readers that died are reclaimed first, so they keep nothing.
        self.closed = False
        self.reclaim_dead()
        self.closed = True
        _lock(c)
        try:
            attached = any(c.readers[r].state != EF_READER_FREE for r in range(EF_MAX_READERS))
            if not attached:
                _unlink_ring(c, self.name)
            ef_store32_rel(&c.writer_state, EF_WRITER_CLOSED)
        finally:
            _unlock(c)
        _futex_wake(&c.seq_futex, INT_MAX)
        self.cur = None
        self.old_gens = []
        self.ctl = NULL
        self.ctl_map = None

    def __dealloc__(self):
        if not self.closed and self.ctl != NULL:   # safety net: the owner forgot close()
            try:
                self.close()
            except BaseException:
                pass


cdef void _unlink_ring(ef_ctl *c, str name):
    cdef uint32_t n
    for n in range(max(c.oldest_gen, 1), c.generation + 1):
        unlink_segment(_gen_name(name, n))
    unlink_segment(name + ".ctl")


cdef void _reclaim_reader(ef_ctl *c, uint32_t r, list gens) except *:
    """Drop a dead reader's pins (requeueing frames a durable group member took but never released) and its
    group membership. Call with the table lock held."""
    cdef uint64_t bit = (<uint64_t>1) << r
    cdef uint32_t gi = c.readers[r].group, i, k
    cdef ef_group *g = &c.groups[gi]
    cdef bint requeue = g.mode == EF_MODE_DURABLE and not (g.flags & EF_GROUP_PRIVATE)
    cdef _Generation gm
    cdef ef_slot *sl
    cdef uint64_t s, old
    for gm in gens:
        for i in range(gm.slot_count):
            sl = gm.slot(i)
            if not (ef_load64_acq(&sl.pin_mask) & bit):
                continue
            s = ef_load64_acq(&sl.seq)
            if requeue and s != EF_WRITING and s != 0 and s < ef_load64_acq(&g.cursor):
                for k in range(EF_REDELIVER):      # before the pin goes, so the slot stays protected
                    if g.redeliver[k] == 0:
                        g.redeliver_loc[k] = (<uint64_t>gm.number << 32) | i
                        ef_store64_rel(&g.redeliver[k], s)
                        ef_add32_sc(&g.redeliver_n, 1)
                        break
                else:                              # no room: the frame is lost to this group; count it
                    ef_add64_rlx(&g.drops, 1)
            old = ef_and64_sc(&sl.pin_mask, ~bit)
            if old == bit:
                ef_sub32_sc(&gm.hdr.pinned_slots, 1)
    if g.members:
        g.members -= 1
    if g.flags & EF_GROUP_PRIVATE or (g.members == 0 and g.mode == EF_MODE_REALTIME
                                      and not g.flags & EF_GROUP_PERSISTENT):
        _free_group(c, gi)
    c.readers[r].held = 0
    ef_store32_rel(&c.readers[r].state, EF_READER_FREE)


cdef dict _ring_statistics(ef_ctl *c, _Generation cur, str name, uint64_t waits, uint64_t gens):
    cdef uint32_t r, i
    cdef ef_reader *e
    cdef ef_group *g
    readers = []
    for r in range(EF_MAX_READERS):
        e = &c.readers[r]
        if e.state == EF_READER_ACTIVE:
            readers.append({"index": r, "pid": e.pid, "group": e.group, "held": e.held, "taken": e.taken})
    groups = []
    for i in range(c.group_hwm):
        g = &c.groups[i]
        if g.state != EF_GROUP_ACTIVE:
            continue
        durable = g.mode == EF_MODE_DURABLE
        lag = (c.last_seq - g.cursor) if g.mode == EF_MODE_REALTIME else (c.last_seq + 1 - g.cursor)
        groups.append({"index": i, "name": g.name.decode() or None, "durable": durable,
                       "mode": _MODE_NAMES[g.mode], "members": g.members,
                       "cursor": g.cursor, "lag": lag, "drops": g.drops, "taken": g.taken,
                       "persistent": bool(g.flags & EF_GROUP_PERSISTENT), "redeliver": g.redeliver_n})
    return {"name": name, "last_seq": c.last_seq, "generation": c.generation,
            "slots": cur.slot_count if cur is not None else 0,
            "slot_bytes": cur.slot_bytes if cur is not None else 0,
            "pinned_slots": cur.hdr.pinned_slots if cur is not None else 0,
            "backpressure_waits": waits, "generations_made": gens,
            "writer_pid": c.writer_pid, "readers": readers, "groups": groups}


# ---------------------------------------------------------------------------------------------------------------
# readers

cdef class RingReader:
    """One reader of a ring. See ring.pyi for the documented API."""

    @staticmethod
    def attach(str name, *, bint durable=False, str group=None, max_held=4, max_lag=0):
        if type(max_held) is not int or not 1 <= max_held <= 1024:
            raise ConfigError(f"{name}: max_held={max_held!r}: 1 to 1024 frames")
        if type(max_lag) is not int or not 0 <= max_lag <= 1 << 30:
            raise ConfigError(f"{name}: max_lag={max_lag!r}: a number of frames >= 1 (0: not BALANCED)")
        if durable and max_lag:
            raise ConfigError(f"{name}: max_lag is for BALANCED readers, not DURABLE ones")
        gname = _group_name(group)
        cdef RingReader r = RingReader.__new__(RingReader)
        r.closed = True
        r.name = name
        r.spin_s = DEFAULT_SPIN_S
        r.gens = {}
        r.durable = durable
        r.mode = _mode(durable, max_lag)
        r.max_lag = max_lag
        r.group_name = group
        r.max_held = max_held
        r.ctl_map = _open_ctl(name + ".ctl")
        r.ctl = <ef_ctl *>r.ctl_map.addr
        r._register(gname)
        r.closed = False
        return r

    def _register(self, bytes gname):
        cdef ef_ctl *c = self.ctl
        cdef uint32_t i
        cdef ef_reader *e
        pid, start = _me()
        flags = EF_GROUP_PRIVATE if self.group_name is None else 0
        _lock(c)
        try:
            for i in range(EF_MAX_READERS):
                if c.readers[i].state == EF_READER_FREE:
                    break
            else:
                raise TransportError(f"{self.name}: {EF_MAX_READERS} subscribers already attached")
            gi = _join_group(c, gname, self.mode, flags, 1, self.max_lag)
            e = &c.readers[i]
            e.group = gi
            e.pid = pid
            e.start_time = start
            e.held = 0
            e.taken = 0
            ef_store32_rel(&e.state, EF_READER_ACTIVE)
        finally:
            _unlock(c)
        self.index = i
        self.bit = (<uint64_t>1) << i
        self.group = gi

    cdef _Generation _gen(self, uint32_t number):
        g = self.gens.get(number)
        if g is None:
            g = _open_gen(self.name, self.ctl, number)
            if g is not None:
                self.gens[number] = g
                self._forget_old_generations(number)
        return g

    def _forget_old_generations(self, uint32_t newest):
        """Drop mappings this reader can no longer need (views keep their own reference)."""
        cdef uint64_t cursor = self.ctl.groups[self.group].cursor
        cdef _Generation g
        cdef uint32_t i
        for n in list(self.gens):
            g = <_Generation>self.gens[n]
            if n >= newest or (self.mode != EF_MODE_REALTIME and g.hdr.sealed_last >= cursor):
                continue
            # a view this reader still holds pins a slot there: close() must find it to unpin it
            if not any(ef_load64_acq(&g.slot(i).pin_mask) & self.bit for i in range(g.slot_count)):
                del self.gens[n]

    cdef _Generation _gen_for_seq(self, uint64_t seq):
        cdef uint32_t n = ef_load32_acq(&self.ctl.generation)
        cdef _Generation g
        while n > 0:
            g = self._gen(n)
            if g is None:
                return None
            if seq >= g.hdr.first_seq:
                return g
            n -= 1
        return None

    cdef inline void _check_open(self) except *:
        if self.closed:
            raise ClosedResourceError(f"{self.name}: subscriber is closed")

    cdef int _pin(self, _Generation gm, uint32_t idx) except -1:
        """Pin a slot for this reader: 1 when pinned, 0 when the ring's pin budget is used up (copy instead)."""
        if self.held >= self.max_held:
            raise HeldFramesError(
                f"{self.name}: this subscriber (pid {getpid()}) holds {self.held} frames, its limit "
                f"(max_held={self.max_held}); release frames (frame.release()) or keep copies (frame.copy())")
        cdef ef_slot *sl = gm.slot(idx)
        cdef uint64_t old = ef_or64_sc(&sl.pin_mask, self.bit)
        cdef uint32_t pinned
        if old == 0:
            pinned = ef_add32_sc(&gm.hdr.pinned_slots, 1) + 1
            # leave the writer two unpinned slots, however many readers hold frames
            if pinned + 2 > gm.slot_count and gm.number == self.ctl.generation:
                if ef_and64_sc(&sl.pin_mask, ~self.bit) == self.bit:
                    ef_sub32_sc(&gm.hdr.pinned_slots, 1)
                return 0
        self.held += 1
        self.ctl.readers[self.index].held = self.held
        return 1

    cdef void _unpin(self, _Generation gm, uint32_t idx) noexcept nogil:
        cdef ef_slot *sl = gm.slot(idx)
        cdef uint64_t old = ef_and64_sc(&sl.pin_mask, ~self.bit)
        if old == self.bit:
            ef_sub32_sc(&gm.hdr.pinned_slots, 1)
        if old & self.bit:
            self.held -= 1
            self.ctl.readers[self.index].held = self.held
        self._notify_writer()

    cdef void _notify_writer(self) noexcept nogil:
        # seq_cst load after our seq_cst RMW: a writer going to sleep either sees our change or we see it waiting.
        # The first reader to see it waiting clears the flag and wakes it; the writer sets it again before it
        # looks for a slot once more, so the others skip the system call (a batching sink releasing 24 frames
        # made 24 wake-ups for one sleeping writer; measured: 13% of PostgresSink's time at one row per frame)
        if ef_load32_sc(&self.ctl.writer_waiting) and ef_cas32_sc(&self.ctl.writer_waiting, 1, 0):
            ef_add32_sc(&self.ctl.consumed_futex, 1)
            _futex_wake(&self.ctl.consumed_futex, 1)

    cdef object _view(self, _Generation gm, uint32_t idx, uint64_t seq, bint pinned):
        cdef SlotView v = SlotView.__new__(SlotView)
        cdef ef_slot *sl = gm.slot(idx)
        memcpy(&v.desc, sl, sizeof(ef_slot))
        v.desc.seq = seq
        v.desc.pin_mask = 0
        v.buf_len = v.desc.nbytes
        if pinned:
            v.reader = self
            v.gen = gm
            v.idx = idx
            v.pinned = True
            v.meta_ptr = gm.meta_of(idx)
            v.data_ptr = gm.payload_of(idx)
            return v
        # no pin budget left: copy the frame, then check the writer did not reuse the slot meanwhile (seqlock)
        cdef size_t n = v.desc.nbytes, m = v.desc.dtype_len + v.desc.meta_len
        if n > gm.slot_bytes or m > EF_META_AREA:
            return None
        v.owned = PyBytes_FromStringAndSize(NULL, n + m)
        cdef char *dst = PyBytes_AS_STRING(v.owned)
        memcpy(dst, gm.payload_of(idx), n)
        memcpy(dst + n, gm.meta_of(idx), m)
        ef_fence_sc()
        if ef_load64_acq(&sl.seq) != seq:
            return None
        v.data_ptr = dst
        v.meta_ptr = dst + n
        self.copies += 1
        return v

    cdef object _take_realtime(self):
        cdef ef_ctl *c = self.ctl
        cdef ef_group *g = &c.groups[self.group]
        cdef uint64_t last, taken, loc, s
        cdef uint32_t idx
        cdef int pinned
        cdef _Generation gm
        for attempt in range(64):
            last = ef_load64_acq(&c.last_seq)
            taken = ef_load64_acq(&g.cursor)
            if last <= taken:
                return None
            loc = ef_load64_acq(&c.latest_loc)
            gm = self._gen(<uint32_t>(loc >> 32))
            if gm is None:
                return None
            idx = <uint32_t>(loc & 0xFFFFFFFF)
            pinned = self._pin(gm, idx)
            s = ef_load64_sc(&gm.slot(idx).seq)
            if s == EF_WRITING or s == 0 or s <= taken:
                if pinned:
                    self._unpin(gm, idx)
                continue
            v = self._view(gm, idx, s, pinned)
            if v is not None and ef_cas64_sc(&g.cursor, taken, s):
                self.drops += s - taken - 1
                ef_add64_rlx(&g.drops, s - taken - 1)
                return self._took(g, v)
            self._drop(v, gm, idx, pinned)
        return None

    cdef object _take_durable(self):
        cdef ef_ctl *c = self.ctl
        cdef ef_group *g = &c.groups[self.group]
        cdef uint64_t cur, s
        cdef uint32_t idx
        cdef int pinned
        cdef _Generation gm
        for attempt in range(256):
            if ef_load32_acq(&g.redeliver_n):
                v = self._take_redelivered(g)
                if v is not None:
                    return self._took(g, v)
            cur = ef_load64_acq(&g.cursor)
            if cur > ef_load64_acq(&c.last_seq):
                return None
            gm = self._gen_for_seq(cur)
            if gm is None:
                self._overrun(g, cur)                 # its generation is gone: never expected
                continue
            idx = gm.hdr.index[cur % gm.slot_count]
            pinned = self._pin(gm, idx)
            s = ef_load64_sc(&gm.slot(idx).seq)
            if s != cur:
                if pinned:
                    self._unpin(gm, idx)
                if ef_load64_acq(&g.cursor) == cur:
                    self._overrun(g, cur)             # published, not taken, yet gone: never expected
                continue
            v = self._view(gm, idx, cur, pinned)      # the cursor protects seq cur until we move it
            if v is not None and ef_cas64_sc(&g.cursor, cur, cur + 1):
                if not pinned:
                    self._notify_writer()
                return self._took(g, v)
            self._drop(v, gm, idx, pinned)
        return None

    cdef object _take_balanced(self):
        """Every frame in order while fewer than max_lag behind; beyond that, skip to the newest. The writer never
        waits for a BALANCED group, so a frame it overwrote meanwhile is skipped too (counted as drops)."""
        cdef ef_ctl *c = self.ctl
        cdef ef_group *g = &c.groups[self.group]
        cdef uint64_t cur, last, s
        cdef uint32_t idx
        cdef int pinned
        cdef _Generation gm
        for attempt in range(256):
            cur = ef_load64_acq(&g.cursor)
            last = ef_load64_acq(&c.last_seq)
            if cur > last:
                return None
            gm = self._gen_for_seq(cur) if last - cur < g.max_lag else None
            if gm is None:
                self._skip_to(g, cur, last)
                continue
            idx = gm.hdr.index[cur % gm.slot_count]
            pinned = self._pin(gm, idx)
            s = ef_load64_sc(&gm.slot(idx).seq)
            if s != cur:                              # overwritten while we lagged
                if pinned:
                    self._unpin(gm, idx)
                self._skip_to(g, cur, ef_load64_acq(&c.last_seq))
                continue
            v = self._view(gm, idx, cur, pinned)
            if v is not None and ef_cas64_sc(&g.cursor, cur, cur + 1):
                return self._took(g, v)
            self._drop(v, gm, idx, pinned)
        return None

    cdef void _skip_to(self, ef_group *g, uint64_t cur, uint64_t newest) noexcept:
        if newest > cur and ef_cas64_sc(&g.cursor, cur, newest):
            ef_add64_rlx(&g.drops, newest - cur)
            self.drops += newest - cur

    cdef object _take_redelivered(self, ef_group *g):
        """A frame a dead member of this group took but never released (at-least-once across a crash)."""
        cdef uint32_t k, idx
        cdef uint64_t r, loc
        cdef int pinned
        cdef _Generation gm
        for k in range(EF_REDELIVER):
            r = ef_load64_acq(&g.redeliver[k])
            if r == 0:
                continue
            loc = g.redeliver_loc[k]             # where the frame is: the seq index has moved on since
            gm = self._gen(<uint32_t>(loc >> 32))
            if gm is None:
                if ef_cas64_sc(&g.redeliver[k], r, 0):
                    ef_sub32_sc(&g.redeliver_n, 1)
                    ef_add64_rlx(&g.drops, 1)
                    self.drops += 1
                continue
            idx = <uint32_t>(loc & 0xFFFFFFFF)
            pinned = self._pin(gm, idx)
            if ef_load64_sc(&gm.slot(idx).seq) != r:      # cannot happen while the entry protects it
                if pinned:
                    self._unpin(gm, idx)
                if ef_cas64_sc(&g.redeliver[k], r, 0):
                    ef_sub32_sc(&g.redeliver_n, 1)
                    ef_add64_rlx(&g.drops, 1)
                    self.drops += 1
                continue
            v = self._view(gm, idx, r, pinned)
            if v is not None and ef_cas64_sc(&g.redeliver[k], r, 0):
                ef_sub32_sc(&g.redeliver_n, 1)
                if not pinned:
                    self._notify_writer()
                return v
            self._drop(v, gm, idx, pinned)
        return None

    cdef void _drop(self, object v, _Generation gm, uint32_t idx, int pinned):
        """Give back a slot we pinned but did not deliver."""
        if v is not None:
            (<SlotView>v)._unpin()
        elif pinned:
            self._unpin(gm, idx)

    cdef object _took(self, ef_group *g, object v):
        self.taken += 1
        ef_add64_rlx(&g.taken, 1)
        self.ctl.readers[self.index].taken = self.taken
        return v

    cdef void _overrun(self, ef_group *g, uint64_t cur) noexcept:
        if ef_cas64_sc(&g.cursor, cur, cur + 1):
            ef_add64_rlx(&g.drops, 1)
            self.drops += 1

    def take_nowait(self):
        """The next frame for this reader as a SlotView, or None when there is none."""
        self._check_open()
        if self.mode == EF_MODE_DURABLE:
            return self._take_durable()
        if self.mode == EF_MODE_BALANCED:
            return self._take_balanced()
        return self._take_realtime()

    cdef bint _spin(self, double until) noexcept nogil:
        """Check for a frame until ``until`` (monotonic seconds), pausing the CPU between checks; True if one came.
        A reader that never sleeps (spin_s < 0) yields its CPU every SPIN_YIELD_S: on a machine with more busy
        processes than cores a pure spin starved the writer it waits for (a few hundred frames/s)."""
        cdef int k
        cdef double now, next_yield = 0.0
        if self.spin_s < 0.0:
            next_yield = _mono() + SPIN_YIELD_S
        while True:
            if self._has_new():
                return True
            for k in range(32):                       # about a microsecond between looks at the clock
                ef_cpu_relax()
            now = _mono()
            if now >= until:
                return self._has_new()
            if next_yield != 0.0 and now >= next_yield:
                sched_yield()
                next_yield = now + SPIN_YIELD_S

    cdef bint _has_new(self) noexcept nogil:
        cdef ef_group *g = &self.ctl.groups[self.group]
        cdef uint64_t last = ef_load64_acq(&self.ctl.last_seq)
        if self.mode == EF_MODE_REALTIME:
            return last > ef_load64_acq(&g.cursor)
        return ef_load64_acq(&g.cursor) <= last or ef_load32_acq(&g.redeliver_n) > 0

    def wait(self, timeout=None, uint64_t known_epoch=0):
        """Sleep until something may be ready (READY), the timeout passes (TIMEOUT), or the writer is gone
        (WRITER_CLOSED, WRITER_DEAD). A writer whose epoch is ``known_epoch`` (already reported to the caller) is
        not reported again: the wait goes on until a new writer publishes. Releases the GIL while asleep."""
        self._check_open()
        cdef ef_ctl *c = self.ctl
        cdef double deadline = _mono() + (1e9 if timeout is None else max(<double>timeout, 0.0))
        cdef double now, nap
        cdef uint32_t seen
        cdef bint spun
        while True:
            seen = ef_load32_acq(&c.seq_futex)       # before the check: a publish after it changes the word
            if self._has_new():
                return READY
            now = _mono()
            state = ef_load32_acq(&c.writer_state)
            if known_epoch and c.writer_epoch == known_epoch:
                state = EF_WRITER_NONE                   # already reported: wait for the next writer
            if state == EF_WRITER_CLOSED:
                return WRITER_CLOSED
            if state == EF_WRITER_RUNNING and now >= self.next_liveness_check:
                # at most every LIVENESS_PERIOD: reading /proc costs microseconds, and a frame may be on its way
                self.next_liveness_check = now + LIVENESS_PERIOD
                if not _alive(c.writer_pid, c.writer_start):
                    self.next_liveness_check = 0.0
                    return WRITER_DEAD
            if now >= deadline:
                return TIMEOUT
            nap = min(deadline - now, LIVENESS_PERIOD)
            if self.spin_s != 0.0:
                # spin first (spin_s < 0: spin the whole nap, never sleep); the writer sees no sleeper meanwhile
                # and makes no wake-up system call
                with nogil:
                    spun = self._spin(now + (nap if self.spin_s < 0.0 else min(self.spin_s, nap)))
                if spun:
                    return READY
                if self.spin_s < 0.0:
                    continue
            with nogil:
                ef_add32_sc(&c.readers_waiting, 1)
                if not self._has_new():
                    _futex_wait(&c.seq_futex, seen, nap)
                ef_sub32_sc(&c.readers_waiting, 1)

    def writer_status(self):
        """'none' (no writer yet), 'running', 'closed' or 'dead'."""
        self._check_open()
        cdef uint32_t state = ef_load32_acq(&self.ctl.writer_state)
        if state == EF_WRITER_NONE:
            return "none"
        if state == EF_WRITER_CLOSED:
            return "closed"
        return "running" if _alive(self.ctl.writer_pid, self.ctl.writer_start) else "dead"

    def writer_state(self):
        """'none', 'running' or 'closed' as the writer last said, without asking whether a 'running' writer
        is still alive (writer_status does: a read of /proc, which an idle reader should not do every time)."""
        self._check_open()
        cdef uint32_t state = ef_load32_acq(&self.ctl.writer_state)
        if state == EF_WRITER_NONE:
            return "none"
        return "closed" if state == EF_WRITER_CLOSED else "running"

    def ring_id(self):
        """Identity of the ring instance this reader is attached to."""
        self._check_open()
        return self.ctl.ring_id

    def writer_epoch(self):
        """Bumped by every writer that takes the ring: tells one writer's death or close from the next's."""
        self._check_open()
        return self.ctl.writer_epoch

    def is_orphaned(self):
        """True when the ring's name no longer leads to this reader's ring (removed, or made anew)."""
        self._check_open()
        cdef stat st
        cdef int fd = _open(self.name + ".ctl", O_RDWR)
        if fd < 0:
            return True
        try:
            fstat(fd, &st)
            if <size_t>st.st_size != sizeof(ef_ctl):
                return True
            m = _map(fd, sizeof(ef_ctl), self.name + ".ctl", False)
        finally:
            close(fd)
        return (<ef_ctl *>(<_Mapping>m).addr).ring_id != self.ctl.ring_id

    def statistics(self):
        """A dict snapshot of this reader: taken, drops, copies (pin budget exhausted), held, lag."""
        self._check_open()
        cdef ef_group *g = &self.ctl.groups[self.group]
        last = self.ctl.last_seq
        lag = (last - g.cursor) if self.mode == EF_MODE_REALTIME else (last + 1 - g.cursor)
        return {"index": self.index, "taken": self.taken, "drops": self.drops, "copies": self.copies,
                "held": self.held, "lag": lag, "group_drops": g.drops, "group": self.group_name,
                "durable": self.durable, "mode": _MODE_NAMES[self.mode]}

    def close(self):
        """Detach: drop this reader's pins and its membership (its private cursor goes with it)."""
        if self.closed:
            return
        self.closed = True
        cdef ef_ctl *c = self.ctl
        cdef _Generation gm
        cdef uint32_t i, r
        cdef uint64_t old
        cdef ef_group *g
        for gm in self.gens.values():
            for i in range(gm.slot_count):
                old = ef_and64_sc(&gm.slot(i).pin_mask, ~self.bit)
                if old == self.bit:
                    ef_sub32_sc(&gm.hdr.pinned_slots, 1)
        self.held = 0
        _lock(c)
        try:
            # under the lock: a writer closing meanwhile must see us attached, or we must see it closed
            writer_alive = c.writer_state == EF_WRITER_RUNNING and _alive(c.writer_pid, c.writer_start)
            g = &c.groups[self.group]
            if g.members:
                g.members -= 1
            if g.members == 0 and not (g.flags & EF_GROUP_PERSISTENT):
                _free_group(c, self.group)
            c.readers[self.index].held = 0
            ef_store32_rel(&c.readers[self.index].state, EF_READER_FREE)
            # The last one out of a ring without a live writer removes it: always after a clean close (the
            # stream ended), otherwise only when no group keeps a position there for a writer to come.
            last_out = not writer_alive \
                and not any(c.readers[r].state != EF_READER_FREE for r in range(EF_MAX_READERS)) \
                and (c.writer_state == EF_WRITER_CLOSED
                     or not any(c.groups[r].state == EF_GROUP_ACTIVE for r in range(EF_MAX_GROUPS)))
            if last_out:
                _unlink_ring(c, self.name)
        finally:
            _unlock(c)
        self._notify_writer()
        self.gens = {}

    def is_closed(self):
        return self.closed

    def __dealloc__(self):
        if not self.closed and self.ctl != NULL:
            try:
                self.close()
            except BaseException:
                pass


# ---------------------------------------------------------------------------------------------------------------
# the zero-copy view

cdef class SlotView:
    """A received frame's slot: read-only bytes through the buffer protocol, pinned while anything views it."""

    @property
    def seq(self):
        return self.desc.seq

    @property
    def timestamp(self):
        return self.desc.timestamp

    @property
    def kind(self):
        return self.desc.kind

    @property
    def nbytes(self):
        return self.desc.nbytes

    @property
    def shape(self):
        return tuple([self.desc.shape[k] for k in range(self.desc.ndim)])

    @property
    def dtype(self):
        return PyBytes_FromStringAndSize(self.meta_ptr, self.desc.dtype_len)

    @property
    def meta(self):
        return PyBytes_FromStringAndSize(self.meta_ptr + self.desc.dtype_len, self.desc.meta_len)

    @property
    def is_copy(self):
        return self.owned is not None

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.data_ptr == NULL:
            raise BufferError("this frame's slot was released")
        if flags & PyBUF_WRITABLE:
            raise BufferError("a received frame is read-only; call frame.copy() for a writable one")
        buffer.buf = <void *>self.data_ptr
        buffer.len = self.buf_len
        buffer.readonly = 1
        buffer.itemsize = 1
        buffer.format = NULL
        if flags & PyBUF_FORMAT:
            buffer.format = "B"
        buffer.ndim = 1
        buffer.shape = &self.buf_len
        buffer.strides = &buffer.itemsize
        buffer.suboffsets = NULL
        buffer.internal = NULL
        buffer.obj = self
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self.release_requested:
            self._unpin()

    def release(self):
        """Give the slot back now, or, while arrays still view it, as soon as the last of them is gone."""
        self.release_requested = True
        if self.exports == 0:
            self._unpin()

    cdef void _unpin(self):
        if self.pinned:
            self.pinned = False
            if not self.reader.closed:          # a closed reader already dropped all its pins
                self.reader._unpin(self.gen, self.idx)
        self.data_ptr = NULL
        self.owned = None

    def __dealloc__(self):
        if self.pinned and self.reader is not None and not self.reader.closed:
            self.reader._unpin(self.gen, self.idx)

    def __repr__(self):
        return f"<SlotView seq={self.desc.seq} {self.desc.nbytes} bytes{' copy' if self.owned else ''}>"


# ---------------------------------------------------------------------------------------------------------------
# waiting on several rings at once (a node with several inputs)

cdef extern from *:
    """
    #include <stdint.h>
    #include <sys/syscall.h>
    #ifndef SYS_futex_waitv
    #define SYS_futex_waitv 449
    #endif
    /* struct futex_waitv of Linux 5.16+, under our own name so older kernel headers still compile */
    typedef struct { uint64_t val; uint64_t uaddr; uint32_t flags; uint32_t reserved; } ef_futex_waitv;
    #define EF_FUTEX_32 2
    """
    ctypedef struct ef_futex_waitv:
        uint64_t val
        uint64_t uaddr
        uint32_t flags
        uint32_t reserved
    long SYS_futex_waitv
    uint32_t EF_FUTEX_32

cdef bint _have_waitv = True


cdef bint _spin_word(uint32_t *word, uint32_t seen, double until) noexcept nogil:
    """Spin (with a CPU pause) until ``*word`` is no longer ``seen`` (True) or ``until`` passes (False)."""
    cdef int k
    while True:
        if ef_load32_acq(word) != seen:
            return True
        for k in range(32):
            ef_cpu_relax()
        if _mono() >= until:
            return ef_load32_acq(word) != seen


cdef Py_ssize_t _spin_any(ef_futex_waitv *w, void **readers, Py_ssize_t n, double until) noexcept nogil:
    """wait_any's spin: the index of a reader with a frame before ``until``, else -1."""
    cdef Py_ssize_t i
    cdef int k
    while True:
        for i in range(n):
            if (<RingReader>readers[i])._has_new():
                return i
        for k in range(32):
            ef_cpu_relax()
        if _mono() >= until:
            return -1


def wait_any(list readers, timeout=None):
    """Sleep until one of several readers may have a frame; returns its index in the list, or -1 on timeout.

    Uses futex_waitv (Linux 5.16+) to sleep on every ring at once, falling back to short naps on older kernels.
    Wakes at least every 0.1 s so callers can check on writers (writer_status) between calls.
    """
    global _have_waitv
    cdef Py_ssize_t n = len(readers), i
    if n > 64:
        raise ConfigError("wait_any: at most 64 readers")
    cdef ef_futex_waitv w[64]
    cdef RingReader r
    cdef timespec ts
    cdef long ret
    cdef double deadline = _mono() + (1e9 if timeout is None else max(<double>timeout, 0.0))
    cdef double now, until, spin
    cdef void *readers_c[64]
    cdef Py_ssize_t got
    while True:
        for i in range(n):
            r = readers[i]
            r._check_open()
            readers_c[i] = <void *>r
            w[i].uaddr = <uint64_t>&r.ctl.seq_futex
            w[i].val = ef_load32_acq(&r.ctl.seq_futex)   # before the check: a publish after it changes the word
            w[i].flags = EF_FUTEX_32
            w[i].reserved = 0
        for i in range(n):
            if (<RingReader>readers[i])._has_new():
                return i
        now = _mono()
        if now >= deadline:
            return -1
        until = min(deadline, now + LIVENESS_PERIOD)
        spin = 0.0
        for i in range(n):
            r = readers[i]
            if r.spin_s < 0.0 or (spin >= 0.0 and r.spin_s > spin):
                spin = r.spin_s
        if spin != 0.0 and n:
            with nogil:
                got = _spin_any(w, readers_c, n, now + ((until - now) if spin < 0.0 else min(spin, until - now)))
            if got >= 0:
                return got
            if spin < 0.0:
                continue
        if not _have_waitv or n == 0:
            time.sleep(min(until - now, 0.001))
            continue
        ts.tv_sec = <long>until
        ts.tv_nsec = <long>((until - ts.tv_sec) * 1e9)
        for i in range(n):
            ef_add32_sc(&(<RingReader>readers[i]).ctl.readers_waiting, 1)
        with nogil:
            ret = syscall(SYS_futex_waitv, w, <unsigned int>n, 0, &ts, CLOCK_MONOTONIC)
        for i in range(n):
            ef_sub32_sc(&(<RingReader>readers[i]).ctl.readers_waiting, 1)
        if ret < 0 and errno == 38:      # ENOSYS: a kernel before 5.16
            _have_waitv = False


# ---------------------------------------------------------------------------------------------------------------
# peeking at a frame's descriptor without attaching (lineage: the meta of upstream frames still in their rings)

cdef extern from "<fcntl.h>" nogil:
    int O_RDONLY


cdef _Mapping _map_readonly(str name, size_t limit, int64_t *size):
    """Map at most the first ``limit`` bytes of segment ``name`` read-only (its size in ``size``); None when it
    does not exist or is empty. The descriptor is closed at once: the mapping is all we keep."""
    cdef stat st
    cdef void *addr
    cdef size_t length
    cdef int fd = _open(name, O_RDONLY)
    if fd < 0:
        if errno == ENOENT:
            return None
        raise _os_error("shm_open", name, errno)
    try:
        if fstat(fd, &st) != 0 or st.st_size <= 0:
            return None
        size[0] = st.st_size
        length = min(<size_t>st.st_size, limit)
        # PROT_READ: this process can never write into a ring it only peeks at (nor fault pages in: no populate)
        addr = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0)
        if addr == MAP_FAILED:
            raise _os_error("mmap", name, errno)
    finally:
        close(fd)
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    m.addr = <char *>addr
    m.length = length
    m.name = name
    return m


cdef object _peek_slots(char *base, uint32_t count, uint64_t seq):
    """(timestamp, meta) of the slot of this generation holding ``seq``, or None (see peek)."""
    cdef ef_slot *slots = <ef_slot *>(base + ef_slots_offset())
    cdef char *meta = base + ef_meta_offset(count)
    cdef ef_slot *sl
    cdef uint32_t i, dlen, mlen
    cdef double ts
    # Every slot is looked at, not just index[seq % count]: the writer picks the oldest free slot, so a frame
    # may outlive the index entry a later seq took over.
    for i in range(count):
        sl = &slots[i]
        if ef_load64_acq(&sl.seq) != seq:      # acquire: the descriptor and meta of seq are visible after it
            continue
        ts = sl.timestamp
        dlen = sl.dtype_len
        mlen = sl.meta_len
        # torn values (the writer reusing the slot right now) must not send the copy out of the meta area; the
        # re-check below throws such a copy away
        if dlen > EF_MAX_DTYPE:
            dlen = EF_MAX_DTYPE
        if mlen > EF_META_AREA - dlen:
            mlen = EF_META_AREA - dlen
        blob = PyBytes_FromStringAndSize(meta + <uint64_t>i * EF_META_AREA + dlen, mlen)
        # seqlock: the writer marks a slot WRITING before it touches any of its bytes, and seqs never repeat, so
        # the slot still holding seq after the copy means the copy is seq's
        ef_fence_sc()
        if ef_load64_acq(&sl.seq) != seq:
            return None
        return (ts, blob)
    return None


def peek(str name, uint64_t seq):
    """The (timestamp, meta bytes) of frame ``seq`` of ring ``name`` while a slot still holds it, else None.

    Read-only: maps the ring's segments with PROT_READ, joins no group, pins nothing and takes no lock, so the
    writer and every subscriber go on exactly as if nobody looked; the frame may be overwritten meanwhile, and
    a copy that raced with the writer is never returned (seqlock check), None instead. None as well when the
    ring does not exist, is being created, or ``seq`` was never published. What it maps is unmapped before it
    returns. Raises LayoutMismatch for a segment of another layout, TransportError when a segment exists but
    cannot be opened.
    """
    cdef int64_t size = 0
    cdef ef_ctl *c
    cdef ef_gen *h
    cdef uint32_t n, oldest
    if seq == EF_EMPTY_SEQ or seq == EF_WRITING:
        return None
    ctl = _map_readonly(name + ".ctl", sizeof(ef_ctl), &size)
    if ctl is None or <size_t>size != sizeof(ef_ctl):
        return None                                  # absent, or its creator has not sized it yet
    c = <ef_ctl *>ctl.addr
    if ef_load64_acq(&c.magic) == 0:
        return None                                  # being created
    _check_ctl(c, name + ".ctl", size)
    if seq > ef_load64_acq(&c.last_seq):
        return None
    n = ef_load32_acq(&c.generation)
    oldest = max(ef_load32_acq(&c.oldest_gen), 1)
    while n >= oldest:                               # newest first: the generation whose first seq <= seq
        gen_name = _gen_name(name, n)
        g = _map_readonly(gen_name, ef_payload_offset(EF_MAX_SLOTS), &size)
        if g is None or <size_t>size < EF_PAGE:
            return None                              # retired (older ones went first) or being made
        h = <ef_gen *>(<_Mapping>g).addr
        if ef_load64_acq(&h.magic) != EF_GEN_MAGIC:
            return None
        if h.version != EF_LAYOUT_VERSION:
            raise LayoutMismatch(f"/dev/shm/{gen_name}: not an EdgeFlow ring generation of layout "
                                 f"{EF_LAYOUT_VERSION}")
        if h.ring_id != c.ring_id or h.generation != n:
            return None                              # another instance of the ring
        if h.slot_count > EF_MAX_SLOTS or h.total_bytes != <uint64_t>size \
                or ef_payload_offset(h.slot_count) > (<_Mapping>g).length:
            raise LayoutMismatch(f"/dev/shm/{gen_name}: generation header does not match its size")
        if seq >= h.first_seq:
            return _peek_slots((<_Mapping>g).addr, h.slot_count, seq)
        n -= 1
    return None
