/*
 * bench_model.c -- `qkv bench model`: a model's shapes with random weights made here (GPT-2
 * small, 124M parameters, by default; SmolLM2-135M or Qwen2.5-0.5B with --shape), prompt
 * processing at 128 and 1024 tokens, generation (F32 and BF16 weights), peak memory, against
 * the machine's own bounds (FMA peak and read bandwidth, measured here) and PyTorch on the
 * same weights in the same run (bench/peers/model_peers.py for GPT-2, llama_peers.py for the
 * Llama family, with OPENBLAS_CORETYPE=SkylakeX, its best OpenBLAS kernel on this machine).
 *
 *   qkv bench model [--shape gpt2, smollm2 or qwen2.5] [--threads N] [--reps R] [--gen N]
 *                   [--no-peers] [--quick]
 *
 * Checks first, then times: our AVX-512 and OpenBLAS sgemm paths must agree on the logits,
 * KV-cache generation must pick the same tokens as full forward passes, and the PyTorch
 * peer must compute the same logits from the checkpoint we hand it.
 */
#include "cli/cli.h"
#include "model/model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Prompt tokens/s over reps runs (median), last-position logits only (as llama-bench). */
static double time_prompt(qkv_model *m, const int *ids, int n, int reps, float *last) {
    double t[16];
    if (reps > 16) reps = 16;
    if (qkv_model_forward(m, ids, n, NULL, NULL, last, NULL)) return -1; /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = qkv__now();
        if (qkv_model_forward(m, ids, n, NULL, NULL, last, NULL)) return -1;
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

/* Generation tokens/s: the steps after the first token (the prompt's pass excluded). */
static double time_generate(qkv_model *m, const int *prompt, int n_prompt, int n_gen, int *out) {
    qkv_sampler greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    gen_clock g = {0};
    int n_out = 0;
    if (qkv_model_generate(m, prompt, n_prompt, n_gen, &greedy, on_gen_token, &g, out, &n_out)) return -1;
    if (n_out < 2) return -1;
    return (n_out - 1) / (g.t_last - g.t_first);
}

static const char *peer_script(const char *name) {
    static char path[4096];
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/../bench/peers/%s", exe, name);
            if (access(path, R_OK) == 0) return path;
        }
    }
    snprintf(path, sizeof path, "bench/peers/%s", name);
    return access(path, R_OK) == 0 ? path : NULL;
}

/* qkv__model_save in a child process: the writer builds the whole file in memory (as large as
 * the weights), which would otherwise count in the peak memory reported below. The child only
 * reads the parameters (copy-on-write: no copy) and runs no OpenMP. */
