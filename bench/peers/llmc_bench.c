/*
 * llmc_bench.c -- llm.c's CPU trainer (karpathy/llm.c train_gpt2.c, vendored unchanged in
 * bench/peers/llmc/) timed on the configuration `qkv bench train` times, in the same run: one
 * training step = gpt2_forward + gpt2_zero_grad + gpt2_backward + gpt2_update, exactly the
 * calls of llm.c's own training loop (minus its data loader), on one B x T batch of random tokens.
 *
 *     gcc -Ofast -Wno-unused-result -Wno-ignored-pragmas -Wno-unknown-attributes -march=native \
 *         -fopenmp -DOMP bench/peers/llmc_bench.c -lm -lgomp -o build/peers/llmc_bench
 *     OMP_NUM_THREADS=2 build/peers/llmc_bench --layers 4 --heads 8 --embd 256 --ctx 128 \
 *         --vocab 4096 --batch 16 --steps 3
 *
 * Like llm.c's test_gpt2.c it defines TESTING and includes train_gpt2.c, so llm.c's main() is
 * skipped and its functions run unmodified. The model comes from a checkpoint this program writes
 * to a temporary file (llm.c has no random init in C): the version-3 header (magic 20240326,
 * maxT, V, L, NH, C, padded V) and GPT-2's init, N(0, 0.02) for wte, wpe and the matrices, the
 * two residual projections (attproj, fcproj) N(0, 0.02 / sqrt(2L)), LayerNorm weights 1, biases
 * 0, and the padded wte rows 0 (as llm.c's train_gpt2.py writes them). AdamW is llm.c main's:
 * lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 0; llm.c has no gradient clipping.
 *
 * Prints llm.c's own log lines, then one JSON line like bench/peers/train_peers.py:
 * {"peer": "llm.c", "ms_per_step": median of the timed steps, "tokens_per_s": ..., ...}.
 */
#define TESTING
#include "llmc/train_gpt2.c"

#include <errno.h>

/* llm.c's headers define these as C99 `inline` functions with no external definition: a call
 * the compiler does not inline (cold code, -O0) would not link. These declarations make this
 * translation unit emit the one external definition of each (C11 6.7.4p7). */
extern inline FILE *fopen_check(const char *path, const char *mode, const char *file, int line);
extern inline void fread_check(void *ptr, size_t size, size_t nmemb, FILE *stream, const char *file, int line);
extern inline void fclose_check(FILE *fp, const char *file, int line);
extern inline void fseek_check(FILE *fp, long off, int whence, const char *file, int line);
extern inline void fwrite_check(void *ptr, size_t size, size_t nmemb, FILE *stream, const char *file, int line);
extern inline void *malloc_check(size_t size, const char *file, int line);
extern inline void create_dir_if_not_exists(const char *dir);
extern inline int find_max_step(const char *output_log_dir);
extern inline unsigned long long randint64(mt19937_state *state);
extern inline float randfloat32(mt19937_state *state);
extern inline double randfloat64(mt19937_state *state);

#define LLMC_COMMIT "db2454f88f1cdf0568c76d4c4bf2b1e0ed508cf0"

static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;

static uint64_t bench_next(void) { /* splitmix64 */
    uint64_t z = (bench_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double bench_uniform(void) { /* (0, 1) */
    return ((double)(bench_next() >> 11) + 0.5) / 9007199254740992.0;
}

static void bench_normal(float *x, size_t n, float std) { /* Box-Muller */
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(bench_uniform())), th = 2.0 * M_PI * bench_uniform();
        x[i] = (float)(r * cos(th)) * std;
        if (i + 1 < n) x[i + 1] = (float)(r * sin(th)) * std;
    }
}

