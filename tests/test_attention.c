/*
 * test_attention.c -- the fused attention engine against the double-accumulation reference,
 * on every SIMD path this CPU has (scalar, avx2, avx512) and on 1 and 2 threads: a grid of
 * shapes and options, randomized shapes, backward, finite differences, the KV cache, and
 * NaN / inf / overflowing inputs (the non-finite policy of include/qkv.h).
 *
 * Tolerances (inputs uniform in [-1, 1], values |v| <= 1):
 *   out, probs        |fast - ref| <= 2e-5 * (1 + |ref|)         (float accumulation)
 *   lse               |fast - ref| <= 2e-5 * (1 + |ref|)
 *   dq, dk, dv        |fast - ref| <= 1e-4 * max(1, max |ref|)   (sums over all rows)
 *   logits ~ 1e3      the above times 500: a 1e3 logit in float is only good to ~1e-4,
 *                     and the row is then nearly one-hot; checked finite and close.
 *   finite differences (double perturbation through the reference): 1e-3 relative.
 *   non-finite inputs (NaN, inf, logits that overflow float32): the same NaN and inf
 *                     elements as the reference, finite ones within the tolerances above.
 *   the BF16 forward  (qkv_attention_forward_bf16, skipped without AVX512_BF16): bounds
 *                     derived from bf16 rounding, stated at its tests below.
 */
#include "qkv.h"
#include "qkv_internal.h" /* qkv__f32_to_bf16: the BF16 tests round inputs as the kernel does */
#include "test.h"

#include <math.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static float *rand_buf(size_t n, float amp) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = test_rand_uniform(&rng) * amp;
    return p;
}

static float *zero_buf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* The worst |a - b| / (floor + |b|) (mode 0: per element) or / max(floor, max|b|)
 * (mode 1: relative to the largest reference value); NaN anywhere is reported as +inf. */
static double rel_err(const float *a, const float *b, size_t n, int mode, size_t *where) {
    double maxref = 0.0, worst = 0.0;
    if (mode == 1)
        for (size_t i = 0; i < n; i++)
            if (isfinite(b[i]) && fabs(b[i]) > maxref) maxref = fabs(b[i]);
    *where = 0;
    for (size_t i = 0; i < n; i++) {
        double e;
        if (a[i] == b[i]) continue; /* also -inf == -inf */
        if (!isfinite(a[i]) || !isfinite(b[i])) e = INFINITY;
        else e = fabs((double)a[i] - b[i]) / (mode == 0 ? 1.0 + fabs(b[i]) : (maxref > 1.0 ? maxref : 1.0));
        if (!(e <= worst)) worst = e, *where = i;
    }
    return worst;
}

typedef struct acase {
    int B, Hq, Hkv, Nq, Nk, d;
    int causal;
    float scale, temperature, amp; /* amp: input magnitude (big logits) */
    int use_kv_len, strided, want_probs, backward;
} acase;

static const char *path_name = "?";
static long n_cases; /* configurations checked against the reference, over all paths */
static int n_threads = 1;

static void describe(const acase *c, char *buf, size_t n) {
    snprintf(buf, n,
             "[simd %s, %d threads] B=%d Hq=%d Hkv=%d Nq=%d Nk=%d d=%d causal=%d scale=%g temp=%g "
             "amp=%g kv_len=%d strided=%d",
             path_name, n_threads, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d, c->causal,
             (double)c->scale, (double)c->temperature, (double)c->amp, c->use_kv_len, c->strided);
}

/* Runs one case through the fast path and the reference; FAILs with the case and the
 * stated tolerance on any mismatch. */
static void check_case(const acase *c) {
    char what[400];
    n_cases++;
    describe(c, what, sizeof what);
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d);
    d.scale = c->scale;
    d.temperature = c->temperature;
    d.causal = c->causal;
    int *kv_len = NULL;
    if (c->use_kv_len) {
        kv_len = malloc(sizeof(int) * (size_t)c->B);
        for (int b = 0; b < c->B; b++) kv_len[b] = (int)(test_rand_u64(&rng) % (unsigned)(c->Nk + 1));
        d.kv_len = kv_len;
    }
    size_t nq, nk; /* floats in the q and k/v buffers */
    if (c->strided) {
        /* a model's packed activations: per token [q heads | k heads | v heads], plus slack */
        ptrdiff_t row = (ptrdiff_t)(c->Hq + 2 * c->Hkv) * c->d + 3;
        int N = c->Nq > c->Nk ? c->Nq : c->Nk;
        d.q_stride_n = d.k_stride_n = d.v_stride_n = row;
        d.q_stride_h = d.k_stride_h = d.v_stride_h = c->d;
        d.q_stride_b = d.k_stride_b = d.v_stride_b = row * N;
        nq = nk = (size_t)row * N * c->B;
    } else {
        nq = (size_t)c->B * c->Hq * c->Nq * c->d;
        nk = (size_t)c->B * c->Hkv * c->Nk * c->d;
    }
    float *buf_q = rand_buf(nq, c->amp), *buf_k = rand_buf(nk, c->amp), *buf_v = rand_buf(nk, 1.0f);
    const float *q = buf_q, *k = buf_k, *v = buf_v;
    size_t k_off = c->strided ? (size_t)c->Hq * c->d : 0, v_off = c->strided ? (size_t)(c->Hq + c->Hkv) * c->d : 0;
    if (c->strided) { /* q, k, v all inside one packed buffer */
        k = buf_q + k_off;
        v = buf_q + v_off;
    }
    size_t nrows = (size_t)c->B * c->Hq * c->Nq, np = nrows * (size_t)c->Nk;
    float *out = zero_buf(nq), *out_r = zero_buf(nq);
    float *lse = zero_buf(nrows), *lse_r = zero_buf(nrows);
    float *probs = c->want_probs ? zero_buf(np) : NULL, *probs_r = c->want_probs ? zero_buf(np) : NULL;
    ASSERT_OK(qkv_attention_forward_ref(&d, q, k, v, out_r, lse_r, probs_r));
    ASSERT_OK(qkv_attention_forward(&d, q, k, v, out, lse, probs));
    double big = c->amp > 4.0f ? 500.0 : 1.0;
    size_t at;
    double e = rel_err(out, out_r, nq, 0, &at);
    ASSERT_MSG(e <= 2e-5 * big, "%s: out[%zu] = %g, reference %g (err %.3g > tol %.3g)", what, at,
               (double)out[at], (double)out_r[at], e, 2e-5 * big);
    e = rel_err(lse, lse_r, nrows, 0, &at);
    ASSERT_MSG(e <= 2e-5 * big, "%s: lse[%zu] = %g, reference %g (err %.3g > tol %.3g)", what, at,
               nrows ? (double)lse[at] : 0.0, nrows ? (double)lse_r[at] : 0.0, e, 2e-5 * big);
    if (probs) {
        e = rel_err(probs, probs_r, np, 0, &at);
        ASSERT_MSG(e <= 2e-5 * big, "%s: probs[%zu] = %g, reference %g (err %.3g > tol %.3g)", what,
                   at, (double)probs[at], (double)probs_r[at], e, 2e-5 * big);
    }
    if (c->backward) {
        float *dout = rand_buf(nq, 1.0f);
        /* gradients: dq follows q's strides, dk/dv k's and v's (all in one packed buffer
         * when strided, like the activations) */
        size_t ng = c->strided ? nq : nq + 2 * nk;
        float *g = zero_buf(ng), *g_r = zero_buf(ng);
        float *dq = g, *dk = c->strided ? g + k_off : g + nq, *dv = c->strided ? g + v_off : g + nq + nk;
        float *dq_r = g_r, *dk_r = c->strided ? g_r + k_off : g_r + nq,
              *dv_r = c->strided ? g_r + v_off : g_r + nq + nk;
        ASSERT_OK(qkv_attention_backward_ref(&d, q, k, v, out_r, lse_r, dout, dq_r, dk_r, dv_r));
        ASSERT_OK(qkv_attention_backward(&d, q, k, v, out, lse, dout, dq, dk, dv));
        e = rel_err(g, g_r, ng, 1, &at);
        ASSERT_MSG(e <= 1e-4 * big, "%s: gradient element %zu = %g, reference %g (err %.3g > tol %.3g)",
                   what, at, (double)g[at], (double)g_r[at], e, 1e-4 * big);
        free(dout), free(g), free(g_r);
    }
    free(buf_q), free(buf_k), free(buf_v), free(out), free(out_r), free(lse), free(lse_r);
    free(probs), free(probs_r), free(kv_len);
}

static acase mk(int B, int Hq, int Hkv, int Nq, int Nk, int d, int causal) {
    acase c = {B, Hq, Hkv, Nq, Nk, d, causal, 0.0f, 0.0f, 1.0f, 0, 0, 1, 1};
    return c;
}

/* ---- the grid -------------------------------------------------------------------------- */

