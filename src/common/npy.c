/*
 * npy.c -- NumPy .npy float32 arrays, the CLI's exchange format.
 *
 * Format: "\x93NUMPY", major, minor, header length (u16 for v1, u32 for v2/v3), then a
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces to a multiple of 64 bytes, then the raw data. Only what we write is
 * accepted: little-endian float32 in C order. Everything is bounds-checked.
 */
#include "qkv_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_HEADER (1u << 20)
#define NPY_MAX_BYTES ((size_t)1 << 36) /* 64 GiB: a sanity limit, not a target */

/* ---- header dict ------------------------------------------------------------------------
 * The header is a Python dict literal with exactly the keys 'descr', 'fortran_order' and
 * 'shape', each once, in any order, then whitespace padding. It is parsed token by token, not
 * searched: "'<f4x'", a key inside a string, a duplicate or an unknown key are all refused
 * (issue 14: a substring search accepted "'descr': '<f4x'" and took the first of two keys). */

typedef struct npy_cursor {
    const char *p;
    const char *path;
} npy_cursor;

static void npy_ws(npy_cursor *c) {
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r') c->p++;
}

static qkv_status npy_malformed(const npy_cursor *c, const char *what) {
    char near[24] = {0};
    for (int i = 0; i < 20 && c->p[i]; i++)
        near[i] = (c->p[i] >= 0x20 && c->p[i] < 0x7f) ? c->p[i] : '?';
    return qkv__fail(QKV_EFORMAT, "%s: malformed .npy header: %s at \"%s\"", c->path, what, near);
}

/* A quoted string ('...' or "...", no escapes: none of the valid keys or values have any)
 * into buf; too long for buf is refused (buf then holds an excerpt, for the message). */
static qkv_status npy_string(npy_cursor *c, char *buf, size_t cap) {
    char q = *c->p;
    if (q != '\'' && q != '"') return npy_malformed(c, "expected a quoted string");
    const char *s = c->p + 1, *e = strchr(s, q);
    if (!e || (size_t)(e - s) >= cap || memchr(s, '\\', (size_t)(e - s))) {
        size_t n = strcspn(s, "\n");
        snprintf(buf, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), s); /* an excerpt */
        return npy_malformed(c, e ? "string too long or with an escape" : "unterminated string");
    }
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    c->p = e + 1;
    return QKV_OK;
}

/* A shape tuple: "()", "(3,)", "(2, 3)" or "(2, 3,)"; "(3)" is an int, not a tuple. */
static qkv_status npy_shape(npy_cursor *c, qkv__npy *arr) {
    if (*c->p != '(') return npy_malformed(c, "'shape' is not a tuple");
    c->p++;
    arr->ndim = 0;
    size_t count = 1;
    int comma_after_last = 1;
    for (;;) {
        npy_ws(c);
        if (*c->p == ')') break;
        if (!isdigit((unsigned char)*c->p)) return npy_malformed(c, "expected a dimension");
        if (arr->ndim == QKV__NPY_MAX_DIMS)
            return qkv__fail(QKV_EFORMAT, "%s: more than %d dimensions", c->path, QKV__NPY_MAX_DIMS);
        if (c->p[0] == '0' && isdigit((unsigned char)c->p[1]))
            return qkv__fail(QKV_EFORMAT, "%s: leading zero in a .npy shape", c->path);
        int64_t dim = 0;
        while (isdigit((unsigned char)*c->p)) {
            dim = dim * 10 + (*c->p - '0');
            if (dim > ((int64_t)1 << 40)) return qkv__fail(QKV_EFORMAT, "%s: dimension too large", c->path);
            c->p++;
        }
        arr->shape[arr->ndim++] = dim;
        if (!qkv__mul_size(count, (size_t)dim, &count) || count > NPY_MAX_BYTES / 4)
            return qkv__fail(QKV_EFORMAT, "%s: array too large", c->path);
        npy_ws(c);
        comma_after_last = *c->p == ',';
        if (comma_after_last) c->p++;
        else if (*c->p != ')') return npy_malformed(c, "expected ',' or ')' in the shape");
    }
    if (arr->ndim == 1 && !comma_after_last) return npy_malformed(c, "'shape' (n) is not a tuple; write (n,)");
    c->p++;
    arr->count = count;
    return QKV_OK;
}

