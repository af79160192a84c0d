/* interp.c -- helpers shared by the interpretability commands (ablate, patch, lens):
 * see interp.h. */
#include "cli/interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int qkv__cli_sentence(const char *cmd, const char *what, qkv_model *model, const char *text,
                      const char *ids_arg, int **ids, int *n) {
    const qkv_model_config *cfg = qkv_model_get_config(model);
    *ids = NULL;
    *n = 0;
    if (!!text == !!ids_arg) return qkv__cli_usage_error(cmd, "give exactly one of %s", what);
    if (ids_arg) {
        if (qkv__cli_read_ids(ids_arg, ids, n))
            return qkv__cli_usage_error(cmd, "ids want numbers separated by commas: '%.80s'", ids_arg);
    } else {
        qkv_tokenizer *tok = qkv_model_tokenizer(model);
        if (!tok)
            return qkv__cli_usage_error(cmd, "model '%s' has no vocab.json + merges.txt: give ids",
                                        qkv_model_name(model));
        size_t nn = 0;
        qkv_status st = qkv_tokenizer_encode(tok, text, strlen(text), 0, ids, &nn);
        if (st) return qkv__cli_fail(cmd, st);
        *n = (int)(nn > (size_t)cfg->n_ctx + 1 ? (size_t)cfg->n_ctx + 1 : nn);
    }
    if (*n < 1) {
        free(*ids);
        *ids = NULL;
        return qkv__cli_usage_error(cmd, "no tokens in %s", what);
    }
    if (*n > cfg->n_ctx) {
        free(*ids);
        *ids = NULL;
        return qkv__cli_usage_error(cmd, "more tokens than the model's context of %d", cfg->n_ctx);
    }
    for (int i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= cfg->vocab_size) {
            int bad = (*ids)[i];
            free(*ids);
            *ids = NULL;
            return qkv__cli_usage_error(cmd, "token id %d at position %d is outside the vocabulary "
                                        "[0, %d)", bad, i, cfg->vocab_size);
        }
    return 0;
}

int qkv__cli_token(const char *cmd, const char *opt, qkv_model *model, const char *s, int *id) {
    int V = qkv_model_get_config(model)->vocab_size;
    if (!strncmp(s, "id:", 3)) {
        long v;
        if (qkv__cli_read_long(s + 3, 0, V - 1, &v))
            return qkv__cli_usage_error(cmd, "%s '%s': the id must be in [0, %d)", opt, s, V);
        *id = (int)v;
        return 0;
    }
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    if (!tok)
        return qkv__cli_usage_error(cmd, "%s '%s': the model has no vocabulary; give id:N", opt, s);
    if (!*s) return qkv__cli_usage_error(cmd, "%s is empty", opt);
    int *ids = NULL;
    size_t n = 0;
    qkv_status st = qkv_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n);
    if (st) return qkv__cli_fail(cmd, st);
    if (n != 1) {
        char pieces[256] = "";
        size_t at = 0;
        for (size_t i = 0; i < n && i < 8 && at < sizeof pieces - 40; i++) {
            char *lab = qkv__cli_token_label(tok, ids[i]);
            at += (size_t)snprintf(pieces + at, sizeof pieces - at, "%s'%s'", i ? " + " : "",
                                   lab ? lab : "?");
            free(lab);
        }
        free(ids);
        return qkv__cli_usage_error(cmd, "%s '%s' is %zu tokens (%s), not one token of the "
                                    "vocabulary (GPT-2 pieces carry their leading space: \" were\"; "
                                    "or give id:N)", opt, s, n, pieces);
    }
    *id = ids[0];
    free(ids);
    return 0;
}

json_t *qkv__cli_token_json(qkv_tokenizer *tok, int id) {
    const char *b;
    size_t len;
    if (!tok || qkv_tokenizer_token_bytes(tok, id, &b, &len)) return json_null();
    json_t *s = json_stringn(b, len);
    if (s) return s;
    char *lab = NULL;
    if (qkv_viz_label(b, len, QKV_VIZ_LABEL_LOSSY, &lab)) return json_null();
    s = json_string(lab);
    free(lab);
    return s ? s : json_null();
}

char *qkv__cli_token_label(qkv_tokenizer *tok, int id) {
    const char *b;
    size_t len;
    char *out = NULL;
    if (!tok || qkv_tokenizer_token_bytes(tok, id, &b, &len)) {
        out = malloc(24);
        if (out) snprintf(out, 24, "id:%d", id);
        return out;
    }
    if (qkv_viz_label(b, len, QKV_VIZ_LABEL_SPACES | QKV_VIZ_LABEL_BREAKS, &out)) return NULL;
    return out;
}

/* Display width of a UTF-8 label, counting code points (the labels are mostly ASCII). */
static int label_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void put_label(FILE *f, const char *s, int width) {
    int w = 0;
    const char *p = s;
    while (*p && w < width) { /* whole code points only */
        const char *q = p + 1;
        while (((unsigned char)*q & 0xC0) == 0x80) q++;
        fwrite(p, 1, (size_t)(q - p), f);
        p = q;
        w++;
    }
    for (; w < width; w++) fputc(' ', f);
}

void qkv__cli_heatmap(FILE *f, const char *const *row_labels, int rows,
                      const char *const *col_labels, int cols, const float *vals, int color) {
    int rw = 4;
    for (int r = 0; r < rows; r++) {
        int w = label_width(row_labels[r]);
        if (w > rw) rw = w;
    }
    if (rw > 16) rw = 16;
    float mx = 0.0f;
    for (int i = 0; i < rows * cols; i++)
        if (vals[i] == vals[i] && fabsf(vals[i]) > mx) mx = fabsf(vals[i]);
    put_label(f, "", rw);
    for (int c = 0; c < cols; c++) {
        fputc(' ', f);
        int w = label_width(col_labels[c]);
        for (int k = w; k < 7; k++) fputc(' ', f);
        put_label(f, col_labels[c], w < 7 ? w : 7);
    }
    fputc('\n', f);
    for (int r = 0; r < rows; r++) {
        put_label(f, row_labels[r], rw);
        for (int c = 0; c < cols; c++) {
            float v = vals[(size_t)r * cols + c];
            fputc(' ', f);
            if (color && mx > 0 && v == v) {
                float t = fabsf(v) / mx;
                int a = (int)(255.0f * (1.0f - 0.85f * t));
                if (v < 0) fprintf(f, "\033[48;2;%d;%d;255m\033[38;2;0;0;0m", a, a);
                else fprintf(f, "\033[48;2;255;%d;%dm\033[38;2;0;0;0m", a, a);
            }
            if (v == v) fprintf(f, "%+7.3f", (double)v);
            else fprintf(f, "%7s", "-");
            if (color && mx > 0 && v == v) fputs("\033[0m", f);
        }
        fputc('\n', f);
    }
}

void qkv__cli_print_json(json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(v);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

json_t *qkv__cli_top_json(qkv_tokenizer *tok, const float *logits, int V, int k) {
    json_t *arr = json_array();
    if (k > V) k = V;
    int *ids = malloc(sizeof(int) * (size_t)k);
    float *p = malloc(sizeof(float) * (size_t)k);
    if (ids && p && qkv_top_k(logits, V, k, ids, p) == QKV_OK)
        for (int i = 0; i < k; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "id", json_integer(ids[i]));
            json_object_set_new(e, "token", qkv__cli_token_json(tok, ids[i]));
            json_object_set_new(e, "prob", json_real(p[i]));
            json_array_append_new(arr, e);
        }
    free(ids);
    free(p);
    return arr;
}
