# C types for the slop matcher. The code is matcher_py.py, compiled unchanged as edgeflow._fast.matcher_c
# (setup.py copies it to matcher_c.py beside this file, since Cython pairs a .py with the .pxd of its name).
# This file only declares: typed attributes, typed locals, and which helpers are C functions. Keep the two in
# step: every attribute set in matcher_py.py must be declared here, with the type the code relies on.
#
# Integer arrays are memoryviews of array("q") (C long long), so the same indexing works in both modes.
# Stamps are long long nanoseconds within ±2**62 (see matcher_py.py), so no sum or difference overflows.

cimport cython
from libc.math cimport llrint

cdef bint COMPILED

cdef Py_ssize_t REPLACED
cdef Py_ssize_t QUEUE_FULL
cdef Py_ssize_t SUPERSEDED
cdef Py_ssize_t TOO_OLD
cdef Py_ssize_t NO_PARTNER
cdef Py_ssize_t OUT_OF_ORDER
cdef Py_ssize_t CLEARED

cdef long long _LIMIT_NS
cdef double _LIMIT_NS_FLOAT
cdef long long _NO_STAMP
cdef long long _NO_LIMIT


@cython.locals(scaled=double)
cdef long long _timestamp_ns(object timestamp) except? -1

cdef long long _stamp_ns(object stamp_ns) except? -1


cdef class MatcherBase:
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef object _on_drop
    cdef list _pending
    cdef list _out
    cdef long long _pushes
    cdef long long _sets
    cdef long long[::1] _drops

    cpdef list push(self, object stream, object timestamp, object item)
    cpdef list push_ns(self, object stream, object stamp_ns, object item)
    cpdef clear(self)
    cpdef tuple queue_sizes(self)
    cpdef tuple counters(self)

    @cython.locals(s=Py_ssize_t)
    cdef Py_ssize_t _stream_index(self, object stream) except -1
    @cython.locals(out=list)
    cdef list _run(self, Py_ssize_t s, long long t, object item)
    cdef void _emit(self, tuple items) except *
    cdef void _drop(self, Py_ssize_t s, long long t, object item, Py_ssize_t reason) except *
    @cython.locals(pending=list)
    cdef void _flush_drops(self) except *
    cdef void _add(self, Py_ssize_t s, long long t, object item) except *
    cdef Py_ssize_t _held(self, Py_ssize_t s) except -1
    cdef void _discard_all(self) except *


cdef class ApproximateMatcher(MatcherBase):
    cdef long long _slop
    cdef Py_ssize_t _w
    cdef long long[::1] _len
    cdef long long[::1] _stamps
    cdef list _items
    cdef long long[::1] _cand
    cdef long long[::1] _dist
    cdef long long[::1] _ncand
    cdef long long[::1] _pick
    cdef long long[::1] _lo
    cdef long long[::1] _hi

    @cython.locals(pos=Py_ssize_t)
    cdef void _add(self, Py_ssize_t s, long long t, object item) except *
    @cython.locals(base=Py_ssize_t, n=Py_ssize_t, j=Py_ssize_t, oldest=Py_ssize_t, stamp="long long")
    cdef Py_ssize_t _store(self, Py_ssize_t s, long long t, object item) except -2
    @cython.locals(base=Py_ssize_t, last=Py_ssize_t, k=Py_ssize_t)
    cdef object _take(self, Py_ssize_t s, Py_ssize_t j)
    @cython.locals(base=Py_ssize_t, count=Py_ssize_t, j=Py_ssize_t, k=Py_ssize_t, d="long long")
    cdef Py_ssize_t _rank(self, Py_ssize_t o, long long t) noexcept
    @cython.locals(depth=Py_ssize_t, d=Py_ssize_t, o=Py_ssize_t, k=Py_ssize_t,
                   stamp="long long", lo="long long", hi="long long")
    cdef bint _search(self, Py_ssize_t s, long long t) noexcept
    @cython.locals(items=list, o=Py_ssize_t, d=Py_ssize_t)
    cdef void _emit_found(self, Py_ssize_t s, Py_ssize_t pos) except *
    cdef Py_ssize_t _held(self, Py_ssize_t s) except -1
    @cython.locals(s=Py_ssize_t, base=Py_ssize_t, j=Py_ssize_t)
    cdef void _discard_all(self) except *


