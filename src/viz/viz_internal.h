/* viz_internal.h -- private to src/viz: UTF-8 helpers, the per-token labels every renderer
 * shares, and matrix access (one head, or the mean of a layer's heads). Shape letters as in
 * qkv.h: L layers, H heads, N tokens. */
#ifndef QKV_VIZ_INTERNAL_H
#define QKV_VIZ_INTERNAL_H

#include "qkv_internal.h"

#include <stdint.h>

/* Output goes into a qkv__buf (src/common/buf.c): appends never fail loudly, and failed is
 * checked once at the end (qkv__buf_finish), so renderers read as straight-line code. */
/* Appends s `times` times (none when times <= 0). */
void qkv__vb_repeat(qkv__buf *b, const char *s, int times);

/* UTF-8 is decoded by qkv__utf8_decode (src/common/utf8.c), the one decoder. */
/* Terminal columns of one code point (0 for combining and control characters). */
int qkv__viz_utf8_cp_width(uint32_t cp);
/* Terminal columns of a valid UTF-8 string (wide characters count 2, combining 0). */
int qkv__viz_utf8_width(const char *s);
/* Appends s cut to at most max_cols columns ('…' marks a cut), padded with spaces to
 * exactly max_cols when pad (right-aligned when pad < 0). Returns the columns written. */
int qkv__vb_fit(qkv__buf *b, const char *s, int max_cols, int pad);

/* The labels of a sentence, computed once per render. */
typedef struct qkv__viz_labels {
    int n;
    char **visible; /* [n] spaces as '·', breaks as '↵', unsafe bytes as \xNN */
    char **plain;   /* [n] spaces kept, breaks as '↵', unsafe bytes as \xNN (CSV) */
    char **lossy;   /* [n] UTF-8 text, invalid bytes as U+FFFD (JSON "tokens") */
    int max_width;  /* widest visible label, columns */
} qkv__viz_labels;

qkv_status qkv__viz_labels_make(const qkv_viz_data *d, qkv__viz_labels *lab);
void qkv__viz_labels_free(qkv__viz_labels *lab);

/* The N x N matrix of (layer, head) as the view shows it: head == QKV_VIZ_AVG averages
 * the layer's heads, v->drop_first renormalises without key 0; both are computed into
 * scratch ([N, N] floats, owned by the caller; untouched otherwise). */
const float *qkv__viz_matrix(const qkv_viz_data *d, const qkv_viz_view *v, int layer, int head,
                             float *scratch);
/* Does the view need that scratch (a mean of heads, or drop_first)? */
int qkv__viz_needs_scratch(const qkv_viz_view *v);

/* The list of (layer, head) panels a view covers, in drawing order. *panels is malloc'ed
 * pairs {layer, head}; *n_panels their count. */
qkv_status qkv__viz_panels(const qkv_viz_data *d, const qkv_viz_view *v, int **panels,
                           int *n_panels);

/* The start every file renderer shares: validate d and v, make the labels, list the panels
 * and allocate the [N, N] scratch (always when always_scratch, else only when the view needs
 * it). fn names the caller in messages. On failure nothing is left allocated. */
qkv_status qkv__viz_begin(const qkv_viz_data *d, const qkv_viz_view *v, const char *fn, char **out,
                          int always_scratch, qkv__viz_labels *lab, int **panels, int *n_panels,
                          float **scratch);

/* Does the view draw a mean of heads (so renderers need scratch for it)? */
int qkv__viz_has_mean(const qkv_viz_view *v);
/* The heads a view draws, for titles: "all 12 heads", "head 3 (of 12)", "mean of 12 heads",
 * "heads 0, 1, 2 + mean". */
void qkv__viz_heads_text(const qkv_viz_data *d, const qkv_viz_view *v, char *buf, size_t cap);

/* Top of the colour scale for a view: 1, view->vmax, or the largest weight shown. */
float qkv__viz_vmax(const qkv_viz_data *d, const qkv_viz_view *v, const int *panels, int n_panels,
                    float *scratch);

/* Is key j masked for query i? */
static inline int qkv__viz_masked(const qkv_viz_data *d, const qkv_viz_view *v, int i, int j) {
    return (d->causal && j > i) || (v->drop_first && j == 0);
}

/* weight x 100 rounded, as the cells print it; clamped to +-999, and 0 for NaN/inf (the
 * renderers take any floats, not only softmax rows). */
static inline int qkv__viz_pct(float w) {
    if (!(w > -9.99f && w < 9.99f))
        return w >= 9.99f ? 999 : w <= -9.99f ? -999 : 0;
    float x = w * 100.0f;
    return (int)(x >= 0 ? x + 0.5f : x - 0.5f);
}

/* "model", temperature as shown. */
const char *qkv__viz_model_name(const qkv_viz_data *d);
float qkv__viz_temperature(const qkv_viz_data *d);

/* The picture layout shared by the SVG and PNG views (pixels). Panels (one per layer/head
 * pair) sit in a grid of `cols` columns; panel p's heatmap has its top-left corner at
 * (gx + (p % cols) * step_x, gy + (p / cols) * step_y) and is N * cs pixels square. Row
 * labels are drawn left of the first column, key labels above the first row, every
 * label_step-th token when cells are too small for every one. */
typedef struct qkv__viz_layout {
    int n_panels, cols, rows;
    float cs;       /* cell size */
    float font;     /* label font size */
    float char_w;   /* advance of one label column at that size */
    int label_cols; /* label text columns (index + space + label, truncated) */
    int label_step; /* draw every label_step-th label; 0 = none */
    int numbers;    /* print weight x 100 in the cells */
    int captions;   /* caption ("head 3") above each panel */
    float gx, gy, step_x, step_y;
    float bar_x, bar_y, bar_w, bar_h; /* colour scale */
    float width, height;
} qkv__viz_layout;

/* char_w: the advance of one label column at a 12 px font (monospace: 7.2), the font
 * scaling with the cells; or, with fixed_font > 0 (a bitmap font), the advance at that one
 * size. */
void qkv__viz_layout_make(const qkv_viz_data *d, const qkv_viz_view *v, int n_panels,
                          const qkv__viz_labels *lab, float char_w, float fixed_font,
                          qkv__viz_layout *lo);

/* 256-colour palette index nearest to an sRGB colour (6x6x6 cube or grey ramp). */
int qkv__viz_xterm256(const uint8_t rgb[3]);

/* qkv_train_opts.on_checkpoint for the CLI: DIR/loss.svg and DIR/loss.png (loss_curve.c). */
qkv_status qkv__loss_curve_write(void *user, const char *dir, const char *title, const qkv_train_point *pts,
                                 int n);

#endif /* QKV_VIZ_INTERNAL_H */
