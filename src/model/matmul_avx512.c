/*
 * matmul_avx512.c -- AVX-512 kernels for the model: a register-blocked sgemm (12 x 32 tile:
 * 24 accumulators, B packed in 32-column panels, A tiles copied, C prefetched), the BF16 GEMM of prompts
 * (vdpbf16ps on the model's packed BF16 copies), and the memory-bound GEMVs of generation (F32
 * weights by chunks of whole rows, four streams far apart; packed BF16 by panels, vdpbf16ps on x in two
 * BF16 parts; Q8_0 with int8 VNNI dot products), and the forward's row-wise GELU and norms. Built with
 * AVX-512 flags; only called after run-time detection (matmul.c, layers.c).
 */
#include "model/model.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define MR 12
#define NR 32
#define KC 256
#define NC 384 /* NC / NR = 12 panels of KC x NR floats (384 KB): stays in L2 beside A's stream */
#define LDA_P (KC + 16) /* the A tile's copy: rows 1088 bytes apart land in different L1 sets */
_Static_assert(NR == QKV__BF16P_NR, "the BF16 kernels read the packed copies' 32-column panels");

/* Packs B[k0:k0+kc, j0:j0+nc] into panels of NR columns (zero-padded): panel p holds
 * kc rows of NR floats. trans: B[k, j] = src[j * ld + k] (E^T); else src[k * ld + j]. */
static void pack_panel(const float *src, ptrdiff_t ld, int trans, int k0, int kc, int j0, int nr,
                       float *dst) {
    if (!trans) {
        __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
        __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
        for (int k = 0; k < kc; k++) {
            const float *s = src + (size_t)(k0 + k) * ld + j0;
            _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, s));
            _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
        }
    } else { /* read each row of E front to back; the scattered writes stay in cache */
        for (int j = 0; j < NR; j++) {
            const float *row = src + (size_t)(j0 + j) * ld + k0;
            if (j < nr)
                for (int k = 0; k < kc; k++) dst[k * NR + j] = row[k];
            else
                for (int k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
        }
    }
}

/* C[mr x nr] = bias + acc (first) or C + acc: the end of both 12 x 32 kernels. */
static inline __attribute__((always_inline)) void store_tile(__m512 acc[MR][2], float *c, ptrdiff_t ldc, int mr,
                                                             int nr, int first, const float *bias) {
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (first && bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 c0 = first ? bias0 : _mm512_maskz_loadu_ps(m0, cr);
        __m512 c1 = first ? bias1 : _mm512_maskz_loadu_ps(m1, cr + 16);
        _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(c0, acc[r][0]));
        _mm512_mask_storeu_ps(cr + 16, m1, _mm512_add_ps(c1, acc[r][1]));
    }
}

/* The kernels' A tile: mr rows of n elements (4 bytes each) copied to dst at stride ld_dst,
 * zero rows below mr. One contiguous block in L1, where the activations' own rows (3072 floats
 * apart in the MLP's second product: a multiple of 4 KB) all fell in one L1 set. Copying rows
 * that did not collide cost more than it saved (F32 prompt, medians of 6). */
static void copy_tile(void *dst, ptrdiff_t ld_dst, const void *src, ptrdiff_t ld_src, int mr, int n) {
    if (mr < MR) memset(dst, 0, 4 * (size_t)MR * (size_t)ld_dst);
    for (int r = 0; r < mr; r++)
        memcpy((char *)dst + 4 * (size_t)r * (size_t)ld_dst, (const char *)src + 4 * (size_t)r * (size_t)ld_src,
               4 * (size_t)n);
}

/* C comes from L3 or memory (each k block adds to it): asked for at a kernel's start, it is
 * there by the end (+10% on the 2-thread sgemm, when it stalled every store_tile). */
static inline __attribute__((always_inline)) void prefetch_tile(const float *c, ptrdiff_t ldc, int mr) {
    for (int r = 0; r < mr; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
    }
}

/* C[mr x nr] (+)= A[MR x kc] @ Bp[kc x NR]. A rows have stride lda (MR rows always readable).
 * first: C = bias + product (bias may be NULL); else C += product. */
static void kernel_12x32(int kc, const float *a, ptrdiff_t lda, const float *bp, float *c,
                         ptrdiff_t ldc, int mr, int nr, int first, const float *bias) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, mr);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    store_tile(acc, c, ldc, mr, nr, first, bias);
}

/* Packs rows k0..k0+kc of B's columns j0..j0+nc into panels of NR columns (zero-padded),
 * reading each row's nc columns as one contiguous run (NN) or row by row of E (NT). */
static void pack_b(const float *w, ptrdiff_t ldw, int trans, int k0, int kc, int j0, int nc,
                   float *packed) {
    int n_panels = (nc + NR - 1) / NR;
    if (trans) {
        for (int p = 0; p < n_panels; p++) {
            int nr = nc - p * NR < NR ? nc - p * NR : NR;
            pack_panel(w, ldw, 1, k0, kc, j0 + p * NR, nr, packed + (size_t)p * KC * NR);
        }
        return;
    }
    for (int k = 0; k < kc; k++) {
        const float *src = w + (size_t)(k0 + k) * ldw + j0;
        for (int p = 0; p < n_panels; p++) {
            int nr = nc - p * NR < NR ? nc - p * NR : NR;
            float *dst = packed + (size_t)p * KC * NR + (size_t)k * NR;
            if (nr == NR) {
                _mm512_store_ps(dst, _mm512_loadu_ps(src + p * NR));
                _mm512_store_ps(dst + 16, _mm512_loadu_ps(src + p * NR + 16));
            } else {
                __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
                __mmask16 m1 = (__mmask16)(nr > 16 ? (1u << (nr - 16)) - 1 : 0);
                _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src + p * NR));
                _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + p * NR + 16));
            }
        }
    }
}

/* y[n, m] (row stride ldy) = x[n, K] @ B[K, m] (+ bias[m]); B = w[K, m] (ld ldw) or, when
 * trans, w[m, K]^T (ld ldw). Each thread owns a slice of the output, packs its own panels
 * and copies its own A tiles: no barrier inside (on a busy 2-core machine every barrier can
 * cost a scheduler time slice). The slice is of columns; of rows where the columns would
 * give each thread one block of NC or less and there are rows enough (n >= 256): there every
 * thread re-read (and, rows colliding, copied) all of x for its one block, and two threads
 * ran at 83-88% of one thread's rate (GPT-2's 768-column products; by rows 95%, as fast as
 * two processes). Fewer rows: packing all of B twice costs more than x's traffic. */
static int split_by_rows(int n, int m, int n_threads) { return n_threads > 1 && n >= 256 && m <= NC * n_threads; }

