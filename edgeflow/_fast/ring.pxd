# The ring's compiled classes: fields and the methods other Cython modules may cimport.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from edgeflow._fast._layout cimport ef_ctl, ef_gen, ef_slot, ef_group


cdef class _Mapping:
    """One mmap of one shared-memory segment; unmapped when the last reference goes."""
    cdef char *addr
    cdef size_t length
    cdef readonly str name


cdef class _Generation:
    """A mapped data segment: header, slot descriptors, meta areas and payloads."""
    cdef _Mapping mapping
    cdef ef_gen *hdr
    cdef ef_slot *slots
    cdef char *meta
    cdef char *payload
    cdef uint32_t slot_count
    cdef uint64_t slot_bytes
    cdef readonly uint32_t number
    cdef inline ef_slot *slot(self, uint32_t i) noexcept nogil
    cdef inline char *payload_of(self, uint32_t i) noexcept nogil
    cdef inline char *meta_of(self, uint32_t i) noexcept nogil


cdef class RingWriter:
    cdef _Mapping ctl_map
    cdef ef_ctl *ctl
    cdef _Generation cur
    cdef list old_gens
    cdef readonly str name
    cdef readonly uint32_t slots
    cdef uint64_t min_slot_bytes
    cdef readonly bint grow
    cdef public double backpressure_timeout
    cdef double next_housekeeping
    cdef int loan_slot
    cdef bint closed
    cdef bint cancelled
    cdef readonly uint64_t backpressure_waits
    cdef readonly uint64_t generations_made
    cdef int _choose_slot(self, uint64_t protect) except -2
    cdef uint64_t _in_order_from(self) noexcept nogil
    cdef uint64_t _protected_from(self)
    cdef int _acquire_slot(self) except -1
    cdef inline void _check_open(self) except *
    cpdef uint64_t commit(self, uint32_t kind, bytes dtype, tuple shape, double timestamp, bytes meta) except 0


cdef class RingReader:
    cdef _Mapping ctl_map
    cdef ef_ctl *ctl
    cdef dict gens
    cdef readonly str name
    cdef readonly int index
    cdef uint64_t bit
    cdef uint32_t group
    cdef readonly bint durable
    cdef readonly uint32_t mode
    cdef readonly uint32_t max_lag
    cdef readonly str group_name
    cdef readonly int max_held
    cdef readonly int held
    cdef readonly uint64_t taken
    cdef readonly uint64_t drops
    cdef readonly uint64_t copies
    cdef bint closed
    cdef double next_liveness_check
    cdef public double spin_s
    cdef bint _spin(self, double until) noexcept nogil
    cdef _Generation _gen(self, uint32_t number)
    cdef _Generation _gen_for_seq(self, uint64_t seq)
    cdef inline void _check_open(self) except *
    cdef int _pin(self, _Generation gm, uint32_t idx) except -1
    cdef void _unpin(self, _Generation gm, uint32_t idx) noexcept nogil
    cdef void _notify_writer(self) noexcept nogil
    cdef object _view(self, _Generation gm, uint32_t idx, uint64_t seq, bint pinned)
    cdef object _take_realtime(self)
    cdef object _take_durable(self)
    cdef object _take_balanced(self)
    cdef void _skip_to(self, ef_group *g, uint64_t cur, uint64_t newest) noexcept
    cdef object _take_redelivered(self, ef_group *g)
    cdef void _drop(self, object v, _Generation gm, uint32_t idx, int pinned)
    cdef object _took(self, ef_group *g, object v)
    cdef void _overrun(self, ef_group *g, uint64_t cur) noexcept
    cdef bint _has_new(self) noexcept nogil


cdef class SlotView:
    cdef RingReader reader
    cdef _Generation gen
    cdef uint32_t idx
    cdef ef_slot desc
    cdef const char *meta_ptr
    cdef const char *data_ptr
    cdef bytes owned
    cdef bint pinned
    cdef bint release_requested
    cdef int exports
    cdef Py_ssize_t buf_len
    cdef void _unpin(self)
