/*
 * train.c -- GPT-2 training in C: each layer's forward and backward (llm.c's train_gpt2.c
 * structure), the whole model's forward with saved activations and its backward on the
 * gpt2.h parameter block, GPT-2 initialisation, and a named F32 safetensors writer for
 * gradients. Attention goes through the engine: qkv_attention_forward saves out and lse,
 * qkv_attention_backward recomputes the probabilities from them.
 *
 * B = batch, T = sequence length, C = channels, V = vocab, L = layers, NH = heads,
 * hs = C / NH, N = B * T.
 */
#include "train/train.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int n_threads(void) {
    int n = qkv_get_threads();
    return n > 0 ? n : 1;
}

/* OpenBLAS runs single-threaded inside our OpenMP threads: its own pthreads spin in
 * sched_yield between calls and fight the OpenMP workers for the cores. */
void qkv__train_blas_threads(void) { openblas_set_num_threads(1); }

/* Row-major C[M,N] = alpha op(A) op(B) + beta C, the rows of C split over the threads
 * (each slice a single-threaded sgemm): deterministic for a given thread count. */
static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    int nt = n_threads();
    if (nt > 1 && M < 32 * nt) nt = 1;
    if (nt == 1) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int m0 = (int)((long long)M * t / nt), m1 = (int)((long long)M * (t + 1) / nt);
        /* row m of op(A): A + m*lda without transpose, A + m with */
        const float *a = ta == CblasNoTrans ? A + (size_t)m0 * lda : A + m0;
        cblas_sgemm(CblasRowMajor, ta, tb, m1 - m0, N, K, 1.0f, a, lda, B, ldb, beta,
                    C + (size_t)m0 * ldc, ldc);
    }
}

/* Row range of chunk ch of QKV__TRAIN_CHUNKS over n rows. */
static inline void chunk_rows(int n, int ch, int *r0, int *r1) {
    *r0 = (int)((long long)n * ch / QKV__TRAIN_CHUNKS);
    *r1 = (int)((long long)n * (ch + 1) / QKV__TRAIN_CHUNKS);
}

/* ---- encoder -------------------------------------------------------------------------- */

void qkv__encoder_forward(float *out, const int *ids, const float *wte, const float *wpe, int B,
                          int T, int C) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const float *e = wte + (size_t)ids[bt] * C, *p = wpe + (size_t)(bt % T) * C;
        float *o = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

void qkv__encoder_backward(float *dwte, float *dwpe, const float *dout, const int *ids, int B,
                           int T, int C) {
    /* Each chunk owns a column range and visits the rows in order: no races, fixed order. */
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int ch = 0; ch < QKV__TRAIN_CHUNKS; ch++) {
        int c0, c1;
        chunk_rows(C, ch, &c0, &c1);
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *e = dwte + (size_t)ids[bt] * C, *p = dwpe + (size_t)(bt % T) * C;
            for (int c = c0; c < c1; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
    }
}

/* ---- dropout -------------------------------------------------------------------------- */

void qkv__dropout(float *dst, const float *src, size_t n, float p, uint64_t key) {
    /* keep when the top 24 bits of the hash are >= p * 2^24 */
    uint64_t cut = (uint64_t)((double)p * 16777216.0);
    float scale = 1.0f / (1.0f - p);
    uint64_t k = qkv__mix64(key);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (size_t i = 0; i < n; i++)
        dst[i] = (qkv__mix64(k + i * 0x9E3779B97F4A7C15ULL) >> 40) >= cut ? src[i] * scale : 0.0f;
}

/* The mask key of one dropout site: 0 = embeddings, 1 + 2l = layer l's attention output,
 * 2 + 2l = its MLP output. */
static uint64_t site_key(const qkv__train_acts *a, int site) {
    return qkv__mix64(a->dropout_key ^ ((uint64_t)(site + 1) * 0xD1B54A32D192ED03ULL));
}

/* ---- layernorm ------------------------------------------------------------------------ */

