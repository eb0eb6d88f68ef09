# Extern declarations of the POSIX / Linux calls the ring uses. Nothing but `cdef extern` here.
from libc.stdint cimport uint32_t
from posix.types cimport off_t, mode_t

cdef extern from "<sys/mman.h>" nogil:
    int shm_open(const char *name, int oflag, mode_t mode)
    int shm_unlink(const char *name)
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
    int munmap(void *addr, size_t length)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_POPULATE

cdef extern from "<fcntl.h>" nogil:
    int O_RDWR, O_CREAT, O_EXCL
    int posix_fallocate(int fd, off_t offset, off_t len)

cdef extern from "<unistd.h>" nogil:
    int ftruncate(int fd, off_t length)
    int close(int fd)
    long syscall(long number, ...)
    int getpid()

cdef extern from "<sys/stat.h>" nogil:
    cdef struct stat:
        off_t st_size
        unsigned long st_ino
        unsigned long st_dev
    int fstat(int fd, stat *buf)

cdef extern from "<time.h>" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC, CLOCK_REALTIME

cdef extern from "<sys/syscall.h>" nogil:
    long SYS_futex

cdef extern from "<linux/futex.h>" nogil:
    int FUTEX_WAIT, FUTEX_WAKE

cdef extern from "<errno.h>" nogil:
    int errno
    int EEXIST, ENOENT, EINTR, EAGAIN, ETIMEDOUT

cdef extern from "<string.h>" nogil:
    void *memcpy(void *dst, const void *src, size_t n)
    void *memset(void *dst, int c, size_t n)
    char *strerror(int errnum)
