/*
 * bench_model.c -- `qkv bench model`: a model's shapes with random weights made here (GPT-2
 * small, 124M parameters, by default; SmolLM2-135M or Qwen2.5-0.5B with --shape), prompt
 * processing at 128 and 1024 tokens, generation (F32, BF16 and Q8_0 weights), peak memory,
 * against the machine's own bounds (FMA peak and read bandwidth, measured here) and two peers
 * on the same weights in the same run: PyTorch (bench/peers/model_peers.py for GPT-2,
 * llama_peers.py for the Llama family, with OPENBLAS_CORETYPE=SkylakeX, its best OpenBLAS
 * kernel on this machine) and, for GPT-2, llama.cpp's llama-bench (built by
 * tools/llama_bench.sh) on F32, F16 and Q8_0 GGUFs of the weights, written by qkv's GGUF
 * writer with llama.cpp's own GPT-2 vocabulary (its models/ggml-vocab-gpt-2.gguf).
 *
 *   qkv bench model [--shape gpt2, smollm2 or qwen2.5] [--threads N] [--rounds R] [--reps N]
 *                   [--gen N] [--no-peers] [--no-llama] [--build-peers] [--quick]
 *
 * --rounds: timing rounds (default 3, 1 with --quick); --reps: runs of each test in a round,
 * the same for qkv and llama-bench (default 1); --no-llama / --no-peers: without llama.cpp /
 * without both peers; --build-peers: build llama-bench first (tools/llama_bench.sh) if needed.
 *
 * Checks first, then times: our AVX-512 and OpenBLAS sgemm paths must agree on the logits,
 * KV-cache generation must pick the same tokens as full forward passes, the PyTorch peer must
 * compute the same logits from the checkpoint we hand it, llama-bench must load each GGUF (a
 * type it refuses is dropped, saying why), and llama.cpp's greedy tokens on the F32 GGUF are
 * compared with qkv's (node-llama-cpp's prebuilt library, when tests/node_modules has it).
 * Timing goes in rounds (3 by default): each round times qkv's prompts and generations, then
 * runs llama-bench once, so that both see the same load on a shared machine; the tables show
 * the medians over the rounds. Each round also times the sgemm alone on the block products
 * (1024 rows) and the read loop over the weights, right before the 1024-token prompt and the F32
 * generation: what those two reach at that moment, beside the run's best bounds.
 */
#include "cli/cli.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/params.h" /* qkv__model_params_block: the read pass over the weights */
#include "tokenizer/tok_export.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t bench_rng = 0x853c49e6748fea9bull;

static float bench_frand(void) {
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (float)((double)(bench_rng >> 40) / 16777216.0 * 2.0 - 1.0);
}

/* The shapes: GPT-2 small, and two Llama-family models people run today (their published
 * config.json, with n_ctx cut to 2048 so that the KV cache stays small; the timed prompts are
 * at most 1024 tokens, so nothing timed depends on it). */
typedef struct {
    const char *name;  /* --shape */
    const char *title; /* the table's */
    const char *ctx_note;
    qkv_model_config cfg;
} bench_shape;

static const bench_shape shapes[] = {
    {"gpt2", "GPT-2 small", "",
     {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_ctx = 1024, .vocab_size = 50257, .layer_norm_eps = 1e-5f}},
    {"smollm2", "SmolLM2-135M", ", n_ctx 2048 of its 8192 to save cache memory",
     {.n_layer = 30, .n_head = 9, .n_embd = 576, .n_ctx = 2048, .vocab_size = 49152, .layer_norm_eps = 1e-5f,
      .family = "llama", .n_kv_head = 3, .head_dim = 64, .n_ff = 1536, .norm = QKV_NORM_RMS,
      .mlp = QKV_MLP_SWIGLU, .pos = QKV_POS_ROPE, .bias = QKV_BIAS_NONE, .rope_theta = 100000.0f}},
    {"qwen2.5", "Qwen2.5-0.5B", ", n_ctx 2048 of its 32768 to save cache memory",
     {.n_layer = 24, .n_head = 14, .n_embd = 896, .n_ctx = 2048, .vocab_size = 151936, .layer_norm_eps = 1e-6f,
      .family = "qwen2", .n_kv_head = 2, .head_dim = 64, .n_ff = 4864, .norm = QKV_NORM_RMS,
      .mlp = QKV_MLP_SWIGLU, .pos = QKV_POS_ROPE, .bias = QKV_BIAS_QKV, .rope_theta = 1000000.0f}},
};

/* Random weights for any family, drawn in block order: every parameter 0.05 * U(-1, 1), every
 * norm weight (and QK-norm weight) 1, the token embeddings spread x6 so that the logits have
 * clear argmaxes. For GPT-2 this is the same block, draw for draw, as earlier versions made. */
static qkv_model *make_model(const qkv_model_config *cfg) {
    qkv_model *m = NULL;
    if (qkv__model_create(cfg, &m)) return NULL;
    const qkv_model_config *c = qkv_model_get_config(m); /* defaults filled in */
    size_t n, sizes[QKV__N_KINDS];
    float *b = qkv__model_params_block(m, &n);
    for (size_t i = 0; i < n; i++) b[i] = 0.05f * bench_frand();
    qkv__param_sizes(c, sizes);
    qkv__params p;
    qkv__point_params(c, b, &p);
    float **kind = (float **)&p; /* QKV__N_KINDS pointers in kind order (params.h) */
    static const int ones[] = {QKV__P_LN1_W, QKV__P_LN2_W, QKV__P_LNF_W, QKV__P_QN_W, QKV__P_KN_W};
    for (size_t k = 0; k < sizeof ones / sizeof ones[0]; k++)
        for (size_t i = 0; i < sizes[ones[k]]; i++) kind[ones[k]][i] = 1.0f;
    for (size_t i = 0; i < sizes[QKV__P_WTE]; i++) p.wte[i] *= 6.0f; /* spread the logits: clear argmaxes */
    return m;
}

/* The 1-minute load average: other work on a shared machine lowers every number here. */
static double load_average(void) {
    double la = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &la) != 1) la = -1;
        fclose(f);
    }
    return la;
}

/* The machine's read bandwidth (GB/s): the best of 8 passes over 256 MB (8 times the L3)
 * on huge pages, as the weights are (on 4 KB pages the TLB misses cost a third of it). This
 * VM's bandwidth swings 30-81 GB/s from one minute to the next (other tenants), so the bench
 * takes it at the start and at the end, and keeps the best: the bound is what the machine can
 * do, not what it did in one unlucky moment. */
static double read_bound(int threads) {
    size_t n = (size_t)1 << 26; /* (less than the model: the peak memory stays the model's) */
    float *buf = qkv__alloc_params(n);
    if (!buf) return NAN;
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double bw = qkv__read_bw_avx512(buf, n, 8, threads);
    free(buf);
    return bw;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The median of the finite positive values among v[0..n) (failed runs left out), or NAN. */
static double median_ok(const double *v, int n) {
    double w[64];
    int k = 0;
    for (int i = 0; i < n && k < 64; i++)
        if (isfinite(v[i]) && v[i] > 0) w[k++] = v[i];
    return k ? median(w, k) : NAN;
}

/* Prompt tokens/s over reps runs (median), last-position logits only (as llama-bench). */
static double time_prompt_opts(qkv_model *m, const int *ids, int n, int reps, float *last,
                               const qkv_forward_opts *o) {
    double t[16];
    if (reps > 16) reps = 16;
    if (qkv_model_forward(m, ids, n, o, NULL, last, NULL)) return -1; /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = qkv__now();
        if (qkv_model_forward(m, ids, n, o, NULL, last, NULL)) return -1;
        t[r] = n / (qkv__now() - t0);
    }
    return median(t, reps);
}

typedef struct {
    double t_first, t_last;
    int count;
} gen_clock;

static int on_gen_token(void *user, int id) {
    (void)id;
    gen_clock *g = user;
    double now = qkv__now();
    if (g->count++ == 0) g->t_first = now;
    g->t_last = now;
    return 0;
}

static double time_prompt(qkv_model *m, const int *ids, int n, int reps, float *last) {
    return time_prompt_opts(m, ids, n, reps, last, NULL);
}

/* Generation tokens/s: the steps after the first token (the prompt's pass excluded). */
static double time_generate(qkv_model *m, const int *prompt, int n_prompt, int n_gen, int *out) {
    qkv_sampler greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    gen_clock g = {0};
    int n_out = 0;
    if (qkv_model_generate(m, prompt, n_prompt, n_gen, &greedy, on_gen_token, &g, out, &n_out)) return -1;
    if (n_out < 2) return -1;
    return (n_out - 1) / (g.t_last - g.t_first);
}

