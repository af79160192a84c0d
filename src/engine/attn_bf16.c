/*
 * attn_bf16.c -- the optional BF16 attention forward, qkv_attention_forward_bf16: Q.K^T and
 * P.V as AVX512_BF16 dot products (vdpbf16ps) on bf16-rounded operands with float32
 * accumulation, the online softmax in float32. This file owns that entry point (validation,
 * the CPU check), the bf16 packing of Q, K, V and P, its two micro-kernels and its
 * threading. The float32 engine (attn.c, attn_kernels.inc) stays the default and never
 * calls into this file.
 *
 * Built for baseline x86-64 like every file not named *_avx512.c: everything that uses
 * AVX-512 sits inside one target region (#pragma GCC target; clang: #pragma clang attribute)
 * and runs only after qkv__attn_bf16_usable (cpu.c) has seen AVX512_BF16; the entry point
 * is outside it.
 *
 * The same flash-style forward as attn_kernels.inc (queries along the 16 lanes, S^T [keys]
 * [queries], query blocks of 48 rows, key blocks of 128), with every product in bf16 pairs:
 *
 *   Qt  [dp/2][48]    u32: (q[i][2c], q[i][2c+1]) as two bf16, lane i = query
 *   Kp  [Nk'][dp/2]   u32: (k[j][2c], k[j][2c+1])       pairs along d, for Q.K^T
 *   Vp  [Nk'/2][dp]   u32: (v[2j][c], v[2j+1][c])       pairs along keys, for P.V
 *   Pp  [128/2][48]   u32: (p[2j][i], p[2j+1][i])       pairs along keys
 *
 *   S^T[j][:] += vdpbf16ps(Qt[c][:], broadcast Kp[j][c])       (d/2 steps: half the FMAs)
 *   P^T = exp2(S^T * scale' - m)  in float32, then vcvtne2ps2bf16 + vpermw into Pp
 *   O^T[c][:] += vdpbf16ps(Pp[j][:], broadcast Vp[j][c])       (Nk/2 steps)
 *
 * q is rounded to bf16 as given (not pre-multiplied by the scale, which is applied to the
 * float32 logits), so the result is attention on bf16(q), bf16(k), bf16(v) with the scale,
 * mask, max, exp and sums in float32; the row sum l is of the float32 probabilities, and
 * only the P of P.V is rounded. The hardware conversion rounds to nearest even like
 * qkv__f32_to_bf16 (qkv_internal.h) but flushes subnormals to 0. K and V are packed once
 * per (batch, kv head), into half the memory of the float32 path's packs; threads split the
 * work as that path does. Non-finite inputs follow the float32 path's policy (masks select
 * -inf over any logit; a value block holding NaN or inf is summed pair by pair where lanes
 * are masked).
 */
#include "engine.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 10)
#define QKV__HAVE_BF16_KERNELS 1
#endif

#ifdef QKV__HAVE_BF16_KERNELS

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#endif

#include "transpose_avx512.h"
#include "vexp2_avx512.h"

#define VW 16
#define NV 3            /* query vectors per block */
#define BR (NV * VW)    /* query rows per block */
#define BC 128          /* keys per block */
#define NR1 8           /* key rows per S^T tile */
#define NR2 8           /* head-dim rows per O^T tile */
#define LOG2E_F 1.44269504088896341f
#define LN2_D 0.69314718055994531
#define AINLINE static inline __attribute__((always_inline))
#define R16(n) ((((size_t)(n)) + 15) & ~(size_t)15)

typedef uint32_t u32;

#define BH(x) ((__m512bh)(x)) /* the same 512 bits, seen as 32 bf16 */

