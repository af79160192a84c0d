/*
 * bench_attention.c -- `qkv bench attention`: the fused engine against this machine's peak
 * and against NumPy and PyTorch on the same shapes, in the same run.
 *
 *   qkv bench attention [--quick] [--sizes 128,512,...] [--threads N] [--budget SEC]
 *                       [--cli-n N] [--no-peers] [--no-decode] [--no-bf16] [--json FILE]
 *
 * Shapes: B=1, H=12, d=64, Nq = Nk = N, causal and not. FLOPs: forward 4*B*H*N^2*d (half
 * when causal, whatever an implementation computes), backward 2.5x forward, so
 * forward+backward is 3.5x. Peak: a tight loop of independent 512-bit (or 256-bit) FMAs on
 * 1 and on all threads, measured here first. Every configuration is checked against the
 * reference (sampled rows) before it is timed. Times are the best of repeated calls within
 * a time budget (the machine is shared; the best call is the least disturbed one).
 * Peers run in bench/peers/attention_peers.py with OPENBLAS_CORETYPE=SkylakeX.
 *
 * The BF16 forward (qkv_attention_forward_bf16, where the CPU has AVX512_BF16) gets its own
 * column next to the float32 forward: checked on sampled rows against the float64 reference
 * within its stated bound (include/qkv.h), then timed in alternation with the float32 forward
 * (call for call, so both see the same machine), best of each; the ratio is printed and in
 * the JSON (bf16_ms, bf16_speedup, and the same on 1 thread in CPU time).
 *
 * The command line: `qkv attention` run as a user runs it (this binary, a child process per
 * call, Q, K and V .npy files in, O.npy out) at N = 4096 (--cli-n N; 0 skips it), its output
 * checked against the in-process forward, then timed whole (exec to exit) in alternation with
 * the in-process forward: the difference is what the process costs outside the kernel.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define H 12
#define D 64
#define MAX_SIZES 16

static double cpu_seconds(void);

/* ---- machine peak ------------------------------------------------------------------------- */

#define FMA16(F) F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11) \
                 F(a12) F(a13) F(a14) F(a15)