void qkv__layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int N, int C, float eps) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        float var = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            var += d * d;
        }
        var /= (float)C;
        float s = 1.0f / sqrtf(var + eps);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

void qkv__layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean,
                             const float *rstd, int N, int C) {
    float *part = calloc((size_t)2 * QKV__TRAIN_CHUNKS * C, sizeof(float)); /* dw | db partials */
    QKV_ASSERT(part);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int ch = 0; ch < QKV__TRAIN_CHUNKS; ch++) {
        int r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *pdw = part + (size_t)ch * 2 * C, *pdb = pdw + C;
        for (int n = r0; n < r1; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = mean[n], s = rstd[n];
            float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
                dnorm_mean += dnorm;
                dnorm_norm_mean += dnorm * norm;
            }
            dnorm_mean /= (float)C;
            dnorm_norm_mean /= (float)C;
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
                pdb[c] += d[c];
                pdw[c] += norm * d[c];
                dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
            }
        }
    }
    for (int ch = 0; ch < QKV__TRAIN_CHUNKS; ch++) {
        const float *pdw = part + (size_t)ch * 2 * C, *pdb = pdw + C;
        for (int c = 0; c < C; c++) {
            dw[c] += pdw[c];
            db[c] += pdb[c];
        }
    }
    free(part);
}

/* ---- matmul (Hugging Face Conv1D layout: w is [in, out]) ------------------------------ */

void qkv__matmul_forward(float *out, const float *inp, int ld_inp, const float *w,
                         const float *bias, int N, int C, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    gemm(CblasNoTrans, CblasNoTrans, N, OC, C, inp, ld_inp, w, OC, beta, out, OC);
}

void qkv__matmul_backward(float *dinp, int ld_dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, int ld_inp, const float *w, int N, int C, int OC) {
    if (dinp)
        gemm(CblasNoTrans, CblasTrans, N, C, OC, dout, OC, w, OC, 0.0f, dinp, ld_dinp);
    gemm(CblasTrans, CblasNoTrans, C, OC, N, inp, ld_inp, dout, OC, 1.0f, dw, OC);
    if (dbias) {
        float *part = calloc((size_t)QKV__TRAIN_CHUNKS * OC, sizeof(float));
        QKV_ASSERT(part);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
        for (int ch = 0; ch < QKV__TRAIN_CHUNKS; ch++) {
            int r0, r1;
            chunk_rows(N, ch, &r0, &r1);
            float *p = part + (size_t)ch * OC;
            for (int n = r0; n < r1; n++) {
                const float *d = dout + (size_t)n * OC;
                for (int o = 0; o < OC; o++) p[o] += d[o];
            }
        }
        for (int ch = 0; ch < QKV__TRAIN_CHUNKS; ch++)
            for (int o = 0; o < OC; o++) dbias[o] += part[(size_t)ch * OC + o];
        free(part);
    }
}

/* ---- GELU (tanh approximation) -------------------------------------------------------- */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* tanh without a libm call, so the loops vectorise (libm's tanhf was 17% of a step):
 * tanh(u) = 1 - 2 / (exp(2u) + 1), exp by range reduction to 2^n * p(r), |r| <= ln2/2, with a
 * degree-6 polynomial (relative error ~2e-7); absolute error of tanh below 3e-7. */
static inline float fast_tanhf(float u) {
    float x = 2.0f * u;
    x = x < -80.0f ? -80.0f : (x > 80.0f ? 80.0f : x);
    float fn = x * 1.44269504088896341f;
    int n = (int)(fn + (fn >= 0.0f ? 0.5f : -0.5f));
    float r = x - (float)n * 0.693359375f + (float)n * 2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666418f +
              r * (0.00833336823f + r * 0.00138925412f)))));
    union {
        uint32_t u;
        float f;
    } scale = {(uint32_t)(n + 127) << 23};
    float e = p * scale.f;
    return 1.0f - 2.0f / (e + 1.0f);
}

void qkv__gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd num_threads(n_threads()) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = 0.5f * x * (1.0f + fast_tanhf(u));
    }
}

