/*
 * buf.c -- the one growable byte buffer (qkv__buf, declared in qkv_internal.h): the views'
 * output, the server's JSON replies and request bodies, the GGUF writer's file image, the
 * tokenizers' text and vocabulary files and the CLI's stdin all append through it.
 *
 * Appends never fail loudly: the first one that cannot be done (out of memory, past the
 * buffer's limit, a size that overflows) sets `failed` and every later one is ignored, so
 * writers read as straight-line code and check once at the end.
 */
#include "qkv_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_FIRST_CAP 256

static int buf_fail(qkv__buf *b, qkv_status why) {
    if (!b->failed) b->failed = (int)why;
    return 0;
}

int qkv__buf_reserve(qkv__buf *b, size_t extra) {
    if (b->failed) return 0;
    size_t want, need;
    if (!qkv__add_size(b->len, extra, &want) || (b->limit && want > b->limit) ||
        !qkv__add_size(want, 1, &need)) /* + the NUL */
        return buf_fail(b, QKV_ETOOLONG);
    if (need <= b->cap) return 1;
    /* double (at least BUF_FIRST_CAP), or exactly what is asked when that is more; never
     * more than the limit allows */
    size_t cap = b->cap > SIZE_MAX / 2 ? SIZE_MAX : 2 * b->cap;
    if (cap < BUF_FIRST_CAP) cap = BUF_FIRST_CAP;
    if (cap < need) cap = need;
    if (b->limit && b->limit < SIZE_MAX && cap > b->limit + 1) cap = b->limit + 1;
    char *p = realloc(b->data, cap);
    if (!p) return buf_fail(b, QKV_ENOMEM);
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 1;
}

int qkv__buf_put(qkv__buf *b, const void *s, size_t n) {
    if (!n) return !b->failed;
    /* s may point into b's own bytes, which growing can move: keep its offset */
    uintptr_t at = (uintptr_t)s, base = (uintptr_t)b->data;
    int inside = b->data && at >= base && at < base + b->len;
    if (!qkv__buf_reserve(b, n)) return 0;
    memmove(b->data + b->len, inside ? b->data + (at - base) : s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 1;
}

int qkv__buf_puts(qkv__buf *b, const char *s) { return qkv__buf_put(b, s, strlen(s)); }

int qkv__buf_putc(qkv__buf *b, char c) { return qkv__buf_put(b, &c, 1); }

int qkv__buf_printf(qkv__buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return buf_fail(b, QKV_EINVAL);
    if ((size_t)n < sizeof small) return qkv__buf_put(b, small, (size_t)n);
    if (!qkv__buf_reserve(b, (size_t)n)) return 0;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 1;
}

char *qkv__buf_detach(qkv__buf *b, size_t *len) {
    if (!b->data) qkv__buf_reserve(b, 0); /* "" is a string too */
    char *p = b->failed ? NULL : b->data;
    if (len) *len = p ? b->len : 0;
    if (!p) free(b->data);
    *b = (qkv__buf){.limit = b->limit};
    return p;
}

qkv_status qkv__buf_finish(qkv__buf *b, char **out, size_t *len, const char *what) {
    int why = b->failed;
    size_t limit = b->limit;
    *out = qkv__buf_detach(b, len);
    if (*out) return QKV_OK;
    if (why == QKV_ETOOLONG)
        return qkv__fail(QKV_ETOOLONG, "%s: the output is longer than %zu bytes", what,
                         limit ? limit : SIZE_MAX);
    return qkv__fail(QKV_ENOMEM, "%s: out of memory building the output", what);
}

void qkv__buf_free(qkv__buf *b) {
    free(b->data);
    *b = (qkv__buf){.limit = b->limit};
}