static void grid_shapes(void) {
    static const int dims[] = {1, 3, 16, 17, 31, 48, 64, 80, 128, 160, 256};
    static const int lens[][2] = {{1, 1}, {1, 9}, {9, 1}, {5, 13}, {13, 5}, {47, 49}, {49, 47},
                                  {64, 64}, {65, 130}, {130, 65}, {100, 33}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int causal = 0; causal < 2; causal++) {
                if (SANITIZED && dims[di] > 64 && li > 4) continue;
                acase c = mk(1, 2, 1, lens[li][0], lens[li][1], dims[di], causal);
                c.want_probs = (li % 3) == 0;
                check_case(&c);
            }
}

static void grid_heads(void) {
    static const int heads[][2] = {{1, 1}, {4, 4}, {4, 2}, {6, 3}, {6, 1}, {8, 2}};
    for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++)
        for (int causal = 0; causal < 2; causal++) {
            acase c = mk(2, heads[hi][0], heads[hi][1], 37, 70, 64, causal);
            check_case(&c);
            c = mk(1, heads[hi][0], heads[hi][1], 96, 96, 128, causal);
            check_case(&c);
        }
}

static void grid_options(void) {
    for (int causal = 0; causal < 2; causal++) {
        acase c = mk(2, 4, 2, 50, 70, 64, causal);
        c.scale = 0.3f;
        check_case(&c);
        c.temperature = 0.25f; /* a sharper focus dial */
        check_case(&c);
        c.temperature = 7.0f;
        c.scale = 0.0f;
        check_case(&c);
        c = mk(3, 4, 2, 40, 90, 64, causal);
        c.use_kv_len = 1; /* padding; some sequences may have no valid key at all */
        check_case(&c);
        c = mk(2, 4, 2, 33, 33, 40, causal);
        c.strided = 1;
        check_case(&c);
        c = mk(1, 2, 1, 9, 300, 64, causal);
        c.strided = 1;
        c.use_kv_len = 1;
        check_case(&c);
    }
}

static void big_logits(void) {
    for (int causal = 0; causal < 2; causal++)
        for (int d = 16; d <= 128; d *= 2) {
            acase c = mk(1, 2, 2, 45, 67, d, causal);
            c.scale = 1.0f;
            c.amp = 8.0f * sqrtf(1000.0f / (float)d); /* |logit| up to ~1e3 and beyond */
            check_case(&c);
            c.temperature = 0.1f; /* and again x10 */
            check_case(&c);
        }
}

/* Rows that can see no key (causal with Nq > Nk, kv_len 0, Nk 0): output 0, lse -inf,
 * gradient 0, never NaN. */
static void rows_that_see_nothing(void) {
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, 2, 2, 1, 20, 6, 16);
    d.causal = 1;
    int kv_len[2] = {6, 0};
    d.kv_len = kv_len;
    size_t nq = 2 * 2 * 20 * 16, nk = 2 * 6 * 16;
    float *q = rand_buf(nq, 1), *k = rand_buf(nk, 1), *v = rand_buf(nk, 1);
    float *out = rand_buf(nq, 1), *lse = rand_buf(80, 1), *probs = rand_buf(80 * 6, 1);
    ASSERT_OK(qkv_attention_forward(&d, q, k, v, out, lse, probs));
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 20; i++) {
                size_t row = ((size_t)b * 2 + h) * 20 + i;
                int sees = b == 0 ? i >= 14 : 0; /* bottom-right: i sees j <= i - 14 */
                if (!sees) {
                    ASSERT_MSG(lse[row] == -INFINITY, "row b%d h%d i%d: lse %g, expected -inf", b, h, i, (double)lse[row]);
                    for (int c = 0; c < 16; c++) ASSERT(out[row * 16 + c] == 0.0f);
                    for (int j = 0; j < 6; j++) ASSERT(probs[row * 6 + j] == 0.0f);
                } else {
                    ASSERT(isfinite(lse[row]));
                }
            }
    float *dout = rand_buf(nq, 1), *dq = rand_buf(nq, 1), *dk = rand_buf(nk, 1), *dv = rand_buf(nk, 1);
    ASSERT_OK(qkv_attention_backward(&d, q, k, v, out, lse, dout, dq, dk, dv));
    for (size_t i = 0; i < nq; i++) ASSERT(isfinite(dq[i]));
    for (size_t i = 0; i < nk; i++) ASSERT(isfinite(dk[i]) && isfinite(dv[i]));
    for (size_t i = nk / 2; i < nk; i++) ASSERT(dk[i] == 0.0f && dv[i] == 0.0f); /* batch 1 */
    /* no keys at all */
    qkv_attn_desc_init(&d, 1, 1, 1, 3, 0, 8);
    ASSERT_OK(qkv_attention_forward(&d, q, k, v, out, lse, NULL));
    for (int i = 0; i < 3; i++) ASSERT(lse[i] == -INFINITY && out[i * 8] == 0.0f);
    free(q), free(k), free(v), free(out), free(lse), free(probs), free(dout), free(dq), free(dk), free(dv);
}

static void randomized_shapes(void) {
    int n = SANITIZED ? 8 : 40;
    for (int t = 0; t < n; t++) {
        int hkv = 1 + (int)(test_rand_u64(&rng) % 3), grp = 1 + (int)(test_rand_u64(&rng) % 3);
        acase c = mk(1 + (int)(test_rand_u64(&rng) % 2), hkv * grp, hkv, 1 + (int)(test_rand_u64(&rng) % 150),
                     1 + (int)(test_rand_u64(&rng) % 150), 1 + (int)(test_rand_u64(&rng) % 256),
                     (int)(test_rand_u64(&rng) % 2));
        c.use_kv_len = test_rand_u64(&rng) % 4 == 0;
        c.strided = test_rand_u64(&rng) % 4 == 0;
        c.want_probs = test_rand_u64(&rng) % 3 == 0;
        if (test_rand_u64(&rng) % 3 == 0) c.temperature = 0.5f + (float)(test_rand_u64(&rng) % 100) / 25.0f;
        check_case(&c);
    }
}

/* ---- finite differences ----------------------------------------------------------------- */

/* L = sum(out * W) through the reference; returns it in double. */
static double loss_ref(const qkv_attn_desc *d, const float *q, const float *k, const float *v,
                       const float *w, float *out, size_t n) {
    if (qkv_attention_forward_ref(d, q, k, v, out, NULL, NULL) != QKV_OK) return NAN;
    double l = 0.0;
    for (size_t i = 0; i < n; i++) l += (double)out[i] * w[i];
    return l;
}

