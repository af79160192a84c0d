/*
 * trainer.h -- private to src/train: the optimizer's state around a model (step.c) and the
 * training run's file formats (run.c).
 */
#ifndef QKV_TRAINER_H
#define QKV_TRAINER_H

#include "train/train.h"

typedef struct qkv__adamw {
    float beta1, beta2, eps, weight_decay, grad_clip;
} qkv__adamw;

typedef struct qkv__trainer {
    qkv_model *model; /* borrowed */
    qkv_model_config cfg;
    float *params;    /* the model's block (borrowed) */
    size_t n_params;
    size_t sizes[QKV__N_KINDS];
    qkv__params p, g;
    float *grads, *m, *v; /* [n_params] each */
    qkv__train_acts acts;
    int step;             /* optimizer steps taken (Adam's t) */
} qkv__trainer;

/* Allocates gradients, Adam moments and activations for micro-batches of B x T. */
qkv_status qkv__trainer_init(qkv__trainer *t, qkv_model *model, int B, int T);
void qkv__trainer_free(qkv__trainer *t);

/* Forward + backward of one micro-batch; gradients accumulate (scaled by loss_scale). */
qkv_status qkv__trainer_micro(qkv__trainer *t, const int *inputs, const int *targets, int B, int T,
                              float loss_scale, float *loss);

/* Clips the accumulated gradients to h->grad_clip (global norm), takes one AdamW step at
 * learning rate lr, returns the norm before clipping. Does not zero the gradients. */
float qkv__trainer_update(qkv__trainer *t, const qkv__adamw *h, float lr);

/* Learning rate at step (0-based): linear warm-up over `warmup` steps to lr, then cosine
 * down to lr * min_lr_frac at `steps` (nanoGPT's get_lr). */
float qkv__train_lr(int step, int steps, int warmup, float lr, float min_lr_frac);

/* Token file (OUT/tokens.bin): a 64-byte little-endian header, then n_train then n_val
 * tokens as uint16 (vocab <= 65536) or uint32. */
#define QKV__TOKENS_MAGIC "QKVTOKEN"
#define QKV__TOKENS_VERSION 1u
/* Optimizer state (OUT/optimizer.bin): a 128-byte header (magic, version, config, step,
 * RNG, data position, counters, a hash of the weights it belongs to), then m and v. */
#define QKV__OPT_MAGIC "QKVADAMW"
#define QKV__OPT_VERSION 1u

#endif /* QKV_TRAINER_H */
