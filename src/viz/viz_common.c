/* viz_common.c -- what every attention view shares: repeated output, terminal widths of
 * UTF-8, safe token labels, the colour scale, validation of a view against its data,
 * and matrix access (one head or the mean of a layer's heads). */
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------------------------------
 * Output (into a qkv__buf, src/common/buf.c)
 * ------------------------------------------------------------------------------------- */

void qkv__vb_repeat(qkv__buf *b, const char *s, int times) {
    size_t n = strlen(s);
    for (int i = 0; i < times; i++)
        qkv__buf_put(b, s, n);
}

/* ---------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------- */


int qkv__viz_utf8_cp_width(uint32_t cp) {
    int w = utf8proc_charwidth((utf8proc_int32_t)cp);
    return w < 0 ? 0 : w;
}

int qkv__viz_utf8_width(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    int w = 0;
    while (n) {
        uint32_t cp;
        int k = (int)qkv__utf8_decode((const uint8_t *)p, n, &cp);
        if (!k) { /* labels are valid UTF-8; count a stray byte as one column anyway */
            k = 1;
            cp = '?';
        }
        w += qkv__viz_utf8_cp_width(cp);
        p += k;
        n -= (size_t)k;
    }
    return w;
}

int qkv__vb_fit(qkv__buf *b, const char *s, int max_cols, int pad) {
    if (max_cols <= 0)
        return 0;
    int total = qkv__viz_utf8_width(s);
    int cols = 0;
    if (pad < 0 && total < max_cols) {
        qkv__vb_repeat(b, " ", max_cols - total);
        cols = max_cols - total;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    /* Room for the text itself: everything if it fits, else max_cols - 1 and an ellipsis. */
    int budget = total <= max_cols ? max_cols : max_cols - 1;
    int used = 0;
    while (n) {
        uint32_t cp;
        int k = (int)qkv__utf8_decode((const uint8_t *)p, n, &cp);
        if (!k)
            k = 1, cp = '?';
        int w = qkv__viz_utf8_cp_width(cp);
        if (used + w > budget)
            break;
        if (k == 1 && cp == '?' && *p != '?')
            qkv__buf_putc(b, '?');
        else
            qkv__buf_put(b, p, (size_t)k);
        used += w;
        p += k;
        n -= (size_t)k;
    }
    cols += used;
    if (total > max_cols) {
        qkv__buf_puts(b, "\xE2\x80\xA6"); /* … */
        cols++;
    }
    if (pad > 0 && cols < max_cols) {
        qkv__vb_repeat(b, " ", max_cols - cols);
        cols = max_cols;
    }
    return cols;
}

/* ---------------------------------------------------------------------------------------
 * Token labels
 * ------------------------------------------------------------------------------------- */

/* Code points a label must not carry raw: they reorder, hide or break the text around
 * them in terminals, spreadsheets and XML (C0/C1 controls, DEL, bidi controls, line and
 * paragraph separators, BOM, XML's non-characters). */
static int cp_unsafe(uint32_t cp) {
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0x061C || cp == 0x200E ||
           cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF;
}

qkv_status qkv_viz_label(const char *bytes, size_t len, int flags, char **out) {
    if (!out)
        return qkv__fail(QKV_EINVAL, "qkv_viz_label: out is NULL");
    *out = NULL;
    if (!bytes && len)
        return qkv__fail(QKV_EINVAL, "qkv_viz_label: bytes is NULL");
    qkv__buf b = {0};
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int k = (int)qkv__utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (!k) {
            if (flags & QKV_VIZ_LABEL_LOSSY)
                qkv__buf_puts(&b, "\xEF\xBF\xBD"); /* U+FFFD */
            else
                qkv__buf_printf(&b, "\\x%02x", s[i]);
            i++;
            continue;
        }
        if (cp == ' ' && (flags & QKV_VIZ_LABEL_SPACES))
            qkv__buf_puts(&b, "\xC2\xB7"); /* · */
        else if (cp == '\n' && (flags & QKV_VIZ_LABEL_BREAKS))
            qkv__buf_puts(&b, "\xE2\x86\xB5"); /* ↵ */
        else if (cp == '\t' && (flags & QKV_VIZ_LABEL_BREAKS))
            qkv__buf_puts(&b, "\xE2\x87\xA5"); /* ⇥ */
        else if (cp == '\r' && (flags & QKV_VIZ_LABEL_BREAKS))
            qkv__buf_puts(&b, "\xE2\x90\x8D"); /* ␍ */
        else if (!(flags & QKV_VIZ_LABEL_LOSSY) && cp_unsafe(cp)) {
            if (cp < 0x80)
                qkv__buf_printf(&b, "\\x%02x", (unsigned)cp);
            else
                qkv__buf_printf(&b, "\\u%04x", (unsigned)cp);
        } else
            qkv__buf_put(&b, s + i, (size_t)k);
        i += (size_t)k;
    }
    return qkv__buf_finish(&b, out, NULL, "token label");
}

