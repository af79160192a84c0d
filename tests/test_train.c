/*
 * test_train.c -- training's gradients against finite differences, layer by layer
 * (LayerNorm, GELU, matmul, softmax cross-entropy, attention through the engine, encoder)
 * and for the whole model; the learning-rate schedule; AdamW on a tiny model learns and is
 * bit-for-bit deterministic; qkv_model_grad's argument checks.
 *
 * Finite differences are central, in float32, on a scalar loss sum(out * R) for a fixed
 * random R; tolerances are stated at each check (|analytic - numeric| <= atol + rtol|numeric|).
 */
#include "test.h"

#include "qkv.h"
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long seed = 0x5EED1234ULL;

static float *rand_vec(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = test_rand_uniform(&seed) * scale;
    return x;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

#define CHECK_GRAD(analytic, numeric, atol, rtol, what, idx)                                    \
    do {                                                                                        \
        double ga__ = (analytic), gn__ = (numeric);                                             \
        if (!(fabs(ga__ - gn__) <= (atol) + (rtol) * fabs(gn__)))                                \
            FAIL("%s[%d]: analytic %.6g vs finite difference %.6g", what, (int)(idx), ga__, gn__); \
    } while (0)

/* ---- LayerNorm ------------------------------------------------------------------------ */

static const int LN_N = 3, LN_C = 8;
static double ln_loss(const float *inp, const float *w, const float *b, const float *R) {
    float out[24], mean[3], rstd[3];
    qkv__norm_forward(out, mean, rstd, inp, w, b, LN_N, LN_C, 1e-5f, QKV_NORM_LAYER);
    return dot(out, R, (size_t)LN_N * LN_C);
}

static void test_layernorm_grad(void) {
    int N = LN_N, C = LN_C;
    float *inp = rand_vec((size_t)N * C, 2.0f), *w = rand_vec((size_t)C, 1.0f),
          *b = rand_vec((size_t)C, 1.0f), *R = rand_vec((size_t)N * C, 1.0f);
    float out[24], mean[3], rstd[3], dinp[24] = {0}, dw[8] = {0}, db[8] = {0};
    qkv__norm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f, QKV_NORM_LAYER);
    qkv__norm_backward(dinp, dw, db, R, inp, w, mean, rstd, N, C, QKV_NORM_LAYER);
    const float h = 1e-2f;
    float *arrs[3] = {inp, w, b}, *grads[3] = {dinp, dw, db};
    int sizes[3] = {N * C, C, C};
    const char *names[3] = {"dinp", "dw", "db"};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < sizes[a]; i++) {
            float keep = arrs[a][i];
            arrs[a][i] = keep + h;
            double lp = ln_loss(inp, w, b, R);
            arrs[a][i] = keep - h;
            double lm = ln_loss(inp, w, b, R);
            arrs[a][i] = keep;
            CHECK_GRAD(grads[a][i], (lp - lm) / (2 * h), 2e-3, 2e-2, names[a], i);
        }
    free(inp), free(w), free(b), free(R);
}

/* ---- GELU ----------------------------------------------------------------------------- */

static void test_gelu_grad(void) {
    enum { n = 64 };
    float x[n], y[n], d[n], ones[n];
    for (int i = 0; i < n; i++) {
        x[i] = -6.0f + 12.0f * (float)i / (n - 1);
        ones[i] = 1.0f;
    }
    qkv__gelu_forward(y, x, n);
    ASSERT_CLOSE(y[n - 1], 6.0, 1e-4); /* GELU(x) -> x for large x */
    ASSERT(fabsf(y[0]) < 1e-4f);      /* -> 0 for very negative x */
    qkv__gelu_backward(d, x, ones, n);
    for (int i = 0; i < n; i++) {
        double xp = (double)x[i] + 1e-3, xm = (double)x[i] - 1e-3;
        float in2[2] = {(float)xp, (float)xm}, out2[2];
        qkv__gelu_forward(out2, in2, 2);
        double num = ((double)out2[0] - out2[1]) / ((double)in2[0] - in2[1]);
        CHECK_GRAD(d[i], num, 2e-3, 1e-2, "gelu", i);
    }
    /* in-place backward (dinp aliases dout), as the model uses it */
    float dd[n];
    memcpy(dd, ones, sizeof dd);
    qkv__gelu_backward(dd, x, dd, n);
    for (int i = 0; i < n; i++) ASSERT(dd[i] == d[i]);
}

