/*
 * bench_train.c -- `qkv bench train`: training tokens/s (forward, backward, clipping, AdamW:
 * one optimizer step on a B x T batch) for the built-in model's configuration and for GPT-2
 * small's shapes, against two peers on the same configuration in the same run, with the same
 * B, T, steps and threads, and as a fraction of the machine's FMA peak measured now:
 *   - PyTorch (bench/peers/train_peers.py, OPENBLAS_CORETYPE=SkylakeX);
 *   - llm.c's CPU trainer (karpathy/llm.c train_gpt2.c, vendored unchanged in bench/peers/llmc/,
 *     driven by bench/peers/llmc_bench.c). It is compiled here on first use, with llm.c's own
 *     Makefile flags (gcc -Ofast -march=native -fopenmp -DOMP), into build/peers/llmc_bench
 *     (rebuilt when a source is newer), and run with OMP_NUM_THREADS = the thread count.
 *     Its step is llm.c's: forward + zero_grad + backward + AdamW (betas 0.9/0.999, no weight
 *     decay), no gradient clipping; its vocabulary is padded to a multiple of 128 (50304 for
 *     GPT-2), so its logits matmul is up to 127 rows wider than qkv's.
 * A peer that cannot be built or run prints why on stderr and shows "n/a"; the bench still runs.
 * FLOPs per step: (6 x parameters + 12 x L x C x T) x B x T (nanoGPT's estimate: matmuls
 * 2 forward + 4 backward per weight, attention counted as if not causal); wpe is not a matmul
 * and is left out of the parameters.
 *
 *   qkv bench train [--threads N] [--steps S] [--quick] [--tiny] [--no-peers] [--no-llmc]
 *
 * --quick: the built-in configuration only. --tiny: a 2-layer, C=64 model with B x T = 2 x 32
 * (a seconds-long smoke run of this harness and its peers, not a benchmark). --no-llmc: PyTorch
 * only (llm.c takes minutes per step at GPT-2 small's shapes).
 *
 * Checks before it times: the first step's loss is ln(V) + 0.02^2 C / 2 +- 0.1 (GPT-2 init on
 * random tokens), and the loss falls over the timed steps (all on the same batch). The same
 * first-loss check on llm.c's output only warns (stderr and "llmc_check" in the JSON).
 */
#include "cli/cli.h"
#include "cli/train_cli.h"
#include "model/model.h"
#include "train/trainer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct bench_cfg {
    const char *name;
    int L, H, C, T, V, B;
} bench_cfg;

typedef struct bench_result {
    double ms, tok_s, gflops, loss0, loss1;
    size_t params;
    int ok;
} bench_result;

