/* viz_data.c -- the attention views as data: JSON (every number as float32 prints exactly,
 * %.9g) and long-format CSV (RFC 4180 quoting). */
#include "viz/viz_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON string through the one escaper (src/common/json.c). */
static void json_str(qkv__buf *b, const char *s) {
    size_t n = strlen(s);
    char *tmp = malloc(6 * n + 2);
    if (!tmp) {
        qkv__buf_puts(b, "\"\""); /* the buffer's own out-of-memory state reports the failure */
        return;
    }
    qkv__buf_put(b, tmp, qkv__json_escape(tmp, s, n));
    free(tmp);
}

static void json_float(qkv__buf *b, float x) {
    if (!isfinite(x))
        qkv__buf_puts(b, "null"); /* JSON has no NaN; a finite model never gives one */
    else if (x == 0.0f)
        qkv__buf_putc(b, '0');
    else
        qkv__buf_printf(b, "%.9g", (double)x);
}

qkv_status qkv_viz_json(const qkv_viz_data *d, const qkv_viz_view *v, char **out, size_t *len) {
    qkv__viz_labels lab;
    int *panels, n_panels;
    float *scratch;
    qkv_status st = qkv__viz_begin(d, v, "qkv_viz_json", out, 0, &lab, &panels, &n_panels, &scratch);
    if (st)
        return st;
    int n = d->n_tokens;
    char *name = NULL;
    const char *mn = qkv__viz_model_name(d);
    if ((st = qkv_viz_label(mn, strlen(mn), 0, &name)))
        goto done;

    qkv__buf b = {0};
    qkv__buf_puts(&b, "{\"model\": ");
    json_str(&b, name);
    qkv__buf_printf(&b, ", \"n_layer\": %d, \"n_head\": %d, \"n_tokens\": %d", d->n_layer, d->n_head,
                    n);
    qkv__buf_puts(&b, ", \"temperature\": ");
    json_float(&b, qkv__viz_temperature(d));
    qkv__buf_printf(&b, ", \"causal\": %s,", d->causal ? "true" : "false");
    if (v->drop_first)
        qkv__buf_puts(&b, " \"drop_first\": true,");
    qkv__buf_putc(&b, '\n');

    qkv__buf_puts(&b, " \"tokens\": [");
    for (int i = 0; i < n; i++) {
        if (i)
            qkv__buf_puts(&b, ", ");
        json_str(&b, lab.lossy[i]);
    }
    qkv__buf_puts(&b, "],\n \"labels\": [");
    for (int i = 0; i < n; i++) {
        if (i)
            qkv__buf_puts(&b, ", ");
        json_str(&b, lab.visible[i]);
    }
    qkv__buf_puts(&b, "],\n \"token_bytes\": [");
    for (int i = 0; i < n; i++) {
        qkv__buf_puts(&b, i ? ", [" : "[");
        const unsigned char *s = (const unsigned char *)d->token_bytes[i];
        size_t tl = s ? d->token_len[i] : 0;
        for (size_t k = 0; k < tl; k++)
            qkv__buf_printf(&b, k ? ",%u" : "%u", s[k]);
        qkv__buf_putc(&b, ']');
    }
    qkv__buf_puts(&b, "],\n \"ids\": ");
    if (d->ids) {
        qkv__buf_putc(&b, '[');
        for (int i = 0; i < n; i++)
            qkv__buf_printf(&b, i ? ", %d" : "%d", d->ids[i]);
        qkv__buf_putc(&b, ']');
    } else {
        qkv__buf_puts(&b, "null");
    }

    /* layers and heads covered: attention is [layers][heads][N][N] */
    int n_layers_out = v->layer == QKV_VIZ_ALL ? d->n_layer : 1;
    int n_heads_out = n_panels / n_layers_out;
    qkv__buf_puts(&b, ",\n \"layers\": [");
    for (int l = 0; l < n_layers_out; l++)
        qkv__buf_printf(&b, l ? ", %d" : "%d", panels[2 * (l * n_heads_out)]);
    qkv__buf_puts(&b, "], \"heads\": [");
    for (int h = 0; h < n_heads_out; h++) {
        int head = panels[2 * h + 1];
        if (h)
            qkv__buf_puts(&b, ", ");
        if (head == QKV_VIZ_AVG)
            qkv__buf_puts(&b, "\"avg\"");
        else
            qkv__buf_printf(&b, "%d", head);
    }
    qkv__buf_putc(&b, ']');
    if (v->query >= 0)
        qkv__buf_printf(&b, ", \"query\": %d", v->query);

    if (d->n_top > 0) {
        qkv__buf_puts(&b, ",\n \"top\": [");
        for (int t = 0; t < d->n_top; t++) {
            char *tok = NULL;
            size_t tl = d->top_bytes[t] ? d->top_len[t] : 0;
            if ((st = qkv_viz_label(d->top_bytes[t], tl, QKV_VIZ_LABEL_LOSSY, &tok))) {
                qkv__buf_free(&b);
                goto done;
            }
            qkv__buf_puts(&b, t ? ", {\"token\": " : "{\"token\": ");
            json_str(&b, tok);
            free(tok);
            qkv__buf_printf(&b, ", \"id\": %d, \"prob\": ", d->top_ids[t]);
            json_float(&b, d->top_probs[t]);
            qkv__buf_putc(&b, '}');
        }
        qkv__buf_putc(&b, ']');
    }

    qkv__buf_puts(&b, ",\n \"attention\": [");
    for (int l = 0; l < n_layers_out; l++) {
        qkv__buf_puts(&b, l ? ",\n  [" : "\n  [");
        for (int h = 0; h < n_heads_out; h++) {
            const int *pn = panels + 2 * (l * n_heads_out + h);
            const float *m = qkv__viz_matrix(d, v, pn[0], pn[1], scratch);
            qkv__buf_puts(&b, h ? ",\n   [" : "\n   [");
            for (int i = 0; i < n; i++) {
                qkv__buf_puts(&b, i ? ",\n    [" : "\n    [");
                for (int j = 0; j < n; j++) {
                    if (j)
                        qkv__buf_puts(&b, ", ");
                    json_float(&b, m[(size_t)i * n + j]);
                }
                qkv__buf_putc(&b, ']');
            }
            qkv__buf_putc(&b, ']');
        }
        qkv__buf_putc(&b, ']');
    }
    qkv__buf_puts(&b, "]\n}\n");
    st = qkv__buf_finish(&b, out, len, "JSON view");
done:
    free(name);
    free(scratch);
    free(panels);
    qkv__viz_labels_free(&lab);
    return st;
}

