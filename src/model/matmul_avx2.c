/*
 * matmul_avx2.c -- generation's F32 matrix-vector products for AVX2 + FMA (8 lanes), on
 * qkv's thread pool: the block matrices by rows into partials (gemv_rows.inc, as on AVX-512)
 * and the output head by rows, four rows a quarter of the matrix apart at once; the same for
 * BF16 weights (the packed panels, the head's rows), widened to F32; and Q8_0 rows with int8
 * dot products (maddubs, as ggml's AVX2 q8_0 dot). Before these,
 * a CPU without AVX-512 ran a baseline-x86 loop over column slices with an OpenMP barrier
 * each: GPT-2 F32 generation 21 tokens/s here under QKV_SIMD=avx2. Compiled with AVX2 flags
 * (Makefile: *_avx2.c); called only when the AVX2 path is selected (qkv__use_avx2).
 */
#include "model/model.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define VW 8
typedef __m256 vf;
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTORE(p, x) _mm256_store_ps((p), (x))
#define VSTOREU(p, x) _mm256_storeu_ps((p), (x))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VADD(a, b) _mm256_add_ps((a), (b))
#include "gemv_rows.inc"

int qkv__gemv_avx2(const float *x, int in, int out, const float *w, const float *b, float *y, int n_threads) {
    return gemv_rows(x, in, out, w, b, y, n_threads);
}

/* ---- BF16 weights: no BF16 dot products here, so each weight widens to F32 (a shift) and
 * multiplies x in full; the AVX-512 path's x in two BF16 parts is exact to 2^-16 of |x|, this
 * one to F32's rounding ---- */

/* Eight BF16 (uint16) to F32. */
static inline vf bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

typedef struct {
    const float *x, *b;
    const uint16_t *wb; /* packed: panels of 32 columns, pair rows of 32 dwords (qkv__bf16p_index) */
    float *y;
    int in, out;
} bf16p_job;

/* Panels [p0, p1): y[32 p ...] = b + the panel's columns of x W, pair row by pair row (a dword's
 * low half W[2q, j], its high half W[2q + 1, j]). */
static void bf16p_chunk(void *arg, int p0, int p1) {
    const bf16p_job *j = arg;
    const int kp = (j->in + 1) / 2;
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    for (int p = p0; p < p1; p++) {
        const __m256i *w = (const __m256i *)(j->wb + (size_t)p * kp * 64);
        vf a[4] = {VSET1(0.0f), VSET1(0.0f), VSET1(0.0f), VSET1(0.0f)};
        for (int q = 0; q < kp; q++, w += 4) {
            _mm_prefetch((const char *)w + 1024, _MM_HINT_T0);
            _mm_prefetch((const char *)w + 1088, _MM_HINT_T0);
            const vf x0 = VSET1(j->x[2 * q]), x1 = VSET1(2 * q + 1 < j->in ? j->x[2 * q + 1] : 0.0f);
            for (int u = 0; u < 4; u++) {
                const __m256i v = _mm256_load_si256(w + u);
                a[u] = VFMA(x0, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), a[u]);
                a[u] = VFMA(x1, _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)), a[u]);
            }
        }
        float t[32];
        for (int u = 0; u < 4; u++) VSTOREU(t + 8 * u, a[u]);
        for (int c = 0; c < 32 && 32 * p + c < j->out; c++) j->y[32 * p + c] = j->b ? t[c] + j->b[32 * p + c] : t[c];
    }
}

void qkv__gemv_bf16p_avx2(const float *x, int in, int out, const uint16_t *wb, const float *b, float *y,
                          int n_threads) {
    bf16p_job j = {x, b, wb, y, in, out};
    const int n_panels = (out + 31) / 32;
    qkv__pool_for(n_panels, 1, n_threads, bf16p_chunk, &j);
}

