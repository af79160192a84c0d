/* jsonw.h -- a small JSON writer for the server's responses: a growing buffer, strings
 * escaped from arbitrary bytes (invalid UTF-8 becomes U+FFFD, so token pieces that are
 * partial UTF-8 still give valid JSON), floats that are never NaN/Inf (they become null).
 * Responses are written by hand rather than built as jansson trees: an [L][H][N][N]
 * attention dump is millions of numbers. */
#ifndef QKV_JSONW_H
#define QKV_JSONW_H

#include "qkv_internal.h"

#include <stddef.h>
#include <stdint.h>

/* The writer is a qkv__buf (src/common/buf.c) with a 1 TiB limit. buf, len, cap and oom are
 * its data, len, cap and failed under the names the server's code reads a finished response
 * by (oom: out of memory or past the limit; later writes are ignored). */
typedef union qkv__jw {
    qkv__buf b;
    struct {
        char *buf;
        size_t len, cap, limit;
        int oom;
    };
} qkv__jw;

void qkv__jw_init(qkv__jw *w);
void qkv__jw_free(qkv__jw *w);
/* Appends raw bytes (already JSON). */
void qkv__jw_raw(qkv__jw *w, const char *s, size_t n);
void qkv__jw_lit(qkv__jw *w, const char *s); /* raw, NUL-terminated */
/* A JSON string from n bytes of possibly invalid UTF-8. */
void qkv__jw_str(qkv__jw *w, const char *s, size_t n);
void qkv__jw_cstr(qkv__jw *w, const char *s);
/* The bytes as a hex string ("e281"). */
void qkv__jw_hex(qkv__jw *w, const char *s, size_t n);
void qkv__jw_int(qkv__jw *w, long long v);
/* A float with 7 significant digits (round-trips well within float32's precision for
 * display); NaN/Inf are written as null. */
void qkv__jw_float(qkv__jw *w, float v);
/* A flat array of n floats. */
void qkv__jw_floats(qkv__jw *w, const float *v, size_t n);
/* Nested arrays: shape [rows][cols] from a row-major buffer with row stride ld. */
void qkv__jw_matrix(qkv__jw *w, const float *v, int rows, int cols, ptrdiff_t ld);
/* Key of an object, with the separating comma when first == 0: `,"key":`. */
void qkv__jw_key(qkv__jw *w, const char *key, int first);

/* Replaces invalid UTF-8 in n bytes with U+FFFD; returns 1 if the bytes were valid. */
int qkv__jw_utf8_valid(const char *s, size_t n);

#endif /* QKV_JSONW_H */
