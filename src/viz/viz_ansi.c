/* viz_ansi.c -- attention in the terminal.
 *
 * DESIGN
 * One head: rows are queries (index + label), columns keys (their labels written
 * downwards above them), each cell a background colour from the scale with weight x 100
 * printed in it when there is room (3 columns a cell), else 2- or 1-column cells. Several
 * heads: small multiples side by side, as many per band as the width allows. Masked cells
 * (causal) stay blank, so the triangle shows. A query (view->query) is drawn as bars with
 * the weights as numbers. Every output ends with a labelled colour scale. Without colour,
 * numbers and shade characters carry the same information. Every coloured run is reset
 * before the line ends, and token text reaches the terminal only through the safe labels
 * (no escape sequences, no bidi controls). */
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESET "\x1b[0m"
#define BOLD "\x1b[1m"
#define DIM "\x1b[2m"
#define MIDDOT "\xC2\xB7"

typedef struct ansi_ctx {
    const qkv_viz_data *d;
    const qkv_viz_view *v;
    qkv__viz_labels lab;
    qkv__buf b;
    float vmax;
    float *scratch; /* [N, N] for head averages */
    int width;
    int idx_w; /* digits of the largest token index */
    int lab_w; /* label column width */
    int cw;    /* heatmap cell width used (0: bars) */
} ansi_ctx;

static void set_color(ansi_ctx *c, const uint8_t rgb[3], int background) {
    if (c->v->color == QKV_VIZ_COLOR_TRUE)
        qkv__buf_printf(&c->b, "\x1b[%d;2;%u;%u;%um", background ? 48 : 38, rgb[0], rgb[1], rgb[2]);
    else if (c->v->color == QKV_VIZ_COLOR_256)
        qkv__buf_printf(&c->b, "\x1b[%d;5;%dm", background ? 48 : 38, qkv__viz_xterm256(rgb));
}

/* A colour of the scale (t in [0, 1]). In 256 colours the nearest palette entry collapses
 * viridis' dark half into two purples, so the scale uses its own ramp of 16 palette
 * entries along viridis' hues (purple, blue, teal, green, yellow), lightness rising. */
static void scale_color(ansi_ctx *c, float t, int background) {
    static const uint8_t ramp[16] = {53, 54, 55, 24, 25, 31,  30,  37,
                                     36, 35, 72, 71, 77, 113, 149, 220};
    if (c->v->color == QKV_VIZ_COLOR_256) {
        int k = (int)lrintf(t * 15.0f);
        k = k < 0 ? 0 : k > 15 ? 15 : k;
        qkv__buf_printf(&c->b, "\x1b[%d;5;%dm", background ? 48 : 38, ramp[k]);
        return;
    }
    uint8_t rgb[3];
    qkv_viz_colormap(t, rgb);
    set_color(c, rgb, background);
}

static void style(ansi_ctx *c, const char *seq) {
    if (c->v->color != QKV_VIZ_COLOR_NONE)
        qkv__buf_puts(&c->b, seq);
}

/* Position on the colour scale, 0..1. */
static float scaled(const ansi_ctx *c, float w) {
    float t = w / c->vmax;
    return t > 1.0f ? 1.0f : t > 0.0f ? t : 0.0f; /* NaN -> 0 */
}

static int digits(int x) {
    int n = 1;
    while (x >= 10)
        x /= 10, n++;
    return n;
}

/* Code points of a label (valid UTF-8 by construction). */
static int cp_count(const char *s) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

static void title(ansi_ctx *c) {
    const qkv_viz_data *d = c->d;
    const qkv_viz_view *v = c->v;
    char *name = NULL;
    const char *mn = qkv__viz_model_name(d);
    if (qkv_viz_label(mn, strlen(mn), 0, &name)) {
        c->b.failed = 1;
        return;
    }
    qkv__buf t = {0};
    qkv__buf_puts(&t, name);
    free(name);
    if (v->layer == QKV_VIZ_ALL)
        qkv__buf_printf(&t, " " MIDDOT " every layer");
    else
        qkv__buf_printf(&t, " " MIDDOT " layer %d (of %d)", v->layer, d->n_layer);
    char heads[160];
    qkv__viz_heads_text(d, v, heads, sizeof heads);
    qkv__buf_printf(&t, " " MIDDOT " %s", heads);
    qkv__buf_printf(&t, " " MIDDOT " %d tokens", d->n_tokens);
    float temp = qkv__viz_temperature(d);
    if (temp != 1.0f)
        qkv__buf_printf(&t, " " MIDDOT " temperature %g", (double)temp);
    if (!d->causal)
        qkv__buf_puts(&t, " " MIDDOT " no causal mask");
    if (v->drop_first)
        qkv__buf_puts(&t, " " MIDDOT " first token ignored, rows renormalised");
    style(c, BOLD);
    if (!t.failed && t.data)
        qkv__vb_fit(&c->b, t.data, c->width, 0);
    style(c, RESET);
    qkv__buf_putc(&c->b, '\n');
    qkv__buf_free(&t);
}

