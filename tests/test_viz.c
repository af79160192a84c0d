/* test_viz.c -- the attention views on synthetic matrices: token labels (spaces, breaks,
 * control bytes, partial and invalid UTF-8, bidi controls), the colour scale, JSON parsed
 * back with jansson (tokens, bytes, exact numbers, head means), CSV parsed back (RFC 4180
 * quoting), SVG well-formedness basics and escaping, the terminal view (only SGR escape
 * sequences, every line within the width, numbers), PNG structure (chunk CRCs, the zlib
 * stream inflated by an independent decoder here, its Adler-32, the colours), and refusals
 * of bad views. The XML parse of the SVG proper is
 * in tests/py/test_attend.py (xml.etree). */
#include "qkv.h"
#include "test.h"

#include <jansson.h>
#include <stdint.h>
#include <utf8proc.h>

/* ---- synthetic sentence: every kind of awkward token ---------------------------------- */

static const char *const TOKS[] = {
    "The",
    " bank",
    "\n",
    "\t",
    "<a&\"'>",
    "\x1b[31m",
    "\xe2\x80",
    "\xc0\xaf",
    " Stra\xc3\x9f"
    "e",
    "\xe2\x80\xae"
    "evil",
    "\xed\xa0\x80",
    "\xe6\xbc\xa2\xe5\xad\x97",
    ",",
    "\"quoted\"",
    "\x7f",
    "  ",
    "a\r\nb",
    "\xc2\x9b"
    "2J",
};
#define N_TOKS ((int)(sizeof TOKS / sizeof TOKS[0]))

typedef struct synth {
    qkv_viz_data d;
    const char *bytes[512];
    size_t len[512];
    int ids[512];
    float *attn;
} synth;

/* Random causal softmax rows: [L, H, N, N]. */
static void synth_make(synth *s, int n, int L, int H, int causal, unsigned long long seed) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        s->bytes[i] = TOKS[i % N_TOKS];
        s->len[i] = strlen(TOKS[i % N_TOKS]);
        s->ids[i] = 1000 + i;
    }
    s->attn = calloc((size_t)L * H * n * n, sizeof(float));
    for (int m = 0; m < L * H; m++)
        for (int i = 0; i < n; i++) {
            float *row = s->attn + ((size_t)m * n + i) * n;
            int nk = causal ? i + 1 : n;
            double z = 0;
            for (int j = 0; j < nk; j++) {
                row[j] = expf(3.0f * test_rand_uniform(&seed));
                z += row[j];
            }
            for (int j = 0; j < nk; j++)
                row[j] = (float)(row[j] / z);
        }
    s->d.n_tokens = n;
    s->d.token_bytes = s->bytes;
    s->d.token_len = s->len;
    s->d.ids = s->ids;
    s->d.n_layer = L;
    s->d.n_head = H;
    s->d.attn = s->attn;
    s->d.model_name = "synthetic <model> & \"co\"";
    s->d.causal = causal;
}

static void synth_free(synth *s) {
    free(s->attn);
}