/* Thread t of T's share [*lo, *hi) of count items, in whole units of u (the last one short). */
static void thread_share(int count, int u, int t, int T, int *lo, int *hi) {
    const long k = (count + u - 1) / u;
    *lo = (int)(k * t / T) * u;
    *hi = (int)(k * (t + 1) / T) * u;
    if (*hi > count) *hi = count;
}

static void gemm(const float *x, ptrdiff_t ldx, int n, int K, int m, const float *w, ptrdiff_t ldw,
                 int trans, const float *bias, float *y, ptrdiff_t ldy, int n_threads) {
    const int n_units = (m + NR - 1) / NR, n_tiles = (n + MR - 1) / MR;
    if (n_threads < 1) n_threads = 1;
    const int by_rows = split_by_rows(n, m, n_threads);
    const int max_threads = by_rows ? n_tiles : n_units;
    if (n_threads > max_threads) n_threads = max_threads;
    int failed = 0;
    /* x's rows share L1 sets (stride a multiple of 2 KB): its tiles are copied (copy_tile), once
     * per block of columns, so those products take blocks twice as wide (768 KB of panels, still
     * in L2): GPT-2's MLP down-projection +6-7% on two threads (in-process A/B, 6 pairs twice;
     * the 1024-token prompt +0.8%, 20 pairs), where the products whose x is read in place lost 2% */
    const int rows_collide = ((size_t)ldx * sizeof(float)) % 2048 == 0, ncb = rows_collide ? 2 * NC : NC;
#pragma omp parallel num_threads(n_threads) reduction(| : failed)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int lo = 0, hi = m, r_lo = 0, r_hi = n;
        if (by_rows)
            thread_share(n, MR, t, T, &r_lo, &r_hi);
        else
            thread_share(m, NR, t, T, &lo, &hi);
        float *packed = qkv__alloc_aligned(sizeof(float) * (size_t)KC * ncb);
        float *tile = qkv__alloc_aligned(sizeof(float) * (size_t)MR * LDA_P);
        if (!packed || !tile) {
            failed = 1;
        } else {
            for (int jc = lo; jc < hi; jc += ncb) {
                int nc = hi - jc < ncb ? hi - jc : ncb;
                int n_panels = (nc + NR - 1) / NR;
                for (int pc = 0; pc < K; pc += KC) {
                    int kc = K - pc < KC ? K - pc : KC;
                    pack_b(w, ldw, trans, pc, kc, jc, nc, packed);
                    for (int i0 = r_lo; i0 < r_hi; i0 += MR) {
                        int mr = r_hi - i0 < MR ? r_hi - i0 : MR;
                        const float *a = x + (size_t)i0 * ldx + pc;
                        const int cp = mr < MR || rows_collide; /* else read in place */
                        if (cp) copy_tile(tile, LDA_P, a, ldx, mr, kc);
                        const float *at = cp ? tile : a;
                        const ptrdiff_t ldt = cp ? LDA_P : ldx;
                        for (int p = 0; p < n_panels; p++) {
                            int j0 = jc + p * NR, nr = nc - p * NR < NR ? nc - p * NR : NR;
                            kernel_12x32(kc, at, ldt, packed + (size_t)p * KC * NR, y + (size_t)i0 * ldy + j0,
                                         ldy, mr, nr, pc == 0, bias ? bias + j0 : NULL);
                        }
                    }
                }
            }
        }
        qkv__free_aligned(packed);
        qkv__free_aligned(tile);
    }
    if (failed) { /* out of memory mid-forward: a plain loop, slow but right */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                float s = bias ? bias[j] : 0.0f;
                for (int k = 0; k < K; k++)
                    s += x[(size_t)i * ldx + k] * (trans ? w[(size_t)j * ldw + k] : w[(size_t)k * ldw + j]);
                y[(size_t)i * ldy + j] = s;
            }
    }
}

void qkv__gemm_nn_avx512(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                         const float *b, float *y, int n_threads) {
    gemm(x, ldx, n, in, out, w, out, 0, b, y, out, n_threads);
}

void qkv__gemm_nt_avx512(const float *x, ptrdiff_t ldx, int n, int c, int v, const float *e,
                         ptrdiff_t lde, float *y, ptrdiff_t ldy, int n_threads) {
    gemm(x, ldx, n, c, v, e, lde, 1, NULL, y, ldy, n_threads);
}

/* ---- GEMV ------------------------------------------------------------------------------ */

static inline __m512 load16_mask(const float *w, const uint16_t *wb, size_t at, __mmask16 m) {
    if (wb) {
        __m256i h = _mm256_maskz_loadu_epi16(m, wb + at);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, w + at);
}

static inline __m512 dp_bf16(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* x for the BF16 GEMVs: two BF16 parts, hi = bf16(x) and lo = bf16(x - hi), so hi + lo is x to
 * 2^-16 of |x| and vdpbf16ps's products of BF16 weights with each part are exact in FP32 (it
 * flushes denormals). Two dot products a weight and no conversions: the block GEMVs 5-17%
 * faster than widening each weight to F32 (fewer instructions a byte: more loads in flight),
 * BF16 generation +10% (medians of 5 interleaved runs). */
static inline void split_bf16(float v, uint16_t *hi, uint16_t *lo) {
    *hi = qkv__f32_to_bf16(v);
    *lo = qkv__f32_to_bf16(v - qkv__bf16_to_f32(*hi));
}

/* BF16 pairs: a 32-bit lane of 32 loaded BF16 values holds element 2i (low half) and 2i + 1
 * (high half); each half becomes a float with one shift or one AND (exact, no rounding). */
static inline __m512 bf16_lo(__m512i w) { return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)); }
static inline __m512 bf16_hi(__m512i w) {
    return _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* F32 columns [lo, hi) of y += x @ W, one 16-column vector at a time (the column-slice path). */
static void gemv_cols(const float *x, int in, int out, const float *w, float *y, int lo, int hi) {
    int k = 0;
    for (; k + 4 <= in; k += 4) {
        __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]),
               x2 = _mm512_set1_ps(x[k + 2]), x3 = _mm512_set1_ps(x[k + 3]);
        const float *r0 = w + (size_t)k * out, *r1 = r0 + out, *r2 = r1 + out, *r3 = r2 + out;
        for (int o = lo; o < hi; o += 16) {
            __mmask16 m = (__mmask16)(hi - o >= 16 ? 0xffff : (1u << (hi - o)) - 1);
            __m512 acc = _mm512_maskz_loadu_ps(m, y + o);
            acc = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r0 + o), acc);
            acc = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, r1 + o), acc);
            acc = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(m, r2 + o), acc);
            acc = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(m, r3 + o), acc);
            _mm512_mask_storeu_ps(y + o, m, acc);
        }
    }
    for (; k < in; k++) {
        __m512 x0 = _mm512_set1_ps(x[k]);
        const float *r0 = w + (size_t)k * out;
        for (int o = lo; o < hi; o += 16) {
            __mmask16 m = (__mmask16)(hi - o >= 16 ? 0xffff : (1u << (hi - o)) - 1);
            _mm512_mask_storeu_ps(y + o, m, _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r0 + o),
                                                            _mm512_maskz_loadu_ps(m, y + o)));
        }
    }
}