__attribute__((target("avx512f,fma"))) static float fma_loop_512(long iters) {
    __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
#define INIT(x) __m512 x = _mm512_set1_ps((float)__LINE__ * 1e-3f);
    FMA16(INIT)
#undef INIT
    for (long i = 0; i < iters; i++) {
#define STEP(x) x = _mm512_fmadd_ps(x, m, c);
        FMA16(STEP)
#undef STEP
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
        __asm__ volatile("" : "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11), "+v"(a12), "+v"(a13), "+v"(a14), "+v"(a15));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long iters) {
    __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
#define INIT(x) __m256 x = _mm256_set1_ps((float)__LINE__ * 1e-3f);
    FMA16(INIT)
#undef INIT
    for (long i = 0; i < iters; i++) {
#define STEP(x) x = _mm256_fmadd_ps(x, m, c);
        FMA16(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7));
        __asm__ volatile("" : "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11), "+x"(a12), "+x"(a13), "+x"(a14), "+x"(a15));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a12, a13), _mm256_add_ps(a14, a15)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

/* GFLOP/s of FMAs on n threads, best of 3; *isa names the instruction set used. */
static double measure_peak(int n, const char **isa) {
    __builtin_cpu_init();
    int w512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    int w256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    *isa = w512 ? "avx512 fma" : w256 ? "avx2 fma" : "none";
    if (!w512 && !w256) return 0.0;
    const long iters = 20000000;
    double best = 0.0;
    volatile float sink = 0.0f;
    for (int rep = 0; rep < 3; rep++) {
        double t = n == 1 ? cpu_seconds() : qkv__now(); /* 1 thread: CPU time, as its calls */
#pragma omp parallel num_threads(n)
        {
            float s = w512 ? fma_loop_512(iters) : fma_loop_256(iters);
#pragma omp atomic
            sink += s;
        }
        t = (n == 1 ? cpu_seconds() : qkv__now()) - t;
        double gf = (double)n * iters * 16 * (w512 ? 32 : 16) / t * 1e-9;
        if (gf > best) best = gf;
    }
    (void)sink;
    return best;
}

/* Read bandwidth (GB/s) over a buffer far larger than the caches, n threads. */
static double measure_read_bw(int n) {
    const size_t count = (size_t)32 << 20; /* 256 MB of 64-bit words */
    uint64_t *buf = qkv__alloc_aligned(count * sizeof(uint64_t));
    if (!buf) return 0.0;
#pragma omp parallel for num_threads(n) schedule(static)
    for (size_t i = 0; i < count; i++) buf[i] = i * 0x9E3779B97F4A7C15ULL;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t x = 0;
        double t = qkv__now();
        /* integer XOR: vectorised and never bound by an add chain, so this is memory speed */
#pragma omp parallel for num_threads(n) schedule(static) reduction(^ : x)
        for (size_t i = 0; i < count; i++) x ^= buf[i];
        t = qkv__now() - t;
        if (x == 42) t = 1e9; /* keeps the loop */
        double gb = (double)count * sizeof(uint64_t) / t * 1e-9;
        if (gb > best) best = gb;
    }
    qkv__free_aligned(buf);
    return best;
}

/* ---- correctness gate ------------------------------------------------------------------------ */

/* Sampled rows of the fast forward (out, lse) and backward (dq) against the reference run
 * on that single row. Returns 0 when all agree. */
static int check_rows(const qkv_attn_desc *d, const float *q, const float *k, const float *v,
                      const float *out, const float *lse, const float *dout, const float *dq) {
    const int N = d->n_q;
    int rows[5] = {0, 1, N / 3, N / 2 + 1, N - 1};
    for (int hi = 0; hi < 2; hi++) {
        int h = hi ? H - 1 : 0;
        for (int r = 0; r < 5; r++) {
            int i = rows[r] < N ? rows[r] : N - 1;
            int nk = d->causal ? i + 1 : N; /* one query row: bottom-right = all its keys */
            qkv_attn_desc one;
            qkv_attn_desc_init(&one, 1, 1, 1, 1, nk, D);
            size_t qo = ((size_t)h * N + (size_t)i) * D, ko = (size_t)h * N * D;
            float o[D], l, g[D];
            float *gk = malloc(sizeof(float) * (size_t)nk * D * 2);
            if (!gk) return 1;
            if (qkv_attention_forward_ref(&one, q + qo, k + ko, v + ko, o, &l, NULL) ||
                qkv_attention_backward_ref(&one, q + qo, k + ko, v + ko, out + qo, &l, dout + qo, g, gk,
                                           gk + (size_t)nk * D)) {
                free(gk);
                return 1;
            }
            free(gk);
            /* out, lse: 2e-5 per element; dq: 2e-4 relative to the row's largest entry */
            double worst = fabs(lse[(size_t)h * N + i] - l) / (1.0 + fabs(l)), gmax = 1.0;
            for (int c = 0; c < D; c++) gmax = fabs(g[c]) > gmax ? fabs(g[c]) : gmax;
            for (int c = 0; c < D; c++) {
                double e1 = fabs(out[qo + c] - o[c]), e2 = dq ? 0.1 * fabs(dq[qo + c] - g[c]) / gmax : 0.0;
                if (e1 > worst) worst = e1;
                if (e2 > worst) worst = e2;
            }
            if (!(worst <= 2e-5)) {
                fprintf(stderr, "bench attention: N=%d causal=%d head %d row %d differs from the reference "
                                "(err %.3g > 2e-5); not timing a wrong kernel\n",
                        N, d->causal, h, i, worst);
                return 1;
            }
        }
    }
    return 0;
}

/* The BF16 forward's sampled rows against the float64 reference within its bound
 * (include/qkv.h; u = 2^-8): per row ds = (2u + u^2) * scale * max_j sum_c |q_c k_jc|, out
 * within (exp(2 ds) - 1 + 2u) max|v| + 2e-5, lse within ds + 2e-5 (1 + |lse|). Returns 0
 * when all agree; *worst gets the largest error over the bound (<= 1 passes). */
static int check_rows_bf16(const qkv_attn_desc *d, const float *q, const float *k, const float *v,
                           const float *out, const float *lse, double *worst_out) {
    const int N = d->n_q;
    const double u = 1.0 / 256.0, sc = 1.0 / sqrt((double)D);
    int rows[5] = {0, 1, N / 3, N / 2 + 1, N - 1};
    double worst = 0.0;
    for (int hi = 0; hi < 2; hi++) {
        int h = hi ? H - 1 : 0;
        for (int r = 0; r < 5; r++) {
            int i = rows[r] < N ? rows[r] : N - 1;
            int nk = d->causal ? i + 1 : N;
            qkv_attn_desc one;
            qkv_attn_desc_init(&one, 1, 1, 1, 1, nk, D);
            size_t qo = ((size_t)h * N + (size_t)i) * D, ko = (size_t)h * N * D;
            float o[D], l;
            if (qkv_attention_forward_ref(&one, q + qo, k + ko, v + ko, o, &l, NULL)) return 1;
            double ds = 0.0, vmax = 0.0;
            for (int j = 0; j < nk; j++) {
                double a = 0.0;
                for (int c = 0; c < D; c++) {
                    a += fabs((double)q[qo + c] * k[ko + (size_t)j * D + c]);
                    vmax = fabs(v[ko + (size_t)j * D + c]) > vmax ? fabs(v[ko + (size_t)j * D + c]) : vmax;
                }
                ds = a > ds ? a : ds;
            }
            ds *= (2.0 * u + u * u) * sc;
            double tol_o = expm1(2.0 * ds) * vmax + 2.0 * u * vmax + 2e-5;
            double e = fabs(lse[(size_t)h * N + i] - l) / (ds + 2e-5 * (1.0 + fabs(l)));
            if (!(e <= worst)) worst = e;
            for (int c = 0; c < D; c++) {
                e = fabs(out[qo + c] - o[c]) / tol_o;
                if (!(e <= worst)) worst = e;
            }
        }
    }
    *worst_out = worst;
    if (!(worst <= 1.0)) {
        fprintf(stderr, "bench attention: bf16 N=%d causal=%d: a sampled row is %.3g times its error bound away "
                        "from the reference; not timing a wrong kernel\n", N, d->causal, worst);
        return 1;
    }
    return 0;
}

/* ---- timing ------------------------------------------------------------------------------------ */

typedef struct bufs {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
} bufs;

static qkv_status run_pass(const qkv_attn_desc *d, bufs *b, int with_bwd) {
    qkv_status st = qkv_attention_forward(d, b->q, b->k, b->v, b->out, b->lse, NULL);
    if (!st && with_bwd)
        st = qkv_attention_backward(d, b->q, b->k, b->v, b->out, b->lse, b->dout, b->dq, b->dk, b->dv);
    return st;
}

static double cpu_seconds(void) { /* this process's CPU time: immune to time-sharing */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best wall seconds per call within the budget (at least 2 calls, the first already
 * warm); *cpu gets the least CPU seconds of a call (equal to wall on an idle machine with
 * one thread; other tenants' load does not count in it). */
static double time_pass(const qkv_attn_desc *d, bufs *b, int with_bwd, double budget, double *cpu) {
    double best = INFINITY, best_cpu = INFINITY, spent = 0.0;
    for (int n = 0; n < 100 && (n < 2 || spent < budget); n++) {
        double c = cpu_seconds(), t = qkv__now();
        if (run_pass(d, b, with_bwd)) return NAN;
        t = qkv__now() - t;
        c = cpu_seconds() - c;
        spent += t;
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
        if (n >= 1 && t > 2.0) break; /* long calls: two samples are enough */
    }
    *cpu = best_cpu;
    return best;
}

/* The float32 and the BF16 forward called in alternation within the budget (at least 3 calls
 * each): the best wall seconds of each into *s32, *s16, and the least CPU seconds into *c32,
 * *c16. Returns nonzero on a failed call. */
static int time_fwd_pair(const qkv_attn_desc *d, bufs *b, double budget, double *s32, double *s16,
                         double *c32, double *c16) {
    double spent = 0.0;
    *s32 = *s16 = *c32 = *c16 = INFINITY;
    for (int n = 0; n < 100 && (n < 3 || spent < budget); n++)
        for (int which = 0; which < 2; which++) {
            double c = cpu_seconds(), t = qkv__now();
            qkv_status st = which ? qkv_attention_forward_bf16(d, b->q, b->k, b->v, b->out, b->lse)
                                  : qkv_attention_forward(d, b->q, b->k, b->v, b->out, b->lse, NULL);
            if (st) return 1;
            t = qkv__now() - t;
            c = cpu_seconds() - c;
            spent += t;
            double *s = which ? s16 : s32, *cc = which ? c16 : c32;
            if (t < *s) *s = t;
            if (c < *cc) *cc = c;
        }
    return 0;
}

/* The benches' inputs: xorshift64, uniform in [-1, 1). */
static float uniform_pm1(unsigned long long *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ---- the command line ------------------------------------------------------------------------- */

typedef struct cli_result {
    int n, ok;
    double gflop, proc_best, proc_median, fwd_best, max_diff;
} cli_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs argv (stdout to /dev/null, stderr to err_path); *wall gets exec-to-exit seconds.
 * posix_spawn, not fork: the bench's own pages are not copied, so the time is the child's. */
static int spawn_timed(char *const argv[], const char *err_path, double *wall) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa)) return -1;
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    extern char **environ;
    pid_t pid;
    double t = qkv__now();
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return -1;
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return -1;
    *wall = qkv__now() - t;
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : -1;
}

/* `qkv attention --q --k --v --out` on [1, H, N, D] files in a fresh folder, against the
 * same forward in this process. Returns 0 with r filled, nonzero (message printed) if it
 * could not be run or disagreed. */
static int bench_cli(int N, int threads, cli_result *r) {
    memset(r, 0, sizeof *r);
    r->n = N;
    r->gflop = 4.0 * H * (double)N * N * D * 1e-9;
    char exe[4096], dir[] = "/tmp/qkv-bench-attn-XXXXXX", path[5][4200], nthr[16];
    const char *names[5] = {"q.npy", "k.npy", "v.npy", "o.npy", "stderr.txt"};
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0 || !mkdtemp(dir)) {
        printf("command line: not measured (no executable path or temporary folder: %s)\n", strerror(errno));
        return 1;
    }
    exe[len] = '\0';
    for (int i = 0; i < 5; i++) snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    const size_t n = (size_t)H * N * D;
    const int64_t shape[4] = {1, H, N, D};
    float *qkv_in[3] = {qkv__alloc_aligned(n * sizeof(float)), qkv__alloc_aligned(n * sizeof(float)),
                        qkv__alloc_aligned(n * sizeof(float))};
    float *out = qkv__alloc_aligned(n * sizeof(float)), *lse = qkv__alloc_aligned((size_t)H * N * sizeof(float));
    qkv__npy got = {0};
    int fail = !qkv_in[0] || !qkv_in[1] || !qkv_in[2] || !out || !lse;
    unsigned long long s = 0x9E3779B97F4A7C15ULL + (unsigned)N;
    for (int t = 0; t < 3 && !fail; t++) {
        for (size_t j = 0; j < n; j++) qkv_in[t][j] = uniform_pm1(&s);
        fail = qkv__npy_save(path[t], qkv_in[t], 4, shape) != QKV_OK;
    }
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, 1, H, H, N, N, D);
    snprintf(nthr, sizeof nthr, "%d", threads);
    char *argv[] = {exe, "attention", "--q", path[0], "--k", path[1], "--v", path[2], "--out", path[3],
                    "--threads", nthr, NULL};
    double wall, proc[7], fwd[7];
    qkv_set_threads(threads);
    if (!fail) fail = qkv_attention_forward(&d, qkv_in[0], qkv_in[1], qkv_in[2], out, lse, NULL) != QKV_OK;
    if (!fail && spawn_timed(argv, path[4], &wall)) {
        char msg[512] = "";
        FILE *f = fopen(path[4], "r");
        if (f) {
            size_t m = fread(msg, 1, sizeof msg - 1, f);
            msg[m] = '\0';
            fclose(f);
        }
        printf("command line: `qkv attention` failed: %s\n", msg);
        fail = 1;
    }
    if (!fail && qkv__npy_load(path[3], &got) == QKV_OK && got.count == n) {
        for (size_t j = 0; j < n; j++) {
            double e = fabs((double)got.data[j] - (double)out[j]);
            if (!(e <= r->max_diff)) r->max_diff = e; /* NaN sticks */
        }
        r->ok = r->max_diff <= 1e-6; /* the same kernel on the same threads: the same floats */
        if (!r->ok) printf("command line: O.npy differs from the in-process forward by %.3g\n", r->max_diff);
    } else if (!fail) {
        printf("command line: O.npy unreadable or of the wrong size\n");
    }
    for (int i = 0; i < 7 && r->ok; i++) { /* alternate: both see the same machine */
        if (spawn_timed(argv, path[4], &proc[i])) r->ok = 0;
        double t = qkv__now();
        qkv_attention_forward(&d, qkv_in[0], qkv_in[1], qkv_in[2], out, lse, NULL);
        fwd[i] = qkv__now() - t;
    }
    if (r->ok) {
        qsort(proc, 7, sizeof *proc, cmp_double);
        qsort(fwd, 7, sizeof *fwd, cmp_double);
        r->proc_best = proc[0], r->proc_median = proc[3], r->fwd_best = fwd[0];
    }
    qkv_set_threads(0);
    qkv__npy_free(&got);
    for (int i = 0; i < 5; i++) unlink(path[i]);
    rmdir(dir);
    for (int t = 0; t < 3; t++) qkv__free_aligned(qkv_in[t]);
    qkv__free_aligned(out), qkv__free_aligned(lse);
    return !r->ok;
}

static double load_average(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

/* ---- peers ------------------------------------------------------------------------------------- */

typedef struct peer_row {
    char peer[32];
    int n, causal, bwd;
    double ms, cpu_ms;
    char skipped[160];
} peer_row;

static int json_str(const char *line, const char *key, char *out, size_t n) {
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    size_t i = 0;
    while (*p && *p != '"' && i + 1 < n) out[i++] = *p++;
    out[i] = '\0';
    return 1;
}

static int json_num(const char *line, const char *key, double *out) {
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    *out = strtod(p + strlen(pat), NULL);
    return 1;
}

/* Runs the peer script; fills rows (up to cap) and the OpenBLAS core name. */
static int run_peers(const int *sizes, int n_sizes, int threads, double budget, peer_row *rows,
                     int cap, char *core, size_t core_n) {
    char cmd[1024], list[256] = "";
    for (int i = 0; i < n_sizes; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", sizes[i]);
    const char *script = "bench/peers/attention_peers.py";
    FILE *probe = fopen(script, "r");
    if (!probe) return -1;
    fclose(probe);
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 %s "
             "--sizes %s --threads %d --heads %d --dim %d --budget %g 2>&1",
             threads, threads, script, list, threads, H, D, budget);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "\"info\"")) {
            json_str(line, "core", core, core_n);
            continue;
        }
        if (n >= cap || !strstr(line, "\"peer\"")) continue;
        peer_row r;
        memset(&r, 0, sizeof r);
        double x;
        json_str(line, "peer", r.peer, sizeof r.peer);
        if (json_num(line, "n", &x)) r.n = (int)x;
        if (json_num(line, "causal", &x)) r.causal = (int)x;
        char pass[16] = "";
        json_str(line, "pass", pass, sizeof pass);
        r.bwd = !strcmp(pass, "fwdbwd");
        r.ms = json_num(line, "ms", &x) ? x : NAN;
        r.cpu_ms = json_num(line, "cpu_ms", &x) ? x : NAN;
        json_str(line, "skipped", r.skipped, sizeof r.skipped);
        rows[n++] = r;
    }
    pclose(p);
    return n;
}

