/*
 * main.c -- the qkv binary: subcommand dispatch (gguf-tools style).
 *
 *   qkv serve | attend | heads | ablate | patch | lens | forward | generate | tokenize | attention | vocab | train | grad | convert | bench
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

int qkv__cmd_convert(int argc, char **argv); /* cmd_convert.c: --to gguf|safetensors */

static const command commands[] = {
    {"serve", qkv__cmd_serve, "the playground: web page + JSON API (default model: built-in)"},
    {"attend", qkv__cmd_attend, "draw a sentence's attention (terminal heatmap, JSON, CSV, SVG)"},
    {"heads", qkv__cmd_heads, "what each attention head does: scores and tags from a probe set"},
    {"ablate", qkv__cmd_ablate, "which heads matter: knock heads out, see the target's change"},
    {"patch", qkv__cmd_patch, "activation patching between two sentences: head and position maps"},
    {"lens", qkv__cmd_lens, "logit lens: the top predictions read out after every layer"},
    {"forward", qkv__cmd_forward, "run the model on ids or text; logits and attention as .npy"},
    {"generate", qkv__cmd_generate, "generate text from a prompt"},
    {"tokenize", qkv__cmd_tokenize, "GPT-2 BPE: text on stdin -> JSON array of ids"},
    {"attention", qkv__cmd_attention, "run the attention kernel on .npy arrays (forward/backward)"},
    {"vocab", qkv__cmd_vocab, "train a byte-level BPE vocabulary on a corpus"},
    {"train", qkv__cmd_train, "train a GPT-2-style model from scratch"},
    {"grad", qkv__cmd_grad, "loss and gradient of every weight for an id sequence"},
    {"convert", qkv__cmd_convert, "convert a model: GGUF for llama.cpp, or a Hugging Face folder"},
    {"bench", qkv__cmd_bench, "benchmarks against peers: attention | model | train | serve"},
};

static void usage(FILE *out) {
    fprintf(out, "qkv: attention from first principles\n\nusage: qkv COMMAND [options]\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`qkv COMMAND --help` for a command's options. Environment: QKV_THREADS, "
                 "QKV_SIMD=avx512|avx2|scalar, QKV_MODEL.\n");
}

int qkv__cli_fail(const char *cmd, qkv_status st) {
    const char *msg = qkv_last_error();
    fprintf(stderr, "qkv %s: error: %s\n", cmd, (msg && *msg) ? msg : qkv_strerror(st));
    return 1;
}

int qkv__cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qkv %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

const char *qkv__cli_default_model(void) {
    static char path[PATH_MAX];
    const char *env = getenv("QKV_MODEL");
    if (env && *env) return env;
    /* <repo>/build/qkv -> <repo>/models/NAME, or an installed copy: the built-in model
     * (qkv-lessons), else the earlier qkv-brown */
    static const char *const names[] = {"qkv-lessons", "qkv-brown"};
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            for (int k = 0; k < 2; k++) {
                snprintf(path, sizeof path, "%s/../models/%s", exe, names[k]);
                if (access(path, R_OK) == 0) return path;
                snprintf(path, sizeof path, "%s/../share/qkv/models/%s", exe, names[k]);
                if (access(path, R_OK) == 0) return path;
            }
        }
    }
    snprintf(path, sizeof path, "models/qkv-lessons");
    return path;
}

/* --tokenizer FILE, taken out of the arguments of every command that loads a model: the
 * tokenizer to attach (a llama2.c tokenizer.bin, a tokenizer.json, a folder, a GGUF). */
static const char *tokenizer_path;
const char *qkv__cli_tokenizer_path(void) { return tokenizer_path; } /* for cmd_convert.c */

qkv_status qkv__cli_load_model(const char *path, qkv_model **out) {
    qkv_status st = qkv_model_load(path, out);
    if (st || !tokenizer_path) return st;
    qkv_tokenizer *tok = NULL;
    if (!(st = qkv_tokenizer_open(tokenizer_path, &tok)) && (st = qkv_model_set_tokenizer(*out, tok)))
        qkv_tokenizer_free(tok);
    if (st) {
        qkv_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* OpenBLAS (the pthreads build Debian ships) starts a thread per core as it loads, and they
 * poll for work, yielding, for about a tenth of a second: on two cores that takes a core from
 * whatever qkv does first (a 4096-token attention ran 30% slower). qkv runs its own threads;
 * OpenBLAS serves only the QKV_GEMM=openblas path (and CPUs without AVX-512), and brings its
 * threads back on its next threaded call, as it does after a fork. Weak: other builds may not
 * have it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

int main(int argc, char **argv) {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
    if (argc >= 2 && strcmp(argv[1], "tokenize") && strcmp(argv[1], "train") && strcmp(argv[1], "vocab")) {
        int k = 2;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
                tokenizer_path = argv[++i];
                continue;
            }
            argv[k++] = argv[i];
        }
        argc = k;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qkv: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

int qkv__cli_read_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int qkv__cli_read_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || errno) return -1;
    *out = v;
    return 0;
}

int qkv__cli_read_ids(const char *s, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    int count = 0;
    const char *p = s;
    while (*p == ' ') p++;
    int bracket = *p == '[';
    if (bracket) p++;
    while (*p == ' ') p++;
    if (*p == '\0' || (bracket && *p == ']')) goto close; /* no ids at all */
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 0x7fffffffL || (size_t)count == cap) goto bad;
        v[count++] = (int)x;
        p = end;
        while (*p == ' ') p++;
        if (*p != ',') break;
        p++;
        while (*p == ' ') p++;
    }
close:
    if (bracket) {
        if (*p != ']') goto bad;
        p++;
    }
    while (*p == ' ' || *p == '\n') p++;
    if (*p) goto bad;
    *ids = v;
    *n = count;
    return 0;
bad:
    free(v);
    return -1;
}