/* Chunks for the pool: about 8 per thread, so a thread that another process delays leaves
 * its share to the others (qkv__pool_for), and at most `cap` units each. */
static int pool_grain(int n_units, int n_threads, int cap) {
    int g = n_units / (8 * (n_threads > 0 ? n_threads : 1));
    return g < 1 ? 1 : g > cap ? cap : g;
}

typedef struct {
    const float *x, *w, *b;
    const uint16_t *wb;
    float *y;
    int in, out;
    const uint32_t *xp; /* BF16: x's pairs (element 2q low, 2q + 1 high), hi parts [kp] then lo */
    int pq;             /* BF16: panels a quarter of the matrix apart (panels4) */
} gemv_job;

/* Columns [32 u0, 32 u1) of y = x @ W + b (F32 by column slices). */
static void gemv_chunk(void *arg, int u0, int u1) {
    const gemv_job *j = arg;
    int lo = 32 * u0, hi = 32 * u1 < j->out ? 32 * u1 : j->out;
    for (int o = lo; o < hi; o++) j->y[o] = j->b ? j->b[o] : 0.0f;
    gemv_cols(j->x, j->in, j->out, j->w, j->y, lo, hi);
}

/* ---- BF16 GEMV on the packed copy (qkv__bf16p_pack): a panel of 32 columns is one contiguous
 * run of in / 2 pair rows, so every chunk of panels is one sequential stream and each output
 * is finished by the thread that owns its panel (no partial sums; the same bits at any thread
 * count). x enters as its two BF16 parts (split_bf16): the weights' rounding and x's to 2^-16
 * are the differences from the F32 path. */

/* y's columns 32 p .. 32 p + 31 from its sums s0, s1 (and the bias). */
static inline void panel_store(const gemv_job *j, int p, __m512 s0, __m512 s1) {
    const int o = 32 * p, n = j->out - o;
    const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1),
                    m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
    if (j->b) {
        s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m0, j->b + o));
        s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m1, j->b + o + 16));
    }
    _mm512_mask_storeu_ps(j->y + o, m0, s0);
    _mm512_mask_storeu_ps(j->y + o + 16, m1, s1);
}

/* One packed panel (32 columns), read front to back. */
static void panel1(const gemv_job *j, int p) {
    const int kp = (j->in + 1) / 2;
    const uint32_t *xh = j->xp, *xl = j->xp + kp;
    const __m512i *w = (const __m512i *)(j->wb + (size_t)p * kp * 64);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    int q = 0;
    for (; q + 2 <= kp; q += 2, w += 4) {
        const __m512i h0 = _mm512_set1_epi32((int)xh[q]), l0 = _mm512_set1_epi32((int)xl[q]),
                      h1 = _mm512_set1_epi32((int)xh[q + 1]), l1 = _mm512_set1_epi32((int)xl[q + 1]);
        const __m512i v0 = _mm512_load_si512(w), v1 = _mm512_load_si512(w + 1), v2 = _mm512_load_si512(w + 2),
                      v3 = _mm512_load_si512(w + 3);
        a0 = dp_bf16(a0, v0, h0);
        b0 = dp_bf16(b0, v0, l0);
        a1 = dp_bf16(a1, v1, h0);
        b1 = dp_bf16(b1, v1, l0);
        c0 = dp_bf16(c0, v2, h1);
        d0 = dp_bf16(d0, v2, l1);
        c1 = dp_bf16(c1, v3, h1);
        d1 = dp_bf16(d1, v3, l1);
    }
    if (q < kp) { /* a last pair row; its high half is zero when in is odd */
        const __m512i h0 = _mm512_set1_epi32((int)xh[q]), l0 = _mm512_set1_epi32((int)xl[q]);
        const __m512i v0 = _mm512_load_si512(w), v1 = _mm512_load_si512(w + 1);
        a0 = dp_bf16(a0, v0, h0);
        b0 = dp_bf16(b0, v0, l0);
        a1 = dp_bf16(a1, v1, h0);
        b1 = dp_bf16(b1, v1, l0);
    }
    panel_store(j, p, _mm512_add_ps(_mm512_add_ps(a0, b0), _mm512_add_ps(c0, d0)),
                _mm512_add_ps(_mm512_add_ps(a1, b1), _mm512_add_ps(c1, d1)));
}

/* Panels p, p + pq, p + 2 pq, p + 3 pq at once: four streams far apart (see rows4_dot). */
static void panels4(const gemv_job *j, int p) {
    const int kp = (j->in + 1) / 2;
    const uint32_t *xh = j->xp, *xl = j->xp + kp;
    const size_t ps = (size_t)j->pq * (size_t)kp * 2; /* __m512i's between the four panels */
    const __m512i *w = (const __m512i *)(j->wb + (size_t)p * kp * 64);
    __m512 a[4][2], b[4][2];
    for (int s = 0; s < 4; s++) a[s][0] = a[s][1] = b[s][0] = b[s][1] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++, w += 2) {
        const __m512i h = _mm512_set1_epi32((int)xh[q]), l = _mm512_set1_epi32((int)xl[q]);
        for (int s = 0; s < 4; s++) {
            const __m512i v0 = _mm512_load_si512(w + s * ps), v1 = _mm512_load_si512(w + s * ps + 1);
            a[s][0] = dp_bf16(a[s][0], v0, h);
            b[s][0] = dp_bf16(b[s][0], v0, l);
            a[s][1] = dp_bf16(a[s][1], v1, h);
            b[s][1] = dp_bf16(b[s][1], v1, l);
        }
    }
    for (int s = 0; s < 4; s++)
        panel_store(j, p + s * j->pq, _mm512_add_ps(a[s][0], b[s][0]), _mm512_add_ps(a[s][1], b[s][1]));
}

/* Units [u0, u1): unit u is panels u + s pq, s = 0..3, of those that exist. */
static void gemv_bf16p_chunk(void *arg, int u0, int u1) {
    const gemv_job *j = arg;
    const int n_panels = (j->out + 31) / 32, pq = j->pq;
    for (int u = u0; u < u1; u++) {
        if (u + 3 * pq < n_panels)
            panels4(j, u);
        else
            for (int p = u; p < n_panels; p += pq) panel1(j, p);
    }
}