/* Peer time (ms; CPU ms when cpu) for a configuration; for "torch" the better of its two
 * variants. */
static double peer_ms(const peer_row *rows, int n, const char *peer, int N, int causal, int bwd,
                      int cpu, const char **which) {
    double best = NAN;
    for (int i = 0; i < n; i++) {
        const peer_row *r = &rows[i];
        if (r->n != N || r->skipped[0] || r->causal != causal || r->bwd != bwd) continue;
        if (strncmp(r->peer, peer, strlen(peer)) != 0) continue;
        double ms = cpu ? r->cpu_ms : r->ms;
        if (isnan(best) || ms < best) {
            best = ms;
            if (which) *which = r->peer;
        }
    }
    return best;
}

/* ---- the benchmark ---------------------------------------------------------------------------- */

typedef struct result {
    int n, causal, bwd;
    double s_all, s_one; /* seconds per call, all threads and 1 */
    double cpu_one;      /* CPU seconds of the 1-thread call */
    double cpu_all;      /* CPU seconds (all threads together) of the all-thread call */
    double gflop;
    double np_ms, torch_ms;
    const char *torch_which;
    /* the BF16 forward (fwd rows, where available): best wall seconds of it and of the
     * float32 forward timed in alternation with it, on all threads; CPU seconds on 1 thread */
    int has_bf16;
    double bf16_s, bf16_fp32_s, bf16_cpu1, bf16_fp32_cpu1, bf16_check;
} result;