cdef class OptimalMatcher(MatcherBase):
    cdef Py_ssize_t _w
    cdef long long _max_interval
    cdef double _factor
    cdef long long[::1] _bound
    cdef long long[::1] _head
    cdef long long[::1] _len
    cdef long long[::1] _hidden
    cdef long long[::1] _stamps
    cdef list _items
    cdef long long[::1] _dropped
    cdef long long[::1] _last
    cdef long long[::1] _moves
    cdef Py_ssize_t _pivot
    cdef long long _pivot_time
    cdef long long _cand_start
    cdef long long _cand_end

    @cython.locals(slot=Py_ssize_t)
    cdef void _add(self, Py_ssize_t s, long long t, object item) except *
    @cython.locals(o=Py_ssize_t)
    cdef void _overflow(self, Py_ssize_t s) except *
    cdef Py_ssize_t _slot(self, Py_ssize_t s, Py_ssize_t k) noexcept
    cdef long long _front(self, Py_ssize_t s) noexcept
    @cython.locals(o=Py_ssize_t)
    cdef bint _all_fronts(self) noexcept
    @cython.locals(slot=Py_ssize_t)
    cdef void _drop_head(self, Py_ssize_t s, Py_ssize_t reason) except *
    cdef bint _not_better(self, long long start, long long end) noexcept
    @cython.locals(start=Py_ssize_t, end=Py_ssize_t, o=Py_ssize_t, start_t="long long", end_t="long long")
    cdef void _process(self) except *
    cdef bint _open_candidate(self, Py_ssize_t start, Py_ssize_t end, long long start_t,
                              long long end_t) except -1
    @cython.locals(o=Py_ssize_t)
    cdef void _make_candidate(self, long long start_t, long long end_t) except *
    cdef void _conclude(self, Py_ssize_t start, long long end_t) except *
    @cython.locals(items=list, o=Py_ssize_t, slot=Py_ssize_t)
    cdef void _publish(self) except *
    @cython.locals(bound="long long")
    cdef long long _virtual_time(self, Py_ssize_t o) noexcept
    @cython.locals(o=Py_ssize_t, start=Py_ssize_t, start_t="long long", end_t="long long", vt="long long")
    cdef void _virtual_search(self) except *
    cdef Py_ssize_t _held(self, Py_ssize_t s) except -1
    @cython.locals(s=Py_ssize_t)
    cdef void _discard_all(self) except *


cdef class ExactMatcher(MatcherBase):
    cdef Py_ssize_t _rows
    cdef long long[::1] _row_stamp
    cdef long long[::1] _row_fill
    cdef long long[::1] _present
    cdef list _items

    @cython.locals(r=Py_ssize_t, k=Py_ssize_t)
    cdef void _add(self, Py_ssize_t s, long long t, object item) except *
    @cython.locals(r=Py_ssize_t)
    cdef Py_ssize_t _find_row(self, long long t) noexcept
    @cython.locals(oldest=Py_ssize_t, r=Py_ssize_t)
    cdef Py_ssize_t _oldest_row(self) noexcept
    @cython.locals(base=Py_ssize_t)
    cdef void _emit_row(self, Py_ssize_t r) except *
    @cython.locals(r=Py_ssize_t)
    cdef void _drop_rows_until(self, long long t) except *
    @cython.locals(base=Py_ssize_t, s=Py_ssize_t)
    cdef void _drop_row(self, Py_ssize_t r, Py_ssize_t reason) except *
    @cython.locals(last=Py_ssize_t, base=Py_ssize_t, lbase=Py_ssize_t, s=Py_ssize_t)
    cdef void _remove_row(self, Py_ssize_t r) except *
    @cython.locals(count=Py_ssize_t, r=Py_ssize_t)
    cdef Py_ssize_t _held(self, Py_ssize_t s) except -1
    cdef void _discard_all(self) except *


cdef class LatestMatcher(MatcherBase):
    cdef long long _slop
    cdef Py_ssize_t _pivot
    cdef long long _last_pivot
    cdef Py_ssize_t _w
    cdef long long[::1] _len
    cdef long long[::1] _stamps
    cdef list _items
    cdef long long[::1] _used
    cdef long long[::1] _pick

    cdef void _add(self, Py_ssize_t s, long long t, object item) except *
    @cython.locals(base=Py_ssize_t, j=Py_ssize_t, k=Py_ssize_t)
    cdef void _insert(self, Py_ssize_t s, long long t, object item) except *
    @cython.locals(o=Py_ssize_t, items=list, base=Py_ssize_t)
    cdef void _add_pivot(self, long long t, object item) except *
    @cython.locals(base=Py_ssize_t, count=Py_ssize_t)
    cdef Py_ssize_t _count_until(self, Py_ssize_t o, long long limit) noexcept
    @cython.locals(base=Py_ssize_t, j=Py_ssize_t)
    cdef bint _choose(self, Py_ssize_t o, long long t) noexcept
    @cython.locals(base=Py_ssize_t, j=Py_ssize_t, n=Py_ssize_t)
    cdef void _discard_front(self, Py_ssize_t o, Py_ssize_t count, Py_ssize_t reason) except *
    cdef Py_ssize_t _held(self, Py_ssize_t s) except -1
    @cython.locals(o=Py_ssize_t)
    cdef void _discard_all(self) except *