void qkv__gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for simd num_threads(n_threads()) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float t = fast_tanhf(u);
        float sech2 = 1.0f - t * t;
        float grad = 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = grad * dout[i];
    }
}

/* ---- softmax + cross-entropy ---------------------------------------------------------- */

void qkv__crossentropy_forward(float *logits, float *losses, const int *targets, int N, int V) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * V;
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0.0;
        float target_logit = x[targets[n]];
        for (int v = 0; v < V; v++) {
            x[v] = expf(x[v] - mx);
            sum += x[v];
        }
        float inv = (float)(1.0 / sum);
        for (int v = 0; v < V; v++) x[v] *= inv;
        losses[n] = (float)(log(sum) + (double)mx - (double)target_logit);
    }
}

void qkv__crossentropy_backward(float *probs, const int *targets, float dloss, int N, int V) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int n = 0; n < N; n++) {
        float *p = probs + (size_t)n * V;
        for (int v = 0; v < V; v++) p[v] *= dloss;
        p[targets[n]] -= dloss;
    }
}

/* ---- activations ---------------------------------------------------------------------- */

qkv_status qkv__train_acts_alloc(qkv__train_acts *a, const qkv_model_config *cfg, int B, int T) {
    memset(a, 0, sizeof *a);
    if (B < 1 || T < 1 || T > cfg->n_ctx)
        return qkv__fail(QKV_ERANGE, "train: batch %d x context %d (the model's context is %d)", B,
                         T, cfg->n_ctx);
    size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size,
           NH = (size_t)cfg->n_head, N = (size_t)B * (size_t)T;
    struct {
        float **ptr;
        size_t count;
    } t[] = {
        {&a->encoded, N * C},       {&a->ln1, L * N * C},       {&a->ln1_mean, L * N},
        {&a->ln1_rstd, L * N},      {&a->qkv, L * N * 3 * C},   {&a->atty, L * N * 3 * C},
        {&a->lse, L * N * NH},      {&a->residual2, L * N * C}, {&a->ln2, L * N * C},
        {&a->ln2_mean, L * N},      {&a->ln2_rstd, L * N},      {&a->fch, L * N * 4 * C},
        {&a->fch_gelu, L * N * 4 * C}, {&a->residual3, L * N * C}, {&a->lnf, N * C},
        {&a->lnf_mean, N},          {&a->lnf_rstd, N},          {&a->logits, N * V},
        {&a->losses, N},            {&a->dresidual, N * C},     {&a->dbuf_c, N * C},
        {&a->dbuf_3c, N * 3 * C},   {&a->dbuf_3c2, N * 3 * C},  {&a->dbuf_4c, N * 4 * C},
    };
    size_t n = sizeof t / sizeof t[0], total = 0;
    for (size_t i = 0; i < n; i++) total += (t[i].count + 15) & ~(size_t)15; /* 64-byte aligned */
    a->block = qkv__alloc_aligned(total * sizeof(float));
    if (!a->block)
        return qkv__fail(QKV_ENOMEM, "train: cannot allocate %.1f MB of activations for batch %d x %d",
                         (double)total * 4.0 / 1e6, B, T);
    memset(a->block, 0, total * sizeof(float));
    float *at = a->block;
    for (size_t i = 0; i < n; i++) {
        *t[i].ptr = at;
        at += (t[i].count + 15) & ~(size_t)15;
    }
    a->B = B;
    a->T = T;
    return QKV_OK;
}

void qkv__train_acts_free(qkv__train_acts *a) {
    if (!a) return;
    qkv__free_aligned(a->block);
    memset(a, 0, sizeof *a);
}

/* ---- whole model ---------------------------------------------------------------------- */

static void attn_desc(qkv_attn_desc *d, int B, int T, int C, int NH) {
    qkv_attn_desc_init(d, B, NH, NH, T, T, C / NH);
    d->causal = 1;
    /* q, k, v are column blocks of the [B, T, 3C] c_attn output */
    d->q_stride_b = d->k_stride_b = d->v_stride_b = (ptrdiff_t)T * 3 * C;
    d->q_stride_h = d->k_stride_h = d->v_stride_h = C / NH;
    d->q_stride_n = d->k_stride_n = d->v_stride_n = 3 * C;
}