static qkv_status npy_parse_header(const char *path, const char *hdr, qkv__npy *arr) {
    npy_cursor c = {hdr, path};
    enum { DESCR = 1, FORTRAN = 2, SHAPE = 4 };
    int seen = 0;
    qkv_status st;
    npy_ws(&c);
    if (*c.p != '{') return npy_malformed(&c, "expected '{'");
    c.p++;
    for (;;) {
        npy_ws(&c);
        if (*c.p == '}') break;
        char key[32] = "", val[32] = "";
        const char *at = c.p;
        if (npy_string(&c, key, sizeof key)) {
            c.p = at;
            return npy_malformed(&c, "expected a key");
        }
        int which = !strcmp(key, "descr") ? DESCR : !strcmp(key, "fortran_order") ? FORTRAN
                  : !strcmp(key, "shape") ? SHAPE : 0;
        if (!which)
            return qkv__fail(QKV_EFORMAT, "%s: unknown key '%s' in .npy header (expected 'descr', "
                                          "'fortran_order', 'shape')", path, key);
        if (seen & which) return qkv__fail(QKV_EFORMAT, "%s: key '%s' appears twice in .npy header", path, key);
        seen |= which;
        npy_ws(&c);
        if (*c.p != ':') return npy_malformed(&c, "expected ':'");
        c.p++;
        npy_ws(&c);
        if (which == DESCR) {
            at = c.p;
            st = npy_string(&c, val, sizeof val);
            if (st && *at != '\'' && *at != '"') return st; /* not a string at all */
            /* '<f4' is what NumPy writes for float32 on every platform we run on; 'float32'
             * is a name NumPy also reads. Exact matches only. */
            if (st || (strcmp(val, "<f4") != 0 && strcmp(val, "float32") != 0))
                return qkv__fail(QKV_EFORMAT, "%s: dtype '%s', expected float32 ('<f4')", path, val);
        } else if (which == FORTRAN) {
            if (!strncmp(c.p, "False", 5) && !isalnum((unsigned char)c.p[5]) && c.p[5] != '_') {
                c.p += 5;
            } else if (!strncmp(c.p, "True", 4) && !isalnum((unsigned char)c.p[4]) && c.p[4] != '_') {
                return qkv__fail(QKV_EFORMAT, "%s: Fortran-ordered arrays are not supported", path);
            } else {
                return npy_malformed(&c, "'fortran_order' must be False or True");
            }
        } else if ((st = npy_shape(&c, arr))) {
            return st;
        }
        npy_ws(&c);
        if (*c.p == ',') c.p++;
        else if (*c.p != '}') return npy_malformed(&c, "expected ',' or '}'");
    }
    c.p++;
    npy_ws(&c);
    if (*c.p) return npy_malformed(&c, "text after the header dict");
    if (!(seen & DESCR)) return qkv__fail(QKV_EFORMAT, "%s: .npy header has no 'descr'", path);
    if (!(seen & FORTRAN)) return qkv__fail(QKV_EFORMAT, "%s: .npy header has no 'fortran_order'", path);
    if (!(seen & SHAPE)) return qkv__fail(QKV_EFORMAT, "%s: .npy header has no shape", path);
    return QKV_OK;
}

/* Opens PATH, reads and checks its header, and checks the file holds exactly the data the
 * shape needs (by its size: nothing past the header is read). On success *fp is positioned
 * at the data and arr has ndim, shape and count (data NULL). */