/* ---- matmul --------------------------------------------------------------------------- */

static void test_matmul_grad_and_naive(void) {
    int N = 5, C = 7, OC = 6, ld = 9; /* a strided input (ld > C), as attention's output is */
    float *inp = rand_vec((size_t)N * ld, 1.0f), *w = rand_vec((size_t)C * OC, 1.0f),
          *bias = rand_vec((size_t)OC, 1.0f), *R = rand_vec((size_t)N * OC, 1.0f);
    float out[30], dinp[45], dw[42] = {0}, db[6] = {0};
    for (int i = 0; i < N * ld; i++) dinp[i] = 99.0f; /* columns >= C must stay untouched */
    qkv__matmul_forward(out, inp, ld, w, bias, N, C, OC);
    for (int n = 0; n < N; n++) /* the naive oracle */
        for (int o = 0; o < OC; o++) {
            double s = bias[o];
            for (int c = 0; c < C; c++) s += (double)inp[n * ld + c] * w[c * OC + o];
            ASSERT_CLOSE(out[n * OC + o], s, 1e-5);
        }
    qkv__matmul_backward(dinp, ld, dw, db, R, inp, ld, w, N, C, OC);
    for (int n = 0; n < N; n++)
        for (int c = C; c < ld; c++) ASSERT(dinp[n * ld + c] == 99.0f);
    /* the loss is linear in each argument: the finite difference is exact up to rounding */
    const float h = 1e-2f;
    float o2[30];
#define LOSS() (qkv__matmul_forward(o2, inp, ld, w, bias, N, C, OC), dot(o2, R, (size_t)N * OC))
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float *x = &inp[n * ld + c], keep = *x;
            *x = keep + h;
            double lp = LOSS();
            *x = keep - h;
            double lm = LOSS();
            *x = keep;
            CHECK_GRAD(dinp[n * ld + c], (lp - lm) / (2 * h), 1e-3, 1e-3, "dinp", n * ld + c);
        }
    for (int i = 0; i < C * OC; i++) {
        float keep = w[i];
        w[i] = keep + h;
        double lp = LOSS();
        w[i] = keep - h;
        double lm = LOSS();
        w[i] = keep;
        CHECK_GRAD(dw[i], (lp - lm) / (2 * h), 1e-3, 1e-3, "dw", i);
    }
    for (int i = 0; i < OC; i++) {
        float keep = bias[i];
        bias[i] = keep + h;
        double lp = LOSS();
        bias[i] = keep - h;
        double lm = LOSS();
        bias[i] = keep;
        CHECK_GRAD(db[i], (lp - lm) / (2 * h), 1e-3, 1e-3, "dbias", i);
    }
#undef LOSS
    /* parameter gradients accumulate: a second backward doubles them */
    float dw2[42];
    memcpy(dw2, dw, sizeof dw2);
    qkv__matmul_backward(NULL, ld, dw, NULL, R, inp, ld, w, N, C, OC);
    for (int i = 0; i < C * OC; i++) ASSERT_CLOSE(dw[i], 2.0 * dw2[i], 1e-4);
    free(inp), free(w), free(bias), free(R);
}

/* ---- softmax + cross-entropy ---------------------------------------------------------- */