static void panel_name(const ansi_ctx *c, char *buf, size_t cap, int layer, int head) {
    if (head == QKV_VIZ_AVG)
        snprintf(buf, cap, c->v->layer == QKV_VIZ_ALL ? "L%d mean" : "mean", layer);
    else if (c->v->layer == QKV_VIZ_ALL)
        snprintf(buf, cap, "L%d H%d", layer, head);
    else
        snprintf(buf, cap, "head %d", head);
}

static int prefix_width(const ansi_ctx *c) {
    return c->idx_w + 1 + c->lab_w + 1;
}

/* Index (dim) and label, padded to prefix_width(); `mark` draws '>' and bold. */
static void row_prefix(ansi_ctx *c, int i, int mark) {
    style(c, DIM);
    qkv__buf_printf(&c->b, "%*d", c->idx_w, i);
    style(c, RESET);
    qkv__buf_putc(&c->b, mark ? '>' : ' ');
    if (mark)
        style(c, BOLD);
    qkv__vb_fit(&c->b, c->lab.visible[i], c->lab_w, 1);
    if (mark)
        style(c, RESET);
    qkv__buf_putc(&c->b, ' ');
}

/* One heatmap cell, cw columns wide. */
static void cell(ansi_ctx *c, float w, int masked, int cw) {
    if (masked) {
        qkv__vb_repeat(&c->b, " ", cw);
        return;
    }
    if (!isfinite(w)) { /* not a weight: say so rather than colour it */
        qkv__vb_repeat(&c->b, " ", cw - 1);
        qkv__buf_putc(&c->b, '?');
        return;
    }
    float t = scaled(c, w);
    int pct = qkv__viz_pct(w);
    if (c->v->color == QKV_VIZ_COLOR_NONE) {
        if (cw >= 3) { /* the number itself; a dot for < 0.5% */
            if (pct > 0)
                qkv__buf_printf(&c->b, "%*d", cw, pct);
            else {
                qkv__vb_repeat(&c->b, " ", cw - 1);
                qkv__buf_puts(&c->b, MIDDOT);
            }
            return;
        }
        static const char *shade[5] = {MIDDOT, "\xE2\x96\x91", "\xE2\x96\x92", "\xE2\x96\x93",
                                       "\xE2\x96\x88"}; /* · ░ ▒ ▓ █ */
        int k = t < 0.05f ? 0 : t < 0.25f ? 1 : t < 0.5f ? 2 : t < 0.75f ? 3 : 4;
        qkv__vb_repeat(&c->b, shade[k], cw);
        return;
    }
    scale_color(c, t, 1);
    if (cw >= 3 && pct > 0) {
        static const uint8_t dark[3] = {16, 16, 16}, light[3] = {250, 250, 250};
        set_color(c, t > 0.62f ? dark : light, 0);
        qkv__buf_printf(&c->b, "%*d", cw, pct);
    } else {
        qkv__vb_repeat(&c->b, " ", cw);
    }
    qkv__buf_puts(&c->b, RESET);
}

/* Key labels written downwards above the columns, `lines` characters at most (a longer
 * label ends in '…'). */