static qkv_status npy_open(const char *path, qkv__npy *arr, FILE **fp) {
    memset(arr, 0, sizeof *arr);
    *fp = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qkv__fail(QKV_EIO, "%s: cannot open", path);
    unsigned char pre[12];
    qkv_status st = QKV_OK;
    char *hdr = NULL;
    size_t got = fread(pre, 1, 10, f);
    if (got != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    uint32_t hlen;
    if (pre[6] == 1) {
        hlen = (uint32_t)pre[8] | ((uint32_t)pre[9] << 8);
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            st = qkv__fail(QKV_EFORMAT, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = (uint32_t)pre[8] | ((uint32_t)pre[9] << 8) | ((uint32_t)pre[10] << 16) |
               ((uint32_t)pre[11] << 24);
    } else {
        st = qkv__fail(QKV_EFORMAT, "%s: unsupported .npy version %d", path, pre[6]);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER) {
        st = qkv__fail(QKV_EFORMAT, "%s: .npy header of %u bytes is too long", path, hlen);
        goto done;
    }
    hdr = malloc((size_t)hlen + 1);
    if (!hdr) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        st = qkv__fail(QKV_EFORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    hdr[hlen] = '\0';
    if (memchr(hdr, '\0', hlen)) {
        st = qkv__fail(QKV_EFORMAT, "%s: NUL byte in .npy header", path);
        goto done;
    }
    st = npy_parse_header(path, hdr, arr);
    if (st) goto done;
    /* The header's shape must match the bytes that follow it, checked before allocating:
     * a 128-byte file must not make us reserve gigabytes. */
    {
        long here = ftell(f);
        struct stat fst;
        if (here < 0 || fstat(fileno(f), &fst) != 0) {
            st = qkv__fail(QKV_EIO, "%s: cannot stat", path);
            goto done;
        }
        uint64_t have = (uint64_t)fst.st_size - (uint64_t)here;
        if ((uint64_t)fst.st_size < (uint64_t)here || have != (uint64_t)arr->count * sizeof(float)) {
            st = qkv__fail(QKV_EFORMAT, "%s: data is %s than the shape in its header (%llu bytes, shape needs %llu)",
                           path, have < (uint64_t)arr->count * sizeof(float) ? "shorter" : "longer",
                           (unsigned long long)have,
                           (unsigned long long)arr->count * sizeof(float));
            goto done;
        }
    }
done:
    free(hdr);
    if (st) {
        fclose(f);
        memset(arr, 0, sizeof *arr);
    } else {
        *fp = f;
    }
    return st;
}

/* Reads arr->count floats from f (positioned at the data) and checks nothing follows. Into
 * fresh memory on huge pages, by read(2): a private mapping of the file (no copy) took as long
 * in `qkv attention` at N = 4096 on this VM, its pages faulting again when first read, and it
 * would die of SIGBUS if the file were truncated meanwhile. */
static qkv_status npy_read_data(const char *path, FILE *f, qkv__npy *arr) {
    size_t bytes = arr->count * sizeof(float);
    arr->data = qkv__alloc_huge(bytes ? bytes : sizeof(float));
    if (!arr->data) return qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu floats", path, arr->count);
    if (arr->count && fread(arr->data, sizeof(float), arr->count, f) != arr->count)
        return qkv__fail(QKV_EFORMAT, "%s: data is shorter than the shape in its header", path);
    if (fgetc(f) != EOF)
        return qkv__fail(QKV_EFORMAT, "%s: data is longer than the shape in its header", path);
    return QKV_OK;
}

qkv_status qkv__npy_header(const char *path, qkv__npy *arr) {
    FILE *f;
    qkv_status st = npy_open(path, arr, &f);
    if (!st) fclose(f);
    return st;
}

qkv_status qkv__npy_read(const char *path, qkv__npy *arr) {
    qkv__npy now;
    FILE *f;
    qkv_status st = npy_open(path, &now, &f);
    if (st) return st;
    /* the file may have been replaced since its header was checked: the shape must not move */
    if (now.ndim != arr->ndim || memcmp(now.shape, arr->shape, sizeof(int64_t) * (size_t)arr->ndim) != 0) {
        fclose(f);
        return qkv__fail(QKV_EFORMAT, "%s: its shape changed while it was being read", path);
    }
    qkv__npy_free(arr);
    st = npy_read_data(path, f, arr);
    fclose(f);
    if (st) qkv__npy_free(arr);
    return st;
}

qkv_status qkv__npy_load(const char *path, qkv__npy *arr) {
    FILE *f;
    qkv_status st = npy_open(path, arr, &f);
    if (st) return st;
    st = npy_read_data(path, f, arr);
    fclose(f);
    if (st) qkv__npy_free(arr);
    return st;
}

qkv_status qkv__npy_save(const char *path, const float *data, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > QKV__NPY_MAX_DIMS) return qkv__fail(QKV_EINVAL, "bad ndim %d", ndim);
    if (!strcmp(path, "-") && isatty(STDOUT_FILENO))
        return qkv__fail(QKV_EINVAL, "not writing a binary .npy array to a terminal: redirect "
                                     "standard output ('-') to a file or a pipe");
    char dict[512];
    int at = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        at += snprintf(dict + at, sizeof dict - (size_t)at, "%lld,%s", (long long)shape[i],
                       (i + 1 < ndim) ? " " : "");
        if (!qkv__mul_size(count, (size_t)shape[i], &count))
            return qkv__fail(QKV_EINVAL, "array too large");
    }
    at += snprintf(dict + at, sizeof dict - (size_t)at, "), }");
    /* magic(6) + version(2) + len(2) + dict + padding + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)at + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)at + pad + 1;
    size_t bytes;
    if (!qkv__mul_size(count, sizeof(float), &bytes)) return qkv__fail(QKV_EINVAL, "too large");
    /* the header is at most 10 + 512 + 64 bytes; the data goes out from where it lies */
    unsigned char head[10 + sizeof dict + 64];
    if (10 + hlen > sizeof head) return qkv__fail(QKV_EINVAL, "%s: .npy header too long", path);
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)at);
    memset(head + 10 + at, ' ', pad);
    head[10 + hlen - 1] = '\n';
    qkv_status st = qkv__write_file2(path, head, 10 + hlen, data, bytes);
    return st;
}

void qkv__npy_free(qkv__npy *arr) {
    if (!arr) return;
    qkv__free_aligned(arr->data);
    arr->data = NULL;
}
