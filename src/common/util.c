/* util.c -- allocation, files, memory maps, paths, clocks and the thread setting. */
#include "qkv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

void *qkv__alloc_aligned(size_t n_bytes) {
    if (n_bytes == 0) n_bytes = 64;
    size_t rounded;
    if (!qkv__add_size(n_bytes, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    return aligned_alloc(64, rounded);
}

/* For buffers that are written whole, at once: from 1 MB their pages are made present in one
 * call (MADV_POPULATE_WRITE, Linux 5.14; refused by older kernels, which is fine). On this VM a
 * first-touch page fault costs ~12 microseconds, a populated page ~0.16: a 1024-token GPT-2
 * forward's 53 MB of activations took ~16,000 faults on every call (populated: ~0, 6% less
 * CPU time). */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void *qkv__alloc_whole(size_t n_bytes) {
    void *p = qkv__alloc_aligned(n_bytes);
    if (p && n_bytes >= ((size_t)1 << 20)) { /* the whole pages inside it */
        uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + n_bytes) & ~(uintptr_t)4095;
        if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
    }
    return p;
}

/* 2 MB aligned and asked to be backed by transparent huge pages: first touch then takes one
 * fault per 2 MB instead of one per 4 KB, which on a virtual machine was a tenth of `qkv
 * attention`'s time at N = 4096. Only for buffers written whole (a huge page is committed at
 * its first touch: a KV cache or scratch sized for the worst case would cost its full size). */
#define HUGE_PAGE ((size_t)2 << 20)

void *qkv__alloc_huge(size_t n_bytes) {
    size_t rounded;
    if (n_bytes < 4 * HUGE_PAGE || !qkv__add_size(n_bytes, HUGE_PAGE - 1, &rounded)) return qkv__alloc_aligned(n_bytes);
    rounded &= ~(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: refused is fine */
#endif
    return p;
}

void qkv__free_aligned(void *p) { free(p); }

int qkv__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int qkv__add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

qkv_status qkv__read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qkv__fail(QKV_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return qkv__fail(QKV_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return qkv__fail(QKV_ETOOLONG, "%s: %lld bytes, more than the limit of %zu", path,
                         (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu bytes", path, size + 1);
    }
    size_t got = fread(buf, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (got != size || err) {
        free(buf);
        return qkv__fail(QKV_EIO, "%s: short read", path);
    }
    buf[size] = '\0';
    *data = buf;
    *len = size;
    return QKV_OK;
}

qkv_status qkv__read_stream(FILE *f, size_t max_bytes, const char *what, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    qkv__buf b = {.limit = max_bytes};
    char chunk[16384];
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (!got || !qkv__buf_put(&b, chunk, got)) break;
    }
    if (b.failed == QKV_ETOOLONG) {
        qkv__buf_free(&b);
        return qkv__fail(QKV_ETOOLONG, "%s: more than %zu bytes", what, max_bytes);
    }
    if (!b.failed && ferror(f)) {
        int e = errno;
        qkv__buf_free(&b);
        return qkv__fail(QKV_EIO, "%s: %s", what, strerror(e));
    }
    if (!(*data = qkv__buf_detach(&b, len))) return qkv__fail(QKV_ENOMEM, "%s: out of memory", what);
    return QKV_OK;
}

/* ---- writing files --------------------------------------------------------------------- *
 *
 * Policy (every command's output goes through qkv__write_file):
 *   - a path that does not exist, or is a regular file, gets the whole content atomically:
 *     a fresh temporary file beside it (O_EXCL, never through a link), then rename(2), so a
 *     reader sees the old file or the new one, never half of one; a replaced file keeps its
 *     permission bits;
 *   - anything else already at the path (a symbolic link, a directory, a FIFO, a device, a
 *     socket) is refused with a message naming the path and what it is, and left as it was:
 *     renaming over it would replace /dev/null with a regular file, and writing through it
 *     would block on a FIFO or write where a link points;
 *   - "-" is standard output (the way to stream to a pipe or a device);
 *   - a failed write (ENOSPC, EFBIG, EIO) is an error, and the temporary file is removed. */

static const char *file_kind(mode_t m) {
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* Writes all of data to fd; 0, or -1 with errno set. */
static int write_all(int fd, const unsigned char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static qkv_status write_stdout(const void *head, size_t head_len, const void *data, size_t len) {
    /* through stdio, so the bytes stay in order with anything printed before */
    if ((head_len && fwrite(head, 1, head_len, stdout) != head_len) || (len && fwrite(data, 1, len, stdout) != len) ||
        fflush(stdout) != 0)
        return qkv__fail(QKV_EIO, "standard output: cannot write: %s", strerror(errno));
    return QKV_OK;
}

qkv_status qkv__write_file(const char *path, const void *data, size_t len) {
    return qkv__write_file2(path, NULL, 0, data, len);
}

qkv_status qkv__write_file2(const char *path, const void *head, size_t head_len, const void *data, size_t len) {
    if (!strcmp(path, "-")) return write_stdout(head, head_len, data, len);
    struct stat st;
    int exists = lstat(path, &st) == 0;
    if (!exists && errno != ENOENT) return qkv__fail(QKV_EIO, "%s: %s", path, strerror(errno));
    if (exists && !S_ISREG(st.st_mode)) /* what one streams to gets a hint */
        return qkv__fail(QKV_EIO, "%s: is %s, not a regular file; refusing to replace it%s", path,
                         file_kind(st.st_mode),
                         S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)
                             ? " (to stream, give '-' for standard output and redirect that)"
                             : "");
    size_t cap = strlen(path) + 48;
    char *tmp = malloc(cap);
    if (!tmp) return qkv__fail(QKV_ENOMEM, "out of memory");
    int fd = -1;
    for (unsigned n = 0; fd < 0 && n < 100; n++) {
        snprintf(tmp, cap, "%s.tmp%ld.%u", path, (long)getpid(), n);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        qkv_status s = qkv__fail(QKV_EIO, "%s: cannot write (creating a temporary file beside it): %s", path,
                                 strerror(errno));
        free(tmp);
        return s;
    }
    if (exists) (void)fchmod(fd, st.st_mode & 0777); /* keep the replaced file's permissions */
    int bad = write_all(fd, head, head_len) != 0 || write_all(fd, data, len) != 0;
    int err = errno;
    if (close(fd) != 0 && !bad) bad = 1, err = errno; /* NFS reports some errors only here */
    if (!bad && rename(tmp, path) != 0) bad = 1, err = errno;
    if (bad) {
        unlink(tmp);
        free(tmp);
        return qkv__fail(QKV_EIO, "%s: cannot write: %s", path, strerror(err));
    }
    free(tmp);
    return QKV_OK;
}

qkv_status qkv__mmap_open(const char *path, qkv__mmap *m) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return qkv__fail(QKV_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qkv__fail(QKV_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return qkv__fail(QKV_EFORMAT, "%s: empty file", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return qkv__fail(QKV_EIO, "%s: mmap: %s", path, strerror(errno));
    m->data = p;
    m->size = (size_t)st.st_size;
    return QKV_OK;
}

void qkv__mmap_close(qkv__mmap *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

char *qkv__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a > 0 && dir[a - 1] != '/') p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

double qkv__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int threads_setting; /* 0 = not set */

void qkv_set_threads(int n_threads) { threads_setting = n_threads > 0 ? n_threads : 0; }

int qkv_get_threads(void) { return qkv__threads(); }

int qkv__threads(void) {
    if (threads_setting > 0) return threads_setting;
    const char *env = getenv("QKV_THREADS");
    if (env) {
        int n = atoi(env);
        if (n > 0 && n <= 1024) return n;
    }
    /* the processors this process may run on, asked once: omp_get_num_procs() is a
     * sched_getaffinity system call (~1 us on this VM), and the kernels ask before every
     * parallel loop (~50 times a generated token) */
    static _Atomic int procs; /* 0: not asked yet (a race only asks twice) */
    int n = atomic_load_explicit(&procs, memory_order_relaxed);
    if (n > 0) return n;
#ifdef _OPENMP
    n = omp_get_num_procs();
#else
    long l = sysconf(_SC_NPROCESSORS_ONLN);
    n = l > 0 ? (int)l : 1;
#endif
    if (n < 1) n = 1;
    atomic_store_explicit(&procs, n, memory_order_relaxed);
    return n;
}
