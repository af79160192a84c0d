/* test_server_json.c -- the server's JSON writer (src/server/jsonw.c): floats as %.7g gives
 * them (by value) and never NaN/Inf, strings always valid JSON and valid UTF-8 whatever bytes
 * come in (token pieces can be partial UTF-8), and markup characters escaped. And the growable
 * buffer it is (qkv__buf, src/common/buf.c): growth, the limit, formatted text of any length,
 * detaching, appends from its own bytes, and qkv__read_stream on top of it. */
#include "test.h"
#include "server/jsonw.h"

#include <stdint.h>

static const char *one_float(qkv__jw *w, float v) {
    w->len = 0;
    qkv__jw_float(w, v);
    return w->buf;
}

static void test_floats_match_printf(void) {
    qkv__jw w;
    qkv__jw_init(&w);
    const float special[] = {1, 0.5f, 1e-7f, 1.2345678e-7f, 9.9999999e-5f, 1e-4f, 0.001f,
                             999999.9f, 1e7f, 1.5e20f, -3.25f, 1e-45f, 3.4e38f, 0.1f, 0.3f,
                             123456.7f, 9999999.f, 0.99999994f, 1.0000001f};
    uint32_t x = 12345;
    long bad = 0;
    for (int i = 0; i < 300000; i++) {
        float v;
        if (i < (int)(sizeof special / sizeof special[0])) {
            v = special[i];
        } else {
            x = x * 1664525u + 1013904223u;
            memcpy(&v, &x, sizeof v);
            if (!isfinite(v)) continue;
        }
        const char *s = one_float(&w, v);
        char ref[32];
        snprintf(ref, sizeof ref, "%.7g", (double)v);
        if (strtod(s, NULL) != strtod(ref, NULL) && bad++ < 5)
            printf("  %.9g: wrote %s, printf %s\n", (double)v, s, ref);
    }
    ASSERT_EQ_INT(bad, 0);
    ASSERT(!strcmp(one_float(&w, 0.0f), "0"));
    ASSERT(!strcmp(one_float(&w, 1.0f), "1"));
    ASSERT(!strcmp(one_float(&w, 0.25f), "0.25"));
    ASSERT(!strcmp(one_float(&w, NAN), "null"));
    ASSERT(!strcmp(one_float(&w, INFINITY), "null"));
    ASSERT(!strcmp(one_float(&w, -INFINITY), "null"));
    qkv__jw_free(&w);
}