static void test_crossentropy_grad(void) {
    enum { N = 3, V = 10 };
    float *logits = rand_vec(N * V, 3.0f);
    int targets[N] = {0, 7, 9};
    float probs[N * V], losses[N], tmp[N * V];
    memcpy(probs, logits, sizeof probs);
    qkv__crossentropy_forward(probs, losses, targets, N, V);
    for (int n = 0; n < N; n++) { /* loss = logsumexp - logit[target] (double oracle) */
        double mx = -1e30, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, logits[n * V + v]);
        for (int v = 0; v < V; v++) s += exp(logits[n * V + v] - mx);
        ASSERT_CLOSE(losses[n], log(s) + mx - logits[n * V + targets[n]], 1e-5);
    }
    qkv__crossentropy_backward(probs, targets, 1.0f / N, N, V); /* d mean loss */
    const float h = 1e-2f;
    for (int i = 0; i < N * V; i++) {
        double l[2];
        for (int s = 0; s < 2; s++) {
            memcpy(tmp, logits, sizeof tmp);
            tmp[i] += s ? -h : h;
            float ls[N];
            qkv__crossentropy_forward(tmp, ls, targets, N, V);
            l[s] = ((double)ls[0] + ls[1] + ls[2]) / N;
        }
        CHECK_GRAD(probs[i], (l[0] - l[1]) / (2 * h), 1e-4, 1e-2, "dlogits", i);
    }
    free(logits);
}

/* ---- attention through the engine, on the model's packed [B, T, 3C] layout ------------ */

static const int AB = 2, AT = 5, AC = 8, ANH = 2;

static void attn_setup(qkv_attn_desc *d) {
    qkv_attn_desc_init(d, AB, ANH, ANH, AT, AT, AC / ANH);
    d->causal = 1;
    d->q_stride_b = d->k_stride_b = d->v_stride_b = AT * 3 * AC;
    d->q_stride_h = d->k_stride_h = d->v_stride_h = AC / ANH;
    d->q_stride_n = d->k_stride_n = d->v_stride_n = 3 * AC;
}

static double attn_loss(const float *qkv, const float *R) {
    qkv_attn_desc d;
    attn_setup(&d);
    float out[2 * 5 * 24] = {0}, lse[2 * 2 * 5];
    QKV_ASSERT(qkv_attention_forward(&d, qkv, qkv + AC, qkv + 2 * AC, out, lse, NULL) == QKV_OK);
    double s = 0;
    for (int i = 0; i < AB * AT; i++)
        for (int c = 0; c < AC; c++) s += (double)out[i * 3 * AC + c] * R[i * AC + c];
    return s;
}

static void test_attention_grad(void) {
    size_t n = (size_t)AB * AT * 3 * AC;
    float *qkv = rand_vec(n, 1.5f), *R = rand_vec((size_t)AB * AT * AC, 1.0f);
    qkv_attn_desc d;
    attn_setup(&d);
    float out[240] = {0}, lse[20], dout[240] = {0}, dqkv[240];
    for (size_t i = 0; i < n; i++) dqkv[i] = NAN; /* every entry must be written */
    ASSERT_OK(qkv_attention_forward(&d, qkv, qkv + AC, qkv + 2 * AC, out, lse, NULL));
    for (int i = 0; i < AB * AT; i++)
        for (int c = 0; c < AC; c++) dout[i * 3 * AC + c] = R[i * AC + c];
    ASSERT_OK(qkv_attention_backward(&d, qkv, qkv + AC, qkv + 2 * AC, out, lse, dout, dqkv,
                                     dqkv + AC, dqkv + 2 * AC));
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = qkv[i];
        qkv[i] = keep + h;
        double lp = attn_loss(qkv, R);
        qkv[i] = keep - h;
        double lm = attn_loss(qkv, R);
        qkv[i] = keep;
        CHECK_GRAD(dqkv[i], (lp - lm) / (2 * h), 2e-3, 2e-2, "dqkv", i);
    }
    free(qkv), free(R);
}

/* ---- encoder -------------------------------------------------------------------------- */

static void test_encoder_grad(void) {
    int B = 2, T = 3, C = 4, V = 5;
    int ids[6] = {1, 4, 1, 0, 1, 3};
    float *wte = rand_vec((size_t)V * C, 1.0f), *wpe = rand_vec((size_t)T * C, 1.0f);
    float out[24], dwte[20] = {0}, dwpe[12] = {0}, dout[24];
    qkv__encoder_forward(out, ids, wte, wpe, B, T, C, 0);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++) {
            ASSERT(out[i * C + c] == wte[ids[i] * C + c] + wpe[(i % T) * C + c]);
            dout[i * C + c] = (float)(i * C + c);
        }
    qkv__encoder_backward(dwte, dwpe, dout, ids, B, T, C);
    for (int v = 0; v < V; v++) /* dwte[v] = sum of dout rows whose id is v */
        for (int c = 0; c < C; c++) {
            float e = 0;
            for (int i = 0; i < B * T; i++) e += ids[i] == v ? dout[i * C + c] : 0.0f;
            ASSERT(dwte[v * C + c] == e);
        }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) ASSERT(dwpe[t * C + c] == dout[t * C + c] + dout[(T + t) * C + c]);
    free(wte), free(wpe);
}

