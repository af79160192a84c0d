/*
 * interp.c -- interpretability on top of the forward pass (qkv_model_forward_iv): the
 * which-heads-matter grid, activation patching maps, the logit lens, and the attention of
 * every generated token.
 *
 * The grid and the maps are many small passes: one clean pass records the residual stream
 * entering every block, then each cell resumes at the layer its change starts from (the
 * layers before it cannot differ), and the cells of one layer go through together as variants
 * of one batched pass (qkv__model_run_iv with n_var > 1: their rows share every matmul, so 12
 * heads x 20 tokens are one 240-row GEMM instead of twelve 20-row ones).
 */
#include "model/layers.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Variants of an n-token sentence that go through one batched pass: at most 1024 rows (the
 * scratch is 13 floats a row and channel), at most want. */
static int variants_per_pass(int n, int want) {
    int k = 1024 / (n > 0 ? n : 1);
    if (k < 1) k = 1;
    return k < want ? k : want;
}

double qkv_logit_metric(const float *logits, int V, int target, int vs) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp((double)logits[j] - mx);
    double lse = mx + log(sum);
    double m = (double)logits[target] - lse;
    if (vs >= 0) m -= (double)logits[vs] - lse;
    return m;
}

qkv_status qkv_model_ablation_grid(qkv_model *model, const int *ids, int n,
                                   const qkv_forward_opts *opts, qkv_ablate_mode mode,
                                   int target, int vs, float *grid, float *base) {
    if (!model || !grid) return qkv__fail(QKV_EINVAL, "ablation grid: model or grid is NULL");
    qkv_status st = qkv__check_ids(model, ids, n);
    if (st) return st;
    const qkv_model_config *c = &model->cfg;
    int L = c->n_layer, H = c->n_head, V = c->vocab_size;
    if (mode < QKV_ABLATE_ZERO || mode > QKV_ABLATE_UNIFORM)
        return qkv__fail(QKV_ERANGE, "ablation grid: mode %d is not zero/mean/uniform", (int)mode);
    if (target < 0 || target >= V || vs >= V)
        return qkv__fail(QKV_ERANGE, "ablation grid: target %d / vs %d outside [0, %d)", target, vs, V);
    size_t NC = (size_t)n * c->n_embd, LH = (size_t)L * H;
    int chunk = variants_per_pass(n, H);
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    cap.want_hidden = 1;
    float *logits = malloc(sizeof(float) * (size_t)V * chunk), *xs = malloc(sizeof(float) * NC * chunk);
    unsigned char *ab = calloc(LH * chunk, 1);
    qkv_intervention *ivs = calloc((size_t)chunk, sizeof *ivs);
    if (!logits || !xs || !ab || !ivs) {
        st = qkv__fail(QKV_ENOMEM, "ablation grid: out of memory");
        goto done;
    }
    if ((st = qkv__model_run_iv(model, ids, n, NULL, opts, 1, NULL, 0, NULL, NULL, logits, &cap, 0))) goto done;
    double m0 = qkv_logit_metric(logits, V, target, vs);
    if (base) *base = (float)m0;
    /* per layer, its heads' variants in passes of `chunk`, each resuming at that layer */
    for (int l = 0; l < L; l++)
        for (int h0 = 0; h0 < H; h0 += chunk) {
            int nv = H - h0 < chunk ? H - h0 : chunk;
            memset(ab, 0, LH * (size_t)nv);
            for (int v = 0; v < nv; v++) {
                ab[LH * v + (size_t)l * H + h0 + v] = (unsigned char)mode;
                ivs[v] = (qkv_intervention){.ablate = ab + LH * v};
                memcpy(xs + NC * v, cap.hidden + (size_t)l * NC, sizeof(float) * NC);
            }
            if ((st = qkv__model_run_iv(model, ids, n, NULL, opts, nv, ivs, l, xs, NULL, logits, NULL, 0))) goto done;
            for (int v = 0; v < nv; v++)
                grid[l * H + h0 + v] = (float)(qkv_logit_metric(logits + (size_t)v * V, V, target, vs) - m0);
        }
done:
    qkv_capture_free(&cap);
    free(logits);
    free(xs);
    free(ab);
    free(ivs);
    return st;
}