static void gradients_vs_finite_differences(void) {
    for (int causal = 0; causal < 2; causal++) {
        qkv_attn_desc d;
        qkv_attn_desc_init(&d, 1, 2, 1, 5, 7, 6);
        d.causal = causal;
        d.temperature = 0.7f;
        size_t nq = 2 * 5 * 6, nk = 7 * 6;
        float *q = rand_buf(nq, 1), *k = rand_buf(nk, 1), *v = rand_buf(nk, 1), *w = rand_buf(nq, 1);
        float *out = zero_buf(nq), *lse = zero_buf(10), *tmp = zero_buf(nq);
        float *dq = zero_buf(nq), *dk = zero_buf(nk), *dv = zero_buf(nk);
        ASSERT_OK(qkv_attention_forward(&d, q, k, v, out, lse, NULL));
        ASSERT_OK(qkv_attention_backward(&d, q, k, v, out, lse, w, dq, dk, dv));
        float *params[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
        size_t counts[3] = {nq, nk, nk};
        const float h = 1.0f / 256.0f; /* exact in float next to values in [-1, 1] */
        for (int p = 0; p < 3; p++)
            for (size_t i = 0; i < counts[p]; i++) {
                float keep = params[p][i];
                params[p][i] = keep + h;
                double lp = loss_ref(&d, q, k, v, w, tmp, nq);
                params[p][i] = keep - h;
                double lm = loss_ref(&d, q, k, v, w, tmp, nq);
                params[p][i] = keep;
                double fd = (lp - lm) / (2.0 * (double)h);
                ASSERT_MSG(fabs(fd - grads[p][i]) <= 1e-3 * (1.0 + fabs(fd)),
                           "[simd %s] causal=%d d%s[%zu]: analytic %g, finite difference %g (tol 1e-3)",
                           path_name, causal, p == 0 ? "q" : p == 1 ? "k" : "v", i, (double)grads[p][i], fd);
            }
        free(q), free(k), free(v), free(w), free(out), free(lse), free(tmp), free(dq), free(dk), free(dv);
    }
}

/* ---- KV cache ---------------------------------------------------------------------------- */

/* Token-by-token decoding (and a chunked prefill) equals full causal attention; past 256 keys
 * (n_k d Hkv >= 2^15) decoding runs on the thread pool, so both ways are covered. */
static void kvcache_decode_equals_full(void) {
    const int L = 2, Hq = 6, Hkv = 2, d = 64, T = 300;
    qkv_kvcache *cache = NULL;
    ASSERT_OK(qkv_kvcache_create(L, Hkv, d, T, &cache));
    size_t nq = (size_t)L * Hq * T * d, nk = (size_t)L * Hkv * T * d;
    float *q = rand_buf(nq, 1), *k = rand_buf(nk, 1), *v = rand_buf(nk, 1);
    float *full = zero_buf(nq), *got = zero_buf(nq);
    qkv_attn_desc desc;
    for (int l = 0; l < L; l++) { /* reference: full causal attention per layer */
        qkv_attn_desc_init(&desc, 1, Hq, Hkv, T, T, d);
        desc.causal = 1;
        desc.temperature = 0.8f;
        size_t oq = (size_t)l * Hq * T * d, ok = (size_t)l * Hkv * T * d;
        ASSERT_OK(qkv_attention_forward_ref(&desc, q + oq, k + ok, v + ok, full + oq, NULL, NULL));
    }
    /* a 7-token prefill, then one token at a time */
    int t = 0;
    while (t < T) {
        int n = t == 0 ? 7 : 1;
        for (int l = 0; l < L; l++) {
            size_t oq = (size_t)l * Hq * T * d, ok = (size_t)l * Hkv * T * d;
            /* keys/values [Hkv, T, d]: rows t.. with head stride T * d */
            ASSERT_OK(qkv_kvcache_append(cache, l, n, k + ok + (size_t)t * d, v + ok + (size_t)t * d,
                                         (ptrdiff_t)T * d, d));
            ASSERT_OK(qkv_kvcache_attend(cache, l, Hq, n, q + oq + (size_t)t * d, (ptrdiff_t)T * d, d,
                                         got + oq + (size_t)t * d, 0.0f, 0.8f));
        }
        ASSERT_OK(qkv_kvcache_commit(cache, n));
        t += n;
    }
    ASSERT_EQ_INT(qkv_kvcache_len(cache), T);
    size_t at;
    double e = rel_err(got, full, nq, 0, &at);
    ASSERT_MSG(e <= 2e-5, "[simd %s] kv cache element %zu: %g vs full attention %g (err %.3g > 2e-5)",
               path_name, at, (double)got[at], (double)full[at], e);
    /* full: appending past max_len is refused; a commit that skips a layer is refused */
    ASSERT(qkv_kvcache_append(cache, 0, 1, k, v, 0, 0) == QKV_ETOOLONG);
    qkv_kvcache_reset(cache);
    ASSERT_EQ_INT(qkv_kvcache_len(cache), 0);
    ASSERT_OK(qkv_kvcache_append(cache, 0, 1, k, v, 0, 0));
    ASSERT(qkv_kvcache_commit(cache, 1) == QKV_EINVAL);
    ASSERT(qkv_kvcache_attend(cache, 5, Hq, 1, q, 0, 0, got, 0, 0) == QKV_ERANGE);
    ASSERT(qkv_kvcache_attend(cache, 0, 5, 1, q, 0, 0, got, 0, 0) == QKV_ESHAPE);
    ASSERT(qkv_kvcache_attend(cache, 0, Hq, 2, q, 0, 0, got, 0, 0) == QKV_ESHAPE);
    qkv_kvcache_free(cache);
    qkv_kvcache_free(NULL);
    free(q), free(k), free(v), free(full), free(got);
}

/* N = 65536 runs in O(N d) memory: each query sees only 64 keys (padding), so it is quick,
 * but every buffer is sized for the full length. */
static void long_sequence_linear_memory(void) {
    const int N = SANITIZED ? 8192 : 65536, d = 64;
    qkv_attn_desc desc;
    qkv_attn_desc_init(&desc, 1, 1, 1, N, N, d);
    int kv_len = 64;
    desc.kv_len = &kv_len;
    float *q = rand_buf((size_t)N * d, 1), *k = rand_buf((size_t)N * d, 1), *v = rand_buf((size_t)N * d, 1);
    float *out = zero_buf((size_t)N * d), *lse = zero_buf((size_t)N);
    ASSERT_OK(qkv_attention_forward(&desc, q, k, v, out, lse, NULL));
    /* spot-check some rows against the reference on a 1-row slice */
    for (int i = 0; i < N; i += N / 7) {
        qkv_attn_desc one;
        qkv_attn_desc_init(&one, 1, 1, 1, 1, 64, d);
        float o[64], l;
        ASSERT_OK(qkv_attention_forward_ref(&one, q + (size_t)i * d, k, v, o, &l, NULL));
        for (int c = 0; c < d; c++) ASSERT_CLOSE(out[(size_t)i * d + c], o[c], 2e-5);
        ASSERT_CLOSE(lse[i], l, 2e-5 * (1 + fabs(l)));
    }
    float *dq = zero_buf((size_t)N * d), *dk = zero_buf((size_t)N * d), *dv = zero_buf((size_t)N * d);
    ASSERT_OK(qkv_attention_backward(&desc, q, k, v, out, lse, out, dq, dk, dv));
    for (size_t i = (size_t)64 * d; i < (size_t)N * d; i += 997) ASSERT(dk[i] == 0.0f && dv[i] == 0.0f);
    free(q), free(k), free(v), free(out), free(lse), free(dq), free(dk), free(dv);
}

/* Called from inside the caller's own parallel region (nested parallelism off, so the
 * engine gets a team of one): every block must still be computed. One kv head, so the
 * engine would otherwise split the head across a team. */
static void nested_inside_callers_parallel_region(void) {
    int failures = 0;
    qkv_set_threads(2);
#pragma omp parallel num_threads(2) reduction(+ : failures)
    {
        unsigned long long seed = 77;
        qkv_attn_desc d;
        qkv_attn_desc_init(&d, 1, 3, 1, 150, 170, 64);
        d.causal = 1;
        size_t nq = 3 * 150 * 64, nk = 170 * 64;
        float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
        float *o = calloc(nq, sizeof(float)), *o_r = calloc(nq, sizeof(float)), *l = calloc(450, sizeof(float));
        float *g = calloc(nq + 2 * nk, sizeof(float)), *g_r = calloc(nq + 2 * nk, sizeof(float));
        for (size_t i = 0; i < nq; i++) q[i] = test_rand_uniform(&seed);
        for (size_t i = 0; i < nk; i++) k[i] = test_rand_uniform(&seed), v[i] = test_rand_uniform(&seed);
        if (qkv_attention_forward(&d, q, k, v, o, l, NULL) || qkv_attention_forward_ref(&d, q, k, v, o_r, NULL, NULL) ||
            qkv_attention_backward(&d, q, k, v, o, l, q, g, g + nq, g + nq + nk) ||
            qkv_attention_backward_ref(&d, q, k, v, o_r, NULL, q, g_r, g_r + nq, g_r + nq + nk))
            failures++;
        for (size_t i = 0; i < nq; i++) failures += !(fabs(o[i] - o_r[i]) <= 2e-5);
        for (size_t i = 0; i < nq + 2 * nk; i++) failures += !(fabs(g[i] - g_r[i]) <= 1e-3);
        free(q), free(k), free(v), free(o), free(o_r), free(l), free(g), free(g_r);
    }
    ASSERT_MSG(failures == 0, "[simd %s] %d mismatches when called inside a parallel region", path_name, failures);
}

static void bad_descriptors(void) {
    qkv_attn_desc d;
    float x[16] = {0};
    qkv_attn_desc_init(&d, 1, 3, 2, 1, 1, 4);
    ASSERT(qkv_attention_forward(&d, x, x, x, x, NULL, NULL) == QKV_ESHAPE);
    qkv_attn_desc_init(&d, 1, 1, 1, 1, 1, 257);
    ASSERT(qkv_attention_forward(&d, x, x, x, x, NULL, NULL) == QKV_EUNSUPPORTED);
    qkv_attn_desc_init(&d, 1, 1, 1, 1, 1, 4);
    d.temperature = -1.0f;
    ASSERT(qkv_attention_forward(&d, x, x, x, x, NULL, NULL) == QKV_ERANGE);
    d.temperature = 1.0f;
    int kv_len = 2;
    d.kv_len = &kv_len;
    ASSERT(qkv_attention_forward(&d, x, x, x, x, NULL, NULL) == QKV_ERANGE);
    d.kv_len = NULL;
    ASSERT(qkv_attention_forward(&d, x, NULL, x, x, NULL, NULL) == QKV_EINVAL);
    ASSERT(qkv_attention_backward(&d, x, x, x, x, NULL, x, x, x, x) == QKV_EINVAL);
    ASSERT(qkv_set_simd("sse9") == QKV_EINVAL);
}

/* ---- non-finite inputs --------------------------------------------------------------------
 *
 * The policy (include/qkv.h, docs/ENGINE.md; PyTorch's float semantics): NaN in, NaN out in
 * the rows it reaches; a masked key reaches nothing; an +inf logit, a NaN logit or a row of
 * only -inf logits makes the row's out and lse NaN; a -inf logit is p = 0; an inf value
 * gives +-inf (or NaN) in its column; finite logits of any size are max-subtracted (one-hot
 * when huge); a row that sees no key is 0 with lse -inf. Every path must give the
 * reference's answer, NaN for NaN, inf for inf. */

/* Index of the first element where a differs from ref (NaN must meet NaN, an inf the same
 * inf, finite values within tol * (1 + |ref|)), or -1. */
static long nf_mismatch(const float *a, const float *ref, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        float x = a[i], r = ref[i];
        if (isnan(r) || isnan(x)) {
            if (isnan(r) && isnan(x)) continue;
            return (long)i;
        }
        if (isinf(r) || isinf(x)) {
            if (x == r) continue;
            return (long)i;
        }
        if (!(fabs((double)x - r) <= tol * (1.0 + fabs(r)))) return (long)i;
    }
    return -1;
}

