/* viz_svg.c -- attention as a standalone SVG: heatmaps with token labels on both axes, a
 * labelled colour scale, a title naming model, layer and head, small multiples for every
 * head (or every layer x head), and a <title> tooltip with the exact weight on each cell.
 * Token text is escaped for XML after the label pass has removed everything XML forbids
 * (control characters, invalid UTF-8). No scripts, no external references. */
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIDDOT "\xC2\xB7"

/* ---------------------------------------------------------------------------------------
 * Layout (shared with the PNG view)
 * ------------------------------------------------------------------------------------- */

static int digits(int x) {
    int n = 1;
    while (x >= 10)
        x /= 10, n++;
    return n;
}

void qkv__viz_layout_make(const qkv_viz_data *d, const qkv_viz_view *v, int np,
                          const qkv__viz_labels *lab, float char_w, float fixed_font,
                          qkv__viz_layout *lo) {
    memset(lo, 0, sizeof *lo);
    int n = d->n_tokens;
    int multi = np > 1;
    lo->n_panels = np;
    float target;
    if (!multi) {
        lo->cols = 1;
        target = 620.0f;
    } else if (v->layer == QKV_VIZ_ALL && np > d->n_layer) {
        lo->cols = np / d->n_layer; /* the overview: a row per layer, a column per head */
        target = 130.0f;
    } else {
        lo->cols = np <= 4 ? np : (int)ceil(sqrt((double)np));
        target = 240.0f;
    }
    lo->rows = (np + lo->cols - 1) / lo->cols;
    float cs = floorf(target / (float)n);
    float cs_max = multi ? 18.0f : 34.0f;
    if (cs > cs_max)
        cs = cs_max;
    if (multi && cs < 10.0f && n <= 48)
        cs = 10.0f; /* room for every label: a bigger picture */
    if (cs < 1.0f)
        cs = 1.0f;
    lo->cs = cs;
    /* labels: every token's when the cells are tall enough for 8 px text, else every k-th */
    float font = cs * 0.8f;
    if (font > 12.0f)
        font = 12.0f;
    lo->label_step = 1;
    if (font < 8.0f) {
        font = 8.0f;
        lo->label_step = (int)ceilf(10.0f / cs);
    }
    lo->font = font;
    lo->char_w = char_w * font / 12.0f;
    if (fixed_font > 0) {
        lo->font = fixed_font;
        lo->char_w = char_w;
        lo->label_step = cs >= fixed_font ? 1 : (int)ceilf(fixed_font / cs);
    }
    int lw = lab->max_width < 16 ? lab->max_width : 16;
    if (lw < 1)
        lw = 1;
    lo->label_cols = digits(n - 1) + 1 + lw;
    lo->numbers = !multi && cs >= 24.0f;
    lo->captions = multi;
    float lab_px = (float)lo->label_cols * lo->char_w + 10.0f;
    float cap_h = multi ? 18.0f : 0.0f;
    float gap = multi ? 16.0f : 0.0f;
    float panel = (float)n * cs;
    lo->gx = 12.0f + lab_px;
    if (lo->gx < 112.0f)
        lo->gx = 112.0f; /* room for the axis names ("query ↓  key →") */
    lo->gy = 56.0f + lab_px + cap_h;
    lo->step_x = panel + gap;
    lo->step_y = panel + cap_h + gap;
    float grid_w = (float)(lo->cols - 1) * lo->step_x + panel;
    float grid_h = (float)(lo->rows - 1) * lo->step_y + panel;
    lo->bar_w = 14.0f;
    lo->bar_x = lo->gx + grid_w + 28.0f;
    lo->bar_y = lo->gy;
    lo->bar_h = grid_h < 120.0f ? 120.0f : grid_h > 300.0f ? 300.0f : grid_h;
    lo->width = lo->bar_x + lo->bar_w + 64.0f;
    if (lo->width < 600.0f)
        lo->width = 600.0f;
    float bottom = lo->gy + grid_h;
    if (lo->bar_y + lo->bar_h + 20.0f > bottom)
        bottom = lo->bar_y + lo->bar_h + 20.0f;
    lo->height = bottom + 40.0f;
}

