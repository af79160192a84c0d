/*
 * matmul.c -- the model's matrix products and their dispatch.
 *
 * Prompt processing (N rows): OpenBLAS sgemm, or our own AVX-512 kernel
 * (matmul_avx512.c) when the CPU has it; QKV_GEMM=openblas|avx512|plain picks one (the bench
 * compares them). One row (generation): a GEMV that streams the weights once, which is all
 * that matters at one token (memory bound); BF16 weights halve the bytes, Q8_0 blocks
 * (qkv__gemv_q8: int8 weights and activations, one scale per 32) take a little over a quarter.
 */
#include "model/model.h"
#include "model/gguf.h" /* qkv__f16_to_f32, qkv__f32_to_f16 */

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

enum { GEMM_PLAIN, GEMM_OPENBLAS, GEMM_AVX512 };

/* A per-thread cap on the model's kernels' threads (0 = none): generation and long prompts
 * measure whether fewer threads run faster (on a machine whose cores are busy with other
 * work, every OpenMP barrier can wait a scheduler time slice) and cap themselves. Results of
 * qkv's own kernels do not depend on the thread count: every output is summed in the same
 * order (OpenBLAS's do, in the last bits: blas_linear). */
static _Thread_local int threads_cap;

int qkv__model_threads(void) {
    int t = qkv__threads();
    return threads_cap > 0 && threads_cap < t ? threads_cap : t;
}

double qkv__thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double qkv__process_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qkv__model_threads_cap(int cap) {
    int old = threads_cap;
    threads_cap = cap > 0 ? cap : 0;
    return old;
}

int qkv__cpu_has_avx512(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return has;
}

static int gemm_choice = -1; /* racy first write of the same value: benign */

static void gemm_kind_set(int k) { gemm_choice = k; }

static int gemm_kind(void) {
    if (gemm_choice < 0) {
        const char *env = getenv("QKV_GEMM");
        int k = qkv__use_avx512() ? GEMM_AVX512 : GEMM_OPENBLAS;
        if (env && !strcmp(env, "openblas")) k = GEMM_OPENBLAS;
        if (env && !strcmp(env, "plain")) k = GEMM_PLAIN;
        if (env && !strcmp(env, "avx512") && qkv__cpu_has_avx512()) k = GEMM_AVX512;
        gemm_choice = k;
    }
    return gemm_choice;
}

qkv_status qkv__gemm_select(const char *name) {
    int k;
    if (!strcmp(name, "openblas")) k = GEMM_OPENBLAS;
    else if (!strcmp(name, "plain")) k = GEMM_PLAIN;
    else if (!strcmp(name, "avx512") && qkv__cpu_has_avx512()) k = GEMM_AVX512;
    else return qkv__fail(QKV_EUNSUPPORTED, "gemm '%s' not available (avx512, openblas, plain)", name);
    gemm_kind(); /* resolve the default first so this choice sticks */
    gemm_kind_set(k);
    return QKV_OK;
}

const char *qkv__openblas_core(void) { return openblas_get_corename(); }

const char *qkv__gemm_name(void) {
    switch (gemm_kind()) {
    case GEMM_AVX512: return "avx512";
    case GEMM_OPENBLAS: return "openblas";
    default: return "plain";
    }
}

int qkv__use_avx512(void) {
    const char *simd = qkv_simd_name();
    return qkv__cpu_has_avx512() && (!simd || !strcmp(simd, "avx512"));
}

/* OpenBLAS (no AVX-512, or QKV_GEMM=openblas): one thread per call, inside the model's own
 * OpenMP split by output columns (each thread packs its slice of B once and reads all of x).
 * OpenBLAS's own threads sat beside OpenMP's, which the prompt's other steps (attention, norms,
 * GELU) use: each runtime's threads spin for milliseconds after their work, a prompt alternates
 * the two dozens of times, and the OpenMP barriers waited for a descheduled thread. On this
 * 2-core VM the prompt through OpenBLAS ran 493 -> 1,379 tokens/s at 128 tokens split by rows
 * (in one process, alternating, 7 of 8 pairs) and 1,486 by columns (+8%, 7 of 8); 1,047 ->
 * 1,550 at 1024 (rows and columns the same). OpenBLAS's sums depend on a call's shape, so
 * its results differ in the last bits between thread counts (as they did with its own threads);
 * qkv's own kernels do not. */
