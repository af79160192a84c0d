/*
 * transpose_avx512.h -- a 16 x 16 float transpose in registers, the one home of the shuffle
 * network for the attention kernels' transposed tiles: queries into Q^T (pack_t) and O^T
 * back into output rows (the epilogues of kernels_avx512.c and attn_bf16.c). A scalar
 * gather of one column per row was 1.7% of a 1024-token prompt (GPT-2, 12 heads of 64). Include only where
 * AVX-512F is enabled.
 */
#ifndef QKV_TRANSPOSE_AVX512_H
#define QKV_TRANSPOSE_AVX512_H

#include <stddef.h>
#include <immintrin.h>

/* dst[r * ldd + c] = src[c * lds + r] * scale[r] (scale NULL: * mul), r, c < 16. */
static inline void qkv__tr16_512(const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd,
                                 const float *scale, float mul) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    /* 2 x 2 blocks of single floats, then of pairs, then of 4-float lanes, then of 8 */
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ldd, _mm512_mul_ps(r[i], _mm512_set1_ps(scale ? scale[i] : mul)));
}

/* out[i * ld + c] = T[c * ldt + i] * inv[i] for i < rows, c < D: an output block from its
 * transposed accumulator (O^T, one column a query), by 16 x 16 tiles where D allows. */
static inline void qkv__rows_from_t_512(const float *T, ptrdiff_t ldt, const float *inv, int rows, int D,
                                        float *out, ptrdiff_t ld) {
    int i = 0;
    if (D % 16 == 0)
        for (; i + 16 <= rows; i += 16)
            for (int c = 0; c < D; c += 16) qkv__tr16_512(T + c * ldt + i, ldt, out + i * ld + c, ld, inv + i, 0.0f);
    for (; i < rows; i++)
        for (int c = 0; c < D; c++) out[i * ld + c] = T[c * ldt + i] * inv[i];
}

#endif
