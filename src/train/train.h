/*
 * train.h -- private to src/train and its tests: the layers of GPT-2 training, each a
 * forward/backward pair (llm.c style), the whole-model forward/backward on the gpt2.h
 * parameter block, and AdamW.
 *
 * Shape letters: B = batch, T = sequence length, C = channels, V = vocab size,
 * L = layers, NH = heads, hs = C / NH, N = B * T rows.
 *
 * Conventions: parameter gradients ACCUMULATE (+=), so gradient accumulation is just more
 * backward calls; activation gradients overwrite, except layernorm_backward, which adds into
 * dinp (the residual stream's gradient collects every branch that reads it).
 * Every reduction runs over a fixed number of row chunks (QKV__TRAIN_CHUNKS) whatever the
 * thread count, so these kernels are bit-for-bit deterministic; the matmuls are OpenBLAS
 * sgemm (deterministic for a fixed thread count).
 */
#ifndef QKV_TRAIN_H
#define QKV_TRAIN_H

#include "model/params.h"

#include <stdint.h>

#define QKV__TRAIN_CHUNKS 16

/* ---- layers --------------------------------------------------------------------------- */

/* out[B,T,C] = wte[ids[b,t]] + wpe[t] */
void qkv__encoder_forward(float *out, const int *ids, const float *wte, const float *wpe, int B,
                          int T, int C);
/* dwte[ids] += dout, dwpe[t] += sum_b dout[b,t] */
void qkv__encoder_backward(float *dwte, float *dwpe, const float *dout, const int *ids, int B,
                           int T, int C);

/* out[N,C] = (inp - mean) * rstd * w + b; mean, rstd [N] saved for the backward. */
void qkv__layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int N, int C, float eps);
/* dinp[N,C] += ..., dw[C] += ..., db[C] += ... */
void qkv__layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean,
                             const float *rstd, int N, int C);

/* out[N,OC] = inp[N,C] (row stride ld_inp) @ w[C,OC] + bias[OC] (bias may be NULL). */
void qkv__matmul_forward(float *out, const float *inp, int ld_inp, const float *w,
                         const float *bias, int N, int C, int OC);
/* dinp[N,C] (row stride ld_dinp) = dout @ w^T (overwritten; skipped if dinp is NULL),
 * dw[C,OC] += inp^T @ dout, dbias[OC] += sum_n dout (skipped if NULL). */
void qkv__matmul_backward(float *dinp, int ld_dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, int ld_inp, const float *w, int N, int C, int OC);

/* GPT-2's tanh GELU ("gelu_new"), elementwise over n values. */
void qkv__gelu_forward(float *out, const float *inp, size_t n);
/* dinp = gelu'(inp) * dout (overwritten; dinp may alias dout). */
void qkv__gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* logits[N,V] are turned into probabilities in place; losses[n] = -log p[n, targets[n]].
 * Targets must lie in [0, V). */
void qkv__crossentropy_forward(float *logits, float *losses, const int *targets, int N, int V);
/* probs[N,V] become dlogits in place: (p - onehot(target)) * dloss. */
void qkv__crossentropy_backward(float *probs, const int *targets, float dloss, int N, int V);

/* ---- the whole model ------------------------------------------------------------------ */

/* Saved activations for batches of up to B x T (allocated once, llm.c style). */
typedef struct qkv__train_acts {
    int B, T; /* capacity */
    float *encoded;            /* [N, C] */
    float *ln1, *ln1_mean, *ln1_rstd; /* [L, N, C], [L, N] */
    float *qkv;                /* [L, N, 3C] */
    float *atty;               /* [L, N, 3C]: the engine writes out in q's strides, cols [0, C) */
    float *lse;                /* [L, B, NH, T] */
    float *residual2;          /* [L, N, C] */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;     /* [L, N, 4C] */
    float *residual3;          /* [L, N, C] */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;             /* [N, V]: logits, then probabilities, then dlogits */
    float *losses;             /* [N] */
    /* backward scratch */
    float *dresidual;          /* [N, C] */
    float *dbuf_c;             /* [N, C] */
    float *dbuf_3c, *dbuf_3c2; /* [N, 3C] */
    float *dbuf_4c;            /* [N, 4C] */
    float *block;              /* the one allocation everything above points into */
    /* Residual dropout (nanoGPT's embedding and residual-branch dropout) of the next forward
     * and its backward: 0 = off (evaluation, qkv grad). Each mask is a hash of (dropout_key,
     * site, element), so the backward regenerates it instead of storing it. */
    float dropout;
    uint64_t dropout_key;
} qkv__train_acts;

qkv_status qkv__train_acts_alloc(qkv__train_acts *a, const qkv_model_config *cfg, int B, int T);
void qkv__train_acts_free(qkv__train_acts *a);

/* Forward over inputs [B, T] (ids in [0, V), T <= n_ctx). With targets it also computes
 * the losses ([B*T] in a->losses) and *mean_loss; targets may be NULL (no loss). */
qkv_status qkv__train_forward(const qkv_model_config *cfg, const qkv__params *p,
                                   qkv__train_acts *a, const int *inputs, const int *targets,
                                   int B, int T, float *mean_loss);
/* Backward of the last forward (which had targets): grads (same layout as the parameter
 * block) += d(loss_scale * mean loss)/d params. */
qkv_status qkv__train_backward(const qkv_model_config *cfg, const qkv__params *p,
                                    qkv__params *g, qkv__train_acts *a, const int *inputs,
                                    const int *targets, int B, int T, float loss_scale);

/* Inverted dropout: dst[i] = src[i] / (1 - p) where the hash of (key, i) keeps element i
 * (probability 1 - p), else 0. dst may be src. The same for any thread count. */
void qkv__dropout(float *dst, const float *src, size_t n, float p, uint64_t key);

/* GPT-2 initialisation (nanoGPT): weights N(0, 0.02), residual projections (attn.c_proj,
 * mlp.c_proj) N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm weights 1. Seeded, deterministic. */
void qkv__init_weights(const qkv_model_config *cfg, float *block, uint64_t seed);

/* Overwrites wpe with the original Transformer's position code, PE[t, 2i] = sin(t / 10000^(2i/C)),
 * PE[t, 2i+1] = cos(...), scaled to wte's per-element RMS (0.02). A shifted position is a fixed
 * rotation of it, so "attend to token t-1" is one linear map for q and k to learn. */
void qkv__init_sinusoid_wpe(const qkv_model_config *cfg, float *block);

/* Which of the 16 tensor kinds get weight decay: the matrices (wte, wpe, c_attn, c_proj,
 * c_fc, mlp.c_proj), as nanoGPT decays every parameter of dimension >= 2. */
int qkv__kind_decays(int kind);

/* ---- small utilities shared by the trainer and the CLI -------------------------------- */

/* splitmix64's finaliser: a 64-bit hash (dropout masks hash (key, element) with it). */
static inline uint64_t qkv__mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* splitmix64 step: the trainer's one random number generator. */
static inline uint64_t qkv__rng_next(uint64_t *s) { return qkv__mix64(*s += 0x9E3779B97F4A7C15ULL); }

/* Writes every tensor of a gradient (or parameter) block under its Hugging Face name
 * ("transformer.h.0.attn.c_attn.weight", ...) as an F32 safetensors file. */
qkv_status qkv__train_save_named(const qkv_model_config *cfg, const float *block,
                                 const char *path);

/* Makes OpenBLAS single-threaded: the trainer splits each sgemm over its own OpenMP threads. */
void qkv__train_blas_threads(void);

#endif /* QKV_TRAIN_H */