qkv_status qkv_model_patch_maps(qkv_model *model, const int *src_ids, const int *dst_ids, int n,
                                const qkv_forward_opts *opts, int target, int vs,
                                float *head_metric, float *pos_metric, float *m_src,
                                float *m_dst) {
    if (!model) return qkv__fail(QKV_EINVAL, "patching: model is NULL");
    qkv_status st;
    if ((st = qkv__check_ids(model, src_ids, n)) || (st = qkv__check_ids(model, dst_ids, n))) return st;
    const qkv_model_config *c = &model->cfg;
    int L = c->n_layer, H = c->n_head, V = c->vocab_size, C = c->n_embd;
    if (target < 0 || target >= V || vs >= V)
        return qkv__fail(QKV_ERANGE, "patching: target %d / vs %d outside [0, %d)", target, vs, V);
    qkv_capture cs, cd;
    memset(&cs, 0, sizeof cs);
    memset(&cd, 0, sizeof cd);
    cs.want_hidden = cs.want_head_out = 1;
    cd.want_hidden = 1;
    size_t NC = (size_t)n * C;
    int chunk = variants_per_pass(n, H > n ? H : n);
    float *logits = malloc(sizeof(float) * (size_t)V * chunk), *xs = malloc(sizeof(float) * NC * chunk);
    qkv_intervention *ivs = calloc((size_t)chunk, sizeof *ivs);
    qkv_head_patch *hps = calloc((size_t)chunk, sizeof *hps);
    if (!logits || !xs || !ivs || !hps) {
        st = qkv__fail(QKV_ENOMEM, "patching: out of memory");
        goto done;
    }
    if ((st = qkv__model_run_iv(model, src_ids, n, NULL, opts, 1, NULL, 0, NULL, NULL, logits, &cs, 0))) goto done;
    double ms = qkv_logit_metric(logits, V, target, vs);
    if ((st = qkv__model_run_iv(model, dst_ids, n, NULL, opts, 1, NULL, 0, NULL, NULL, logits, &cd, 0))) goto done;
    double md = qkv_logit_metric(logits, V, target, vs);
    if (m_src) *m_src = (float)ms;
    if (m_dst) *m_dst = (float)md;
    size_t hnd = (size_t)n * cs.head_dim;
    /* head cells: per layer, each head's output from the source, resuming at that layer */
    for (int l = 0; head_metric && l < L; l++)
        for (int h0 = 0; h0 < H; h0 += chunk) {
            int nv = H - h0 < chunk ? H - h0 : chunk;
            for (int v = 0; v < nv; v++) {
                hps[v] = (qkv_head_patch){l, h0 + v, -1, cs.head_out + ((size_t)l * H + h0 + v) * hnd};
                ivs[v] = (qkv_intervention){.head_patches = &hps[v], .n_head_patches = 1};
                memcpy(xs + NC * v, cd.hidden + (size_t)l * NC, sizeof(float) * NC);
            }
            if ((st = qkv__model_run_iv(model, dst_ids, n, NULL, opts, nv, ivs, l, xs, NULL, logits, NULL, 0))) goto done;
            for (int v = 0; v < nv; v++)
                head_metric[l * H + h0 + v] = (float)qkv_logit_metric(logits + (size_t)v * V, V, target, vs);
        }
    /* position cells: the stream entering block l with row i from the source */
    for (int l = 0; pos_metric && l < L; l++)
        for (int i0 = 0; i0 < n; i0 += chunk) {
            int nv = n - i0 < chunk ? n - i0 : chunk;
            for (int v = 0; v < nv; v++) {
                float *x = xs + NC * v;
                memcpy(x, cd.hidden + (size_t)l * NC, sizeof(float) * NC);
                memcpy(x + (size_t)(i0 + v) * C, cs.hidden + (size_t)l * NC + (size_t)(i0 + v) * C,
                       sizeof(float) * (size_t)C);
            }
            if ((st = qkv__model_run_iv(model, dst_ids, n, NULL, opts, nv, NULL, l, xs, NULL, logits, NULL, 0))) goto done;
            for (int v = 0; v < nv; v++)
                pos_metric[(size_t)l * n + i0 + v] = (float)qkv_logit_metric(logits + (size_t)v * V, V, target, vs);
        }
done:
    qkv_capture_free(&cs);
    qkv_capture_free(&cd);
    free(logits);
    free(xs);
    free(ivs);
    free(hps);
    return st;
}