static void column_labels(ansi_ctx *c, int n_panels, int k_shown, int cw, int gap, int lines) {
    for (int r = 0; r < lines; r++) {
        qkv__vb_repeat(&c->b, " ", prefix_width(c));
        style(c, DIM);
        for (int p = 0; p < n_panels; p++) {
            if (p)
                qkv__vb_repeat(&c->b, " ", gap);
            for (int j = 0; j < k_shown; j++) {
                /* most GPT-2 tokens start with a space: the row labels show its '·', the
                 * column gets its letters (a label of only spaces keeps them) */
                const char *s = c->lab.visible[j];
                if (!strncmp(s, MIDDOT, 2) && s[2])
                    s += 2;
                size_t len = strlen(s), off = 0;
                int total = cp_count(s);
                const char *txt = " ";
                size_t txt_len = 1;
                int w = 1;
                if (r == lines - 1 && total > lines) {
                    txt = "\xE2\x80\xA6"; /* … */
                    txt_len = 3;
                } else if (r < total) {
                    uint32_t cp = '?';
                    int k = 1;
                    for (int q = 0; q <= r; q++) {
                        k = (int)qkv__utf8_decode((const uint8_t *)(const unsigned char *)s + off, len - off, &cp);
                        if (!k)
                            k = 1, cp = '?';
                        if (q < r)
                            off += (size_t)k;
                    }
                    w = qkv__viz_utf8_cp_width(cp);
                    if (w == 1 || (w == 2 && cw >= 2)) {
                        txt = s + off;
                        txt_len = (size_t)k;
                    } else { /* combining mark alone, or a wide character in a narrow cell */
                        txt = "?";
                        w = 1;
                    }
                }
                int lead = (cw - w + 1) / 2;
                if (lead > cw - w)
                    lead = cw - w;
                qkv__vb_repeat(&c->b, " ", lead);
                qkv__buf_put(&c->b, txt, txt_len);
                qkv__vb_repeat(&c->b, " ", cw - w - lead);
            }
        }
        style(c, RESET);
        qkv__buf_putc(&c->b, '\n');
    }
}

/* Dim notes joined by " · ", wrapped between notes to fit the width (cut only when one
 * note alone is wider). */
static void notes(ansi_ctx *c, const char *const *parts, int n_parts) {
    int used = 0;
    style(c, DIM);
    for (int k = 0; k < n_parts; k++) {
        int w = qkv__viz_utf8_width(parts[k]);
        if (used > 0 && used + 3 + w > c->width) {
            style(c, RESET);
            qkv__buf_putc(&c->b, '\n');
            style(c, DIM);
            used = 0;
        }
        if (used > 0) {
            qkv__buf_puts(&c->b, " " MIDDOT " ");
            used += 3;
        }
        used += qkv__vb_fit(&c->b, parts[k], c->width - used, 0);
    }
    style(c, RESET);
    qkv__buf_putc(&c->b, '\n');
}

static void heatmaps(ansi_ctx *c, const int *panels, int np) {
    int n = c->d->n_tokens;
    int avail = c->width - prefix_width(c);
    if (avail < 1)
        avail = 1;
    int cw, gap = 0, per_band;
    if (np == 1) {
        cw = n * 3 <= avail ? 3 : n * 2 <= avail ? 2 : 1;
        per_band = 1;
    } else {
        gap = 2;
        cw = n * 2 <= avail ? 2 : 1;
        per_band = (avail + gap) / (n * cw + gap);
        if (per_band < 1)
            per_band = 1;
        if (per_band > np)
            per_band = np;
        if (per_band > 64) /* the scratch holds 64 panels; no terminal is that wide anyway */
            per_band = 64;
    }
    int k_shown = n;
    if (per_band == 1 && n * cw > avail)
        k_shown = avail / cw;
    if (k_shown < 1)
        k_shown = 1;
    int max_cps = 0;
    for (int j = 0; j < k_shown; j++) {
        const char *s = c->lab.visible[j];
        int m = cp_count(s) - (!strncmp(s, MIDDOT, 2) && s[2] ? 1 : 0);
        if (m > max_cps)
            max_cps = m;
    }
    int lines = max_cps < (np == 1 ? 6 : 4) ? max_cps : (np == 1 ? 6 : 4);

    for (int start = 0; start < np; start += per_band) {
        int count = np - start < per_band ? np - start : per_band;
        if (np > 1) { /* panel names */
            qkv__vb_repeat(&c->b, " ", prefix_width(c));
            style(c, BOLD);
            for (int p = 0; p < count; p++) {
                char name[48];
                panel_name(c, name, sizeof name, panels[2 * (start + p)],
                           panels[2 * (start + p) + 1]);
                if (p)
                    qkv__vb_repeat(&c->b, " ", gap);
                qkv__vb_fit(&c->b, name, k_shown * cw, p + 1 < count ? 1 : 0);
            }
            style(c, RESET);
            qkv__buf_putc(&c->b, '\n');
        }
        column_labels(c, count, k_shown, cw, gap, lines);
        const float *m[64]; /* count <= per_band <= 64 */
        for (int p = 0; p < count; p++) {
            int head = panels[2 * (start + p) + 1];
            float *scr = qkv__viz_needs_scratch(c->v)
                             ? c->scratch + (size_t)p * (size_t)n * (size_t)n
                             : NULL;
            m[p] = qkv__viz_matrix(c->d, c->v, panels[2 * (start + p)], head, scr);
        }
        for (int i = 0; i < n; i++) {
            row_prefix(c, i, 0);
            for (int p = 0; p < count; p++) {
                if (p)
                    qkv__vb_repeat(&c->b, " ", gap);
                for (int j = 0; j < k_shown; j++)
                    cell(c, m[p][(size_t)i * n + j], qkv__viz_masked(c->d, c->v, i, j), cw);
            }
            qkv__buf_putc(&c->b, '\n');
        }
        if (start + per_band < np)
            qkv__buf_putc(&c->b, '\n');
    }
    const char *parts[4];
    int n_parts = 0;
    parts[n_parts++] = "rows: queries " MIDDOT " columns: keys";
    if (cw >= 3)
        parts[n_parts++] = c->v->color == QKV_VIZ_COLOR_NONE
                               ? "numbers: weight x 100 (" MIDDOT " below 0.005)"
                               : "numbers: weight x 100";
    if (c->d->causal)
        parts[n_parts++] = "blank: masked (causal)";
    if (c->v->drop_first)
        parts[n_parts++] = "key 0 left out, rows renormalised";
    notes(c, parts, n_parts);
    c->cw = cw;
    if (k_shown < n) {
        qkv__buf cut = {0};
        qkv__buf_printf(&cut,
                        "(keys %d..%d not shown: the width is %d columns; try --width, "
                        "--query I or --format svg)",
                        k_shown, n - 1, c->width);
        if (!cut.failed && cut.data)
            qkv__vb_fit(&c->b, cut.data, c->width, 0);
        qkv__buf_putc(&c->b, '\n');
        qkv__buf_free(&cut);
    }
}

