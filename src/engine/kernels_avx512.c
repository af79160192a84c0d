/*
 * kernels_avx512.c -- the attention kernels for AVX-512 (F/BW/VL/DQ + FMA): 16 lanes,
 * 32 registers. Query blocks of 48 rows (3 vectors) by key blocks of 128; the S^T and O^T
 * tiles hold 8 x 3 accumulators. Compiled with AVX-512 flags (Makefile: *_avx512.c) and
 * called only when cpu.c has seen those instructions.
 */
#include "engine.h"

#include <immintrin.h>

#include "transpose_avx512.h"
#include "vexp2_avx512.h"

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

/* 2^x (vexp2_avx512.h; the BF16 path uses the same function) */
static inline vf vexp2(vf x) { return qkv__vexp2_512(x); }

#define NV 3
#define NR1 8
#define BC 128
#define NR2 8
#define NR3 4
#define NV3 4
#define TR16(src, lds, dst, ldd, scale, mul) qkv__tr16_512((src), (lds), (dst), (ldd), (scale), (mul))
#define KERNEL_TABLE qkv__attn_kernels_avx512
#define KERNEL_NAME "avx512"

#include "attn_kernels.inc"
