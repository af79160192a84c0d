/*
 * test_attention.c -- the fused attention engine against the double-accumulation reference,
 * on every SIMD path this CPU has (scalar, avx2, avx512) and on 1 and 2 threads: a grid of
 * shapes and options, randomized shapes, backward, finite differences, the KV cache.
 *
 * Tolerances (inputs uniform in [-1, 1], values |v| <= 1):
 *   out, probs        |fast - ref| <= 2e-5 * (1 + |ref|)         (float accumulation)
 *   lse               |fast - ref| <= 2e-5 * (1 + |ref|)
 *   dq, dk, dv        |fast - ref| <= 1e-4 * max(1, max |ref|)   (sums over all rows)
 *   logits ~ 1e3      the above times 500: a 1e3 logit in float is only good to ~1e-4,
 *                     and the row is then nearly one-hot; checked finite and close.
 *   finite differences (double perturbation through the reference): 1e-3 relative.
 */
#include "qkv.h"
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

/* Token-by-token decoding (and a chunked prefill) equals full causal attention. */
static void kvcache_decode_equals_full(void) {
    const int L = 2, Hq = 6, Hkv = 2, d = 64, T = SANITIZED ? 40 : 150;
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
    RUN(t_nested);
    RUN(t_long_sequence);
    printf("%ld shape/option configurations checked against the reference (forward%s)\n", n_cases,
           " and backward");
    return test_summary();
}