static qkv_status save_checkpoint(const qkv_model *m, const char *dir) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return qkv__model_save(m, dir);
    if (pid == 0) {
        qkv_status st = qkv__model_save(m, dir);
        if (st) fprintf(stderr, "qkv bench model: %s\n", qkv_last_error());
        _exit(st ? 1 : 0);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? QKV_OK : QKV_EIO;
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

int qkv__bench_model(int argc, char **argv) {
    int threads = 0, reps = 3, n_gen = 128, peers = 1, quick = 0;
    const bench_shape *shape = &shapes[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        /* each count with its range, stated when refused (no silent clamping) */
        int *slot = !strcmp(a, "--threads") ? &threads : !strcmp(a, "--reps") ? &reps
                  : !strcmp(a, "--gen") ? &n_gen : NULL;
        long lo = slot == &threads ? 1 : slot == &reps ? 1 : 2, hi = slot == &threads ? 1024 : slot == &reps ? 16 : 900;
        if (slot && has) {
            long v;
            if (qkv__cli_read_long(argv[++i], lo, hi, &v))
                return qkv__cli_usage_error("bench model", "%s must be an integer in [%ld, %ld] (got '%s')", a, lo, hi,
                                            argv[i]);
            *slot = (int)v;
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: qkv bench model [--shape gpt2, smollm2 or qwen2.5] [--threads N] [--reps R] [--gen N] "
                   "[--no-peers] [--quick]\n");
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
        else if (!strcmp(a, "--quick")) quick = 1;
        else return qkv__cli_usage_error("bench model", "unknown option '%s' (--shape gpt2|smollm2|qwen2.5, "
                                         "--threads N, --reps R, --gen N, --no-peers, --quick)", a);
    }
    if (threads > 0) qkv_set_threads(threads);
    threads = qkv_get_threads();
    if (reps < 1 || reps > 16) reps = 3;
    if (n_gen < 2 || n_gen > 900) n_gen = 128;
    if (quick) {
        reps = 1;
        n_gen = 32;
    }
    const int has_avx512 = qkv__cpu_has_avx512();

    double load_before = load_average();
    /* ---- machine bounds ---- */
    double peak = has_avx512 ? qkv__fma_peak_avx512(0.4, threads) : NAN;

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

    /* ---- the PyTorch peer on the same weights ---- */
    json_t *peer = NULL;
    char dir[] = "/tmp/qkv-bench-model-XXXXXX";
    if (peers && mkdtemp(dir)) {
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
            peer = run_peer(is_gpt2 ? "model_peers.py" : "llama_peers.py", dir, threads, reps, quick ? 16 : 64);
        }
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "qkv bench model: could not remove %s\n", dir);
    }
    if (peer)
        printf("check: PyTorch vs qkv last logits (128 tokens): max diff %.2e\n", jnum(peer, "check_max_diff"));

    /* ---- timing ---- */
    double pp128 = time_prompt(m, ids, 128, reps, last);
    double pp1024 = time_prompt(m, ids, 1024, quick ? 1 : reps, last);
    double pp128_blas = NAN, pp1024_blas = NAN;
    if (has_avx512) {
        qkv__gemm_select("openblas");
        pp128_blas = time_prompt(m, ids, 128, reps, last);
        pp1024_blas = time_prompt(m, ids, 1024, quick ? 1 : reps, last);
        qkv__gemm_select(gemm_default);
    }
    double gen32 = time_generate(m, ids, 16, n_gen, gen_out);
    int gen_agree = -1; /* the peer's greedy tokens from the same 16-token prompt: the first 8 */
    json_t *pg = peer ? json_object_get(peer, "gen_ids") : NULL;
    if (!is_gpt2 && pg && json_is_array(pg) && gen32 > 0) {
        gen_agree = json_array_size(pg) == 8;
        for (size_t k = 0; k < json_array_size(pg) && k < 8 && gen_agree; k++)
            gen_agree = json_integer_value(json_array_get(pg, k)) == gen_out[k];
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = ru.ru_maxrss / 1024.0; /* F32 weights + activations + cache */
    double gen16 = NAN;
    if (qkv_model_use_bf16(m, 1) == QKV_OK) {
        gen16 = time_generate(m, ids, 16, n_gen, gen_out);
        qkv_model_use_bf16(m, 0);
    }
    getrusage(RUSAGE_SELF, &ru);
    double peak_bf16_mb = ru.ru_maxrss / 1024.0; /* ... plus the BF16 copy */
    qkv_model_free(m);
    m = NULL;

    /* read bandwidth last, so its buffer does not count in the peak memory above */
    size_t bw_n = (size_t)1 << 27; /* 512 MB: more than any cache */
    float *bw_buf = qkv__alloc_aligned(bw_n * sizeof(float));
    double bw = NAN;
    if (bw_buf && has_avx512) {
        for (size_t i = 0; i < bw_n; i++) bw_buf[i] = (float)(i & 7);
        bw = qkv__read_bw_avx512(bw_buf, bw_n, 4, threads);
    }
    qkv__free_aligned(bw_buf);
    double load_after = load_average();

    /* bounds: FLOPs a token (last-position logits: the LM head once per prompt) */
    /* (attention: q.k and p.v over H heads of d, (N + 1) / 2 keys on average) */
    double fl128 = 2 * mat_params + L * 4 * Hd * (128 + 1) / 2 + 2 * head / 128;
    double fl1024 = 2 * mat_params + L * 4 * Hd * (1024 + 1) / 2 + 2 * head / 1024;
    double b128 = peak * 1e9 / fl128, b1024 = peak * 1e9 / fl1024;
    double bytes32 = 4 * (mat_params + head), bytes16 = 2 * (mat_params + head);
    double g32 = bw * 1e9 / bytes32, g16 = bw * 1e9 / bytes16;

    if (gen_agree >= 0)
        printf("check: PyTorch's KV-cache greedy tokens = qkv's (first 8): %s\n", gen_agree ? "yes" : "NO");
    printf("\n%s shapes (%.0fM params, random weights%s), %d threads, sgemm %s, OpenBLAS core %s\n",
           shape->title, is_gpt2 ? 124.0 : n_params / 1e6, shape->ctx_note, threads, gemm_default,
           qkv__openblas_core());
    printf("machine: FMA peak %.0f GFLOP/s, read bandwidth %.1f GB/s (measured now); load average "
           "%.1f before, %.1f after%s\n", peak, bw, load_before, load_after,
           load_before > threads || load_after > threads
               ? " -- BUSY: other processes share the cores, wall-clock rates are low" : "");
    printf("PyTorch peer: %s\n\n", peer ? "same weights, OPENBLAS_CORETYPE=SkylakeX, KV cache, torch.mv for 1-token steps"
                                        : "not run");
    printf("| %-28s | %9s | %9s | %8s | %-20s | %6s |\n", "tokens/s", "qkv", "PyTorch", "qkv/pt", "bound", "frac");
    printf("|------------------------------|-----------|-----------|----------|----------------------|--------|\n");
    row("prompt 128 (last logits)", pp128, jnum(peer, "pp128"), b128, "FLOP");
    row("prompt 1024 (last logits)", pp1024, jnum(peer, "pp1024"), b1024, "FLOP");
    if (has_avx512) {
        row("  same, OpenBLAS sgemm, 128", pp128_blas, NAN, b128, "FLOP");
        row("  same, OpenBLAS sgemm, 1024", pp1024_blas, NAN, b1024, "FLOP");
    }
    row("generate F32", gen32, jnum(peer, "gen"), g32, "read");
    row("generate BF16 weights", gen16, NAN, g16, "read");
    printf("peak memory (max RSS): qkv %.0f MB with F32 weights, %.0f MB with the BF16 copy too",
           peak_mb, peak_bf16_mb);
    if (peer) printf("; PyTorch %.0f MB", jnum(peer, "peak_mb"));
    printf("\n");
    if (is_gpt2)
        printf("reference (research/gpt2-peers.md, 2 threads): llama.cpp F32 ~870-940 / ~640-690 prompt, "
               "~52-56 generating\n");

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
    json_object_set_new(o, "pp128", json_real(pp128));
    json_object_set_new(o, "pp1024", json_real(pp1024));
    json_object_set_new(o, "pp128_openblas", json_real(isfinite(pp128_blas) ? pp128_blas : 0));
    json_object_set_new(o, "pp1024_openblas", json_real(isfinite(pp1024_blas) ? pp1024_blas : 0));
    json_object_set_new(o, "gen_f32", json_real(gen32));
    json_object_set_new(o, "gen_bf16", json_real(isfinite(gen16) ? gen16 : 0));
    json_object_set_new(o, "pp128_frac_flop_bound", json_real(isfinite(b128) ? pp128 / b128 : 0));
    json_object_set_new(o, "pp1024_frac_flop_bound", json_real(isfinite(b1024) ? pp1024 / b1024 : 0));
    json_object_set_new(o, "gen_f32_frac_read_bound", json_real(isfinite(g32) ? gen32 / g32 : 0));
    json_object_set_new(o, "gen_bf16_frac_read_bound", json_real(isfinite(g16) ? gen16 / g16 : 0));
    json_object_set_new(o, "peak_rss_mb", json_real(peak_mb));
    json_object_set_new(o, "peak_rss_bf16_mb", json_real(peak_bf16_mb));
    json_object_set_new(o, "load_before", json_real(load_before));
    json_object_set_new(o, "load_after", json_real(load_after));
    if (peer) json_object_set_new(o, "pytorch", peer);
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
