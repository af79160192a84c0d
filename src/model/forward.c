/*
 * forward.c -- the forward pass of every family, attention capture and top-k.
 *
 *   x = wte[ids] (+ wpe[0..N) when positions are learned)           [N, C]
 *   per layer (layers.c's block, shared with training):
 *       a = norm_1(x); q | k | v = a @ attn_w (+ b); QK-norm; RoPE     [N, W]
 *       o = attention(q, k, v)  (engine, strided into q | k | v; causal; GQA)
 *       x += o @ proj_w (+ b)
 *       x += mlp(norm_2(x))      (GELU, or SwiGLU)
 *   logits = norm_f(x) @ wte^T  (or the untied lm_head)                   [N, V]
 *
 * Interventions (qkv_model_forward_iv): residual patches on the stream entering a block,
 * head ablations and head patches on the heads' outputs before the output projection, all
 * inside this one pass; interp.c builds the ablation grid, the patching maps and the logit
 * lens on it.
 *
 * Cancellation: opts->cancel is asked before each layer and before the output head; a yes
 * ends the pass with QKV_ECANCELED (scratch and any capture freed, a KV cache not committed,
 * as on any other error).
 *
 * Re-entrant: every buffer is allocated per call; the model is only read. Several threads
 * may run forward passes on one model at once.
 */
#include "model/layers.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- capture ------------------------------------------------------------------------------ */

void qkv_capture_free(qkv_capture *cap) {
    if (!cap) return;
    free(cap->probs);
    free(cap->scores);
    free(cap->q);
    free(cap->k);
    free(cap->v);
    free(cap->head_out);
    free(cap->hidden);
    cap->probs = cap->scores = cap->q = cap->k = cap->v = cap->head_out = cap->hidden = NULL;
}

static qkv_status capture_alloc(qkv_capture *cap, const qkv_model_config *c, int n) {
    qkv_capture_free(cap);
    int H = c->n_head, d = c->head_dim;
    cap->n_layer = c->n_layer;
    cap->n_head = H;
    cap->n_tokens = n;
    cap->head_dim = d;
    cap->n_embd = c->n_embd;
    size_t lh, nn, hnn, hnd, hid;
    if (!qkv__mul_size((size_t)c->n_layer, (size_t)H, &lh) || !qkv__mul_size((size_t)n, (size_t)n, &nn) ||
        !qkv__mul_size(lh, nn, &hnn) || !qkv__mul_size(lh, (size_t)n * (size_t)d, &hnd) ||
        !qkv__mul_size((size_t)(c->n_layer + 1), (size_t)n * (size_t)c->n_embd, &hid) ||
        hnn > SIZE_MAX / 4 || hnd > SIZE_MAX / 4 || hid > SIZE_MAX / 4)
        return qkv__fail(QKV_ENOMEM, "capture: sizes overflow");
    int fail = 0;
#define ALLOC(flag, field, count)                                   \
    if (cap->flag) {                                                \
        cap->field = calloc((count) ? (count) : 1, sizeof(float));  \
        fail |= !cap->field;                                        \
    }
    ALLOC(want_probs, probs, hnn);
    ALLOC(want_scores, scores, hnn);
    ALLOC(want_qkv, q, hnd);
    ALLOC(want_qkv, k, hnd);
    ALLOC(want_qkv, v, hnd);
    ALLOC(want_head_out, head_out, hnd);
    ALLOC(want_hidden, hidden, hid);
#undef ALLOC
    if (fail) {
        qkv_capture_free(cap);
        return qkv__fail(QKV_ENOMEM, "capture: out of memory for %d tokens", n);
    }
    return QKV_OK;
}

/* Copies head h's [N, d] slice of a packed [N, ld] buffer (column offset col) to dst. */
static void copy_head(const float *src, ptrdiff_t ld, int n, int col, int d, float *dst) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * d, src + (size_t)i * ld + col, sizeof(float) * (size_t)d);
}