static const char *openblas_core_name(void) {
    const char *n = openblas_get_corename();
    return n ? n : "?";
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double flops_per_step(const bench_cfg *c, size_t params) {
    double n = (double)params - (double)c->T * c->C; /* minus wpe */
    return (6.0 * n + 12.0 * c->L * c->C * (double)c->T) * c->B * c->T;
}

static int run_qkv(const bench_cfg *c, int steps, bench_result *r) {
    memset(r, 0, sizeof *r);
    qkv_model_config cfg = {.n_layer = c->L, .n_head = c->H, .n_embd = c->C, .n_ctx = c->T, .vocab_size = c->V, .layer_norm_eps = 1e-5f};
    qkv_model *m = NULL;
    qkv__trainer t;
    int *in = NULL, *tg = NULL;
    if (qkv__model_create(&cfg, &m)) return qkv__cli_fail("bench train", QKV_ENOMEM);
    size_t n;
    qkv__init_weights(&cfg, qkv__model_params_block(m, &n), 1);
    if (qkv__trainer_init(&t, m, c->B, c->T)) {
        qkv_model_free(m);
        return qkv__cli_fail("bench train", QKV_ENOMEM);
    }
    size_t BT = (size_t)c->B * c->T;
    in = malloc(BT * sizeof(int));
    tg = malloc(BT * sizeof(int));
    uint64_t s = 7;
    int prev = (int)(qkv__rng_next(&s) % (uint64_t)c->V);
    for (size_t i = 0; i < BT; i++) {
        in[i] = prev;
        tg[i] = prev = (int)(qkv__rng_next(&s) % (uint64_t)c->V);
    }
    qkv__adamw h = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    double *times = malloc((size_t)(steps + 1) * sizeof(double));
    int rc = 0;
    for (int st = 0; st <= steps; st++) { /* step 0 warms up */
        double t0 = qkv__now();
        memset(t.grads, 0, t.n_params * sizeof(float));
        float loss;
        if (qkv__trainer_micro(&t, in, tg, c->B, c->T, 1.0f, &loss)) {
            rc = qkv__cli_fail("bench train", QKV_EINVAL);
            break;
        }
        qkv__trainer_update(&t, &h, 1e-3f);
        times[st] = qkv__now() - t0;
        if (st == 0) r->loss0 = loss;
        r->loss1 = loss;
    }
    if (!rc) {
        qsort(times + 1, (size_t)steps, sizeof(double), cmp_d);
        r->ms = 1e3 * (steps % 2 ? times[1 + steps / 2] : 0.5 * (times[steps / 2] + times[1 + steps / 2]));
        r->params = t.n_params;
        r->tok_s = (double)BT / (r->ms / 1e3);
        r->gflops = flops_per_step(c, t.n_params) / (r->ms / 1e3) / 1e9;
        /* GPT-2 init: logits ~ N(0, 0.02^2 C) (unit LayerNorm output against wte rows), so the
         * expected first loss is ln V + 0.02^2 C / 2 */
        r->ok = fabs(r->loss0 - (log((double)c->V) + 0.0002 * c->C)) < 0.1 && r->loss1 < r->loss0;
    }
    free(times);
    free(in);
    free(tg);
    qkv__trainer_free(&t);
    qkv_model_free(m);
    return rc;
}

static double json_number(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static void json_string(const char *line, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *q = strstr(line, pat);
    size_t k = 0;
    if (q) {
        q += strlen(pat);
        while (q[k] && q[k] != '"' && k + 1 < n) out[k] = q[k], k++;
    }
    out[k] = '\0';
}

/* pclose's status as a number a person can read: the exit code, or 128 + the signal */
static int exit_code(int st) {
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : st;
}

typedef struct peer_result {
    double ms, loss0, loss1;
    char core[64], version[64];
} peer_result;

/* runs a peer command and reads its JSON line (the one with "peer"); -1 on any failure, with the
 * peer's last output line on stderr */
static int run_peer_cmd(const char *name, const char *cmd, peer_result *r) {
    char line[2048], last[2048] = "";
    r->ms = r->loss0 = r->loss1 = NAN;
    r->core[0] = r->version[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "qkv bench train: cannot start the %s peer\n", name);
        return -1;
    }
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        if (!strstr(line, "\"peer\"")) {
            if (line[0] != '\n') snprintf(last, sizeof last, "%s", line);
            continue;
        }
        r->ms = json_number(line, "ms_per_step");
        r->loss0 = json_number(line, "first_loss");
        r->loss1 = json_number(line, "last_loss");
        json_string(line, "core", r->core, sizeof r->core);
        json_string(line, "version", r->version, sizeof r->version);
        got = isfinite(r->ms) && r->ms > 0;
    }
    int st = pclose(p);
    if (got && st == 0) return 0;
    fprintf(stderr, "qkv bench train: the %s peer failed (exit status %d)%s%s", name, exit_code(st),
            last[0] ? "; its last line: " : "\n", last);
    r->ms = NAN;
    return -1;
}

static int run_torch(const bench_cfg *c, int steps, int threads, peer_result *r) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 "
             "bench/peers/train_peers.py --layers %d --heads %d --embd %d --ctx %d --vocab %d "
             "--batch %d --steps %d --threads %d 2>&1",
             threads, threads, c->L, c->H, c->C, c->T, c->V, c->B, steps, threads);
    return run_peer_cmd("PyTorch (bench/peers/train_peers.py)", cmd, r);
}

/* llm.c's CPU trainer: build/peers/llmc_bench, compiled from the vendored sources with llm.c's
 * Makefile flags for train_gpt2 (CFLAGS -Ofast -Wno-unused-result -Wno-ignored-pragmas
 * -Wno-unknown-attributes, CFLAGS_COND -march=native, OpenMP -fopenmp -DOMP, LDLIBS -lm -lgomp) */
#define LLMC_BIN "build/peers/llmc_bench"
#define LLMC_FLAGS "-Ofast -Wno-unused-result -Wno-ignored-pragmas -Wno-unknown-attributes -march=native -fopenmp -DOMP"
static const char *const llmc_sources[] = {
    "bench/peers/llmc_bench.c",         "bench/peers/llmc/train_gpt2.c",
    "bench/peers/llmc/llmc/utils.h",     "bench/peers/llmc/llmc/tokenizer.h",
    "bench/peers/llmc/llmc/dataloader.h", "bench/peers/llmc/llmc/rand.h",
};