/* ---- the whole model ------------------------------------------------------------------ */

static qkv_model *tiny_model(int L, int NH, int C, int T, int V, uint64_t s) {
    qkv_model_config cfg = {.n_layer = L, .n_head = NH, .n_embd = C, .n_ctx = T, .vocab_size = V, .layer_norm_eps = 1e-5f};
    qkv_model *m = NULL;
    if (qkv__model_create(&cfg, &m)) return NULL;
    size_t n;
    float *blk = qkv__model_params_block(m, &n);
    qkv__init_weights(&cfg, blk, s);
    /* larger weights than GPT-2's init so every gradient is well above float noise */
    unsigned long long r = 0x9E3779B97F4A7C15ULL ^ s;
    for (size_t i = 0; i < n; i++) blk[i] += 0.2f * test_rand_uniform(&r);
    return m;
}

static void test_model_grad_finite_differences(void) {
    qkv_model *m = tiny_model(2, 2, 8, 6, 11, 7);
    ASSERT(m);
    int ids[7] = {3, 1, 4, 1, 5, 9, 2};
    size_t n;
    float *blk = qkv__model_params_block(m, &n);
    float *g = malloc(n * sizeof(float)), loss;
    ASSERT_OK(qkv_model_grad(m, ids, 7, &loss, g));
    ASSERT(loss > 1.0f && loss < 5.0f);
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(qkv_model_get_config(m), sizes);
    const float h = 1e-2f;
    size_t off = 0;
    int checked = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        for (int j = 0; j < 6 && sizes[k]; j++) { /* 6 random entries of each tensor kind */
            size_t i = off + (size_t)(test_rand_u64(&seed) % sizes[k]);
            float keep = blk[i], lp, lm;
            blk[i] = keep + h;
            ASSERT_OK(qkv_model_grad(m, ids, 7, &lp, NULL));
            blk[i] = keep - h;
            ASSERT_OK(qkv_model_grad(m, ids, 7, &lm, NULL));
            blk[i] = keep;
            double num = ((double)lp - lm) / (2 * h);
            /* float32 loss ~2.4: rounding noise ~1e-7 / 2h = 5e-6, curvature O(h^2) */
            CHECK_GRAD(g[i], num, 5e-4, 3e-2, "model param", (int)i);
            checked++;
        }
        off += sizes[k];
    }
    ASSERT_EQ_INT(checked, 96);
    free(g);
    qkv_model_free(m);
}

static void test_model_grad_bad_input(void) {
    qkv_model *m = tiny_model(1, 2, 8, 4, 11, 1);
    ASSERT(m);
    float loss;
    int ok_ids[5] = {1, 2, 3, 4, 5}, bad_ids[3] = {1, 11, 2}, neg[2] = {-1, 0};
    ASSERT(qkv_model_grad(m, ok_ids, 1, &loss, NULL) == QKV_EINVAL);          /* too short */
    ASSERT(strstr(qkv_last_error(), "at least 2") != NULL);
    ASSERT(qkv_model_grad(m, ok_ids, 6, &loss, NULL) == QKV_ETOOLONG);        /* > ctx + 1 */
    ASSERT_OK(qkv_model_grad(m, ok_ids, 5, &loss, NULL));                     /* = ctx + 1 */
    ASSERT(qkv_model_grad(m, bad_ids, 3, &loss, NULL) == QKV_ERANGE);         /* id >= V */
    ASSERT(strstr(qkv_last_error(), "11") != NULL);
    ASSERT(qkv_model_grad(m, neg, 2, &loss, NULL) == QKV_ERANGE);
    ASSERT(qkv_model_grad(NULL, ok_ids, 2, &loss, NULL) == QKV_EINVAL);
    qkv_model_free(m);
}

