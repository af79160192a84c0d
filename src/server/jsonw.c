/* jsonw.c -- the server's JSON writer (see jsonw.h). */
#include "server/jsonw.h"

#include "qkv_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JW_LIMIT ((size_t)1 << 40)

void qkv__jw_init(qkv__jw *w) { w->b = (qkv__buf){.limit = JW_LIMIT}; }

void qkv__jw_free(qkv__jw *w) { qkv__buf_free(&w->b); }

/* Room for n items of at most per bytes each, plus 2 (brackets or quotes) and the NUL: where
 * to write them, or NULL (the writer failed). */
static char *jw_room(qkv__jw *w, size_t n, size_t per) {
    size_t need;
    if (!qkv__mul_size(n, per, &need) || !qkv__add_size(need, 2, &need)) {
        if (!w->b.failed) w->b.failed = QKV_ETOOLONG;
        return NULL;
    }
    return qkv__buf_reserve(&w->b, need) ? w->b.data + w->b.len : NULL;
}

/* Ends a write that filled the buffer up to o. */
static void jw_end(qkv__jw *w, char *o) {
    w->b.len = (size_t)(o - w->b.data);
    w->b.data[w->b.len] = '\0';
}

void qkv__jw_raw(qkv__jw *w, const char *s, size_t n) {
    /* even an empty write leaves a (NUL-terminated) buffer */
    if (qkv__buf_reserve(&w->b, n)) qkv__buf_put(&w->b, s, n);
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
    char *o = jw_room(w, n, 6); /* worst case: every byte becomes \ufffd */
    if (o) jw_end(w, o + qkv__json_escape(o, s, n));
}

void qkv__jw_cstr(qkv__jw *w, const char *s) { qkv__jw_str(w, s, strlen(s)); }

void qkv__jw_hex(qkv__jw *w, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    char *o = jw_room(w, n, 2);
    if (!o) return;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        *o++ = hex[c >> 4];
        *o++ = hex[c & 15];
    }
    *o++ = '"';
    jw_end(w, o);
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
    char *o = jw_room(w, 1, 24);
    if (o) jw_end(w, o + fmt_float(o, v));
}

void qkv__jw_floats(qkv__jw *w, const float *v, size_t n) {
    char *o = jw_room(w, n, 25);
    if (!o) return;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        o += fmt_float(o, v[i]);
    }
    *o++ = ']';
    jw_end(w, o);
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