static void bench_fill(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

/* writes the checkpoint; returns 0 or -1 (errno set) */
static int write_checkpoint(FILE *f, int maxT, int V, int Vp, int L, int NH, int C) {
    int header[256] = {0};
    header[0] = 20240326;
    header[1] = 3;
    header[2] = maxT;
    header[3] = V;
    header[4] = L;
    header[5] = NH;
    header[6] = C;
    header[7] = Vp;
    if (fwrite(header, sizeof(int), 256, f) != 256) return -1;
    GPT2Config cfg = {maxT, V, Vp, L, NH, C};
    size_t sizes[NUM_PARAMETER_TENSORS], n = 0;
    fill_in_parameter_sizes(sizes, cfg);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) n += sizes[i];
    float *p = (float *)malloc(n * sizeof(float));
    if (!p) return -1;
    float *q = p;
    float proj_std = 0.02f / sqrtf(2.0f * (float)L);
    /* order and shapes: llm.c's ParameterTensors / fill_in_parameter_sizes */
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t m = sizes[i];
        switch (i) {
        case 0: /* wte (Vp, C): real rows random, padded rows zero */
            bench_normal(q, (size_t)V * C, 0.02f);
            bench_fill(q + (size_t)V * C, m - (size_t)V * C, 0.0f);
            break;
        case 1: case 4: case 10: bench_normal(q, m, 0.02f); break;   /* wpe, qkvw, fcw */
        case 6: case 12: bench_normal(q, m, proj_std); break;        /* attprojw, fcprojw */
        case 2: case 8: case 14: bench_fill(q, m, 1.0f); break;      /* ln1w, ln2w, lnfw */
        default: bench_fill(q, m, 0.0f); break;                      /* biases */
        }
        q += m;
    }
    int rc = fwrite(p, sizeof(float), n, f) == n ? 0 : -1;
    free(p);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int L = 4, NH = 8, C = 256, T = 128, V = 4096, B = 8, steps = 3, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *dst = !strcmp(a, "--layers") ? &L : !strcmp(a, "--heads") ? &NH : !strcmp(a, "--embd") ? &C
                 : !strcmp(a, "--ctx") ? &T : !strcmp(a, "--vocab") ? &V : !strcmp(a, "--batch") ? &B
                 : !strcmp(a, "--steps") ? &steps : !strcmp(a, "--threads") ? &threads : NULL;
        char *end = NULL;
        long v = (dst && i + 1 < argc) ? strtol(argv[i + 1], &end, 10) : 0;
        if (!dst || !end || *end || v < 1 || v > 1000000) {
            fprintf(stderr, "llmc_bench: bad argument '%s'\nusage: llmc_bench [--layers L] [--heads H] "
                            "[--embd C] [--ctx T] [--vocab V] [--batch B] [--steps S] [--threads N]\n", a);
            return 2;
        }
        *dst = (int)v;
        i++;
    }
    if (C % NH) {
        fprintf(stderr, "llmc_bench: --embd %d is not a multiple of --heads %d\n", C, NH);
        return 2;
    }
#ifdef OMP
    if (threads) omp_set_num_threads(threads);
    threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    int Vp = (V + 127) / 128 * 128; /* llm.c pads the vocabulary to a multiple of 128 */

    /* the checkpoint: a temporary file, removed as soon as llm.c has read it */
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qkv_llmc_XXXXXX.bin", dir && *dir ? dir : "/tmp");
    int fd = mkstemps(path, 4);
    if (fd < 0) {
        fprintf(stderr, "llmc_bench: cannot create a temporary checkpoint %s: %s\n", path, strerror(errno));
        return 1;
    }
    FILE *f = fdopen(fd, "wb");
    int werr = !f || write_checkpoint(f, T, V, Vp, L, NH, C) != 0;
    if (f && fclose(f) != 0) werr = 1;
    if (werr) {
        fprintf(stderr, "llmc_bench: cannot write the checkpoint %s: %s\n", path, strerror(errno));
        unlink(path);
        return 1;
    }
    GPT2 model;
    gpt2_build_from_checkpoint(&model, path);
    unlink(path);

    /* B x (T+1) random tokens: inputs are the first T, targets the last T (as train_peers.py) */
    size_t BT = (size_t)B * T;
    int *x = (int *)mallocCheck((size_t)B * (T + 1) * sizeof(int));
    int *in = (int *)mallocCheck(BT * sizeof(int)), *tg = (int *)mallocCheck(BT * sizeof(int));
    for (size_t i = 0; i < (size_t)B * (T + 1); i++) x[i] = (int)(bench_next() % (uint64_t)V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            in[(size_t)b * T + t] = x[(size_t)b * (T + 1) + t];
            tg[(size_t)b * T + t] = x[(size_t)b * (T + 1) + t + 1];
        }

    double *times = (double *)mallocCheck((size_t)steps * sizeof(double));
    float first_loss = 0.0f, last_loss = 0.0f;
    for (int step = 0; step <= steps; step++) { /* step 0 warms up (llm.c allocates lazily) */
        double t0 = now_s();
        gpt2_forward(&model, in, tg, B, T);
        gpt2_zero_grad(&model);
        gpt2_backward(&model);
        gpt2_update(&model, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, step + 1);
        double dt = now_s() - t0;
        if (step == 0) first_loss = model.mean_loss;
        else times[step - 1] = dt;
        last_loss = model.mean_loss;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    double ms = 1e3 * med;

    /* GPT-2 init on random tokens: first loss ln V + 0.02^2 C / 2 (the check qkv makes) */
    double expect = log((double)V) + 0.0002 * C;
    if (fabs((double)first_loss - expect) > 0.1)
        fprintf(stderr, "llmc_bench: WARNING: first loss %.4f, expected about %.4f (ln V + 0.0002 C)\n",
                first_loss, expect);
    fflush(stdout);
    printf("{\"peer\": \"llm.c\", \"version\": \"%.12s\", \"core\": \"\", \"threads\": %d, "
           "\"ms_per_step\": %.3f, \"tokens_per_s\": %.1f, \"params\": %zu, \"padded_vocab\": %d, "
           "\"first_loss\": %.6f, \"last_loss\": %.6f}\n",
           LLMC_COMMIT, threads, ms, (double)BT / med, model.num_parameters, Vp, first_loss, last_loss);
    fflush(stdout);
    free(times);
    free(x);
    free(in);
    free(tg);
    gpt2_free(&model);
    return 0;
}
