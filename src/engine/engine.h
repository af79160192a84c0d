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

/* The reference backward of one (batch, kv head) (attn_ref.c): dq of its query heads,
 * dk and dv of its keys. The fast backward recomputes with it any head whose inputs hold
 * a NaN or an inf, so that masked (query, key) pairs never carry them. */
qkv_status qkv__attn_backward_ref_head(const qkv_attn_desc *desc, int b, int hk, const float *q,
                                       const float *k, const float *v, const float *out,
                                       const float *dout, float *dq, float *dk, float *dv);

/* ---- SIMD kernels, one table per instruction set (kernels_*.c), chosen in cpu.c ---- */

/* Head dim padded for the packed buffers: a multiple of 16 floats (one AVX-512 vector),
 * so every packed row is 64-byte aligned and the kernels have no d tails. */
#define QKV__DPAD(d) (((d) + 15) & ~15)

typedef struct qkv__attn_kernels {
    const char *name; /* "avx512", "avx2", "scalar" */
    /* Validated descriptor, non-NULL q/k/v/out; lse, probs optional. */
    qkv_status (*forward)(const qkv_attn_desc *d, const float *q, const float *k, const float *v,
                          float *out, float *lse, float *probs);
    qkv_status (*backward)(const qkv_attn_desc *d, const float *q, const float *k,
                           const float *v, const float *out, const float *lse,
                           const float *dout, float *dq, float *dk, float *dv);
    /* One query per head against n_k keys (a KV cache). q, out: [Hq, d] rows at stride
     * q_stride_h; k, v: [Hkv, n_k, d] with head stride kv_stride_h and row stride d.
     * sc = scale / temperature. No allocation; threads over key/value heads. */
    void (*decode)(int n_head_q, int n_head_kv, int n_k, int d, const float *q,
                   ptrdiff_t q_stride_h, const float *k, const float *v, ptrdiff_t kv_stride_h,
                   float *out, ptrdiff_t out_stride_h, float sc);
} qkv__attn_kernels;

extern const qkv__attn_kernels qkv__attn_kernels_scalar;
extern const qkv__attn_kernels qkv__attn_kernels_avx2;
extern const qkv__attn_kernels qkv__attn_kernels_avx512;

/* The table in use (detection, $QKV_SIMD, qkv_set_simd). */
const qkv__attn_kernels *qkv__attn_kernels_get(void);

/* Nonzero when qkv_attention_forward_bf16 can run: the CPU has AVX512_BF16 (with F/BW/VL/DQ)
 * and the AVX-512 table is the one in use (a forced avx2 or scalar path turns it off). */
int qkv__attn_bf16_usable(void);

#endif /* QKV_ENGINE_H */
