/* jsonw.c -- the server's JSON writer (see jsonw.h). */
#include "server/jsonw.h"

#include "qkv_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qkv__jw_init(qkv__jw *w) { memset(w, 0, sizeof *w); }

void qkv__jw_free(qkv__jw *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* Makes room for n more bytes plus a NUL. */
static int jw_reserve(qkv__jw *w, size_t n) {
    if (w->oom) return 0;
    if (w->len + n + 1 <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n + 1) {
        if (cap > ((size_t)1 << 40)) {
            w->oom = 1;
            return 0;
        }
        cap *= 2;
    }
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->oom = 1;
        return 0;
    }
    w->buf = b;
    w->cap = cap;
    return 1;
}

void qkv__jw_raw(qkv__jw *w, const char *s, size_t n) {
    if (!jw_reserve(w, n)) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void qkv__jw_lit(qkv__jw *w, const char *s) { qkv__jw_raw(w, s, strlen(s)); }

int qkv__jw_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t k = qkv__utf8_decode(p + i, n - i, &cp);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

void qkv__jw_str(qkv__jw *w, const char *s, size_t n) {
    /* worst case: every byte becomes \ufffd (6 bytes) */
    if (n > ((size_t)1 << 36) || !jw_reserve(w, 6 * n + 2)) return;
    w->len += qkv__json_escape(w->buf + w->len, s, n);
    w->buf[w->len] = '\0';
}

void qkv__jw_cstr(qkv__jw *w, const char *s) { qkv__jw_str(w, s, strlen(s)); }

void qkv__jw_hex(qkv__jw *w, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (n > ((size_t)1 << 36) || !jw_reserve(w, 2 * n + 2)) return;
    char *o = w->buf + w->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        *o++ = hex[c >> 4];
        *o++ = hex[c & 15];
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
    w->buf[w->len] = '\0';
}

void qkv__jw_int(qkv__jw *w, long long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%lld", v);
    qkv__jw_raw(w, tmp, (size_t)k);
}

/* Powers of ten 1e-46 .. 1e39 (index + P10_BIAS). */
#define P10_BIAS 46
static double p10_table[86];
static void p10_init(void) {
    /* filled once; racing threads write the same values */
    if (p10_table[P10_BIAS] == 1.0) return;
    for (int i = 0; i < 86; i++) p10_table[i] = pow(10.0, i - P10_BIAS);
}

/* Writes v with 7 significant digits (what %.7g gives, trailing zeros dropped) into o (room
 * for 24 bytes); returns the length. Exact zeros (the causal mask's) stay "0"; NaN/Inf become
 * null. Done by integer arithmetic: snprintf dominated large attention dumps. */
static int fmt_float(char *o, float v) {
    if (!isfinite(v)) {
        memcpy(o, "null", 4);
        return 4;
    }
    if (v == 0.0f) {
        o[0] = '0';
        return 1;
    }
    p10_init();
    double a = fabs((double)v);
    int b2;
    frexp(a, &b2);
    int e = (int)floor((b2 - 1) * 0.30102999566398120); /* decimal exponent, maybe 1 low */
    if (e + 1 + P10_BIAS < 86 && a >= p10_table[e + 1 + P10_BIAS]) e++;
    if (a < p10_table[e + P10_BIAS]) e--;
    /* 7 significant digits as an integer in [1e6, 1e7) */
    int s = 6 - e; /* scale a by 10^s */
    double scaled = (s + P10_BIAS >= 0 && s + P10_BIAS < 86) ? a * p10_table[s + P10_BIAS] : a * pow(10.0, s);
    unsigned long m = (unsigned long)llrint(scaled); /* ties to even, as printf */
    if (m >= 10000000ul) {
        m /= 10;
        e++;
    }
    if (m < 1000000ul) m = 1000000ul; /* guard against an exponent estimate that slipped */
    char dg[7];
    for (int i = 6; i >= 0; i--) {
        dg[i] = (char)('0' + m % 10);
        m /= 10;
    }
    int nd = 7; /* significant digits left after dropping trailing zeros */
    while (nd > 1 && dg[nd - 1] == '0') nd--;
    int n = 0;
    if (v < 0) o[n++] = '-';
    if (e >= -4 && e <= 6) { /* fixed notation */
        if (e < 0) {
            o[n++] = '0';
            o[n++] = '.';
            for (int i = 0; i < -e - 1; i++) o[n++] = '0';
            for (int i = 0; i < nd; i++) o[n++] = dg[i];
        } else {
            for (int i = 0; i <= e; i++) o[n++] = dg[i]; /* e + 1 integer digits (e <= 6) */
            if (nd > e + 1) {
                o[n++] = '.';
                for (int i = e + 1; i < nd; i++) o[n++] = dg[i];
            }
        }
    } else { /* d.dddddde-XX */
        o[n++] = dg[0];
        if (nd > 1) {
            o[n++] = '.';
            for (int i = 1; i < nd; i++) o[n++] = dg[i];
        }
        o[n++] = 'e';
        o[n++] = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae >= 10) o[n++] = (char)('0' + ae / 10);
        else o[n++] = '0';
        o[n++] = (char)('0' + ae % 10);
    }
    return n;
}

void qkv__jw_float(qkv__jw *w, float v) {
    if (!jw_reserve(w, 24)) return;
    w->len += (size_t)fmt_float(w->buf + w->len, v);
    w->buf[w->len] = '\0';
}

void qkv__jw_floats(qkv__jw *w, const float *v, size_t n) {
    if (n > ((size_t)1 << 34) || !jw_reserve(w, 25 * n + 2)) return;
    char *o = w->buf + w->len;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        o += fmt_float(o, v[i]);
    }
    *o++ = ']';
    w->len = (size_t)(o - w->buf);
    w->buf[w->len] = '\0';
}

void qkv__jw_matrix(qkv__jw *w, const float *v, int rows, int cols, ptrdiff_t ld) {
    qkv__jw_raw(w, "[", 1);
    for (int r = 0; r < rows; r++) {
        if (r) qkv__jw_raw(w, ",", 1);
        qkv__jw_floats(w, v + (ptrdiff_t)r * ld, (size_t)cols);
    }
    qkv__jw_raw(w, "]", 1);
}

void qkv__jw_key(qkv__jw *w, const char *key, int first) {
    if (!first) qkv__jw_raw(w, ",", 1);
    qkv__jw_cstr(w, key);
    qkv__jw_raw(w, ":", 1);
}