static int valid_utf8(const char *s, size_t n) {
    utf8proc_int32_t cp;
    size_t i = 0;
    while (i < n) {
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

static char *label(const char *bytes, size_t len, int flags) {
    char *out = NULL;
    if (qkv_viz_label(bytes, len, flags, &out))
        return NULL;
    return out;
}

static void check_svg(const char *out, size_t len);
static int check_ansi(const char *out, size_t len, int width, int color);

/* ---- labels -------------------------------------------------------------------------- */

static void test_label_spaces_and_breaks(void) {
    char *a = label(" bank", 5, QKV_VIZ_LABEL_SPACES | QKV_VIZ_LABEL_BREAKS);
    ASSERT(a && !strcmp(a, "\xC2\xB7"
                           "bank"));
    free(a);
    a = label("a\nb\tc\r", 6, QKV_VIZ_LABEL_SPACES | QKV_VIZ_LABEL_BREAKS);
    ASSERT(a && !strcmp(a, "a\xE2\x86\xB5"
                           "b\xE2\x87\xA5"
                           "c\xE2\x90\x8D"));
    free(a);
    a = label(" x", 2, 0); /* no flags: the space stays */
    ASSERT(a && !strcmp(a, " x"));
    free(a);
    a = label("", 0, QKV_VIZ_LABEL_SPACES);
    ASSERT(a && !strcmp(a, ""));
    free(a);
}

static void test_label_unsafe_bytes_as_hex(void) {
    char *a = label("\x1b[31m", 5, QKV_VIZ_LABEL_SPACES);
    ASSERT_MSG(a && !strcmp(a, "\\x1b[31m"), "got %s", a ? a : "(null)");
    free(a);
    a = label("\xe2\x80", 2, 0); /* first two bytes of a 3-byte character */
    ASSERT(a && !strcmp(a, "\\xe2\\x80"));
    free(a);
    a = label("\xc0\xaf", 2, 0); /* overlong '/' */
    ASSERT(a && !strcmp(a, "\\xc0\\xaf"));
    free(a);
    a = label("\xed\xa0\x80", 3, 0); /* a surrogate */
    ASSERT(a && !strcmp(a, "\\xed\\xa0\\x80"));
    free(a);
    a = label("\xe2\x80\xae"
              "x",
              4, 0); /* RIGHT-TO-LEFT OVERRIDE */
    ASSERT(a && !strcmp(a, "\\u202ex"));
    free(a);
    a = label("\xc2\x9b", 2, 0); /* C1 CSI: some terminals treat it as ESC [ */
    ASSERT(a && !strcmp(a, "\\u009b"));
    free(a);
    a = label("\x7f\x00", 2, 0);
    ASSERT(a && !strcmp(a, "\\x7f\\x00"));
    free(a);
    a = label("Stra\xc3\x9f"
              "e \xe6\xbc\xa2",
              11, 0); /* valid text is kept */
    ASSERT(a && !strcmp(a, "Stra\xc3\x9f"
                           "e \xe6\xbc\xa2"));
    free(a);
}

static void test_label_lossy_and_always_valid(void) {
    char *a = label("a\xe2\x80"
                    "b\x1b",
                    5, QKV_VIZ_LABEL_LOSSY);
    ASSERT(a && !strcmp(a, "a\xEF\xBF\xBD\xEF\xBF\xBD"
                           "b\x1b"));
    free(a);
    /* every byte string of length 1..3 over a nasty alphabet labels to valid UTF-8 with no
     * control character */
    static const unsigned char alpha[] = {0x00, 0x0a, 0x1b, ' ',  'A',  0x7f, 0x80, 0x9b,
                                          0xc2, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xf5, 0xff};
    char buf[3];
    for (int n = 1; n <= 3; n++) {
        int total = 1;
        for (int k = 0; k < n; k++)
            total *= (int)sizeof alpha;
        for (int x = 0; x < total; x++) {
            int y = x;
            for (int k = 0; k < n; k++, y /= (int)sizeof alpha)
                buf[k] = (char)alpha[y % (int)sizeof alpha];
            char *l = label(buf, (size_t)n, QKV_VIZ_LABEL_SPACES);
            ASSERT(l);
            ASSERT_MSG(valid_utf8(l, strlen(l)), "label of %d bytes is not UTF-8", n);
            for (const unsigned char *p = (const unsigned char *)l; *p; p++)
                ASSERT_MSG(*p >= 0x20 && *p != 0x7f, "control byte 0x%02x in a label", *p);
            free(l);
        }
    }
    ASSERT(qkv_viz_label(NULL, 3, 0, &(char *){NULL}) == QKV_EINVAL);
}

/* ---- colour scale -------------------------------------------------------------------- */

static void test_colormap_endpoints(void) {
    uint8_t c[3];
    qkv_viz_colormap(0.0f, c);
    ASSERT(c[0] == 0x44 && c[1] == 0x01 && c[2] == 0x54); /* viridis start */
    qkv_viz_colormap(1.0f, c);
    ASSERT(c[0] == 0xfd && c[1] == 0xe7 && c[2] == 0x25); /* viridis end */
    qkv_viz_colormap(-3.0f, c);
    ASSERT(c[0] == 0x44 && c[2] == 0x54);
    qkv_viz_colormap(7.0f, c);
    ASSERT(c[0] == 0xfd && c[2] == 0x25);
    qkv_viz_colormap(NAN, c);
    ASSERT(c[0] == 0x44 && c[2] == 0x54);
    /* lightness grows along the scale (what makes it readable in grey) */
    double prev = -1;
    for (int k = 0; k <= 100; k++) {
        qkv_viz_colormap((float)k / 100.0f, c);
        double luma = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        ASSERT_MSG(luma > prev - 0.5, "luma drops at t=%.2f", k / 100.0);
        prev = luma;
    }
}

/* ---- JSON ---------------------------------------------------------------------------- */

static json_t *render_json(synth *s, qkv_viz_view *v) {
    char *out = NULL;
    size_t len = 0;
    ASSERT_OK(qkv_viz_json(&s->d, v, &out, &len));
    ASSERT(strlen(out) == len);
    json_error_t err;
    json_t *root = json_loadb(out, len, 0, &err);
    ASSERT_MSG(root, "JSON does not parse: %s (line %d)", err.text, err.line);
    free(out);
    return root;
}

static void test_json_tokens_bytes_numbers(void) {
    synth s;
    int n = N_TOKS + 2, L = 2, H = 3;
    synth_make(&s, n, L, H, 1, 7);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.layer = QKV_VIZ_ALL;
    json_t *root = render_json(&s, &v);
    ASSERT(json_integer_value(json_object_get(root, "n_tokens")) == n);
    ASSERT(json_integer_value(json_object_get(root, "n_layer")) == L);
    ASSERT(json_is_true(json_object_get(root, "causal")));
    ASSERT(
        !strcmp(json_string_value(json_object_get(root, "model")), "synthetic <model> & \"co\""));
    json_t *tokens = json_object_get(root, "tokens"), *bytes = json_object_get(root, "token_bytes");
    json_t *labels = json_object_get(root, "labels"), *ids = json_object_get(root, "ids");
    ASSERT((int)json_array_size(tokens) == n && (int)json_array_size(bytes) == n);
    ASSERT((int)json_array_size(labels) == n && (int)json_array_size(ids) == n);
    for (int i = 0; i < n; i++) {
        json_t *b = json_array_get(bytes, (size_t)i);
        ASSERT(json_array_size(b) == s.len[i]);
        for (size_t k = 0; k < s.len[i]; k++)
            ASSERT(json_integer_value(json_array_get(b, k)) == (unsigned char)s.bytes[i][k]);
        ASSERT(json_integer_value(json_array_get(ids, (size_t)i)) == 1000 + i);
        /* valid tokens come back byte for byte (jansson decodes the escapes) */
        if (valid_utf8(s.bytes[i], s.len[i]))
            ASSERT_MSG(!strcmp(json_string_value(json_array_get(tokens, (size_t)i)), s.bytes[i]),
                       "token %d", i);
    }
    ASSERT(!strcmp(json_string_value(json_array_get(labels, 1)), "\xC2\xB7"
                                                                 "bank"));
    ASSERT(!strcmp(json_string_value(json_array_get(labels, 6)), "\\xe2\\x80"));
    ASSERT(!strcmp(json_string_value(json_array_get(tokens, 6)), "\xEF\xBF\xBD\xEF\xBF\xBD"));
    json_t *att = json_object_get(root, "attention");
    ASSERT((int)json_array_size(att) == L);
    for (int l = 0; l < L; l++) {
        json_t *layer = json_array_get(att, (size_t)l);
        ASSERT((int)json_array_size(layer) == H);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < n; i++) {
                json_t *row = json_array_get(json_array_get(layer, (size_t)h), (size_t)i);
                ASSERT((int)json_array_size(row) == n);
                for (int j = 0; j < n; j++) {
                    float want = s.attn[(((size_t)l * H + h) * n + i) * n + j];
                    float got = (float)json_number_value(json_array_get(row, (size_t)j));
                    ASSERT_MSG(got == want, "[%d][%d][%d][%d]: %.9g != %.9g", l, h, i, j, got,
                               want);
                }
            }
    }
    json_decref(root);
    synth_free(&s);
}

static void test_json_one_head_and_mean(void) {
    synth s;
    int n = 9, L = 3, H = 4;
    synth_make(&s, n, L, H, 1, 11);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.layer = 2;
    v.head = 1;
    v.query = 4;
    json_t *root = render_json(&s, &v);
    ASSERT(json_array_size(json_object_get(root, "layers")) == 1);
    ASSERT(json_integer_value(json_array_get(json_object_get(root, "layers"), 0)) == 2);
    ASSERT(json_integer_value(json_array_get(json_object_get(root, "heads"), 0)) == 1);
    ASSERT(json_integer_value(json_object_get(root, "query")) == 4);
    json_t *m = json_array_get(json_array_get(json_object_get(root, "attention"), 0), 0);
    ASSERT((float)json_number_value(json_array_get(json_array_get(m, 3), 2)) ==
           s.attn[(((size_t)2 * H + 1) * n + 3) * n + 2]);
    json_decref(root);

    v.head = QKV_VIZ_AVG;
    root = render_json(&s, &v);
    ASSERT(!strcmp(json_string_value(json_array_get(json_object_get(root, "heads"), 0)), "avg"));
    m = json_array_get(json_array_get(json_object_get(root, "attention"), 0), 0);
    for (int i = 0; i < n; i++) {
        double row_sum = 0;
        for (int j = 0; j < n; j++) {
            double mean = 0;
            for (int h = 0; h < H; h++)
                mean += s.attn[(((size_t)2 * H + h) * n + i) * n + j];
            mean /= H;
            double got = json_number_value(json_array_get(json_array_get(m, (size_t)i), (size_t)j));
            ASSERT_CLOSE(got, mean, 1e-7);
            row_sum += got;
            if (j > i)
                ASSERT(got == 0.0);
        }
        ASSERT_CLOSE(row_sum, 1.0, 1e-5);
    }
    json_decref(root);
    synth_free(&s);
}

static void test_head_list_three_plus_mean(void) {
    synth s;
    int n = 7, L = 2, H = 5;
    synth_make(&s, n, L, H, 1, 17);
    static const int heads[4] = {0, 3, 4, QKV_VIZ_AVG}; /* the lessons' lens */
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.layer = 1;
    v.heads = heads;
    v.n_heads = 4;
    json_t *root = render_json(&s, &v);
    json_t *hs = json_object_get(root, "heads");
    ASSERT(json_array_size(hs) == 4 && json_integer_value(json_array_get(hs, 1)) == 3);
    ASSERT(!strcmp(json_string_value(json_array_get(hs, 3)), "avg"));
    json_t *att = json_array_get(json_object_get(root, "attention"), 0);
    ASSERT(json_array_size(att) == 4);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double mean = 0;
            for (int h = 0; h < H; h++)
                mean += s.attn[(((size_t)1 * H + h) * n + i) * n + j];
            json_t *m3 = json_array_get(att, 3), *m1 = json_array_get(att, 1);
            ASSERT_CLOSE(
                json_number_value(json_array_get(json_array_get(m3, (size_t)i), (size_t)j)),
                mean / H, 1e-7);
            ASSERT((float)json_number_value(
                       json_array_get(json_array_get(m1, (size_t)i), (size_t)j)) ==
                   s.attn[(((size_t)1 * H + 3) * n + i) * n + j]);
        }
    json_decref(root);
    char *out;
    size_t len;
    v.color = QKV_VIZ_COLOR_NONE;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    ASSERT(strstr(out, "heads 0, 3, 4 + their mean") && strstr(out, "head 3") &&
           strstr(out, "mean"));
    free(out);
    ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
    check_svg(out, len);
    ASSERT(strstr(out, ">head 4</text>") && strstr(out, ">mean of 5 heads</text>"));
    free(out);
    static const int bad[2] = {1, 5};
    v.heads = bad;
    v.n_heads = 2;
    ASSERT(qkv_viz_json(&s.d, &v, &out, &len) == QKV_ERANGE);
    ASSERT(strstr(qkv_last_error(), "head 5"));
    v.heads = NULL;
    ASSERT(qkv_viz_json(&s.d, &v, &out, &len) == QKV_EINVAL);
    synth_free(&s);
}

