/*
 * layers.h -- the one home of every layer: forward/backward pairs in the llm.c manner, and
 * the transformer block built from them. Inference (forward.c, generate.c) and training
 * (src/train) call the same functions; inference passes NULL where training saves
 * activations for the backward.
 *
 * Shapes: N rows (B * T tokens), C channels, W = (H + 2 KV) d the q | k | v row, F the MLP
 * width, F2 = F or 2F (SwiGLU's gate | up). Matrices are [in, out] (params.h).
 *
 * Conventions (as llm.c): parameter gradients ACCUMULATE (+=); activation gradients
 * overwrite, except norm_backward, which adds into dinp (the residual stream's gradient
 * collects every branch that reads it). Reductions over rows run over a fixed number of row
 * chunks (QKV__CHUNKS) whatever the thread count, so the backward is deterministic.
 */
#ifndef QKV_LAYERS_H
#define QKV_LAYERS_H

#include "model/params.h"

#include <stdint.h>

#define QKV__CHUNKS 16

/* ---- single layers ------------------------------------------------------------------------ */

/* out[B*T, C] = wte[ids] (+ wpe[pos0 + t] when wpe). */
void qkv__encoder_forward(float *out, const int *ids, const float *wte, const float *wpe, int B,
                          int T, int C, int pos0);
/* dwte[ids] += dout, dwpe[t] += sum_b dout[b, t] (dwpe may be NULL). */
void qkv__encoder_backward(float *dwte, float *dwpe, const float *dout, const int *ids, int B,
                           int T, int C);

/* LayerNorm (kind QKV_NORM_LAYER: (x - mean) rstd w + b) or RMSNorm (x rstd w) over rows of C.
 * mean, rstd [N]: saved for the backward when not NULL (mean unused by RMSNorm). */
void qkv__norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps, int kind);
/* dinp += ..., dw += ..., db += ... (db NULL for RMSNorm). */
void qkv__norm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C,
                        int kind);

/* QK-norm: RMSNorm over each of nh heads of d values in rows of stride ld (in place allowed:
 * out == inp). rstd [N * nh] saved when not NULL. */
void qkv__headnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N,
                           int nh, int d, ptrdiff_t ld, float eps);
/* dinp (overwritten, may alias dout) and dw (+=) from dout; all in rows of stride ld. */
void qkv__headnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, const float *rstd, int N, int nh, int d, ptrdiff_t ld);

/* Rotary positions on nh heads of d values per row (row stride ld), in place. Row r of a
 * sequence of T sits at position pos0 + r % T. inverse: rotate back (the backward). */
void qkv__rope(float *x, ptrdiff_t ld, int N, int T, int nh, const qkv_model_config *cfg, int pos0,
               int inverse);

/* out[N, OC] = inp[N, C] (row stride ld_inp) @ w[C, OC] (+ bias). */
void qkv__matmul_forward(float *out, const float *inp, int ld_inp, const float *w,
                         const float *bias, int N, int C, int OC);
/* dinp[N, C] (row stride ld_dinp) = dout @ w^T (overwritten; skipped if NULL),
 * dw += inp^T @ dout, dbias += sum_n dout (skipped if NULL). */
void qkv__matmul_backward(float *dinp, int ld_dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, int ld_inp, const float *w, int N, int C, int OC);

/* GPT-2's tanh GELU over n values (out may be inp). */
void qkv__gelu_forward(float *out, const float *inp, size_t n);
/* dinp = gelu'(inp) * dout (dinp may alias dout). */
void qkv__gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* out[N, F] = silu(inp[:, :F]) * inp[:, F:] (inp rows are gate | up, 2F wide). */
void qkv__swiglu_forward(float *out, const float *inp, int N, int F);
/* dinp[N, 2F] (overwritten) from dout[N, F]. */
void qkv__swiglu_backward(float *dinp, const float *inp, const float *dout, int N, int F);

/* Inverted dropout: dst[i] = src[i] / (1 - p) where the hash of (key, i) keeps element i. */
void qkv__dropout(float *dst, const float *src, size_t n, float p, uint64_t key);