static qkv_status check_ids(const int *ids, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return qkv__fail(QKV_ERANGE, "train: %s[%zu] = %d outside the vocabulary [0, %d)", what,
                             i, ids[i], V);
    return QKV_OK;
}

qkv_status qkv__train_forward(const qkv_model_config *cfg, const qkv__params *p,
                                   qkv__train_acts *a, const int *inputs, const int *targets,
                                   int B, int T, float *mean_loss) {
    int L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size, NH = cfg->n_head;
    if (B < 1 || T < 1 || (size_t)B * T > (size_t)a->B * a->T || T > a->T || T > cfg->n_ctx)
        return qkv__fail(QKV_ERANGE, "train: batch %d x %d exceeds the allocated %d x %d (context %d)",
                         B, T, a->B, a->T, cfg->n_ctx);
    size_t N = (size_t)B * T, capN = (size_t)a->B * a->T;
    qkv_status st = check_ids(inputs, N, V, "inputs");
    if (!st && targets) st = check_ids(targets, N, V, "targets");
    if (st) return st;
    float eps = cfg->layer_norm_eps;

    qkv__encoder_forward(a->encoded, inputs, p->wte, p->wpe, B, T, C);
    float drop = a->dropout;
    if (drop > 0.0f) qkv__dropout(a->encoded, a->encoded, N * C, drop, site_key(a, 0));
    qkv_attn_desc d;
    attn_desc(&d, B, T, C, NH);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * capN * C;
        float *ln1 = a->ln1 + l * capN * C, *ln1_mean = a->ln1_mean + l * capN,
              *ln1_rstd = a->ln1_rstd + l * capN, *qkv = a->qkv + l * capN * 3 * C,
              *atty = a->atty + l * capN * 3 * C, *lse = a->lse + l * capN * NH,
              *residual2 = a->residual2 + l * capN * C, *ln2 = a->ln2 + l * capN * C,
              *ln2_mean = a->ln2_mean + l * capN, *ln2_rstd = a->ln2_rstd + l * capN,
              *fch = a->fch + l * capN * 4 * C, *fch_gelu = a->fch_gelu + l * capN * 4 * C,
              *residual3 = a->residual3 + l * capN * C;
        qkv__layernorm_forward(ln1, ln1_mean, ln1_rstd, residual, p->ln1_w + l * C,
                               p->ln1_b + l * C, (int)N, C, eps);
        qkv__matmul_forward(qkv, ln1, C, p->attn_w + (size_t)l * C * 3 * C, p->attn_b + l * 3 * C,
                            (int)N, C, 3 * C);
        st = qkv_attention_forward(&d, qkv, qkv + C, qkv + 2 * C, atty, lse, NULL);
        if (st) return st;
        /* attproj goes straight into residual2, then the residual is added */
        qkv__matmul_forward(residual2, atty, 3 * C, p->proj_w + (size_t)l * C * C,
                            p->proj_b + l * C, (int)N, C, C);
        if (drop > 0.0f) qkv__dropout(residual2, residual2, N * C, drop, site_key(a, 1 + 2 * l));
        for (size_t i = 0; i < N * C; i++) residual2[i] += residual[i];
        qkv__layernorm_forward(ln2, ln2_mean, ln2_rstd, residual2, p->ln2_w + l * C,
                               p->ln2_b + l * C, (int)N, C, eps);
        qkv__matmul_forward(fch, ln2, C, p->fc_w + (size_t)l * C * 4 * C, p->fc_b + l * 4 * C,
                            (int)N, C, 4 * C);
        qkv__gelu_forward(fch_gelu, fch, N * 4 * C);
        qkv__matmul_forward(residual3, fch_gelu, 4 * C, p->fcproj_w + (size_t)l * 4 * C * C,
                            p->fcproj_b + l * C, (int)N, 4 * C, C);
        if (drop > 0.0f) qkv__dropout(residual3, residual3, N * C, drop, site_key(a, 2 + 2 * l));
        for (size_t i = 0; i < N * C; i++) residual3[i] += residual2[i];
    }
    const float *last = a->residual3 + (L - 1) * capN * C;
    qkv__layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, last, p->lnf_w, p->lnf_b, (int)N, C,
                           eps);
    /* logits[N, V] = lnf @ wte^T (tied output projection) */
    gemm(CblasNoTrans, CblasTrans, (int)N, V, C, a->lnf, C, p->wte, C, 0.0f, a->logits, V);
    if (targets) {
        qkv__crossentropy_forward(a->logits, a->losses, targets, (int)N, V);
        double sum = 0.0;
        for (size_t i = 0; i < N; i++) sum += a->losses[i];
        if (mean_loss) *mean_loss = (float)(sum / (double)N);
    }
    return QKV_OK;
}