void qkv__blas_one_thread(void) {
    static _Atomic int set; /* changing OpenBLAS's pool is costly: once */
    if (!atomic_exchange(&set, 1)) openblas_set_num_threads(1);
}

/* y[n, m] (row stride ldy) = x[n, K] @ B + bias; B = w[K, m] (ld ldw), or w[m, K]^T (trans). */
static void blas_linear(int trans, const float *x, ptrdiff_t ldx, int n, int K, int m, const float *w,
                        ptrdiff_t ldw, const float *bias, float *y, ptrdiff_t ldy) {
    qkv__blas_one_thread();
    const int units = (m + 15) / 16; /* slices of whole 64-byte lines of y */
    int nt = qkv__model_threads();
    if (nt > units) nt = units;
    if ((double)n * m * K < 1e6) nt = 1; /* an OpenMP region costs more than such a product */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int j0 = (int)((long)units * t / nt) * 16, j1 = (int)((long)units * (t + 1) / nt) * 16;
        if (j1 > m) j1 = m;
        if (j1 <= j0) continue;
        if (bias)
            for (int i = 0; i < n; i++) memcpy(y + (size_t)i * ldy + j0, bias + j0, sizeof(float) * (size_t)(j1 - j0));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, n, j1 - j0, K, 1.0f, x,
                    (int)ldx, trans ? w + (size_t)j0 * ldw : w + j0, (int)ldw, bias ? 1.0f : 0.0f, y + j0, (int)ldy);
    }
}


void qkv__linear(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                 const float *b, float *y) {
    if (n == 1) {
        qkv__gemv(x, in, out, w, NULL, b, y);
        return;
    }
    int kind = gemm_kind();
    if (kind == GEMM_AVX512) {
        qkv__gemm_nn_avx512(x, ldx, n, in, out, w, b, y, qkv__model_threads());
        return;
    }
    if (kind == GEMM_OPENBLAS) {
        blas_linear(0, x, ldx, n, in, out, w, out, b, y, out);
        return;
    }
    int nt = qkv__model_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)i * out;
        for (int o = 0; o < out; o++) yr[o] = b ? b[o] : 0.0f;
        for (int k = 0; k < in; k++) {
            float xv = x[(size_t)i * ldx + k];
            const float *wr = w + (size_t)k * out;
            for (int o = 0; o < out; o++) yr[o] += xv * wr[o];
        }
    }
}

int qkv__cpu_has_avx512_bf16(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
#if defined(__clang__) || __GNUC__ >= 10
        has = qkv__cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
        has = 0;
#endif
    }
    return has;
}

size_t qkv__bf16p_size(int in, int out) {
    return (size_t)((out + QKV__BF16P_NR - 1) / QKV__BF16P_NR) * (((size_t)in + 1) / 2) * QKV__BF16P_NR * 2;
}

void qkv__bf16p_pack(const float *w, int in, int out, uint16_t *dst) {
    const int n_panels = (out + QKV__BF16P_NR - 1) / QKV__BF16P_NR;
    memset(dst, 0, sizeof(uint16_t) * qkv__bf16p_size(in, out)); /* the padding past in and out */
    /* panel by panel (threads own whole panels): each reads its 32-column slice of every row */
#pragma omp parallel for num_threads(qkv__model_threads()) schedule(static)
    for (int p = 0; p < n_panels; p++) {
        int j0 = p * QKV__BF16P_NR, j1 = j0 + QKV__BF16P_NR < out ? j0 + QKV__BF16P_NR : out;
        for (int k = 0; k < in; k++)
            for (int j = j0; j < j1; j++) dst[qkv__bf16p_index(in, k, j)] = qkv__f32_to_bf16(w[(size_t)k * out + j]);
    }
}