static void test_drop_first_renormalises(void) {
    synth s;
    int n = 8, L = 1, H = 3;
    synth_make(&s, n, L, H, 1, 23);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.head = 2;
    v.drop_first = 1;
    json_t *root = render_json(&s, &v);
    ASSERT(json_is_true(json_object_get(root, "drop_first")));
    json_t *m = json_array_get(json_array_get(json_object_get(root, "attention"), 0), 0);
    for (int i = 0; i < n; i++) {
        const float *row = s.attn + ((size_t)2 * n + i) * n;
        double rest = 0, sum = 0;
        for (int j = 1; j <= i; j++)
            rest += row[j];
        for (int j = 0; j < n; j++) {
            double got = json_number_value(json_array_get(json_array_get(m, (size_t)i), (size_t)j));
            double want = (j == 0 || j > i || rest == 0) ? 0.0 : row[j] / rest;
            ASSERT_CLOSE(got, want, 1e-6);
            sum += got;
        }
        if (i > 0)
            ASSERT_CLOSE(sum, 1.0, 1e-5);
    }
    json_decref(root);
    /* the mean of heads, then renormalised; and the other renderers draw it */
    v.head = QKV_VIZ_AVG;
    root = render_json(&s, &v);
    m = json_array_get(json_array_get(json_object_get(root, "attention"), 0), 0);
    ASSERT(json_number_value(json_array_get(json_array_get(m, 5), 0)) == 0.0);
    json_decref(root);
    char *out;
    size_t len;
    v.color = QKV_VIZ_COLOR_NONE;
    v.width = 60;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    check_ansi(out, len, 60, 0);
    ASSERT(strstr(out, "key 0 left out"));
    free(out);
    v.query = 0; /* row 0 sees nothing but key 0: no bars, no crash */
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    ASSERT(strstr(out, "uniform over 0 keys"));
    free(out);
    v.query = -1;
    ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
    check_svg(out, len);
    ASSERT(strstr(out, "first token ignored"));
    free(out);
    synth_free(&s);
}

