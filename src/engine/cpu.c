/*
 * cpu.c -- picks the attention kernels' instruction set at run time.
 *
 * The base build is plain x86-64; kernels_avx512.c and kernels_avx2.c are compiled with
 * their ISA flags and only ever called after the CPU says it has those instructions.
 * $QKV_SIMD=avx512|avx2|scalar (or qkv_set_simd) forces a path, so the tests can run every
 * path on one machine. The optional BF16 forward (attn_bf16.c) asks qkv__attn_bf16_usable:
 * AVX512_BF16 on the CPU and the AVX-512 path selected (so $QKV_SIMD=avx2 turns it off too).
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static const qkv__attn_kernels *selected; /* NULL until first use */

static int cpu_has(const char *isa) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!strcmp(isa, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx512bf16")) /* the BF16 dot products of attn_bf16.c (GCC 10 on) */
#if defined(__clang__) || __GNUC__ >= 10
        return cpu_has("avx512") && __builtin_cpu_supports("avx512bf16");
#else
        return 0;
#endif
    if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return !strcmp(isa, "scalar");
}

static const qkv__attn_kernels *table_named(const char *name) {
    if (!strcmp(name, "avx512")) return &qkv__attn_kernels_avx512;
    if (!strcmp(name, "avx2")) return &qkv__attn_kernels_avx2;
    if (!strcmp(name, "scalar")) return &qkv__attn_kernels_scalar;
    return NULL;
}

static const qkv__attn_kernels *detect(void) {
    const char *env = getenv("QKV_SIMD");
    /* An unknown or unsupported $QKV_SIMD falls back to detection: the library never
     * prints, and the CLI reports the path it runs (qkv_simd_name). */
    if (env && *env && table_named(env) && cpu_has(env)) return table_named(env);
    if (cpu_has("avx512")) return &qkv__attn_kernels_avx512;
    if (cpu_has("avx2")) return &qkv__attn_kernels_avx2;
    return &qkv__attn_kernels_scalar;
}

const qkv__attn_kernels *qkv__attn_kernels_get(void) {
    const qkv__attn_kernels *t = __atomic_load_n(&selected, __ATOMIC_ACQUIRE);
    if (!t) {
        t = detect();
        __atomic_store_n(&selected, t, __ATOMIC_RELEASE);
    }
    return t;
}

int qkv__attn_bf16_usable(void) {
    return qkv__attn_kernels_get() == &qkv__attn_kernels_avx512 && cpu_has("avx512bf16");
}

const char *qkv_simd_name(void) { return qkv__attn_kernels_get()->name; }

qkv_status qkv_set_simd(const char *name) {
    if (!name) return qkv__fail(QKV_EINVAL, "SIMD path: NULL name");
    const qkv__attn_kernels *t = table_named(name);
    if (!t) return qkv__fail(QKV_EINVAL, "SIMD path '%s': expected avx512, avx2 or scalar", name);
    if (!cpu_has(name))
        return qkv__fail(QKV_EUNSUPPORTED, "SIMD path '%s': this CPU lacks those instructions", name);
    __atomic_store_n(&selected, t, __ATOMIC_RELEASE);
    return QKV_OK;
}