/* ---- schedule, optimizer, determinism ------------------------------------------------- */

static void test_lr_schedule(void) {
    ASSERT_CLOSE(qkv__train_lr(0, 100, 10, 1.0f, 0.1f), 0.1, 1e-7);
    ASSERT_CLOSE(qkv__train_lr(9, 100, 10, 1.0f, 0.1f), 1.0, 1e-7);
    ASSERT_CLOSE(qkv__train_lr(10, 100, 10, 1.0f, 0.1f), 1.0, 1e-7);      /* cosine starts at peak */
    ASSERT_CLOSE(qkv__train_lr(55, 100, 10, 1.0f, 0.1f), 0.55, 1e-6);     /* halfway: mean */
    ASSERT_CLOSE(qkv__train_lr(100, 100, 10, 1.0f, 0.1f), 0.1, 1e-7);
    ASSERT_CLOSE(qkv__train_lr(0, 5, 0, 2.0f, 0.0f), 2.0, 1e-7);          /* no warm-up */
    for (int s = 11; s < 100; s++) /* monotone decay */
        ASSERT(qkv__train_lr(s, 100, 10, 1.0f, 0.1f) <= qkv__train_lr(s - 1, 100, 10, 1.0f, 0.1f));
}

/* Trains a tiny model on one repeated pattern; returns the losses and the final weights. */
static void train_tiny(int accum, float *losses, int steps, float **weights, size_t *n_out) {
    qkv_model *m = tiny_model(2, 2, 16, 8, 13, 42);
    QKV_ASSERT(m);
    qkv__trainer t;
    QKV_ASSERT(qkv__trainer_init(&t, m, 2, 8) == QKV_OK);
    qkv__adamw h = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    int seq[17];
    for (int i = 0; i < 17; i++) seq[i] = (i * 5) % 13;
    for (int s = 0; s < steps; s++) {
        memset(t.grads, 0, t.n_params * sizeof(float));
        double sum = 0;
        for (int a = 0; a < accum; a++) {
            float l;
            /* two rows; with accum 2 the same 2 rows arrive one per micro-batch */
            if (accum == 1) {
                int in[16], tg[16];
                for (int i = 0; i < 8; i++) in[i] = seq[i], tg[i] = seq[i + 1];
                for (int i = 0; i < 8; i++) in[8 + i] = seq[8 + i], tg[8 + i] = seq[9 + i];
                QKV_ASSERT(qkv__trainer_micro(&t, in, tg, 2, 8, 1.0f, &l) == QKV_OK);
            } else {
                QKV_ASSERT(qkv__trainer_micro(&t, seq + 8 * a, seq + 8 * a + 1, 1, 8, 1.0f / accum, &l) == QKV_OK);
            }
            sum += l;
        }
        losses[s] = (float)(sum / accum);
        qkv__trainer_update(&t, &h, qkv__train_lr(s, steps, 2, 3e-3f, 0.1f));
    }
    *weights = malloc(t.n_params * sizeof(float));
    memcpy(*weights, t.params, t.n_params * sizeof(float));
    *n_out = t.n_params;
    qkv__trainer_free(&t);
    qkv_model_free(m);
}

static void test_training_learns_and_is_deterministic(void) {
    enum { S = 40 };
    float l1[S], l2[S], l3[S];
    float *w1, *w2, *w3;
    size_t n1, n2, n3;
    train_tiny(1, l1, S, &w1, &n1);
    train_tiny(1, l2, S, &w2, &n2);
    ASSERT(n1 == n2);
    ASSERT_MSG(!memcmp(w1, w2, n1 * sizeof(float)), "two identical runs gave different weights");
    ASSERT_MSG(l1[S - 1] < 0.5f * l1[0], "loss %g -> %g: did not learn a repeated pattern", l1[0],
               l1[S - 1]);
    /* gradient accumulation over 2 micro-batches of 1 row == one batch of 2 rows */
    train_tiny(2, l3, S, &w3, &n3);
    for (int s = 0; s < S; s++) ASSERT_CLOSE(l3[s], l1[s], 1e-4 + 1e-4 * fabs(l1[s]));
    free(w1), free(w2), free(w3);
}

