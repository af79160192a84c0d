/*
 * layers.c -- every layer's forward and backward (layers.h), and the transformer block that
 * inference and training share. Attention itself is the engine's (src/engine).
 */
#include "model/layers.h"

#include "model/model.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int n_threads(void) { return qkv__model_threads(); }

/* for (int i = 0; i < n; i++) body, split over nt OpenMP threads, or a plain loop when nt is 1:
 * an OpenMP region costs a futex wake even with one thread or a false `if` clause (~1.2 us on
 * this VM), and a generated token passed ~60 of them (norms, residual adds, GELU on one row).
 * nt must be a variable of that name: the pragma names it. */
#define ROWS_FOR(nt, i, n, ...)                                                  \
    do {                                                                         \
        if ((nt) <= 1) {                                                         \
            for (int i = 0; i < (n); i++) __VA_ARGS__                            \
        } else {                                                                 \
            _Pragma("omp parallel for num_threads(nt) schedule(static)")         \
            for (int i = 0; i < (n); i++) __VA_ARGS__                            \
        }                                                                        \
    } while (0)

/* Row-major C[M,N] = alpha op(A) op(B) + beta C, the rows of C split over the threads
 * (each slice a single-threaded sgemm): deterministic for a given thread count. */
void qkv__gemm(int trans_a, int trans_b, int M, int N, int K, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    qkv__blas_one_thread();
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

/* Row range of chunk ch of QKV__CHUNKS over n rows. */
static inline void chunk_rows(int n, int ch, int *r0, int *r1) {
    *r0 = (int)((long long)n * ch / QKV__CHUNKS);
    *r1 = (int)((long long)n * (ch + 1) / QKV__CHUNKS);
}

/* ---- embeddings ------------------------------------------------------------------------- */

void qkv__encoder_forward(float *out, const int *ids, const float *wte, const float *wpe, int B,
                          int T, int C, int pos0) {
    int nt = B * T >= 16 ? n_threads() : 1;
    ROWS_FOR(nt, bt, B * T, {
        const float *e = wte + (size_t)ids[bt] * C;
        float *o = out + (size_t)bt * C;
        if (wpe) {
            const float *p = wpe + (size_t)(pos0 + bt % T) * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        } else {
            memcpy(o, e, sizeof(float) * (size_t)C);
        }
    });
}

void qkv__encoder_backward(float *dwte, float *dwpe, const float *dout, const int *ids, int B,
                           int T, int C) {
    /* Each chunk owns a column range and visits the rows in order: no races, fixed order. */
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int ch = 0; ch < QKV__CHUNKS; ch++) {
        int c0, c1;
        chunk_rows(C, ch, &c0, &c1);
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *e = dwte + (size_t)ids[bt] * C;
            for (int c = c0; c < c1; c++) e[c] += d[c];
            if (!dwpe) continue;
            float *p = dwpe + (size_t)(bt % T) * C;
            for (int c = c0; c < c1; c++) p[c] += d[c];
        }
    }
}

/* ---- dropout ------------------------------------------------------------------------------ */

void qkv__dropout(float *dst, const float *src, size_t n, float p, uint64_t key) {
    /* keep when the top 24 bits of the hash are >= p * 2^24 */
    uint64_t cut = (uint64_t)((double)p * 16777216.0);
    float scale = 1.0f / (1.0f - p);
    uint64_t k = qkv__mix64(key);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (size_t i = 0; i < n; i++)
        dst[i] = (qkv__mix64(k + i * 0x9E3779B97F4A7C15ULL) >> 40) >= cut ? src[i] * scale : 0.0f;
}

/* ---- norms -------------------------------------------------------------------------------- */

void qkv__norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps, int kind) {
    int nt = N >= 16 ? n_threads() : 1;
    const int v512 = qkv__use_avx512();
    ROWS_FOR(nt, n, N, {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        if (v512) {
            qkv__norm_row_avx512(o, x, w, b, C, eps, kind == QKV_NORM_RMS, mean ? mean + n : NULL,
                                 rstd ? rstd + n : NULL);
            continue;
        }
        if (kind == QKV_NORM_RMS) {
            float ss = 0.0f;
            for (int c = 0; c < C; c++) ss += x[c] * x[c];
            float s = 1.0f / sqrtf(ss / (float)C + eps);
            for (int c = 0; c < C; c++) o[c] = x[c] * s * w[c];
            if (rstd) rstd[n] = s;
            continue;
        }
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
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = s;
    });
}