/* vpermw indices interleaving [a0..a15 | b0..b15] into (a0, b0), (a1, b1), ... */
static inline __m512i pair_index(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                            21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

/* 16 floats from lanes [c, c + 16) of a row of d (zeros past d) */
static inline __m512 load_row16(const float *row, int c, int d) {
    int left = d - c;
    if (left >= 16) return _mm512_loadu_ps(row + c);
    if (left <= 0) return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps((__mmask16)((1u << left) - 1u), row + c);
}

/* nonzero if a bf16 in the 32 lanes of x is NaN or +-inf (exponent bits all ones) */
static inline int bf16_nonfinite(__m512i x) {
    const __m512i e = _mm512_set1_epi16(0x7f80);
    return _mm512_cmpeq_epi16_mask(_mm512_and_si512(x, e), e) != 0;
}

/* ---- packing ----------------------------------------------------------------------------- */

/* One row of d floats into dp/2 bf16 pairs (zeros past d). */
static void row_to_pairs(const float *row, int d, int dp, u32 *restrict dst) {
    int c = 0;
    for (; c + 32 <= dp; c += 32) {
        __m512i w = (__m512i)_mm512_cvtne2ps_pbh(load_row16(row, c + 16, d), load_row16(row, c, d));
        _mm512_storeu_si512(dst + c / 2, w);
    }
    if (c < dp) /* dp is a multiple of 16: one half vector left */
        _mm256_storeu_si256((__m256i *)(dst + c / 2), (__m256i)_mm512_cvtneps_pbh(load_row16(row, c, d)));
}

/* Keys [j0, j0 + BC) of one head: K rows into Kp (pairs along d), V row pairs into Vp (pairs
 * along keys). Rows from n_valid on are zeros. Returns nonzero if a packed value is NaN or
 * inf (after rounding: a float beyond bf16's range becomes inf here). */
static int pack_kv_block(const float *kh, ptrdiff_t k_n, const float *vh, ptrdiff_t v_n, int j0,
                         int n_valid, int d, int dp, u32 *restrict Kp, u32 *restrict Vp) {
    const int dh = dp / 2;
    for (int j = 0; j < BC; j++) {
        u32 *o = Kp + (size_t)j * dh;
        if (j0 + j < n_valid) row_to_pairs(kh + (ptrdiff_t)(j0 + j) * k_n, d, dp, o);
        else memset(o, 0, sizeof(u32) * (size_t)dh);
    }
    const __m512i idx = pair_index();
    int bad = 0;
    for (int j = 0; j < BC; j += 2) {
        u32 *o = Vp + (size_t)(j / 2) * dp;
        const float *r0 = j0 + j < n_valid ? vh + (ptrdiff_t)(j0 + j) * v_n : NULL;
        const float *r1 = j0 + j + 1 < n_valid ? vh + (ptrdiff_t)(j0 + j + 1) * v_n : NULL;
        for (int c = 0; c < dp; c += 16) {
            __m512 a = r0 ? load_row16(r0, c, d) : _mm512_setzero_ps();
            __m512 b = r1 ? load_row16(r1, c, d) : _mm512_setzero_ps();
            __m512i w = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a));
            bad |= bf16_nonfinite(w);
            _mm512_store_si512(o + c, w);
        }
    }
    return bad;
}

/* Query rows [i0, i0 + rows) of one head into Qt [dp/2][BR] (padding rows zeros). */
static void pack_q(const float *qh, ptrdiff_t q_n, int i0, int rows, int d, int dp, u32 *restrict Qt) {
    const int dh = dp / 2;
    u32 tmp[128] __attribute__((aligned(64)));
    memset(Qt, 0, sizeof(u32) * (size_t)dh * BR);
    for (int i = 0; i < rows; i++) {
        row_to_pairs(qh + (ptrdiff_t)(i0 + i) * q_n, d, dp, tmp);
        for (int c = 0; c < dh; c++) Qt[(size_t)c * BR + i] = tmp[c];
    }
}

/* ---- micro-kernels ----------------------------------------------------------------------- */

/* ST[r][:] = sc * sum_c Kp[r][c] . Qt[c][:] for r < NR1 (bf16 pair dot products), with
 * -inf where key j0 + r is not visible to the lane's query (vis: the visible counts; NULL:
 * nothing masked; a select, so a NaN logit there is dropped); bm[v]: the running max of what
 * it stores (max_ps: a NaN logit is dropped from it, as in the float32 path's max pass; its
 * p is NaN all the same). */
AINLINE void k1_tile(const u32 *restrict A, const u32 *restrict Qt, float *restrict ST, int dh,
                     __m512 sc, __m512 *restrict bm, const float *restrict vis, int j0) {
    __m512 acc[NR1][NV];
#pragma GCC unroll 16
    for (int r = 0; r < NR1; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int c = 0; c < dh; c++) {
        __m512i b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) b[v] = _mm512_load_si512(Qt + (size_t)c * BR + v * VW);
#pragma GCC unroll 16
        for (int r = 0; r < NR1; r++) {
            __m512i a = _mm512_set1_epi32((int)A[(size_t)r * dh + c]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], BH(a), BH(b[v]));
        }
    }
    if (vis) {
        const __m512 ninf = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 16
        for (int r = 0; r < NR1; r++) {
            __m512 jf = _mm512_set1_ps((float)(j0 + r));
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                __mmask16 seen = _mm512_cmp_ps_mask(jf, _mm512_load_ps(vis + v * VW), _CMP_LT_OQ);
                acc[r][v] = _mm512_mask_mul_ps(ninf, seen, acc[r][v], sc);
            }
        }
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < NR1; r++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_mul_ps(acc[r][v], sc);
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR1; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            _mm512_store_ps(ST + (size_t)r * BR + v * VW, acc[r][v]);
            bm[v] = _mm512_max_ps(bm[v], acc[r][v]);
        }
}