static void test_weight_decay_only_on_matrices(void) {
    /* zero gradients: Adam's step is 0, so only decay moves a weight */
    qkv_model *m = tiny_model(1, 2, 8, 4, 11, 3);
    ASSERT(m);
    qkv__trainer t;
    ASSERT_OK(qkv__trainer_init(&t, m, 1, 4));
    float *before = malloc(t.n_params * sizeof(float));
    memcpy(before, t.params, t.n_params * sizeof(float));
    qkv__adamw h = {0.9f, 0.95f, 1e-8f, 0.5f, 1.0f};
    qkv__trainer_update(&t, &h, 0.1f);
    size_t off = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        for (size_t i = 0; i < t.sizes[k]; i++) {
            float want = qkv__kind_decays(k) ? before[off + i] * (1.0f - 0.1f * 0.5f) : before[off + i];
            ASSERT_CLOSE(t.params[off + i], want, 1e-7);
        }
        off += t.sizes[k];
    }
    ASSERT(qkv__kind_decays(0) && qkv__kind_decays(4) && !qkv__kind_decays(2) &&
           !qkv__kind_decays(5) && !qkv__kind_decays(15));
    free(before);
    qkv__trainer_free(&t);
    qkv_model_free(m);
}

static void test_init_statistics(void) {
    qkv_model_config cfg = {.n_layer = 4, .n_head = 4, .n_embd = 64, .n_ctx = 32, .vocab_size = 500, .layer_norm_eps = 1e-5f};
    size_t sizes[QKV__N_KINDS], n = 0;
    qkv__param_sizes(&cfg, sizes);
    for (int k = 0; k < QKV__N_KINDS; k++) n += sizes[k];
    float *b = malloc(n * sizeof(float)), *b2 = malloc(n * sizeof(float));
    qkv__init_weights(&cfg, b, 5);
    qkv__init_weights(&cfg, b2, 5);
    ASSERT(!memcmp(b, b2, n * sizeof(float)));
    size_t off = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        if (!sizes[k]) continue; /* kinds a GPT-2 does not have (QK-norm, lm_head) */
        double s = 0, s2 = 0;
        for (size_t i = 0; i < sizes[k]; i++) s += b[off + i], s2 += (double)b[off + i] * b[off + i];
        double mean = s / sizes[k], sd = sqrt(s2 / sizes[k] - mean * mean);
        if (k == 6 || k == 12) ASSERT_CLOSE(sd, 0.02 / sqrt(8.0), 0.0015);
        else if (qkv__kind_decays(k)) ASSERT_CLOSE(sd, 0.02, 0.001);
        else if (k == 2 || k == 8 || k == 14) ASSERT_CLOSE(mean, 1.0, 0) ;
        else ASSERT_CLOSE(s2, 0.0, 0);
        off += sizes[k];
    }
    /* the sinusoid position code replaces wpe only, at wte's per-element RMS */
    qkv__init_sinusoid_wpe(&cfg, b2);
    ASSERT(!memcmp(b, b2, sizes[0] * sizeof(float)));
    ASSERT(!memcmp(b + sizes[0] + sizes[1], b2 + sizes[0] + sizes[1],
                   (n - sizes[0] - sizes[1]) * sizeof(float)));
    const float *pe = b2 + sizes[0];
    double s2 = 0;
    for (size_t i = 0; i < sizes[1]; i++) s2 += (double)pe[i] * pe[i];
    ASSERT_CLOSE(sqrt(s2 / sizes[1]), 0.02, 1e-6);
    ASSERT_CLOSE(pe[5 * 64 + 0], 0.02 * sqrt(2.0) * sin(5.0), 1e-7);
    ASSERT_CLOSE(pe[5 * 64 + 3], 0.02 * sqrt(2.0) * cos(5.0 / pow(10000.0, 2.0 / 64)), 1e-7);
    free(b), free(b2);
}