static void tick_label(char *buf, size_t cap, float x, float vmax) {
    if (vmax >= 0.1f && vmax < 1000.0f)
        snprintf(buf, cap, "%.2f", (double)x);
    else
        snprintf(buf, cap, "%.3g", (double)x);
}

static void bars(ansi_ctx *c, const int *panels, int np) {
    int n = c->d->n_tokens, q = c->v->query;
    int barw = c->width - prefix_width(c) - 9;
    if (barw < 8)
        barw = 8;
    static const char *part[8] = {"",
                                  "\xE2\x96\x8F",
                                  "\xE2\x96\x8E",
                                  "\xE2\x96\x8D",
                                  "\xE2\x96\x8C",
                                  "\xE2\x96\x8B",
                                  "\xE2\x96\x8A",
                                  "\xE2\x96\x89"}; /* ▏▎▍▌▋▊▉ */
    for (int p = 0; p < np; p++) {
        int layer = panels[2 * p], head = panels[2 * p + 1];
        const float *m = qkv__viz_matrix(c->d, c->v, layer, head, c->scratch);
        const float *row = m + (size_t)q * n;
        char name[48];
        if (head == QKV_VIZ_AVG)
            snprintf(name, sizeof name, "layer %d, mean of %d heads", layer, c->d->n_head);
        else
            snprintf(name, sizeof name, "layer %d, head %d", layer, head);
        style(c, BOLD);
        qkv__buf hdr = {0};
        qkv__buf_printf(&hdr, "query %d ", q);
        qkv__buf_puts(&hdr, c->lab.visible[q]);
        qkv__buf_printf(&hdr, " attends to (%s):", name);
        if (!hdr.failed && hdr.data)
            qkv__vb_fit(&c->b, hdr.data, c->width, 0);
        qkv__buf_free(&hdr);
        style(c, RESET);
        qkv__buf_putc(&c->b, '\n');
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!qkv__viz_masked(c->d, c->v, q, j) && (best < 0 || row[j] > row[best]))
                best = j;
        for (int j = 0; j < n; j++) {
            if (qkv__viz_masked(c->d, c->v, q, j))
                continue;
            float t = scaled(c, row[j]);
            row_prefix(c, j, j == best);
            long eighths = lrintf(t * (float)barw * 8.0f);
            int full = (int)(eighths / 8), rem = (int)(eighths % 8);
            if (c->v->color != QKV_VIZ_COLOR_NONE) {
                scale_color(c, 0.25f + 0.75f * t, 0); /* never darker than readable */
            }
            qkv__vb_repeat(&c->b, "\xE2\x96\x88", full); /* █ */
            qkv__buf_puts(&c->b, part[rem]);
            style(c, RESET);
            qkv__vb_repeat(&c->b, " ", barw - full - (rem ? 1 : 0));
            if (j == best)
                style(c, BOLD);
            /* 9 columns at most: " 0.4213"; odd numbers (not softmax weights) in %e */
            if (row[j] > -10.0f && row[j] < 100.0f)
                qkv__buf_printf(&c->b, " %.4f", (double)row[j]);
            else
                qkv__buf_printf(&c->b, row[j] < 0 ? " %.1e" : " %.2e", (double)row[j]);
            if (j == best)
                style(c, RESET);
            qkv__buf_putc(&c->b, '\n');
        }
        char full[32];
        tick_label(full, sizeof full, c->vmax, c->vmax);
        /* how spread the weights are: the focus dial's effect in one number */
        double ent = 0;
        int n_seen = 0;
        for (int j = 0; j < n; j++) {
            if (qkv__viz_masked(c->d, c->v, q, j))
                continue;
            n_seen++;
            if (row[j] > 0 && isfinite(row[j]))
                ent -= row[j] * log2((double)row[j]);
        }
        qkv__buf note = {0};
        qkv__buf_printf(&note, "(a full bar is %s", full);
        if (c->d->causal && q + 1 < n)
            qkv__buf_printf(&note, "; tokens %d..%d come later: masked by the causal mask", q + 1,
                            n - 1);
        qkv__buf_printf(&note, ")\nentropy %.2f bits, uniform over %d key%s: %.2f", ent, n_seen,
                        n_seen == 1 ? "" : "s", n_seen > 0 ? log2((double)n_seen) : 0.0);
        /* two lines, each fitted to the width */
        char *second = note.data && !note.failed ? strchr(note.data, '\n') : NULL;
        if (second) {
            *second++ = '\0';
            style(c, DIM);
            qkv__vb_fit(&c->b, note.data, c->width, 0);
            style(c, RESET);
            qkv__buf_putc(&c->b, '\n');
            style(c, DIM);
            qkv__vb_fit(&c->b, second, c->width, 0);
            style(c, RESET);
            qkv__buf_putc(&c->b, '\n');
        } else {
            c->b.failed = 1;
        }
        qkv__buf_free(&note);
        if (p + 1 < np)
            qkv__buf_putc(&c->b, '\n');
    }
}