void qkv__norm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C,
                        int kind) {
    int rms = kind == QKV_NORM_RMS;
    float *part = calloc((size_t)2 * QKV__CHUNKS * C, sizeof(float)); /* dw | db partials */
    QKV_ASSERT(part);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int ch = 0; ch < QKV__CHUNKS; ch++) {
        int r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *pdw = part + (size_t)ch * 2 * C, *pdb = pdw + C;
        for (int n = r0; n < r1; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = rms ? 0.0f : mean[n], s = rstd[n];
            float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
                dnorm_mean += dnorm;
                dnorm_norm_mean += dnorm * norm;
            }
            dnorm_mean = rms ? 0.0f : dnorm_mean / (float)C; /* RMSNorm subtracts no mean */
            dnorm_norm_mean /= (float)C;
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
                pdb[c] += d[c];
                pdw[c] += norm * d[c];
                dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
            }
        }
    }
    for (int ch = 0; ch < QKV__CHUNKS; ch++) {
        const float *pdw = part + (size_t)ch * 2 * C, *pdb = pdw + C;
        for (int c = 0; c < C; c++) {
            dw[c] += pdw[c];
            if (db) db[c] += pdb[c];
        }
    }
    free(part);
}

void qkv__headnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N,
                           int nh, int d, ptrdiff_t ld, float eps) {
    int nt = N >= 16 ? n_threads() : 1;
    ROWS_FOR(nt, n, N, {
        for (int h = 0; h < nh; h++) {
            const float *x = inp + (size_t)n * ld + (size_t)h * d;
            float *o = out + (size_t)n * ld + (size_t)h * d;
            float ss = 0.0f;
            for (int k = 0; k < d; k++) ss += x[k] * x[k];
            float s = 1.0f / sqrtf(ss / (float)d + eps);
            for (int k = 0; k < d; k++) o[k] = x[k] * s * w[k];
            if (rstd) rstd[(size_t)n * nh + h] = s;
        }
    });
}

void qkv__headnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, const float *rstd, int N, int nh, int d, ptrdiff_t ld) {
    float *part = calloc((size_t)QKV__CHUNKS * d, sizeof(float));
    QKV_ASSERT(part);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int ch = 0; ch < QKV__CHUNKS; ch++) {
        int r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *pdw = part + (size_t)ch * d;
        for (int n = r0; n < r1; n++)
            for (int h = 0; h < nh; h++) {
                size_t at = (size_t)n * ld + (size_t)h * d;
                const float *x = inp + at, *dy = dout + at;
                float *dx = dinp + at;
                float s = rstd[(size_t)n * nh + h], dot = 0.0f;
                for (int k = 0; k < d; k++) dot += w[k] * dy[k] * x[k] * s;
                dot /= (float)d;
                for (int k = 0; k < d; k++) {
                    float norm = x[k] * s, g = w[k] * dy[k];
                    pdw[k] += norm * dy[k];
                    dx[k] = (g - norm * dot) * s;
                }
            }
    }
    for (int ch = 0; ch < QKV__CHUNKS; ch++)
        for (int k = 0; k < d; k++) dw[k] += part[(size_t)ch * d + k];
    free(part);
}

/* ---- rotary positions ------------------------------------------------------------------- */

/* The rotary frequency of pair i (of rope_dim / 2), with Llama 3.1's rope_scaling applied
 * (Hugging Face's _compute_llama3_parameters). */
static double rope_freq(const qkv_model_config *c, int i) {
    int rd = c->rope_dim;
    double f = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)rd);
    if (c->rope_factor == 0.0f) return f;
    double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double old = c->rope_orig_ctx, lo_wl = old / lo, hi_wl = old / hi, wl = 2.0 * M_PI / f;
    if (wl < hi_wl) return f;          /* high frequencies: unchanged */
    if (wl > lo_wl) return f / factor; /* low frequencies: stretched */
    double smooth = (old / wl - lo) / (hi - lo);
    return (1.0 - smooth) * f / factor + smooth * f;
}