/* S^T rows [0, n) of the key block at kb (n a multiple of NR1), masked by vis (or NULL), and
 * their max per query into bmax [NV * VW]; constant trip counts for d = 64, 128 */
static void k1_rows(const u32 *restrict A, const u32 *restrict Qt, float *restrict ST, int dp, int n,
                    float scale, float *restrict bmax, const float *restrict vis, int kb) {
    const __m512 sc = _mm512_set1_ps(scale);
    const int dh = dp / 2;
    __m512 bm[NV];
    for (int v = 0; v < NV; v++) bm[v] = _mm512_set1_ps(-INFINITY);
    if (dh == 32) {
        for (int r = 0; r < n; r += NR1)
            k1_tile(A + (size_t)r * 32, Qt, ST + (size_t)r * BR, 32, sc, bm, vis, kb + r);
    } else if (dh == 64) {
        for (int r = 0; r < n; r += NR1)
            k1_tile(A + (size_t)r * 64, Qt, ST + (size_t)r * BR, 64, sc, bm, vis, kb + r);
    } else {
        for (int r = 0; r < n; r += NR1)
            k1_tile(A + (size_t)r * dh, Qt, ST + (size_t)r * BR, dh, sc, bm, vis, kb + r);
    }
    for (int v = 0; v < NV; v++) _mm512_store_ps(bmax + v * VW, bm[v]);
}

/* OT[r][:] = OT[r][:] * alpha + sum_{j < n2} Vp[j][r] . Pp[j][:] for r < NR2. A: Vp rows at
 * stride dp, offset to the tile's first column; P: [n2][BR] pairs. */
