/*
 * qkv_internal.h -- private declarations shared by every part of libqkv.
 * Internal symbols carry the qkv__ prefix (two underscores); nothing here is API.
 */
#ifndef QKV_INTERNAL_H
#define QKV_INTERNAL_H

#include "qkv.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define QKV__PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define QKV__LIKELY(x) __builtin_expect(!!(x), 1)
#define QKV__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define QKV__PRINTF(fmt_idx, arg_idx)
#define QKV__LIKELY(x) (x)
#define QKV__UNLIKELY(x) (x)
#endif

/* Records a detailed message for qkv_last_error() and returns status, so that failure
 * paths read: return qkv__fail(QKV_ESHAPE, "q has %d heads, k has %d", a, b); */
qkv_status qkv__fail(qkv_status status, const char *fmt, ...) QKV__PRINTF(2, 3);
void qkv__clear_error(void);

/* Bugs only (never bad input): prints file:line and aborts. */
#define QKV_ASSERT(x)                                                   \
    do {                                                                \
        if (QKV__UNLIKELY(!(x))) qkv__assert_fail(#x, __FILE__, __LINE__); \
    } while (0)
void qkv__assert_fail(const char *expr, const char *file, int line);

/* 64-byte aligned allocation (cache line, AVX-512 vector); free with qkv__free_aligned.
 * Returns NULL on overflow or exhaustion. */
void *qkv__alloc_aligned(size_t n_bytes);
/* The same for big buffers that are written whole: huge pages where the kernel allows them
 * (fewer page faults); freed with qkv__free_aligned. */
void *qkv__alloc_huge(size_t n_bytes);
/* qkv__alloc_aligned for a buffer written whole at once: large ones come with their pages
 * present (no first-touch faults); free with qkv__free_aligned. */
void *qkv__alloc_whole(size_t n_bytes);
/* qkv_kvcache_create with every page of the cache faulted in now, up to 256 MB (kvcache.c):
 * for a generation that will write the positions it asked for. */
qkv_status qkv__kvcache_create_whole(int n_layer, int n_head_kv, int head_dim, int max_len,
                                     qkv_kvcache **out);
void qkv__free_aligned(void *p);

/* Overflow-checked size arithmetic: returns 0 and leaves *out alone on overflow. */
int qkv__mul_size(size_t a, size_t b, size_t *out);
int qkv__add_size(size_t a, size_t b, size_t *out);

/* Reads a whole file (at most max_bytes) into a malloc'ed, NUL-terminated buffer. */
qkv_status qkv__read_file(const char *path, size_t max_bytes, char **data, size_t *len);
/* Reads what is left of a stream (standard input) until its end into a malloc'ed,
 * NUL-terminated buffer: QKV_ETOOLONG past max_bytes (0: no limit), QKV_ENOMEM, QKV_EIO on
 * a read error, each message starting with what ("stdin"). */
qkv_status qkv__read_stream(FILE *f, size_t max_bytes, const char *what, char **data, size_t *len);
/* Writes a whole file atomically (temp file + rename) when path is new or a regular file;
 * refuses anything else already there (symbolic link, directory, FIFO, device, socket),
 * naming the path and what it is, and changes nothing. "-" is standard output. A failed
 * write (ENOSPC, ...) returns QKV_EIO and leaves no temporary file. */
qkv_status qkv__write_file(const char *path, const void *data, size_t len);
/* The same with the content in two parts (a header, then data written from where it lies). */
qkv_status qkv__write_file2(const char *path, const void *head, size_t head_len, const void *data, size_t len);

/* Read-only memory map of a whole file. */
typedef struct qkv__mmap {
    const uint8_t *data;
    size_t size;
} qkv__mmap;
qkv_status qkv__mmap_open(const char *path, qkv__mmap *m);
void qkv__mmap_close(qkv__mmap *m);

/* Path join into a malloc'ed string ("dir/name"). NULL on exhaustion. */
char *qkv__path_join(const char *dir, const char *name);

/* Monotonic seconds. */
double qkv__now(void);

/* Thread count resolved (qkv_set_threads, $QKV_THREADS, else all cores). */
int qkv__threads(void);

/* ---- thread pool (pool.c) --------------------------------------------------------------- *
 * fn(arg, lo, hi) over [0, n) in chunks of `grain` units, on up to n_threads threads (the
 * caller is one): chunks are claimed dynamically and the caller waits only for claimed ones, so
 * a descheduled thread does not stall the loop. Every unit runs exactly once; which thread runs
 * it is not fixed, so fn must not depend on that. Inline when n_threads <= 1, n <= grain, inside
 * an OpenMP team, or while another caller's job runs. */
typedef void (*qkv__range_fn)(void *arg, int lo, int hi);
void qkv__pool_for(int n, int grain, int n_threads, qkv__range_fn fn, void *arg);
/* 1: OpenMP's static split instead of the pool (as QKV_POOL=omp), for the benchmark's
 * before/after; 0: the pool. Not while a loop runs. */
void qkv__pool_set_omp(int on);

/* ---- growable byte buffer (buf.c) ------------------------------------------------------ *
 * Zero-initialise ({0}, or {.limit = n}); data stays NUL-terminated once allocated. An append
 * that cannot be done (out of memory, past limit, size overflow) sets failed and returns 0,
 * and every later append is ignored: write straight through, check failed (or the result of
 * qkv__buf_detach / qkv__buf_finish) once at the end. */
typedef struct qkv__buf {
    char *data;   /* len bytes + NUL; NULL until the first append */
    size_t len, cap;
    size_t limit; /* the most bytes it may hold; 0 = no limit */
    int failed;   /* 0, or why appends stopped: QKV_ENOMEM, QKV_ETOOLONG (limit, overflow) */
} qkv__buf;

/* Room for extra more bytes (and the NUL) at data + len, growing geometrically; 1 if there
 * is, else 0 with failed set. For writers that fill data + len themselves, then add to len. */
int qkv__buf_reserve(qkv__buf *b, size_t extra);
/* Appends; 1 while the buffer holds everything appended, 0 once failed. s may point into b's
 * own bytes. A zero-length append changes nothing (and allocates nothing). */
int qkv__buf_put(qkv__buf *b, const void *s, size_t n);
int qkv__buf_puts(qkv__buf *b, const char *s);
int qkv__buf_putc(qkv__buf *b, char c);
/* Appends formatted text of any length (its arguments must not point into b's bytes). */
int qkv__buf_printf(qkv__buf *b, const char *fmt, ...) QKV__PRINTF(2, 3);
/* Hands the NUL-terminated bytes to the caller (malloc'ed; "" when nothing was appended) and
 * *len (may be NULL) their count, leaving b empty (limit kept); NULL when b failed, its bytes
 * freed. qkv__buf_finish does the same and, when b failed, records why: QKV_ENOMEM ("what: out
 * of memory building the output"), or QKV_ETOOLONG past the limit. */
char *qkv__buf_detach(qkv__buf *b, size_t *len);
qkv_status qkv__buf_finish(qkv__buf *b, char **out, size_t *len, const char *what);
void qkv__buf_free(qkv__buf *b);

/* ---- .npy (NumPy) float32 arrays: the CLI's exchange format ---------------------------- */

#define QKV__NPY_MAX_DIMS 8
typedef struct qkv__npy {
    int ndim;
    int64_t shape[QKV__NPY_MAX_DIMS];
    size_t count; /* product of shape */
    float *data;  /* little-endian float32, C order (qkv__alloc_huge) */
} qkv__npy;

/* Loads a float32 (<f4), C-ordered .npy file; anything else is refused with a message. */
qkv_status qkv__npy_load(const char *path, qkv__npy *arr);
/* The same in two steps, so callers can check several files' shapes against each other
 * before reading any data: _header reads and checks only the header (and that the file size
 * fits the shape), leaving data NULL; _read then loads the data of an arr from _header
 * (refused if the file's shape has changed since). On failure arr's data is freed. */
qkv_status qkv__npy_header(const char *path, qkv__npy *arr);
qkv_status qkv__npy_read(const char *path, qkv__npy *arr);
/* Writes through qkv__write_file: "-" is standard output (refused when that is a terminal). */
qkv_status qkv__npy_save(const char *path, const float *data, int ndim, const int64_t *shape);
void qkv__npy_free(qkv__npy *arr);

/* ---- half and bfloat16 (half.c), round to nearest even, NaN kept quiet ---- */
float qkv__f16_to_f32(uint16_t h);
uint16_t qkv__f32_to_f16(float f);
static inline float qkv__bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static inline uint16_t qkv__f32_to_bf16(float f) {
    uint32_t n;
    memcpy(&n, &f, 4);
    if ((n & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((n >> 16) | 64); /* quiet NaN */
    return (uint16_t)((n + (0x7fffu + ((n >> 16) & 1))) >> 16);
}

/* ---- JSON (json.c) ---- */
/* Writes s[0..n) as a quoted JSON string at dst, which holds at least 6 n + 2 bytes; returns
 * the bytes written (no NUL). */
size_t qkv__json_escape(char *dst, const char *s, size_t n);

/* ---- UTF-8 (utf8.c) ---- */
/* Strict UTF-8: decodes one code point at s[0..n) (n >= 1) into *cp and returns its length
 * 1..4, or 0 when the bytes there are not a valid sequence (bad lead byte, truncated,
 * overlong, surrogate, above U+10FFFF). */
size_t qkv__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp (<= 0x10FFFF) into out[0..4); returns the length. */
size_t qkv__utf8_encode(uint32_t cp, uint8_t out[4]);

/* splitmix64's finaliser: a 64-bit hash (dropout masks hash (key, element) with it). */
static inline uint64_t qkv__mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* splitmix64 step: the trainer's one random number generator. */
static inline uint64_t qkv__rng_next(uint64_t *s) { return qkv__mix64(*s += 0x9E3779B97F4A7C15ULL); }

#endif /* QKV_INTERNAL_H */