void qkv__linear_bf16(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                      const uint16_t *wb, const float *b, float *y) {
    if (n == 1 && wb) {
        qkv__gemv(x, in, out, NULL, wb, b, y);
        return;
    }
    if (wb && qkv__use_avx512() && qkv__cpu_has_avx512_bf16() &&
        qkv__gemm_bf16_avx512(x, ldx, n, in, out, wb, b, y, qkv__model_threads()) == QKV_OK)
        return;
    qkv__linear(x, ldx, n, in, out, w, b, y); /* no BF16 dot products here (or no memory): F32 */
}

void qkv__linear_t(const float *x, ptrdiff_t ldx, int n, int c, int v, const float *e,
                   ptrdiff_t lde, float *y, ptrdiff_t ldy) {
    if (n == 1 && lde == c) {
        qkv__gemv_t(x, c, v, e, NULL, y);
        return;
    }
    if (gemm_kind() == GEMM_AVX512) {
        qkv__gemm_nt_avx512(x, ldx, n, c, v, e, lde, y, ldy, qkv__model_threads());
        return;
    }
    if (gemm_kind() == GEMM_OPENBLAS) {
        blas_linear(1, x, ldx, n, c, v, e, lde, NULL, y, ldy);
        return;
    }
    int nt = qkv__model_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int j = 0; j < v; j++) {
        const float *er = e + (size_t)j * lde;
        for (int i = 0; i < n; i++) {
            const float *xr = x + (size_t)i * ldx;
            float s = 0.0f;
            for (int k = 0; k < c; k++) s += xr[k] * er[k];
            y[(size_t)i * ldy + j] = s;
        }
    }
}

int qkv__use_avx2(void) { return !strcmp(qkv_simd_name(), "avx2"); }

/* qkv__gemv_part's buffers: one per calling thread (pthread key: freed when it ends). */
typedef struct {
    float *p;
    size_t cap; /* floats */
} part_buf;

static pthread_key_t part_key;
static pthread_once_t part_once = PTHREAD_ONCE_INIT;
static int part_key_ok;

static void part_free(void *v) {
    part_buf *b = v;
    free(b->p);
    free(b);
}

static void part_init(void) { part_key_ok = pthread_key_create(&part_key, part_free) == 0; }

float *qkv__gemv_part(size_t n) {
    pthread_once(&part_once, part_init);
    if (!part_key_ok) return NULL;
    part_buf *b = pthread_getspecific(part_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return NULL;
        if (pthread_setspecific(part_key, b)) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < n) {
        float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        if (!p) return NULL;
        free(b->p);
        b->p = p, b->cap = n;
    }
    return b->p;
}

void qkv__gemv(const float *x, int in, int out, const float *w, const uint16_t *wb,
               const float *b, float *y) {
    if (qkv__use_avx512()) {
        qkv__gemv_avx512(x, in, out, w, wb, b, y, qkv__model_threads());
        return;
    }
    if (qkv__use_avx2()) {
        if (wb) {
            qkv__gemv_bf16p_avx2(x, in, out, wb, b, y, qkv__model_threads());
            return;
        }
        if (qkv__gemv_avx2(x, in, out, w, b, y, qkv__model_threads())) return;
    }
    int nt = qkv__model_threads();
    /* threads split the output columns; each streams its slice of every row */
#pragma omp parallel num_threads(nt)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int lo = (int)((long)out * t / T), hi = (int)((long)out * (t + 1) / T);
        for (int o = lo; o < hi; o++) y[o] = b ? b[o] : 0.0f;
        for (int k = 0; k < in; k++) {
            float xv = x[k];
            if (wb) {
                for (int o = lo; o < hi; o++) y[o] += xv * qkv__bf16_to_f32(qkv__bf16p_at(wb, in, k, o));
            } else {
                const float *wr = w + (size_t)k * out;
                for (int o = lo; o < hi; o++) y[o] += xv * wr[o];
            }
        }
    }
}

