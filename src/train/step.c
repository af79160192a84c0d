/*
 * step.c -- one training step on the parameter block (gradient accumulation, global-norm
 * clipping, warm-up + cosine learning rate, AdamW with decay on matrices only), and
 * qkv_model_grad / qkv_model_grad_save.
 */
#include "train/trainer.h"

#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int n_threads(void) {
    int n = qkv_get_threads();
    return n > 0 ? n : 1;
}

qkv_status qkv__trainer_init(qkv__trainer *t, qkv_model *model, int B, int T) {
    memset(t, 0, sizeof *t);
    t->model = model;
    t->cfg = *qkv_model_get_config(model);
    t->params = qkv__model_params_block(model, &t->n_params);
    qkv__point_params(&t->cfg, t->params, &t->p);
    size_t bytes = t->n_params * sizeof(float);
    t->grads = qkv__alloc_aligned(bytes);
    t->m = qkv__alloc_aligned(bytes);
    t->v = qkv__alloc_aligned(bytes);
    if (!t->grads || !t->m || !t->v) {
        qkv__trainer_free(t);
        return qkv__fail(QKV_ENOMEM, "train: cannot allocate optimizer state (%zu parameters)",
                         t->n_params);
    }
    memset(t->grads, 0, bytes);
    memset(t->m, 0, bytes);
    memset(t->v, 0, bytes);
    qkv__point_params(&t->cfg, t->grads, &t->g);
    qkv__param_sizes(&t->cfg, t->sizes);
    qkv_status st = qkv__train_acts_alloc(&t->acts, &t->cfg, B, T);
    if (st) {
        qkv__trainer_free(t);
        return st;
    }
    return QKV_OK;
}

void qkv__trainer_free(qkv__trainer *t) {
    if (!t) return;
    qkv__free_aligned(t->grads);
    qkv__free_aligned(t->m);
    qkv__free_aligned(t->v);
    qkv__train_acts_free(&t->acts);
    t->grads = t->m = t->v = NULL;
}

float qkv__train_lr(int step, int steps, int warmup, float lr, float min_lr_frac) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (step >= steps) return lr * min_lr_frac;
    double ratio = (double)(step - warmup) / (double)(steps - warmup > 0 ? steps - warmup : 1);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    double min_lr = (double)lr * min_lr_frac;
    return (float)(min_lr + coeff * ((double)lr - min_lr));
}

/* Sum of squares of n floats over a fixed chunking (the same for any thread count). */
static double sum_squares(const float *x, size_t n) {
    enum { CH = 64 };
    double part[CH];
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int c = 0; c < CH; c++) {
        size_t a = n * (size_t)c / CH, b = n * (size_t)(c + 1) / CH;
        double s = 0.0;
        for (size_t i = a; i < b; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < CH; c++) s += part[c];
    return s;
}

qkv_status qkv__trainer_micro(qkv__trainer *t, const int *inputs, const int *targets, int B, int T,
                              float loss_scale, float *loss) {
    qkv_status st = qkv__train_forward(&t->cfg, &t->p, &t->acts, inputs, targets, B, T, loss);
    if (st) return st;
    return qkv__train_backward(&t->cfg, &t->p, &t->g, &t->acts, inputs, targets, B, T,
                                    loss_scale);
}

float qkv__trainer_update(qkv__trainer *t, const qkv__adamw *h, float lr) {
    float norm = (float)sqrt(sum_squares(t->grads, t->n_params));
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when above max_norm */
    float clip = 1.0f;
    if (h->grad_clip > 0.0f && norm > h->grad_clip) clip = h->grad_clip / (norm + 1e-6f);
    t->step++;
    float bc1 = 1.0f - powf(h->beta1, (float)t->step), bc2 = 1.0f - powf(h->beta2, (float)t->step);
    size_t off = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        float wd = qkv__kind_decays(k) ? h->weight_decay : 0.0f;
        float *p = t->params + off, *g = t->grads + off, *m = t->m + off, *v = t->v + off;
        size_t n = t->sizes[k];
        float b1 = h->beta1, b2 = h->beta2, eps = h->eps;
#pragma omp parallel for num_threads(n_threads()) schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] * clip;
            float mi = b1 * m[i] + (1.0f - b1) * gi;
            float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            /* PyTorch AdamW: decoupled decay first, then the Adam step */
            float pi = p[i] * (1.0f - lr * wd);
            p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        }
        off += n;
    }
    return norm;
}

/* ---- qkv_model_grad ------------------------------------------------------------------- */

qkv_status qkv_model_grad(qkv_model *model, const int *ids, int n, float *loss, float *grads) {
    if (!model || !ids || !loss) return qkv__fail(QKV_EINVAL, "grad: NULL argument");
    const qkv_model_config *cfg = qkv_model_get_config(model);
    if (n < 2)
        return qkv__fail(QKV_EINVAL, "grad: need at least 2 ids (the loss predicts ids[1:] from "
                         "ids[:-1]), got %d", n);
    if (n - 1 > cfg->n_ctx)
        return qkv__fail(QKV_ETOOLONG, "grad: %d ids give %d positions, more than the model's "
                         "context %d", n, n - 1, cfg->n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return qkv__fail(QKV_ERANGE, "grad: id %d at position %d outside the vocabulary [0, %d)",
                             ids[i], i, cfg->vocab_size);
    qkv__trainer t;
    qkv_status st = qkv__trainer_init(&t, model, 1, n - 1);
    if (st) return st;
    st = qkv__trainer_micro(&t, ids, ids + 1, 1, n - 1, 1.0f, loss);
    if (!st && grads) memcpy(grads, t.grads, t.n_params * sizeof(float));
    qkv__trainer_free(&t);
    return st;
}

qkv_status qkv_model_grad_save(const qkv_model *model, const float *grads, const char *path) {
    if (!model || !grads || !path) return qkv__fail(QKV_EINVAL, "grad: NULL argument");
    return qkv__save_named(qkv_model_get_config(model), grads, path);
}