typedef struct nf_case {
    qkv_attn_desc d;
    int kv_len[2];
    size_t nq, nk, nrows;
    float *q, *k, *v, *dout;
    /* the reference's results, for the policy checks */
    float *out, *lse, *probs, *dq, *dk, *dv;
} nf_case;

/* B = 2 (kv_len 41 and Nk), Hq = 2 sharing one kv head, Nq = 37, Nk = 53 (bottom-right
 * causal: row i sees keys j <= i + 16), d = 24: one AVX-512 query block in which key 30 is
 * masked for rows < 14; or a longer one (several key blocks). Inputs uniform in [-1, 1]. */
static void nf_init(nf_case *c, int causal, int longer) {
    memset(c, 0, sizeof *c);
    int Nq = longer ? 90 : 37, Nk = longer ? 300 : 53, D = longer ? 64 : 24;
    qkv_attn_desc_init(&c->d, 2, 2, 1, Nq, Nk, D);
    c->d.causal = causal;
    c->kv_len[0] = Nk - 12, c->kv_len[1] = Nk;
    c->d.kv_len = c->kv_len;
    c->nq = (size_t)2 * 2 * Nq * D, c->nk = (size_t)2 * Nk * D, c->nrows = (size_t)2 * 2 * Nq;
    c->q = rand_buf(c->nq, 1), c->k = rand_buf(c->nk, 1), c->v = rand_buf(c->nk, 1);
    c->dout = rand_buf(c->nq, 1);
}

static void nf_free(nf_case *c) {
    free(c->q), free(c->k), free(c->v), free(c->dout);
    free(c->out), free(c->lse), free(c->probs), free(c->dq), free(c->dk), free(c->dv);
}

#define NF_Q(c, b, h, i, x) ((c)->q[((((size_t)(b) * 2 + (h)) * (c)->d.n_q + (i)) * (c)->d.head_dim) + (x)])
#define NF_K(c, b, j, x) ((c)->k[(((size_t)(b) * (c)->d.n_k + (j)) * (c)->d.head_dim) + (x)])
#define NF_V(c, b, j, x) ((c)->v[(((size_t)(b) * (c)->d.n_k + (j)) * (c)->d.head_dim) + (x)])
#define NF_ROW(c, b, h, i) ((((size_t)(b) * 2 + (h)) * (c)->d.n_q) + (i))

static int nf_sees(const nf_case *c, int b, int i, int j) {
    int n = c->kv_len[b];
    if (c->d.causal && j > i + c->d.n_k - c->d.n_q) return 0;
    return j < n;
}

/* The path in use and the reference on c's inputs: forward (out, lse, probs) and, unless
 * no_backward, backward from the forward's own out and lse. Must agree; keeps the
 * reference's results in c. */
static void nf_run(nf_case *c, const char *what, int no_backward) {
    const qkv_attn_desc *d = &c->d;
    size_t np = c->nrows * (size_t)d->n_k;
    float *out = zero_buf(c->nq), *lse = zero_buf(c->nrows), *probs = zero_buf(np);
    free(c->out), free(c->lse), free(c->probs), free(c->dq), free(c->dk), free(c->dv);
    c->out = zero_buf(c->nq), c->lse = zero_buf(c->nrows), c->probs = zero_buf(np);
    c->dq = c->dk = c->dv = NULL;
    ASSERT_OK(qkv_attention_forward_ref(d, c->q, c->k, c->v, c->out, c->lse, c->probs));
    ASSERT_OK(qkv_attention_forward(d, c->q, c->k, c->v, out, lse, probs));
    long at;
    const char *mode = d->causal ? "causal" : "full";
    ASSERT_MSG((at = nf_mismatch(out, c->out, c->nq, 2e-5)) < 0, "[simd %s, %d threads] %s (%s, Nk=%d): out[%ld] = %g, reference %g",
               path_name, n_threads, what, mode, d->n_k, at, (double)out[at], (double)c->out[at]);
    ASSERT_MSG((at = nf_mismatch(lse, c->lse, c->nrows, 2e-5)) < 0, "[simd %s, %d threads] %s (%s, Nk=%d): lse[%ld] = %g, reference %g",
               path_name, n_threads, what, mode, d->n_k, at, (double)lse[at], (double)c->lse[at]);
    ASSERT_MSG((at = nf_mismatch(probs, c->probs, np, 2e-5)) < 0, "[simd %s, %d threads] %s (%s, Nk=%d): probs[%ld] = %g, reference %g",
               path_name, n_threads, what, mode, d->n_k, at, (double)probs[at], (double)c->probs[at]);
    if (!no_backward) {
        float *g = zero_buf(c->nq + 2 * c->nk), *g_r = zero_buf(c->nq + 2 * c->nk);
        ASSERT_OK(qkv_attention_backward_ref(d, c->q, c->k, c->v, c->out, c->lse, c->dout, g_r, g_r + c->nq,
                                             g_r + c->nq + c->nk));
        ASSERT_OK(qkv_attention_backward(d, c->q, c->k, c->v, out, lse, c->dout, g, g + c->nq, g + c->nq + c->nk));
        ASSERT_MSG((at = nf_mismatch(g, g_r, c->nq + 2 * c->nk, 1e-4)) < 0,
                   "[simd %s, %d threads] %s (%s, Nk=%d): gradient element %ld = %g, reference %g", path_name,
                   n_threads, what, mode, d->n_k, at, (double)g[at], (double)g_r[at]);
        c->dq = g_r;
        c->dk = zero_buf(c->nk), c->dv = zero_buf(c->nk);
        memcpy(c->dk, g_r + c->nq, sizeof(float) * c->nk);
        memcpy(c->dv, g_r + c->nq + c->nk, sizeof(float) * c->nk);
        free(g);
    }
    free(out), free(lse), free(probs);
}

static int all_nan(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) return 0;
    return 1;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* NaN in one query row: that row's out, lse and probabilities (of the keys it sees) are
 * NaN, every other row is untouched; backward: its dq row and the dk, dv of the keys it
 * sees are NaN, nothing else. */
static void nf_nan_query(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim, Nk = c.d.n_k, r = 5; /* batch 0, head 1, row 5 */
    NF_Q(&c, 0, 1, r, 3) = NAN;
    nf_run(&c, "NaN in q", 0);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < c.d.n_q; i++) {
                size_t row = NF_ROW(&c, b, h, i);
                int hit = b == 0 && h == 1 && i == r;
                ASSERT_MSG(hit ? all_nan(c.out + row * D, D) && isnan(c.lse[row])
                               : all_finite(c.out + row * D, (size_t)D) && isfinite(c.lse[row]),
                           "NaN in q row: reference row b%d h%d i%d is %s", b, h, i, hit ? "not NaN" : "not finite");
                if (hit)
                    for (int j = 0; j < Nk; j++)
                        ASSERT(nf_sees(&c, b, i, j) ? isnan(c.probs[row * Nk + j]) : c.probs[row * Nk + j] == 0.0f);
            }
    ASSERT(all_nan(c.dq + NF_ROW(&c, 0, 1, r) * D, D));
    ASSERT(all_finite(c.dq, NF_ROW(&c, 0, 1, r) * D));
    ASSERT(all_finite(c.dq + (NF_ROW(&c, 0, 1, r) + 1) * D, c.nq - (NF_ROW(&c, 0, 1, r) + 1) * D));
    for (int j = 0; j < Nk; j++) {
        int seen = nf_sees(&c, 0, r, j);
        const float *gk = c.dk + (size_t)j * D, *gv = c.dv + (size_t)j * D;
        ASSERT_MSG(seen ? all_nan(gk, D) && all_nan(gv, D) : all_finite(gk, (size_t)D) && all_finite(gv, (size_t)D),
                   "NaN in q row %d: dk/dv of key %d (%s) wrong", r, j, seen ? "seen" : "masked");
    }
    ASSERT(all_finite(c.dk + (size_t)Nk * D, (size_t)Nk * D) && all_finite(c.dv + (size_t)Nk * D, (size_t)Nk * D));
    nf_free(&c);
}

/* NaN in one key (or one value element): the rows that see it are NaN (the value's
 * column only, lse untouched); the rows it is masked for (causal, kv_len) are not. */
