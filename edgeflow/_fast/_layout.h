/* Shared-memory layout of a ring. Plain data only: fixed-width integers and offsets, never pointers (each process
 * maps the segments at another address). Hot words sit on their own 64-byte cache lines.
 *
 * A ring is one control segment  <prefix>.ctl  (identity, writer, reader table, group table; fixed size)
 * plus one data segment per generation  <prefix>.g<N>  (slot descriptors, per-slot metadata, page-aligned payloads).
 * A new generation is made when a frame outgrows the slots or a new writer takes over after a crash; sequence
 * numbers and cursors are global across generations, so readers follow without losing a frame. */
#ifndef EDGEFLOW_LAYOUT_H
#define EDGEFLOW_LAYOUT_H
#include <stdint.h>

#define EF_CTL_MAGIC 0x4c54435746454445ULL     /* "EDEFWCTL" little-endian */
#define EF_GEN_MAGIC 0x4e454757464544ULL       /* "DEFWGEN" */
#define EF_LAYOUT_VERSION 2u
#define EF_MAX_READERS 64u                     /* one bit each in a slot's pin mask */
#define EF_MAX_GROUPS 64u                      /* every reader is in a group (private readers in their own) */
#define EF_MAX_SLOTS 64u
#define EF_GROUP_NAME_BYTES 48u
#define EF_REDELIVER 32u
#define EF_MAX_NDIM 8u
#define EF_PAGE 4096u
#define EF_META_AREA 12288u                    /* per slot: dtype description then JSON metadata */
#define EF_MAX_META 8192u                      /* documented JSON metadata limit */
#define EF_MAX_DTYPE 1024u
#define EF_WRITING 0xFFFFFFFFFFFFFFFFULL       /* slot seq while the writer fills it */
#define EF_EMPTY_SEQ 0ULL                      /* seqs start at 1; 0 = slot never written / no entry */

enum { EF_READER_FREE = 0, EF_READER_CLAIMED = 1, EF_READER_ACTIVE = 2 };
enum { EF_GROUP_FREE = 0, EF_GROUP_ACTIVE = 1 };
enum { EF_MODE_REALTIME = 0, EF_MODE_DURABLE = 1, EF_MODE_BALANCED = 2 };
enum { EF_GROUP_PRIVATE = 1, EF_GROUP_PERSISTENT = 2 };
enum { EF_WRITER_NONE = 0, EF_WRITER_RUNNING = 1, EF_WRITER_CLOSED = 2 };
enum { EF_KIND_BYTES = 0, EF_KIND_ARRAY = 1 };

typedef struct {                 /* 64 bytes: one cache line per reader */
    uint32_t state;
    uint32_t group;              /* index into groups[] */
    int32_t pid;
    uint32_t held;               /* slots this reader pins now (statistics) */
    uint64_t start_time;         /* /proc/<pid>/stat field 22: pid + start time identify a process */
    uint64_t taken;              /* frames this reader received (statistics) */
    uint8_t _pad[32];
} ef_reader;

typedef struct {                 /* 1024 bytes */
    char name[EF_GROUP_NAME_BYTES];   /* "" for a private (one-reader) group */
    uint32_t state;
    uint32_t mode;
    uint32_t members;            /* live attached readers */
    uint32_t flags;
    uint64_t cursor;             /* DURABLE, BALANCED: next seq to take. REALTIME: last seq taken */
    uint64_t drops;              /* REALTIME frames skipped; DURABLE frames lost to an overrun (never expected) */
    uint64_t taken;
    uint32_t redeliver_n;        /* non-empty redeliver entries (the writer skips the scan at zero) */
    uint32_t max_lag;            /* BALANCED: frames behind beyond which the group skips to the newest */
    uint8_t _pad1[32];
    uint64_t redeliver[EF_REDELIVER];  /* DURABLE: seqs a dead member took but never released; 0 = empty */
    uint64_t redeliver_loc[EF_REDELIVER];  /* (generation << 32) | slot of each: the seq index moves on */
    uint8_t _pad2[1024 - 128 - 16 * EF_REDELIVER];
} ef_group;