static int llmc_build(void) {
    struct stat bin, src;
    int fresh = stat(LLMC_BIN, &bin) == 0;
    for (size_t i = 0; i < sizeof llmc_sources / sizeof *llmc_sources; i++) {
        if (stat(llmc_sources[i], &src) != 0) {
            fprintf(stderr, "qkv bench train: llm.c peer not built: %s is missing (run from the repository root)\n",
                    llmc_sources[i]);
            return -1;
        }
        if (fresh && (src.st_mtim.tv_sec > bin.st_mtim.tv_sec ||
                      (src.st_mtim.tv_sec == bin.st_mtim.tv_sec && src.st_mtim.tv_nsec > bin.st_mtim.tv_nsec)))
            fresh = 0;
    }
    if (fresh) return 0;
    mkdir("build", 0755);
    mkdir("build/peers", 0755);
    char tmp[128], cmd[1024], line[1024];
    snprintf(tmp, sizeof tmp, LLMC_BIN ".tmp%ld", (long)getpid());
    snprintf(cmd, sizeof cmd, "gcc " LLMC_FLAGS " bench/peers/llmc_bench.c -lm -lgomp -o %s 2>&1", tmp);
    fprintf(stderr, "qkv bench train: building the llm.c peer: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "qkv bench train: llm.c peer not built: cannot run gcc\n");
        return -1;
    }
    char out[4096] = "";
    size_t ol = 0;
    while (fgets(line, sizeof line, p))
        if (ol + 1 < sizeof out) ol += (size_t)snprintf(out + ol, sizeof out - ol, "%s", line);
    int st = pclose(p);
    if (st != 0 || rename(tmp, LLMC_BIN) != 0) {
        fprintf(stderr, "qkv bench train: llm.c peer not built (gcc exit status %d):\n%s", exit_code(st), out);
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int run_llmc(const bench_cfg *c, int steps, int threads, peer_result *r) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=%d " LLMC_BIN " --layers %d --heads %d --embd %d --ctx %d --vocab %d "
             "--batch %d --steps %d 2>&1",
             threads, c->L, c->H, c->C, c->T, c->V, c->B, steps);
    return run_peer_cmd("llm.c (build/peers/llmc_bench)", cmd, r);
}

/* "n/a" for a peer that did not run */
static const char *fmt_or_na(char *buf, size_t n, const char *fmt, double v) {
    if (!isfinite(v)) return "n/a";
    snprintf(buf, n, fmt, v);
    return buf;
}

static double json_or_neg(double v) { return isfinite(v) ? v : -1.0; }