/* ---- row-split F32 GEMV: each chunk streams whole rows of W[in, out] into its own partial
 * sum of y; the partials are added at the end. Column slices (above) read every row in pieces
 * of at most 2 KB with a stride of a whole row between them, which the hardware prefetchers
 * follow less well. A chunk's rows lie in four far-apart runs, one in each quarter of the
 * matrix (rows4_far): four streams a thread read faster than one on this Zen 5 (GPT-2's block
 * matrices, two threads, pure reads: ~76 against ~60 GB/s; generation +5-7% F32). */

/* F32 GEMV by rows into partials (gemv_rows.inc, shared with the AVX2 path): 16 lanes */
#define VW 16
typedef __m512 vf;
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTORE(p, x) _mm512_store_ps((p), (x))
#define VSTOREU(p, x) _mm512_storeu_ps((p), (x))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VADD(a, b) _mm512_add_ps((a), (b))
#include "gemv_rows.inc"

static _Atomic int gemv_cols_mode = -1; /* -1: not yet read from QKV_GEMV (atomic: server threads read it) */

void qkv__gemv_set_cols(int on) { gemv_cols_mode = on; }

static int gemv_by_columns(void) {
    if (gemv_cols_mode < 0) { /* QKV_GEMV=cols: the column-slice GEMV (the bench's before/after) */
        const char *e = getenv("QKV_GEMV");
        gemv_cols_mode = e && !strcmp(e, "cols");
    }
    return gemv_cols_mode;
}

/* y[out] = x[in] @ W[in, out] + b. BF16 (wb, packed): by panels, four far apart at once
 * (panels4). F32: row-split (above; four streams far apart into one partial; four far-apart
 * chunks with four partials read slower: 45-55 against 57-64 GB/s);
 * column slices when the partials' memory cannot be had (or QKV_GEMV=cols): 32-column units,
 * a chunk walks the rows four at a time, its slice of y staying in L1. */
void qkv__gemv_avx512(const float *x, int in, int out, const float *w, const uint16_t *wb,
                      const float *b, float *y, int n_threads) {
    int n_units = (out + 31) / 32;
    gemv_job j = {x, w, b, wb, y, in, out, NULL, 0};
    if (wb) {
        const int kp = (in + 1) / 2;
        uint32_t *xp = (uint32_t *)qkv__gemv_part(2 * (size_t)kp); /* this thread's buffer (no partials here) */
        if (!xp) { /* out of memory: a plain loop, slow but right */
            for (int o = 0; o < out; o++) {
                float s = b ? b[o] : 0.0f;
                for (int k = 0; k < in; k++) s += x[k] * qkv__bf16_to_f32(qkv__bf16p_at(wb, in, k, o));
                y[o] = s;
            }
            return;
        }
        for (int q = 0; q < kp; q++) {
            uint16_t eh, el, oh, ol;
            split_bf16(x[2 * q], &eh, &el);
            split_bf16(2 * q + 1 < in ? x[2 * q + 1] : 0.0f, &oh, &ol);
            xp[q] = (uint32_t)eh | (uint32_t)oh << 16;
            xp[kp + q] = (uint32_t)el | (uint32_t)ol << 16;
        }
        j.xp = xp;
        j.pq = (n_units + 3) / 4;
        qkv__pool_for(j.pq, pool_grain(j.pq, n_threads, 8), n_threads, gemv_bf16p_chunk, &j);
        return;
    }
    if (!gemv_by_columns() && gemv_rows(x, in, out, w, b, y, n_threads)) return;
    qkv__pool_for(n_units, pool_grain(n_units, n_threads, 16), n_threads, gemv_chunk, &j);
}

typedef struct {
    const float *x, *e;
    const uint16_t *eb;
    const uint16_t *xh, *xl; /* x's BF16 parts (split_bf16), the first c32 elements */
    float *y;
    int c, c32, v, q; /* q: rows a quarter of the matrix apart (rows4_dot) */
} gemv_t_job;