void qkv__rope(float *x, ptrdiff_t ld, int N, int T, int nh, const qkv_model_config *cfg, int pos0,
               int inverse) {
    int d = cfg->head_dim, rd = cfg->rope_dim, half = rd / 2;
    float *tab = malloc(sizeof(float) * 2 * (size_t)half * (size_t)T); /* cos | sin per position */
    double *freq = malloc(sizeof(double) * (size_t)half);
    QKV_ASSERT(tab && freq);
    for (int i = 0; i < half; i++) freq[i] = rope_freq(cfg, i);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)(pos0 + t) * freq[i];
            tab[(size_t)t * 2 * half + i] = (float)cos(a);
            tab[(size_t)t * 2 * half + half + i] = (float)(inverse ? -sin(a) : sin(a));
        }
    int nt = N >= 16 ? n_threads() : 1, il = cfg->rope_interleaved;
    ROWS_FOR(nt, n, N, {
        const float *cs = tab + (size_t)(n % T) * 2 * half, *sn = cs + half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)n * ld + (size_t)h * d;
            for (int i = 0; i < half; i++) {
                /* pairs (2i, 2i+1) as Meta's code and llama2.c; (i, i + rd/2) as Hugging Face */
                int a = il ? 2 * i : i, b = il ? 2 * i + 1 : i + half;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs[i] - x1 * sn[i];
                v[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    });
    free(tab);
    free(freq);
}

/* ---- matmul ------------------------------------------------------------------------------- */

void qkv__matmul_forward(float *out, const float *inp, int ld_inp, const float *w,
                         const float *bias, int N, int C, int OC) {
    qkv__linear(inp, ld_inp, N, C, OC, w, bias, out);
}

void qkv__matmul_backward(float *dinp, int ld_dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, int ld_inp, const float *w, int N, int C, int OC) {
    if (dinp)
        qkv__gemm(0, 1, N, C, OC, dout, OC, w, OC, 0.0f, dinp, ld_dinp);
    qkv__gemm(1, 0, C, OC, N, inp, ld_inp, dout, OC, 1.0f, dw, OC);
    if (dbias) {
        float *part = calloc((size_t)QKV__CHUNKS * OC, sizeof(float));
        QKV_ASSERT(part);
#pragma omp parallel for num_threads(n_threads()) schedule(static)
        for (int ch = 0; ch < QKV__CHUNKS; ch++) {
            int r0, r1;
            chunk_rows(N, ch, &r0, &r1);
            float *p = part + (size_t)ch * OC;
            for (int n = r0; n < r1; n++) {
                const float *d = dout + (size_t)n * OC;
                for (int o = 0; o < OC; o++) p[o] += d[o];
            }
        }
        for (int ch = 0; ch < QKV__CHUNKS; ch++)
            for (int o = 0; o < OC; o++) dbias[o] += part[(size_t)ch * OC + o];
        free(part);
    }
}

/* ---- activations -------------------------------------------------------------------------- */

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
    int nt = n >= 65536 ? n_threads() : 1;
    const int v512 = qkv__use_avx512();
    const size_t chunk = (n / (size_t)nt + 15) / 16 * 16; /* nt slices, whole vectors but the last */
    ROWS_FOR(nt, t, nt, {
        size_t lo = (size_t)t * chunk, len = lo < n ? (n - lo < chunk ? n - lo : chunk) : 0;
        if (v512) {
            if (len) qkv__gelu_tanh_avx512(out + lo, inp + lo, len);
            continue;
        }
        _Pragma("omp simd") for (size_t i = lo; i < lo + len; i++) {
            float x = inp[i];
            float u = GELU_SCALE * (x + 0.044715f * x * x * x);
            out[i] = 0.5f * x * (1.0f + fast_tanhf(u));
        }
    });
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

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

void qkv__swiglu_forward(float *out, const float *inp, int N, int F) {
    int nt = (size_t)N * F >= 65536 ? n_threads() : 1;
    ROWS_FOR(nt, n, N, {
        const float *g = inp + (size_t)n * 2 * F, *u = g + F;
        float *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++) o[i] = g[i] * sigmoidf_(g[i]) * u[i];
    });
}