qkv_status qkv__train_backward(const qkv_model_config *cfg, const qkv__params *p,
                                    qkv__params *g, qkv__train_acts *a, const int *inputs,
                                    const int *targets, int B, int T, float loss_scale) {
    int L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size, NH = cfg->n_head;
    size_t N = (size_t)B * T, capN = (size_t)a->B * a->T;
    float drop = a->dropout;
    /* d(mean loss)/d logits, in place over the probabilities */
    qkv__crossentropy_backward(a->logits, targets, loss_scale / (float)N, (int)N, V);
    /* dlnf = dlogits @ wte; dwte += dlogits^T @ lnf */
    gemm(CblasNoTrans, CblasNoTrans, (int)N, C, V, a->logits, V, p->wte, C, 0.0f, a->dbuf_c, C);
    gemm(CblasTrans, CblasNoTrans, V, C, (int)N, a->logits, V, a->lnf, C, 1.0f, g->wte, C);
    float *dres = a->dresidual;
    memset(dres, 0, N * C * sizeof(float));
    qkv__layernorm_backward(dres, g->lnf_w, g->lnf_b, a->dbuf_c, a->residual3 + (L - 1) * capN * C,
                            p->lnf_w, a->lnf_mean, a->lnf_rstd, (int)N, C);
    qkv_attn_desc d;
    attn_desc(&d, B, T, C, NH);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * capN * C;
        const float *ln1 = a->ln1 + l * capN * C, *ln1_mean = a->ln1_mean + l * capN,
                    *ln1_rstd = a->ln1_rstd + l * capN, *qkv = a->qkv + l * capN * 3 * C,
                    *atty = a->atty + l * capN * 3 * C, *lse = a->lse + l * capN * NH,
                    *residual2 = a->residual2 + l * capN * C, *ln2 = a->ln2 + l * capN * C,
                    *ln2_mean = a->ln2_mean + l * capN, *ln2_rstd = a->ln2_rstd + l * capN,
                    *fch = a->fch + l * capN * 4 * C, *fch_gelu = a->fch_gelu + l * capN * 4 * C;
        /* MLP: dres is d residual3; the residual add passes it to both branches (the MLP's
         * through its dropout mask, into dbuf_c, which is free until c_fc's backward) */
        const float *dmlp = dres;
        if (drop > 0.0f) {
            qkv__dropout(a->dbuf_c, dres, N * C, drop, site_key(a, 2 + 2 * l));
            dmlp = a->dbuf_c;
        }
        qkv__matmul_backward(a->dbuf_4c, 4 * C, g->fcproj_w + (size_t)l * 4 * C * C,
                             g->fcproj_b + l * C, dmlp, fch_gelu, 4 * C,
                             p->fcproj_w + (size_t)l * 4 * C * C, (int)N, 4 * C, C);
        qkv__gelu_backward(a->dbuf_4c, fch, a->dbuf_4c, N * 4 * C);
        qkv__matmul_backward(a->dbuf_c, C, g->fc_w + (size_t)l * C * 4 * C, g->fc_b + l * 4 * C,
                             a->dbuf_4c, ln2, C, p->fc_w + (size_t)l * C * 4 * C, (int)N, C, 4 * C);
        qkv__layernorm_backward(dres, g->ln2_w + l * C, g->ln2_b + l * C, a->dbuf_c, residual2,
                                p->ln2_w + l * C, ln2_mean, ln2_rstd, (int)N, C);
        /* attention: dres is now d residual2 */
        float *datty = a->dbuf_3c, *dqkv = a->dbuf_3c2;
        const float *dattn = dres;
        if (drop > 0.0f) {
            qkv__dropout(a->dbuf_c, dres, N * C, drop, site_key(a, 1 + 2 * l));
            dattn = a->dbuf_c;
        }
        qkv__matmul_backward(datty, 3 * C, g->proj_w + (size_t)l * C * C, g->proj_b + l * C, dattn,
                             atty, 3 * C, p->proj_w + (size_t)l * C * C, (int)N, C, C);
        qkv_status st = qkv_attention_backward(&d, qkv, qkv + C, qkv + 2 * C, atty, lse, datty,
                                               dqkv, dqkv + C, dqkv + 2 * C);
        if (st) return st;
        qkv__matmul_backward(a->dbuf_c, C, g->attn_w + (size_t)l * C * 3 * C, g->attn_b + l * 3 * C,
                             dqkv, ln1, C, p->attn_w + (size_t)l * C * 3 * C, (int)N, C, 3 * C);
        qkv__layernorm_backward(dres, g->ln1_w + l * C, g->ln1_b + l * C, a->dbuf_c, residual,
                                p->ln1_w + l * C, ln1_mean, ln1_rstd, (int)N, C);
    }
    if (drop > 0.0f) qkv__dropout(dres, dres, N * C, drop, site_key(a, 0));
    qkv__encoder_backward(g->wte, g->wpe, dres, inputs, B, T, C);
    return QKV_OK;
}

