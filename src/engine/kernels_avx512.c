/*
 * kernels_avx512.c -- the attention kernels for AVX-512 (F/BW/VL/DQ + FMA): 16 lanes,
 * 32 registers. Query blocks of 48 rows (3 vectors) by key blocks of 128; the S^T and O^T
 * tiles hold 8 x 3 accumulators. Compiled with AVX-512 flags (Makefile: *_avx512.c) and
 * called only when cpu.c has seen those instructions.
 */
#include "engine.h"

#include <immintrin.h>

#define VW 16
typedef __m512 vf;
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTORE(p, x) _mm512_store_ps((p), (x))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSUB(a, b) _mm512_sub_ps((a), (b))
#define VMAX(a, b) _mm512_max_ps((a), (b))
#define VHSUM(a) _mm512_reduce_add_ps(a)
#define VSEL_LT(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (y), (x))

/* 2^x: x = n + f with n = round(x), |f| <= 1/2; 2^f by its degree-6 Taylor polynomial
 * (relative error < 1e-7), times 2^n with scalef. x < -126 (and -inf) gives exactly 0;
 * NaN gives NaN (the row's sum then carries it: NaN in, NaN out). min/max return their
 * second operand when either is NaN, so x goes second to pass through the clamp. */
static inline vf vexp2(vf x) {
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    x = _mm512_min_ps(_mm512_set1_ps(126.0f), _mm512_max_ps(_mm512_set1_ps(-126.0f), x));
    vf n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf f = _mm512_sub_ps(x, n);
    vf p = _mm512_set1_ps(1.5403530e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
}

#define NV 3
#define NR1 8
#define BC 128
#define NR2 8
#define NR3 4
#define NV3 4
#define KERNEL_TABLE qkv__attn_kernels_avx512
#define KERNEL_NAME "avx512"

#include "attn_kernels.inc"