void qkv__swiglu_backward(float *dinp, const float *inp, const float *dout, int N, int F) {
#pragma omp parallel for num_threads(n_threads()) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = inp + (size_t)n * 2 * F, *u = g + F, *d = dout + (size_t)n * F;
        float *dg = dinp + (size_t)n * 2 * F, *du = dg + F;
        for (int i = 0; i < F; i++) {
            float s = sigmoidf_(g[i]), silu = g[i] * s;
            du[i] = d[i] * silu;
            dg[i] = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
    }
}

/* ---- softmax + cross-entropy -------------------------------------------------------------- */

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

/* ---- the block ---------------------------------------------------------------------------- */

void qkv__block_attn_desc(const qkv_model_config *cfg, qkv_attn_desc *d, int B, int T) {
    qkv__dims m = qkv__dims_of(cfg);
    qkv_attn_desc_init(d, B, m.H, m.KV, T, T, m.d);
    d->causal = 1;
    d->scale = cfg->attn_scale;
    d->q_stride_b = d->k_stride_b = d->v_stride_b = (ptrdiff_t)T * m.W;
    d->q_stride_h = d->k_stride_h = d->v_stride_h = m.d;
    d->q_stride_n = d->k_stride_n = d->v_stride_n = m.W;
}

void qkv__block_attn_in(const qkv_model_config *cfg, const qkv__params *p, int l,
                        qkv__block_acts *a, const float *x, int B, int T, int pos0,
                        const qkv__block_bf16 *bw) {
    qkv__dims m = qkv__dims_of(cfg);
    size_t ul = (size_t)l, C = (size_t)m.C, W = (size_t)m.W;
    int N = B * T, ln = cfg->norm == QKV_NORM_LAYER;
    qkv__norm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w + ul * C,
                      ln ? p->ln1_b + ul * C : NULL, N, m.C, cfg->layer_norm_eps, cfg->norm);
    const float *b = p->attn_b ? p->attn_b + ul * W : NULL;
    float *raw = cfg->qk_norm && a->qkv_raw ? a->qkv_raw : a->qkv;
    if (bw && bw->q8_attn_w && N == 1) /* one token: Q8_0, else BF16, else F32 */
        qkv__gemv_q8(a->ln1, m.C, m.W, bw->q8_attn_w, b, raw);
    else if (bw && bw->attn_w && (N == 1 || bw->prompt)) /* BF16: a GEMV, or the prompt's BF16 GEMM */
        qkv__linear_bf16(a->ln1, m.C, N, m.C, m.W, p->attn_w + ul * C * W, bw->attn_w, b, raw);
    else
        qkv__matmul_forward(raw, a->ln1, m.C, p->attn_w + ul * C * W, b, N, m.C, m.W);
    if (cfg->qk_norm) {
        qkv__headnorm_forward(a->qkv, a->qn_rstd, raw, p->qn_w + ul * (size_t)m.d, N, m.H, m.d, m.W,
                              cfg->layer_norm_eps);
        qkv__headnorm_forward(a->qkv + m.Hd, a->kn_rstd, raw + m.Hd, p->kn_w + ul * (size_t)m.d, N,
                              m.KV, m.d, m.W, cfg->layer_norm_eps);
        if (raw != a->qkv) /* v passes through unnormalised */
            for (int n = 0; n < N; n++)
                memcpy(a->qkv + (size_t)n * W + m.Hd + m.KVd, raw + (size_t)n * W + m.Hd + m.KVd,
                       sizeof(float) * (size_t)m.KVd);
    }
    /* q's H heads and k's KV heads are adjacent in the row: one pass, one cos/sin table */
    if (cfg->pos == QKV_POS_ROPE) qkv__rope(a->qkv, m.W, N, T, m.H + m.KV, cfg, pos0, 0);
}

/* y = a + b (the residual adds): on all threads from 64K floats, else one thread waited
 * at the next barrier while the other added a prompt's 1024 x 768 floats alone */
