/* engine.h -- private helpers shared by the attention engine's files. */
#ifndef QKV_ENGINE_H
#define QKV_ENGINE_H

#include "qkv_internal.h"

/* Strides resolved from a descriptor (0 replaced by the contiguous value). */
typedef struct qkv__attn_strides {
    ptrdiff_t q_b, q_h, q_n, k_b, k_h, k_n, v_b, v_h, v_n;
} qkv__attn_strides;

void qkv__attn_resolve_strides(const qkv_attn_desc *d, qkv__attn_strides *s);

static inline float qkv__attn_scale(const qkv_attn_desc *d) {
    return d->scale != 0.0f ? d->scale : 1.0f / __builtin_sqrtf((float)d->head_dim);
}

static inline float qkv__attn_temperature(const qkv_attn_desc *d) {
    return d->temperature != 0.0f ? d->temperature : 1.0f;
}

/* Number of leading keys query row i of batch b may see (0..Nk): padding and the
 * bottom-right causal mask together. */
static inline int qkv__attn_visible(const qkv_attn_desc *d, int b, int i) {
    int n = d->kv_len ? d->kv_len[b] : d->n_k;
    if (d->causal) {
        long lim = (long)i + (long)(d->n_k - d->n_q) + 1;
        if (lim < 0) lim = 0;
        if (lim < n) n = (int)lim;
    }
    return n;
}

#endif /* QKV_ENGINE_H */