/* The F32 sgemm alone on a layer's block products (q|k|v, output, MLP in, MLP out) at n rows,
 * GFLOP/s, the best of 2 passes: what the prompt's GEMMs reach at that moment, against which
 * the prompt's own fraction of the FLOP bound reads (the rest: attention, norms, GELU). */
static double time_block_gemms(const qkv__dims *dm, int n) {
    const int shp[4][2] = {{dm->C, dm->W}, {dm->Hd, dm->C}, {dm->C, dm->F2}, {dm->F, dm->C}};
    size_t max_in = 0, max_out = 0, max_w = 0; /* one buffer each, the largest product's size */
    double flops = 0;
    for (int s = 0; s < 4; s++) {
        const size_t in = (size_t)shp[s][0], out = (size_t)shp[s][1];
        if (in > max_in) max_in = in;
        if (out > max_out) max_out = out;
        if (in * out > max_w) max_w = in * out;
        flops += 2.0 * n * in * out;
    }
    float *x = malloc(sizeof(float) * n * max_in), *w = malloc(sizeof(float) * max_w),
          *y = malloc(sizeof(float) * n * max_out);
    double best = NAN;
    if (x && w && y) {
        for (size_t i = 0; i < (size_t)n * max_in; i++) x[i] = bench_frand();
        for (size_t i = 0; i < max_w; i++) w[i] = 0.02f * bench_frand();
        best = 0;
        for (int pass = 0; pass < 2; pass++) {
            double t0 = qkv__now();
            for (int s = 0; s < 4; s++) qkv__linear(x, shp[s][0], n, shp[s][0], shp[s][1], w, NULL, y);
            best = fmax(best, flops / (qkv__now() - t0) * 1e-9);
        }
    }
    free(x), free(w), free(y);
    return best;
}

/* s into dst[cap], cut to fit */
static void copy_str(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* rel beside the executable (<its folder>/../rel: build/qkv in a checkout), else from the
 * working directory, in path; NULL when neither passes access(mode). */
static const char *beside_exe(const char *rel, int mode, char *path, size_t cap) {
    char exe[2048], cand[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand, sizeof cand, "%s/../%s", exe, rel);
            if (access(cand, mode) == 0) {
                char real[4096]; /* without the "build/../" */
                copy_str(path, cap, realpath(cand, real) ? real : cand);
                return path;
            }
        }
    }
    if (access(rel, mode) != 0) return NULL;
    copy_str(path, cap, rel);
    return path;
}

static const char *peer_script(const char *name) {
    static char path[4096];
    char rel[256];
    snprintf(rel, sizeof rel, "bench/peers/%s", name);
    return beside_exe(rel, R_OK, path, sizeof path);
}

/* fn(arg) in a child process: the file writers build the whole file in memory (as large as
 * the weights), which would otherwise count in the peak memory reported below. The child only
 * reads the parameters (copy-on-write: no copy) and runs no OpenMP. */
static qkv_status in_child(qkv_status (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return fn(arg);
    if (pid == 0) {
        qkv_status st = fn(arg);
        if (st) fprintf(stderr, "qkv bench model: %s\n", qkv_last_error());
        _exit(st ? 1 : 0);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? QKV_OK : QKV_EIO;
}

typedef struct {
    const qkv_model *m;
    const char *path, *vocab; /* the file or folder; the GGUF's tokenizer source */
    uint32_t type;            /* GGUF matrices */
} file_job;

static qkv_status save_job(void *arg) {
    const file_job *j = arg;
    return qkv__model_save(j->m, j->path);
}

/* What `qkv convert --to gguf --type T --tokenizer VOCAB` writes, from the model in memory. */
static qkv_status gguf_job(void *arg) {
    const file_job *j = arg;
    const int nv = qkv_model_get_config(j->m)->vocab_size;
    qkv__gguf_writer *w = qkv__gguf_writer_new();
    qkv_status st = w ? qkv__gguf_export_model(j->m, w, j->type, "qkv bench model (random weights)")
                      : qkv__fail(QKV_ENOMEM, "out of memory");
    qkv__tok_vocab v;
    if (!st && !(st = qkv__tok_vocab_open(j->vocab, nv, &v))) {
        st = qkv__tok_vocab_to_gguf(&v, nv, w);
        qkv__tok_vocab_free(&v);
    }
    if (!st) st = qkv__gguf_writer_save(w, j->path);
    qkv__gguf_writer_free(w);
    return st;
}

static qkv_status save_checkpoint(const qkv_model *m, const char *dir) {
    file_job j = {.m = m, .path = dir};
    return in_child(save_job, &j);
}

/* Runs the PyTorch peer; returns its JSON (last stdout line) or NULL. */
static json_t *run_peer(const char *name, const char *dir, int threads, int reps, int n_gen) {
    const char *script = peer_script(name);
    if (!script || access("/usr/bin/python3", X_OK) != 0) return NULL;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=%d /usr/bin/python3 '%s' '%s' --threads %d "
             "--reps %d --gen %d",
             threads, script, dir, threads, reps, n_gen);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char line[65536], last[65536] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    if (rc != 0 || !last[0]) {
        fprintf(stderr, "qkv bench model: the PyTorch peer failed (status %d)\n", rc);
        return NULL;
    }
    return json_loads(last, 0, NULL);
}

static double jnum(json_t *o, const char *k) {
    json_t *v = o ? json_object_get(o, k) : NULL;
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}

static void row(const char *name, double ours, double peer, double bound, const char *bound_name) {
    char peer_s[32] = "-", ratio_s[32] = "-", bound_s[32] = "-", frac_s[32] = "-";
    if (isfinite(peer) && peer > 0) {
        snprintf(peer_s, sizeof peer_s, "%.1f", peer);
        snprintf(ratio_s, sizeof ratio_s, "%.2fx", ours / peer);
    }
    if (isfinite(bound) && bound > 0) {
        snprintf(bound_s, sizeof bound_s, "%.0f (%s)", bound, bound_name);
        snprintf(frac_s, sizeof frac_s, "%.2f", ours / bound);
    }
    printf("| %-28s | %9.1f | %9s | %8s | %-20s | %6s |\n", name, ours, peer_s, ratio_s, bound_s, frac_s);
}

/* ---- llama.cpp's llama-bench: the same-run peer on GGUFs of the same weights (GPT-2) ---- */

enum { LT_F32, LT_F16, LT_Q8, LT_N };        /* the GGUFs' matrix types */
enum { TS_PP128, TS_PP1024, TS_GEN, TS_N };  /* llama-bench's tests: -p 128,1024 -n n_gen */
#define MAX_ROUNDS 16

static const char *const lt_name[LT_N] = {"F32", "F16", "Q8_0"};
static const char *const lt_key[LT_N] = {"f32", "f16", "q8_0"};
static const uint32_t lt_ggml[LT_N] = {QKV__GGML_F32, QKV__GGML_F16, QKV__GGML_Q8_0};
static const char *const ts_key[TS_N] = {"pp128", "pp1024", "gen"};

typedef struct {
    char bin[4096];           /* llama-bench */
    char vocab[4096];         /* llama.cpp's models/ggml-vocab-gpt-2.gguf */
    char file[LT_N][4096];    /* the GGUFs; "" for a type dropped */
    char why[LT_N][320];      /* why dropped */
    char desc[LT_N][96];      /* llama-bench's model_type ("gpt2 0.1B F16") */
    double size_mb[LT_N];     /* its model_size */
    char commit[64];          /* the source's commit (tools/llama_bench.sh's .qkv-built) */
    char build_commit[64];    /* llama-bench's own build_commit / build_number */
    long build_number;
    char flags[512];          /* from its CMakeCache.txt */
    json_t *flags_o;
    char log[4200];           /* llama-bench's stderr, the last run's */
    double v[LT_N][2][TS_N][MAX_ROUNDS]; /* tokens/s: type, -fa, test, round (NAN: none) */
    int greedy;               /* llama.cpp's greedy tokens = qkv's: 1, 0; -1 not checked */
    char greedy_note[320];
} llama_peer;

/* cmd's stdout (malloc'ed, NUL-terminated; NULL if it could not start), exit status in *rc. */
static char *run_output(const char *cmd, int *rc) {
    fflush(stdout);
    fflush(stderr);
    FILE *p = popen(cmd, "r");
    *rc = -1;
    if (!p) return NULL;
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (cap - len < 4096) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (buf) buf[len] = '\0';
    return buf;
}

/* The last non-empty line of a file (a failed run's reason), or "". */
static void last_line(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) copy_str(out, cap, line);
    }
    if (f) fclose(f);
}