void qkv__gemv_t(const float *x, int c, int v, const float *e, const uint16_t *eb, float *y) {
    if (qkv__use_avx512()) {
        qkv__gemv_t_avx512(x, c, v, e, eb, y, qkv__model_threads());
        return;
    }
    if (qkv__use_avx2()) {
        qkv__gemv_t_avx2(x, c, v, e, eb, y, qkv__model_threads());
        return;
    }
    int nt = qkv__model_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int j = 0; j < v; j++) {
        float s = 0.0f;
        if (eb) {
            const uint16_t *er = eb + (size_t)j * c;
            for (int k = 0; k < c; k++) s += x[k] * qkv__bf16_to_f32(er[k]);
        } else {
            const float *er = e + (size_t)j * c;
            for (int k = 0; k < c; k++) s += x[k] * er[k];
        }
        y[j] = s;
    }
}

/* ---- Q8_0 ------------------------------------------------------------------------------------ */

int qkv__cpu_has_avx512_vnni(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = qkv__cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
    }
    return has;
}

void qkv__q8_quantize(const float *src, size_t n, qkv__q8 *dst) {
    for (size_t b = 0; b < n / 32; b++, src += 32, dst++) {
        float amax = 0.0f;
        int bad = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(src[j]);
            bad |= !(a <= FLT_MAX);
            amax = a > amax ? a : amax;
        }
        if (bad) {
            dst->d = 0x7e00; /* half NaN */
            memset(dst->qs, 0, sizeof dst->qs);
            continue;
        }
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        dst->d = qkv__f32_to_f16(d);
        for (int j = 0; j < 32; j++) dst->qs[j] = (int8_t)roundf(src[j] * id);
    }
}

void qkv__q8_quantize_x(const float *x, int in, int8_t *q, float *d) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to nearest even */
    for (int b = 0; b < in / 32; b++) {
        const float *s = x + 32 * b;
        float amax = 0.0f;
        int bad = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(s[j]);
            bad |= !(a <= FLT_MAX);
            amax = a > amax ? a : amax;
        }
        if (bad) {
            d[b] = NAN;
            memset(q + 32 * b, 0, 32);
            continue;
        }
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        for (int j = 0; j < 32; j++) {
            volatile float t = s[j] * id + magic; /* volatile: no reassociation, whatever the flags */
            q[32 * b + j] = (int8_t)(int)(t - magic);
        }
    }
}

void qkv__gemv_q8(const float *x, int in, int out, const qkv__q8 *w, const float *b, float *y) {
    QKV_ASSERT(in % 32 == 0); /* qkv_model_use_q8 makes no copy of such a matrix */
    int nb = in / 32;
    /* x once per call: int8 values padded with zeros to 64 bytes, scales to an even count (the
     * AVX-512 kernel reads blocks in pairs) */
    size_t nq = ((size_t)in + 63) / 64 * 64;
    int8_t *xq = qkv__alloc_aligned(nq + sizeof(float) * (size_t)(nb + 2));
    if (!xq) { /* out of memory: NaN rather than wrong numbers */
        for (int o = 0; o < out; o++) y[o] = NAN;
        return;
    }
    float *xd = (float *)(xq + nq);
    memset(xq + in, 0, nq - (size_t)in);
    xd[nb] = xd[nb + 1] = 0.0f;
    if (qkv__use_avx512() && qkv__cpu_has_avx512_vnni()) {
        qkv__q8_quantize_x_avx512(x, in, xq, xd);
        qkv__gemv_q8_avx512(xq, xd, in, out, w, b, y, qkv__model_threads());
        qkv__free_aligned(xq);
        return;
    }
    qkv__q8_quantize_x(x, in, xq, xd);
    if (qkv__use_avx2()) {
        qkv__gemv_q8_avx2(xq, xd, in, out, w, b, y, qkv__model_threads());
        qkv__free_aligned(xq);
        return;
    }
    int nt = qkv__model_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int o = 0; o < out; o++) {
        const qkv__q8 *row = w + (size_t)o * nb;
        float acc = 0.0f;
        for (int k = 0; k < nb; k++) {
            const int8_t *xb = xq + 32 * k;
            int s = 0;
            for (int j = 0; j < 32; j++) s += (int)xb[j] * (int)row[k].qs[j];
            acc += (float)s * (qkv__f16_to_f32(row[k].d) * xd[k]);
        }
        y[o] = acc + (b ? b[o] : 0.0f);
    }
    qkv__free_aligned(xq);
}