static void test_json_predictions(void) {
    synth s;
    synth_make(&s, 4, 1, 1, 1, 3);
    const char *tb[2] = {"\xe2\x80", " were"};
    size_t tl[2] = {2, 5};
    int tid[2] = {7, 8};
    float tp[2] = {0.625f, 0.125f};
    s.d.n_top = 2;
    s.d.top_bytes = tb;
    s.d.top_len = tl;
    s.d.top_ids = tid;
    s.d.top_probs = tp;
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    json_t *root = render_json(&s, &v);
    json_t *top = json_object_get(root, "top");
    ASSERT(json_array_size(top) == 2);
    ASSERT(!strcmp(json_string_value(json_object_get(json_array_get(top, 1), "token")), " were"));
    ASSERT(json_integer_value(json_object_get(json_array_get(top, 0), "id")) == 7);
    ASSERT(json_number_value(json_object_get(json_array_get(top, 0), "prob")) == 0.625);
    json_decref(root);
    synth_free(&s);
}

/* ---- CSV ----------------------------------------------------------------------------- */

/* A strict RFC 4180 reader for one record: fields into out (malloc'ed), returns the count
 * or -1 on a malformed record; *p advances past the line end. */
static int csv_record(const char **p, char **out, int max) {
    int nf = 0;
    const char *s = *p;
    for (;;) {
        if (nf == max)
            return -1;
        char *f = malloc(strlen(s) + 1);
        size_t k = 0;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s) {
                    free(f);
                    return -1;
                }
                if (*s == '"') {
                    if (s[1] == '"') {
                        f[k++] = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                f[k++] = *s++;
            }
        } else {
            while (*s && *s != ',' && *s != '\n') {
                if (*s == '"') {
                    free(f);
                    return -1;
                }
                f[k++] = *s++;
            }
        }
        f[k] = '\0';
        out[nf++] = f;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '\n') {
            s++;
            break;
        }
        if (!*s)
            break;
        return -1;
    }
    *p = s;
    return nf;
}

static void test_csv_quoting_and_numbers(void) {
    synth s;
    int n = N_TOKS, L = 2, H = 2;
    synth_make(&s, n, L, H, 1, 5);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.layer = QKV_VIZ_ALL;
    char *out = NULL;
    size_t len;
    ASSERT_OK(qkv_viz_csv(&s.d, &v, &out, &len));
    ASSERT(valid_utf8(out, len));
    for (size_t k = 0; k < len; k++)
        ASSERT_MSG((unsigned char)out[k] >= 0x20 || out[k] == '\n', "control byte at %zu", k);
    const char *p = out;
    char *f[16];
    ASSERT(csv_record(&p, f, 16) == 7);
    ASSERT(!strcmp(f[0], "layer") && !strcmp(f[3], "query_token") && !strcmp(f[6], "weight"));
    for (int k = 0; k < 7; k++)
        free(f[k]);
    int rows = 0;
    while (*p) {
        int nf = csv_record(&p, f, 16);
        ASSERT_MSG(nf == 7, "record %d has %d fields", rows, nf);
        int l = atoi(f[0]), h = atoi(f[1]), i = atoi(f[2]), j = atoi(f[4]);
        ASSERT(l >= 0 && l < L && h >= 0 && h < H && i >= 0 && i < n && j >= 0 && j < n);
        float w = strtof(f[6], NULL);
        ASSERT(w == s.attn[(((size_t)l * H + h) * n + i) * n + j]);
        char *want = label(s.bytes[i], s.len[i], QKV_VIZ_LABEL_BREAKS);
        ASSERT_MSG(!strcmp(f[3], want), "query token %d: '%s' vs '%s'", i, f[3], want);
        free(want);
        for (int k = 0; k < nf; k++)
            free(f[k]);
        rows++;
    }
    ASSERT_EQ_INT(rows, L * H * n * n);
    /* the quote-doubling itself, literally */
    ASSERT(strstr(out, "\"<a&\"\"'>\""));
    ASSERT(strstr(out, "\"\"\"quoted\"\"\""));
    free(out);

    v.layer = 1;
    v.head = QKV_VIZ_AVG;
    v.query = 3;
    ASSERT_OK(qkv_viz_csv(&s.d, &v, &out, &len));
    p = out;
    ASSERT(csv_record(&p, f, 16) == 7);
    for (int k = 0; k < 7; k++)
        free(f[k]);
    rows = 0;
    while (*p) {
        ASSERT(csv_record(&p, f, 16) == 7);
        ASSERT(!strcmp(f[0], "1") && !strcmp(f[1], "avg") && !strcmp(f[2], "3"));
        for (int k = 0; k < 7; k++)
            free(f[k]);
        rows++;
    }
    ASSERT_EQ_INT(rows, n);
    free(out);
    synth_free(&s);
}