qkv_status qkv__viz_labels_make(const qkv_viz_data *d, qkv__viz_labels *lab) {
    memset(lab, 0, sizeof *lab);
    lab->n = d->n_tokens;
    lab->visible = calloc((size_t)d->n_tokens, sizeof(char *));
    lab->plain = calloc((size_t)d->n_tokens, sizeof(char *));
    lab->lossy = calloc((size_t)d->n_tokens, sizeof(char *));
    if (!lab->visible || !lab->plain || !lab->lossy) {
        qkv__viz_labels_free(lab);
        return qkv__fail(QKV_ENOMEM, "token labels: out of memory");
    }
    for (int i = 0; i < d->n_tokens; i++) {
        const char *bytes = d->token_bytes[i];
        size_t len = bytes ? d->token_len[i] : 0;
        qkv_status st;
        if ((st = qkv_viz_label(bytes, len, QKV_VIZ_LABEL_SPACES | QKV_VIZ_LABEL_BREAKS,
                                &lab->visible[i])) ||
            (st = qkv_viz_label(bytes, len, QKV_VIZ_LABEL_BREAKS, &lab->plain[i])) ||
            (st = qkv_viz_label(bytes, len, QKV_VIZ_LABEL_LOSSY, &lab->lossy[i]))) {
            qkv__viz_labels_free(lab);
            return st;
        }
        int w = qkv__viz_utf8_width(lab->visible[i]);
        if (w > lab->max_width)
            lab->max_width = w;
    }
    return QKV_OK;
}

void qkv__viz_labels_free(qkv__viz_labels *lab) {
    for (int i = 0; i < lab->n; i++) {
        if (lab->visible)
            free(lab->visible[i]);
        if (lab->plain)
            free(lab->plain[i]);
        if (lab->lossy)
            free(lab->lossy[i]);
    }
    free(lab->visible);
    free(lab->plain);
    free(lab->lossy);
    memset(lab, 0, sizeof *lab);
}

/* ---------------------------------------------------------------------------------------
 * Colour scale: viridis (perceptually uniform, readable in grey and by colour-blind
 * readers), piecewise linear through its nine standard stops.
 * ------------------------------------------------------------------------------------- */

static const uint8_t viridis_stops[9][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x49, 0x89},
    {0x31, 0x68, 0x8e}, {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89},
    {0x35, 0xb7, 0x79}, {0x6e, 0xce, 0x58}, {0xfd, 0xe7, 0x25},
};

void qkv_viz_colormap(float t, uint8_t rgb[3]) {
    if (!(t > 0.0f))
        t = 0.0f; /* also NaN */
    if (t > 1.0f)
        t = 1.0f;
    float x = t * 8.0f;
    int k = (int)x;
    if (k >= 8)
        k = 7;
    float f = x - (float)k;
    for (int c = 0; c < 3; c++) {
        float v = (float)viridis_stops[k][c] * (1.0f - f) + (float)viridis_stops[k + 1][c] * f;
        rgb[c] = (uint8_t)lrintf(v);
    }
}

int qkv__viz_xterm256(const uint8_t rgb[3]) {
    static const int level[6] = {0, 95, 135, 175, 215, 255};
    int idx[3], cube_err = 0;
    for (int c = 0; c < 3; c++) {
        int best = 0;
        for (int l = 1; l < 6; l++)
            if (abs(level[l] - rgb[c]) < abs(level[best] - rgb[c]))
                best = l;
        idx[c] = best;
        cube_err += (level[best] - rgb[c]) * (level[best] - rgb[c]);
    }
    int grey = (rgb[0] + rgb[1] + rgb[2]) / 3;
    int gi = (grey - 8 + 5) / 10; /* ramp 232..255 is 8, 18, ..., 238 */
    if (gi < 0)
        gi = 0;
    if (gi > 23)
        gi = 23;
    int gv = 8 + 10 * gi, grey_err = 0;
    for (int c = 0; c < 3; c++)
        grey_err += (gv - rgb[c]) * (gv - rgb[c]);
    if (grey_err < cube_err)
        return 232 + gi;
    return 16 + 36 * idx[0] + 6 * idx[1] + idx[2];
}

/* ---------------------------------------------------------------------------------------
 * Views against data
 * ------------------------------------------------------------------------------------- */

void qkv_viz_view_init(qkv_viz_view *v) {
    memset(v, 0, sizeof *v);
    v->layer = 0;
    v->head = QKV_VIZ_ALL;
    v->query = -1;
    v->width = 80;
    v->color = QKV_VIZ_COLOR_TRUE;
    v->vmax = 0.0f;
}

