/* fuzz_common.h -- helpers shared by the libFuzzer targets in tests/fuzz/fz_*.c.
 *
 * Every target defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize). They
 * are built two ways: with clang -fsanitize=fuzzer,address,undefined (tests/fuzz/Makefile,
 * the fuzzing engine), and with the project's own compiler plus replay_main.c, which feeds
 * files to the same function (tests/py/test_fuzz_regressions.py replays the regressions and
 * the seeds that way, so a fixed bug stays fixed without clang).
 *
 * A failed property check calls FZ_CHECK's abort(): libFuzzer records that as a crash with
 * the input that caused it, exactly like an ASan report. */
#ifndef QKV_FUZZ_COMMON_H
#define QKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qkv.h"

#define FZ_CHECK(cond, ...)                                                              \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz property failed at %s:%d: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* With $QKV_FUZZ_VERBOSE set (the replay test sets it), each input prints whether the code
 * under test accepted it, so the test can check that the valid seeds really are accepted
 * (a target that only ever sees errors would test little). why: the refusal message. */
static inline void fz_note(int accepted, const char *why) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("QKV_FUZZ_VERBOSE") != NULL;
    if (!verbose) return;
    if (accepted) printf("accepted\n");
    else printf("rejected: %.200s\n", why ? why : "");
}

/* A file backed by memory (memfd), rewritten for every input: the loaders take paths, and
 * /proc/self/fd/N is one without touching the disk. */
typedef struct fz_memfile {
    int fd;
    char path[64];
} fz_memfile;

static inline void fz_memfile_open(fz_memfile *f, const char *name) {
    f->fd = memfd_create(name, 0);
    if (f->fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

static inline void fz_memfile_set(fz_memfile *f, const void *data, size_t len) {
    if (ftruncate(f->fd, 0) != 0) abort();
    const uint8_t *p = (const uint8_t *)data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = pwrite(f->fd, p + off, len - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
}

/* A private folder under /dev/shm (tmpfs), or /tmp, for loaders that take a folder. */
static inline const char *fz_tmpdir(void) {
    static char dir[128];
    if (dir[0]) return dir;
    const char *bases[] = {"/dev/shm", "/tmp"};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/qkv-fuzz-XXXXXX", bases[i]);
        if (mkdtemp(dir)) return dir;
    }
    perror("mkdtemp");
    abort();
}

static inline void fz_write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (len && fwrite(data, 1, len, f) != len) abort();
    fclose(f);
}

/* Splits data at its first NUL byte: [0, *n1) and [*n1 + 1, size). No NUL: all in part 1. */
static inline void fz_split_nul(const uint8_t *data, size_t size, size_t *n1,
                                const uint8_t **p2, size_t *n2) {
    const uint8_t *z = (const uint8_t *)memchr(data, 0, size);
    if (!z) {
        *n1 = size;
        *p2 = data + size;
        *n2 = 0;
        return;
    }
    *n1 = (size_t)(z - data);
    *p2 = z + 1;
    *n2 = size - *n1 - 1;
}

/* Reads every byte of a buffer so ASan checks its bounds (the result is used so the
 * compiler keeps the loop). */
static inline unsigned fz_touch(const void *p, size_t n) {
    const volatile uint8_t *b = (const volatile uint8_t *)p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += b[i];
    return s;
}

#endif /* QKV_FUZZ_COMMON_H */