static inline float hsum(vf a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define HEAD_ROWS 8    /* rows of each quarter a unit */
#define HEAD_PF 2048   /* bytes ahead on each row (the AVX-512 head's distance) */

typedef struct {
    const float *x, *e;
    const uint16_t *eb; /* BF16 rows instead of e, or NULL */
    float *y;
    int c, v, q; /* q: rows a quarter of the matrix apart */
} head_job;

/* y[j] = E[j, :] x for the n rows j[] at once; bf: E's rows are BF16 (jb->eb), else F32. */
static inline __attribute__((always_inline)) void head_rows(const head_job *jb, const int *j, int n, int bf) {
    const int c = jb->c;
    const float *x = jb->x, *rf[4] = {NULL};
    const uint16_t *rb[4] = {NULL};
    vf a[4][2];
    for (int i = 0; i < n; i++) {
        if (bf)
            rb[i] = jb->eb + (size_t)j[i] * c;
        else
            rf[i] = jb->e + (size_t)j[i] * c;
        a[i][0] = a[i][1] = _mm256_setzero_ps();
    }
    int k = 0;
    for (; k + 16 <= c; k += 16) { /* 16 weights of each row an iteration */
        const vf x0 = VLOADU(x + k), x1 = VLOADU(x + k + 8);
        for (int i = 0; i < n; i++) {
            if (!bf) /* a 64-byte line of each row */
                _mm_prefetch((const char *)(rf[i] + k) + HEAD_PF, _MM_HINT_T0);
            else if (k % 32 == 0) /* 32 bytes an iteration: a line every other */
                _mm_prefetch((const char *)(rb[i] + k) + HEAD_PF / 2, _MM_HINT_T0);
            a[i][0] = VFMA(bf ? bf16x8(rb[i] + k) : VLOADU(rf[i] + k), x0, a[i][0]);
            a[i][1] = VFMA(bf ? bf16x8(rb[i] + k + 8) : VLOADU(rf[i] + k + 8), x1, a[i][1]);
        }
    }
    for (int i = 0; i < n; i++) {
        float s = hsum(VADD(a[i][0], a[i][1]));
        for (int kk = k; kk < c; kk++) s = fmaf(bf ? qkv__bf16_to_f32(rb[i][kk]) : rf[i][kk], x[kk], s);
        jb->y[j[i]] = s;
    }
}

/* y[j] = E[j, :] x for rows j = r + s q (quarter s < 4, those below v), r in the unit's rows. */
static void head_chunk(void *arg, int u0, int u1) {
    const head_job *jb = arg;
    const int v = jb->v, q = jb->q;
    for (int r = u0 * HEAD_ROWS; r < u1 * HEAD_ROWS && r < q; r++) {
        int j[4], n = 0;
        for (int s = 0; s < 4; s++)
            if (r + s * q < v) j[n++] = r + s * q;
        if (jb->eb)
            head_rows(jb, j, n, 1);
        else
            head_rows(jb, j, n, 0);
    }
}

void qkv__gemv_t_avx2(const float *x, int c, int v, const float *e, const uint16_t *eb, float *y, int n_threads) {
    const int q = (v + 3) / 4, units = (q + HEAD_ROWS - 1) / HEAD_ROWS;
    head_job jb = {x, e, eb, y, c, v, q};
    qkv__pool_for(units, 16, n_threads, head_chunk, &jb); /* at least 16 units (4 x 128 rows) a claim */
}

/* ---- Q8_0: each block's int8 dot exact in int32 (|x|, |w| <= 127: a pair's sum fits 16
 * bits), times the two scales, summed in 8 lanes over a row's blocks ---- */

typedef struct {
    const int8_t *xq;
    const float *xd;
    const qkv__q8 *w;
    const float *b;
    float *y;
    int nb;
} q8_job;

static void q8_rows(void *arg, int o0, int o1) {
    const q8_job *j = arg;
    const int nb = j->nb;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int o = o0; o < o1; o++) {
        const qkv__q8 *row = j->w + (size_t)o * nb;
        vf acc = VSET1(0.0f);
        for (int k = 0; k < nb; k++) {
            _mm_prefetch((const char *)(row + k) + 2048, _MM_HINT_T0);
            const __m256i xv = _mm256_load_si256((const __m256i *)(j->xq + 32 * (size_t)k));
            const __m256i wv = _mm256_loadu_si256((const __m256i *)row[k].qs);
            /* |x| (unsigned) times w with x's sign: maddubs' u8 x s8 */
            const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
            const vf s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc = VFMA(VSET1(_cvtsh_ss(row[k].d) * j->xd[k]), s, acc);
        }
        const float t = hsum(acc);
        j->y[o] = j->b ? t + j->b[o] : t;
    }
}

void qkv__gemv_q8_avx2(const int8_t *xq, const float *xd, int in, int out, const qkv__q8 *w, const float *b,
                       float *y, int n_threads) {
    q8_job j = {xq, xd, w, b, y, in / 32};
    qkv__pool_for(out, 32, n_threads, q8_rows, &j); /* at least 32 rows a claim */
}