static void nf_nan_key_value(int causal, int longer, int in_value) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim, j0 = 30, col = 7;
    if (in_value) NF_V(&c, 0, j0, col) = NAN;
    else NF_K(&c, 0, j0, col) = NAN;
    nf_run(&c, in_value ? "NaN in v" : "NaN in k", 0);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < c.d.n_q; i++) {
            size_t row = NF_ROW(&c, 0, h, i);
            const float *o = c.out + row * D;
            int seen = nf_sees(&c, 0, i, j0);
            if (!seen) {
                ASSERT_MSG(all_finite(o, (size_t)D) && isfinite(c.lse[row]), "NaN in a masked %s leaked into row %d",
                           in_value ? "value" : "key", i);
            } else if (in_value) {
                ASSERT(isfinite(c.lse[row]));
                for (int x = 0; x < D; x++) ASSERT(x == col ? isnan(o[x]) : isfinite(o[x]));
            } else {
                ASSERT(all_nan(o, D) && isnan(c.lse[row]));
            }
        }
    ASSERT(all_finite(c.out + NF_ROW(&c, 1, 0, 0) * D, c.nq / 2)); /* batch 1 */
    nf_free(&c);
}

/* Padding keys (j >= kv_len) full of NaN change nothing. */
static void nf_nan_padding(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim;
    nf_run(&c, "clean", 0);
    float *out = c.out, *dq = c.dq;
    c.out = NULL, c.dq = NULL;
    for (int j = c.kv_len[0]; j < c.d.n_k; j++)
        for (int x = 0; x < D; x++) NF_K(&c, 0, j, x) = NF_V(&c, 0, j, x) = NAN;
    nf_run(&c, "NaN in the kv_len padding", 0);
    ASSERT(nf_mismatch(c.out, out, c.nq, 0.0) < 0 && nf_mismatch(c.dq, dq, c.nq, 0.0) < 0);
    ASSERT(all_finite(c.dk, c.nk) && all_finite(c.dv, c.nk));
    free(out), free(dq);
    nf_free(&c);
}

/* An inf key element: a row's logit is +inf (q element > 0: row NaN) or -inf (< 0: p = 0,
 * the row stays finite). An inf value element: +inf in its column where seen. */
static void nf_inf(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim, j0 = 30, col = 2;
    NF_K(&c, 0, j0, col) = INFINITY;
    nf_run(&c, "inf in k", 0);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < c.d.n_q; i++) {
            size_t row = NF_ROW(&c, 0, h, i);
            int nan_row = nf_sees(&c, 0, i, j0) && NF_Q(&c, 0, h, i, col) > 0.0f;
            ASSERT_MSG(nan_row ? all_nan(c.out + row * D, D) && isnan(c.lse[row])
                               : all_finite(c.out + row * D, (size_t)D) && isfinite(c.lse[row]),
                       "inf in k: row h%d i%d (q %g) should be %s", h, i, (double)NF_Q(&c, 0, h, i, col),
                       nan_row ? "NaN" : "finite");
            if (!nan_row && nf_sees(&c, 0, i, j0)) ASSERT(c.probs[row * c.d.n_k + j0] == 0.0f);
        }
    NF_K(&c, 0, j0, col) = 0.5f;
    NF_V(&c, 0, j0, col) = INFINITY;
    nf_run(&c, "inf in v", 0);
    for (int i = 0; i < c.d.n_q; i++) {
        const float *o = c.out + NF_ROW(&c, 0, 0, i) * D;
        int seen = nf_sees(&c, 0, i, j0);
        for (int x = 0; x < D; x++) ASSERT(seen && x == col ? o[x] == INFINITY : isfinite(o[x]));
    }
    nf_free(&c);
}

/* Overflow: q, k ~ 1e30 make every logit overflow float32 (NaN or +-inf): every row that
 * sees a key is NaN, as in PyTorch (rows that see none stay 0 / -inf). q, k ~ 1e15 give
 * logits ~ 1e29, finite: the max-subtracted softmax is one-hot, out = v of the argmax. */
static void nf_huge(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim, Nk = c.d.n_k;
    for (size_t i = 0; i < c.nq; i++) c.q[i] *= 1e30f;
    for (size_t i = 0; i < c.nk; i++) c.k[i] *= 1e30f;
    nf_run(&c, "q, k ~ 1e30", 0);
    for (size_t row = 0; row < c.nrows; row++) {
        int b = (int)(row / (2 * (size_t)c.d.n_q)), i = (int)(row % (size_t)c.d.n_q);
        int sees = nf_sees(&c, b, i, 0);
        ASSERT_MSG(sees ? all_nan(c.out + row * D, D) && isnan(c.lse[row])
                        : c.lse[row] == -INFINITY && c.out[row * D] == 0.0f,
                   "q, k ~ 1e30: row %zu should be %s", row, sees ? "NaN" : "0 (sees nothing)");
    }
    for (size_t i = 0; i < c.nq; i++) c.q[i] *= 1e-15f;
    for (size_t i = 0; i < c.nk; i++) c.k[i] *= 1e-15f;
    /* the forward only: the backward's probabilities come from a float32 lse, which cannot
     * resolve logits this size (FlashAttention-2 has the same limit) */
    nf_run(&c, "q, k ~ 1e15", 1);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < c.d.n_q; i++) {
                size_t row = NF_ROW(&c, b, h, i);
                int best = -1;
                double bs = -INFINITY;
                for (int j = 0; j < Nk; j++) {
                    if (!nf_sees(&c, b, i, j)) continue;
                    double s = 0.0;
                    for (int x = 0; x < D; x++) s += (double)NF_Q(&c, b, h, i, x) * NF_K(&c, b, j, x);
                    if (s > bs) bs = s, best = j;
                }
                if (best < 0) continue;
                ASSERT(isfinite(c.lse[row]) && fabs(c.lse[row] * sqrt((double)D) / bs - 1.0) < 1e-5);
                for (int x = 0; x < D; x++) ASSERT_CLOSE(c.out[row * D + x], NF_V(&c, b, best, x), 1e-6);
            }
    nf_free(&c);
}

/* Every logit -inf (q = e0, k[:, 0] = -inf, the rest 0): softmax of nothing but -inf is
 * NaN, as in PyTorch; distinct from a row that sees no key (0, lse -inf). */
static void nf_all_neg_inf(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim;
    memset(c.q, 0, sizeof(float) * c.nq);
    memset(c.k, 0, sizeof(float) * c.nk);
    for (size_t i = 0; i < c.nq; i += (size_t)D) c.q[i] = 1.0f;
    for (size_t j = 0; j < c.nk; j += (size_t)D) c.k[j] = -INFINITY;
    nf_run(&c, "all logits -inf", 0);
    for (size_t row = 0; row < c.nrows; row++) {
        int b = (int)(row / (2 * (size_t)c.d.n_q)), i = (int)(row % (size_t)c.d.n_q);
        int sees = nf_sees(&c, b, i, 0);
        ASSERT(sees ? all_nan(c.out + row * D, D) && isnan(c.lse[row]) : c.lse[row] == -INFINITY);
    }
    nf_free(&c);
}

/* NaN in the upstream gradient of one row: its dq row and the dk, dv of the keys it
 * sees are NaN, nothing else (backward only). */
static void nf_nan_dout(int causal, int longer) {
    nf_case c;
    nf_init(&c, causal, longer);
    const int D = c.d.head_dim, Nk = c.d.n_k, r = 3;
    c.dout[NF_ROW(&c, 0, 0, r) * D + 1] = NAN;
    nf_run(&c, "NaN in dout", 0);
    ASSERT(all_nan(c.dq + NF_ROW(&c, 0, 0, r) * D, D));
    ASSERT(all_finite(c.dq + (NF_ROW(&c, 0, 0, r) + 1) * D, c.nq - (NF_ROW(&c, 0, 0, r) + 1) * D));
    for (int j = 0; j < Nk; j++) {
        int seen = nf_sees(&c, 0, r, j);
        ASSERT(seen ? isnan(c.dk[(size_t)j * D]) && isnan(c.dv[(size_t)j * D + 1])
                    : all_finite(c.dk + (size_t)j * D, (size_t)D) && all_finite(c.dv + (size_t)j * D, (size_t)D));
    }
    nf_free(&c);
}