/* RFC 4180 field: always quoted, '"' doubled. The label never holds a line break (shown as
 * '↵') or a control character, so each record is one line. */
static void csv_field(qkv__buf *b, const char *s) {
    qkv__buf_putc(b, '"');
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            qkv__buf_putc(b, '"');
        qkv__buf_putc(b, *p);
    }
    qkv__buf_putc(b, '"');
}

qkv_status qkv_viz_csv(const qkv_viz_data *d, const qkv_viz_view *v, char **out, size_t *len) {
    qkv__viz_labels lab;
    int *panels, n_panels;
    float *scratch;
    qkv_status st = qkv__viz_begin(d, v, "qkv_viz_csv", out, 0, &lab, &panels, &n_panels, &scratch);
    if (st)
        return st;
    int n = d->n_tokens;
    qkv__buf b = {0};
    qkv__buf_puts(&b, "layer,head,query_index,query_token,key_index,key_token,weight\n");
    int i0 = v->query >= 0 ? v->query : 0, i1 = v->query >= 0 ? v->query + 1 : n;
    for (int p = 0; p < n_panels; p++) {
        int layer = panels[2 * p], head = panels[2 * p + 1];
        const float *m = qkv__viz_matrix(d, v, layer, head, scratch);
        char head_str[16];
        if (head == QKV_VIZ_AVG)
            memcpy(head_str, "avg", 4);
        else
            snprintf(head_str, sizeof head_str, "%d", head);
        for (int i = i0; i < i1; i++)
            for (int j = 0; j < n; j++) {
                qkv__buf_printf(&b, "%d,%s,%d,", layer, head_str, i);
                csv_field(&b, lab.plain[i]);
                qkv__buf_printf(&b, ",%d,", j);
                csv_field(&b, lab.plain[j]);
                qkv__buf_putc(&b, ',');
                float x = m[(size_t)i * n + j];
                if (x == 0.0f)
                    qkv__buf_putc(&b, '0');
                else
                    qkv__buf_printf(&b, "%.9g", (double)x);
                qkv__buf_putc(&b, '\n');
            }
        if (b.failed)
            break;
    }
    st = qkv__buf_finish(&b, out, len, "CSV view");
    free(scratch);
    free(panels);
    qkv__viz_labels_free(&lab);
    return st;
}
