/*
 * matmul_avx2.c -- generation's F32 matrix-vector products for AVX2 + FMA (8 lanes), on
 * qkv's thread pool: the block matrices by rows into partials (gemv_rows.inc, as on AVX-512)
 * and the output head by rows, four rows a quarter of the matrix apart at once. Before these,
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
    float *y;
    int c, v, q; /* q: rows a quarter of the matrix apart */
} head_job;

/* y[j] = E[j, :] x for rows j = r + s q (quarter s < 4, those below v), r in the unit's rows. */
static void head_chunk(void *arg, int u0, int u1) {
    const head_job *jb = arg;
    const int c = jb->c, v = jb->v, q = jb->q;
    const float *x = jb->x;
    for (int r = u0 * HEAD_ROWS; r < u1 * HEAD_ROWS && r < q; r++) {
        int j[4], n = 0;
        for (int s = 0; s < 4; s++)
            if (r + s * q < v) j[n++] = r + s * q;
        const float *row[4];
        vf a[4][2];
        for (int i = 0; i < n; i++) row[i] = jb->e + (size_t)j[i] * c, a[i][0] = a[i][1] = _mm256_setzero_ps();
        int k = 0;
        for (; k + 16 <= c; k += 16) { /* a 64-byte line of each row an iteration */
            const vf x0 = VLOADU(x + k), x1 = VLOADU(x + k + 8);
            for (int i = 0; i < n; i++) {
                _mm_prefetch((const char *)(row[i] + k) + HEAD_PF, _MM_HINT_T0);
                a[i][0] = VFMA(VLOADU(row[i] + k), x0, a[i][0]);
                a[i][1] = VFMA(VLOADU(row[i] + k + 8), x1, a[i][1]);
            }
        }
        for (int i = 0; i < n; i++) {
            float s = hsum(VADD(a[i][0], a[i][1]));
            for (int kk = k; kk < c; kk++) s = fmaf(row[i][kk], x[kk], s);
            jb->y[j[i]] = s;
        }
    }
}

void qkv__gemv_t_avx2(const float *x, int c, int v, const float *e, float *y, int n_threads) {
    const int q = (v + 3) / 4, units = (q + HEAD_ROWS - 1) / HEAD_ROWS;
    head_job jb = {x, e, y, c, v, q};
    qkv__pool_for(units, 16, n_threads, head_chunk, &jb); /* at least 16 units (4 x 128 rows) a claim */
}