/* ---- initialisation ------------------------------------------------------------------- */

static double rng_uniform01(uint64_t *s) { /* (0, 1] */
    return ((double)(qkv__rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

int qkv__kind_decays(int kind) {
    return kind == 0 || kind == 1 || kind == 4 || kind == 6 || kind == 10 || kind == 12;
}

void qkv__init_weights(const qkv_model_config *cfg, float *block, uint64_t seed) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    uint64_t s = seed ^ 0x71C7C0DE5EEDULL;
    float resid_std = 0.02f / sqrtf(2.0f * (float)cfg->n_layer);
    float *at = block;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        int is_ln_w = k == 2 || k == 8 || k == 14;
        if (qkv__kind_decays(k)) {
            float std = (k == 6 || k == 12) ? resid_std : 0.02f;
            for (size_t i = 0; i < sizes[k]; i += 2) { /* Box-Muller, two normals per draw */
                double u1 = rng_uniform01(&s), u2 = rng_uniform01(&s);
                double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
                at[i] = (float)(r * cos(th)) * std;
                if (i + 1 < sizes[k]) at[i + 1] = (float)(r * sin(th)) * std;
            }
        } else {
            for (size_t i = 0; i < sizes[k]; i++) at[i] = is_ln_w ? 1.0f : 0.0f;
        }
        at += sizes[k];
    }
}

void qkv__init_sinusoid_wpe(const qkv_model_config *cfg, float *block) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    float *wpe = block + sizes[0]; /* wpe follows wte in the block */
    int C = cfg->n_embd;
    double amp = 0.02 * sqrt(2.0); /* sin^2 + cos^2 = 1 per pair: per-element RMS 0.02 */
    for (int t = 0; t < cfg->n_ctx; t++)
        for (int c = 0; c < C; c++) {
            double w = (double)t / pow(10000.0, (double)(c & ~1) / (double)C);
            wpe[(size_t)t * C + c] = (float)(amp * ((c & 1) ? cos(w) : sin(w)));
        }
}

/* ---- named safetensors writer --------------------------------------------------------- */