static void add_rows(float *y, const float *a, const float *b, size_t n) {
    int nt = n >= 65536 ? n_threads() : 1;
    ROWS_FOR(nt, t, nt, {
        size_t lo = n * (size_t)t / (size_t)nt, hi = n * (size_t)(t + 1) / (size_t)nt;
        _Pragma("omp simd") for (size_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
    });
}

void qkv__block_attn_out(const qkv_model_config *cfg, const qkv__params *p, int l,
                         qkv__block_acts *a, const float *x, int N, const qkv__block_bf16 *bw,
                         float drop, uint64_t k_attn, uint64_t k_mlp) {
    qkv__dims m = qkv__dims_of(cfg);
    size_t ul = (size_t)l, C = (size_t)m.C, NC = (size_t)N * C, F = (size_t)m.F, F2 = (size_t)m.F2;
    int ln = cfg->norm == QKV_NORM_LAYER, one = bw && N == 1, bf = bw && (N == 1 || bw->prompt);
    /* the branch goes to res2 directly, or to tmp when res2 is the input itself */
    float *br = a->res2 == x ? a->tmp : a->res2;
    const float *pb = p->proj_b ? p->proj_b + ul * C : NULL;
    if (one && bw->q8_proj_w) /* one token: Q8_0, else BF16, else F32 */
        qkv__gemv_q8(a->att, m.Hd, m.C, bw->q8_proj_w, pb, br);
    else if (bf && bw->proj_w)
        qkv__linear_bf16(a->att, m.W, N, m.Hd, m.C, p->proj_w + ul * (size_t)m.Hd * C, bw->proj_w, pb, br);
    else /* att rows follow q's stride (W): the first Hd floats of each row are the heads' outputs */
        qkv__matmul_forward(br, a->att, m.W, p->proj_w + ul * (size_t)m.Hd * C, pb, N, m.Hd, m.C);
    if (drop > 0.0f) qkv__dropout(br, br, NC, drop, k_attn);
    add_rows(a->res2, x, br, NC);
    qkv__norm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w + ul * C,
                      ln ? p->ln2_b + ul * C : NULL, N, m.C, cfg->layer_norm_eps, cfg->norm);
    const float *fb = p->fc_b ? p->fc_b + ul * F2 : NULL;
    if (one && bw->q8_fc_w)
        qkv__gemv_q8(a->ln2, m.C, m.F2, bw->q8_fc_w, fb, a->fch);
    else if (bf && bw->fc_w)
        qkv__linear_bf16(a->ln2, m.C, N, m.C, m.F2, p->fc_w + ul * C * F2, bw->fc_w, fb, a->fch);
    else
        qkv__matmul_forward(a->fch, a->ln2, m.C, p->fc_w + ul * C * F2, fb, N, m.C, m.F2);
    if (cfg->mlp == QKV_MLP_SWIGLU)
        qkv__swiglu_forward(a->fch_act, a->fch, N, m.F);
    else
        qkv__gelu_forward(a->fch_act, a->fch, (size_t)N * F);
    br = a->res3 == a->res2 ? a->tmp : a->res3;
    const float *fpb = p->fcproj_b ? p->fcproj_b + ul * C : NULL;
    if (one && bw->q8_fcproj_w)
        qkv__gemv_q8(a->fch_act, m.F, m.C, bw->q8_fcproj_w, fpb, br);
    else if (bf && bw->fcproj_w)
        qkv__linear_bf16(a->fch_act, m.F, N, m.F, m.C, p->fcproj_w + ul * F * C, bw->fcproj_w, fpb, br);
    else
        qkv__matmul_forward(br, a->fch_act, m.F, p->fcproj_w + ul * F * C, fpb, N, m.F, m.C);
    if (drop > 0.0f) qkv__dropout(br, br, NC, drop, k_mlp);
    add_rows(a->res3, a->res2, br, NC);
}