/* ---- SVG ----------------------------------------------------------------------------- */

static void check_svg(const char *out, size_t len) {
    ASSERT(valid_utf8(out, len));
    ASSERT(!strncmp(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"",
        77));
    ASSERT(len > 7 && !strcmp(out + len - 7, "</svg>\n"));
    for (size_t k = 0; k < len; k++)
        ASSERT_MSG((unsigned char)out[k] >= 0x20 || out[k] == '\n', "control byte 0x%02x at %zu",
                   (unsigned char)out[k], k);
    /* every '&' starts an entity we wrote; no '<' except at a tag */
    for (const char *a = strchr(out, '&'); a; a = strchr(a + 1, '&'))
        ASSERT_MSG(!strncmp(a, "&amp;", 5) || !strncmp(a, "&lt;", 4) || !strncmp(a, "&gt;", 4) ||
                       !strncmp(a, "&quot;", 6) || !strncmp(a, "&apos;", 6),
                   "bare '&' at %td", a - out);
    for (const char *a = strchr(out, '<'); a; a = strchr(a + 1, '<'))
        ASSERT_MSG(a[1] == '/' || a[1] == '?' || (a[1] >= 'a' && a[1] <= 'z'), "bare '<' at %td",
                   a - out);
    ASSERT(!strstr(out, "<script") && !strstr(out, "href"));
}

static void test_svg_escaping_single_and_grid(void) {
    synth s;
    synth_make(&s, N_TOKS, 2, 4, 1, 9);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    char *out;
    size_t len;
    v.head = 2;
    v.query = 4;
    ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
    check_svg(out, len);
    ASSERT(strstr(out, "&lt;a&amp;&quot;&apos;&gt;"));                   /* the token, escaped */
    ASSERT(strstr(out, "synthetic &lt;model&gt; &amp; &quot;co&quot;")); /* the title */
    ASSERT(strstr(out, "\\x1b[31m") && strstr(out, "\\xe2\\x80") && strstr(out, "\\u202eevil"));
    ASSERT(strstr(out, "layer 0") && strstr(out, "head 2"));
    ASSERT(strstr(out, ">0.00</text>") && strstr(out, ">1.00</text>")); /* scale ends */
    /* one tooltip per visible (causal) cell */
    int tips = 0;
    for (const char *a = strstr(out, "<title>query "); a; a = strstr(a + 1, "<title>query "))
        tips++;
    ASSERT_EQ_INT(tips, N_TOKS * (N_TOKS + 1) / 2);
    free(out);

    v.head = QKV_VIZ_ALL;
    v.query = -1;
    v.vmax = -1; /* scale to the largest weight */
    ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
    check_svg(out, len);
    for (int h = 0; h < 4; h++) {
        char cap[32];
        snprintf(cap, sizeof cap, ">head %d</text>", h);
        ASSERT_MSG(strstr(out, cap), "no caption for head %d", h);
    }
    free(out);

    v.layer = QKV_VIZ_ALL; /* the overview: every layer x head */
    ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
    check_svg(out, len);
    ASSERT(strstr(out, ">L1 H3</text>"));
    free(out);
    synth_free(&s);
}

/* ---- terminal ------------------------------------------------------------------------ */

/* Checks that the only escape sequences are SGR (ESC [ digits/; m) and that every line,
 * without them, is valid UTF-8 at most `width` columns wide. Returns the line count. */
static int check_ansi(const char *out, size_t len, int width, int color) {
    ASSERT(valid_utf8(out, len));
    int lines = 0;
    const char *p = out, *end = out + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ASSERT_MSG(nl, "output does not end with a newline");
        char *plain = malloc((size_t)(nl - p) + 1);
        size_t k = 0;
        for (const char *q = p; q < nl; q++) {
            if (*q == '\x1b') {
                ASSERT_MSG(color, "escape sequence without colour");
                ASSERT(q[1] == '[');
                q += 2;
                while (q < nl && ((*q >= '0' && *q <= '9') || *q == ';'))
                    q++;
                ASSERT_MSG(q < nl && *q == 'm', "escape sequence that is not SGR");
                continue;
            }
            ASSERT_MSG((unsigned char)*q >= 0x20 && *q != 0x7f, "control byte 0x%02x",
                       (unsigned char)*q);
            plain[k++] = *q;
        }
        plain[k] = '\0';
        int w = 0;
        utf8proc_int32_t cp;
        for (size_t i = 0; i < k;) {
            utf8proc_ssize_t step = utf8proc_iterate((const utf8proc_uint8_t *)plain + i,
                                                     (utf8proc_ssize_t)(k - i), &cp);
            ASSERT(step > 0);
            w += utf8proc_charwidth(cp);
            i += (size_t)step;
        }
        ASSERT_MSG(w <= width, "line %d is %d columns, wider than %d: %s", lines, w, width, plain);
        free(plain);
        /* a line never ends inside a coloured run */
        if (color && nl > p) {
            const char *last_esc = NULL;
            for (const char *q = p; q < nl; q++)
                if (*q == '\x1b')
                    last_esc = q;
            if (last_esc)
                ASSERT_MSG(!strncmp(last_esc, "\x1b[0m", 4), "line %d leaves colour on: %.*s",
                           lines, (int)(nl - p), p);
        }
        lines++;
        p = nl + 1;
    }
    return lines;
}

