/* test_server_json.c -- the server's JSON writer (src/server/jsonw.c): floats as %.7g gives
 * them (by value) and never NaN/Inf, strings always valid JSON and valid UTF-8 whatever bytes
 * come in (token pieces can be partial UTF-8), and markup characters escaped. */
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

int main(void) {
    RUN(test_floats_match_printf);
    RUN(test_strings_escape_and_repair);
    RUN(test_arrays_and_keys);
    return test_summary();
}