/* Decoding (one query against a KV cache, kvcache.c's own kernel) follows the same policy. */
static void nf_decode(void) {
    const int Hq = 4, Hkv = 2, d = 40, T = 150;
    float *k = rand_buf((size_t)Hkv * T * d, 1), *v = rand_buf((size_t)Hkv * T * d, 1);
    float *q = rand_buf((size_t)Hq * d, 1), *out = zero_buf((size_t)Hq * d), *ref = zero_buf((size_t)Hq * d);
    for (int t = 0; t < 5; t++) {
        float *kk = malloc(sizeof(float) * (size_t)Hkv * T * d), *vv = malloc(sizeof(float) * (size_t)Hkv * T * d);
        float *qq = malloc(sizeof(float) * (size_t)Hq * d);
        memcpy(kk, k, sizeof(float) * (size_t)Hkv * T * d), memcpy(vv, v, sizeof(float) * (size_t)Hkv * T * d);
        memcpy(qq, q, sizeof(float) * (size_t)Hq * d);
        const char *what = t == 0 ? "NaN in k" : t == 1 ? "NaN in v" : t == 2 ? "q, k ~ 1e30" : t == 3 ? "all -inf" : "q, k ~ 1e15";
        if (t == 0) kk[(size_t)T * d + 77 * d + 3] = NAN;           /* kv head 1, key 77 */
        if (t == 1) vv[90 * d + 5] = NAN, vv[(size_t)T * d + 100 * d + 6] = INFINITY;
        if (t == 2 || t == 4)
            for (size_t i = 0; i < (size_t)Hkv * T * d; i++) kk[i] *= t == 2 ? 1e30f : 1e15f;
        if (t == 2 || t == 4)
            for (size_t i = 0; i < (size_t)Hq * d; i++) qq[i] *= t == 2 ? 1e30f : 1e15f;
        if (t == 3) {
            memset(kk, 0, sizeof(float) * (size_t)Hkv * T * d);
            for (size_t i = 0; i < (size_t)Hkv * T * d; i += (size_t)d) kk[i] = -INFINITY;
            for (size_t i = 0; i < (size_t)Hq * d; i++) qq[i] = i % (size_t)d == 0 ? 1.0f : 0.0f;
        }
        qkv_kvcache *cache = NULL;
        ASSERT_OK(qkv_kvcache_create(1, Hkv, d, T, &cache));
        ASSERT_OK(qkv_kvcache_append(cache, 0, T - 1, kk, vv, (ptrdiff_t)T * d, d));
        ASSERT_OK(qkv_kvcache_commit(cache, T - 1));
        ASSERT_OK(qkv_kvcache_append(cache, 0, 1, kk + (size_t)(T - 1) * d, vv + (size_t)(T - 1) * d, (ptrdiff_t)T * d, d));
        ASSERT_OK(qkv_kvcache_attend(cache, 0, Hq, 1, qq, d, d, out, 0.0f, 0.0f));
        qkv_attn_desc desc;
        qkv_attn_desc_init(&desc, 1, Hq, Hkv, 1, T, d);
        ASSERT_OK(qkv_attention_forward_ref(&desc, qq, kk, vv, ref, NULL, NULL));
        long at = nf_mismatch(out, ref, (size_t)Hq * d, 2e-5);
        ASSERT_MSG(at < 0, "[simd %s] decoding, %s: out[%ld] = %g, reference %g", path_name, what, at,
                   (double)out[at], (double)ref[at]);
        if (t == 0) ASSERT(all_finite(ref, 2 * (size_t)d) && all_nan(ref + 2 * d, 2 * d));
        if (t == 2 || t == 3) ASSERT(all_nan(ref, Hq * d));
        if (t == 4) ASSERT(all_finite(ref, (size_t)Hq * d));
        qkv_kvcache_free(cache);
        free(kk), free(vv), free(qq);
    }
    free(k), free(v), free(q), free(out), free(ref);
}

static void nonfinite_inputs(void) {
    for (int longer = 0; longer < 2; longer++)
        for (int causal = 0; causal < 2; causal++) {
            nf_nan_query(causal, longer);
            nf_nan_key_value(causal, longer, 0);
            nf_nan_key_value(causal, longer, 1);
            nf_nan_padding(causal, longer);
            nf_inf(causal, longer);
            nf_huge(causal, longer);
            nf_all_neg_inf(causal, longer);
            nf_nan_dout(causal, longer);
        }
    nf_decode();
}

/* ---- the BF16 forward (qkv_attention_forward_bf16) ------------------------------------------
 *
 * On the avx512 path (the only one it runs on), 1 and 2 threads; skipped, saying so, on a CPU
 * without AVX512_BF16. Inputs uniform in [-1, 1]; u = 2^-8 (bf16's rounding), s = |scale /
 * temperature|, V = max |v|. The kernel rounds q, k, v and P to bf16 and accumulates in float32,
 * so (include/qkv.h):
 *   against the float64 reference on bf16-rounded q, k, v (qkv__f32_to_bf16):
 *     lse  |bf16 - ref| <= 2e-5 (1 + |ref|)         only float32 rounding differs
 *     out  |bf16 - ref| <= u V + 2e-5               P rounded for P.V (weights within u)
 *   against the float64 reference on the float inputs, row by row, with
 *   ds = (2u + u^2) s max_j sum_c |q_c k_jc| over the keys j the row sees (each logit's move):
 *     lse  |bf16 - ref| <= ds + 2e-5 (1 + |ref|)
 *     out  |bf16 - ref| <= (exp(2 ds) - 1 + 2u) V + 2e-5
 * and the non-finite policy of the float32 path, NaN for NaN (finite values within 0.05).
 * (The hardware conversion also flushes subnormals to 0, which uniform inputs never hold.) */

#define BF16_U (1.0 / 256.0)

static long n_bf16_cases;
static double bf16_worst[4]; /* out, lse vs the bf16-input reference; out, lse vs the exact one */
static double bf16_ratio[2]; /* the largest out error / its bound: bf16-input, exact reference */

static float bf16_round(float x) { return qkv__bf16_to_f32(qkv__f32_to_bf16(x)); }

static float *bf16_copy(const float *x, size_t n) {
    float *r = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) r[i] = bf16_round(x[i]);
    return r;
}

static int bf16_visible(const qkv_attn_desc *d, int b, int i) {
    int n = d->kv_len ? d->kv_len[b] : d->n_k;
    if (d->causal) {
        long lim = (long)i + (d->n_k - d->n_q) + 1;
        if (lim < 0) lim = 0;
        if (lim < n) n = (int)lim;
    }
    return n;
}

/* c through qkv_attention_forward_bf16 and the reference twice (bf16-rounded and float inputs);
 * FAILs with the case, the element and the bound it broke. */
static void bf16_check(const acase *c) {
    char what[400];
    n_bf16_cases++;
    describe(c, what, sizeof what);
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d);
    d.scale = c->scale, d.temperature = c->temperature, d.causal = c->causal;
    int *kv_len = NULL;
    if (c->use_kv_len) {
        kv_len = malloc(sizeof(int) * (size_t)c->B);
        for (int b = 0; b < c->B; b++) kv_len[b] = (int)(test_rand_u64(&rng) % (unsigned)(c->Nk + 1));
        d.kv_len = kv_len;
    }
    const int D = c->d, N = c->Nq > c->Nk ? c->Nq : c->Nk;
    ptrdiff_t qn = D, qh = (ptrdiff_t)D * c->Nq, qb = qh * c->Hq, kn = D, kh = (ptrdiff_t)D * c->Nk, kb = kh * c->Hkv;
    size_t nq = (size_t)c->B * c->Hq * c->Nq * D, nk = (size_t)c->B * c->Hkv * c->Nk * D;
    size_t k_off = 0, v_off = 0;
    if (c->strided) { /* [B, N, q heads | k heads | v heads] plus slack, as in check_case */
        ptrdiff_t row = (ptrdiff_t)(c->Hq + 2 * c->Hkv) * D + 3;
        d.q_stride_n = d.k_stride_n = d.v_stride_n = qn = kn = row;
        d.q_stride_h = d.k_stride_h = d.v_stride_h = qh = kh = D;
        d.q_stride_b = d.k_stride_b = d.v_stride_b = qb = kb = row * N;
        nq = nk = (size_t)row * N * c->B;
        k_off = (size_t)c->Hq * D, v_off = (size_t)(c->Hq + c->Hkv) * D;
    }
    float *bq = rand_buf(nq, c->amp), *bk = c->strided ? bq : rand_buf(nk, c->amp);
    float *bv = c->strided ? bq : rand_buf(nk, 1.0f);
    float *rq = bf16_copy(bq, nq), *rk = c->strided ? rq : bf16_copy(bk, nk), *rv = c->strided ? rq : bf16_copy(bv, nk);
    const float *q = bq, *k = bk + k_off, *v = bv + v_off;
    size_t nrows = (size_t)c->B * c->Hq * c->Nq;
    float *out = zero_buf(nq), *out_b = zero_buf(nq), *out_x = zero_buf(nq);
    float *lse = zero_buf(nrows), *lse_b = zero_buf(nrows), *lse_x = zero_buf(nrows);
    ASSERT_OK(qkv_attention_forward_bf16(&d, q, k, v, out, lse));
    ASSERT_OK(qkv_attention_forward_ref(&d, rq, rk + k_off, rv + v_off, out_b, lse_b, NULL));
    ASSERT_OK(qkv_attention_forward_ref(&d, q, k, v, out_x, lse_x, NULL));
    const int group = c->Hq / c->Hkv;
    const double s = fabs((double)(c->scale != 0.0f ? c->scale : 1.0f / sqrtf((float)D)) /
                          (c->temperature != 0.0f ? c->temperature : 1.0f));
    double vmax = 0.0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hkv; h++)
            for (int j = 0; j < c->Nk; j++)
                for (int x = 0; x < D; x++) {
                    double a = fabs(v[b * kb + h * kh + j * kn + x]);
                    vmax = a > vmax ? a : vmax;
                }
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->Nq; i++) {
                const ptrdiff_t qo = b * qb + h * qh + i * qn;
                const size_t row = ((size_t)b * c->Hq + h) * c->Nq + (size_t)i;
                const int nv = bf16_visible(&d, b, i);
                double ds = 0.0;
                for (int j = 0; j < nv; j++) {
                    const float *kr = k + b * kb + (h / group) * kh + j * kn;
                    double a = 0.0;
                    for (int x = 0; x < D; x++) a += fabs((double)q[qo + x] * kr[x]);
                    ds = a > ds ? a : ds;
                }
                ds *= (2.0 * BF16_U + BF16_U * BF16_U) * s;
                const double tol_b = BF16_U * vmax + 2e-5, tol_x = expm1(2.0 * ds) + 2.0 * BF16_U * vmax + 2e-5;
                if (nv == 0) {
                    ASSERT_MSG(lse[row] == -INFINITY, "%s: bf16 row %zu sees no key: lse %g, expected -inf", what, row,
                               (double)lse[row]);
                } else {
                    double eb = fabs((double)lse[row] - lse_b[row]), ex = fabs((double)lse[row] - lse_x[row]);
                    ASSERT_MSG(eb <= 2e-5 * (1.0 + fabs(lse_b[row])),
                               "%s: bf16 lse[%zu] = %.9g, reference on bf16 inputs %.9g (err %.3g)", what, row,
                               (double)lse[row], (double)lse_b[row], eb);
                    ASSERT_MSG(ex <= ds + 2e-5 * (1.0 + fabs(lse_x[row])),
                               "%s: bf16 lse[%zu] = %.9g, reference %.9g (err %.3g > ds %.3g)", what, row,
                               (double)lse[row], (double)lse_x[row], ex, ds);
                    if (eb > bf16_worst[1]) bf16_worst[1] = eb;
                    if (ex > bf16_worst[3]) bf16_worst[3] = ex;
                }
                for (int x = 0; x < D; x++) {
                    double o = out[qo + x], eb = fabs(o - out_b[qo + x]), ex = fabs(o - out_x[qo + x]);
                    ASSERT_MSG(eb <= tol_b, "%s: bf16 out row %zu [%d] = %.9g, reference on bf16 inputs %.9g (err %.3g > %.3g)",
                               what, row, x, o, (double)out_b[qo + x], eb, tol_b);
                    ASSERT_MSG(ex <= tol_x, "%s: bf16 out row %zu [%d] = %.9g, reference %.9g (err %.3g > %.3g)", what,
                               row, x, o, (double)out_x[qo + x], ex, tol_x);
                    if (eb > bf16_worst[0]) bf16_worst[0] = eb;
                    if (ex > bf16_worst[2]) bf16_worst[2] = ex;
                    if (eb / tol_b > bf16_ratio[0]) bf16_ratio[0] = eb / tol_b;
                    if (ex / tol_x > bf16_ratio[1]) bf16_ratio[1] = ex / tol_x;
                }
            }
    free(bq), free(rq), free(out), free(out_b), free(out_x), free(lse), free(lse_b), free(lse_x), free(kv_len);
    if (!c->strided) free(bk), free(bv), free(rk), free(rv);
}