/* ---------------------------------------------------------------------------------------
 * SVG
 * ------------------------------------------------------------------------------------- */

/* XML text/attribute escaping; s is valid UTF-8 without control characters. */
static void xml(qkv__buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&':
            qkv__buf_puts(b, "&amp;");
            break;
        case '<':
            qkv__buf_puts(b, "&lt;");
            break;
        case '>':
            qkv__buf_puts(b, "&gt;");
            break;
        case '"':
            qkv__buf_puts(b, "&quot;");
            break;
        case '\'':
            qkv__buf_puts(b, "&apos;");
            break;
        default:
            qkv__buf_putc(b, *s);
        }
    }
}

/* A label cut to `cols` columns, escaped. */
static void xml_fit(qkv__buf *b, const char *s, int cols) {
    qkv__buf t = {0};
    qkv__vb_fit(&t, s, cols, 0);
    if (t.failed)
        b->failed = 1;
    else if (t.data)
        xml(b, t.data);
    qkv__buf_free(&t);
}

static void hex_color(char out[8], float t) {
    uint8_t rgb[3];
    qkv_viz_colormap(t, rgb);
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

static void panel_caption(char *buf, size_t cap, const qkv_viz_data *d, const qkv_viz_view *v,
                          int layer, int head) {
    if (head == QKV_VIZ_AVG && v->layer == QKV_VIZ_ALL)
        snprintf(buf, cap, "L%d mean", layer);
    else if (head == QKV_VIZ_AVG)
        snprintf(buf, cap, "mean of %d heads", d->n_head);
    else if (v->layer == QKV_VIZ_ALL)
        snprintf(buf, cap, "L%d H%d", layer, head);
    else
        snprintf(buf, cap, "head %d", head);
}

static void tick_label(char *buf, size_t cap, float x, float vmax) {
    if (vmax >= 0.1f && vmax < 1000.0f)
        snprintf(buf, cap, "%.2f", (double)x);
    else
        snprintf(buf, cap, "%.3g", (double)x);
}

qkv_status qkv_viz_svg(const qkv_viz_data *d, const qkv_viz_view *v, char **out, size_t *len) {
    qkv__viz_labels lab;
    int *panels, np;
    float *scratch;
    qkv_status st = qkv__viz_begin(d, v, "qkv_viz_svg", out, 1, &lab, &panels, &np, &scratch);
    if (st)
        return st;
    int n = d->n_tokens;
    char *name = NULL;
    qkv__buf b = {0};
    const char *mn = qkv__viz_model_name(d);
    if ((st = qkv_viz_label(mn, strlen(mn), 0, &name)))
        goto done;
    float vmax = qkv__viz_vmax(d, v, panels, np, scratch);
    qkv__viz_layout lo;
    qkv__viz_layout_make(d, v, np, &lab, 7.2f, 0.0f, &lo);
    /* tooltips on every cell while the file stays reasonable (~150 bytes a cell) */
    int tooltips = (double)np * n * n <= 40000.0;

    qkv__buf_printf(&b,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                    "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, "
                    "monospace\">\n",
                    ceil(lo.width), ceil(lo.height), ceil(lo.width), ceil(lo.height));
    /* title line */
    qkv__buf title = {0};
    qkv__buf_puts(&title, name);
    if (v->layer == QKV_VIZ_ALL)
        qkv__buf_puts(&title, " " MIDDOT " every layer");
    else
        qkv__buf_printf(&title, " " MIDDOT " layer %d (of %d)", v->layer, d->n_layer);
    char heads[160];
    qkv__viz_heads_text(d, v, heads, sizeof heads);
    qkv__buf_printf(&title, " " MIDDOT " %s", heads);
    if (title.failed)
        b.failed = 1;
    qkv__buf_puts(&b, "<title>");
    if (title.data)
        xml(&b, title.data);
    qkv__buf_puts(&b, "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
    qkv__buf_puts(&b, "<defs><linearGradient id=\"qkv-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
    for (int k = 0; k <= 8; k++) {
        char col[8];
        hex_color(col, (float)k / 8.0f);
        qkv__buf_printf(&b, "<stop offset=\"%.3f\" stop-color=\"%s\"/>", k / 8.0, col);
    }
    qkv__buf_puts(&b, "</linearGradient></defs>\n");
    qkv__buf_puts(&b, "<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\" "
                      "fill=\"#111\">");
    if (title.data)
        xml(&b, title.data);
    qkv__buf_free(&title);
    qkv__buf_printf(&b,
                    "</text>\n<text x=\"12\" y=\"40\" font-size=\"11\" fill=\"#555\">%d "
                    "tokens " MIDDOT " temperature %g " MIDDOT " %s",
                    n, (double)qkv__viz_temperature(d),
                    d->causal ? "causal mask" : "no causal mask");
    if (v->drop_first)
        qkv__buf_puts(&b, " " MIDDOT " first token ignored, rows renormalised");
    if (v->query >= 0) {
        qkv__buf_printf(&b, " " MIDDOT " query %d ", v->query);
        xml_fit(&b, lab.visible[v->query], 24);
        qkv__buf_puts(&b, " outlined");
    }
    qkv__buf_puts(&b, "</text>\n");

    float panel = (float)n * lo.cs;
    int lcols = lo.label_cols - digits(n - 1) - 1; /* columns left for the label text */
    for (int p = 0; p < np; p++) {
        int layer = panels[2 * p], head = panels[2 * p + 1];
        const float *m = qkv__viz_matrix(d, v, layer, head, scratch);
        float x0 = lo.gx + (float)(p % lo.cols) * lo.step_x;
        float y0 = lo.gy + (float)(p / lo.cols) * lo.step_y;
        qkv__buf_printf(&b, "<g transform=\"translate(%.1f,%.1f)\">\n", x0, y0);
        if (lo.captions) {
            char cap[64];
            panel_caption(cap, sizeof cap, d, v, layer, head);
            qkv__buf_printf(&b,
                            "<text x=\"0\" y=\"-6\" font-size=\"11\" font-weight=\"bold\" "
                            "fill=\"#222\">%s</text>\n",
                            cap);
        }
        /* masked cells: the panel's background; then every visible cell */
        qkv__buf_printf(&b, "<rect width=\"%.1f\" height=\"%.1f\" fill=\"#ebebeb\"/>\n", panel,
                        panel);
        qkv__buf_puts(&b, "<g shape-rendering=\"crispEdges\">\n");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (qkv__viz_masked(d, v, i, j))
                    continue;
                float w = m[(size_t)i * n + j];
                char col[8];
                hex_color(col, w / vmax);
                qkv__buf_printf(&b,
                                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                "fill=\"%s\"",
                                (float)j * lo.cs, (float)i * lo.cs, lo.cs, lo.cs, col);
                if (tooltips) {
                    qkv__buf_printf(&b, "><title>query %d ", i);
                    xml_fit(&b, lab.visible[i], 32);
                    qkv__buf_printf(&b, " \xE2\x86\x92 key %d ", j);
                    xml_fit(&b, lab.visible[j], 32);
                    qkv__buf_printf(&b, ": %.4f</title></rect>\n", (double)w);
                } else {
                    qkv__buf_puts(&b, "/>\n");
                }
            }
        qkv__buf_puts(&b, "</g>\n");
        if (lo.numbers) {
            qkv__buf_printf(&b,
                            "<g font-size=\"%.1f\" text-anchor=\"middle\" "
                            "pointer-events=\"none\">\n",
                            lo.cs * 0.4f);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    if (qkv__viz_masked(d, v, i, j))
                        continue;
                    float w = m[(size_t)i * n + j];
                    int pct = qkv__viz_pct(w);
                    if (pct <= 0)
                        continue;
                    qkv__buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">%d</text>\n",
                                    ((float)j + 0.5f) * lo.cs,
                                    ((float)i + 0.5f) * lo.cs + lo.cs * 0.14f,
                                    w / vmax > 0.62f ? "#111" : "#fff", pct);
                }
            qkv__buf_puts(&b, "</g>\n");
        }
        if (v->query >= 0)
            qkv__buf_printf(&b,
                            "<rect x=\"-1\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                            "fill=\"none\" stroke=\"#e8175d\" stroke-width=\"2\"/>\n",
                            (float)v->query * lo.cs - 1.0f, panel + 2.0f, lo.cs + 2.0f);
        qkv__buf_puts(&b, "</g>\n");
    }

    /* labels: queries left of the first column of panels, keys above the first row */
    if (lo.label_step > 0) {
        qkv__buf_printf(&b, "<g font-size=\"%.1f\" fill=\"#222\">\n", lo.font);
        for (int r = 0; r < lo.rows; r++) {
            float y0 = lo.gy + (float)r * lo.step_y;
            for (int i = 0; i < n; i += lo.label_step) {
                int q = v->query == i;
                qkv__buf_printf(&b,
                                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\"%s>"
                                "<tspan fill=\"#999\">%d</tspan> ",
                                lo.gx - 6.0f, y0 + ((float)i + 0.5f) * lo.cs + lo.font * 0.35f,
                                q ? " font-weight=\"bold\" fill=\"#e8175d\"" : "", i);
                xml_fit(&b, lab.visible[i], lcols);
                qkv__buf_puts(&b, "</text>\n");
            }
        }
        int top_cols = np < lo.cols ? np : lo.cols;
        for (int c = 0; c < top_cols; c++) {
            float x0 = lo.gx + (float)c * lo.step_x;
            float y = lo.gy - (lo.captions ? 18.0f : 0.0f) - 6.0f;
            for (int j = 0; j < n; j += lo.label_step) {
                float x = x0 + ((float)j + 0.5f) * lo.cs + lo.font * 0.35f;
                qkv__buf_printf(&b, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\">", x, y);
                xml_fit(&b, lab.visible[j], lcols);
                qkv__buf_printf(&b, " <tspan fill=\"#999\">%d</tspan></text>\n", j);
            }
        }
        qkv__buf_puts(&b, "</g>\n");
    }
    /* axis names */
    qkv__buf_printf(&b,
                    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" "
                    "text-anchor=\"end\">query \xE2\x86\x93  key \xE2\x86\x92</text>\n",
                    lo.gx - 6.0f, lo.gy - (lo.captions ? 18.0f : 0.0f) - 6.0f);

    /* colour scale */
    qkv__buf_printf(&b,
                    "<g font-size=\"11\" fill=\"#222\">\n<rect x=\"%.1f\" y=\"%.1f\" "
                    "width=\"%.1f\" height=\"%.1f\" fill=\"url(#qkv-scale)\" stroke=\"#888\" "
                    "stroke-width=\"0.5\"/>\n",
                    lo.bar_x, lo.bar_y, lo.bar_w, lo.bar_h);
    for (int k = 0; k <= 4; k++) {
        float y = lo.bar_y + lo.bar_h * (1.0f - (float)k / 4.0f);
        char lbl[32];
        tick_label(lbl, sizeof lbl, vmax * (float)k / 4.0f, vmax);
        qkv__buf_printf(&b,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"#444\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                        lo.bar_x + lo.bar_w, y, lo.bar_x + lo.bar_w + 4.0f, y,
                        lo.bar_x + lo.bar_w + 7.0f, y + 4.0f, lbl);
    }
    qkv__buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">weight</text>\n</g>\n", lo.bar_x,
                    lo.bar_y - 8.0f);
    qkv__buf_printf(&b,
                    "<text x=\"12\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">rows: queries " MIDDOT
                    " columns: keys%s%s%s</text>\n",
                    lo.height - 14.0f, d->causal ? " " MIDDOT " grey: masked (causal)" : "",
                    lo.numbers ? " " MIDDOT " numbers: weight x 100" : "",
                    tooltips ? " " MIDDOT " hover a cell for its weight" : "");
    qkv__buf_puts(&b, "</svg>\n");
    st = qkv__buf_finish(&b, out, len, "SVG view");
done:
    qkv__buf_free(&b);
    free(name);
    free(scratch);
    free(panels);
    qkv__viz_labels_free(&lab);
    return st;
}