/* y[j] = E[j, :] x, one row. */
static float row_dot(const gemv_t_job *jb, int j) {
    const float *x = jb->x, *e = jb->e;
    const uint16_t *xh = jb->xh, *xl = jb->xl, *eb = jb->eb;
    const int c = jb->c, c32 = jb->c32;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    if (eb) {
        const uint16_t *row = eb + (size_t)j * c;
        for (; k + 64 <= c32; k += 64) {
            __m512i w0 = _mm512_loadu_si512(row + k), w1 = _mm512_loadu_si512(row + k + 32);
            a0 = dp_bf16(a0, w0, _mm512_load_si512(xh + k));
            a1 = dp_bf16(a1, w0, _mm512_load_si512(xl + k));
            a2 = dp_bf16(a2, w1, _mm512_load_si512(xh + k + 32));
            a3 = dp_bf16(a3, w1, _mm512_load_si512(xl + k + 32));
        }
        for (; k + 32 <= c32; k += 32) {
            __m512i w0 = _mm512_loadu_si512(row + k);
            a0 = dp_bf16(a0, w0, _mm512_load_si512(xh + k));
            a1 = dp_bf16(a1, w0, _mm512_load_si512(xl + k));
        }
    } else {
        const float *row = e + (size_t)j * c;
        for (; k + 64 <= c; k += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + k), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(row + k + 16), _mm512_loadu_ps(x + k + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(row + k + 32), _mm512_loadu_ps(x + k + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(row + k + 48), _mm512_loadu_ps(x + k + 48), a3);
        }
    }
    for (; k < c; k += 16) {
        __mmask16 m = (__mmask16)(c - k >= 16 ? 0xffff : (1u << (c - k)) - 1);
        a0 = _mm512_fmadd_ps(load16_mask(e, eb, (size_t)j * c + k, m), _mm512_maskz_loadu_ps(m, x + k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Rows j, j + q, j + 2q, j + 3q at once: four streams far apart. One sequential stream a
 * thread read ~60 GB/s here on two threads, four streams a quarter of the matrix apart
 * ~77 (the read loop's pattern); rows next to each other did not help (~48). Each row's sum
 * runs in the order row_dot's does not: the two are not bit-identical, each within rounding. */
#define HEAD_PF 2048 /* bytes ahead, software prefetch in rows4_dot: F32 rows */
#define HEAD_PF_BF16 1024 /* BF16 rows */

static void rows4_dot(const gemv_t_job *jb, int j) {
    const int q = jb->q;
    const float *x = jb->x, *e = jb->e;
    const uint16_t *xh = jb->xh, *xl = jb->xl, *eb = jb->eb;
    const int c = jb->c, c32 = jb->c32;
    __m512 a[4], b[4];
    for (int s = 0; s < 4; s++) a[s] = b[s] = _mm512_setzero_ps();
    int k = 0;
    if (eb) {
        const uint16_t *r0 = eb + (size_t)j * c, *r1 = r0 + (size_t)q * c, *r2 = r1 + (size_t)q * c,
                       *r3 = r2 + (size_t)q * c;
        for (; k + 32 <= c32; k += 32) {
            /* 1 KB ahead on each row: +1-5% BF16 generation (four sets of 15 A/B pairs) */
            prefetch4(r0 + k, r1 + k, r2 + k, r3 + k, HEAD_PF_BF16);
            __m512i h = _mm512_load_si512(xh + k), l = _mm512_load_si512(xl + k);
            __m512i w0 = _mm512_loadu_si512(r0 + k), w1 = _mm512_loadu_si512(r1 + k),
                    w2 = _mm512_loadu_si512(r2 + k), w3 = _mm512_loadu_si512(r3 + k);
            a[0] = dp_bf16(a[0], w0, h), b[0] = dp_bf16(b[0], w0, l);
            a[1] = dp_bf16(a[1], w1, h), b[1] = dp_bf16(b[1], w1, l);
            a[2] = dp_bf16(a[2], w2, h), b[2] = dp_bf16(b[2], w2, l);
            a[3] = dp_bf16(a[3], w3, h), b[3] = dp_bf16(b[3], w3, l);
        }
    } else {
        const float *r0 = e + (size_t)j * c, *r1 = r0 + (size_t)q * c, *r2 = r1 + (size_t)q * c,
                    *r3 = r2 + (size_t)q * c;
        for (; k + 32 <= c; k += 32) {
            /* 2 KB ahead on each row: +3-4% generation (15 A/B pairs, twice; 1 KB +2%) */
            prefetch4(r0 + k, r1 + k, r2 + k, r3 + k, HEAD_PF); /* 128 bytes a row a step */
            prefetch4(r0 + k, r1 + k, r2 + k, r3 + k, HEAD_PF + 64);
            __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
            a[0] = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + k), x0, a[0]);
            a[1] = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + k), x0, a[1]);
            a[2] = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + k), x0, a[2]);
            a[3] = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + k), x0, a[3]);
            b[0] = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + k + 16), x1, b[0]);
            b[1] = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + k + 16), x1, b[1]);
            b[2] = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + k + 16), x1, b[2]);
            b[3] = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + k + 16), x1, b[3]);
        }
    }
    for (; k < c; k += 16) {
        __mmask16 m = (__mmask16)(c - k >= 16 ? 0xffff : (1u << (c - k)) - 1);
        __m512 xx = _mm512_maskz_loadu_ps(m, x + k);
        for (int s = 0; s < 4; s++)
            a[s] = _mm512_fmadd_ps(load16_mask(e, eb, (size_t)(j + s * q) * c + k, m), xx, a[s]);
    }
    for (int s = 0; s < 4; s++) jb->y[j + s * q] = _mm512_reduce_add_ps(_mm512_add_ps(a[s], b[s]));
}

/* Units [u0, u1): unit u is rows u + s q, s = 0..3, of those that exist (q = ceil(v / 4)). */
static void gemv_t_chunk(void *arg, int u0, int u1) {
    const gemv_t_job *jb = arg;
    const int q = jb->q, v = jb->v;
    for (int u = u0; u < u1; u++) {
        if (u + 3 * q < v)
            rows4_dot(jb, u);
        else
            for (int j = u; j < v; j += q) jb->y[j] = row_dot(jb, j);
    }
}

/* ---- BF16 GEMM (prompt processing with BF16 weights) ------------------------------------ *
 * y[n, m] = x[n, K] @ Wb[K, m] + bias, Wb the model's BF16 copy, x rounded to BF16 once per
 * call, vdpbf16ps (two products a lane, summed in FP32: twice the FP32 FMA rate). Operands
 * are 32-bit pairs (element k in the low half, k + 1 in the high half): a row of x in BF16 is
 * already that, in memory order; B is the model's packed copy (qkv__bf16p_pack: 32-column
 * panels of pair rows), read in place. Threads take contiguous ranges of panels. */

#define KCB 256 /* k per block: 128 pairs, a panel 16 KB */
#define LDA_PB (KCB / 2 + 16) /* the A tile's copy, in pairs (see copy_tile) */


/* x[n, K] (row stride ldx) to BF16 rows of Kp = K rounded up to even (zero-padded). */
typedef struct {
    const float *x;
    ptrdiff_t ldx;
    int K, Kp;
    uint16_t *xb;
} to_bf16_job;

static void rows_to_bf16(void *arg, int r0, int r1) {
    const to_bf16_job *j = arg;
    for (int r = r0; r < r1; r++) {
        const float *s = j->x + (size_t)r * j->ldx;
        uint16_t *d = j->xb + (size_t)r * j->Kp;
        int k = 0;
        for (; k + 32 <= j->K; k += 32)
            _mm512_storeu_si512(d + k, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + k + 16), _mm512_loadu_ps(s + k)));
        for (; k < j->Kp; k++) d[k] = k < j->K ? qkv__f32_to_bf16(s[k]) : 0;
    }
}

/* C[mr x nr] (+)= A[MR x 2 kp] @ Bp: A as pair dwords with stride lda (MR rows readable). */
static void kernel_bf16_12x32(int kp, const uint32_t *a, ptrdiff_t lda, const uint32_t *bp, float *c,
                              ptrdiff_t ldc, int mr, int nr, int first, const float *bias) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, mr);
    for (int q = 0; q < kp; q++) {
        __m512i b0 = _mm512_load_si512(bp + q * NR), b1 = _mm512_load_si512(bp + q * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512i av = _mm512_set1_epi32((int)a[r * lda + q]);
            acc[r][0] = dp_bf16(acc[r][0], av, b0);
            acc[r][1] = dp_bf16(acc[r][1], av, b1);
        }
    }
    store_tile(acc, c, ldc, mr, nr, first, bias);
}

typedef struct {
    const uint16_t *xb, *wb;
    const float *bias;
    float *y;
    int n, K, Kp, m;
    ptrdiff_t ldy;
    _Atomic int failed;
} gemm_bf16_job;