qkv_status qkv_model_logit_lens(qkv_model *model, const float *hidden, int n_states, int n,
                                int k, int *ids, float *probs, int target,
                                float *target_probs) {
    if (!model || !hidden || !ids || !probs) return qkv__fail(QKV_EINVAL, "logit lens: NULL argument");
    const qkv_model_config *c = &model->cfg;
    const qkv__params *p = &model->p;
    int C = c->n_embd, V = c->vocab_size;
    if (n_states < 1 || n < 1 || (size_t)n_states * (size_t)n > (size_t)INT32_MAX / 2)
        return qkv__fail(QKV_EINVAL, "logit lens: %d states x %d positions", n_states, n);
    if (k < 1 || k > V) return qkv__fail(QKV_ERANGE, "logit lens: k = %d outside [1, %d]", k, V);
    if (target >= V || (target >= 0 && !target_probs))
        return qkv__fail(QKV_ERANGE, "logit lens: target %d outside [0, %d)", target, V);
    const float *out_w = p->lm_head ? p->lm_head : p->wte;
    int rows = n_states * n, chunk = 32;
    float *a = qkv__alloc_aligned(sizeof(float) * ((size_t)chunk * C + (size_t)chunk * V));
    if (!a) return qkv__fail(QKV_ENOMEM, "logit lens: out of memory");
    float *lg = a + (size_t)chunk * C;
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int m = rows - r0 < chunk ? rows - r0 : chunk;
        qkv__norm_forward(a, NULL, NULL, hidden + (size_t)r0 * C, p->lnf_w, p->lnf_b, m, C,
                          c->layer_norm_eps, c->norm);
        qkv__linear_t(a, C, m, C, V, out_w, C, lg, V);
        for (int r = 0; r < m; r++) {
            const float *row = lg + (size_t)r * V;
            qkv_top_k(row, V, k, ids + (size_t)(r0 + r) * k, probs + (size_t)(r0 + r) * k);
            if (target >= 0) target_probs[r0 + r] = (float)exp(qkv_logit_metric(row, V, target, -1));
        }
    }
    qkv__free_aligned(a);
    return QKV_OK;
}


qkv_status qkv_model_attn_timeline(qkv_model *model, const int *ids, int n_prompt, int n_gen,
                                   const int *sel, int n_sel, float *rows) {
    if (!model || !ids || !rows) return qkv__fail(QKV_EINVAL, "attention timeline: NULL argument");
    const qkv_model_config *c = &model->cfg;
    int L = c->n_layer, H = c->n_head;
    if (n_prompt < 1 || n_gen < 1)
        return qkv__fail(QKV_EINVAL, "attention timeline: %d prompt and %d generated tokens", n_prompt, n_gen);
    if (!sel) n_sel = L * H;
    if (n_sel < 1) return qkv__fail(QKV_EINVAL, "attention timeline: no heads");
    for (int k = 0; sel && k < n_sel; k++)
        if (sel[k] < 0 || sel[k] >= L * H)
            return qkv__fail(QKV_ERANGE, "attention timeline: head index %d outside [0, %d)", sel[k], L * H);
    int N = n_prompt + n_gen - 1; /* the last generated token is never fed back */
    qkv_status st = qkv__check_ids(model, ids, N);
    if (st) return st;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    cap.want_probs = 1;
    if ((st = qkv__model_run_iv(model, ids, N, NULL, NULL, 1, NULL, 0, NULL, NULL, NULL, &cap, 0))) return st;
    size_t nn = (size_t)N * N;
    for (int t = 0; t < n_gen; t++) {
        int q = n_prompt - 1 + t;
        for (int k = 0; k < n_sel; k++) {
            int lh = sel ? sel[k] : k;
            float *dst = rows + ((size_t)t * n_sel + k) * N;
            memcpy(dst, cap.probs + (size_t)lh * nn + (size_t)q * N, sizeof(float) * (size_t)N);
            for (int j = q + 1; j < N; j++) dst[j] = 0.0f;
        }
    }
    qkv_capture_free(&cap);
    return QKV_OK;
}