/* llama-bench: $QKV_LLAMA_BENCH, else tools/llama_bench.sh's output folder
 * ($QKV_LLAMA_BENCH_DIR or build/llama.cpp-bench), else that script's build when build is set. */
static int find_llama_bench(int build, char *path, size_t cap, char *why, size_t wcap) {
    const char *env = getenv("QKV_LLAMA_BENCH"), *dir = getenv("QKV_LLAMA_BENCH_DIR");
    if (env && *env) {
        snprintf(path, cap, "%s", env);
        if (access(path, X_OK) == 0) return 1;
        snprintf(why, wcap, "QKV_LLAMA_BENCH=%s is not an executable", env);
        return 0;
    }
    if (dir && *dir) {
        snprintf(path, cap, "%s/bin/llama-bench", dir);
        if (access(path, X_OK) == 0) return 1;
    }
    if (beside_exe("build/llama.cpp-bench/bin/llama-bench", X_OK, path, cap)) return 1;
    char script[4096];
    if (!build) {
        snprintf(why, wcap, "not built (tools/setup.sh --bench builds it, or --build-peers here)");
        return 0;
    }
    if (!beside_exe("tools/llama_bench.sh", R_OK, script, sizeof script)) {
        snprintf(why, wcap, "not built, and tools/llama_bench.sh is not here to build it");
        return 0;
    }
    printf("llama.cpp peer: building llama-bench (tools/llama_bench.sh, once)\n");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "bash '%s'", script);
    int rc;
    char *out = run_output(cmd, &rc); /* the script's last line: the binary's path */
    size_t n = out ? strlen(out) : 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r')) out[--n] = '\0';
    char *p = out ? strrchr(out, '\n') : NULL;
    snprintf(path, cap, "%s", p ? p + 1 : out ? out : "");
    free(out);
    if (rc == 0 && access(path, X_OK) == 0) return 1;
    snprintf(why, wcap, "tools/llama_bench.sh failed (status %d; its messages are above)", rc);
    return 0;
}

/* The full commit and the cmake options of llama-bench's build (tools/llama_bench.sh writes
 * the commit to <build>/.qkv-built; CMakeCache.txt has the options); empty when not there. */
static void llama_build_info(llama_peer *lp) {
    char dir[4096], path[4200], line[1024];
    snprintf(dir, sizeof dir, "%s", lp->bin);
    char *s = strrchr(dir, '/');
    if (s) *s = '\0';
    snprintf(path, sizeof path, "%s/../.qkv-built", dir);
    FILE *f = fopen(path, "r");
    if (f && fgets(line, sizeof line, f) && strspn(line, "0123456789abcdef") == 40) {
        line[40] = '\0';
        copy_str(lp->commit, sizeof lp->commit, line);
    }
    if (f) fclose(f);
    static const char *const keys[] = {"CMAKE_BUILD_TYPE", "GGML_NATIVE", "GGML_OPENMP", "GGML_BLAS",
                                       "GGML_LLAMAFILE", "BUILD_SHARED_LIBS"};
    lp->flags_o = json_object();
    snprintf(path, sizeof path, "%s/../CMakeCache.txt", dir);
    f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *colon = strchr(line, ':'), *eq = strchr(line, '=');
        if (!colon || !eq || eq < colon) continue;
        *colon = '\0';
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (!strcmp(line, keys[k]) && eq[1]) {
                json_object_set_new(lp->flags_o, keys[k], json_string(eq + 1));
                size_t n = strlen(lp->flags);
                snprintf(lp->flags + n, sizeof lp->flags - n, "%s%s=%s", n ? " " : "", keys[k], eq + 1);
            }
    }
    if (f) fclose(f);
}

/* One llama-bench run's JSON array into lp->v[..][round] (round < 0: the load check, which
 * only takes the files' descriptions). The value of a test: the median of its samples_ts. */
static int llama_parse(llama_peer *lp, const char *out, int round, int n_gen) {
    json_t *a = out ? json_loads(out, 0, NULL) : NULL;
    int n = 0;
    for (size_t i = 0; json_is_array(a) && i < json_array_size(a); i++) {
        json_t *t = json_array_get(a, i);
        const char *fn = json_string_value(json_object_get(t, "model_filename"));
        int type = -1;
        for (int k = 0; k < LT_N && fn; k++)
            if (lp->file[k][0] && !strcmp(fn, lp->file[k])) type = k;
        if (type < 0) continue;
        json_t *fa_j = json_object_get(t, "flash_attn"); /* an int (-1 auto, 0, 1); a bool in older versions */
        int fa = json_is_true(fa_j) || (json_is_integer(fa_j) && json_integer_value(fa_j) == 1);
        long np = (long)json_integer_value(json_object_get(t, "n_prompt"));
        long ng = (long)json_integer_value(json_object_get(t, "n_gen"));
        int test = np == 128 && ng == 0 ? TS_PP128 : np == 1024 && ng == 0 ? TS_PP1024
                 : np == 0 && ng == n_gen ? TS_GEN : -1;
        const char *d = json_string_value(json_object_get(t, "model_type"));
        if (d) snprintf(lp->desc[type], sizeof lp->desc[type], "%s", d);
        lp->size_mb[type] = jnum(t, "model_size") / 1e6;
        const char *bc = json_string_value(json_object_get(t, "build_commit"));
        if (bc) snprintf(lp->build_commit, sizeof lp->build_commit, "%s", bc);
        lp->build_number = (long)json_integer_value(json_object_get(t, "build_number"));
        if (round < 0 || test < 0) {
            n++;
            continue;
        }
        json_t *sm = json_object_get(t, "samples_ts");
        double s[64];
        int k = 0;
        for (size_t j = 0; json_is_array(sm) && j < json_array_size(sm) && k < 64; j++)
            s[k++] = json_number_value(json_array_get(sm, j));
        double v = k ? median(s, k) : jnum(t, "avg_ts");
        if (isfinite(v) && v > 0) {
            lp->v[type][fa][test][round] = v;
            n++;
        }
    }
    json_decref(a);
    return n;
}

/* Runs llama-bench with args on models (comma-separated); its stdout (malloc'ed), or NULL with
 * the reason in why. OMP_NUM_THREADS as qkv runs; the other OMP_* and GOMP_* settings are
 * inherited, the same for both (none is set here). */
static char *llama_run(const llama_peer *lp, const char *models, int threads, const char *args, char *why,
                       size_t wcap) {
    char *cmd = malloc(16384);
    if (!cmd) return NULL;
    snprintf(cmd, 16384, "OMP_NUM_THREADS=%d '%s' -m '%s' -t %d %s -o json 2>'%s'", threads, lp->bin, models,
             threads, args, lp->log);
    int rc;
    char *out = run_output(cmd, &rc);
    free(cmd);
    if (rc != 0 || !out) {
        char ll[200];
        last_line(lp->log, ll, sizeof ll);
        snprintf(why, wcap, "status %d: %s", rc, ll[0] ? ll : "no message");
        free(out);
        return NULL;
    }
    return out;
}

/* llama.cpp's greedy continuation (node-llama-cpp's prebuilt library, through the tests'
 * tests/js/llama_cpp_greedy.mjs) of prompt on gguf; the number of tokens, or -1 with why. */
