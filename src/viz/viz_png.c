/* viz_png.c -- attention as a PNG, with no image library: the SVG view's layout drawn into
 * an RGB canvas (rectangles, a built-in anti-aliased bitmap font for labels, rotated for the
 * key axis), then written as a PNG by a small deflate of our own (fixed Huffman codes, runs
 * against the previous pixel and the row above: flat heatmaps compress well), so nothing
 * beyond libc is needed. Labels are ASCII in this font: other characters are drawn as '?'
 * (the SVG, JSON and CSV views keep them). */
#include "viz/canvas.h"
#include "viz/viz_font.h"
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PIXELS (64u * 1024u * 1024u)

typedef qkv__canvas canvas;

static void fill(canvas *c, float fx, float fy, float fw, float fh, const uint8_t rgb[3]) {
    int x0 = (int)lrintf(fx), y0 = (int)lrintf(fy);
    int x1 = (int)lrintf(fx + fw), y1 = (int)lrintf(fy + fh);
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > c->w)
        x1 = c->w;
    if (y1 > c->h)
        y1 = c->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            memcpy(c->px + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void outline(canvas *c, float x, float y, float w, float h, float t, const uint8_t rgb[3]) {
    fill(c, x, y, w, t, rgb);
    fill(c, x, y + h - t, w, t, rgb);
    fill(c, x, y, t, h, rgb);
    fill(c, x + w - t, y, t, h, rgb);
}

static void blend(canvas *c, int x, int y, int cov, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || cov <= 0)
        return;
    uint8_t *p = c->px + ((size_t)y * c->w + x) * 3;
    for (int k = 0; k < 3; k++)
        p[k] = (uint8_t)((p[k] * (15 - cov) + rgb[k] * cov + 7) / 15);
}

/* Glyph index of a code point in the built-in font. */
static int glyph_of(uint32_t cp) {
    if (cp >= 0x20 && cp < 0x7F)
        return (int)cp - 0x20;
    if (cp == 0xB7)
        return 95;
    if (cp == 0x2026)
        return 96;
    if (cp == 0x21B5)
        return 97;
    return '?' - 0x20;
}

