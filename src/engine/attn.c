/*
 * attn.c -- public entry points of the attention engine: validate, then run.
 * The kernels themselves (one table per instruction set) are in attn_kernels.inc; cpu.c
 * picks the table.
 */
#include "engine.h"

#include <math.h>

void qkv_attn_desc_init(qkv_attn_desc *desc, int batch, int n_head_q, int n_head_kv, int n_q,
                        int n_k, int head_dim) {
    *desc = (qkv_attn_desc){0};
    desc->batch = batch;
    desc->n_head_q = n_head_q;
    desc->n_head_kv = n_head_kv;
    desc->n_q = n_q;
    desc->n_k = n_k;
    desc->head_dim = head_dim;
}

void qkv__attn_resolve_strides(const qkv_attn_desc *d, qkv__attn_strides *s) {
    ptrdiff_t D = d->head_dim;
    s->q_n = d->q_stride_n ? d->q_stride_n : D;
    s->q_h = d->q_stride_h ? d->q_stride_h : s->q_n * d->n_q;
    s->q_b = d->q_stride_b ? d->q_stride_b : s->q_h * d->n_head_q;
    s->k_n = d->k_stride_n ? d->k_stride_n : D;
    s->k_h = d->k_stride_h ? d->k_stride_h : s->k_n * d->n_k;
    s->k_b = d->k_stride_b ? d->k_stride_b : s->k_h * d->n_head_kv;
    s->v_n = d->v_stride_n ? d->v_stride_n : D;
    s->v_h = d->v_stride_h ? d->v_stride_h : s->v_n * d->n_k;
    s->v_b = d->v_stride_b ? d->v_stride_b : s->v_h * d->n_head_kv;
}

qkv_status qkv_attn_validate(const qkv_attn_desc *d) {
    if (!d) return qkv__fail(QKV_EINVAL, "attention: NULL descriptor");
    if (d->batch < 1 || d->n_head_q < 1 || d->n_head_kv < 1 || d->n_q < 0 || d->n_k < 0)
        return qkv__fail(QKV_ESHAPE, "attention: bad shape B=%d Hq=%d Hkv=%d Nq=%d Nk=%d",
                         d->batch, d->n_head_q, d->n_head_kv, d->n_q, d->n_k);
    if (d->n_k > (1 << 24))
        return qkv__fail(QKV_EUNSUPPORTED, "attention: %d keys; at most 16777216 (masks compare key positions in float32)",
                         d->n_k);
    if (d->n_head_q % d->n_head_kv != 0)
        return qkv__fail(QKV_ESHAPE, "attention: %d query heads is not a multiple of %d key/value heads",
                         d->n_head_q, d->n_head_kv);
    if (d->head_dim < 1 || d->head_dim > 256)
        return qkv__fail(QKV_EUNSUPPORTED, "attention: head dim %d outside [1, 256]", d->head_dim);
    if (!isfinite(d->temperature) || d->temperature < 0.0f || (d->temperature > 0.0f && d->temperature < 1e-6f))
        return qkv__fail(QKV_ERANGE, "attention: temperature %g outside [1e-6, 3.4e38] (or 0: the default, 1)",
                         (double)d->temperature);
    if (!isfinite(d->scale))
        return qkv__fail(QKV_ERANGE, "attention: scale must be finite");
    if (d->kv_len)
        for (int b = 0; b < d->batch; b++)
            if (d->kv_len[b] < 0 || d->kv_len[b] > d->n_k)
                return qkv__fail(QKV_ERANGE, "attention: kv_len[%d] = %d outside [0, %d]", b,
                                 d->kv_len[b], d->n_k);
    return QKV_OK;
}

qkv_status qkv_attention_forward(const qkv_attn_desc *desc, const float *q, const float *k,
                                 const float *v, float *out, float *lse, float *probs) {
    qkv_status st = qkv_attn_validate(desc);
    if (st) return st;
    if (!q || !k || !v || !out) return qkv__fail(QKV_EINVAL, "attention: NULL q, k, v or out");
    return qkv__attn_kernels_get()->forward(desc, q, k, v, out, lse, probs);
}

qkv_status qkv_attention_backward(const qkv_attn_desc *desc, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse,
                                  const float *dout, float *dq, float *dk, float *dv) {
    qkv_status st = qkv_attn_validate(desc);
    if (st) return st;
    if (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv)
        return qkv__fail(QKV_EINVAL, "attention backward: NULL argument (q, k, v, out, lse, dout, dq, dk and dv are required)");
    return qkv__attn_kernels_get()->backward(desc, q, k, v, out, lse, dout, dq, dk, dv);
}
