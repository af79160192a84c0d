/*
 * train.h -- private to src/train and its tests: the whole-model forward with saved
 * activations and its backward on the params.h parameter block, for every family (the
 * layers themselves are src/model/layers.h, shared with inference), initialisation, AdamW.
 *
 * Shape letters as layers.h: B = batch, T = sequence length, N = B * T rows, C channels,
 * V vocab, L layers. Parameter gradients accumulate (+=): gradient accumulation is more
 * backward calls. Deterministic for a fixed thread count.
 */
#ifndef QKV_TRAIN_H
#define QKV_TRAIN_H

#include "model/layers.h"

#include <stdint.h>

/* ---- the whole model ------------------------------------------------------------------ */

/* Saved activations for batches of up to B x T (allocated once, llm.c style). */
typedef struct qkv__train_acts {
    int B, T; /* capacity */
    float *encoded;            /* [N, C] */
    /* per layer, [L, ...] each: the fields of qkv__block_acts (layers.h) */
    float *ln1, *ln1_mean, *ln1_rstd;  /* [L, N, C], [L, N], [L, N] */
    float *qkv_raw, *qn_rstd, *kn_rstd; /* [L, N, W], [L, N, H], [L, N, KV] (QK-norm only) */
    float *qkv, *att;          /* [L, N, W]: att has the heads' outputs in columns [0, Hd) */
    float *lse;                /* [L, B, H, T] */
    float *residual2;          /* [L, N, C] */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch;                /* [L, N, F2] */
    float *fch_act;            /* [L, N, F] */
    float *residual3;          /* [L, N, C] */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;             /* [N, V]: logits, then probabilities, then dlogits */
    float *losses;             /* [N] */
    /* backward scratch */
    float *dresidual;          /* [N, C] */
    float *dbuf_c;             /* [N, C] */
    float *dbuf_w, *dbuf_w2;   /* [N, W], [N, max(W, F)] */
    float *dbuf_f;             /* [N, F2] */
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

/* GPT-2 initialisation (nanoGPT), for every family: matrices N(0, 0.02), residual
 * projections (attention output, MLP output) N(0, 0.02 / sqrt(2 L)), biases 0, norm weights
 * 1. Seeded, deterministic. */
void qkv__init_weights(const qkv_model_config *cfg, float *block, uint64_t seed);

/* Overwrites wpe with the original Transformer's position code, PE[t, 2i] = sin(t / 10000^(2i/C)),
 * PE[t, 2i+1] = cos(...), scaled to wte's per-element RMS (0.02). A shifted position is a fixed
 * rotation of it, so "attend to token t-1" is one linear map for q and k to learn. */
void qkv__init_sinusoid_wpe(const qkv_model_config *cfg, float *block);

/* Which tensor kinds get weight decay: the matrices (wte, wpe, attention in and out, MLP in
 * and out, lm_head), as nanoGPT decays every parameter of dimension >= 2. */
int qkv__kind_decays(int kind);

#endif /* QKV_TRAIN_H */