/* ---- dropout -------------------------------------------------------------------------- */

static void test_dropout_mask(void) {
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *z = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)(i % 7);
    qkv__dropout(y, x, N, 0.25f, 99);
    size_t zeros = 0;
    for (int i = 0; i < N; i++) {
        if (y[i] == 0.0f) zeros++;
        else ASSERT_CLOSE(y[i], x[i] / 0.75f, 1e-6 * y[i]);
    }
    /* binomial: sd of the dropped fraction is sqrt(0.25 * 0.75 / N) = 0.001 */
    ASSERT_MSG(fabs((double)zeros / N - 0.25) < 0.005, "dropped %.4f, want 0.25", (double)zeros / N);
    /* the mask is a function of (key, index) only: any thread count, in place or not */
    qkv_set_threads(1);
    memcpy(z, x, N * sizeof(float));
    qkv__dropout(z, z, N, 0.25f, 99);
    qkv_set_threads(2);
    ASSERT(!memcmp(y, z, N * sizeof(float)));
    qkv__dropout(z, x, N, 0.25f, 100);
    ASSERT_MSG(memcmp(y, z, N * sizeof(float)), "a different key gave the same mask");
    free(x), free(y), free(z);
}

/* With dropout on, the loss for a fixed key is a deterministic function of the weights: its
 * gradient (masks regenerated in the backward) must match finite differences. */
static void test_dropout_grad_finite_differences(void) {
    qkv_model *m = tiny_model(2, 2, 8, 6, 11, 9);
    ASSERT(m);
    qkv__trainer t;
    ASSERT_OK(qkv__trainer_init(&t, m, 2, 6));
    int in[12] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}, tg[12] = {1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9};
    float l0, loss;
    ASSERT_OK(qkv__trainer_micro(&t, in, tg, 2, 6, 1.0f, &l0)); /* dropout off */
    memset(t.grads, 0, t.n_params * sizeof(float));
    t.acts.dropout = 0.3f;
    t.acts.dropout_key = 0xABCDEF;
    ASSERT_OK(qkv__trainer_micro(&t, in, tg, 2, 6, 1.0f, &loss));
    ASSERT_MSG(fabsf(loss - l0) > 1e-4f, "dropout 0.3 left the loss at %g", (double)l0);
    const float h = 1e-2f;
    size_t off = 0;
    int checked = 0, zero = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        for (int j = 0; j < 6 && t.sizes[k]; j++) {
            size_t i = off + (size_t)(test_rand_u64(&seed) % t.sizes[k]);
            float keep = t.params[i], lp, lm;
            t.params[i] = keep + h;
            ASSERT_OK(qkv__train_forward(&t.cfg, &t.p, &t.acts, in, tg, 2, 6, &lp));
            t.params[i] = keep - h;
            ASSERT_OK(qkv__train_forward(&t.cfg, &t.p, &t.acts, in, tg, 2, 6, &lm));
            t.params[i] = keep;
            double num = ((double)lp - lm) / (2 * h);
            CHECK_GRAD(t.grads[i], num, 5e-4, 3e-2, "model param with dropout", (int)i);
            checked++;
            zero += t.grads[i] == 0.0f;
        }
        off += t.sizes[k];
    }
    ASSERT_EQ_INT(checked, 96);
    ASSERT(zero < checked / 2);
    qkv__trainer_free(&t);
    qkv_model_free(m);
}

int main(void) {
    qkv_set_threads(2);
    RUN(test_layernorm_grad);
    RUN(test_gelu_grad);
    RUN(test_matmul_grad_and_naive);
    RUN(test_crossentropy_grad);
    RUN(test_attention_grad);
    RUN(test_encoder_grad);
    RUN(test_model_grad_finite_differences);
    RUN(test_model_grad_bad_input);
    RUN(test_lr_schedule);
    RUN(test_training_learns_and_is_deterministic);
    RUN(test_weight_decay_only_on_matrices);
    RUN(test_init_statistics);
    RUN(test_dropout_mask);
    RUN(test_dropout_grad_finite_differences);
    return test_summary();
}