/* logits[N, V] become probabilities in place; losses[n] = -log p[n, targets[n]]. */
void qkv__crossentropy_forward(float *logits, float *losses, const int *targets, int N, int V);
/* probs become dlogits in place: (p - onehot(target)) * dloss. */
void qkv__crossentropy_backward(float *probs, const int *targets, float dloss, int N, int V);

/* Row-major C[M, N] = op(A) op(B) + beta C (OpenBLAS, rows split over the threads). */
void qkv__gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

/* ---- the block ---------------------------------------------------------------------------- */

/* One layer's activations. Training keeps one per layer; inference reuses one, with the
 * stream updated in place (res2 = res3 = the input) and mean/rstd/lse NULL. */
typedef struct qkv__block_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* [N, C], [N], [N] */
    float *qkv_raw;                   /* [N, W] before QK-norm (qk_norm and training only) */
    float *qn_rstd, *kn_rstd;         /* [N * H], [N * KV] (qk_norm and training only) */
    float *qkv;                       /* [N, W] as attention sees it (after QK-norm and RoPE) */
    float *att;                       /* [N, W] heads' outputs in columns [0, Hd) */
    float *lse;                       /* [B, H, T] */
    float *res2;                      /* [N, C] stream after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch;                       /* [N, F2] */
    float *fch_act;                   /* [N, F] */
    float *res3;                      /* [N, C] stream after the MLP */
    float *tmp;                       /* [N, C] scratch when res2 / res3 alias the input */
} qkv__block_acts;

/* Reduced copies of one layer's matrices, read by one-token matmuls (generation), or NULL:
 * BF16 ([in, out], qkv__gemv) and Q8_0 (struct qkv__q8 rows [out, in / 32], qkv__gemv_q8;
 * model.h). A matrix with a Q8_0 copy uses it; else BF16; else F32. */
typedef struct qkv__block_bf16 {
    const uint16_t *attn_w, *proj_w, *fc_w, *fcproj_w;
    int prompt; /* the BF16 copies serve passes of several tokens too (BF16 GEMM) */
    const struct qkv__q8 *q8_attn_w, *q8_proj_w, *q8_fc_w, *q8_fcproj_w;
} qkv__block_bf16;

/* The first half of block l: ln_1, x @ attn_w (+ b), QK-norm, RoPE at positions pos0 + t.
 * a->qkv then holds q | k | v for attention (the caller's: the engine, or the KV cache). */
void qkv__block_attn_in(const qkv_model_config *cfg, const qkv__params *p, int l,
                        qkv__block_acts *a, const float *x, int B, int T, int pos0,
                        const qkv__block_bf16 *bw);
/* The second half: res2 = x + att @ proj_w (+ b), ln_2, MLP, res3 = res2 + mlp.
 * drop > 0: dropout with keys k_attn, k_mlp on the two branches (training). */
void qkv__block_attn_out(const qkv_model_config *cfg, const qkv__params *p, int l,
                         qkv__block_acts *a, const float *x, int N, const qkv__block_bf16 *bw,
                         float drop, uint64_t k_attn, uint64_t k_mlp);
/* The engine's descriptor for q | k | v packed in rows of W (B sequences of T). */
void qkv__block_attn_desc(const qkv_model_config *cfg, qkv_attn_desc *d, int B, int T);
/* Backward of block l: dres (in: d res3, out: d x) and the gradients g. scratch: dbuf_c
 * [N, C], dbuf_w, dbuf_w2 [N, W], dbuf_f [N, F2]. */
qkv_status qkv__block_backward(const qkv_model_config *cfg, const qkv__params *p, qkv__params *g,
                               int l, const qkv__block_acts *a, const float *x, int B, int T,
                               float *dres, float *dbuf_c, float *dbuf_w, float *dbuf_w2,
                               float *dbuf_f, float drop, uint64_t k_attn, uint64_t k_mlp);

#endif /* QKV_LAYERS_H */