static void bf16_grid(void) {
    static const int dims[] = {32, 64, 80, 128, 1, 17, 200, 256};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (int causal = 0; causal < 2; causal++) {
            if (SANITIZED && di >= 4 && causal) continue;
            acase c = mk(2, 4, 2, 150, 170, dims[di], causal); /* GQA, several key and query blocks */
            bf16_check(&c);
            c = mk(1, 3, 3, 1, 300, dims[di], causal); /* one query (decoding) */
            bf16_check(&c);
            c = mk(1, 2, 1, 100, 40, dims[di], causal); /* Nq > Nk: causal rows that see nothing */
            bf16_check(&c);
            if (di >= 4) continue;
            c = mk(3, 4, 2, 60, 200, dims[di], causal);
            c.use_kv_len = 1;
            bf16_check(&c);
            c = mk(2, 4, 2, 70, 130, dims[di], causal);
            c.strided = 1;
            c.scale = 0.3f, c.temperature = 0.25f;
            bf16_check(&c);
            c = mk(1, 6, 1, 50, 0, dims[di], causal); /* no keys at all */
            bf16_check(&c);
            c = mk(1, 2, 1, 0, 50, dims[di], causal); /* no queries */
            bf16_check(&c);
        }
}

static void bf16_random(void) {
    int n = SANITIZED ? 6 : 24;
    for (int t = 0; t < n; t++) {
        int hkv = 1 + (int)(test_rand_u64(&rng) % 3), grp = 1 + (int)(test_rand_u64(&rng) % 3);
        static const int dims[] = {32, 64, 80, 128};
        int d = t % 3 == 2 ? 1 + (int)(test_rand_u64(&rng) % 256) : dims[test_rand_u64(&rng) % 4];
        acase c = mk(1 + (int)(test_rand_u64(&rng) % 2), hkv * grp, hkv, 1 + (int)(test_rand_u64(&rng) % 400),
                     1 + (int)(test_rand_u64(&rng) % 400), d, (int)(test_rand_u64(&rng) % 2));
        c.use_kv_len = test_rand_u64(&rng) % 3 == 0;
        c.strided = test_rand_u64(&rng) % 4 == 0;
        if (test_rand_u64(&rng) % 3 == 0) c.temperature = 0.5f + (float)(test_rand_u64(&rng) % 100) / 25.0f;
        bf16_check(&c);
    }
}

/* N = 1024 (d 32, 64, 80, 128; GQA, causal, kv_len): several key blocks per row, the lengths
 * the BF16 path is for. */
static void bf16_long(void) {
    static const int dims[] = {32, 64, 80, 128};
    for (int t = 0; t < 4; t++) {
        if (SANITIZED && t > 1) break;
        acase c = mk(1, 2, t % 2 ? 1 : 2, 1024, 1024, dims[t], t == 1 || t == 2);
        c.use_kv_len = t == 3;
        bf16_check(&c);
    }
}

/* Non-finite inputs: the float32 path's policy, checked as nf_run does but for the BF16
 * forward (NaN for NaN, the same inf, finite values within 0.05 of the float64 reference). */
static void nf_bf16_run(nf_case *c, const char *what) {
    const qkv_attn_desc *d = &c->d;
    float *out = zero_buf(c->nq), *lse = zero_buf(c->nrows);
    free(c->out), free(c->lse);
    c->out = zero_buf(c->nq), c->lse = zero_buf(c->nrows);
    ASSERT_OK(qkv_attention_forward_ref(d, c->q, c->k, c->v, c->out, c->lse, NULL));
    ASSERT_OK(qkv_attention_forward_bf16(d, c->q, c->k, c->v, out, lse));
    long at;
    const char *mode = d->causal ? "causal" : "full";
    ASSERT_MSG((at = nf_mismatch(out, c->out, c->nq, 0.05)) < 0, "[bf16, %d threads] %s (%s, Nk=%d): out[%ld] = %g, reference %g",
               n_threads, what, mode, d->n_k, at, (double)out[at], (double)c->out[at]);
    ASSERT_MSG((at = nf_mismatch(lse, c->lse, c->nrows, 0.05)) < 0, "[bf16, %d threads] %s (%s, Nk=%d): lse[%ld] = %g, reference %g",
               n_threads, what, mode, d->n_k, at, (double)lse[at], (double)c->lse[at]);
    memcpy(c->out, out, sizeof(float) * c->nq); /* keep the BF16 results for the policy checks */
    memcpy(c->lse, lse, sizeof(float) * c->nrows);
    free(out), free(lse);
}

