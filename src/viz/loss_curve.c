/*
 * loss_curve.c -- a training run's loss curve as loss.svg and loss.png (the application's
 * side of qkv train: the library reports each checkpoint through qkv_train_opts.on_checkpoint
 * and the CLI draws it here with the viz canvas).
 */
#include "viz/canvas.h"
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double nice_step(double range, int ticks) {
    double raw = range / ticks, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* The loss curve: training loss (thin, light) and validation loss (thick, dots). */
/* The loss curve's frame, shared by loss.svg and loss.png: a W x H picture, plot margins,
 * axis ranges rounded to tick steps. */
enum { CURVE_W = 760, CURVE_H = 420, CURVE_ML = 60, CURVE_MR = 20, CURVE_MT = 40, CURVE_MB = 50 };
typedef struct curve_axes {
    double xmax, ymin, ymax, xs, ys; /* ranges and tick steps */
} curve_axes;

static void curve_axes_of(const qkv_train_point *pts, int n, curve_axes *a) {
    double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n; i++) {
        const qkv_train_point *w = &pts[i];
        if (w->step > xmax) xmax = w->step;
        double lo = w->loss, hi = w->loss;
        if (!isnan(w->val_loss)) {
            lo = fmin(lo, w->val_loss);
            hi = fmax(hi, w->val_loss);
        }
        if (isfinite(lo)) ymin = fmin(ymin, lo);
        if (isfinite(hi)) ymax = fmax(ymax, hi);
    }
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (ymax - ymin < 1e-3) ymax = ymin + 1;
    a->ys = nice_step(ymax - ymin, 6);
    a->ymin = floor(ymin / a->ys) * a->ys;
    a->ymax = ceil(ymax / a->ys) * a->ys;
    a->xmax = xmax;
    a->xs = nice_step(xmax, 8);
}


static qkv_status write_svg(const char *dir, const char *title, const qkv_train_point *pts, int n) {
    const int W = CURVE_W, H = CURVE_H, ml = CURVE_ML, mr = CURVE_MR, mt = CURVE_MT, mb = CURVE_MB;
    curve_axes ax;
    curve_axes_of(pts, n, &ax);
    double xmax = ax.xmax, ymin = ax.ymin, ymax = ax.ymax, ys = ax.ys;
    size_t cap = (size_t)n * 48 + 8192, at = 0;
    char *s = malloc(cap), *path = qkv__path_join(dir, "loss.svg");
    if (!s || !path) {
        free(s);
        free(path);
        return qkv__fail(QKV_ENOMEM, "train: out of memory");
    }
#define OUT(...) at += (size_t)snprintf(s + at, cap - at, __VA_ARGS__)
#define X(v) (ml + (double)(v) / xmax * (W - ml - mr))
#define Y(v) (mt + (ymax - (v)) / (ymax - ymin) * (H - mt - mb))
    OUT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
        "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
        "fill=\"white\"/>\n", W, H, W, H);
    OUT("<text x=\"%d\" y=\"22\" font-size=\"15\">%s</text>\n", ml, title);
    for (double y = ymin; y <= ymax + 1e-9; y += ys)
        OUT("<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" "
            "y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ml, W - mr, Y(y), Y(y), ml - 6, Y(y) + 4, y);
    double xs = ax.xs;
    for (double x = 0; x <= xmax + 1e-9; x += xs)
        OUT("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"%.1f\" "
            "y=\"%d\" text-anchor=\"middle\">%g</text>\n", X(x), X(x), mt, H - mb, X(x), H - mb + 16, x);
    OUT("<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n", (W + ml) / 2, H - 12);
    OUT("<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">"
        "cross-entropy (nats/token)</text>\n", (H + mt - mb) / 2, (H + mt - mb) / 2);
    OUT("<polyline fill=\"none\" stroke=\"#7fa7d9\" stroke-width=\"1\" points=\"");
    for (int i = 0; i < n; i++)
        if (isfinite(pts[i].loss)) OUT("%.1f,%.1f ", X(pts[i].step), Y(pts[i].loss));
    OUT("\"/>\n<polyline fill=\"none\" stroke=\"#d9534f\" stroke-width=\"2\" points=\"");
    for (int i = 0; i < n; i++)
        if (!isnan(pts[i].val_loss)) OUT("%.1f,%.1f ", X(pts[i].step), Y(pts[i].val_loss));
    OUT("\"/>\n");
    for (int i = 0; i < n && at + 256 < cap; i++)
        if (!isnan(pts[i].val_loss))
            OUT("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#d9534f\"><title>step %d: val %.4f"
                "</title></circle>\n", X(pts[i].step), Y(pts[i].val_loss), pts[i].step,
                pts[i].val_loss);
    OUT("<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#7fa7d9\"/><text x=\"%d\" y=\"%d\">"
        "train loss</text>\n", W - 200, W - 180, mt + 12, mt + 12, W - 175, mt + 16);
    OUT("<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#d9534f\" stroke-width=\"2\"/><text "
        "x=\"%d\" y=\"%d\">validation loss</text>\n</svg>\n", W - 200, W - 180, mt + 30, mt + 30,
        W - 175, mt + 34);
#undef OUT
#undef X
#undef Y
    qkv_status st = qkv__write_file(path, s, at);
    free(s);
    free(path);
    return st;
}