static void test_strings_escape_and_repair(void) {
    qkv__jw w;
    qkv__jw_init(&w);
    /* partial UTF-8 (first two bytes of U+2026), a lone continuation byte, an overlong '/',
     * a surrogate, controls, quotes, markup, U+2028 */
    const char in[] = "a\xe2\x80" "b\x80" "c\xc0\xaf" "d\xed\xa0\x80" "e\x01\n\"\\<img>&\xe2\x80\xa8" "\xc3\xa9";
    qkv__jw_str(&w, in, sizeof in - 1);
    const char *want = "\"a\\ufffd\\ufffdb\\ufffdc\\ufffd\\ufffdd\\ufffd\\ufffd\\ufffde\\u0001\\n\\\"\\\\"
                       "\\u003cimg\\u003e\\u0026\\u2028\xc3\xa9\"";
    ASSERT_MSG(!strcmp(w.buf, want), "got %s", w.buf);
    ASSERT(qkv__jw_utf8_valid("\xc3\xa9", 2));
    ASSERT(!qkv__jw_utf8_valid("\xe2\x80", 2));
    ASSERT(!qkv__jw_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    w.len = 0;
    qkv__jw_hex(&w, "\x00\xff\x10", 3);
    ASSERT(!strcmp(w.buf, "\"00ff10\""));
    qkv__jw_free(&w);
}

static void test_arrays_and_keys(void) {
    qkv__jw w;
    qkv__jw_init(&w);
    const float m[6] = {1, 0, 0.5f, 0.25f, NAN, -2};
    qkv__jw_lit(&w, "{");
    qkv__jw_key(&w, "m", 1);
    qkv__jw_matrix(&w, m, 2, 2, 3); /* rows 0 and 1 of a [2][3] buffer, first 2 columns */
    qkv__jw_key(&w, "n", 0);
    qkv__jw_int(&w, -42);
    qkv__jw_lit(&w, "}");
    ASSERT_MSG(!strcmp(w.buf, "{\"m\":[[1,0],[0.25,null]],\"n\":-42}"), "got %s", w.buf);
    ASSERT(!w.oom);
    qkv__jw_free(&w);
}

/* ---- qkv__buf ---------------------------------------------------------------------------- */

static void test_buf_grows(void) {
    qkv__buf b = {0};
    char want[70000];
    size_t n = 0;
    for (int i = 0; n + 300 < sizeof want; i++) { /* pieces of 0..299 bytes */
        size_t k = (size_t)(i * 37) % 300;
        for (size_t j = 0; j < k; j++) want[n + j] = (char)('a' + (i + j) % 26);
        ASSERT(qkv__buf_put(&b, want + n, k));
        n += k;
        ASSERT_EQ_INT(b.len, n);
        ASSERT(i == 0 || (b.cap > b.len && b.data[b.len] == '\0')); /* piece 0 is empty */
    }
    ASSERT(!memcmp(b.data, want, n));
    ASSERT(b.cap < 4 * n); /* geometric, not wildly over */
    ASSERT(!b.failed);
    /* puts, putc, and appending from its own bytes (which growing moves) */
    qkv__buf_free(&b);
    ASSERT(b.data == NULL && b.len == 0 && b.cap == 0);
    qkv__buf_puts(&b, "ab");
    qkv__buf_putc(&b, 'c');
    for (int i = 0; i < 12; i++) ASSERT(qkv__buf_put(&b, b.data, b.len)); /* doubles each time */
    ASSERT_EQ_INT(b.len, 3 << 12);
    for (size_t i = 0; i < b.len; i++) ASSERT_EQ_INT(b.data[i], "abc"[i % 3]);
    qkv__buf_free(&b);
}

static void test_buf_zero_length(void) {
    qkv__buf b = {0};
    ASSERT(qkv__buf_put(&b, NULL, 0));
    ASSERT(qkv__buf_puts(&b, ""));
    ASSERT(b.data == NULL && b.len == 0 && !b.failed); /* nothing allocated */
    ASSERT(qkv__buf_reserve(&b, 0));
    ASSERT(b.data && b.data[0] == '\0' && b.len == 0);
    qkv__buf_puts(&b, "x");
    ASSERT(qkv__buf_put(&b, "", 0));
    ASSERT_EQ_INT(b.len, 1);
    qkv__buf_free(&b);
    /* an empty buffer detaches as "" */
    size_t len = 99;
    char *s = qkv__buf_detach(&b, &len);
    ASSERT(s && s[0] == '\0' && len == 0);
    free(s);
}

static void test_buf_limit(void) {
    qkv__buf b = {.limit = 10};
    ASSERT(qkv__buf_put(&b, "0123456", 7));
    ASSERT(qkv__buf_put(&b, "789", 3)); /* exactly the limit */
    ASSERT(b.cap <= 11);
    ASSERT(!qkv__buf_putc(&b, 'x')); /* one past it */
    ASSERT_EQ_INT(b.failed, QKV_ETOOLONG);
    ASSERT_EQ_INT(b.len, 10);
    ASSERT(!strcmp(b.data, "0123456789"));
    /* failed sticks: later appends are ignored, even ones that would fit */
    qkv__buf_free(&b);
    ASSERT_EQ_INT(b.limit, 10);
    b.failed = QKV_ENOMEM;
    ASSERT(!qkv__buf_put(&b, "a", 1));
    ASSERT(!qkv__buf_printf(&b, "%d", 1));
    ASSERT(!qkv__buf_reserve(&b, 0));
    ASSERT_EQ_INT(b.len, 0);
    size_t len = 99;
    ASSERT(qkv__buf_detach(&b, &len) == NULL); /* and detaching gives nothing */
    ASSERT_EQ_INT(len, 0);
    ASSERT(!b.failed && b.data == NULL && b.limit == 10); /* b is empty again, limit kept */
    /* a piece past the limit is refused whole */
    qkv__buf_puts(&b, "abc");
    ASSERT(!qkv__buf_put(&b, "0123456789", 10));
    ASSERT(!strcmp(b.data, "abc"));
    char *out = (char *)1;
    ASSERT_EQ_INT(qkv__buf_finish(&b, &out, NULL, "test"), QKV_ETOOLONG);
    ASSERT(out == NULL);
    /* sizes that overflow size_t fail the same way, with no limit */
    qkv__buf u = {0};
    qkv__buf_putc(&u, 'a');
    ASSERT(!qkv__buf_reserve(&u, SIZE_MAX));
    ASSERT_EQ_INT(u.failed, QKV_ETOOLONG);
    ASSERT_EQ_INT(qkv__buf_finish(&u, &out, NULL, "test"), QKV_ETOOLONG);
}

static void test_buf_printf_and_detach(void) {
    qkv__buf b = {0};
    char big[5000], want[6000];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('A' + i % 26);
    big[sizeof big - 1] = '\0';
    ASSERT(qkv__buf_printf(&b, "[%d]", 42));                /* short: through a stack buffer */
    ASSERT(qkv__buf_printf(&b, "<%s|%.3f>", big, 0.5));     /* long: straight into the buffer */
    ASSERT(qkv__buf_printf(&b, "%s", ""));
    int n = snprintf(want, sizeof want, "[42]<%s|%.3f>", big, 0.5);
    ASSERT_EQ_INT(b.len, n);
    ASSERT(!strcmp(b.data, want));
    size_t len = 0;
    char *s = qkv__buf_detach(&b, &len);
    ASSERT(s && len == (size_t)n && s[len] == '\0' && !strcmp(s, want));
    ASSERT(b.data == NULL && b.len == 0 && b.cap == 0);
    free(s);
    /* finish: the bytes, and the length is optional */
    qkv__buf_puts(&b, "done");
    ASSERT_EQ_INT(qkv__buf_finish(&b, &s, NULL, "test"), QKV_OK);
    ASSERT(!strcmp(s, "done"));
    free(s);
}

/* The JSON writer is a qkv__buf: the server reads buf/len/oom of the same bytes. */
static void test_jw_is_a_buf(void) {
    qkv__jw w;
    qkv__jw_init(&w);
    qkv__jw_lit(&w, "");
    ASSERT(w.buf && w.buf == w.b.data && w.len == 0); /* an empty write still gives a buffer */
    qkv__jw_cstr(&w, "x");
    ASSERT(w.len == w.b.len && w.len == 3 && !strcmp(w.buf, "\"x\""));
    w.b.limit = 16;
    qkv__jw_floats(&w, (const float[]){1, 2}, 2); /* room for 25 bytes each: past 16 */
    ASSERT(w.oom && w.b.failed == QKV_ETOOLONG);
    qkv__jw_lit(&w, "1");
    ASSERT_EQ_INT(w.len, 3);
    qkv__jw_free(&w);
    qkv__jw_init(&w);
    qkv__jw_str(&w, "a", SIZE_MAX / 2); /* 6 bytes a byte overflows: refused, not wrapped */
    ASSERT(w.oom && w.len == 0);
    qkv__jw_free(&w);
}

static void test_read_stream(void) {
    FILE *f = tmpfile();
    ASSERT(f);
    char text[40000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)(i * 7);
    ASSERT(fwrite(text, 1, sizeof text, f) == sizeof text);
    char *d = NULL;
    size_t len = 0;
    rewind(f);
    ASSERT_EQ_INT(qkv__read_stream(f, sizeof text, "t", &d, &len), QKV_OK);
    ASSERT(len == sizeof text && !memcmp(d, text, len) && d[len] == '\0');
    free(d);
    rewind(f);
    ASSERT_EQ_INT(qkv__read_stream(f, sizeof text - 1, "t", &d, &len), QKV_ETOOLONG);
    ASSERT(d == NULL && len == 0);
    ASSERT(strstr(qkv_last_error(), "t: more than 39999 bytes"));
    /* an empty stream is "" */
    ASSERT_EQ_INT(qkv__read_stream(f, 0, "t", &d, &len), QKV_OK);
    ASSERT(d && d[0] == '\0' && len == 0);
    free(d);
    fclose(f);
}

int main(void) {
    RUN(test_buf_grows);
    RUN(test_buf_zero_length);
    RUN(test_buf_limit);
    RUN(test_buf_printf_and_detach);
    RUN(test_jw_is_a_buf);
    RUN(test_read_stream);
    RUN(test_floats_match_printf);
    RUN(test_strings_escape_and_repair);
    RUN(test_arrays_and_keys);
    return test_summary();
}
