# The shared-memory layout of _layout.h, declared for Cython. Only extern declarations live here.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t

cdef extern from "_layout.h" nogil:
    uint64_t EF_CTL_MAGIC, EF_GEN_MAGIC, EF_WRITING, EF_EMPTY_SEQ
    uint32_t EF_LAYOUT_VERSION, EF_MAX_READERS, EF_MAX_GROUPS, EF_MAX_SLOTS, EF_GROUP_NAME_BYTES
    uint32_t EF_REDELIVER, EF_MAX_NDIM, EF_PAGE, EF_META_AREA, EF_MAX_META, EF_MAX_DTYPE
    enum: EF_READER_FREE, EF_READER_CLAIMED, EF_READER_ACTIVE
    enum: EF_GROUP_FREE, EF_GROUP_ACTIVE
    enum: EF_MODE_REALTIME, EF_MODE_DURABLE, EF_MODE_BALANCED
    enum: EF_GROUP_PRIVATE, EF_GROUP_PERSISTENT
    enum: EF_WRITER_NONE, EF_WRITER_RUNNING, EF_WRITER_CLOSED
    enum: EF_KIND_BYTES, EF_KIND_ARRAY

    ctypedef struct ef_reader:
        uint32_t state
        uint32_t group
        int32_t pid
        uint32_t held
        uint64_t start_time
        uint64_t taken

    ctypedef struct ef_group:
        char name[48]
        uint32_t state
        uint32_t mode
        uint32_t members
        uint32_t flags
        uint64_t cursor
        uint64_t drops
        uint64_t taken
        uint32_t redeliver_n
        uint32_t max_lag
        uint64_t redeliver[32]
        uint64_t redeliver_loc[32]

    ctypedef struct ef_ctl:
        uint64_t magic
        uint32_t version
        uint32_t ctl_bytes
        uint32_t max_readers
        uint32_t max_groups
        uint64_t created_ns
        uint64_t ring_id
        uint64_t last_seq
        uint64_t latest_loc
        uint32_t seq_futex
        uint32_t generation
        uint32_t oldest_gen
        uint32_t readers_waiting
        uint32_t writer_waiting
        uint32_t consumed_futex
        int32_t writer_pid
        uint32_t writer_state
        uint64_t writer_start
        uint64_t writer_epoch
        uint32_t durable_groups
        int32_t lock_pid
        uint32_t group_hwm
        ef_reader readers[64]
        ef_group groups[64]

    ctypedef struct ef_slot:
        uint64_t seq
        uint64_t pin_mask
        double timestamp
        uint64_t nbytes
        uint32_t kind
        uint32_t ndim
        uint32_t dtype_len
        uint32_t meta_len
        int64_t shape[8]

    ctypedef struct ef_gen:
        uint64_t magic
        uint32_t version
        uint32_t generation
        uint32_t slot_count
        uint32_t meta_area
        uint64_t slot_bytes
        uint64_t total_bytes
        uint64_t first_seq
        uint64_t sealed_last
        uint64_t ring_id
        uint32_t pinned_slots
        uint32_t index[64]

    uint64_t ef_slots_offset()
    uint64_t ef_meta_offset(uint32_t n)
    uint64_t ef_payload_offset(uint32_t n)
    uint64_t ef_gen_bytes(uint32_t n, uint64_t slot_bytes)