/* The colour scale with numbers under it: 0, 1/4, 1/2, 3/4 and 1 of vmax. */
static void legend(ansi_ctx *c) {
    const char *cap = c->v->color == QKV_VIZ_COLOR_NONE ? "" : "scale ";
    int lb = c->width - 8;
    if (lb > 41)
        lb = 41;
    if (lb < 9)
        lb = 9;
    qkv__buf_puts(&c->b, cap);
    if (c->v->color == QKV_VIZ_COLOR_NONE) {
        char mx[32];
        tick_label(mx, sizeof mx, c->vmax, c->vmax);
        qkv__buf t = {0};
        if (c->cw >= 3) { /* the cells are the numbers, as the note above says */
            qkv__buf_free(&t);
            return;
        }
        qkv__buf_printf(&t,
                        MIDDOT " <5%%  \xE2\x96\x91 <25%%  \xE2\x96\x92 <50%%  "
                              "\xE2\x96\x93 <75%%  \xE2\x96\x88 >=75%% of %s",
                        mx);
        if (!t.failed && t.data)
            qkv__vb_fit(&c->b, t.data, c->width, 0);
        qkv__buf_putc(&c->b, '\n');
        qkv__buf_free(&t);
        return;
    }
    for (int k = 0; k < lb; k++) {
        scale_color(c, (float)k / (float)(lb - 1), 1);
        qkv__buf_putc(&c->b, ' ');
    }
    qkv__buf_puts(&c->b, RESET);
    int room = c->width - (int)strlen(cap) - lb;
    qkv__buf_puts(&c->b, room >= 17 ? " attention weight\n" : room >= 7 ? " weight\n" : "\n");
    /* ticks: labels start under their position, the last one ends under the bar's end */
    char line[256];
    memset(line, ' ', sizeof line);
    int used = 0;
    for (int k = 0; k <= 4; k++) {
        char lbl[32];
        tick_label(lbl, sizeof lbl, c->vmax * (float)k / 4.0f, c->vmax);
        int w = (int)strlen(lbl);
        int pos = (int)lrintf((float)k / 4.0f * (float)(lb - 1));
        if (k == 4)
            pos = lb - w;
        if (pos < used)
            pos = used;
        /* a tick that would crowd its neighbours (narrow terminals) is left out; the ends stay */
        if (pos + w > (k == 4 ? lb : lb - 5) || pos + w > (int)sizeof line - 1)
            continue;
        memcpy(line + pos, lbl, (size_t)w);
        used = pos + w + 1;
    }
    qkv__vb_repeat(&c->b, " ", (int)strlen(cap));
    qkv__buf_put(&c->b, line, (size_t)(used > 0 ? used - 1 : 0));
    qkv__buf_putc(&c->b, '\n');
}