static void bf16_nonfinite(void) {
    for (int longer = 0; longer < 2; longer++)
        for (int causal = 0; causal < 2; causal++) {
            nf_case c;
            nf_init(&c, causal, longer);
            const int D = c.d.head_dim, j0 = 30;
            nf_bf16_run(&c, "clean");
            float *clean = c.out;
            c.out = NULL;
            /* NaN in a query row: that row NaN, every other row finite */
            float keep = NF_Q(&c, 0, 1, 5, 3);
            NF_Q(&c, 0, 1, 5, 3) = NAN;
            nf_bf16_run(&c, "NaN in q");
            for (size_t row = 0; row < c.nrows; row++)
                ASSERT(row == NF_ROW(&c, 0, 1, 5) ? all_nan(c.out + row * D, D) && isnan(c.lse[row])
                                                   : all_finite(c.out + row * D, (size_t)D));
            NF_Q(&c, 0, 1, 5, 3) = keep;
            /* NaN in a key, then in a value: the rows that see it, no other */
            for (int in_value = 0; in_value < 2; in_value++) {
                float *slot = in_value ? &NF_V(&c, 0, j0, 7) : &NF_K(&c, 0, j0, 7);
                keep = *slot;
                *slot = NAN;
                nf_bf16_run(&c, in_value ? "NaN in v" : "NaN in k");
                for (int h = 0; h < 2; h++)
                    for (int i = 0; i < c.d.n_q; i++) {
                        const float *o = c.out + NF_ROW(&c, 0, h, i) * D;
                        if (!nf_sees(&c, 0, i, j0)) ASSERT(all_finite(o, (size_t)D));
                        else if (in_value)
                            for (int x = 0; x < D; x++) ASSERT(x == 7 ? isnan(o[x]) : isfinite(o[x]));
                        else ASSERT(all_nan(o, D));
                    }
                *slot = keep;
            }
            /* NaN in the kv_len padding: bit for bit the clean result */
            for (int j = c.kv_len[0]; j < c.d.n_k; j++)
                for (int x = 0; x < D; x++) NF_K(&c, 0, j, x) = NF_V(&c, 0, j, x) = NAN;
            nf_bf16_run(&c, "NaN in the kv_len padding");
            ASSERT(nf_mismatch(c.out, clean, c.nq, 0.0) < 0);
            /* inf in a key: +inf logits (q > 0) make the row NaN; inf in a value: +inf there */
            NF_K(&c, 0, j0, 2) = INFINITY;
            nf_bf16_run(&c, "inf in k");
            NF_K(&c, 0, j0, 2) = 0.5f;
            NF_V(&c, 0, j0, 2) = INFINITY;
            nf_bf16_run(&c, "inf in v");
            for (int i = 0; i < c.d.n_q; i++) {
                const float *o = c.out + NF_ROW(&c, 0, 0, i) * D;
                ASSERT(nf_sees(&c, 0, i, j0) ? o[2] == INFINITY : isfinite(o[2]));
            }
            NF_V(&c, 0, j0, 2) = 0.5f;
            /* q, k ~ 1e30: every logit overflows, every row that sees a key is NaN; ~1e15:
             * finite, one-hot rows (bf16 may pick another near-tie: finite is what is checked) */
            for (size_t i = 0; i < c.nq; i++) c.q[i] *= 1e30f;
            for (size_t i = 0; i < c.nk; i++) c.k[i] *= 1e30f;
            nf_bf16_run(&c, "q, k ~ 1e30");
            for (size_t i = 0; i < c.nq; i++) c.q[i] *= 1e-15f;
            for (size_t i = 0; i < c.nk; i++) c.k[i] *= 1e-15f;
            free(c.out), free(c.lse);
            c.out = zero_buf(c.nq), c.lse = zero_buf(c.nrows);
            ASSERT_OK(qkv_attention_forward_bf16(&c.d, c.q, c.k, c.v, c.out, c.lse));
            for (size_t row = 0; row < c.nrows; row++) ASSERT(all_finite(c.out + row * D, (size_t)D));
            /* every logit -inf: NaN rows (rows that see nothing: lse -inf) */
            memset(c.q, 0, sizeof(float) * c.nq);
            memset(c.k, 0, sizeof(float) * c.nk);
            for (size_t i = 0; i < c.nq; i += (size_t)D) c.q[i] = 1.0f;
            for (size_t j = 0; j < c.nk; j += (size_t)D) c.k[j] = -INFINITY;
            nf_bf16_run(&c, "all logits -inf");
            free(clean);
            nf_free(&c);
        }
}

/* Bad arguments and the CPU check: the same validation as qkv_attention_forward, and
 * QKV_EUNSUPPORTED with a message once a path without AVX-512 is forced. */
static void bf16_arguments(void) {
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, 1, 2, 1, 4, 4, 8);
    float buf[64] = {0}, lse[8];
    ASSERT(qkv_attention_forward_bf16(NULL, buf, buf, buf, buf, lse) == QKV_EINVAL);
    ASSERT(qkv_attention_forward_bf16(&d, NULL, buf, buf, buf, lse) == QKV_EINVAL);
    ASSERT(qkv_attention_forward_bf16(&d, buf, buf, buf, NULL, lse) == QKV_EINVAL);
    d.n_head_kv = 3;
    ASSERT(qkv_attention_forward_bf16(&d, buf, buf, buf, buf, lse) == QKV_ESHAPE);
    d.n_head_kv = 1, d.head_dim = 300;
    ASSERT(qkv_attention_forward_bf16(&d, buf, buf, buf, buf, lse) == QKV_EUNSUPPORTED);
    d.head_dim = 8, d.temperature = -1.0f;
    ASSERT(qkv_attention_forward_bf16(&d, buf, buf, buf, buf, lse) == QKV_ERANGE);
    d.temperature = 0.0f;
    ASSERT_OK(qkv_attention_forward_bf16(&d, buf, buf, buf, buf, NULL)); /* lse optional */
    if (qkv_set_simd("avx2") == QKV_OK) {
        qkv_status st = qkv_attention_forward_bf16(&d, buf, buf, buf, buf, lse);
        qkv_set_simd("avx512");
        ASSERT_EQ_INT(st, QKV_EUNSUPPORTED);
        ASSERT_MSG(strstr(qkv_last_error(), "AVX512_BF16") != NULL, "message: %s", qkv_last_error());
    }
}

/* Runs body on the avx512 path, 1 and 2 threads; skips when this CPU lacks AVX512_BF16. */
#define BF16_PATH(body)                                                                       \
    do {                                                                                      \
        qkv_attn_desc d__;                                                                    \
        float z__[8] = {0};                                                                   \
        qkv_attn_desc_init(&d__, 1, 1, 1, 1, 1, 8);                                           \
        if (qkv_set_simd("avx512") != QKV_OK || qkv_attention_forward_bf16(&d__, z__, z__, z__, z__, NULL) != QKV_OK) \
            SKIP("this CPU lacks AVX512_BF16 (or AVX-512): the BF16 forward is not available");    \
        path_name = "avx512+bf16";                                                            \
        for (n_threads = 1; n_threads <= 2; n_threads++) {                                    \
            qkv_set_threads(n_threads);                                                       \
            body;                                                                             \
        }                                                                                     \
    } while (0)

static void t_bf16_grid(void) { BF16_PATH(bf16_grid()); }
static void t_bf16_random(void) { BF16_PATH(bf16_random()); }
static void t_bf16_long(void) { BF16_PATH(bf16_long()); }
static void t_bf16_nonfinite(void) { BF16_PATH(bf16_nonfinite()); }
static void t_bf16_arguments(void) { BF16_PATH(if (n_threads == 1) bf16_arguments()); }

/* ---- every SIMD path, 1 and 2 threads ----------------------------------------------------- */

static const char *paths[] = {"scalar", "avx2", "avx512"};

#define EACH_PATH(body)                                                                   \
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {                      \
        if (qkv_set_simd(paths[pi]) != QKV_OK) {                                          \
            printf("      (simd %s: not on this CPU, skipped)\n", paths[pi]);             \
            continue;                                                                     \
        }                                                                                 \
        path_name = paths[pi];                                                            \
        for (n_threads = 1; n_threads <= 2; n_threads++) {                                \
            qkv_set_threads(n_threads);                                                   \
            body;                                                                         \
        }                                                                                 \
    }

static void t_grid_shapes(void) { EACH_PATH(grid_shapes()) }
static void t_grid_heads(void) { EACH_PATH(grid_heads()) }
static void t_grid_options(void) { EACH_PATH(grid_options()) }
static void t_big_logits(void) { EACH_PATH(big_logits()) }
static void t_rows_that_see_nothing(void) { EACH_PATH(rows_that_see_nothing()) }
static void t_randomized_shapes(void) { EACH_PATH(randomized_shapes()) }
static void t_finite_differences(void) { EACH_PATH(gradients_vs_finite_differences()) }
static void t_kvcache(void) { EACH_PATH(kvcache_decode_equals_full()) }
static void t_nonfinite(void) { EACH_PATH(nonfinite_inputs()) }
static void t_nested(void) {
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++)
        if (qkv_set_simd(paths[pi]) == QKV_OK) {
            path_name = paths[pi];
            nested_inside_callers_parallel_region();
        }
}
static void t_long_sequence(void) {
    if (qkv_set_simd("avx512") != QKV_OK && qkv_set_simd("avx2") != QKV_OK) qkv_set_simd("scalar");
    path_name = qkv_simd_name();
    long_sequence_linear_memory();
}

int main(void) {
    const char *env = getenv("QKV_SIMD");
    printf("detected SIMD path: %s%s\n", qkv_simd_name(), env ? " (QKV_SIMD set)" : "");
    RUN(bad_descriptors);
    RUN(t_rows_that_see_nothing);
    RUN(t_grid_shapes);
    RUN(t_grid_heads);
    RUN(t_grid_options);
    RUN(t_big_logits);
    RUN(t_randomized_shapes);
    RUN(t_finite_differences);
    RUN(t_kvcache);
    RUN(t_nonfinite);
    RUN(t_nested);
    RUN(t_long_sequence);
    RUN(t_bf16_arguments);
    RUN(t_bf16_grid);
    RUN(t_bf16_random);
    RUN(t_bf16_long);
    RUN(t_bf16_nonfinite);
    printf("%ld shape/option configurations checked against the reference (forward%s)\n", n_cases,
           " and backward");
    if (n_bf16_cases)
        printf("bf16 forward: %ld configurations; worst |error| against float64 on bf16-rounded inputs: out %.3g "
               "(%.2f of its bound), lse %.3g; against float64 on the float inputs: out %.3g (%.2f of its bound), "
               "lse %.3g\n",
               n_bf16_cases, bf16_worst[0], bf16_ratio[0], bf16_worst[1], bf16_worst[2], bf16_ratio[1], bf16_worst[3]);
    return test_summary();
}