int qkv__bench_train(int argc, char **argv) {
    const char *cmd = "bench train";
    int threads = 0, steps = 3, quick = 0, tiny = 0, peers = 1, llmc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--tiny")) tiny = 1;
        else if (!strcmp(a, "--no-peers")) peers = 0;
        else if (!strcmp(a, "--no-llmc")) llmc = 0;
        else if ((!strcmp(a, "--threads") || !strcmp(a, "--steps")) && i + 1 < argc) {
            int rc = qkv__cli_parse_int(cmd, a, argv[++i], 1, 4096, !strcmp(a, "--threads") ? &threads : &steps);
            if (rc) return rc;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: qkv bench train [--threads N] [--steps S] [--quick] [--tiny] [--no-peers] [--no-llmc]\n");
            return 0;
        } else {
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    /* the peer runs with OPENBLAS_CORETYPE=SkylakeX: give qkv the same kernel (a shell's
     * Haswell setting would otherwise make qkv alone run AVX2 sgemm) */
    __builtin_cpu_init();
    const char *want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell";
    const char *have = getenv("OPENBLAS_CORETYPE");
    if (have && strcmp(have, want) && !getenv("QKV_NO_REEXEC")) unsetenv("OPENBLAS_CORETYPE");
    qkv__cli_blas_reexec("bench", argc, argv);
    if (threads) qkv_set_threads(threads);
    threads = qkv_get_threads();
    const bench_cfg cfgs[] = {
        {"qkv-brown (built-in)", 4, 8, 256, 128, 4096, 16},
        {"GPT-2 small shapes", 12, 12, 768, 1024, 50257, 1},
    };
    const bench_cfg tiny_cfg = {"tiny (smoke run)", 2, 2, 64, 32, 512, 2};
    const bench_cfg *cfg_list = tiny ? &tiny_cfg : cfgs;
    int n_cfg = tiny || quick ? 1 : 2;
    int use_llmc = peers && llmc && llmc_build() == 0;
    double peak = qkv__cpu_has_avx512() ? qkv__fma_peak_avx512(0.3, threads) : NAN;
    const char *env_core = getenv("OPENBLAS_CORETYPE");
    printf("qkv bench train: %d threads, OpenBLAS core %s (OPENBLAS_CORETYPE=%s; its sgemm runs "
           "single-threaded inside qkv's OpenMP threads), FMA peak %.0f GFLOP/s (measured now)\n",
           threads, openblas_core_name(), env_core ? env_core : "unset", peak);
    printf("one step = forward + backward + clip + AdamW on a B x T batch; median of %d steps after "
           "1 warm-up; PyTorch %s; llm.c %s\n\n", steps,
           peers ? "with OPENBLAS_CORETYPE=SkylakeX" : "not run",
           use_llmc ? "train_gpt2.c (gcc -Ofast -march=native -fopenmp, OMP_NUM_THREADS = threads; its step has "
                      "no clipping, its vocabulary is padded to a multiple of 128)"
                    : "not run");
    printf("%-22s %7s %9s | %9s %9s %6s %6s | %9s %9s | %9s %9s | %9s %9s\n", "config", "params", "tok/step",
           "qkv ms", "qkv tok/s", "GF/s", "%peak", "torch ms", "tok/s", "llm.c ms", "tok/s", "qkv/torch",
           "qkv/llm.c");
    char json[8192];
    size_t jl = (size_t)snprintf(json, sizeof json, "{\"bench\": \"train\", \"threads\": %d, \"peak_gflops\": %.1f, "
                                 "\"llmc_commit\": \"%s\", \"configs\": [",
                                 threads, isfinite(peak) ? peak : 0.0, use_llmc ? "db2454f88f1cdf0568c76d4c4bf2b1e0ed508cf0" : "");
    int all_ok = 1;
    for (int i = 0; i < n_cfg; i++) {
        const bench_cfg *c = &cfg_list[i];
        bench_result r;
        if (run_qkv(c, steps, &r)) return 1;
        peer_result tr = {NAN, NAN, NAN, "", ""}, lr = {NAN, NAN, NAN, "", ""};
        if (peers) run_torch(c, steps, threads, &tr);
        if (use_llmc) run_llmc(c, steps, threads, &lr);
        /* llm.c's first loss: the check qkv's own run makes, as a warning only */
        double expect = log((double)c->V) + 0.0002 * c->C;
        int llmc_ok = isfinite(lr.ms) && fabs(lr.loss0 - expect) < 0.1;
        if (isfinite(lr.ms) && !llmc_ok)
            fprintf(stderr, "qkv bench train: WARNING: llm.c's first loss %.4f on %s is not ln(V) + 0.0002 C = %.4f "
                            "+- 0.1: its timing may not be of a working model\n", lr.loss0, c->name, expect);
        if (!r.ok) all_ok = 0;
        double tok = (double)c->B * c->T;
        double ttok = tok / (tr.ms / 1e3), ltok = tok / (lr.ms / 1e3);
        char b[6][32];
        printf("%-22s %6.1fM %9d | %9.1f %9.0f %6.1f %5.1f%% | %9s %9s | %9s %9s | %9s %9s%s\n", c->name,
               (double)r.params / 1e6, c->B * c->T, r.ms, r.tok_s, r.gflops, 100.0 * r.gflops / peak,
               fmt_or_na(b[0], 32, "%.1f", tr.ms), fmt_or_na(b[1], 32, "%.0f", ttok),
               fmt_or_na(b[2], 32, "%.1f", lr.ms), fmt_or_na(b[3], 32, "%.0f", ltok),
               fmt_or_na(b[4], 32, "%.2fx", tr.ms / r.ms), fmt_or_na(b[5], 32, "%.2fx", lr.ms / r.ms),
               r.ok ? "" : "  CHECK FAILED");
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"name\": \"%s\", \"layers\": %d, \"heads\": %d, \"embd\": %d, "
                               "\"ctx\": %d, \"vocab\": %d, \"batch\": %d, \"params\": %zu, "
                               "\"qkv_ms_per_step\": %.2f, \"qkv_tokens_per_s\": %.1f, \"qkv_gflops\": %.1f, "
                               "\"peak_fraction\": %.4f, \"torch_ms_per_step\": %.2f, "
                               "\"torch_tokens_per_s\": %.1f, \"speedup_vs_torch\": %.3f, "
                               "\"llmc_ms_per_step\": %.2f, \"llmc_tokens_per_s\": %.1f, \"speedup_vs_llmc\": %.3f, "
                               "\"loss_first\": %.4f, \"torch_loss_first\": %.4f, \"llmc_loss_first\": %.4f, "
                               "\"llmc_check\": %s, \"check\": %s}",
                               i ? ", " : "", c->name, c->L, c->H, c->C, c->T, c->V, c->B, r.params,
                               r.ms, r.tok_s, r.gflops, r.gflops / peak, json_or_neg(tr.ms), json_or_neg(ttok),
                               json_or_neg(tr.ms / r.ms), json_or_neg(lr.ms), json_or_neg(ltok),
                               json_or_neg(lr.ms / r.ms), r.loss0, json_or_neg(tr.loss0), json_or_neg(lr.loss0),
                               isfinite(lr.ms) ? (llmc_ok ? "true" : "false") : "null", r.ok ? "true" : "false");
    }
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "]}");
    printf("\n%s\n", json);
    if (!all_ok) fprintf(stderr, "qkv bench train: a check failed (first loss not ln(V), or the loss did not fall)\n");
    return all_ok ? 0 : 1;
}