static void predictions(ansi_ctx *c) {
    const qkv_viz_data *d = c->d;
    if (d->n_top <= 0)
        return;
    qkv__buf t = {0};
    qkv__buf_puts(&t, "next token after \"");
    qkv__buf_puts(&t, c->lab.visible[d->n_tokens - 1]);
    qkv__buf_puts(&t, "\":");
    for (int k = 0; k < d->n_top; k++) {
        char *lbl = NULL;
        size_t tl = d->top_bytes[k] ? d->top_len[k] : 0;
        if (qkv_viz_label(d->top_bytes[k], tl, QKV_VIZ_LABEL_SPACES | QKV_VIZ_LABEL_BREAKS, &lbl)) {
            t.failed = 1;
            break;
        }
        qkv__buf_printf(&t, "%s%s %.1f%%", k ? ",  " : "  ", lbl, 100.0 * d->top_probs[k]);
        free(lbl);
    }
    if (!t.failed && t.data)
        qkv__vb_fit(&c->b, t.data, c->width, 0);
    else
        c->b.failed = 1;
    qkv__buf_putc(&c->b, '\n');
    qkv__buf_free(&t);
}

qkv_status qkv_viz_ansi(const qkv_viz_data *d, const qkv_viz_view *v, char **out, size_t *len) {
    qkv_status st = qkv_viz_validate(d, v);
    if (st)
        return st;
    if (!out)
        return qkv__fail(QKV_EINVAL, "qkv_viz_ansi: out is NULL");
    ansi_ctx c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.v = v;
    if ((st = qkv__viz_labels_make(d, &c.lab)))
        return st;
    int *panels = NULL, np = 0;
    int n = d->n_tokens;
    if ((st = qkv__viz_panels(d, v, &panels, &np)))
        goto done;
    /* scratch: one [N, N] per panel of a band (head means), at most 64 */
    int n_scratch = qkv__viz_needs_scratch(v) ? (np < 64 ? np : 64) : 1;
    size_t nn = (size_t)n * (size_t)n, cnt;
    if (!qkv__mul_size(nn, (size_t)n_scratch, &cnt) || cnt > SIZE_MAX / sizeof(float) ||
        !(c.scratch = malloc(cnt * sizeof(float)))) {
        st = qkv__fail(QKV_ENOMEM, "terminal view: out of memory for %d x %d", n, n);
        goto done;
    }
    c.width = v->width > 0 ? v->width : 80;
    if (c.width < 24)
        c.width = 24;
    if (c.width > 4096)
        c.width = 4096;
    c.idx_w = digits(n - 1);
    c.lab_w = c.lab.max_width < 1 ? 1 : c.lab.max_width;
    if (c.lab_w > 14)
        c.lab_w = 14;
    int lab_cap = c.width / 3 - c.idx_w - 2; /* keep two thirds of the width for cells */
    if (lab_cap < 4)
        lab_cap = 4;
    if (c.lab_w > lab_cap)
        c.lab_w = lab_cap;
    c.vmax = qkv__viz_vmax(d, v, panels, np, c.scratch);

    title(&c);
    if (v->query >= 0) {
        bars(&c, panels, np); /* the bars carry their numbers: no colour scale needed */
    } else {
        heatmaps(&c, panels, np);
        legend(&c);
    }
    predictions(&c);
    st = qkv__buf_finish(&c.b, out, len, "terminal view");
done:
    qkv__buf_free(&c.b);
    free(c.scratch);
    free(panels);
    qkv__viz_labels_free(&c.lab);
    return st;
}