/* Matrices beyond this are not something a view can draw (or a caller meant). */
#define QKV__VIZ_MAX_TOKENS 65536

qkv_status qkv_viz_validate(const qkv_viz_data *d, const qkv_viz_view *v) {
    if (!d || !v)
        return qkv__fail(QKV_EINVAL, "attention view: data or view is NULL");
    if (d->n_tokens < 1 || d->n_tokens > QKV__VIZ_MAX_TOKENS)
        return qkv__fail(QKV_ERANGE, "attention view: %d tokens (need 1..%d)", d->n_tokens,
                         QKV__VIZ_MAX_TOKENS);
    if (d->n_layer < 1 || d->n_head < 1 || d->n_layer > 4096 || d->n_head > 4096)
        return qkv__fail(QKV_ERANGE, "attention view: %d layers x %d heads (need >= 1)", d->n_layer,
                         d->n_head);
    if (!d->attn || !d->token_bytes || !d->token_len)
        return qkv__fail(QKV_EINVAL, "attention view: attention or token arrays are NULL");
    if (d->n_top < 0 ||
        (d->n_top > 0 && (!d->top_ids || !d->top_probs || !d->top_bytes || !d->top_len)))
        return qkv__fail(QKV_EINVAL, "attention view: %d predictions without their arrays",
                         d->n_top);
    if (v->layer != QKV_VIZ_ALL && (v->layer < 0 || v->layer >= d->n_layer))
        return qkv__fail(QKV_ERANGE, "layer %d out of range: the model has %d layers (0..%d)",
                         v->layer, d->n_layer, d->n_layer - 1);
    if (v->head != QKV_VIZ_ALL && v->head != QKV_VIZ_AVG && (v->head < 0 || v->head >= d->n_head))
        return qkv__fail(QKV_ERANGE, "head %d out of range: the model has %d heads (0..%d)",
                         v->head, d->n_head, d->n_head - 1);
    if (v->n_heads < 0 || v->n_heads > 1024 || (v->n_heads > 0 && !v->heads))
        return qkv__fail(QKV_EINVAL, "attention view: a list of %d heads %s", v->n_heads,
                         v->n_heads > 0 ? "without its array" : "(need 0..1024)");
    for (int k = 0; k < v->n_heads; k++)
        if (v->heads[k] != QKV_VIZ_AVG && (v->heads[k] < 0 || v->heads[k] >= d->n_head))
            return qkv__fail(QKV_ERANGE, "head %d out of range: the model has %d heads (0..%d)",
                             v->heads[k], d->n_head, d->n_head - 1);
    if (v->query < -1 || v->query >= d->n_tokens)
        return qkv__fail(QKV_ERANGE, "query %d out of range: the sentence has %d tokens (0..%d)",
                         v->query, d->n_tokens, d->n_tokens - 1);
    if (v->color < QKV_VIZ_COLOR_NONE || v->color > QKV_VIZ_COLOR_TRUE)
        return qkv__fail(QKV_EINVAL, "attention view: unknown colour mode %d", (int)v->color);
    if (isnan(v->vmax))
        return qkv__fail(QKV_EINVAL, "attention view: colour scale top is NaN");
    return QKV_OK;
}

const float *qkv__viz_matrix(const qkv_viz_data *d, const qkv_viz_view *v, int layer, int head,
                             float *scratch) {
    int n = d->n_tokens;
    size_t nn = (size_t)n * (size_t)n;
    const float *base = d->attn + (size_t)layer * (size_t)d->n_head * nn;
    if (head >= 0 && !v->drop_first)
        return base + (size_t)head * nn;
    if (head >= 0) {
        memcpy(scratch, base + (size_t)head * nn, nn * sizeof(float));
    } else { /* mean of the heads, accumulated in double so the order of heads does not matter */
        for (size_t e = 0; e < nn; e++) {
            double s = 0;
            for (int h = 0; h < d->n_head; h++)
                s += base[(size_t)h * nn + e];
            scratch[e] = (float)(s / d->n_head);
        }
    }
    if (v->drop_first) /* each row renormalised over the keys it sees, key 0 left out */
        for (int i = 0; i < n; i++) {
            float *row = scratch + (size_t)i * n;
            double s = 0;
            for (int j = 1; j < n; j++)
                if (!qkv__viz_masked(d, v, i, j) && isfinite(row[j]))
                    s += row[j];
            for (int j = 0; j < n; j++)
                row[j] = qkv__viz_masked(d, v, i, j) || !(s > 0) ? 0.0f : (float)(row[j] / s);
        }
    return scratch;
}

int qkv__viz_needs_scratch(const qkv_viz_view *v) {
    return v->drop_first || qkv__viz_has_mean(v);
}