/* With grouped heads, query head h's k and v are those of its key/value head h / (H / KV). */
static void capture_layer(qkv_capture *cap, const qkv_model_config *c, int l, const float *qkv,
                          const float *att, int n) {
    qkv__dims m = qkv__dims_of(c);
    int d = m.d, H = m.H, grp = m.H / m.KV;
    size_t hnd = (size_t)n * d, nn = (size_t)n * n;
    ptrdiff_t ld = m.W;
    float scale = c->attn_scale > 0.0f ? c->attn_scale : 1.0f / sqrtf((float)d);
    for (int h = 0; h < H; h++) {
        size_t at = ((size_t)l * H + h);
        int kcol = m.Hd + (h / grp) * d, vcol = m.Hd + m.KVd + (h / grp) * d;
        if (cap->q) {
            copy_head(qkv, ld, n, h * d, d, cap->q + at * hnd);
            copy_head(qkv, ld, n, kcol, d, cap->k + at * hnd);
            copy_head(qkv, ld, n, vcol, d, cap->v + at * hnd);
        }
        if (cap->head_out) copy_head(att, ld, n, h * d, d, cap->head_out + at * hnd);
        if (cap->scores) {
            float *s = cap->scores + at * nn;
            qkv__linear_t(qkv + h * d, ld, n, d, n, qkv + kcol, ld, s, n);
            for (size_t i = 0; i < nn; i++) s[i] *= scale;
        }
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

qkv_status qkv__check_ids(const qkv_model *model, const int *ids, int n) {
    const qkv_model_config *c = &model->cfg;
    if (n < 1) return qkv__fail(QKV_EINVAL, "forward: no tokens (an empty prompt)");
    if (n > c->n_ctx)
        return qkv__fail(QKV_ETOOLONG, "forward: %d tokens, more than the model's context of %d", n,
                         c->n_ctx);
    if (!ids) return qkv__fail(QKV_EINVAL, "forward: ids is NULL");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return qkv__fail(QKV_ERANGE, "forward: token id %d at position %d outside [0, %d)", ids[i],
                             i, c->vocab_size);
    return QKV_OK;
}

/* The forward pass over n tokens at positions pos0 .. pos0 + n - 1. kv (or NULL): the
 * engine's generation cache holding pos0 tokens; the new tokens' keys and values are
 * appended (and committed) and the queries attend to all pos0 + n cached tokens.
 * bf16: one-token matmuls read the model's BF16 and / or Q8_0 copies; 2: passes of several
 * tokens use the BF16 copies too (BF16 dot products). */
/* ---- interventions ------------------------------------------------------------------------ */

static qkv_status check_iv(const qkv_model_config *c, const qkv_intervention *iv, int n) {
    int L = c->n_layer, H = c->n_head;
    if (iv->ablate)
        for (int i = 0; i < L * H; i++)
            if (iv->ablate[i] > QKV_ABLATE_UNIFORM)
                return qkv__fail(QKV_ERANGE, "intervention: ablation mode %d of head %d.%d is not "
                                 "one of none/zero/mean/uniform", iv->ablate[i], i / H, i % H);
    if (iv->n_head_patches < 0 || iv->n_resid_patches < 0 ||
        (iv->n_head_patches && !iv->head_patches) || (iv->n_resid_patches && !iv->resid_patches))
        return qkv__fail(QKV_EINVAL, "intervention: patch counts without patches");
    for (int i = 0; i < iv->n_head_patches; i++) {
        const qkv_head_patch *hp = &iv->head_patches[i];
        if (hp->layer < 0 || hp->layer >= L || hp->head < 0 || hp->head >= H)
            return qkv__fail(QKV_ERANGE, "intervention: head patch %d: head %d.%d outside %d layers x "
                             "%d heads", i, hp->layer, hp->head, L, H);
        if (hp->pos < -1 || hp->pos >= n)
            return qkv__fail(QKV_ERANGE, "intervention: head patch %d: position %d outside [0, %d)", i,
                             hp->pos, n);
        if (!hp->values) return qkv__fail(QKV_EINVAL, "intervention: head patch %d has no values", i);
    }
    for (int i = 0; i < iv->n_resid_patches; i++) {
        const qkv_resid_patch *rp = &iv->resid_patches[i];
        if (rp->layer < 0 || rp->layer > L)
            return qkv__fail(QKV_ERANGE, "intervention: residual patch %d: layer %d outside [0, %d]", i,
                             rp->layer, L);
        if (rp->pos < -1 || rp->pos >= n)
            return qkv__fail(QKV_ERANGE, "intervention: residual patch %d: position %d outside [0, %d)",
                             i, rp->pos, n);
        if (!rp->values) return qkv__fail(QKV_EINVAL, "intervention: residual patch %d has no values", i);
    }
    return QKV_OK;
}

/* Residual patches of layer l (entering block l; l = L: after the last) into x [N, C]. */
static void apply_resid(const qkv_intervention *iv, int l, float *x, int n, int C) {
    for (int i = 0; i < iv->n_resid_patches; i++) {
        const qkv_resid_patch *rp = &iv->resid_patches[i];
        if (rp->layer != l) continue;
        int i0 = rp->pos < 0 ? 0 : rp->pos, i1 = rp->pos < 0 ? n : rp->pos + 1;
        for (int t = i0; t < i1; t++)
            memcpy(x + (size_t)t * C, rp->values + (size_t)t * C, sizeof(float) * (size_t)C);
    }
}

/* Ablations and head patches of layer l on att (head outputs in the first C floats of rows
 * of stride 3C). qkv: the layer's packed q | k | v; probs: the layer's [H, N, N] capture or
 * NULL (set to the uniform rows for UNIFORM). */
static void apply_heads(const qkv_intervention *iv, const qkv__dims *m, int l, float *att,
                        const float *qkv, int n, int causal, float *probs) {
    int d = m->d, H = m->H;
    size_t ld = (size_t)m->W;
    if (iv->ablate) {
        for (int h = 0; h < H; h++) {
            int mode = iv->ablate[(size_t)l * H + h];
            if (mode == QKV_ABLATE_NONE) continue;
            float *o = att + (size_t)h * d;
            if (mode == QKV_ABLATE_ZERO) {
                for (int i = 0; i < n; i++) memset(o + i * ld, 0, sizeof(float) * (size_t)d);
            } else if (mode == QKV_ABLATE_MEAN) {
                for (int k = 0; k < d; k++) {
                    double s = 0;
                    for (int i = 0; i < n; i++) s += o[i * ld + k];
                    float mean = (float)(s / n);
                    for (int i = 0; i < n; i++) o[i * ld + k] = mean;
                }
            } else { /* UNIFORM: mean of the values each query sees */
                const float *v = qkv + (size_t)(m->Hd + m->KVd + (h / (m->H / m->KV)) * d);
                for (int k = 0; k < d; k++) {
                    double s = 0, all = 0;
                    if (!causal)
                        for (int j = 0; j < n; j++) all += v[j * ld + k];
                    for (int i = 0; i < n; i++) {
                        s += v[i * ld + k];
                        o[i * ld + k] = causal ? (float)(s / (i + 1)) : (float)(all / n);
                    }
                }
                if (probs) {
                    float *p = probs + (size_t)h * n * n;
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                            p[(size_t)i * n + j] = !causal ? 1.0f / (float)n : j <= i ? 1.0f / (float)(i + 1) : 0.0f;
                }
            }
        }
    }
    for (int i = 0; i < iv->n_head_patches; i++) {
        const qkv_head_patch *hp = &iv->head_patches[i];
        if (hp->layer != l) continue;
        int i0 = hp->pos < 0 ? 0 : hp->pos, i1 = hp->pos < 0 ? n : hp->pos + 1;
        for (int t = i0; t < i1; t++)
            memcpy(att + t * ld + (size_t)hp->head * d, hp->values + (size_t)t * d,
                   sizeof(float) * (size_t)d);
    }
}

/* opts->cancel, asked before layer l (l = L: before the output head). */
static qkv_status check_cancel(const qkv_forward_opts *opts, int l, int L) {
    if (!opts || !opts->cancel || !opts->cancel(opts->cancel_arg)) return QKV_OK;
    if (l < L) return qkv__fail(QKV_ECANCELED, "forward: cancelled before layer %d of %d", l, L);
    return qkv__fail(QKV_ECANCELED, "forward: cancelled before the output head");
}

/* The forward pass proper (model.h). */
qkv_status qkv__model_run_iv(const qkv_model *model, const int *ids, int n, qkv_kvcache *kv,
                            const qkv_forward_opts *opts, int n_var, const qkv_intervention *iv,
                            int start_layer, const float *x_start, float *logits,
                            float *last_logits, qkv_capture *cap, int bf16) {
    const qkv_model_config *c = &model->cfg;
    const qkv__params *p = &model->p;
    int pos0 = kv ? qkv_kvcache_len(kv) : 0;
    if (pos0 + n > c->n_ctx)
        return qkv__fail(QKV_ETOOLONG, "forward: %d + %d tokens, more than the model's context of %d",
                         pos0, n, c->n_ctx);
    float temperature = opts ? opts->attn_temperature : 0.0f;
    if (!isfinite(temperature) || temperature < 0.0f)
        return qkv__fail(QKV_ERANGE, "forward: attention temperature %g must be > 0", (double)temperature);
    int causal = !(opts && opts->no_causal_mask);
    qkv__dims m = qkv__dims_of(c);
    int C = c->n_embd, H = m.H, d = m.d, L = c->n_layer, V = c->vocab_size;
    if (n_var < 1 || (n_var > 1 && (kv || cap || logits)))
        return qkv__fail(QKV_EINVAL, "forward: %d variants (several only without cache, capture or full logits)", n_var);
    int R = n_var * n; /* rows: the variants' sentences one after another */
    size_t NC = (size_t)n * C, RC = (size_t)R * C, RW = (size_t)R * m.W;
    /* bf16: "reduced copies", BF16 and / or Q8_0 (qkv_model_use_q8), whichever the model has */
    if (bf16 && ((!model->bf16 && !model->q8) || n_var > 1)) bf16 = 0;
    qkv_status st = QKV_OK;
    for (int v = 0; iv && v < n_var; v++) {
        if (kv && (iv[v].ablate || iv[v].n_head_patches || iv[v].n_resid_patches))
            return qkv__fail(QKV_EUNSUPPORTED, "forward: interventions need the whole sentence (no KV cache)");
        if ((st = check_iv(c, &iv[v], n))) return st;
    }
    if (start_layer < 0 || start_layer > L || (start_layer > 0 && !x_start) || (x_start && (cap || kv)))
        return qkv__fail(QKV_EINVAL, "forward: bad resume at layer %d", start_layer);
    if (cap && (st = capture_alloc(cap, c, n))) return st;

    /* scratch: x, ln1, ln2, tmp [R, C]; qkv, att [R, W]; fch [R, F2]; fch_act [R, F] (SwiGLU) */
    int swiglu = c->mlp == QKV_MLP_SWIGLU;
    size_t total = 4 * RC + 2 * RW + (size_t)R * m.F2 + (swiglu ? (size_t)R * m.F : 0);
    float *x = qkv__alloc_whole(sizeof(float) * total);
    if (!x) return qkv__fail(QKV_ENOMEM, "forward: out of memory for %d tokens", R);
    qkv__block_acts ba;
    memset(&ba, 0, sizeof ba);
    ba.ln1 = x + RC;
    ba.ln2 = ba.ln1 + RC;
    ba.tmp = ba.ln2 + RC;
    ba.qkv = ba.tmp + RC;
    ba.att = ba.qkv + RW;
    ba.fch = ba.att + RW;
    ba.fch_act = swiglu ? ba.fch + (size_t)R * m.F2 : ba.fch; /* GELU in place */
    ba.res2 = ba.res3 = x;                                    /* the stream, in place */
    float *a = ba.ln1;                                        /* scratch for the final norm */

    if (x_start) {
        memcpy(x, x_start, sizeof(float) * RC);
    } else {
        qkv__encoder_forward(x, ids, p->wte, p->wpe, 1, n, C, pos0);
        for (int v = 1; v < n_var; v++) memcpy(x + (size_t)v * NC, x, sizeof(float) * NC);
    }
    qkv_attn_desc desc;
    qkv__block_attn_desc(c, &desc, n_var, n);
    desc.causal = causal;
    desc.temperature = temperature;
    size_t hnn = (size_t)H * n * n;

    /* Long prompts on several threads: if the first layer shows the threads were not all
     * running (the process used less CPU than threads x wall time: a busy machine), time the
     * second layer on one thread and keep the faster for the rest. */
    int adapt = R >= 32 && L - start_layer >= 3 && qkv__model_threads() > 1, n_threads = qkv__model_threads();
    int saved_cap = qkv__model_threads_cap(0);
    qkv__model_threads_cap(saved_cap);
    double wall0 = 0, cpu0 = 0, full_wall = 0;
    for (int l = start_layer; l < L; l++) {
        size_t ul = (size_t)l;
        if ((st = check_cancel(opts, l, L))) goto done;
        if (adapt && l - start_layer <= 2) {
            double wall = qkv__now(), cpu = qkv__process_cpu();
            if (l - start_layer == 1) {
                full_wall = wall - wall0;
                /* the team ran (or spun) all along: no one else wants these cores */
                if (cpu - cpu0 < 0.85 * n_threads * full_wall) qkv__model_threads_cap(1); /* probe one */
                else adapt = 0;
            } else if (l - start_layer == 2) {
                if (wall - wall0 >= full_wall) qkv__model_threads_cap(saved_cap); /* one was not faster */
                adapt = 0;
            }
            wall0 = wall;
            cpu0 = cpu;
        }
        qkv__block_bf16 bw = {0};
        bw.prompt = bf16 == 2 && n > 1 && model->bf16; /* opts->bf16: the BF16 GEMM for the prompt */
        if (bf16 && (n == 1 || bw.prompt) && model->bf16) {
            bw.attn_w = model->bf16_attn_w + ul * qkv__bf16p_size(C, m.W); /* packed (model.h) */
            bw.proj_w = model->bf16_proj_w + ul * qkv__bf16p_size(m.Hd, C);
            bw.fc_w = model->bf16_fc_w + ul * qkv__bf16p_size(C, m.F2);
            bw.fcproj_w = model->bf16_fcproj_w + ul * qkv__bf16p_size(m.F, C);
        }
        if (bf16 && n == 1 && model->q8) { /* Q8_0 rows [out, in / 32]; NULL: no copy of that one */
            if (model->q8_attn_w) bw.q8_attn_w = model->q8_attn_w + ul * (size_t)m.W * (C / 32);
            if (model->q8_proj_w) bw.q8_proj_w = model->q8_proj_w + ul * (size_t)C * (m.Hd / 32);
            if (model->q8_fc_w) bw.q8_fc_w = model->q8_fc_w + ul * (size_t)m.F2 * (C / 32);
            if (model->q8_fcproj_w) bw.q8_fcproj_w = model->q8_fcproj_w + ul * (size_t)C * (m.F / 32);
        }
        for (int v = 0; iv && v < n_var; v++) apply_resid(&iv[v], l, x + (size_t)v * NC, n, C);
        if (cap && cap->hidden) memcpy(cap->hidden + ul * NC, x, sizeof(float) * NC);
        const qkv__block_bf16 *bwp = bf16 && (n == 1 || bw.prompt) ? &bw : NULL;
        qkv__block_attn_in(c, p, l, &ba, x, n_var, n, pos0, bwp);
        float *probs = cap && cap->probs ? cap->probs + ul * hnn : NULL;
        float *qkv = ba.qkv, *att = ba.att;
        if (kv) {
            st = qkv_kvcache_append(kv, l, n, qkv + m.Hd, qkv + m.Hd + m.KVd, d, m.W);
            if (!st)
                st = qkv_kvcache_attend(kv, l, H, n, qkv, d, m.W, att, c->attn_scale, temperature);
        } else {
            st = qkv_attention_forward(&desc, qkv, qkv + m.Hd, qkv + m.Hd + m.KVd, att, NULL, probs);
        }
        if (st) goto done;
        for (int v = 0; iv && v < n_var; v++)
            apply_heads(&iv[v], &m, l, att + (size_t)v * n * m.W, qkv + (size_t)v * n * m.W, n, causal, probs);
        if (cap) capture_layer(cap, c, l, qkv, att, n);
        qkv__block_attn_out(c, p, l, &ba, x, R, bwp, 0.0f, 0, 0);
    }
    qkv__model_threads_cap(saved_cap);
    if ((st = check_cancel(opts, L, L))) goto done; /* before the head (and the cache's commit) */
    if (kv && (st = qkv_kvcache_commit(kv, n))) goto done;
    for (int v = 0; iv && v < n_var; v++) apply_resid(&iv[v], L, x + (size_t)v * NC, n, C);
    if (cap && cap->hidden) memcpy(cap->hidden + (size_t)L * NC, x, sizeof(float) * NC);
    const float *out_w = p->lm_head ? p->lm_head : p->wte;
    float eps = c->layer_norm_eps;
    if (logits) {
        qkv__norm_forward(a, NULL, NULL, x, p->lnf_w, p->lnf_b, n, C, eps, c->norm);
        qkv__linear_t(a, C, n, C, V, out_w, C, logits, V);
        if (last_logits) memcpy(last_logits, logits + (size_t)(n - 1) * V, sizeof(float) * (size_t)V);
    } else if (last_logits && n_var == 1) {
        qkv__norm_forward(a, NULL, NULL, x + (size_t)(n - 1) * C, p->lnf_w, p->lnf_b, 1, C, eps, c->norm);
        if (bf16 && model->q8_out) /* the Q8_0 head: rows [V, C / 32] */
            qkv__gemv_q8(a, C, V, model->q8_out, NULL, last_logits);
        else
            qkv__gemv_t(a, C, V, out_w, bf16 && model->bf16 ? model->bf16_out : NULL, last_logits);
    } else if (last_logits) {
        /* each variant's last row: [n_var, V] */
        for (int v = 0; v < n_var; v++)
            qkv__norm_forward(a + (size_t)v * C, NULL, NULL, x + (size_t)v * NC + (size_t)(n - 1) * C,
                              p->lnf_w, p->lnf_b, 1, C, eps, c->norm);
        qkv__linear_t(a, C, n_var, C, V, out_w, C, last_logits, V);
    }
done:
    qkv__model_threads_cap(saved_cap);
    qkv__free_aligned(x);
    if (st && cap) qkv_capture_free(cap);
    return st;
}

qkv_status qkv__model_run(const qkv_model *model, const int *ids, int n, qkv_kvcache *kv,
                         const qkv_forward_opts *opts, float *logits,
                         float *last_logits, qkv_capture *cap, int bf16) {
    return qkv__model_run_iv(model, ids, n, kv, opts, 1, NULL, 0, NULL, logits, last_logits, cap, bf16);
}

qkv_status qkv_model_forward(qkv_model *model, const int *ids, int n, const qkv_forward_opts *opts,
                             float *logits, float *last_logits, qkv_capture *cap) {
    return qkv_model_forward_iv(model, ids, n, opts, NULL, logits, last_logits, cap);
}

qkv_status qkv_model_forward_iv(qkv_model *model, const int *ids, int n,
                                const qkv_forward_opts *opts, const qkv_intervention *iv,
                                float *logits, float *last_logits, qkv_capture *cap) {
    if (!model) return qkv__fail(QKV_EINVAL, "forward: model is NULL");
    qkv_status st = qkv__check_ids(model, ids, n);
    if (st) return st;
    /* opts->bf16: the BF16 copies for every matrix (2: the prompt's GEMMs too) */
    return qkv__model_run_iv(model, ids, n, NULL, opts, 1, iv, 0, NULL, logits, last_logits, cap,
                             opts && opts->bf16 && model->bf16 ? 2 : 0);
}

/* ---- top-k --------------------------------------------------------------------------------- */

qkv_status qkv_top_k(const float *logits, int vocab_size, int k, int *ids, float *probs) {
    if (!logits || vocab_size < 1) return qkv__fail(QKV_EINVAL, "top_k: no logits");
    if (k < 1 || k > vocab_size) return qkv__fail(QKV_ERANGE, "top_k: k = %d outside [1, %d]", k, vocab_size);
    float mx = -INFINITY;
    for (int j = 0; j < vocab_size; j++)
        if (logits[j] > mx) mx = logits[j];
    double sum = 0.0;
    for (int j = 0; j < vocab_size; j++) sum += exp((double)logits[j] - mx);
    /* insertion into a sorted list of k: O(V k), fine for the small k views ask for */
    int n = 0;
    for (int j = 0; j < vocab_size; j++) {
        float v = logits[j];
        if (n == k && !(v > logits[ids[k - 1]])) continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && v > logits[ids[at - 1]]) {
            ids[at] = ids[at - 1];
            at--;
        }
        ids[at] = j;
    }
    for (int i = 0; i < k; i++) {
        double e = exp((double)logits[ids[i]] - mx);
        probs[i] = sum > 0 && isfinite(sum) ? (float)(e / sum) : 0.0f;
    }
    return QKV_OK;
}