typedef struct {
    /* line 0: identity, written once before magic */
    uint64_t magic;
    uint32_t version;
    uint32_t ctl_bytes;
    uint32_t max_readers;
    uint32_t max_groups;
    uint64_t created_ns;
    uint64_t ring_id;            /* identifies this ring instance (a re-created ring gets another) */
    uint8_t _pad0[24];
    /* line 1: publication, written by the writer on every frame */
    uint64_t last_seq;           /* newest published seq; 0 = none yet */
    uint64_t latest_loc;         /* (generation << 32) | slot of last_seq */
    uint32_t seq_futex;          /* low 32 bits of last_seq: the word readers sleep on */
    uint32_t generation;         /* current data generation; 0 = none yet */
    uint32_t oldest_gen;         /* lowest generation not yet unlinked; 0 = none */
    uint8_t _pad1[36];
    /* line 2: readers asleep (the writer skips the wake syscall when zero) */
    uint32_t readers_waiting;
    uint8_t _pad2[60];
    /* line 3: the writer asleep on back-pressure, and the word it sleeps on */
    uint32_t writer_waiting;
    uint32_t consumed_futex;
    uint8_t _pad3[56];
    /* line 4: writer identity */
    int32_t writer_pid;
    uint32_t writer_state;
    uint64_t writer_start;
    uint64_t writer_epoch;       /* bumped by every writer that takes the ring */
    uint32_t durable_groups;     /* active DURABLE groups: the writer scans cursors only when non-zero */
    uint8_t _pad4[36];
    /* line 5: table lock (pid of the holder; stolen when the holder is dead) */
    int32_t lock_pid;
    uint32_t group_hwm;
    uint8_t _pad5[56];
    uint8_t _pad6[4096 - 6 * 64];
    ef_reader readers[EF_MAX_READERS];
    ef_group groups[EF_MAX_GROUPS];
} ef_ctl;

typedef struct {                 /* 256 bytes per slot */
    uint64_t seq;                /* EF_EMPTY_SEQ, EF_WRITING, or the published seq */
    uint64_t pin_mask;           /* bit r set while reader r holds a view of this slot */
    double timestamp;
    uint64_t nbytes;
    uint32_t kind;
    uint32_t ndim;
    uint32_t dtype_len;          /* bytes of dtype description at the start of the slot's meta area */
    uint32_t meta_len;           /* bytes of JSON metadata after it */
    int64_t shape[EF_MAX_NDIM];
    uint8_t _pad[256 - 48 - 8 * EF_MAX_NDIM];
} ef_slot;

typedef struct {                 /* first page of a data segment */
    uint64_t magic;
    uint32_t version;
    uint32_t generation;
    uint32_t slot_count;
    uint32_t meta_area;
    uint64_t slot_bytes;         /* payload capacity of each slot (a page multiple) */
    uint64_t total_bytes;
    uint64_t first_seq;          /* first seq published in this generation */
    uint64_t sealed_last;        /* last seq of a sealed generation; EF_WRITING while open */
    uint64_t ring_id;            /* the control segment's ring_id: never map another ring's generation */
    uint32_t pinned_slots;       /* slots with a non-zero pin mask (approximate; caps readers' pins) */
    uint8_t _pad0[60];
    uint32_t index[EF_MAX_SLOTS];     /* slot holding seq s is index[s % slot_count] */
} ef_gen;

/* byte offsets inside a data segment */
static inline uint64_t ef_slots_offset(void) { return EF_PAGE; }
static inline uint64_t ef_meta_offset(uint32_t n) {
    return EF_PAGE + ((uint64_t)n * sizeof(ef_slot) + EF_PAGE - 1) / EF_PAGE * EF_PAGE;
}
static inline uint64_t ef_payload_offset(uint32_t n) { return ef_meta_offset(n) + (uint64_t)n * EF_META_AREA; }
static inline uint64_t ef_gen_bytes(uint32_t n, uint64_t slot_bytes) {
    return ef_payload_offset(n) + (uint64_t)n * slot_bytes;
}

_Static_assert(sizeof(ef_reader) == 64, "reader entry is one cache line");
_Static_assert(sizeof(ef_group) == 1024, "group entry size");
_Static_assert(sizeof(ef_slot) == 256, "slot descriptor size");
_Static_assert(sizeof(((ef_ctl *)0)->_pad6) > 0, "ctl header fits a page");
_Static_assert(sizeof(ef_gen) <= EF_PAGE, "generation header fits a page");
#endif