/* The same curve as a PNG (our own canvas and encoder, src/viz/canvas.h). */
static qkv_status write_png(const char *dir, const char *title, const qkv_train_point *pts, int n) {
    const int W = CURVE_W, H = CURVE_H, ml = CURVE_ML, mr = CURVE_MR, mt = CURVE_MT, mb = CURVE_MB;
    static const uint8_t white[3] = {255, 255, 255}, grid[3] = {221, 221, 221},
                         ink[3] = {34, 34, 34}, train_c[3] = {127, 167, 217},
                         val_c[3] = {217, 83, 79};
    curve_axes a;
    curve_axes_of(pts, n, &a);
    qkv__canvas c;
    qkv_status st = qkv__canvas_init(&c, W, H, white);
    if (st) return st;
#define X(v) ((float)(ml + (double)(v) / a.xmax * (W - ml - mr)))
#define Y(v) ((float)(mt + (a.ymax - (v)) / (a.ymax - a.ymin) * (H - mt - mb)))
    char t[160];
    snprintf(t, sizeof t, "%s", title);
    qkv__canvas_text(&c, (float)ml, 22.0f, t, ink, -1, 0);
    for (double y = a.ymin; y <= a.ymax + 1e-9; y += a.ys) {
        qkv__canvas_rect(&c, (float)ml, Y(y) - 0.5f, (float)(W - ml - mr), 1.0f, grid);
        snprintf(t, sizeof t, "%g", y);
        qkv__canvas_text(&c, (float)(ml - 6), Y(y) + 4.0f, t, ink, 1, 0);
    }
    for (double x = 0; x <= a.xmax + 1e-9; x += a.xs) {
        qkv__canvas_rect(&c, X(x) - 0.5f, (float)mt, 1.0f, (float)(H - mt - mb), grid);
        snprintf(t, sizeof t, "%g", x);
        qkv__canvas_text(&c, X(x), (float)(H - mb + 16), t, ink, 0, 0);
    }
    qkv__canvas_text(&c, (float)(W + ml) / 2, (float)(H - 12), "step", ink, 0, 0);
    qkv__canvas_text(&c, 20.0f, (float)(H + mt - mb) / 2, "cross-entropy (nats/token)", ink, 0, 1);
    int prev = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(pts[i].loss)) continue;
        if (prev >= 0)
            qkv__canvas_line(&c, X(pts[prev].step), Y(pts[prev].loss), X(pts[i].step),
                             Y(pts[i].loss), 1.0f, train_c);
        prev = i;
    }
    prev = -1;
    for (int i = 0; i < n; i++) {
        if (isnan(pts[i].val_loss)) continue;
        float x = X(pts[i].step), y = Y(pts[i].val_loss);
        if (prev >= 0)
            qkv__canvas_line(&c, X(pts[prev].step), Y(pts[prev].val_loss), x, y, 2.0f, val_c);
        qkv__canvas_line(&c, x, y, x, y, 5.0f, val_c); /* a dot */
        prev = i;
    }
    qkv__canvas_line(&c, (float)(W - 200), (float)(mt + 12), (float)(W - 180), (float)(mt + 12), 1.0f, train_c);
    qkv__canvas_text(&c, (float)(W - 175), (float)(mt + 16), "train loss", ink, -1, 0);
    qkv__canvas_line(&c, (float)(W - 200), (float)(mt + 30), (float)(W - 180), (float)(mt + 30), 2.0f, val_c);
    qkv__canvas_text(&c, (float)(W - 175), (float)(mt + 34), "validation loss", ink, -1, 0);
#undef X
#undef Y
    char *png = NULL, *path = qkv__path_join(dir, "loss.png");
    size_t len = 0;
    st = path ? qkv__canvas_png(&c, &png, &len) : qkv__fail(QKV_ENOMEM, "train: out of memory");
    if (!st) st = qkv__write_file(path, png, len);
    free(png);
    free(path);
    qkv__canvas_free(&c);
    return st;
}

qkv_status qkv__loss_curve_write(void *user, const char *dir, const char *title, const qkv_train_point *pts,
                                 int n) {
    (void)user;
    qkv_status st = write_svg(dir, title, pts, n);
    if (!st) st = write_png(dir, title, pts, n);
    return st;
}
