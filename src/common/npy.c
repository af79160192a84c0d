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

/* Finds 'key': in the header and returns the text after the colon, or NULL. */
static const char *npy_find_key(const char *hdr, const char *key) {
    char pattern[32];
    snprintf(pattern, sizeof pattern, "'%s'", key);
    const char *p = strstr(hdr, pattern);
    if (!p) return NULL;
    p += strlen(pattern);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static qkv_status npy_parse_header(const char *path, const char *hdr, qkv__npy *arr) {
    const char *descr = npy_find_key(hdr, "descr");
    if (!descr) return qkv__fail(QKV_EFORMAT, "%s: .npy header has no 'descr'", path);
    if (strncmp(descr, "'<f4'", 5) != 0 && strncmp(descr, "'float32'", 9) != 0) {
        char got[16] = {0};
        for (int i = 0; i < 15 && descr[i] && descr[i] != ','; i++) got[i] = descr[i];
        return qkv__fail(QKV_EFORMAT, "%s: dtype %s, expected float32 ('<f4')", path, got);
    }
    const char *fortran = npy_find_key(hdr, "fortran_order");
    if (!fortran) return qkv__fail(QKV_EFORMAT, "%s: .npy header has no 'fortran_order'", path);
    if (strncmp(fortran, "False", 5) != 0)
        return qkv__fail(QKV_EFORMAT, "%s: Fortran-ordered arrays are not supported", path);
    const char *shape = npy_find_key(hdr, "shape");
    if (!shape || *shape != '(') return qkv__fail(QKV_EFORMAT, "%s: .npy header has no shape", path);
    shape++;
    arr->ndim = 0;
    size_t count = 1;
    for (;;) {
        while (*shape == ' ') shape++;
        if (*shape == ')') break;
        if (!isdigit((unsigned char)*shape))
            return qkv__fail(QKV_EFORMAT, "%s: malformed shape in .npy header", path);
        if (arr->ndim == QKV__NPY_MAX_DIMS)
            return qkv__fail(QKV_EFORMAT, "%s: more than %d dimensions", path, QKV__NPY_MAX_DIMS);
        if (shape[0] == '0' && isdigit((unsigned char)shape[1]))
            return qkv__fail(QKV_EFORMAT, "%s: leading zero in a .npy shape", path);
        int64_t dim = 0;
        while (isdigit((unsigned char)*shape)) {
            dim = dim * 10 + (*shape - '0');
            if (dim > ((int64_t)1 << 40))
                return qkv__fail(QKV_EFORMAT, "%s: dimension too large", path);
            shape++;
        }
        arr->shape[arr->ndim++] = dim;
        if (!qkv__mul_size(count, (size_t)dim, &count) || count > NPY_MAX_BYTES / 4)
            return qkv__fail(QKV_EFORMAT, "%s: array too large", path);
        while (*shape == ' ') shape++;
        if (*shape == ',') shape++;
        else if (*shape != ')')
            return qkv__fail(QKV_EFORMAT, "%s: malformed shape in .npy header", path);
    }
    /* what follows the shape must close it: ")" then "," or "}" (NumPy writes "), }") */
    shape++;
    while (*shape == ' ') shape++;
    if (*shape != ',' && *shape != '}')
        return qkv__fail(QKV_EFORMAT, "%s: malformed shape in .npy header", path);
    arr->count = count;
    return QKV_OK;
}

qkv_status qkv__npy_load(const char *path, qkv__npy *arr) {
    memset(arr, 0, sizeof *arr);
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
        if (have != (uint64_t)arr->count * sizeof(float)) {
            st = qkv__fail(QKV_EFORMAT, "%s: data is %s than the shape in its header (%llu bytes, shape needs %llu)",
                           path, have < (uint64_t)arr->count * sizeof(float) ? "shorter" : "longer",
                           (unsigned long long)have,
                           (unsigned long long)arr->count * sizeof(float));
            goto done;
        }
    }
    arr->data = qkv__alloc_aligned(arr->count * sizeof(float));
    if (!arr->data) {
        st = qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu floats", path, arr->count);
        goto done;
    }
    if (arr->count && fread(arr->data, sizeof(float), arr->count, f) != arr->count) {
        st = qkv__fail(QKV_EFORMAT, "%s: data is shorter than the shape in its header", path);
        goto done;
    }
    if (fgetc(f) != EOF) {
        st = qkv__fail(QKV_EFORMAT, "%s: data is longer than the shape in its header", path);
        goto done;
    }
done:
    free(hdr);
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
    size_t file_len = 10 + hlen + bytes;
    unsigned char *buf = malloc(file_len);
    if (!buf) return qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu bytes", path, file_len);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)at);
    memset(buf + 10 + at, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    if (bytes) memcpy(buf + 10 + hlen, data, bytes);
    qkv_status st = qkv__write_file(path, buf, file_len);
    free(buf);
    return st;
}

void qkv__npy_free(qkv__npy *arr) {
    if (!arr) return;
    qkv__free_aligned(arr->data);
    arr->data = NULL;
}
