/* cmd_bench.c -- `qkv bench [attention|model|train|serve] [options]`: each benchmark checks
 * its results first, then times, and prints a table and JSON.
 *
 * `qkv bench` alone runs all four. `--help` (or -h) anywhere, before or after a name, prints
 * usage and runs nothing (issue 14: `qkv bench --help` used to run every benchmark, and
 * `qkv bench serve --help` was a usage error). The usage lines live here, in one table, so
 * help never depends on a benchmark's own option loop. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct bench {
    const char *name;
    int (*run)(int, char **);
    const char *options; /* usage after "qkv bench NAME" */
    const char *what;
} BENCHES[] = {
    {"attention", qkv__bench_attention,
     "[--quick] [--sizes 128,512,...] [--threads N] [--budget SEC] [--no-peers] [--no-decode] [--no-bf16] [--json FILE]",
     "the fused engine against this machine's peak and PyTorch/NumPy (and its BF16 forward)"},
    {"model", qkv__bench_model,
     "[--shape gpt2, smollm2 or qwen2.5] [--threads N] [--rounds R] [--reps N] [--gen N] [--no-peers] [--no-llama] "
     "[--build-peers] [--quick]",
     "GPT-2, SmolLM2 or Qwen2.5 shapes: forward and generation (F32, BF16, Q8_0) against PyTorch and, for GPT-2,\n"
     "  llama.cpp's llama-bench (F32, F16, Q8_0 GGUFs) on the same weights, in R interleaved rounds (default 3)"},
    {"train", qkv__bench_train, "[--threads N] [--steps S] [--quick] [--tiny] [--no-peers] [--no-llmc]",
     "one training step against PyTorch and llm.c"},
    {"serve", qkv__bench_serve,
     "[--model DIR] [--reps R] [--wrk-seconds S] [--threads N] [--no-gpt2] [--no-wrk] [--no-peers]",
     "the playground server's POST /api/attend"},
};
#define N_BENCHES (sizeof BENCHES / sizeof BENCHES[0])

static void usage(FILE *out, const struct bench *only) {
    if (only) {
        fprintf(out, "usage: qkv bench %s %s\n\n  %s\n", only->name, only->options, only->what);
        return;
    }
    fprintf(out, "usage: qkv bench [NAME [options]]   (no NAME: run all four)\n\n");
    for (size_t i = 0; i < N_BENCHES; i++)
        fprintf(out, "  qkv bench %-9s %s\n  %19s %s\n", BENCHES[i].name, BENCHES[i].options, "",
                BENCHES[i].what);
}

static int is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

int qkv__cmd_bench(int argc, char **argv) {
    const struct bench *b = NULL;
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < N_BENCHES; i++)
            if (!strcmp(argv[1], BENCHES[i].name)) b = &BENCHES[i];
        if (!b) {
            usage(stderr, NULL);
            return qkv__cli_usage_error("bench", "unknown benchmark '%s' (attention, model, train, serve)",
                                        argv[1]);
        }
    }
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i])) {
            usage(stdout, b);
            return 0;
        }
    if (b) return b->run(argc - 1, argv + 1);
    if (argc >= 2) { /* options without a name: each benchmark has its own */
        usage(stderr, NULL);
        return qkv__cli_usage_error("bench", "'%s': options go after a benchmark name (qkv bench NAME %s)",
                                    argv[1], argv[1]);
    }
    int rc = 0;
    for (size_t i = 0; i < N_BENCHES; i++) {
        char *sub[] = {(char *)BENCHES[i].name, NULL};
        int r = BENCHES[i].run(1, sub);
        if (r) rc = r;
    }
    return rc;
}
