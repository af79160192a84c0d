/*
 * kernels_scalar.c -- the attention kernels in plain C11 (one lane): the fallback for any
 * CPU and compiler, and the third path the tests check. Same algorithm and blocking as the
 * SIMD paths, with 4 x 4 register tiles.
 */
#include "engine.h"

#include <math.h>

#define VW 1
typedef float vf;
#define VZERO() 0.0f
#define VSET1(x) (x)
#define VLOAD(p) (*(p))
#define VLOADU(p) (*(p))
#define VSTORE(p, x) (*(p) = (x))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
#define VHSUM(a) (a)
#define VSEL_LT(a, b, x, y) ((a) < (b) ? (x) : (y))

/* 0 below 2^-126 and for -inf, NaN for NaN, as the SIMD versions */
static inline float vexp2(float x) { return x < -126.0f ? 0.0f : exp2f(x); }

#define NV 4
#define NR1 4
#define BC 64
#define NR2 4
#define NR3 4
#define NV3 4
#define KERNEL_TABLE qkv__attn_kernels_scalar
#define KERNEL_NAME "scalar"

#include "attn_kernels.inc"
