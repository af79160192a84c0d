/*
 * vexp2_avx512.h -- 2^x on 16 float lanes, the one home of its polynomial for the AVX-512
 * code: the float32 kernels (kernels_avx512.c, compiled with AVX-512 flags) and the BF16
 * path (attn_bf16.c, inside its AVX-512 target region). Include only where AVX-512F is
 * enabled.
 */
#ifndef QKV_VEXP2_AVX512_H
#define QKV_VEXP2_AVX512_H

#include <immintrin.h>

/* 2^f for |f| <= 1/2: the degree-6 Taylor polynomial (relative error < 1e-7). */
static inline __m512 qkv__exp2_poly_512(__m512 f) {
    __m512 p = _mm512_set1_ps(1.5403530e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    return _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
}

/* 2^x: x = n + f with n = round(x), |f| <= 1/2; 2^f by the polynomial, times 2^n with
 * scalef. x < -126 (and -inf) gives exactly 0; NaN gives NaN (the row's sum then carries
 * it: NaN in, NaN out). min/max return their second operand when either is NaN, so x goes
 * second to pass through the clamp. */
static inline __m512 qkv__vexp2_512(__m512 x) {
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    x = _mm512_min_ps(_mm512_set1_ps(126.0f), _mm512_max_ps(_mm512_set1_ps(-126.0f), x));
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(qkv__exp2_poly_512(_mm512_sub_ps(x, n)), n));
}

/* The same for a softmax's x = logit - running max, which is <= 0: without the clamp, and
 * the zeroing of x < -126 (and -inf, whose f is NaN) folded into scalef; NaN gives NaN. A
 * positive x (only in a row whose max is NaN, which is NaN whatever this returns) gives
 * 2^x or inf. Three instructions fewer than qkv__vexp2_512. */
static inline __m512 qkv__vexp2_nonpos_512(__m512 x) {
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_maskz_scalef_ps(keep, qkv__exp2_poly_512(_mm512_sub_ps(x, n)), n);
}

#endif /* QKV_VEXP2_AVX512_H */