/* Panels [p0, p1) of rows [r0, r1) (r0 a multiple of MR). */
static void gemm_bf16_chunk(gemm_bf16_job *j, int p0, int p1, int r0, int r1) {
    uint32_t *tile = qkv__alloc_aligned(sizeof(uint32_t) * (size_t)MR * LDA_PB);
    if (!tile) {
        atomic_store(&j->failed, 1);
        return;
    }
    const uint32_t *xa = (const uint32_t *)j->xb, *wp = (const uint32_t *)j->wb;
    const int lda = j->Kp / 2;
    for (int pc = 0; pc < j->K; pc += KCB) {
        int kc = j->K - pc < KCB ? j->K - pc : KCB, kp = (kc + 1) / 2;
        for (int i0 = r0; i0 < r1; i0 += MR) {
            int mr = r1 - i0 < MR ? r1 - i0 : MR;
            /* every tile copied (half the F32 copy's bytes; copies and C prefetch together: BF16
             * prompt +5% at 1024 tokens, the same at 128, medians of 4-6 interleaved runs) */
            copy_tile(tile, LDA_PB, xa + (size_t)i0 * lda + pc / 2, lda, mr, kp);
            for (int p = p0; p < p1; p++) { /* the packed panel's pair rows pc / 2 .. */
                int j0 = p * NR, nr = j->m - j0 < NR ? j->m - j0 : NR;
                kernel_bf16_12x32(kp, tile, LDA_PB, wp + ((size_t)p * lda + (size_t)pc / 2) * NR, j->y + (size_t)i0 * j->ldy + j0,
                                  j->ldy, mr, nr, pc == 0, j->bias ? j->bias + j0 : NULL);
            }
        }
    }
    qkv__free_aligned(tile);
}

qkv_status qkv__gemm_bf16_avx512(const float *x, ptrdiff_t ldx, int n, int in, int out, const uint16_t *wb,
                                 const float *b, float *y, int n_threads) {
    int Kp = (in + 1) & ~1, n_units = (out + NR - 1) / NR, n_tiles = (n + MR - 1) / MR;
    uint16_t *xb = qkv__alloc_whole(sizeof(uint16_t) * (size_t)n * (size_t)Kp);
    if (!xb) return QKV_ENOMEM;
    to_bf16_job tj = {x, ldx, in, Kp, xb};
    gemm_bf16_job j = {xb, wb, b, y, n, in, Kp, out, out, 0};
    /* each thread a contiguous range of panels, or of rows where the panels are few (as gemm()
     * above: every thread copied all of x's tiles) */
    const int by_rows = split_by_rows(n, out, n_threads);
    int nt = by_rows ? (n_threads < n_tiles ? n_threads : n_tiles) : (n_threads < n_units ? n_threads : n_units);
    /* OpenMP, as the rest of a prompt's pass: the pool's workers spinning beside an OpenMP team
     * would take its cores. */
#pragma omp parallel num_threads(nt > 0 ? nt : 1)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
#pragma omp for schedule(static)
        for (int r = 0; r < n; r++) rows_to_bf16(&tj, r, r + 1);
        int lo = 0, hi = n_units, r0 = 0, r1 = n;
        if (by_rows)
            thread_share(n, MR, t, T, &r0, &r1);
        else
            thread_share(n_units, 1, t, T, &lo, &hi);
        if (lo < hi && r0 < r1) gemm_bf16_chunk(&j, lo, hi, r0, r1);
    }
    qkv__free_aligned(xb);
    return atomic_load(&j.failed) ? QKV_ENOMEM : QKV_OK;
}

/* y[v] = E[v, c] x: four rows a quarter of the matrix apart at a time (rows4_dot); chunks of
 * them go to the pool. BF16 rows: vdpbf16ps on x's two BF16 parts (split_bf16). */
void qkv__gemv_t_avx512(const float *x, int c, int v, const float *e, const uint16_t *eb,
                        float *y, int n_threads) {
    int c32 = eb ? c / 32 * 32 : 0;
    uint16_t *xh = NULL, *xl = NULL;
    if (c32) { /* else (no memory) every element takes the tail loop */
        xh = qkv__alloc_aligned(2 * sizeof(uint16_t) * (size_t)c32);
        if (!xh) c32 = 0;
        else {
            xl = xh + c32; /* c32 a multiple of 32: 64-byte aligned */
            for (int i = 0; i < c32; i++) split_bf16(x[i], &xh[i], &xl[i]);
        }
    }
    const int q = (v + 3) / 4;
    gemv_t_job job = {x, e, eb, xh, xl, y, c, c32, v, q};
    qkv__pool_for(q, pool_grain(q, n_threads, 256), n_threads, gemv_t_chunk, &job);
    qkv__free_aligned(xh);
}

/* ---- Q8_0 GEMV (AVX-512 VNNI) ---------------------------------------------------------------- */

/* x to int8 per 32-block, the same bytes and scales as qkv__q8_quantize_x (matmul.c):
 * d = amax / 127 and q = x * (1 / d) rounded to nearest even (vcvtps2dq under the default
 * MXCSR, as the scalar code's 1.5 * 2^23 trick). */
void qkv__q8_quantize_x_avx512(const float *x, int in, int8_t *q, float *d) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)), big = _mm512_set1_ps(FLT_MAX);
    for (int b = 0; b < in / 32; b++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        __m512 a0 = _mm512_and_ps(v0, absmask), a1 = _mm512_and_ps(v1, absmask);
        if (_mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ)) {
            d[b] = NAN; /* NaN or Inf in the block: poison the outputs, as F32 would */
            _mm256_storeu_si256((__m256i *)(q + 32 * b), _mm256_setzero_si256());
            continue;
        }
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        __m512 vid = _mm512_set1_ps(id);
        __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)));
        __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)(q + 32 * b), q0);
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), q1);
    }
}

/* Blocks (2p, 2p + 1) of one weight row against x: lanes 0-7 hold block 2p's partial int32
 * dot products, 8-15 block 2p+1's (vpdpbusd wants unsigned x signed: |x| times w with x's
 * sign moved onto w, as llama.cpp does; |q| <= 127 so nothing overflows), scaled lane by
 * lane by d_w d_x (xs holds d_x) and added to acc. The two half scales come from one 64-byte
 * load of the pair (d at byte 0 and byte 34), spread by vpermw and widened by vcvtph2ps. */
static inline __m512 q8_pair(const qkv__q8 *blk, __m512i xa, __mmask64 xneg, __m512 xs, __m512 acc) {
    const __m512i didx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* unused */
                                          17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512i head = _mm512_loadu_si512(blk); /* d0, qs0, d1, 28 bytes of qs1: inside the pair */
    __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)blk[0].qs)),
                                   _mm256_loadu_si256((const __m256i *)blk[1].qs), 1);
    w = _mm512_mask_sub_epi8(w, xneg, _mm512_setzero_si512(), w);
    __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xa, w);
    __m512 ws = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(didx, head)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws, xs), acc);
}

/* The last block of a row with an odd count: lanes 8-15 get zeros (x is zero-padded). */
static inline __m512 q8_last(const qkv__q8 *blk, __m512i xa, __mmask64 xneg, __m512 xs, __m512 acc) {
    __m512i w = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)blk[0].qs));
    w = _mm512_mask_sub_epi8(w, xneg, _mm512_setzero_si512(), w);
    __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xa, w);
    __m512 ws = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(_cvtsh_ss(blk[0].d)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws, xs), acc);
}

