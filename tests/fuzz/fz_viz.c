/* fz_viz.c -- the attention views on untrusted token bytes (reliability-anchors.md 4.2 F6:
 * our escapers). Token bytes are whatever a vocabulary holds, so every renderer must cope
 * with control bytes, invalid or partial UTF-8, quotes, '<', '&', NUL.
 *
 * Input: byte 0 = label flags (bits 0-2) and view choices (bits 3-7); byte 1 = N (1..6
 * tokens); then the token bytes, separated by 0xFE (missing tokens are empty); the
 * attention weights are derived from the bytes (rows normalised, some NaN/Inf kept when
 * bit 7 is set, as a model with broken weights would give).
 * Properties: qkv_viz_label's output is NUL-terminated valid UTF-8; without LOSSY it holds no
 * C0/DEL/C1 control, bidi override or U+2028/9; qkv_viz_json's output is valid JSON
 * (jansson) of the stated length; CSV, SVG, ANSI and PNG render without error or crash. */
#include "qkv_internal.h"
#include "fuzz_common.h"

#include <jansson.h>
#include <math.h>

/* Strict UTF-8 walk; calls check(cp) for each code point. 0 if invalid. */
static int utf8_ok(const uint8_t *s, size_t n, int no_controls) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp;
        size_t k;
        if (c < 0x80) cp = c, k = 1;
        else if (c >= 0xC2 && c <= 0xDF) cp = c & 0x1F, k = 2;
        else if (c >= 0xE0 && c <= 0xEF) cp = c & 0x0F, k = 3;
        else if (c >= 0xF0 && c <= 0xF4) cp = c & 0x07, k = 4;
        else return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        if (no_controls && (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
                            (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
                            cp == 0x2028 || cp == 0x2029 || cp == 0x200E || cp == 0x200F))
            return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 4096) return 0;
    int flags = data[0] & 7, opt = data[0] >> 3;
    int n = 1 + data[1] % 6;
    const uint8_t *p = data + 2, *end = data + size;

    const char *tok[6];
    size_t tlen[6];
    for (int i = 0; i < n; i++) {
        const uint8_t *q = p < end ? memchr(p, 0xFE, (size_t)(end - p)) : NULL;
        if (!q) q = end;
        tok[i] = (const char *)p;
        tlen[i] = (size_t)(q - p);
        p = q < end ? q + 1 : end;
    }

    /* labels */
    for (int i = 0; i < n; i++) {
        char *lab = NULL;
        qkv_status st = qkv_viz_label(tok[i], tlen[i], flags, &lab);
        FZ_CHECK(st == QKV_OK, "qkv_viz_label failed: %s", qkv_last_error());
        size_t ll = strlen(lab);
        FZ_CHECK(utf8_ok((const uint8_t *)lab, ll, !(flags & QKV_VIZ_LABEL_LOSSY)),
                 "label of token %d (flags %d) is not clean UTF-8: %.200s", i, flags, lab);
        free(lab);
    }
    fz_note(1, NULL);

    /* one layer, two heads, N x N weights from the bytes */
    int H = 2;
    float *attn = malloc(sizeof(float) * (size_t)(H * n * n));
    FZ_CHECK(attn != NULL, "oom");
    for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++) {
            float sum = 0;
            for (int j = 0; j < n; j++) {
                uint8_t b = data[(size_t)(h * n * n + i * n + j) % size];
                float w = (j <= i) ? (float)(b + 1) : 0.0f;
                attn[(h * n + i) * n + j] = w;
                sum += w;
            }
            for (int j = 0; j < n; j++) attn[(h * n + i) * n + j] /= sum;
        }
    if (opt & 16) { /* broken weights: NaN and Inf must still give valid output */
        attn[0] = NAN;
        attn[H * n * n - 1] = INFINITY;
    }
    int ids[6] = {0, 1, 2, 3, 4, 5};
    int top_ids[2] = {7, 8};
    float top_probs[2] = {0.75f, 0.25f};
    const char *top_bytes[2] = {tok[0], tok[n - 1]};
    size_t top_len[2] = {tlen[0], tlen[n - 1]};
    qkv_viz_data d = {0};
    d.n_tokens = n;
    d.token_bytes = tok;
    d.token_len = tlen;
    d.ids = ids;
    d.n_layer = 1;
    d.n_head = H;
    d.attn = attn;
    d.model_name = (tlen[0] && tlen[0] < 40) ? NULL : "fuzz\"<&model>";
    d.temperature = 0.5f;
    d.causal = opt & 1;
    d.n_top = (opt & 2) ? 2 : 0;
    d.top_ids = top_ids;
    d.top_probs = top_probs;
    d.top_bytes = top_bytes;
    d.top_len = top_len;
    qkv_viz_view v;
    qkv_viz_view_init(&v);
    v.head = (opt & 4) ? QKV_VIZ_AVG : QKV_VIZ_ALL;
    v.query = (opt & 8) ? n - 1 : -1;
    v.drop_first = (opt & 2) && n > 1;
    v.width = 40 + (int)(size % 80);
    v.color = (qkv_viz_color)(size % 3);

    char *out = NULL;
    size_t len = 0;
    qkv_status st = qkv_viz_json(&d, &v, &out, &len);
    FZ_CHECK(st == QKV_OK, "qkv_viz_json failed: %s", qkv_last_error());
    FZ_CHECK(strlen(out) == len, "json length %zu, strlen %zu", len, strlen(out));
    json_error_t err;
    json_t *j = json_loadb(out, len, 0, &err);
    FZ_CHECK(j != NULL, "qkv_viz_json output is not JSON (%s, column %d): %.300s", err.text,
             err.column, out + (err.position > 100 ? err.position - 100 : 0));
    json_decref(j);
    FZ_CHECK(utf8_ok((const uint8_t *)out, len, 0), "json output is not valid UTF-8");
    free(out);

    qkv_status (*text_views[])(const qkv_viz_data *, const qkv_viz_view *, char **, size_t *) = {
        qkv_viz_csv, qkv_viz_svg, qkv_viz_ansi};
    for (size_t k = 0; k < 3; k++) {
        out = NULL;
        st = text_views[k](&d, &v, &out, &len);
        FZ_CHECK(st == QKV_OK, "view %zu failed: %s", k, qkv_last_error());
        FZ_CHECK(strlen(out) == len, "view %zu: length %zu, strlen %zu", k, len, strlen(out));
        FZ_CHECK(utf8_ok((const uint8_t *)out, len, 0), "view %zu output is not valid UTF-8", k);
        free(out);
    }
    if (size % 16 == 0) { /* PNG is slower: a sixteenth of the inputs */
        st = qkv_viz_png(&d, &v, &out, &len);
        FZ_CHECK(st == QKV_OK, "png failed: %s", qkv_last_error());
        FZ_CHECK(len > 8 && memcmp(out, "\x89PNG", 4) == 0, "not a PNG");
        free(out);
    }
    free(attn);
    return 0;
}