typedef struct named_tensor {
    char name[80];
    size_t offset, count; /* in floats, into the block */
    int ndim;
    size_t shape[2];
} named_tensor;

/* The Hugging Face names of the block's tensors, per layer, in file order. */
static int named_table(const qkv_model_config *cfg, named_tensor *t, int cap) {
    size_t sizes[QKV__N_KINDS], start[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    size_t off = 0;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        start[k] = off;
        off += sizes[k];
    }
    size_t C = (size_t)cfg->n_embd;
    int n = 0;
#define ADD(nm, kind, idx, d0, d1)                                                  \
    do {                                                                            \
        size_t a_ = (size_t)(d0), b_ = (size_t)(d1);                                \
        if (n < cap) {                                                              \
            snprintf(t[n].name, sizeof t[n].name, "transformer.%s", nm);            \
            t[n].shape[0] = a_;                                                     \
            t[n].shape[1] = b_;                                                     \
            t[n].ndim = b_ ? 2 : 1;                                                 \
            t[n].count = b_ ? a_ * b_ : a_;                                         \
            t[n].offset = start[kind] + (size_t)(idx) * t[n].count;                 \
        }                                                                           \
        n++;                                                                        \
    } while (0)
    ADD("wte.weight", 0, 0, (size_t)cfg->vocab_size, C);
    ADD("wpe.weight", 1, 0, (size_t)cfg->n_ctx, C);
    char nm[64];
    for (int l = 0; l < cfg->n_layer; l++) {
#define LAYER(suffix, kind, d0, d1)                             \
    do {                                                        \
        snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);          \
        ADD(nm, kind, l, d0, d1);                               \
    } while (0)
        LAYER("ln_1.weight", 2, C, 0);
        LAYER("ln_1.bias", 3, C, 0);
        LAYER("attn.c_attn.weight", 4, C, 3 * C);
        LAYER("attn.c_attn.bias", 5, 3 * C, 0);
        LAYER("attn.c_proj.weight", 6, C, C);
        LAYER("attn.c_proj.bias", 7, C, 0);
        LAYER("ln_2.weight", 8, C, 0);
        LAYER("ln_2.bias", 9, C, 0);
        LAYER("mlp.c_fc.weight", 10, C, 4 * C);
        LAYER("mlp.c_fc.bias", 11, 4 * C, 0);
        LAYER("mlp.c_proj.weight", 12, 4 * C, C);
        LAYER("mlp.c_proj.bias", 13, C, 0);
#undef LAYER
    }
    ADD("ln_f.weight", 14, 0, C, 0);
    ADD("ln_f.bias", 15, 0, C, 0);
#undef ADD
    return n;
}

qkv_status qkv__train_save_named(const qkv_model_config *cfg, const float *block,
                                 const char *path) {
    int n = named_table(cfg, NULL, 0);
    named_tensor *t = calloc((size_t)n, sizeof *t);
    size_t hcap = (size_t)n * 160 + 64;
    char *hdr = malloc(hcap);
    if (!t || !hdr) {
        free(t);
        free(hdr);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    named_table(cfg, t, n);
    size_t hl = 0, data_off = 0;
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t bytes = t[i].count * sizeof(float);
        if (t[i].ndim == 2)
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu,%zu],\"data_offsets\":[%zu,%zu]}",
                                   t[i].name, t[i].shape[0], t[i].shape[1], data_off, data_off + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}",
                                   t[i].name, t[i].shape[0], data_off, data_off + bytes);
        data_off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8) hdr[hl++] = ' '; /* data starts 8-byte aligned */
    size_t total = 8 + hl + data_off;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(t);
        free(hdr);
        return qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu bytes", path, total);
    }
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    size_t at = 8 + hl;
    for (int i = 0; i < n; i++) {
        memcpy(buf + at, block + t[i].offset, t[i].count * sizeof(float));
        at += t[i].count * sizeof(float);
    }
    qkv_status st = qkv__write_file(path, buf, total);
    free(buf);
    free(t);
    free(hdr);
    return st;
}