static void test_ansi_fits_every_width(void) {
    static const int sizes[] = {1, 5, 18, 60, 130};
    static const int widths[] = {24, 40, 80, 133, 250};
    for (int si = 0; si < 5; si++) {
        synth s;
        synth_make(&s, sizes[si], 2, 3, si % 2 == 0, 20 + (unsigned)si);
        for (int wi = 0; wi < 5; wi++)
            for (int color = 0; color <= 2; color++)
                for (int mode = 0; mode < 4; mode++) {
                    qkv_viz_view v;
                    qkv_viz_view_init(&v);
                    v.width = widths[wi];
                    v.color = (qkv_viz_color)color;
                    v.head = mode == 0 ? QKV_VIZ_ALL : mode == 1 ? 1 : QKV_VIZ_AVG;
                    if (mode == 3)
                        v.query = sizes[si] - 1;
                    char *out;
                    size_t len;
                    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
                    int lines = check_ansi(out, len, widths[wi], color);
                    ASSERT(lines >= (mode == 3 ? sizes[si] : sizes[si] + 2));
                    if (color == 0)
                        ASSERT(!memchr(out, '\x1b', len));
                    free(out);
                }
        synth_free(&s);
    }
}

static void test_ansi_numbers_and_scale(void) {
    synth s;
    synth_make(&s, 6, 1, 2, 1, 4);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.head = 1;
    v.width = 100;
    v.color = QKV_VIZ_COLOR_NONE;
    char *out;
    size_t len;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    /* 3-column cells carry weight x 100: row 1's two weights, as printed */
    const float *m = s.attn + (size_t)1 * 36;
    char want[64];
    snprintf(want, sizeof want, "%3d%3d   ", (int)lrintf(m[6] * 100), (int)lrintf(m[7] * 100));
    ASSERT_MSG(strstr(out, want), "row 1 cells '%s' not found", want);
    ASSERT(strstr(out, "\xC2\xB7"
                       "bank"));      /* the visible space */
    ASSERT(strstr(out, "\\x1b[31m")); /* the escape, defused */
    free(out);

    v.color = QKV_VIZ_COLOR_TRUE;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    ASSERT(strstr(out, "\x1b[48;2;68;1;84m"));    /* the scale's start */
    ASSERT(strstr(out, "\x1b[48;2;253;231;37m")); /* and end, in the legend */
    ASSERT(strstr(out, "0.00") && strstr(out, "0.50") && strstr(out, "1.00"));
    free(out);

    v.color = QKV_VIZ_COLOR_256;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    ASSERT(strstr(out, "\x1b[48;5;") && !strstr(out, "48;2;"));
    free(out);

    /* the scale's top follows the data with vmax < 0 */
    v.vmax = -1;
    v.head = 0;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    float mx = 0;
    for (int i = 1; i < 6; i++) /* row 0 is always 1.0 in a causal map */
        for (int j = 0; j <= i; j++)
            mx = s.attn[i * 6 + j] > mx ? s.attn[i * 6 + j] : mx;
    mx = mx > s.attn[0] ? mx : s.attn[0];
    snprintf(want, sizeof want, "%.2f\n", (double)mx);
    ASSERT_MSG(strstr(out, want), "scale top %s missing", want);
    free(out);
    synth_free(&s);
}

static void test_ansi_query_bars(void) {
    synth s;
    synth_make(&s, 7, 1, 2, 1, 8);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.head = 0;
    v.query = 5;
    v.color = QKV_VIZ_COLOR_NONE;
    char *out;
    size_t len;
    ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
    const float *row = s.attn + 5 * 7;
    for (int j = 0; j <= 5; j++) {
        char num[32];
        snprintf(num, sizeof num, " %.4f\n", (double)row[j]);
        ASSERT_MSG(strstr(out, num), "weight of key %d (%s) missing", j, num);
    }
    ASSERT(strstr(out, "masked by the causal mask"));
    double ent = 0;
    for (int j = 0; j <= 5; j++) ent -= row[j] * log2((double)row[j]);
    char num[64];
    snprintf(num, sizeof num, "entropy %.2f bits, uniform over 6 keys: %.2f", ent, log2(6.0));
    ASSERT_MSG(strstr(out, num), "'%s' missing", num);
    free(out);
    synth_free(&s);
}

/* ---- PNG ----------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t crc32_bytes(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* An independent inflater for what the PNG view writes (any deflate block type except
 * dynamic Huffman, which it never emits): stored and fixed-Huffman blocks. Returns the
 * decompressed length, or -1 on a malformed stream. */
typedef struct bitreader {
    const unsigned char *p;
    size_t n, pos;
    int bit;
} bitreader;

static int get_bit(bitreader *r) {
    if (r->pos >= r->n)
        return -1;
    int b = (r->p[r->pos] >> r->bit) & 1;
    if (++r->bit == 8)
        r->bit = 0, r->pos++;
    return b;
}

static long get_bits(bitreader *r, int n) { /* LSB first */
    long v = 0;
    for (int k = 0; k < n; k++) {
        int b = get_bit(r);
        if (b < 0)
            return -1;
        v |= (long)b << k;
    }
    return v;
}

static int fixed_symbol(bitreader *r) { /* codes MSB first, RFC 1951 3.2.6 */
    int code = 0;
    for (int len = 1; len <= 9; len++) {
        int b = get_bit(r);
        if (b < 0)
            return -1;
        code = code << 1 | b;
        if (len == 7 && code <= 23)
            return 256 + code;
        if (len == 8 && code >= 0x30 && code <= 0xBF)
            return code - 0x30;
        if (len == 8 && code >= 0xC0 && code <= 0xC7)
            return 280 + code - 0xC0;
        if (len == 9 && code >= 0x190)
            return 144 + code - 0x190;
    }
    return -1;
}