qkv_status qkv__block_backward(const qkv_model_config *cfg, const qkv__params *p, qkv__params *g,
                               int l, const qkv__block_acts *a, const float *x, int B, int T,
                               float *dres, float *dbuf_c, float *dbuf_w, float *dbuf_w2,
                               float *dbuf_f, float drop, uint64_t k_attn, uint64_t k_mlp) {
    qkv__dims m = qkv__dims_of(cfg);
    size_t ul = (size_t)l, C = (size_t)m.C, W = (size_t)m.W, F = (size_t)m.F, F2 = (size_t)m.F2,
           Hd = (size_t)m.Hd;
    int N = B * T, ln = cfg->norm == QKV_NORM_LAYER;
    size_t NC = (size_t)N * C;
    /* MLP: dres is d res3; the residual add passes it to both branches (the MLP's through
     * its dropout mask, into dbuf_c, which is free until c_fc's backward) */
    const float *dmlp = dres;
    if (drop > 0.0f) {
        qkv__dropout(dbuf_c, dres, NC, drop, k_mlp);
        dmlp = dbuf_c;
    }
    float *dact = dbuf_w2; /* [N, F] here, [N, W] below: sized for the larger */
    qkv__matmul_backward(dact, m.F, g->fcproj_w + ul * F * C, p->fcproj_b ? g->fcproj_b + ul * C : NULL,
                         dmlp, a->fch_act, m.F, p->fcproj_w + ul * F * C, N, m.F, m.C);
    if (cfg->mlp == QKV_MLP_SWIGLU)
        qkv__swiglu_backward(dbuf_f, a->fch, dact, N, m.F);
    else
        qkv__gelu_backward(dbuf_f, a->fch, dact, (size_t)N * F);
    qkv__matmul_backward(dbuf_c, m.C, g->fc_w + ul * C * F2, p->fc_b ? g->fc_b + ul * F2 : NULL, dbuf_f,
                         a->ln2, m.C, p->fc_w + ul * C * F2, N, m.C, m.F2);
    qkv__norm_backward(dres, g->ln2_w + ul * C, ln ? g->ln2_b + ul * C : NULL, dbuf_c, a->res2,
                       p->ln2_w + ul * C, a->ln2_mean, a->ln2_rstd, N, m.C, cfg->norm);
    /* attention: dres is now d res2 */
    const float *dattn = dres;
    if (drop > 0.0f) {
        qkv__dropout(dbuf_c, dres, NC, drop, k_attn);
        dattn = dbuf_c;
    }
    float *datt = dbuf_w, *dqkv = dbuf_w2;
    qkv__matmul_backward(datt, m.W, g->proj_w + ul * Hd * C, p->proj_b ? g->proj_b + ul * C : NULL,
                         dattn, a->att, m.W, p->proj_w + ul * Hd * C, N, m.Hd, m.C);
    qkv_attn_desc d;
    qkv__block_attn_desc(cfg, &d, B, T);
    const float *q = a->qkv;
    qkv_status st = qkv_attention_backward(&d, q, q + m.Hd, q + m.Hd + m.KVd, a->att, a->lse, datt,
                                           dqkv, dqkv + m.Hd, dqkv + m.Hd + m.KVd);
    if (st) return st;
    if (cfg->pos == QKV_POS_ROPE) qkv__rope(dqkv, m.W, N, T, m.H + m.KV, cfg, 0, 1); /* dq | dk */
    if (cfg->qk_norm) {
        qkv__headnorm_backward(dqkv, g->qn_w + ul * (size_t)m.d, dqkv, a->qkv_raw,
                               p->qn_w + ul * (size_t)m.d, a->qn_rstd, N, m.H, m.d, m.W);
        qkv__headnorm_backward(dqkv + m.Hd, g->kn_w + ul * (size_t)m.d, dqkv + m.Hd, a->qkv_raw + m.Hd,
                               p->kn_w + ul * (size_t)m.d, a->kn_rstd, N, m.KV, m.d, m.W);
    }
    qkv__matmul_backward(dbuf_c, m.C, g->attn_w + ul * C * W, p->attn_b ? g->attn_b + ul * W : NULL,
                         dqkv, a->ln1, m.C, p->attn_w + ul * C * W, N, m.C, m.W);
    qkv__norm_backward(dres, g->ln1_w + ul * C, ln ? g->ln1_b + ul * C : NULL, dbuf_c, x,
                       p->ln1_w + ul * C, a->ln1_mean, a->ln1_rstd, N, m.C, cfg->norm);
    return QKV_OK;
}
