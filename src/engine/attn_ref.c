/*
 * attn_ref.c -- the plain reference: materialises every row of logits and accumulates in
 * double. It is the oracle every fast path is tested against; keep it simple, never
 * optimise it. It also states the policy for non-finite values (include/qkv.h,
 * docs/ENGINE.md) in the plainest form: see ref_row_probs.
 */
#include "engine.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define LOG2E 1.44269504088896341

/* One query row against the keys it sees (j < visible; the rest are masked and take no
 * part, whatever they hold). Leaves the probabilities in p[0, n_k) and returns the lse:
 *   - sees no key: p = 0, lse = -inf (output 0);
 *   - a NaN or +inf logit, or every logit -inf: the softmax is undefined, p = NaN over the
 *     keys it sees (0 elsewhere), lse = NaN;
 *   - otherwise the max-subtracted softmax: finite logits of any size give the right
 *     (maybe one-hot) answer, and a -inf logit gets p = 0.
 * Logits are float32 in the fast paths, which work in base 2: one whose magnitude passes
 * FLT_MAX there (|logit| > FLT_MAX / log2(e), about 2.4e38) is +-inf here too. */
static double ref_row_probs(const qkv_attn_desc *d, const float *qrow, const float *kbase,
                            ptrdiff_t k_stride_n, int visible, double *p) {
    double scale = (double)qkv__attn_scale(d) / (double)qkv__attn_temperature(d);
    double mx = -INFINITY;
    int undefined = 0;
    for (int j = 0; j < d->n_k; j++) {
        if (j >= visible) {
            p[j] = -INFINITY;
            continue;
        }
        const float *krow = kbase + (ptrdiff_t)j * k_stride_n;
        double s = 0.0;
        for (int c = 0; c < d->head_dim; c++) s += (double)qrow[c] * (double)krow[c];
        p[j] = s * scale;
        if (fabs(p[j] * LOG2E) > FLT_MAX) p[j] = p[j] > 0 ? INFINITY : -INFINITY;
        if (isnan(p[j]) || p[j] == INFINITY) undefined = 1;
        if (p[j] > mx) mx = p[j];
    }
    if (visible == 0) {
        for (int j = 0; j < d->n_k; j++) p[j] = 0.0;
        return -INFINITY;
    }
    if (undefined || mx == -INFINITY) {
        for (int j = 0; j < d->n_k; j++) p[j] = j < visible ? NAN : 0.0;
        return NAN;
    }
    double sum = 0.0;
    for (int j = 0; j < visible; j++) sum += exp(p[j] - mx);
    double lse = mx + log(sum);
    for (int j = 0; j < d->n_k; j++) p[j] = j < visible ? exp(p[j] - lse) : 0.0;
    return lse;
}

qkv_status qkv_attention_forward_ref(const qkv_attn_desc *desc, const float *q, const float *k,
                                     const float *v, float *out, float *lse, float *probs) {
    qkv_status st = qkv_attn_validate(desc);
    if (st) return st;
    if (!q || !k || !v || !out) return qkv__fail(QKV_EINVAL, "attention: NULL q, k, v or out");
    qkv__attn_strides s;
    qkv__attn_resolve_strides(desc, &s);
    const int D = desc->head_dim, group = desc->n_head_q / desc->n_head_kv;
    double *p = malloc(sizeof(double) * (size_t)(desc->n_k > 0 ? desc->n_k : 1));
    double *acc = malloc(sizeof(double) * (size_t)D);
    if (!p || !acc) {
        free(p);
        free(acc);
        return qkv__fail(QKV_ENOMEM, "attention reference: out of memory");
    }
    for (int b = 0; b < desc->batch; b++) {
        for (int h = 0; h < desc->n_head_q; h++) {
            int hk = h / group;
            const float *kb = k + b * s.k_b + hk * s.k_h;
            const float *vb = v + b * s.v_b + hk * s.v_h;
            for (int i = 0; i < desc->n_q; i++) {
                const float *qrow = q + b * s.q_b + h * s.q_h + i * s.q_n;
                float *orow = out + b * s.q_b + h * s.q_h + i * s.q_n;
                int visible = qkv__attn_visible(desc, b, i);
                double l = ref_row_probs(desc, qrow, kb, s.k_n, visible, p);
                for (int c = 0; c < D; c++) acc[c] = 0.0;
                for (int j = 0; j < visible; j++) {
                    const float *vrow = vb + (ptrdiff_t)j * s.v_n;
                    for (int c = 0; c < D; c++) acc[c] += p[j] * (double)vrow[c];
                }
                for (int c = 0; c < D; c++) orow[c] = (float)acc[c];
                size_t row = ((size_t)b * (size_t)desc->n_head_q + (size_t)h) * (size_t)desc->n_q + (size_t)i;
                if (lse) lse[row] = (float)l;
                if (probs)
                    for (int j = 0; j < desc->n_k; j++) probs[row * (size_t)desc->n_k + (size_t)j] = (float)p[j];
            }
        }
    }
    free(p);
    free(acc);
    return QKV_OK;
}