AINLINE void k2_tile(const u32 *restrict A, int dp, const u32 *restrict P, int n2, float *restrict OT,
                     const float *restrict alpha) {
    __m512 acc[NR2][NV], al[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) al[v] = _mm512_load_ps(alpha + v * VW);
#pragma GCC unroll 16
    for (int r = 0; r < NR2; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_mul_ps(_mm512_load_ps(OT + (size_t)r * BR + v * VW), al[v]);
    for (int j = 0; j < n2; j++) {
        __m512i p[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) p[v] = _mm512_load_si512(P + (size_t)j * BR + v * VW);
#pragma GCC unroll 16
        for (int r = 0; r < NR2; r++) {
            __m512i a = _mm512_set1_epi32((int)A[(size_t)j * dp + r]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], BH(a), BH(p[v]));
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR2; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) _mm512_store_ps(OT + (size_t)r * BR + v * VW, acc[r][v]);
}

static void k2_all(const u32 *restrict A, int dp, const u32 *restrict P, int n, float *restrict OT,
                   const float *restrict alpha) {
    if (dp == 64) {
        for (int c = 0; c < 64; c += NR2) k2_tile(A + c, 64, P, n / 2, OT + (size_t)c * BR, alpha);
    } else if (dp == 128) {
        for (int c = 0; c < 128; c += NR2) k2_tile(A + c, 128, P, n / 2, OT + (size_t)c * BR, alpha);
    } else {
        for (int c = 0; c < dp; c += NR2) k2_tile(A + c, dp, P, n / 2, OT + (size_t)c * BR, alpha);
    }
}

static inline float bf16_word(u32 pair, int hi) { return qkv__bf16_to_f32((uint16_t)(hi ? pair >> 16 : pair)); }

/* k2_all for a key block [kb, kb + n) whose values hold a NaN or an inf, with masked lanes:
 * the same products, skipping each masked (query, key) pair (p = 0 times an inf or NaN value
 * is NaN and would reach a row that never sees that key). Rare, so plain loops. */
static void k2_masked(const u32 *restrict A, int dp, const u32 *restrict P, int n, int kb,
                      const float *restrict vis, float *restrict OT, const float *restrict alpha) {
    for (int i = 0; i < BR; i++) {
        int nv = (int)vis[i] - kb;
        nv = nv < 0 ? 0 : nv > n ? n : nv;
        for (int c = 0; c < dp; c++) {
            float o = OT[(size_t)c * BR + i] * alpha[i];
            for (int j = 0; j < nv; j++)
                o += bf16_word(A[(size_t)(j / 2) * dp + c], j & 1) * bf16_word(P[(size_t)(j / 2) * BR + i], j & 1);
            OT[(size_t)c * BR + i] = o;
        }
    }
}

/* ---- one query block ----------------------------------------------------------------------- */

typedef struct bf_scratch {
    u32 *Qt, *Pp;
    float *ST, *OT, *vis, *m, *l, *alpha, *bmax;
} bf_scratch;

static size_t bf_scratch_floats(int dp) {
    return R16((size_t)dp / 2 * BR) + R16((size_t)BC / 2 * BR) + R16((size_t)BC * BR) + R16((size_t)dp * BR) +
           5 * R16(BR);
}

static bf_scratch bf_scratch_at(float *base, int dp) {
    bf_scratch s;
    s.Qt = (u32 *)base, base += R16((size_t)dp / 2 * BR);
    s.Pp = (u32 *)base, base += R16((size_t)BC / 2 * BR);
    s.ST = base, base += R16((size_t)BC * BR);
    s.OT = base, base += R16((size_t)dp * BR);
    s.vis = base, base += R16(BR);
    s.m = base, base += R16(BR);
    s.l = base, base += R16(BR);
    s.alpha = base, base += R16(BR);
    s.bmax = base;
    return s;
}

static inline int qblock_start(int n_q, int qb, int *rows) {
    int i0 = n_q - (qb + 1) * BR;
    *rows = BR;
    if (i0 < 0) {
        *rows = BR + i0;
        i0 = 0;
    }
    return i0;
}

/* One query block of head h (rows [i0, i0 + rows)): O and lse. Kp, Vp: the packed head;
 * vbad[kb / BC]: that key block's packed values hold a NaN or an inf. Non-finite logits need
 * no test (fwd_block in attn_kernels.inc says why); the epilogue is the same. */
static void bf_block(const qkv_attn_desc *d, const qkv__attn_strides *st, int b, int h, int i0, int rows,
                     const float *q, const u32 *Kp, const u32 *Vp, const int *vbad, float *out, float *lse,
                     bf_scratch *s, float sc2) {
    const int D = d->head_dim, dp = QKV__DPAD(D), dh = dp / 2;
    pack_q(q + b * st->q_b + h * st->q_h, st->q_n, i0, rows, D, dp, s->Qt);
    int vmin = 0x7fffffff, vmax = 0;
    for (int i = 0; i < BR; i++) {
        int n = i < rows ? qkv__attn_visible(d, b, i0 + i) : 0;
        s->vis[i] = (float)n;
        if (i < rows) {
            vmin = n < vmin ? n : vmin;
            vmax = n > vmax ? n : vmax;
        }
    }
    memset(s->OT, 0, sizeof(float) * (size_t)dp * BR);
    for (int v = 0; v < NV; v++) {
        _mm512_store_ps(s->m + v * VW, _mm512_set1_ps(-INFINITY));
        _mm512_store_ps(s->l + v * VW, _mm512_setzero_ps());
    }
    const __m512i idx = pair_index();
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int kb = 0; kb < vmax; kb += BC) {
        int n = vmax - kb < BC ? vmax - kb : BC;
        n = (n + NR1 - 1) / NR1 * NR1;
        const int masked = kb + n > vmin; /* some lane stops inside this block */
        k1_rows(Kp + (size_t)kb * dh, s->Qt, s->ST, dp, n, sc2, s->bmax, masked ? s->vis : NULL, kb);
        /* online softmax in float32, lane-wise over the block's queries; P to bf16 pairs */
        for (int v = 0; v < NV; v++) {
            const float *col = s->ST + v * VW;
            u32 *pcol = s->Pp + v * VW;
            __m512 m_old = _mm512_load_ps(s->m + v * VW), bm = _mm512_load_ps(s->bmax + v * VW);
            __m512 m_new = _mm512_max_ps(m_old, bm);
            /* a lane that has seen nothing yet keeps m = -inf: subtract 0 instead */
            __m512 m_use = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ninf, m_new, _CMP_LT_OQ), _mm512_setzero_ps(), m_new);
            __m512 alpha = qkv__vexp2_nonpos_512(_mm512_sub_ps(m_old, m_use)), sum0 = _mm512_setzero_ps(),
                   sum1 = _mm512_setzero_ps();
            for (int j = 0; j < n; j += 2) {
                __m512 p0 = qkv__vexp2_nonpos_512(_mm512_sub_ps(_mm512_load_ps(col + (size_t)j * BR), m_use));
                __m512 p1 = qkv__vexp2_nonpos_512(_mm512_sub_ps(_mm512_load_ps(col + (size_t)(j + 1) * BR), m_use));
                sum0 = _mm512_add_ps(sum0, p0);
                sum1 = _mm512_add_ps(sum1, p1);
                __m512i w = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
                _mm512_store_si512(pcol + (size_t)(j / 2) * BR, w);
            }
            _mm512_store_ps(s->l + v * VW, _mm512_fmadd_ps(_mm512_load_ps(s->l + v * VW), alpha, _mm512_add_ps(sum0, sum1)));
            _mm512_store_ps(s->m + v * VW, m_new);
            _mm512_store_ps(s->alpha + v * VW, alpha);
        }
        if (QKV__UNLIKELY(vbad[kb / BC]) && kb + n > vmin)
            k2_masked(Vp + (size_t)kb / 2 * dp, dp, s->Pp, n, kb, s->vis, s->OT, s->alpha);
        else
            k2_all(Vp + (size_t)kb / 2 * dp, dp, s->Pp, n, s->OT, s->alpha);
    }
    float *oh = out + b * st->q_b + h * st->q_h, inv_r[BR];
    for (int i = 0; i < rows; i++) {
        float l = s->l[i], inv, row_lse;
        if (l > 0.0f) {
            inv = 1.0f / l;
            row_lse = (float)(((double)s->m[i] + log2((double)l)) * LN2_D);
        } else if (l == 0.0f && s->vis[i] == 0.0f) {
            inv = 0.0f, row_lse = -INFINITY; /* sees nothing: output 0 (OT is 0 here) */
        } else {
            inv = NAN, row_lse = NAN;
        }
        inv_r[i] = inv;
        if (lse) lse[((size_t)b * d->n_head_q + h) * d->n_q + (size_t)(i0 + i)] = row_lse;
    }
    qkv__rows_from_t_512(s->OT, BR, inv_r, rows, D, oh + (ptrdiff_t)i0 * st->q_n, st->q_n);
}