static int llama_greedy(const char *gguf, const int *prompt, int n_prompt, int n, int *out, const char *log,
                        char *why, size_t wcap) {
    char script[4096], nm[4096];
    if (!beside_exe("tests/js/llama_cpp_greedy.mjs", R_OK, script, sizeof script) ||
        !beside_exe("tests/node_modules/node-llama-cpp", R_OK, nm, sizeof nm) ||
        !beside_exe("tests/node_modules/@node-llama-cpp/linux-x64", R_OK, nm, sizeof nm)) {
        snprintf(why, wcap, "not checked: node-llama-cpp's prebuilt llama.cpp is not installed (tools/setup.sh --test)");
        return -1;
    }
    char cmd[10000];
    int k = snprintf(cmd, sizeof cmd, "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node '%s' '%s' %d ", script, gguf, n);
    for (int i = 0; i < n_prompt && k < (int)sizeof cmd - 64; i++) k += snprintf(cmd + k, sizeof cmd - k, "%s%d", i ? "," : "", prompt[i]);
    snprintf(cmd + k, sizeof cmd - k, " 2>'%s'", log);
    int rc;
    char *o = run_output(cmd, &rc);
    char *line = NULL; /* the last line that is an object: {"ids": [...], ...} */
    for (char *s = o; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
        if (*s == '{') line = s;
    json_t *j = rc == 0 && line ? json_loads(line, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    json_t *ids = json_object_get(j, "ids");
    int got = -1;
    if (json_is_array(ids)) {
        got = 0;
        for (size_t i = 0; i < json_array_size(ids) && got < n; i++) out[got++] = (int)json_integer_value(json_array_get(ids, i));
    } else {
        char ll[256];
        last_line(log, ll, sizeof ll);
        snprintf(why, wcap, "not checked: node status %d%s%s", rc, ll[0] ? ": " : "", ll);
    }
    json_decref(j);
    free(o);
    return got;
}

/* The peer's files and checks: the GGUFs of m in dir, each loaded by llama-bench once (a
 * type it refuses is dropped, with the reason), llama.cpp's greedy tokens on the F32 file
 * against qkv's (qkv_ids, n_qkv after ids[0..16)). NULL with why when it cannot run. */
static llama_peer *llama_setup(const qkv_model *m, const char *dir, int threads, int build, const int *ids,
                               const int *qkv_ids, int n_qkv, char *why, size_t wcap) {
    llama_peer *lp = calloc(1, sizeof *lp);
    if (!lp) {
        snprintf(why, wcap, "out of memory");
        return NULL;
    }
    for (int t = 0; t < LT_N; t++)
        for (int f = 0; f < 2; f++)
            for (int s = 0; s < TS_N; s++)
                for (int r = 0; r < MAX_ROUNDS; r++) lp->v[t][f][s][r] = NAN;
    lp->greedy = -1;
    snprintf(lp->log, sizeof lp->log, "%s/llama-bench.log", dir);
    if (!find_llama_bench(build, lp->bin, sizeof lp->bin, why, wcap)) goto fail;
    const char *src = getenv("QKV_LLAMA_CPP_SRC"); /* tools/llama_cpp_src.sh's checkout, or the tests' */
    int have = 0;
    if (src && *src) {
        snprintf(lp->vocab, sizeof lp->vocab, "%s/models/ggml-vocab-gpt-2.gguf", src);
        have = access(lp->vocab, R_OK) == 0;
    }
    if (!have)
        have = beside_exe("build/llama.cpp-src/models/ggml-vocab-gpt-2.gguf", R_OK, lp->vocab, sizeof lp->vocab) ||
               beside_exe("tests/node_modules/.qkv-llama.cpp/models/ggml-vocab-gpt-2.gguf", R_OK, lp->vocab,
                          sizeof lp->vocab);
    if (!have) {
        snprintf(why, wcap, "no GPT-2 vocabulary GGUF for the files (llama.cpp's "
                 "models/ggml-vocab-gpt-2.gguf: tools/llama_cpp_src.sh)");
        goto fail;
    }
    llama_build_info(lp);
    int n_ok = 0;
    for (int t = 0; t < LT_N; t++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, lt_key[t]);
        file_job j = {.m = m, .path = path, .vocab = lp->vocab, .type = lt_ggml[t]};
        if (in_child(gguf_job, &j) != QKV_OK) {
            snprintf(lp->why[t], sizeof lp->why[t], "qkv could not write it (see above)");
            continue;
        }
        snprintf(lp->file[t], sizeof lp->file[t], "%s", path);
        /* the load check: one 8-token prompt, no warm-up */
        char err[256] = "its output has no result";
        char *out = llama_run(lp, path, threads, "-p 8 -n 0 -r 1 --no-warmup", err, sizeof err);
        if (!out || llama_parse(lp, out, -1, 0) != 1) {
            snprintf(lp->why[t], sizeof lp->why[t], "llama-bench did not run it, %s", err);
            lp->file[t][0] = '\0';
            unlink(path);
        } else {
            n_ok++;
        }
        free(out);
    }
    for (int t = 0; t < LT_N; t++)
        if (lp->why[t][0]) printf("check: llama.cpp loads the %s GGUF: NO, dropped (%s)\n", lt_name[t], lp->why[t]);
    if (!n_ok) {
        snprintf(why, wcap, "llama-bench ran none of the GGUFs");
        goto fail;
    }
    printf("check: llama-bench loads the GGUFs (qkv's writer, llama.cpp's GPT-2 vocabulary):");
    for (int t = 0; t < LT_N; t++)
        if (lp->file[t][0]) printf(" %s (%s, %.0f MB)", lt_name[t], lp->desc[t], lp->size_mb[t]);
    printf("\n");
    if (lp->file[LT_F32][0]) {
        int got[16];
        char glog[4200];
        snprintf(glog, sizeof glog, "%s/greedy.log", dir);
        int n = llama_greedy(lp->file[LT_F32], ids, 16, n_qkv, got, glog, lp->greedy_note, sizeof lp->greedy_note);
        if (n >= 0) {
            int same = n == n_qkv, distinct = 0;
            for (int i = 0; i < n && i < n_qkv && same; i++) same = got[i] == qkv_ids[i];
            for (int i = 0; i < n; i++) {
                int seen = 0;
                for (int k = 0; k < i; k++) seen |= got[k] == got[i];
                distinct += !seen;
            }
            lp->greedy = same;
            snprintf(lp->greedy_note, sizeof lp->greedy_note, "%s (%d tokens, %d distinct)", same ? "yes" : "NO", n,
                     distinct);
        }
        printf("check: llama.cpp's greedy tokens on the F32 GGUF (node-llama-cpp's prebuilt library) = qkv's "
               "(after a 16-token prompt): %s\n", lp->greedy_note);
    }
    return lp;
fail:
    json_decref(lp->flags_o);
    free(lp);
    return NULL;
}

/* One round of the peer: every file, -fa 0 and 1, prompts 128 and 1024, n_gen generated. */
static void llama_round(llama_peer *lp, int round, int threads, int reps, int n_gen) {
    char models[3 * 4096 + 8] = "", args[128];
    for (int t = 0; t < LT_N; t++)
        if (lp->file[t][0]) {
            size_t n = strlen(models);
            snprintf(models + n, sizeof models - n, "%s%s", n ? "," : "", lp->file[t]);
        }
    snprintf(args, sizeof args, "-p 128,1024 -n %d -fa 0,1 -r %d", n_gen, reps);
    char err[256] = "";
    char *out = llama_run(lp, models, threads, args, err, sizeof err);
    if (!out) fprintf(stderr, "qkv bench model: llama-bench failed in round %d (%s)\n", round + 1, err);
    else if (llama_parse(lp, out, round, n_gen) < 3 * 2) /* at least one file's six tests */
        fprintf(stderr, "qkv bench model: llama-bench's output in round %d has too few results\n", round + 1);
    free(out);
}

/* The median over rounds of a type / -fa / test; the faster -fa in *fa (NAN when neither ran). */
static double llama_best(const llama_peer *lp, int type, int test, int rounds, int *fa) {
    double a = median_ok(lp->v[type][0][test], rounds), b = median_ok(lp->v[type][1][test], rounds);
    *fa = isfinite(b) && (!isfinite(a) || b > a);
    return *fa ? b : a;
}

static void cell(char *s, size_t cap, double v, int fa) {
    if (isfinite(v)) snprintf(s, cap, "%.1f (fa %d)", v, fa);
    else snprintf(s, cap, "-");
}

/* A row of the second table: qkv's number, llama.cpp's by type (cols: which types to show),
 * and qkv over the best shown. */
static double llama_row(const llama_peer *lp, const char *name, double ours, const char *ours_note, int test,
                        unsigned cols, int rounds) {
    char c[LT_N][32], q[48], ratio[64] = "-";
    double best = NAN;
    int best_t = -1, best_fa = 0;
    for (int t = 0; t < LT_N; t++) {
        int fa = 0;
        double v = (cols >> t) & 1 ? llama_best(lp, t, test, rounds, &fa) : NAN;
        cell(c[t], sizeof c[t], v, fa);
        if (isfinite(v) && (!isfinite(best) || v > best)) best = v, best_t = t, best_fa = fa;
    }
    if (isfinite(ours)) snprintf(q, sizeof q, "%.1f (%s)", ours, ours_note);
    else snprintf(q, sizeof q, "-");
    if (isfinite(ours) && isfinite(best))
        snprintf(ratio, sizeof ratio, "%.2fx (vs %s, fa %d)", ours / best, lt_name[best_t], best_fa);
    printf("| %-20s | %-14s | %-14s | %-14s | %-14s | %-22s |\n", name, q, c[0], c[1], c[2], ratio);
    return isfinite(ours) && isfinite(best) ? ours / best : NAN;
}

/* ---- stability: generation runs back to back, quiet and beside a busy core ---------------- *
 * `--stability`: 5 generation runs of each weight type, with generation's thread pool and with
 * the OpenMP split it replaced (QKV_POOL=omp), on the machine as it is and then with a child
 * process spinning on one core (the "one busy background core"). The measure: the
 * slowest run against the median (within 10% is the goal). */
static void busy_child_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

static int bench_stability(qkv_model *m, const int *ids, int n_gen, int *gen_out, json_t *o) {
    static const char *const kind[3] = {"F32", "BF16", "Q8_0"};
    json_t *arr = json_array();
    printf("\nstability: %d generated tokens a run, 5 runs; slowest / median (goal >= 0.90)\n\n", n_gen);
    printf("| %-10s | %-5s | %-14s | %8s | %8s | %8s | %7s |\n", "neighbour", "type", "threads", "median", "slowest",
           "fastest", "slow/med");
    printf("|------------|-------|----------------|----------|----------|----------|---------|\n");
    for (int busy = 0; busy < 2; busy++) {
        pid_t child = -1;
        if (busy) {
            fflush(stdout);
            child = fork();
            if (child == 0) {
                volatile unsigned long spin = 0;
                for (;;) spin++;
            }
            usleep(200000);
        }
        for (int k = 0; k < 3; k++) {
            if (k == 1 && qkv_model_use_bf16(m, 1)) continue;
            if (k == 2 && qkv_model_use_q8(m, 1)) continue;
            for (int omp = 0; omp < 2; omp++) {
                qkv__pool_set_omp(omp);
                double t[5];
                time_generate(m, ids, 16, 16, gen_out); /* warm-up */
                for (int r = 0; r < 5; r++) t[r] = time_generate(m, ids, 16, n_gen, gen_out);
                double lo = t[0], hi = t[0];
                for (int r = 1; r < 5; r++) lo = fmin(lo, t[r]), hi = fmax(hi, t[r]);
                double med = median(t, 5);
                printf("| %-10s | %-5s | %-14s | %8.1f | %8.1f | %8.1f | %7.2f |\n", busy ? "1 busy core" : "none",
                       kind[k], omp ? "OpenMP (old)" : "pool", med, lo, hi, lo / med);
                json_t *e = json_object();
                json_object_set_new(e, "neighbour", json_boolean(busy));
                json_object_set_new(e, "type", json_string(kind[k]));
                json_object_set_new(e, "threading", json_string(omp ? "openmp" : "pool"));
                json_object_set_new(e, "median", json_real(med));
                json_object_set_new(e, "slowest", json_real(lo));
                json_object_set_new(e, "fastest", json_real(hi));
                json_array_append_new(arr, e);
            }
            qkv__pool_set_omp(0);
            if (k == 1) qkv_model_use_bf16(m, 0);
            if (k == 2) qkv_model_use_q8(m, 0);
        }
        busy_child_stop(child);
    }
    json_object_set_new(o, "stability", arr);
    return 0;
}

int qkv__bench_model(int argc, char **argv) {
    int threads = 0, reps = 1, rounds = 0, n_gen = 128, peers = 1, llama = 1, build_peers = 0, quick = 0, stability = 0;
    const bench_shape *shape = &shapes[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        /* each count with its range, stated when refused (no silent clamping) */
        int *slot = !strcmp(a, "--threads") ? &threads : !strcmp(a, "--reps") ? &reps
                  : !strcmp(a, "--rounds") ? &rounds : !strcmp(a, "--gen") ? &n_gen : NULL;
        long lo = slot == &n_gen ? 2 : 1, hi = slot == &threads ? 1024 : slot == &n_gen ? 900 : MAX_ROUNDS;
        if (slot && has) {
            long v;
            if (qkv__cli_read_long(argv[++i], lo, hi, &v))
                return qkv__cli_usage_error("bench model", "%s must be an integer in [%ld, %ld] (got '%s')", a, lo, hi,
                                            argv[i]);
            *slot = (int)v;
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: qkv bench model [--shape gpt2, smollm2 or qwen2.5] [--threads N] [--rounds R] [--reps N] "
                   "[--gen N] [--no-peers] [--no-llama] [--build-peers] [--quick] [--stability]\n");
            return 0;
        }
        else if (!strcmp(a, "--shape") && has) {
            const char *v = argv[++i];
            shape = NULL;
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
                if (!strcmp(v, shapes[k].name)) shape = &shapes[k];
            if (!shape)
                return qkv__cli_usage_error("bench model", "--shape must be gpt2, smollm2 or qwen2.5 (got '%s')", v);
        }
        else if (!strcmp(a, "--no-peers")) peers = 0;
        else if (!strcmp(a, "--no-llama")) llama = 0;
        else if (!strcmp(a, "--build-peers")) build_peers = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--stability")) stability = 1;
        else return qkv__cli_usage_error("bench model", "unknown option '%s' (--shape gpt2|smollm2|qwen2.5, "
                                         "--threads N, --rounds R, --reps N, --gen N, --no-peers, --no-llama, "
                                         "--build-peers, --quick, --stability)", a);
    }
    if (threads > 0) qkv_set_threads(threads);
    threads = qkv_get_threads();
    if (quick) {
        reps = 1;
        n_gen = 32;
        if (!rounds) rounds = 1;
    }
    if (!rounds) rounds = 3;
    const int reps_once = rounds * reps > 16 ? 16 : rounds * reps; /* what is timed once, not in rounds */
    const int has_avx512 = qkv__cpu_has_avx512();

    double load_before = load_average();
    /* ---- machine bounds ---- */
    double peak = has_avx512 ? qkv__fma_peak_avx512(0.4, threads) : NAN; /* and at the end: the best */
    double bw_first = has_avx512 ? read_bound(threads) : NAN; /* and again at the end: the best */

    const int is_gpt2 = !strcmp(shape->name, "gpt2");
    qkv_model *m = make_model(&shape->cfg);
    if (!m) return qkv__cli_fail("bench model", QKV_ENOMEM);
    const qkv_model_config *c = qkv_model_get_config(m);
    const qkv__dims dm = qkv__dims_of(c);
    const int nv = c->vocab_size, n_ctx = c->n_ctx; /* c dies with m, before the JSON */
    const double C = dm.C, L = c->n_layer, V = nv, Hd = dm.Hd;
    /* the weight matrices a token passes through: q|k|v, output, MLP in (F2 wide: gate|up for
     * SwiGLU), MLP out; 12 C^2 a layer for GPT-2 */
    const double mat_params = L * (C * dm.W + Hd * C + C * dm.F2 + (double)dm.F * C), head = V * C;
    const double n_params = (double)qkv_model_n_params(m);
    int *ids = malloc(sizeof(int) * 1024), *gen_out = malloc(sizeof(int) * 1024);
    float *last = malloc(sizeof(float) * (size_t)nv), *last2 = malloc(sizeof(float) * (size_t)nv);
    if (!ids || !gen_out || !last || !last2) {
        free(ids), free(gen_out), free(last), free(last2);
        qkv_model_free(m);
        return qkv__cli_fail("bench model", QKV_ENOMEM);
    }
    for (int i = 0; i < 1024; i++) ids[i] = (int)((bench_rng = bench_rng * 6364136223846793005ull + 1) >> 33) % nv;

    /* ---- checks ---- */
    const char *gemm_default = qkv__gemm_name();
    int ok = 1;
    if (has_avx512) {
        qkv__gemm_select("openblas");
        qkv_model_forward(m, ids, 64, NULL, NULL, last2, NULL);
        qkv__gemm_select("avx512");
        qkv_model_forward(m, ids, 64, NULL, NULL, last, NULL);
        double md = 0, mx = 0;
        for (int j = 0; j < nv; j++) {
            md = fmax(md, fabs(last[j] - last2[j]));
            mx = fmax(mx, fabs(last2[j]));
        }
        printf("check: AVX-512 vs OpenBLAS sgemm logits (64 tokens): max diff %.2e (max |logit| %.1f)\n", md, mx);
        if (!(md <= 1e-4 * fmax(1.0, mx))) ok = 0;
        qkv__gemm_select(gemm_default);
    }
    {
        int gen_ids[8], n_out = 0;
        qkv_sampler greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
        qkv_model_generate(m, ids, 8, 4, &greedy, NULL, NULL, gen_ids, &n_out);
        int seq[16];
        memcpy(seq, ids, sizeof(int) * 8);
        int agree = n_out == 4;
        for (int i = 0; i < n_out && agree; i++) {
            qkv_model_forward(m, seq, 8 + i, NULL, NULL, last, NULL);
            int best = 0;
            for (int j = 1; j < nv; j++)
                if (last[j] > last[best]) best = j;
            agree = best == gen_ids[i];
            seq[8 + i] = best;
        }
        printf("check: KV-cache greedy generation = argmax of full forward passes: %s\n", agree ? "yes" : "NO");
        if (!agree) ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "qkv bench model: checks failed; not timing\n");
        qkv_model_free(m);
        return 1;
    }
    double bf16_prompt_err = NAN;
    if (stability) {
        json_t *so = json_object();
        json_object_set_new(so, "bench", json_string("model-stability"));
        json_object_set_new(so, "threads", json_integer(threads));
        bench_stability(m, ids, n_gen, gen_out, so);
        char *js = json_dumps(so, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (js) printf("%s\n", js);
        free(js);
        json_decref(so);
        qkv_model_free(m);
        free(ids), free(gen_out), free(last), free(last2);
        return 0;
    }

    /* ---- the peers' files, in one folder kept to the end (llama-bench runs every round) ---- */
    char dir[] = "/tmp/qkv-bench-model-XXXXXX";
    int have_dir = peers && mkdtemp(dir) != NULL, dir_errno = errno;

    /* the PyTorch peer on the same weights */
    json_t *peer = NULL;
    if (have_dir) {
        if (save_checkpoint(m, dir) == QKV_OK) {
            qkv_model_forward(m, ids, 128, NULL, NULL, last, NULL);
            int64_t vshape[1] = {nv};
            int64_t ishape[1] = {1024};
            float *fids = malloc(sizeof(float) * 1024);
            if (fids) {
                for (int i = 0; i < 1024; i++) fids[i] = (float)ids[i];
                char p1[256], p2[256];
                snprintf(p1, sizeof p1, "%s/ids.npy", dir);
                snprintf(p2, sizeof p2, "%s/qkv_last128.npy", dir);
                qkv__npy_save(p1, fids, 1, ishape);
                qkv__npy_save(p2, last, 1, vshape);
                free(fids);
            }
            fflush(stdout);
            peer = run_peer(is_gpt2 ? "model_peers.py" : "llama_peers.py", dir, threads, reps_once, quick ? 16 : 64);
        }
    }
    if (peer)
        printf("check: PyTorch vs qkv last logits (128 tokens): max diff %.2e\n", jnum(peer, "check_max_diff"));

    /* llama.cpp's llama-bench on GGUFs of the same weights (GPT-2's shape: the files carry
     * llama.cpp's GPT-2 vocabulary, and no vocabulary of the other shapes is at hand) */
    llama_peer *lp = NULL;
    char llama_why[512] = "";
    if (!peers || !llama) snprintf(llama_why, sizeof llama_why, "not run (%s)", peers ? "--no-llama" : "--no-peers");
    else if (!is_gpt2) snprintf(llama_why, sizeof llama_why, "not run for --shape %s (the GPT-2 shape only: its files "
                                "carry llama.cpp's GPT-2 vocabulary)", shape->name);
    else if (!have_dir) snprintf(llama_why, sizeof llama_why, "not run (no temporary folder: %s)", strerror(dir_errno));
    else {
        int qkv_greedy[8], n_greedy = 0; /* qkv's F32 greedy tokens after ids[0..16), for the check */
        qkv_sampler greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
        qkv_model_generate(m, ids, 16, 8, &greedy, NULL, NULL, qkv_greedy, &n_greedy);
        char why[400] = "";
        lp = llama_setup(m, dir, threads, build_peers, ids, qkv_greedy, n_greedy, why, sizeof why);
        if (!lp) snprintf(llama_why, sizeof llama_why, "%s", why);
    }
    if (!lp) printf("llama.cpp peer: %s\n", llama_why);

    /* ---- timing: rounds of qkv then llama-bench, medians over the rounds ---- */
    double q128[MAX_ROUNDS], q1024[MAX_ROUNDS], q32[MAX_ROUNDS], q16[MAX_ROUNDS], q8[MAX_ROUNDS];
    /* the read loop over the model's own F32 weights right before each round's F32 generation
     * (best of 2 passes): the bandwidth of that moment, where the bound above is the best pass
     * of the whole run (this VM's bandwidth moves 30-84 GB/s within minutes) */
    double bw_now[MAX_ROUNDS], q32_frac_now[MAX_ROUNDS];
    size_t n_weights = 0;
    const float *weights = qkv__model_params_block(m, &n_weights);
    double bp128[MAX_ROUNDS], bp1024[MAX_ROUNDS]; /* prompts with BF16 weights and dot products */
    double sg1024[MAX_ROUNDS]; /* the sgemm alone on the block products, 1024 rows, just before the 1024 prompt */
    double peak_mb = NAN, peak_q8_mb = NAN, peak_bf16_mb = NAN;
    int gen_agree = -1; /* the PyTorch peer's greedy tokens from the same 16-token prompt: the first 8 */
    struct rusage ru;
    for (int r = 0; r < rounds; r++) {
        if (rounds > 1 && isatty(STDERR_FILENO))
            fprintf(stderr, "timing: round %d of %d%s\r", r + 1, rounds, lp ? " (qkv, then llama-bench)" : "");
        q128[r] = time_prompt(m, ids, 128, reps, last);
        sg1024[r] = time_block_gemms(&dm, 1024);
        q1024[r] = time_prompt(m, ids, 1024, reps, last);
        bw_now[r] = has_avx512 && weights ? qkv__read_bw_avx512(weights, n_weights, 2, threads) : NAN;
        q32[r] = time_generate(m, ids, 16, n_gen, gen_out);
        if (r == 0) {
            json_t *pg = peer ? json_object_get(peer, "gen_ids") : NULL;
            if (!is_gpt2 && pg && json_is_array(pg) && q32[0] > 0) {
                gen_agree = json_array_size(pg) == 8;
                for (size_t k = 0; k < json_array_size(pg) && k < 8 && gen_agree; k++)
                    gen_agree = json_integer_value(json_array_get(pg, k)) == gen_out[k];
            }
            getrusage(RUSAGE_SELF, &ru);
            peak_mb = ru.ru_maxrss / 1024.0; /* F32 weights + activations + cache */
        }
        /* Q8_0 before BF16: the Q8_0 copy is the smaller, so each peak below is its own */
        q8[r] = NAN;
        if (qkv_model_use_q8(m, 1) == QKV_OK) {
            q8[r] = time_generate(m, ids, 16, n_gen, gen_out);
            qkv_model_use_q8(m, 0);
        }
        if (r == 0) {
            getrusage(RUSAGE_SELF, &ru);
            peak_q8_mb = ru.ru_maxrss / 1024.0; /* ... plus the Q8_0 copy */
        }
        q16[r] = bp128[r] = bp1024[r] = NAN;
        if (qkv_model_use_bf16(m, 1) == QKV_OK) {
            q16[r] = time_generate(m, ids, 16, n_gen, gen_out);
            qkv_forward_opts ob = {.bf16 = 1};
            bp128[r] = time_prompt_opts(m, ids, 128, reps, last, &ob);
            bp1024[r] = time_prompt_opts(m, ids, 1024, reps, last, &ob);
            qkv_model_use_bf16(m, 0);
        }
        if (r == 0) {
            getrusage(RUSAGE_SELF, &ru);
            peak_bf16_mb = ru.ru_maxrss / 1024.0; /* ... or plus the BF16 copy */
        }
        if (lp) llama_round(lp, r, threads, reps, n_gen);
    }
    if (rounds > 1 && isatty(STDERR_FILENO)) fprintf(stderr, "%60s\r", "");
    double pp128 = median_ok(q128, rounds), pp1024 = median_ok(q1024, rounds);
    double gen32 = median_ok(q32, rounds), gen16 = median_ok(q16, rounds), genq8 = median_ok(q8, rounds);
    double pp128_bf16 = median_ok(bp128, rounds), pp1024_bf16 = median_ok(bp1024, rounds);
    /* the BF16 prompt path (opts.bf16: BF16 GEMMs) against F32: its logits' error, stated (after the
     * rounds, so that its BF16 copy does not count in the F32 peak memory) */
    if (qkv_model_use_bf16(m, 1) == QKV_OK) {
        qkv_forward_opts ob = {.bf16 = 1};
        qkv_model_forward(m, ids, 128, NULL, NULL, last2, NULL);
        qkv_model_forward(m, ids, 128, &ob, NULL, last, NULL);
        double md = 0, lo = last2[0], hi = last2[0];
        int a = 0, b = 0;
        for (int j = 0; j < nv; j++) {
            md = fmax(md, fabs(last[j] - last2[j]));
            lo = fmin(lo, last2[j]), hi = fmax(hi, last2[j]);
            if (last2[j] > last2[a]) a = j;
            if (last[j] > last[b]) b = j;
        }
        bf16_prompt_err = md / (hi - lo);
        printf("check: BF16 prompt (BF16 weights and dot products) vs F32 last logits (128 tokens): max diff %.3g = "
               "%.4f of their spread, argmax %s\n", md, bf16_prompt_err, a == b ? "the same" : "DIFFERENT");
        qkv_model_use_bf16(m, 0);
    }
    /* the OpenBLAS sgemm path, once, after the rounds: for comparison with ours, not with the peers */
    double pp128_blas = NAN, pp1024_blas = NAN, sg_blas = NAN, sg_once = NAN;
    if (has_avx512) {
        /* the sgemm alone, ours and then OpenBLAS's (qkv's column slices), each after a pause: a
         * runtime's threads spin for a while after their work and would slow the other's */
        usleep(100000);
        sg_once = time_block_gemms(&dm, 1024);
        qkv__gemm_select("openblas");
        usleep(100000);
        sg_blas = time_block_gemms(&dm, 1024);
        pp128_blas = time_prompt(m, ids, 128, reps_once, last);
        pp1024_blas = time_prompt(m, ids, 1024, reps_once, last);
        qkv__gemm_select(gemm_default);
    }
    qkv_model_free(m);
    m = NULL;
    if (have_dir) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "qkv bench model: could not remove %s\n", dir);
    }

    /* read bandwidth again, last, so its buffer does not count in the peak memory above */
    double bw = has_avx512 ? fmax(read_bound(threads), bw_first) : NAN;
    /* a neighbour can take a core while the FMA loop runs: the best of the two measurements,
     * as for bandwidth */
    if (has_avx512) peak = fmax(peak, qkv__fma_peak_avx512(0.4, threads));
    /* and never below threads x one thread's: a tenant holding a core for the whole loop would
     * halve the all-thread measurement, not the machine's peak */
    if (has_avx512) peak = fmax(peak, threads * qkv__fma_peak_avx512(0.2, 1));
    double load_after = load_average();

    /* bounds: FLOPs a token (last-position logits: the LM head once per prompt) */
    /* (attention: q.k and p.v over H heads of d, (N + 1) / 2 keys on average) */
    double fl128 = 2 * mat_params + L * 4 * Hd * (128 + 1) / 2 + 2 * head / 128;
    double fl1024 = 2 * mat_params + L * 4 * Hd * (1024 + 1) / 2 + 2 * head / 1024;
    double b128 = peak * 1e9 / fl128, b1024 = peak * 1e9 / fl1024;
    /* bytes a generated token reads: Q8_0 is 34 bytes a block of 32 weights */
    double bytes32 = 4 * (mat_params + head), bytes16 = 2 * (mat_params + head), bytesq8 = 34.0 / 32 * (mat_params + head);
    double g32 = bw * 1e9 / bytes32, g16 = bw * 1e9 / bytes16, gq8 = bw * 1e9 / bytesq8;

    if (gen_agree >= 0)
        printf("check: PyTorch's KV-cache greedy tokens = qkv's (first 8): %s\n", gen_agree ? "yes" : "NO");
    const char *wait_policy = getenv("OMP_WAIT_POLICY");
    printf("\n%s shapes (%.0fM params, random weights%s), %d threads, sgemm %s, OpenBLAS core %s\n",
           shape->title, is_gpt2 ? 124.0 : n_params / 1e6, shape->ctx_note, threads, gemm_default,
           qkv__openblas_core());
    printf("machine: FMA peak %.0f GFLOP/s, read bandwidth %.1f GB/s (each the best of a measurement at the start and one at the end; the peak at least threads x one thread's); load average "
           "%.1f before, %.1f after%s\n", peak, bw, load_before, load_after,
           load_before > threads || load_after > threads
               ? " -- BUSY: other processes share the cores, wall-clock rates are low" : "");
    printf("timing: medians of %d round%s (%d run%s of each test a round)%s\n", rounds, rounds > 1 ? "s" : "", reps,
           reps > 1 ? "s" : "", lp ? ", qkv then llama-bench in each round" : "");
    printf("PyTorch peer: %s\n\n", peer ? "same weights, OPENBLAS_CORETYPE=SkylakeX, KV cache, torch.mv for 1-token steps"
                                        : "not run");
    printf("| %-28s | %9s | %9s | %8s | %-20s | %6s |\n", "tokens/s", "qkv", "PyTorch", "qkv/pt", "bound", "frac");
    printf("|------------------------------|-----------|-----------|----------|----------------------|--------|\n");
    row("prompt 128 (last logits)", pp128, jnum(peer, "pp128"), b128, "FLOP");
    row("prompt 1024 (last logits)", pp1024, jnum(peer, "pp1024"), b1024, "FLOP");
    row("  same, BF16 weights, 128", pp128_bf16, NAN, 2 * b128, "BF16 FLOP");
    row("  same, BF16 weights, 1024", pp1024_bf16, NAN, 2 * b1024, "BF16 FLOP");
    if (has_avx512) {
        row("  same, OpenBLAS sgemm, 128", pp128_blas, NAN, b128, "FLOP");
        row("  same, OpenBLAS sgemm, 1024", pp1024_blas, NAN, b1024, "FLOP");
    }
    row("generate F32", gen32, jnum(peer, "gen"), g32, "read");
    row("generate BF16 weights", gen16, NAN, g16, "read");
    row("generate Q8_0 weights", genq8, NAN, gq8, "read");
    double bw_now_lo = INFINITY, bw_now_hi = 0, frac_now = NAN;
    if (has_avx512 && weights) {
        for (int r = 0; r < rounds; r++) {
            bw_now_lo = fmin(bw_now_lo, bw_now[r]), bw_now_hi = fmax(bw_now_hi, bw_now[r]);
            q32_frac_now[r] = q32[r] * bytes32 / (bw_now[r] * 1e9);
        }
        frac_now = median_ok(q32_frac_now, rounds);
        printf("F32 generation against the read loop over the same weights just before it, each round: %.2f of it "
               "(median of %d; %.1f-%.1f GB/s then)\n", frac_now, rounds, bw_now_lo, bw_now_hi);
    }
    double sg = median_ok(sg1024, rounds), sg_lo = INFINITY, sg_hi = 0;
    for (int r = 0; r < rounds; r++) sg_lo = fmin(sg_lo, sg1024[r]), sg_hi = fmax(sg_hi, sg1024[r]);
    if (isfinite(sg) && isfinite(peak))
        printf("F32 prompt at 1024 tokens against the sgemm alone on its block products (1024 rows, just before it, "
               "each round): the sgemm %.0f GFLOP/s = %.2f of the FMA peak (median of %d; %.0f-%.0f), the prompt "
               "%.2f of its FLOP bound; those products are %.0f%% of its FLOPs\n",
               sg, sg / peak, rounds, sg_lo, sg_hi, pp1024 / b1024, 100.0 * 2 * mat_params / fl1024);
    if (isfinite(sg_blas) && sg_blas > 0 && isfinite(sg_once) && isfinite(peak))
        printf("the same products once after the rounds, each sgemm after a pause: qkv's %.0f GFLOP/s = %.2f of the "
               "FMA peak, OpenBLAS's (core %s, one call a column slice on each of %d threads) %.0f = %.2f: qkv's %.2fx "
               "OpenBLAS's\n",
               sg_once, sg_once / peak, qkv__openblas_core(), threads, sg_blas, sg_blas / peak, sg_once / sg_blas);
    printf("peak memory (max RSS): qkv %.0f MB with F32 weights, %.0f MB with the Q8_0 copy too, %.0f MB with the "
           "BF16 copy instead", peak_mb, peak_q8_mb, peak_bf16_mb);
    if (peer) printf("; PyTorch %.0f MB", jnum(peer, "peak_mb"));
    printf("\n");

    /* ---- the second table: llama.cpp, same run, same weights ---- */
    double r128 = NAN, r1024 = NAN, rg32 = NAN, rg16 = NAN, rgq8 = NAN, r128b = NAN, r1024b = NAN;
    if (lp) {
        printf("\nvs llama.cpp (same run, same weights): llama-bench, median of %d round%s; each llama.cpp cell is the "
               "faster of -fa 0 / -fa 1 (named)\n\n", rounds, rounds > 1 ? "s" : "");
        printf("| %-20s | %-14s | %-14s | %-14s | %-14s | %-22s |\n", "tokens/s", "qkv", "llama.cpp F32",
               "llama.cpp F16", "llama.cpp Q8_0", "qkv / llama.cpp");
        printf("|----------------------|----------------|----------------|----------------|----------------|"
               "------------------------|\n");
        /* prompts: qkv (F32 weights, its default sgemm) against llama.cpp's best type and -fa */
        r128 = llama_row(lp, "prompt 128", pp128, "F32", TS_PP128, 7, rounds);
        r1024 = llama_row(lp, "prompt 1024", pp1024, "F32", TS_PP1024, 7, rounds);
        r128b = llama_row(lp, "prompt 128", pp128_bf16, "BF16", TS_PP128, 7, rounds);
        r1024b = llama_row(lp, "prompt 1024", pp1024_bf16, "BF16", TS_PP1024, 7, rounds);
        /* generation: like against like (BF16 and F16 both 2 bytes a weight) */
        rg32 = llama_row(lp, "generate F32", gen32, "F32", TS_GEN, 1 << LT_F32, rounds);
        rg16 = llama_row(lp, "generate BF16 / F16", gen16, "BF16", TS_GEN, 1 << LT_F16, rounds);
        rgq8 = llama_row(lp, "generate Q8_0", genq8, "Q8_0", TS_GEN, 1 << LT_Q8, rounds);
        printf("llama.cpp: %s, commit %s (build %s, #%ld)%s%s; -t %d, -r %d a round, -p 128,1024 -n %d, its default "
               "batch sizes; OMP_NUM_THREADS=%d and OMP_WAIT_POLICY %s%s for both\n",
               lp->bin, lp->commit[0] ? lp->commit : "unknown", lp->build_commit[0] ? lp->build_commit : "?",
               lp->build_number, lp->flags[0] ? ", " : "", lp->flags, threads, reps, n_gen, threads,
               wait_policy ? "=" : "unset", wait_policy ? wait_policy : "");
        printf("llama.cpp files:");
        for (int t = 0; t < LT_N; t++)
            if (lp->file[t][0]) printf(" %s %s (%.0f MB);", lt_name[t], lp->desc[t], lp->size_mb[t]);
            else printf(" %s dropped (%s);", lt_name[t], lp->why[t]);
        printf(" the GGUFs by qkv's writer (qkv convert --to gguf), llama.cpp's GPT-2 vocabulary\n");
    }
    else if (is_gpt2) /* no figure from another run stands in for the peer */
        printf("llama.cpp: not in this run (build it with tools/setup.sh --bench, or qkv bench model --build-peers)\n");

    json_t *o = json_object();
    json_object_set_new(o, "bench", json_string("model"));
    if (!is_gpt2) { /* GPT-2's line stays as it was */
        json_object_set_new(o, "shape", json_string(shape->name));
        json_object_set_new(o, "n_params", json_integer((json_int_t)n_params));
        json_object_set_new(o, "n_ctx", json_integer(n_ctx));
    }
    json_object_set_new(o, "threads", json_integer(threads));
    json_object_set_new(o, "gemm", json_string(gemm_default));
    json_object_set_new(o, "peak_gflops", json_real(isfinite(peak) ? peak : 0));
    json_object_set_new(o, "read_gbs", json_real(isfinite(bw) ? bw : 0));
    json_object_set_new(o, "pp128", json_real(isfinite(pp128) ? pp128 : 0));
    json_object_set_new(o, "pp1024", json_real(isfinite(pp1024) ? pp1024 : 0));
    json_object_set_new(o, "pp128_openblas", json_real(isfinite(pp128_blas) ? pp128_blas : 0));
    json_object_set_new(o, "pp1024_openblas", json_real(isfinite(pp1024_blas) ? pp1024_blas : 0));
    json_object_set_new(o, "gen_f32", json_real(isfinite(gen32) ? gen32 : 0));
    json_object_set_new(o, "gen_bf16", json_real(isfinite(gen16) ? gen16 : 0));
    json_object_set_new(o, "pp128_bf16", json_real(isfinite(pp128_bf16) ? pp128_bf16 : 0));
    json_object_set_new(o, "pp1024_bf16", json_real(isfinite(pp1024_bf16) ? pp1024_bf16 : 0));
    json_object_set_new(o, "bf16_prompt_logit_err_frac_spread", json_real(isfinite(bf16_prompt_err) ? bf16_prompt_err : 0));
    json_object_set_new(o, "pp128_frac_flop_bound", json_real(isfinite(b128 * pp128) ? pp128 / b128 : 0));
    json_object_set_new(o, "pp1024_frac_flop_bound", json_real(isfinite(b1024 * pp1024) ? pp1024 / b1024 : 0));
    json_object_set_new(o, "gen_f32_frac_read_bound", json_real(isfinite(g32 * gen32) ? gen32 / g32 : 0));
    json_object_set_new(o, "gen_bf16_frac_read_bound", json_real(isfinite(g16 * gen16) ? gen16 / g16 : 0));
    json_object_set_new(o, "gen_f32_frac_read_now", json_real(isfinite(frac_now) ? frac_now : 0));
    json_object_set_new(o, "sgemm1024_gflops", json_real(isfinite(sg) ? sg : 0));
    json_object_set_new(o, "sgemm1024_frac_peak", json_real(isfinite(sg) && isfinite(peak) ? sg / peak : 0));
    json_object_set_new(o, "sgemm1024_once_gflops", json_real(isfinite(sg_once) ? sg_once : 0));
    json_object_set_new(o, "sgemm1024_openblas_gflops", json_real(isfinite(sg_blas) ? sg_blas : 0));
    json_object_set_new(o, "read_gbs_now_min", json_real(isfinite(bw_now_lo) ? bw_now_lo : 0));
    json_object_set_new(o, "read_gbs_now_max", json_real(bw_now_hi));
    json_object_set_new(o, "peak_rss_mb", json_real(peak_mb));
    json_object_set_new(o, "peak_rss_bf16_mb", json_real(peak_bf16_mb));
    json_object_set_new(o, "load_before", json_real(load_before));
    json_object_set_new(o, "load_after", json_real(load_after));
    if (peer) json_object_set_new(o, "pytorch", peer);
    /* (added with the rounds and the llama.cpp peer) */
    json_object_set_new(o, "gen_q8", json_real(isfinite(genq8) ? genq8 : 0));
    json_object_set_new(o, "gen_q8_frac_read_bound", json_real(isfinite(gq8 * genq8) ? genq8 / gq8 : 0));
    json_object_set_new(o, "peak_rss_q8_mb", json_real(peak_q8_mb));
    json_object_set_new(o, "rounds", json_integer(rounds));
    json_object_set_new(o, "reps", json_integer(reps));
    json_object_set_new(o, "n_gen", json_integer(n_gen));
    if (lp) {
        json_t *l = json_object();
        json_object_set_new(l, "commit", json_string(lp->commit));
        json_object_set_new(l, "build_commit", json_string(lp->build_commit));
        json_object_set_new(l, "build_number", json_integer(lp->build_number));
        json_object_set_new(l, "build_flags", lp->flags_o ? lp->flags_o : json_object());
        lp->flags_o = NULL;
        json_object_set_new(l, "omp_wait_policy", wait_policy ? json_string(wait_policy) : json_null());
        for (int t = 0; t < LT_N; t++) {
            json_t *ty = json_object();
            if (!lp->file[t][0]) json_object_set_new(ty, "dropped", json_string(lp->why[t]));
            else {
                json_object_set_new(ty, "model_type", json_string(lp->desc[t]));
                json_object_set_new(ty, "size_mb", json_real(lp->size_mb[t]));
                for (int fa = 0; fa < 2; fa++) {
                    json_t *f = json_object();
                    for (int s = 0; s < TS_N; s++) {
                        double v = median_ok(lp->v[t][fa][s], rounds);
                        json_object_set_new(f, ts_key[s], isfinite(v) ? json_real(v) : json_null());
                    }
                    json_object_set_new(ty, fa ? "fa1" : "fa0", f);
                }
            }
            json_object_set_new(l, lt_key[t], ty);
        }
        json_object_set_new(l, "greedy_agrees", lp->greedy < 0 ? json_null() : json_boolean(lp->greedy));
        /* qkv over llama.cpp: prompts against its best type and -fa; generation like for like */
        json_t *rt = json_object();
        const double rv[] = {r128, r1024, rg32, rg16, rgq8, r128b, r1024b};
        const char *const rk[] = {"pp128", "pp1024", "gen_f32", "gen_bf16_vs_f16", "gen_q8", "pp128_bf16", "pp1024_bf16"};
        for (int k = 0; k < 7; k++) json_object_set_new(rt, rk[k], isfinite(rv[k]) ? json_real(rv[k]) : json_null());
        json_object_set_new(l, "qkv_over_llama_cpp", rt);
        json_object_set_new(o, "llama_cpp", l);
        free(lp);
    }
    else json_object_set_new(o, "llama_cpp", json_string(llama_why));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
    free(ids);
    free(gen_out);
    free(last);
    free(last2);
    return 0;
}