qkv_status qkv__viz_panels(const qkv_viz_data *d, const qkv_viz_view *v, int **panels,
                           int *n_panels) {
    int l0 = v->layer == QKV_VIZ_ALL ? 0 : v->layer;
    int l1 = v->layer == QKV_VIZ_ALL ? d->n_layer : v->layer + 1;
    int per_layer = v->n_heads > 0 ? v->n_heads : v->head == QKV_VIZ_ALL ? d->n_head : 1;
    int n = (l1 - l0) * per_layer;
    int *p = malloc(sizeof(int) * 2 * (size_t)n);
    if (!p)
        return qkv__fail(QKV_ENOMEM, "attention view: out of memory");
    int k = 0;
    for (int l = l0; l < l1; l++)
        for (int h = 0; h < per_layer; h++) {
            p[2 * k] = l;
            p[2 * k + 1] = v->n_heads > 0 ? v->heads[h] : v->head == QKV_VIZ_ALL ? h : v->head;
            k++;
        }
    *panels = p;
    *n_panels = n;
    return QKV_OK;
}

float qkv__viz_vmax(const qkv_viz_data *d, const qkv_viz_view *v, const int *panels, int n_panels,
                    float *scratch) {
    if (v->vmax > 0)
        return v->vmax;
    if (v->vmax == 0)
        return 1.0f;
    float mx = 0;
    int n = d->n_tokens;
    for (int p = 0; p < n_panels; p++) {
        const float *m = qkv__viz_matrix(d, v, panels[2 * p], panels[2 * p + 1], scratch);
        int i0 = v->query >= 0 ? v->query : 0, i1 = v->query >= 0 ? v->query + 1 : n;
        for (int i = i0; i < i1; i++)
            for (int j = 0; j < n; j++)
                if (!qkv__viz_masked(d, v, i, j) && m[(size_t)i * n + j] > mx &&
                    isfinite(m[(size_t)i * n + j]))
                    mx = m[(size_t)i * n + j];
    }
    return mx > 0 ? mx : 1.0f;
}

const char *qkv__viz_model_name(const qkv_viz_data *d) {
    return d->model_name && *d->model_name ? d->model_name : "model";
}

float qkv__viz_temperature(const qkv_viz_data *d) {
    return d->temperature > 0 ? d->temperature : 1.0f;
}

int qkv__viz_has_mean(const qkv_viz_view *v) {
    if (v->n_heads > 0) {
        for (int k = 0; k < v->n_heads; k++)
            if (v->heads[k] == QKV_VIZ_AVG)
                return 1;
        return 0;
    }
    return v->head == QKV_VIZ_AVG;
}

void qkv__viz_heads_text(const qkv_viz_data *d, const qkv_viz_view *v, char *buf, size_t cap) {
    if (cap == 0)
        return;
    buf[0] = '\0';
    if (v->n_heads > 0) {
        size_t o = 0;
        int n_mean = 0, n_listed = 0;
        for (int k = 0; k < v->n_heads && o + 16 < cap; k++) {
            if (v->heads[k] == QKV_VIZ_AVG) {
                n_mean++;
                continue;
            }
            int w = snprintf(buf + o, cap - o, "%s%d",
                             n_listed ? ", " : (v->n_heads > 1 ? "heads " : "head "), v->heads[k]);
            if (w < 0)
                break;
            o += (size_t)w;
            n_listed++;
        }
        if (n_mean && o + 24 < cap)
            snprintf(buf + o, cap - o, n_listed ? " + their mean" : "mean of %d heads", d->n_head);
        return;
    }
    if (v->head == QKV_VIZ_ALL)
        snprintf(buf, cap, "all %d heads", d->n_head);
    else if (v->head == QKV_VIZ_AVG)
        snprintf(buf, cap, "mean of %d heads", d->n_head);
    else
        snprintf(buf, cap, "head %d (of %d)", v->head, d->n_head);
}

qkv_status qkv__viz_begin(const qkv_viz_data *d, const qkv_viz_view *v, const char *fn, char **out,
                          int always_scratch, qkv__viz_labels *lab, int **panels, int *n_panels,
                          float **scratch) {
    *panels = NULL;
    *n_panels = 0;
    *scratch = NULL;
    qkv_status st = qkv_viz_validate(d, v);
    if (st) return st;
    if (!out) return qkv__fail(QKV_EINVAL, "%s: out is NULL", fn);
    if ((st = qkv__viz_labels_make(d, lab))) return st;
    size_t n = (size_t)d->n_tokens;
    if ((st = qkv__viz_panels(d, v, panels, n_panels))) goto fail;
    if ((always_scratch || qkv__viz_needs_scratch(v)) && !(*scratch = malloc(sizeof(float) * n * n))) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory for %zu x %zu", fn, n, n);
        goto fail;
    }
    return QKV_OK;
fail:
    free(*panels);
    *panels = NULL;
    *n_panels = 0;
    qkv__viz_labels_free(lab);
    return st;
}