int qkv__bench_attention(int argc, char **argv) {
    int sizes[MAX_SIZES] = {128, 512, 1024, 2048, 4096, 16384}, n_sizes = 6;
    int threads = qkv_get_threads(), peers = 1, decode = 1, bf16 = 1, cli_n = 4096;
    double budget = 0.3;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            n_sizes = 4, sizes[0] = 128, sizes[1] = 512, sizes[2] = 1024, sizes[3] = 2048;
            budget = 0.15, cli_n = 1024;
        } else if (!strcmp(a, "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *s = argv[++i]; *s && n_sizes < MAX_SIZES;) {
                char *end;
                long n = strtol(s, &end, 10);
                if (end == s || n < 1 || n > (1 << 20))
                    return qkv__cli_usage_error("bench attention", "--sizes: bad list '%s'", argv[i]);
                sizes[n_sizes++] = (int)n;
                s = *end == ',' ? end + 1 : end;
            }
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            long t;
            if (qkv__cli_read_long(argv[++i], 1, 1024, &t))
                return qkv__cli_usage_error("bench attention", "--threads must be an integer in [1, 1024] (got '%s')",
                                            argv[i]);
            threads = (int)t;
        } else if (!strcmp(a, "--budget") && i + 1 < argc) {
            float b;
            if (qkv__cli_read_float(argv[++i], &b) || !(b >= 0.01f && b <= 60.0f))
                return qkv__cli_usage_error("bench attention", "--budget must be a number of seconds in [0.01, 60] "
                                            "(got '%s')", argv[i]);
            budget = b;
        } else if (!strcmp(a, "--cli-n") && i + 1 < argc) {
            long v;
            if (qkv__cli_read_long(argv[++i], 0, 65536, &v))
                return qkv__cli_usage_error("bench attention", "--cli-n must be an integer in [0, 65536] (got '%s')",
                                            argv[i]);
            cli_n = (int)v;
        } else if (!strcmp(a, "--no-peers")) {
            peers = 0;
        } else if (!strcmp(a, "--no-decode")) {
            decode = 0;
        } else if (!strcmp(a, "--no-bf16")) {
            bf16 = 0;
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            int help = !strcmp(a, "--help") || !strcmp(a, "-h");
            fprintf(help ? stdout : stderr, "usage: qkv bench attention [--quick] [--sizes 128,512,...] [--threads N] "
                            "[--budget SEC] [--cli-n N] [--no-peers] [--no-decode] [--no-bf16] [--json FILE]\n");
            return help ? 0 : qkv__cli_usage_error("bench attention", "unknown option or missing value '%s'", a);
        }
    }
    const char *isa;
    double peak1 = measure_peak(1, &isa), peakN_measured = measure_peak(threads, &isa);
    /* a busy machine depresses the all-thread measurement: never below n x 1-thread peak */
    const int busy = peakN_measured < 0.97 * threads * peak1;
    double peakN = busy ? threads * peak1 : peakN_measured;
    if (threads == 1) peakN = peak1; /* a 1-thread run is timed in CPU time, like peak1 */
    printf("qkv bench attention: B=1 H=%d d=%d, simd %s, %d threads (1 thread in the 1t columns)\n", H,
           D, qkv_simd_name(), threads);
    printf("measured peak (%s): %.1f GFLOP/s on 1 thread (CPU time), %.1f on %d (wall clock)%s\n", isa, peak1,
           peakN_measured, threads, busy && threads > 1 ? "; the machine is busy: using threads x 1-thread peak" : "");
    if (bf16) { /* available: AVX512_BF16 on the CPU and the avx512 path in use */
        qkv_attn_desc probe;
        float z[8] = {0};
        qkv_attn_desc_init(&probe, 1, 1, 1, 1, 1, 8);
        if (qkv_attention_forward_bf16(&probe, z, z, z, z, NULL) != QKV_OK) {
            printf("bf16 forward: not measured (%s)\n", qkv_last_error());
            bf16 = 0;
        } else {
            printf("bf16 forward (AVX512_BF16 dot products, float32 softmax): timed against the float32 forward "
                   "call for call\n");
        }
    }
    double load0 = load_average();
    printf("load average at start: %.2f on %d cores (other tenants' work slows the wall-clock columns; the\n"
           "1-thread %% column uses CPU time and is not affected)\n", load0, (int)sysconf(_SC_NPROCESSORS_ONLN));
    fflush(stdout);

    result res[MAX_SIZES * 4];
    int n_res = 0;
    for (int si = 0; si < n_sizes; si++) {
        const int N = sizes[si];
        const size_t n = (size_t)H * N * D;
        bufs b;
        float **all[] = {&b.q, &b.k, &b.v, &b.out, &b.dout, &b.dq, &b.dk, &b.dv};
        int ok = 1;
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) ok &= !!(*all[j] = qkv__alloc_aligned(n * sizeof(float)));
        b.lse = qkv__alloc_aligned((size_t)H * N * sizeof(float));
        if (!ok || !b.lse) {
            fprintf(stderr, "bench attention: N=%d: out of memory\n", N);
            return 1;
        }
        unsigned long long s = 0x2545F4914F6CDD1DULL + (unsigned)N;
        for (size_t j = 0; j < n; j++) {
            float *dst[4] = {b.q, b.k, b.v, b.dout};
            for (int t = 0; t < 4; t++) dst[t][j] = uniform_pm1(&s);
        }
        for (int causal = 0; causal < 2; causal++) {
            qkv_attn_desc d;
            qkv_attn_desc_init(&d, 1, H, H, N, N, D);
            d.causal = causal;
            qkv_set_threads(threads);
            if (run_pass(&d, &b, 1) || check_rows(&d, b.q, b.k, b.v, b.out, b.lse, b.dout, b.dq)) {
                fprintf(stderr, "bench attention: N=%d causal=%d failed its check: %s\n", N, causal, qkv_last_error());
                return 1;
            }
            for (int bwd = 0; bwd < 2; bwd++) {
                result *r = &res[n_res++];
                memset(r, 0, sizeof *r);
                r->n = N, r->causal = causal, r->bwd = bwd;
                r->gflop = 4.0 * H * (double)N * N * D * (causal ? 0.5 : 1.0) * (bwd ? 3.5 : 1.0) * 1e-9;
                qkv_set_threads(threads);
                r->s_all = time_pass(&d, &b, bwd, budget, &r->cpu_all);
                qkv_set_threads(1);
                r->s_one = threads > 1 ? time_pass(&d, &b, bwd, budget, &r->cpu_one) : r->s_all;
                if (threads == 1) r->cpu_one = r->cpu_all;
                r->np_ms = r->torch_ms = NAN;
                printf("  N=%-6d %-7s %-8s %9.2f ms  %6.1f GFLOP/s  (%4.1f%% of peak)\n", N,
                       causal ? "causal" : "full", bwd ? "fwd+bwd" : "fwd", r->s_all * 1e3,
                       r->gflop / r->s_all, 100.0 * r->gflop / r->s_all / peakN);
                fflush(stdout);
                if (bf16 && !bwd) {
                    double c32a, c16a, s32b, s16b;
                    qkv_set_threads(threads);
                    if (qkv_attention_forward_bf16(&d, b.q, b.k, b.v, b.out, b.lse) ||
                        check_rows_bf16(&d, b.q, b.k, b.v, b.out, b.lse, &r->bf16_check) ||
                        time_fwd_pair(&d, &b, budget, &r->bf16_fp32_s, &r->bf16_s, &c32a, &c16a)) {
                        fprintf(stderr, "bench attention: bf16 N=%d causal=%d failed: %s\n", N, causal, qkv_last_error());
                        return 1;
                    }
                    qkv_set_threads(1);
                    if (time_fwd_pair(&d, &b, budget, &s32b, &s16b, &r->bf16_fp32_cpu1, &r->bf16_cpu1)) return 1;
                    r->has_bf16 = 1;
                    printf("  N=%-6d %-7s %-8s %9.2f ms  %6.1f GFLOP/s  (float32 %.2f ms call for call: %.2fx; "
                           "1 thread, CPU time: %.2fx; error %.2g of its bound)\n",
                           N, causal ? "causal" : "full", "bf16 fwd", r->bf16_s * 1e3, r->gflop / r->bf16_s,
                           r->bf16_fp32_s * 1e3, r->bf16_fp32_s / r->bf16_s, r->bf16_fp32_cpu1 / r->bf16_cpu1,
                           r->bf16_check);
                    fflush(stdout);
                }
            }
        }
        qkv_set_threads(0);
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) qkv__free_aligned(*all[j]);
        qkv__free_aligned(b.lse);
    }
    qkv_set_threads(0);

    cli_result cli = {0};
    if (cli_n > 0) {
        printf("command line: `qkv attention` at N=%d (.npy in and out), checked, then timed against the in-process "
               "forward ...\n", cli_n);
        fflush(stdout);
        bench_cli(cli_n, threads, &cli);
    }

    /* the peaks again: a shared machine may have disturbed the first measurement */
    {
        const char *isa2;
        double p1 = measure_peak(1, &isa2), pn = measure_peak(threads, &isa2);
        if (p1 > peak1 || pn > peakN_measured)
            printf("peak re-measured after the runs: %.1f GFLOP/s on 1 thread, %.1f on %d (the higher values are used)\n",
                   p1 > peak1 ? p1 : peak1, pn > peakN_measured ? pn : peakN_measured, threads);
        if (p1 > peak1) peak1 = p1;
        if (pn > peakN_measured) peakN_measured = pn;
        peakN = peakN_measured > 0.97 * threads * peak1 ? peakN_measured : threads * peak1;
        if (threads == 1) peakN = peak1;
    }

    static peer_row prow[256];
    int n_peer = 0;
    char core[64] = "?";
    if (peers) {
        printf("peers: NumPy + OpenBLAS and PyTorch (bench/peers/attention_peers.py, OPENBLAS_CORETYPE=SkylakeX) ...\n");
        fflush(stdout);
        n_peer = run_peers(sizes, n_sizes, threads, budget, prow, 256, core, sizeof core);
        if (n_peer < 0) printf("peers: skipped (bench/peers/attention_peers.py not found: run from the repository root)\n");
        for (int i = 0; i < n_peer; i++)
            if (prow[i].skipped[0] && (i == 0 || strcmp(prow[i].skipped, prow[i - 1].skipped)))
                printf("peers: %s N=%d skipped: %s\n", prow[i].peer, prow[i].n, prow[i].skipped);
        for (int i = 0; i < n_res; i++) {
            res[i].np_ms = peer_ms(prow, n_peer, "numpy", res[i].n, res[i].causal, res[i].bwd, threads == 1, NULL);
            res[i].torch_ms =
                peer_ms(prow, n_peer, "torch", res[i].n, res[i].causal, res[i].bwd, threads == 1, &res[i].torch_which);
        }
    }

    printf("\nload average: %.2f at start, %.2f now\n", load0, load_average());
    if (threads == 1)
        printf("\n1 thread: all times below (qkv, NumPy, PyTorch) are CPU times of single-threaded runs, which\n"
               "other tenants of a shared machine do not inflate.\n");
    printf("\n| N | mask | pass | qkv ms (%d thr) | GFLOP/s | %% of peak | 1 thread GFLOP/s | "
           "1 thread %% of peak (CPU time) | NumPy ms | qkv speedup | PyTorch ms | qkv speedup | bf16 ms | "
           "bf16 vs fp32 | bf16 vs fp32, 1 thread CPU |\n",
           threads);
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    if (threads == 1) /* one thread: every time in the table is CPU time, ours and the peers' */
        for (int i = 0; i < n_res; i++) res[i].s_all = res[i].s_one = res[i].cpu_one;
    for (int i = 0; i < n_res; i++) {
        const result *r = &res[i];
        char np[48] = "-", npx[24] = "-", tc[48] = "-", tcx[24] = "-";
        if (!isnan(r->np_ms)) {
            snprintf(np, sizeof np, "%.2f", r->np_ms);
            snprintf(npx, sizeof npx, "%.1fx", r->np_ms / (r->s_all * 1e3));
        }
        if (!isnan(r->torch_ms)) {
            snprintf(tc, sizeof tc, "%.2f", r->torch_ms);
            snprintf(tcx, sizeof tcx, "%.1fx", r->torch_ms / (r->s_all * 1e3));
        }
        char b16[24] = "-", b16x[24] = "-", b16c[24] = "-";
        if (r->has_bf16) {
            snprintf(b16, sizeof b16, "%.2f", r->bf16_s * 1e3);
            snprintf(b16x, sizeof b16x, "%.2fx", r->bf16_fp32_s / r->bf16_s);
            snprintf(b16c, sizeof b16c, "%.2fx", r->bf16_fp32_cpu1 / r->bf16_cpu1);
        }
        printf("| %d | %s | %s | %.2f | %.1f | %.0f%% | %.1f | %.0f%% | %s | %s | %s | %s | %s | %s | %s |\n", r->n,
               r->causal ? "causal" : "none", r->bwd ? "fwd+bwd" : "fwd", r->s_all * 1e3, r->gflop / r->s_all,
               100.0 * r->gflop / r->s_all / peakN, r->gflop / r->s_one,
               100.0 * r->gflop / r->cpu_one / peak1, np,
               npx, tc, tcx, b16, b16x, b16c);
    }
    printf("(%% of peak: wall clock against the all-thread peak. 1 thread %% of peak: FLOPs per CPU-second of the\n"
           "one thread against the 1-thread peak, which other tenants' load does not distort. NumPy has no autograd: forward only. PyTorch: the faster of its private _scaled_dot_product_attention "
           "and the explicit formula. OpenBLAS core: %s. bf16: the BF16 forward and the float32 one timed call for call, best of each; "
           "its error bound is in include/qkv.h.)\n", core);

    if (cli.ok)
        printf("\ncommand line (`qkv attention --q --k --v --out`, N=%d, no mask, %d threads, exec to exit, 7 runs "
               "alternating with the in-process forward): whole process %.1f ms best (median %.1f) = %.1f GFLOP/s, "
               "%.0f%% of peak; the forward alone %.1f ms (%.0f%%); outside the forward %.1f ms (reading %.0f MB, "
               "writing %.0f MB, starting up)\n",
               cli.n, threads, cli.proc_best * 1e3, cli.proc_median * 1e3, cli.gflop / cli.proc_best,
               100.0 * cli.gflop / cli.proc_best / peakN, cli.fwd_best * 1e3, 100.0 * cli.gflop / cli.fwd_best / peakN,
               (cli.proc_best - cli.fwd_best) * 1e3, 3.0 * H * cli.n * D * 4 * 1e-6, 1.0 * H * cli.n * D * 4 * 1e-6);

    /* decoding: one query per head against a KV cache, bound by memory bandwidth */
    double bw1 = 0, bwN = 0;
    int ctx[3] = {1024, 4096, 32768};
    double dec_ms[3] = {0}, dec_gbs[3] = {0};
    if (decode) {
        bw1 = measure_read_bw(1), bwN = measure_read_bw(threads);
        printf("\ndecode (KV cache, one layer: 1 new query x %d heads, d=%d): read bandwidth measured %.1f GB/s (1 thread), %.1f (%d)\n",
               H, D, bw1, bwN, threads);
        for (int ci = 0; ci < 3; ci++) {
            qkv_kvcache *cache = NULL;
            if (qkv_kvcache_create(1, H, D, ctx[ci], &cache)) break;
            float *kvn = qkv__alloc_aligned(sizeof(float) * (size_t)H * ctx[ci] * D);
            float qv[H * D], o[H * D];
            for (int j = 0; j < H * D; j++) qv[j] = (float)((j * 37) % 101) / 101.0f - 0.5f;
            for (size_t j = 0; kvn && j < (size_t)H * ctx[ci] * D; j++) kvn[j] = (float)((j * 7919) % 1009) / 1009.0f - 0.5f;
            if (!kvn || qkv_kvcache_append(cache, 0, ctx[ci], kvn, kvn, 0, 0) || qkv_kvcache_commit(cache, ctx[ci])) {
                qkv__free_aligned(kvn), qkv_kvcache_free(cache);
                break;
            }
            double best = INFINITY, spent = 0;
            for (int r = 0; r < 1000 && (r < 5 || spent < budget); r++) {
                double t = qkv__now();
                qkv_kvcache_attend(cache, 0, H, 1, qv, 0, 0, o, 0.0f, 1.0f);
                t = qkv__now() - t;
                spent += t;
                if (t < best) best = t;
            }
            double bytes = 2.0 * H * ctx[ci] * D * sizeof(float);
            dec_ms[ci] = best * 1e3, dec_gbs[ci] = bytes / best * 1e-9;
            printf("  context %-6d %8.3f ms per call  %6.1f GB/s of K/V (%.0f%% of measured read bandwidth; %s)\n",
                   ctx[ci], dec_ms[ci], dec_gbs[ci], 100.0 * dec_gbs[ci] / (bwN > bw1 ? bwN : bw1),
                   bytes > 32e6 ? "from memory" : "mostly from cache");
            qkv__free_aligned(kvn), qkv_kvcache_free(cache);
        }
    }

    /* JSON */
    FILE *outs[2] = {stdout, json_path ? fopen(json_path, "w") : NULL};
    for (int o = 0; o < 2; o++) {
        FILE *f = outs[o];
        if (!f) continue;
        if (o == 0) fprintf(f, "\nJSON:\n");
        fprintf(f, "{\"bench\": \"attention\", \"B\": 1, \"H\": %d, \"d\": %d, \"simd\": \"%s\", \"threads\": %d, "
                   "\"peak_gflops\": {\"isa\": \"%s\", \"one_thread\": %.1f, \"all_threads\": %.1f, \"all_threads_measured\": %.1f}, \"openblas_core\": \"%s\",\n"
                   " \"rows\": [\n", H, D, qkv_simd_name(), threads, isa, peak1, peakN, peakN_measured, core);
        for (int i = 0; i < n_res; i++) {
            const result *r = &res[i];
            fprintf(f, "  {\"n\": %d, \"causal\": %d, \"pass\": \"%s\", \"gflop\": %.4f, \"ms\": %.4f, \"gflops\": %.2f, "
                       "\"peak_fraction\": %.4f, \"ms_1thread\": %.4f, \"gflops_1thread\": %.2f, \"peak_fraction_1thread\": %.4f",
                    r->n, r->causal, r->bwd ? "fwd+bwd" : "fwd", r->gflop, r->s_all * 1e3, r->gflop / r->s_all,
                    r->gflop / r->s_all / peakN, r->s_one * 1e3, r->gflop / r->s_one, r->gflop / r->cpu_one / peak1);
            if (!isnan(r->np_ms)) fprintf(f, ", \"numpy_ms\": %.4f", r->np_ms);
            if (!isnan(r->torch_ms)) fprintf(f, ", \"torch_ms\": %.4f, \"torch_variant\": \"%s\"", r->torch_ms, r->torch_which);
            if (r->has_bf16)
                fprintf(f, ", \"bf16_ms\": %.4f, \"bf16_fp32_ms\": %.4f, \"bf16_speedup\": %.3f, \"bf16_cpu_ms_1thread\": %.4f, "
                           "\"bf16_fp32_cpu_ms_1thread\": %.4f, \"bf16_speedup_1thread_cpu\": %.3f, \"bf16_error_vs_bound\": %.3f",
                        r->bf16_s * 1e3, r->bf16_fp32_s * 1e3, r->bf16_fp32_s / r->bf16_s, r->bf16_cpu1 * 1e3,
                        r->bf16_fp32_cpu1 * 1e3, r->bf16_fp32_cpu1 / r->bf16_cpu1, r->bf16_check);
            fprintf(f, "}%s\n", i + 1 < n_res ? "," : "");
        }
        fprintf(f, " ],\n \"decode\": {\"read_gbs_1thread\": %.2f, \"read_gbs\": %.2f, \"rows\": [", bw1, bwN);
        for (int ci = 0; ci < 3 && decode; ci++)
            fprintf(f, "%s{\"context\": %d, \"ms\": %.4f, \"gbs\": %.2f}", ci ? ", " : "", ctx[ci], dec_ms[ci], dec_gbs[ci]);
        fprintf(f, "]}");
        if (cli.ok)
            fprintf(f, ",\n \"cli\": {\"n\": %d, \"process_ms\": %.3f, \"process_median_ms\": %.3f, \"forward_ms\": %.3f, "
                       "\"process_peak_fraction\": %.4f, \"forward_peak_fraction\": %.4f, \"max_diff\": %.3g}",
                    cli.n, cli.proc_best * 1e3, cli.proc_median * 1e3, cli.fwd_best * 1e3, cli.gflop / cli.proc_best / peakN,
                    cli.gflop / cli.fwd_best / peakN, cli.max_diff);
        fprintf(f, "}\n");
        if (o == 1) fclose(f);
    }
    return 0;
}