/* ---- the whole call ------------------------------------------------------------------------ *
 * The float32 path's work split (attn_kernels.inc): with enough (batch, kv head) pairs each
 * thread owns whole heads ("solo": its own packed K/V, no barriers); otherwise the threads
 * share each head as a team (pack it together, split its query blocks, barriers between). */

typedef struct bf_ctx {
    const qkv_attn_desc *d;
    qkv__attn_strides st;
    const float *q, *k, *v;
    float *out, *lse;
    int dp, group, nqb, nkb;
    float sc2;
} bf_ctx;

#define TEAM_BARRIER(team)                                                                  \
    do {                                                                                    \
        if (team) {                                                                         \
            _Pragma("omp barrier")                                                          \
        }                                                                                   \
    } while (0)

/* One (batch, kv head): thread tid of nth (nth = 1 when solo). Kp, Vp, vbad: the (team's or
 * thread's) packed head. Keys from kv_len[b] on are packed as zeros. */
static void bf_head(const bf_ctx *c, int b, int hk, u32 *Kp, u32 *Vp, int *vbad, bf_scratch *s, int tid,
                    int nth) {
    const qkv_attn_desc *d = c->d;
    const int team = nth > 1, dp = c->dp, n_tasks = c->group * c->nqb;
    const int nk_valid = d->kv_len ? d->kv_len[b] : d->n_k;
    const float *kh = c->k + b * c->st.k_b + hk * c->st.k_h, *vh = c->v + b * c->st.v_b + hk * c->st.v_h;
    for (int kb = tid; kb < c->nkb; kb += nth)
        vbad[kb] = pack_kv_block(kh, c->st.k_n, vh, c->st.v_n, kb * BC, nk_valid, d->head_dim, dp,
                                 Kp + (size_t)kb * BC * (dp / 2), Vp + (size_t)kb * (BC / 2) * dp);
    TEAM_BARRIER(team);
    /* heaviest blocks first: block 0 holds the last rows, which see most keys when causal */
    for (int t = tid; t < n_tasks; t += nth) {
        int qb = t / c->group, g = t % c->group, rows, i0 = qblock_start(d->n_q, qb, &rows);
        bf_block(d, &c->st, b, hk * c->group + g, i0, rows, c->q, Kp, Vp, vbad, c->out, c->lse, s, c->sc2);
    }
    TEAM_BARRIER(team); /* before the next head overwrites the packed K/V */
}