/* Rows per step and the prefetch distance, measured on the Zen 5 (one thread, the GPT-2 head,
 * 41 MB streamed from memory; a plain read of the same bytes: 43 GB/s): 1 row 37-42 GB/s,
 * 2 rows 23-26, 4 rows 23-25 (15 without the prefetch), 8 rows 19-25. Several rows share
 * x's loads and win while the weights sit in L3 (4 rows 52-59 GB/s, 1 row 43), but
 * generation streams every matrix from memory (GPT-2 small: 132 MB a token). */
#ifndef Q8_R
#define Q8_R 1
#endif
#define Q8_RMAX 8
#ifndef Q8_PF
#define Q8_PF 8192 /* bytes ahead */
#endif

/* x's side of every block pair, built once per call: |q| (64 bytes), the mask of negative q,
 * and the 16 lanes of scales (d_x of block 2p in lanes 0-7, of 2p + 1 in 8-15). */
typedef struct {
    const __m512i *abs;
    const __mmask64 *neg;
    const __m512 *scale;
} q8_xside;

/* R rows starting at row o. */
static inline __attribute__((always_inline)) void q8_rows(const q8_xside *xs, int nb, int R, const qkv__q8 *w,
                                                          int o, const float *b, float *y) {
    __m512 acc[Q8_RMAX];
    const qkv__q8 *row[Q8_RMAX];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int r = 0; r < R; r++) row[r] = w + (size_t)(o + r) * nb;
    int k = 0;
    for (; k + 2 <= nb; k += 2) {
        __m512i xa = xs->abs[k / 2];
        __mmask64 xneg = xs->neg[k / 2];
        __m512 xd = xs->scale[k / 2];
        for (int r = 0; r < R; r++) {
            /* software prefetch Q8_PF bytes ahead: the hardware's alone keeps too few lines
             * in flight for a stream read between this much arithmetic */
            _mm_prefetch((const char *)(row[r] + k) + Q8_PF, _MM_HINT_T0);
            acc[r] = q8_pair(row[r] + k, xa, xneg, xd, acc[r]);
        }
    }
    if (k < nb) /* odd count: x's side is zero past the last block */
        for (int r = 0; r < R; r++) acc[r] = q8_last(row[r] + k, xs->abs[k / 2], xs->neg[k / 2], xs->scale[k / 2], acc[r]);
    for (int r = 0; r < R; r++) y[o + r] = _mm512_reduce_add_ps(acc[r]) + (b ? b[o + r] : 0.0f);
}

typedef struct {
    q8_xside side;
    const qkv__q8 *w;
    const float *b;
    float *y;
    int nb, out;
} q8_job;

/* Units [u0, u1) of Q8_R rows. */
static void q8_chunk(void *arg, int u0, int u1) {
    const q8_job *j = arg;
    int o = u0 * Q8_R, hi = u1 * Q8_R < j->out ? u1 * Q8_R : j->out;
    for (; o + Q8_R <= hi; o += Q8_R) q8_rows(&j->side, j->nb, Q8_R, j->w, o, j->b, j->y);
    for (; o < hi; o++) q8_rows(&j->side, j->nb, 1, j->w, o, j->b, j->y);
}

/* y[out] = W x + b with W [out, in] in Q8_0 rows and x already quantised (xq padded with
 * zeros to 64 bytes, xd to an even count). The pool takes chunks of units of Q8_R rows, each
 * walking Q8_R rows at once. */
void qkv__gemv_q8_avx512(const int8_t *xq, const float *xd, int in, int out, const qkv__q8 *w,
                         const float *b, float *y, int n_threads) {
    int nb = in / 32, np = (nb + 1) / 2, n_units = (out + Q8_R - 1) / Q8_R;
    char *buf = qkv__alloc_aligned((size_t)np * (64 + 64 + 8));
    if (!buf) { /* out of memory: NaN rather than wrong numbers */
        for (int o = 0; o < out; o++) y[o] = NAN;
        return;
    }
    __m512i *xa = (__m512i *)buf;
    __m512 *xs = (__m512 *)(buf + (size_t)np * 64);
    __mmask64 *xm = (__mmask64 *)(buf + (size_t)np * 128);
    const __m512i lohi = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int p = 0; p < np; p++) {
        __m512i xv = _mm512_load_si512(xq + 64 * p);
        xa[p] = _mm512_abs_epi8(xv);
        xm[p] = _mm512_movepi8_mask(xv);
        xs[p] = _mm512_permutexvar_ps(lohi, _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xd + 2 * p)))));
    }
    q8_job job = {{xa, xm, xs}, w, b, y, nb, out};
    qkv__pool_for(n_units, pool_grain(n_units, n_threads, 256), n_threads, q8_chunk, &job);
    qkv__free_aligned(buf);
}

/* ---- machine bounds for the benchmark ------------------------------------------------------- */

/* Sustained FMA throughput: each thread runs 16 independent accumulator chains (enough to
 * cover the FMA latency on two ports) for about `seconds`. Returns GFLOP/s over all threads. */
static double fma_run(double seconds, int n_threads) {
    double flops = 0.0, t0 = qkv__now(), t1 = t0;
#pragma omp parallel num_threads(n_threads) reduction(+ : flops)
    {
        __m512 acc[16];
        for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
        const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
        long iters = 0;
        double start = qkv__now();
        while (qkv__now() - start < seconds) {
            for (int r = 0; r < 1000; r++) {
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
            }
            iters += 1000;
        }
        __m512 s = acc[0];
        for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, acc[i]);
        volatile float sink = _mm512_reduce_add_ps(s);
        (void)sink;
        flops += (double)iters * 16 * 16 * 2;
    }
    t1 = qkv__now();
    return flops / (t1 - t0) * 1e-9;
}

/* The best of several short runs: other processes on a shared machine only ever lower it. */
double qkv__fma_peak_avx512(double seconds, int n_threads) {
    double best = 0.0;
    for (int i = 0; i < 10; i++) {
        double g = fma_run(seconds / 10, n_threads);
        if (g > best) best = g;
    }
    return best;
}

/* Read bandwidth: threads sum disjoint parts of buf (n floats) `reps` times, each thread its part
 * as four streams (one stream per thread leaves some of the bandwidth unused: the GEMVs read
 * several rows at a time); GB/s, the best pass. */