static long inflate_simple(const unsigned char *z, size_t n, unsigned char *out, size_t cap) {
    static const int lbase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                  31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int dbase[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                  33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                  1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int dext[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    bitreader r = {z, n, 0, 0};
    size_t o = 0;
    int final = 0;
    while (!final) {
        final = (int)get_bits(&r, 1);
        long type = get_bits(&r, 2);
        if (final < 0 || type < 0 || type > 1)
            return -1;
        if (type == 0) {
            if (r.bit)
                r.bit = 0, r.pos++;
            if (r.pos + 4 > n)
                return -1;
            size_t len = z[r.pos] | (size_t)z[r.pos + 1] << 8;
            if ((len ^ 0xFFFF) != (size_t)(z[r.pos + 2] | z[r.pos + 3] << 8))
                return -1;
            r.pos += 4;
            if (r.pos + len > n || o + len > cap)
                return -1;
            memcpy(out + o, z + r.pos, len);
            o += len;
            r.pos += len;
            continue;
        }
        for (;;) {
            int sym = fixed_symbol(&r);
            if (sym < 0 || sym > 285)
                return -1;
            if (sym < 256) {
                if (o >= cap)
                    return -1;
                out[o++] = (unsigned char)sym;
            } else if (sym == 256) {
                break;
            } else {
                long e = get_bits(&r, lext[sym - 257]);
                if (e < 0)
                    return -1;
                int len = lbase[sym - 257] + (int)e;
                int dc = 0;
                for (int k = 0; k < 5; k++) {
                    int b = get_bit(&r);
                    if (b < 0)
                        return -1;
                    dc = dc << 1 | b;
                }
                if (dc > 29)
                    return -1;
                long de = get_bits(&r, dext[dc]);
                if (de < 0)
                    return -1;
                size_t dist = (size_t)(dbase[dc] + de);
                if (dist > o || o + (size_t)len > cap)
                    return -1;
                for (int k = 0; k < len; k++, o++)
                    out[o] = out[o - dist];
            }
        }
    }
    if (r.bit)
        r.pos++;
    return (long)r.pos <= (long)n ? (long)o : -1;
}

static void test_png_structure(void) {
    synth s;
    synth_make(&s, 12, 1, 2, 1, 12);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.query = 3;
    char *out;
    size_t len;
    ASSERT_OK(qkv_viz_png(&s.d, &v, &out, &len));
    const unsigned char *p = (const unsigned char *)out;
    ASSERT(len > 8 + 25 + 12 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8));
    size_t o = 8;
    uint32_t w = 0, h = 0;
    unsigned char *z = NULL;
    size_t zlen = 0;
    int saw_end = 0;
    while (o + 12 <= len) {
        uint32_t clen = be32(p + o);
        ASSERT(o + 12 + clen <= len);
        ASSERT_MSG(crc32_bytes(p + o + 4, clen + 4) == be32(p + o + 8 + clen), "bad CRC");
        if (!memcmp(p + o + 4, "IHDR", 4)) {
            w = be32(p + o + 8);
            h = be32(p + o + 12);
            ASSERT(p[o + 16] == 8 && p[o + 17] == 2);
        } else if (!memcmp(p + o + 4, "IDAT", 4)) {
            z = realloc(z, zlen + clen);
            memcpy(z + zlen, p + o + 8, clen);
            zlen += clen;
        } else if (!memcmp(p + o + 4, "IEND", 4)) {
            saw_end = 1;
        }
        o += 12 + clen;
    }
    ASSERT(saw_end && o == len && w >= 100 && h >= 100);
    /* the zlib stream: header, deflate data, Adler-32 of the scanlines */
    ASSERT(z && zlen > 6 && z[0] == 0x78 && ((z[0] << 8) | z[1]) % 31 == 0);
    size_t raw_len = (size_t)h * (w * 3 + 1);
    unsigned char *raw = malloc(raw_len + 1);
    long got = inflate_simple(z + 2, zlen - 6, raw, raw_len + 1);
    ASSERT_MSG(got == (long)raw_len, "inflated %ld bytes, want %zu", got, raw_len);
    uint32_t a = 1, b = 0;
    int saw_low = 0, saw_high = 0, saw_accent = 0;
    for (size_t k = 0; k < raw_len; k++) {
        a = (a + raw[k]) % 65521u;
        b = (b + a) % 65521u;
        if (k % (w * 3 + 1) == 0) {
            ASSERT(raw[k] == 0); /* filter: none */
            continue;
        }
        size_t px = k % (w * 3 + 1) - 1;
        if (px % 3 == 0 && px + 2 < w * 3) {
            const unsigned char *c = raw + k;
            saw_low |= c[0] == 0x44 && c[1] == 0x01 && c[2] == 0x54;    /* scale bottom */
            saw_high |= c[0] == 0xfd && c[1] == 0xe7 && c[2] == 0x25;   /* scale top */
            saw_accent |= c[0] == 0xe8 && c[1] == 0x17 && c[2] == 0x5d; /* the query outline */
        }
    }
    ASSERT(be32(z + zlen - 4) == ((b << 16) | a));
    ASSERT(saw_low && saw_high && saw_accent);
    free(raw);
    free(z);
    free(out);
    synth_free(&s);
}

/* ---- random tokens and odd numbers through every renderer --------------------------- */

static void test_random_tokens_every_format(void) {
    unsigned long long seed = 99;
    static char pool[64][9];
    const char *tb[64];
    size_t tl[64];
    for (int iter = 0; iter < 24; iter++) {
        int n = 1 + (int)(test_rand_u64(&seed) % 40), H = 1 + (int)(test_rand_u64(&seed) % 3);
        for (int i = 0; i < n; i++) {
            tl[i] = (size_t)(test_rand_u64(&seed) % 9);
            for (size_t k = 0; k < tl[i]; k++)
                pool[i][k] = (char)(test_rand_u64(&seed) & 0xFF);
            tb[i] = pool[i];
        }
        synth s;
        synth_make(&s, n, 1, H, iter % 3 != 0, seed);
        s.d.token_bytes = tb;
        s.d.token_len = tl;
        s.d.ids = NULL;
        if (iter % 4 == 1) { /* not probabilities at all: the views must still be safe */
            size_t cnt = (size_t)H * n * n;
            for (size_t e = 0; e < cnt; e++) {
                unsigned r = (unsigned)(test_rand_u64(&seed) % 8);
                s.attn[e] = r == 0   ? NAN
                            : r == 1 ? INFINITY
                            : r == 2 ? -INFINITY
                            : r == 3 ? -0.5f
                            : r == 4 ? 1e30f
                                     : test_rand_uniform(&seed) * 3.0f;
            }
        }
        qkv_viz_view v;
        qkv_viz_view_init(&v);
        v.head = iter % 2 ? QKV_VIZ_ALL : QKV_VIZ_AVG;
        v.query = iter % 5 == 0 ? n - 1 : -1;
        v.width = 24 + (int)(test_rand_u64(&seed) % 150);
        v.color = (qkv_viz_color)(iter % 3);
        v.vmax = iter % 2 ? -1.0f : 0.0f;
        char *out;
        size_t len;
        ASSERT_OK(qkv_viz_ansi(&s.d, &v, &out, &len));
        check_ansi(out, len, v.width, v.color != QKV_VIZ_COLOR_NONE);
        free(out);
        ASSERT_OK(qkv_viz_svg(&s.d, &v, &out, &len));
        check_svg(out, len);
        free(out);
        ASSERT_OK(qkv_viz_json(&s.d, &v, &out, &len));
        json_error_t err;
        json_t *root = json_loadb(out, len, 0, &err);
        ASSERT_MSG(root, "JSON does not parse: %s", err.text);
        json_decref(root);
        free(out);
        ASSERT_OK(qkv_viz_csv(&s.d, &v, &out, &len));
        ASSERT(valid_utf8(out, len));
        const char *p = out;
        char *f[16];
        int rows = 0, nf;
        while (*p && (nf = csv_record(&p, f, 16)) == 7) {
            for (int k = 0; k < nf; k++)
                free(f[k]);
            rows++;
        }
        ASSERT_EQ_INT(rows, 1 + (v.head == QKV_VIZ_ALL ? H : 1) * (v.query >= 0 ? 1 : n) * n);
        free(out);
        ASSERT_OK(qkv_viz_png(&s.d, &v, &out, &len));
        ASSERT(len > 8 && !memcmp(out, "\x89PNG", 4));
        free(out);
        synth_free(&s);
    }
}

/* ---- refusals ------------------------------------------------------------------------ */

static void test_bad_views_refused(void) {
    synth s;
    synth_make(&s, 5, 2, 3, 1, 2);
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    char *out = (char *)"untouched";
    size_t len;
    v.layer = 2;
    ASSERT(qkv_viz_ansi(&s.d, &v, &out, &len) == QKV_ERANGE);
    ASSERT(strstr(qkv_last_error(), "layer 2") && strstr(qkv_last_error(), "2 layers"));
    v.layer = 0;
    v.head = 3;
    ASSERT(qkv_viz_svg(&s.d, &v, &out, &len) == QKV_ERANGE);
    ASSERT(strstr(qkv_last_error(), "head 3"));
    v.head = -7;
    ASSERT(qkv_viz_json(&s.d, &v, &out, &len) == QKV_ERANGE);
    v.head = 0;
    v.query = 5;
    ASSERT(qkv_viz_csv(&s.d, &v, &out, &len) == QKV_ERANGE);
    ASSERT(strstr(qkv_last_error(), "query 5"));
    v.query = -1;
    v.vmax = NAN;
    ASSERT(qkv_viz_png(&s.d, &v, &out, &len) == QKV_EINVAL);
    v.vmax = 0;
    s.d.n_tokens = 0;
    ASSERT(qkv_viz_ansi(&s.d, &v, &out, &len) == QKV_ERANGE);
    s.d.n_tokens = 5;
    s.d.attn = NULL;
    ASSERT(qkv_viz_json(&s.d, &v, &out, &len) == QKV_EINVAL);
    s.d.attn = s.attn;
    s.d.n_top = 3; /* without arrays */
    ASSERT(qkv_viz_json(&s.d, &v, &out, &len) == QKV_EINVAL);
    ASSERT(!strcmp(out, "untouched"));
    ASSERT(qkv_viz_json(NULL, &v, &out, &len) == QKV_EINVAL);
    synth_free(&s);
}

int main(void) {
    RUN(test_label_spaces_and_breaks);
    RUN(test_label_unsafe_bytes_as_hex);
    RUN(test_label_lossy_and_always_valid);
    RUN(test_colormap_endpoints);
    RUN(test_json_tokens_bytes_numbers);
    RUN(test_json_one_head_and_mean);
    RUN(test_json_predictions);
    RUN(test_head_list_three_plus_mean);
    RUN(test_drop_first_renormalises);
    RUN(test_csv_quoting_and_numbers);
    RUN(test_svg_escaping_single_and_grid);
    RUN(test_ansi_fits_every_width);
    RUN(test_ansi_numbers_and_scale);
    RUN(test_ansi_query_bars);
    RUN(test_png_structure);
    RUN(test_random_tokens_every_format);
    RUN(test_bad_views_refused);
    return test_summary();
}