static qkv_status bf16_forward(const qkv_attn_desc *d, const float *q, const float *k, const float *v,
                               float *out, float *lse) {
    bf_ctx c;
    qkv__attn_resolve_strides(d, &c.st);
    const int Nq = d->n_q, Nk = d->n_k, n_bh = d->batch * d->n_head_kv;
    c.d = d, c.q = q, c.k = k, c.v = v, c.out = out, c.lse = lse;
    c.dp = QKV__DPAD(d->head_dim), c.group = d->n_head_q / d->n_head_kv;
    c.nqb = (Nq + BR - 1) / BR, c.nkb = Nk > 0 ? (Nk + BC - 1) / BC : 1;
    c.sc2 = qkv__attn_scale(d) / qkv__attn_temperature(d) * LOG2E_F;
    /* per head: Kp [nkb * BC][dp / 2] and Vp [nkb * BC / 2][dp], both u32 */
    const size_t head_u32 = (size_t)c.nkb * BC * (size_t)c.dp;
    int nt = qkv__threads();
    const int solo = nt == 1 || n_bh % nt == 0 || n_bh >= 4 * nt;
    if (solo && nt > n_bh) nt = n_bh;
    if (!solo && nt > c.group * c.nqb) nt = c.group * c.nqb > 1 ? c.group * c.nqb : 1;
    const int n_sets = solo ? nt : 1;
    const size_t per_thread = bf_scratch_floats(c.dp);
    u32 *kv = qkv__alloc_whole(sizeof(u32) * head_u32 * (size_t)n_sets);
    float *scratch = qkv__alloc_aligned(sizeof(float) * per_thread * (size_t)nt);
    int *vbad = malloc(sizeof(int) * (size_t)c.nkb * (size_t)n_sets);
    if (!kv || !scratch || !vbad) {
        qkv__free_aligned(kv), qkv__free_aligned(scratch), free(vbad);
        return qkv__fail(QKV_ENOMEM, "attention (bf16): cannot allocate %zu bytes of packed K/V",
                         sizeof(u32) * head_u32 * (size_t)n_sets);
    }
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int tid = 0, team = 1;
#endif
        bf_scratch s = bf_scratch_at(scratch + per_thread * (size_t)tid, c.dp);
        if (solo) {
            u32 *Kp = kv + head_u32 * (size_t)tid, *Vp = Kp + head_u32 / 2;
            int *vb = vbad + (size_t)c.nkb * (size_t)tid;
#pragma omp for schedule(dynamic, 1)
            for (int bh = 0; bh < n_bh; bh++) bf_head(&c, bh / d->n_head_kv, bh % d->n_head_kv, Kp, Vp, vb, &s, 0, 1);
        } else {
            for (int bh = 0; bh < n_bh; bh++)
                bf_head(&c, bh / d->n_head_kv, bh % d->n_head_kv, kv, kv + head_u32 / 2, vbad, &s, tid, team);
        }
    }
    qkv__free_aligned(kv), qkv__free_aligned(scratch), free(vbad);
    return QKV_OK;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif /* QKV__HAVE_BF16_KERNELS */

qkv_status qkv_attention_forward_bf16(const qkv_attn_desc *desc, const float *q, const float *k,
                                      const float *v, float *out, float *lse) {
    qkv_status st = qkv_attn_validate(desc);
    if (st) return st;
    if (!q || !k || !v || !out) return qkv__fail(QKV_EINVAL, "attention (bf16): NULL q, k, v or out");
#ifdef QKV__HAVE_BF16_KERNELS
    if (!qkv__attn_bf16_usable())
        return qkv__fail(QKV_EUNSUPPORTED,
                         "attention (bf16): needs AVX512_BF16 (with AVX-512 F/BW/VL/DQ) and the avx512 SIMD "
                         "path; this CPU or the forced path (%s) lacks it: use qkv_attention_forward",
                         qkv_simd_name());
    if (desc->n_q == 0) return QKV_OK;
    return bf16_forward(desc, q, k, v, out, lse);
#else
    return qkv__fail(QKV_EUNSUPPORTED, "attention (bf16): not built for this CPU (x86-64 with AVX512_BF16 only); "
                                       "use qkv_attention_forward");
#endif
}