static int text_len(const char *s) { /* glyphs drawn for a UTF-8 string */
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

/* Draws s with its baseline at y; rotated: reading upwards, baseline at x (rotate(-90)).
 * bold draws twice, one pixel apart. */
static void text(canvas *c, float fx, float fy, const char *s, const uint8_t rgb[3], int rotated,
                 int bold) {
    int ax = (int)lrintf(fx), ay = (int)lrintf(fy);
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    int pen = 0;
    while (n) {
        uint32_t cp;
        int k = (int)qkv__utf8_decode((const uint8_t *)p, n, &cp);
        if (!k)
            k = 1, cp = '?';
        const unsigned char *g = qkv__font[glyph_of(cp)];
        for (int gy = 0; gy < QKV__FONT_H; gy++)
            for (int gx = 0; gx < QKV__FONT_W; gx++) {
                int idx = gy * QKV__FONT_W + gx;
                int cov = (idx & 1) ? (g[idx / 2] & 0x0F) : (g[idx / 2] >> 4);
                if (!cov)
                    continue;
                for (int bb = 0; bb <= bold; bb++) {
                    if (rotated)
                        blend(c, ax + gy - QKV__FONT_ASCENT, ay - pen - gx - bb, cov, rgb);
                    else
                        blend(c, ax + pen + gx + bb, ay + gy - QKV__FONT_ASCENT, cov, rgb);
                }
            }
        pen += QKV__FONT_W;
        p += k;
        n -= (size_t)k;
    }
}

/* A label cut to cols glyphs (ASCII '…' kept by the font). */
static void label_text(canvas *c, float x, float y, const char *s, int cols, const uint8_t rgb[3],
                       int rotated, int right_align, int bold) {
    qkv__buf t = {0};
    /* the font draws one column per code point: cut by code points, not terminal width */
    int total = text_len(s);
    if (total <= cols) {
        qkv__buf_puts(&t, s);
    } else {
        const unsigned char *p = (const unsigned char *)s;
        int kept = 0;
        while (*p && kept < cols - 1) {
            const unsigned char *q = p + 1;
            while (*q && (*q & 0xC0) == 0x80)
                q++;
            qkv__buf_put(&t, p, (size_t)(q - p));
            p = q;
            kept++;
        }
        qkv__buf_puts(&t, "\xE2\x80\xA6");
    }
    if (t.data) {
        float w = (float)(text_len(t.data) * QKV__FONT_W);
        if (right_align)
            x -= w;
        text(c, x, y, t.data, rgb, rotated, bold);
    }
    qkv__buf_free(&t);
}

/* ---- PNG writer --------------------------------------------------------------------- */

/* CRC-32 (PNG's, zlib's) with a table built per image: no shared state between threads. */
static void crc_init(uint32_t table[256]) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}
static uint32_t crc_update(const uint32_t table[256], uint32_t crc, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

static void put_be32(qkv__buf *b, uint32_t x) {
    uint8_t v[4] = {(uint8_t)(x >> 24), (uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
    qkv__buf_put(b, v, 4);
}

/* Appends a chunk: length, type, data, CRC over type + data. */
static void chunk(qkv__buf *b, const uint32_t crc_table[256], const char type[4],
                  const uint8_t *data, size_t len) {
    put_be32(b, (uint32_t)len);
    size_t at = b->len;
    qkv__buf_put(b, type, 4);
    qkv__buf_put(b, data, len);
    if (b->failed)
        return;
    put_be32(b, crc_update(crc_table, 0xFFFFFFFFu, (const uint8_t *)b->data + at, len + 4) ^
                    0xFFFFFFFFu);
}

/* ---- deflate, small: one fixed-Huffman block whose only back-references are to the
 * previous pixel (distance 3) and to the pixel above (one scanline back). Heatmaps are
 * runs of flat colour, so this gets most of what a full LZ77 search would. */

typedef struct bits {
    uint8_t *p;
    size_t len, cap;
    uint32_t acc;
    int n;
} bits;

static void bits_put(bits *w, uint32_t v, int n) { /* LSB first, as deflate packs */
    w->acc |= v << w->n;
    w->n += n;
    while (w->n >= 8) {
        if (w->len < w->cap)
            w->p[w->len] = (uint8_t)w->acc;
        w->len++;
        w->acc >>= 8;
        w->n -= 8;
    }
}

static void bits_huff(bits *w, uint32_t code, int n) { /* Huffman codes go MSB first */
    uint32_t r = 0;
    for (int k = 0; k < n; k++)
        r |= ((code >> k) & 1u) << (n - 1 - k);
    bits_put(w, r, n);
}

static void put_symbol(bits *w, int sym) { /* the fixed literal/length code (RFC 1951 3.2.6) */
    if (sym < 144)
        bits_huff(w, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256)
        bits_huff(w, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280)
        bits_huff(w, (uint32_t)(sym - 256), 7);
    else
        bits_huff(w, 0xC0u + (uint32_t)(sym - 280), 8);
}

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void put_match(bits *w, int len, int dist) {
    int lc = 28;
    while (len_base[lc] > len)
        lc--;
    put_symbol(w, 257 + lc);
    if (len_extra[lc])
        bits_put(w, (uint32_t)(len - len_base[lc]), len_extra[lc]);
    int dc = 29;
    while (dist_base[dc] > dist)
        dc--;
    bits_huff(w, (uint32_t)dc, 5);
    if (dist_extra[dc])
        bits_put(w, (uint32_t)(dist - dist_base[dc]), dist_extra[dc]);
}

/* zlib stream of raw[0..n): header, one final fixed-Huffman block, Adler-32. The output
 * buffer is sized for the worst case (9 bits a literal), so it never overflows. */
static qkv_status zlib_compress(const uint8_t *raw, size_t n, size_t row, uint8_t **out,
                                size_t *out_len) {
    bits w = {0};
    w.cap = n + n / 8 + 64;
    if (!(w.p = malloc(w.cap)))
        return qkv__fail(QKV_ENOMEM, "PNG view: out of memory");
    bits_put(&w, 0x78, 8);              /* deflate, 32K window */
    bits_put(&w, 0x01, 8);              /* no dictionary; 0x7801 is a multiple of 31 */
    bits_put(&w, 1, 1);                 /* BFINAL */
    bits_put(&w, 1, 2);                 /* BTYPE 01: fixed Huffman codes */
    size_t up = row <= 32768 ? row : 0; /* the pixel above, when within the window */
    for (size_t i = 0; i < n;) {
        int best = 0, dist = 0;
        size_t cand[2] = {3, up};
        for (int k = 0; k < 2; k++) {
            size_t d = cand[k];
            if (!d || i < d)
                continue;
            int l = 0;
            while (l < 258 && i + (size_t)l < n && raw[i + (size_t)l] == raw[i + (size_t)l - d])
                l++;
            if (l > best)
                best = l, dist = (int)d;
        }
        if (best >= 3) {
            put_match(&w, best, dist);
            i += (size_t)best;
        } else {
            put_symbol(&w, raw[i]);
            i++;
        }
    }
    put_symbol(&w, 256); /* end of block */
    if (w.n)
        bits_put(&w, 0, 8 - w.n);
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + raw[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    uint32_t adler = (b << 16) | a;
    for (int k = 3; k >= 0; k--)
        bits_put(&w, (adler >> (8 * k)) & 0xFF, 8);
    if (w.len > w.cap) { /* cannot happen with the bound above; never write past it */
        free(w.p);
        return qkv__fail(QKV_ENOMEM, "PNG view: compressed stream over its bound");
    }
    *out = w.p;
    *out_len = w.len;
    return QKV_OK;
}

static qkv_status png_encode(const canvas *c, qkv__buf *b) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    uint32_t crc_table[256];
    crc_init(crc_table);
    qkv__buf_put(b, sig, 8);
    uint8_t ihdr[13] = {0};
    for (int k = 0; k < 4; k++) {
        ihdr[k] = (uint8_t)((uint32_t)c->w >> (24 - 8 * k));
        ihdr[4 + k] = (uint8_t)((uint32_t)c->h >> (24 - 8 * k));
    }
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* RGB */
    chunk(b, crc_table, "IHDR", ihdr, 13);
    /* raw scanlines: filter byte 0 (none), then the row's pixels */
    size_t row = (size_t)c->w * 3 + 1, raw_len = row * (size_t)c->h;
    uint8_t *raw = malloc(raw_len);
    if (!raw)
        return qkv__fail(QKV_ENOMEM, "PNG view: out of memory for %zu bytes", raw_len);
    for (int y = 0; y < c->h; y++) {
        raw[(size_t)y * row] = 0;
        memcpy(raw + (size_t)y * row + 1, c->px + (size_t)y * c->w * 3, (size_t)c->w * 3);
    }
    uint8_t *z = NULL;
    size_t z_len = 0;
    qkv_status st = zlib_compress(raw, raw_len, row, &z, &z_len);
    free(raw);
    if (st)
        return st;
    chunk(b, crc_table, "IDAT", z, z_len);
    free(z);
    chunk(b, crc_table, "IEND", NULL, 0);
    return QKV_OK;
}

/* ---- the canvas for other pictures (canvas.h) ----------------------------------------- */

qkv_status qkv__canvas_init(qkv__canvas *c, int w, int h, const uint8_t bg[3]) {
    c->w = c->h = 0;
    c->px = NULL;
    if (w < 1 || h < 1 || w > 8192 || h > 8192)
        return qkv__fail(QKV_ERANGE, "canvas: %d x %d pixels outside [1, 8192]", w, h);
    if (!(c->px = malloc((size_t)w * (size_t)h * 3)))
        return qkv__fail(QKV_ENOMEM, "canvas: out of memory for %d x %d pixels", w, h);
    c->w = w;
    c->h = h;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        memcpy(c->px + i * 3, bg, 3);
    return QKV_OK;
}

void qkv__canvas_free(qkv__canvas *c) {
    free(c->px);
    c->px = NULL;
    c->w = c->h = 0;
}

void qkv__canvas_rect(qkv__canvas *c, float x, float y, float w, float h, const uint8_t rgb[3]) {
    fill(c, x, y, w, h, rgb);
}

void qkv__canvas_line(qkv__canvas *c, float x0, float y0, float x1, float y1, float width,
                      const uint8_t rgb[3]) {
    if (!(isfinite(x0) && isfinite(y0) && isfinite(x1) && isfinite(y1)))
        return;
    float r = width * 0.5f + 0.5f;
    int xa = (int)floorf(fminf(x0, x1) - r), xb = (int)ceilf(fmaxf(x0, x1) + r);
    int ya = (int)floorf(fminf(y0, y1) - r), yb = (int)ceilf(fmaxf(y0, y1) + r);
    if (xa < 0) xa = 0;
    if (ya < 0) ya = 0;
    if (xb > c->w - 1) xb = c->w - 1;
    if (yb > c->h - 1) yb = c->h - 1;
    float dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            /* distance from the pixel centre to the segment */
            float px = (float)x + 0.5f - x0, py = (float)y + 0.5f - y0;
            float t = len2 > 0.0f ? (px * dx + py * dy) / len2 : 0.0f;
            t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
            float ex = px - t * dx, ey = py - t * dy, d = sqrtf(ex * ex + ey * ey);
            float cov = width * 0.5f + 0.5f - d;
            if (cov > 0.0f)
                blend(c, x, y, (int)lrintf((cov > 1.0f ? 1.0f : cov) * 15.0f), rgb);
        }
}

void qkv__canvas_text(qkv__canvas *c, float x, float y, const char *s, const uint8_t rgb[3],
                      int align, int rotated) {
    float w = (float)(text_len(s) * QKV__FONT_W);
    float off = align < 0 ? 0.0f : align == 0 ? w * 0.5f : w;
    if (rotated)
        text(c, x, y + off, s, rgb, 1, 0);
    else
        text(c, x - off, y, s, rgb, 0, 0);
}

qkv_status qkv__canvas_png(const qkv__canvas *c, char **out, size_t *len) {
    qkv__buf b = {0};
    qkv_status st = png_encode(c, &b);
    if (st) {
        qkv__buf_free(&b);
        return st;
    }
    return qkv__buf_finish(&b, out, len, "canvas PNG");
}

/* ---- the picture --------------------------------------------------------------------- */

qkv_status qkv_viz_png(const qkv_viz_data *d, const qkv_viz_view *v, char **out, size_t *len) {
    qkv__viz_labels lab;
    int *panels, np;
    float *scratch;
    qkv_status st = qkv__viz_begin(d, v, "qkv_viz_png", out, 1, &lab, &panels, &np, &scratch);
    if (st)
        return st;
    int n = d->n_tokens;
    char *name = NULL;
    canvas cv = {0, 0, NULL};
    qkv__buf b = {0};
    const char *mn = qkv__viz_model_name(d);
    if ((st = qkv_viz_label(mn, strlen(mn), 0, &name)))
        goto done;
    float vmax = qkv__viz_vmax(d, v, panels, np, scratch);
    qkv__viz_layout lo;
    qkv__viz_layout_make(d, v, np, &lab, (float)QKV__FONT_W, (float)QKV__FONT_H - 2.0f, &lo);
    double px = ceil(lo.width) * ceil(lo.height);
    if (px > MAX_PIXELS) {
        st = qkv__fail(QKV_ERANGE,
                       "PNG view: the image would be %.0f x %.0f pixels (over %u): "
                       "use the SVG view, or fewer heads or tokens",
                       ceil(lo.width), ceil(lo.height), MAX_PIXELS);
        goto done;
    }
    cv.w = (int)ceil(lo.width);
    cv.h = (int)ceil(lo.height);
    if (!(cv.px = malloc((size_t)cv.w * (size_t)cv.h * 3))) {
        st = qkv__fail(QKV_ENOMEM, "PNG view: out of memory for %d x %d pixels", cv.w, cv.h);
        goto done;
    }
    memset(cv.px, 255, (size_t)cv.w * (size_t)cv.h * 3);
    static const uint8_t ink[3] = {0x22, 0x22, 0x22}, grey[3] = {0x77, 0x77, 0x77},
                         light[3] = {0x99, 0x99, 0x99}, masked[3] = {0xeb, 0xeb, 0xeb},
                         accent[3] = {0xe8, 0x17, 0x5d}, white[3] = {255, 255, 255},
                         black[3] = {0x11, 0x11, 0x11};

    /* title and subtitle */
    char line[512];
    int o = snprintf(line, sizeof line, "%s", name);
    if (o < 0 || o >= (int)sizeof line)
        o = 0;
    if (v->layer == QKV_VIZ_ALL)
        o += snprintf(line + o, sizeof line - (size_t)o, " \xC2\xB7 every layer");
    else
        o += snprintf(line + o, sizeof line - (size_t)o, " \xC2\xB7 layer %d (of %d)", v->layer,
                      d->n_layer);
    if (o < (int)sizeof line) {
        char heads[160];
        qkv__viz_heads_text(d, v, heads, sizeof heads);
        snprintf(line + o, sizeof line - (size_t)o, " \xC2\xB7 %s", heads);
    }
    text(&cv, 12, 22, line, ink, 0, 1);
    snprintf(line, sizeof line, "%d tokens \xC2\xB7 temperature %g \xC2\xB7 %s%s", n,
             (double)qkv__viz_temperature(d), d->causal ? "causal mask" : "no causal mask",
             v->drop_first ? " \xC2\xB7 first token ignored, rows renormalised" : "");
    text(&cv, 12, 40, line, grey, 0, 0);

    float panel = (float)n * lo.cs;
    int lcols = lo.label_cols - (int)strlen("0") - 1;
    for (int k = n - 1; k >= 10; k /= 10)
        lcols--;
    for (int p = 0; p < np; p++) {
        int layer = panels[2 * p], head = panels[2 * p + 1];
        const float *m = qkv__viz_matrix(d, v, layer, head, scratch);
        float x0 = lo.gx + (float)(p % lo.cols) * lo.step_x;
        float y0 = lo.gy + (float)(p / lo.cols) * lo.step_y;
        if (lo.captions) {
            char cap[64];
            if (head == QKV_VIZ_AVG)
                snprintf(cap, sizeof cap, v->layer == QKV_VIZ_ALL ? "L%d mean" : "mean", layer);
            else if (v->layer == QKV_VIZ_ALL)
                snprintf(cap, sizeof cap, "L%d H%d", layer, head);
            else
                snprintf(cap, sizeof cap, "head %d", head);
            text(&cv, x0, y0 - 5, cap, ink, 0, 1);
        }
        fill(&cv, x0, y0, panel, panel, masked);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (qkv__viz_masked(d, v, i, j))
                    continue;
                uint8_t rgb[3];
                float w = m[(size_t)i * n + j];
                qkv_viz_colormap(w / vmax, rgb);
                /* cell edges on whole pixels so neighbours tile without gaps */
                float cx = x0 + (float)j * lo.cs, cy = y0 + (float)i * lo.cs;
                fill(&cv, cx, cy, lo.cs, lo.cs, rgb);
                if (lo.numbers) {
                    int pct = qkv__viz_pct(w);
                    if (pct > 0) {
                        char num[16];
                        snprintf(num, sizeof num, "%d", pct);
                        float tw = (float)(text_len(num) * QKV__FONT_W);
                        text(&cv, cx + (lo.cs - tw) / 2, cy + lo.cs / 2 + 4, num,
                             w / vmax > 0.62f ? black : white, 0, 0);
                    }
                }
            }
        if (v->query >= 0)
            outline(&cv, x0 - 1, y0 + (float)v->query * lo.cs - 1, panel + 2, lo.cs + 2, 2, accent);
    }
    /* labels: queries left of the first column of panels, keys above the first row */
    for (int r = 0; r < lo.rows; r++) {
        float y0 = lo.gy + (float)r * lo.step_y;
        for (int i = 0; i < n; i += lo.label_step) {
            float y = y0 + ((float)i + 0.5f) * lo.cs + 4;
            char idx[16];
            snprintf(idx, sizeof idx, "%d ", i);
            float lw = (float)(text_len(lab.visible[i]) < lcols ? text_len(lab.visible[i]) : lcols);
            label_text(&cv, lo.gx - 6, y, lab.visible[i], lcols, v->query == i ? accent : ink, 0, 1,
                       v->query == i);
            label_text(&cv, lo.gx - 6 - lw * QKV__FONT_W, y, idx, 16, light, 0, 1, 0);
        }
    }
    int top_cols = np < lo.cols ? np : lo.cols;
    for (int cc = 0; cc < top_cols; cc++) {
        float x0 = lo.gx + (float)cc * lo.step_x;
        float y = lo.gy - (lo.captions ? 18.0f : 0.0f) - 6.0f;
        for (int j = 0; j < n; j += lo.label_step)
            label_text(&cv, x0 + ((float)j + 0.5f) * lo.cs + 4, y, lab.visible[j], lcols, ink, 1, 0,
                       0);
    }
    {
        static const char axes[] = "query v  key >";
        text(&cv, lo.gx - 6 - (float)(text_len(axes) * QKV__FONT_W),
             lo.gy - (lo.captions ? 18.0f : 0.0f) - 6.0f, axes, grey, 0, 0);
    }

    /* colour scale: one row of pixels per shade, top = vmax */
    int bh = (int)lrintf(lo.bar_h);
    for (int yy = 0; yy < bh; yy++) {
        uint8_t rgb[3];
        qkv_viz_colormap(1.0f - (float)yy / (float)(bh > 1 ? bh - 1 : 1), rgb);
        fill(&cv, lo.bar_x, lo.bar_y + (float)yy, lo.bar_w, 1, rgb);
    }
    outline(&cv, lo.bar_x, lo.bar_y, lo.bar_w, lo.bar_h, 1, light);
    for (int k = 0; k <= 4; k++) {
        float y = lo.bar_y + lo.bar_h * (1.0f - (float)k / 4.0f);
        char lbl[32];
        float tv = vmax * (float)k / 4.0f;
        if (vmax >= 0.1f && vmax < 1000.0f)
            snprintf(lbl, sizeof lbl, "%.2f", (double)tv);
        else
            snprintf(lbl, sizeof lbl, "%.3g", (double)tv);
        fill(&cv, lo.bar_x + lo.bar_w, y, 4, 1, ink);
        text(&cv, lo.bar_x + lo.bar_w + 7, y + 4, lbl, ink, 0, 0);
    }
    text(&cv, lo.bar_x, lo.bar_y - 8, "weight", ink, 0, 0);
    snprintf(line, sizeof line, "rows: queries \xC2\xB7 columns: keys%s%s",
             d->causal ? " \xC2\xB7 grey: masked (causal)" : "",
             lo.numbers ? " \xC2\xB7 numbers: weight x 100" : "");
    text(&cv, 12, lo.height - 14, line, grey, 0, 0);

    if ((st = png_encode(&cv, &b)))
        goto done;
    st = qkv__buf_finish(&b, out, len, "PNG view");
done:
    qkv__buf_free(&b);
    free(cv.px);
    free(name);
    free(scratch);
    free(panels);
    qkv__viz_labels_free(&lab);
    return st;
}