double qkv__read_bw_avx512(const float *buf, size_t n, int reps, int n_threads) {
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = qkv__now();
        float total = 0.0f;
        double bytes = 0.0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total, bytes)
        {
            int t = 0, T = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            T = omp_get_num_threads();
#endif
            size_t lo = n / 256 * (size_t)t / (size_t)T * 256, hi = n / 256 * (size_t)(t + 1) / (size_t)T * 256;
            size_t len = (hi - lo) / 4 / 64 * 64; /* each of the 4 streams */
            const float *p0 = buf + lo, *p1 = p0 + len, *p2 = p1 + len, *p3 = p2 + len;
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t i = 0; i < len; i += 64) {
                s0 = _mm512_add_ps(s0, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(p0 + i), _mm512_load_ps(p0 + i + 16)),
                                                     _mm512_add_ps(_mm512_load_ps(p0 + i + 32), _mm512_load_ps(p0 + i + 48))));
                s1 = _mm512_add_ps(s1, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(p1 + i), _mm512_load_ps(p1 + i + 16)),
                                                     _mm512_add_ps(_mm512_load_ps(p1 + i + 32), _mm512_load_ps(p1 + i + 48))));
                s2 = _mm512_add_ps(s2, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(p2 + i), _mm512_load_ps(p2 + i + 16)),
                                                     _mm512_add_ps(_mm512_load_ps(p2 + i + 32), _mm512_load_ps(p2 + i + 48))));
                s3 = _mm512_add_ps(s3, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(p3 + i), _mm512_load_ps(p3 + i + 16)),
                                                     _mm512_add_ps(_mm512_load_ps(p3 + i + 32), _mm512_load_ps(p3 + i + 48))));
            }
            total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
            bytes += 4.0 * 4.0 * (double)len;
        }
        double dt = qkv__now() - t0;
        volatile float sink = total;
        (void)sink;
        double gbs = bytes / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* ---- LayerNorm / RMSNorm of one row (qkv__norm_forward's fast path) ----------------------- *
 * Sums in 16 lanes (two accumulators), then across: the scalar loop's one serial chain of
 * C adds was 2.7% of a 1024-token prompt. *mean (LayerNorm) and *rstd as the scalar code. */
void qkv__norm_row_avx512(float *o, const float *x, const float *w, const float *b, int C, float eps,
                          int rms, float *mean, float *rstd) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int c = 0;
    if (rms) {
        for (; c + 32 <= C; c += 32) {
            __m512 a = _mm512_loadu_ps(x + c), a2 = _mm512_loadu_ps(x + c + 16);
            s0 = _mm512_fmadd_ps(a, a, s0);
            s1 = _mm512_fmadd_ps(a2, a2, s1);
        }
        for (; c < C; c += 16) {
            __mmask16 m = (__mmask16)(C - c >= 16 ? 0xffff : (1u << (C - c)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m, x + c);
            s0 = _mm512_fmadd_ps(a, a, s0);
        }
        float sc = 1.0f / sqrtf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)C + eps);
        const __m512 vs = _mm512_set1_ps(sc);
        for (c = 0; c < C; c += 16) {
            __mmask16 m = (__mmask16)(C - c >= 16 ? 0xffff : (1u << (C - c)) - 1);
            _mm512_mask_storeu_ps(o + c, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), vs),
                                                          _mm512_maskz_loadu_ps(m, w + c)));
        }
        if (rstd) *rstd = sc;
        return;
    }
    for (; c + 32 <= C; c += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + c));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + c + 16));
    }
    for (; c < C; c += 16) {
        __mmask16 m = (__mmask16)(C - c >= 16 ? 0xffff : (1u << (C - c)) - 1);
        s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m, x + c));
    }
    const float mu = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)C;
    const __m512 vm = _mm512_set1_ps(mu);
    s0 = s1 = _mm512_setzero_ps();
    for (c = 0; c + 32 <= C; c += 32) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + c), vm), d2 = _mm512_sub_ps(_mm512_loadu_ps(x + c + 16), vm);
        s0 = _mm512_fmadd_ps(d, d, s0);
        s1 = _mm512_fmadd_ps(d2, d2, s1);
    }
    for (; c < C; c += 16) { /* masked lanes: 0 - mu would count, so mask the difference */
        __mmask16 m = (__mmask16)(C - c >= 16 ? 0xffff : (1u << (C - c)) - 1);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + c), vm);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    const float sc = 1.0f / sqrtf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)C + eps);
    const __m512 vs = _mm512_set1_ps(sc);
    for (c = 0; c < C; c += 16) {
        __mmask16 m = (__mmask16)(C - c >= 16 ? 0xffff : (1u << (C - c)) - 1);
        __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + c), vm), vs);
        __m512 y = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + c));
        if (b) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, b + c));
        _mm512_mask_storeu_ps(o + c, m, y);
    }
    if (mean) *mean = mu;
    if (rstd) *rstd = sc;
}

/* ---- GELU (tanh form), 16 lanes: the same exp polynomial as gpt2_forward.c ---------------- */

void qkv__gelu_tanh_avx512(float *y, const float *x, size_t n) {
    const __m512 lo = _mm512_set1_ps(-87.0f), hi = _mm512_set1_ps(88.0f);
    const __m512 shifter = _mm512_set1_ps(12582912.0f), log2e = _mm512_set1_ps(1.44269504f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f), two = _mm512_set1_ps(2.0f);
    const __m512 c1 = _mm512_set1_ps(0.7978845608f), c3 = _mm512_set1_ps(0.044715f);
    const __m512 p6 = _mm512_set1_ps(1.38925005e-3f), p5 = _mm512_set1_ps(8.33336286e-3f),
                 p4 = _mm512_set1_ps(4.16666418e-2f), p3 = _mm512_set1_ps(0.166666672f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 u = _mm512_mul_ps(c1, _mm512_fmadd_ps(_mm512_mul_ps(c3, v), _mm512_mul_ps(v, v), v));
        /* e = exp(2u): 2u clamped, k = round(2u / ln 2), r = 2u - k ln 2, e = 2^k p(r) */
        __m512 z = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(two, u), lo), hi);
        __m512 t = _mm512_fmadd_ps(z, log2e, shifter);
        __m512 k = _mm512_sub_ps(t, shifter);
        __m512 r = _mm512_fnmadd_ps(k, ln2_lo, _mm512_fnmadd_ps(k, ln2_hi, z));
        __m512 p = _mm512_fmadd_ps(r, p6, p5);
        p = _mm512_fmadd_ps(r, p, p4);
        p = _mm512_fmadd_ps(r, p, p3);
        p = _mm512_fmadd_ps(r, p, half);
        p = _mm512_fmadd_ps(r, p, one);
        p = _mm512_fmadd_ps(r, p, one);
        __m512i bits = _mm512_slli_epi32(
            _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)),
                             _mm512_set1_epi32(127)), 23);
        __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
        __m512 th = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(e, one)));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, th)));
    }
}
