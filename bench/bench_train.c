/*
 * bench_train.c -- `qkv bench train`: training tokens/s (forward, backward, clipping, AdamW:
 * one optimizer step on a B x T batch) for the built-in model's configuration and for GPT-2
 * small's shapes, against PyTorch on the same configuration in the same run
 * (bench/peers/train_peers.py, OPENBLAS_CORETYPE=SkylakeX), and as a fraction of the
 * machine's FMA peak measured now. FLOPs per step: (6 x parameters + 12 x L x C x T) x B x T
 * (nanoGPT's estimate: matmuls 2 forward + 4 backward per weight, attention counted as if
 * not causal); wpe is not a matmul and is left out of the parameters.
 *
 *   qkv bench train [--threads N] [--steps S] [--quick] [--no-peers]
 *
 * Checks before it times: the first step's loss is ln(V) + 0.02^2 C / 2 +- 0.1 (GPT-2 init on
 * random tokens), and the loss falls over the timed steps (all on the same batch).
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
    qkv_model_config cfg = {c->L, c->H, c->C, c->T, c->V, 1e-5f};
    qkv_model *m = NULL;
    qkv__trainer t;
    int *in = NULL, *tg = NULL;
    if (qkv__model_create(&cfg, &m)) return qkv__cli_fail("bench train", QKV_ENOMEM);
    size_t n;
    qkv__gpt2_init_weights(&cfg, qkv__model_params_block(m, &n), 1);
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

static int run_peer(const bench_cfg *c, int steps, int threads, double *ms, double *loss0,
                    char *core, size_t core_n) {
    char cmd[1024], line[2048];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 "
             "bench/peers/train_peers.py --layers %d --heads %d --embd %d --ctx %d --vocab %d "
             "--batch %d --steps %d --threads %d 2>&1",
             threads, threads, c->L, c->H, c->C, c->T, c->V, c->B, steps, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        if (!strstr(line, "\"peer\"")) continue;
        *ms = json_number(line, "ms_per_step");
        *loss0 = json_number(line, "first_loss");
        const char *q = strstr(line, "\"core\": \"");
        if (q) {
            q += 9;
            size_t k = 0;
            while (q[k] && q[k] != '"' && k + 1 < core_n) core[k] = q[k], k++;
            core[k] = '\0';
        }
        got = isfinite(*ms);
    }
    int st = pclose(p);
    return got && st == 0 ? 0 : -1;
}

int qkv__bench_train(int argc, char **argv) {
    const char *cmd = "bench train";
    int threads = 0, steps = 3, quick = 0, peers = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--no-peers")) peers = 0;
        else if ((!strcmp(a, "--threads") || !strcmp(a, "--steps")) && i + 1 < argc) {
            int rc = qkv__cli_parse_int(cmd, a, argv[++i], 1, 4096, !strcmp(a, "--threads") ? &threads : &steps);
            if (rc) return rc;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: qkv bench train [--threads N] [--steps S] [--quick] [--no-peers]\n");
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
    int n_cfg = quick ? 1 : 2;
    double peak = qkv__cpu_has_avx512() ? qkv__fma_peak_avx512(0.3, threads) : NAN;
    const char *env_core = getenv("OPENBLAS_CORETYPE");
    printf("qkv bench train: %d threads, OpenBLAS core %s (OPENBLAS_CORETYPE=%s; its sgemm runs "
           "single-threaded inside qkv's OpenMP threads), FMA peak %.0f GFLOP/s (measured now)\n",
           threads, openblas_core_name(), env_core ? env_core : "unset", peak);
    printf("one step = forward + backward + clip + AdamW on a B x T batch; median of %d steps after "
           "1 warm-up; PyTorch %s\n\n", steps, peers ? "with OPENBLAS_CORETYPE=SkylakeX" : "not run");
    printf("%-22s %7s %9s | %9s %9s %6s %6s | %9s %9s | %s\n", "config", "params", "tok/step",
           "qkv ms", "qkv tok/s", "GF/s", "%peak", "torch ms", "tok/s", "qkv/torch");
    char json[4096];
    size_t jl = (size_t)snprintf(json, sizeof json, "{\"bench\": \"train\", \"threads\": %d, \"peak_gflops\": %.1f, \"configs\": [",
                                 threads, isfinite(peak) ? peak : 0.0);
    int all_ok = 1;
    for (int i = 0; i < n_cfg; i++) {
        const bench_cfg *c = &cfgs[i];
        bench_result r;
        if (run_qkv(c, steps, &r)) return 1;
        double tms = NAN, tl0 = NAN;
        char core[64] = "";
        if (peers && run_peer(c, steps, threads, &tms, &tl0, core, sizeof core))
            fprintf(stderr, "qkv bench train: the PyTorch peer failed (bench/peers/train_peers.py)\n");
        if (!r.ok) all_ok = 0;
        double ttok = (double)c->B * c->T / (tms / 1e3);
        printf("%-22s %6.1fM %9d | %9.1f %9.0f %6.1f %5.1f%% | %9.1f %9.0f | %.2fx%s\n", c->name,
               (double)r.params / 1e6, c->B * c->T, r.ms, r.tok_s, r.gflops, 100.0 * r.gflops / peak,
               tms, ttok, tms / r.ms, r.ok ? "" : "  CHECK FAILED");
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"name\": \"%s\", \"layers\": %d, \"heads\": %d, \"embd\": %d, "
                               "\"ctx\": %d, \"vocab\": %d, \"batch\": %d, \"params\": %zu, "
                               "\"qkv_ms_per_step\": %.2f, \"qkv_tokens_per_s\": %.1f, \"qkv_gflops\": %.1f, "
                               "\"peak_fraction\": %.4f, \"torch_ms_per_step\": %.2f, "
                               "\"torch_tokens_per_s\": %.1f, \"speedup_vs_torch\": %.3f, "
                               "\"loss_first\": %.4f, \"torch_loss_first\": %.4f, \"check\": %s}",
                               i ? ", " : "", c->name, c->L, c->H, c->C, c->T, c->V, c->B, r.params,
                               r.ms, r.tok_s, r.gflops, r.gflops / peak, isfinite(tms) ? tms : -1.0,
                               isfinite(ttok) ? ttok : -1.0, isfinite(tms) ? tms / r.ms : -1.0, r.loss0,
                               isfinite(tl0) ? tl0 : -1.0, r.ok ? "true" : "false");
    }
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "]}");
    printf("\n%s\n", json);
    if (!all_ok) fprintf(stderr, "qkv bench train: a check failed (first loss not ln(V), or the loss did not fall)\n");
    return all_ok ? 0 : 1;
}