/* dS = P * (dP - rowsum(dO * O)), dP = dO V^T; dQ = dS K * scale', dK = dS^T Q * scale',
 * dV = P^T dO, with scale' = scale / temperature, over the (query, key) pairs that are not
 * masked (a masked pair carries nothing, NaN included). dk and dv accumulate across the
 * query heads that share a key/value head. One (batch, kv head) per call: the fast paths
 * hand a head whose inputs hold a NaN or an inf to this function. */
qkv_status qkv__attn_backward_ref_head(const qkv_attn_desc *desc, int b, int hk, const float *q,
                                       const float *k, const float *v, const float *out,
                                       const float *dout, float *dq, float *dk, float *dv) {
    qkv__attn_strides s;
    qkv__attn_resolve_strides(desc, &s);
    const int D = desc->head_dim, Nk = desc->n_k, group = desc->n_head_q / desc->n_head_kv;
    const double sc = (double)qkv__attn_scale(desc) / (double)qkv__attn_temperature(desc);
    /* double accumulators for dk, dv of this (b, kv head) */
    const size_t kv_elems = (size_t)(Nk > 0 ? Nk : 1) * (size_t)D;
    double *p = malloc(sizeof(double) * (size_t)(Nk > 0 ? Nk : 1));
    double *ds = malloc(sizeof(double) * (size_t)(Nk > 0 ? Nk : 1));
    double *gq = malloc(sizeof(double) * (size_t)D);
    double *gk = calloc(kv_elems, sizeof(double));
    double *gv = calloc(kv_elems, sizeof(double));
    if (!p || !ds || !gq || !gk || !gv) {
        free(p), free(ds), free(gq), free(gk), free(gv);
        return qkv__fail(QKV_ENOMEM, "attention backward reference: out of memory");
    }
    const float *kb = k + b * s.k_b + hk * s.k_h;
    const float *vb = v + b * s.v_b + hk * s.v_h;
    for (int h = hk * group; h < (hk + 1) * group; h++) {
        for (int i = 0; i < desc->n_q; i++) {
            ptrdiff_t qo = b * s.q_b + h * s.q_h + i * s.q_n;
            const float *qrow = q + qo, *orow = out + qo, *dorow = dout + qo;
            int visible = qkv__attn_visible(desc, b, i);
            ref_row_probs(desc, qrow, kb, s.k_n, visible, p);
            double delta = 0.0;
            for (int c = 0; c < D; c++) delta += (double)dorow[c] * (double)orow[c];
            for (int c = 0; c < D; c++) gq[c] = 0.0;
            for (int j = 0; j < visible; j++) {
                const float *vrow = vb + (ptrdiff_t)j * s.v_n;
                const float *krow = kb + (ptrdiff_t)j * s.k_n;
                double dp = 0.0;
                for (int c = 0; c < D; c++) dp += (double)dorow[c] * (double)vrow[c];
                ds[j] = p[j] * (dp - delta);
                for (int c = 0; c < D; c++) {
                    gq[c] += ds[j] * (double)krow[c] * sc;
                    gk[(size_t)j * D + c] += ds[j] * (double)qrow[c] * sc;
                    gv[(size_t)j * D + c] += p[j] * (double)dorow[c];
                }
            }
            for (int c = 0; c < D; c++) dq[qo + c] = (float)gq[c];
        }
    }
    for (int j = 0; j < Nk; j++) {
        float *dkrow = dk + b * s.k_b + hk * s.k_h + (ptrdiff_t)j * s.k_n;
        float *dvrow = dv + b * s.v_b + hk * s.v_h + (ptrdiff_t)j * s.v_n;
        for (int c = 0; c < D; c++) {
            dkrow[c] = (float)gk[(size_t)j * D + c];
            dvrow[c] = (float)gv[(size_t)j * D + c];
        }
    }
    free(p), free(ds), free(gq), free(gk), free(gv);
    return QKV_OK;
}

qkv_status qkv_attention_backward_ref(const qkv_attn_desc *desc, const float *q, const float *k,
                                      const float *v, const float *out, const float *lse,
                                      const float *dout, float *dq, float *dk, float *dv) {
    (void)lse; /* the reference recomputes everything from scratch */
    qkv_status st = qkv_attn_validate(desc);
    if (st) return st;
    if (!q || !k || !v || !out || !dout || !dq || !dk || !dv)
        return qkv__fail(QKV_EINVAL, "attention backward: NULL argument");
    for (int b = 0; b < desc->batch; b++)
        for (int hk = 0; hk < desc->n_head_kv; hk++)
            if ((st = qkv__attn_backward_ref_head(desc, b, hk, q, k, v, out, dout, dq, dk, dv))) return st;
    return QKV_OK;
}
