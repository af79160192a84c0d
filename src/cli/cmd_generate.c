/*
 * cmd_generate.c -- `qkv generate`: text continuation with a KV cache, streamed to stdout.
 *
 *   qkv generate [--model DIR] (--prompt "..." | --ids 1,2,3) [--max-tokens N]
 *                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--bf16] [--ids-out]
 *                [--stats]
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv generate [--model DIR] --prompt \"...\" [--max-tokens N] [--temperature T]\n"
            "                    [--top-k K] [--top-p P] [--seed S] [--bf16] [--ids-out] [--stats]\n"
            "\n"
            "Continues the prompt, printing the continuation as it is generated. Stops at <|endoftext|>,\n"
            "after N tokens (default 64) or when the context is full.\n"
            "  --temperature T  0 = greedy (the most likely token every time); default 1\n"
            "  --top-k K        sample among the K most likely tokens (0 = off, default)\n"
            "  --top-p P        sample among the most likely tokens whose mass reaches P (1 = off)\n"
            "  --seed S         random seed (default 0): the same seed gives the same text\n"
            "  --ids 1,2,3      start from token ids instead of --prompt\n"
            "  --bf16           generate with BF16 copies of the weights (about 2x faster)\n"
            "  --ids-out        print the generated ids as a JSON array instead of text\n"
            "  --stats          print tokens/s to stderr\n"
            "  --threads N      compute threads (default: all cores, or $QKV_THREADS)\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

typedef struct {
    qkv_tokenizer *tok;
    int ids_out, count;
} stream_state;

/* Streams each token's bytes as they come (a character split over tokens comes out whole
 * once its last byte arrives: the terminal sees the same bytes either way). */
static int on_token(void *user, int id) {
    stream_state *s = user;
    if (s->ids_out) {
        printf("%s%d", s->count ? "," : "[", id);
    } else {
        const char *b;
        size_t len;
        if (s->tok && !qkv_tokenizer_token_bytes(s->tok, id, &b, &len)) fwrite(b, 1, len, stdout);
    }
    s->count++;
    fflush(stdout);
    return 0;
}

int qkv__cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *ids_arg = NULL;
    long max_tokens = 64, top_k = 0, threads = 0;
    unsigned long long seed = 0;
    float temperature = 1.0f, top_p = 1.0f;
    int bf16 = 0, ids_out = 0, stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--prompt") && has) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--ids") && has) {
            ids_arg = argv[++i];
        } else if (!strcmp(a, "--max-tokens") && has) {
            if (qkv__cli_read_long(argv[++i], 0, 1 << 20, &max_tokens))
                return qkv__cli_usage_error("generate", "--max-tokens must be an integer in [0, 1048576]");
        } else if (!strcmp(a, "--temperature") && has) {
            if (qkv__cli_read_float(argv[++i], &temperature) || !(temperature >= 0.0f) || temperature > 1e6f)
                return qkv__cli_usage_error("generate", "--temperature must be a number >= 0");
        } else if (!strcmp(a, "--top-k") && has) {
            if (qkv__cli_read_long(argv[++i], 0, 1 << 24, &top_k))
                return qkv__cli_usage_error("generate", "--top-k must be an integer >= 0");
        } else if (!strcmp(a, "--top-p") && has) {
            if (qkv__cli_read_float(argv[++i], &top_p) || !(top_p > 0.0f && top_p <= 1.0f))
                return qkv__cli_usage_error("generate", "--top-p must be in (0, 1]");
        } else if (!strcmp(a, "--seed") && has) {
            char *end;
            const char *s = argv[++i];
            errno = 0;
            seed = strtoull(s, &end, 10);
            if (*s == '\0' || *s == '-' || *end || errno)
                return qkv__cli_usage_error("generate", "--seed must be a non-negative integer");
        } else if (!strcmp(a, "--threads") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &threads))
                return qkv__cli_usage_error("generate", "--threads must be in [1, 1024]");
            qkv_set_threads((int)threads);
        } else if (!strcmp(a, "--bf16")) {
            bf16 = 1;
        } else if (!strcmp(a, "--ids-out")) {
            ids_out = 1;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else {
            usage(stderr);
            return qkv__cli_usage_error("generate", "unknown or incomplete option '%s'", a);
        }
    }
    if (!!prompt == !!ids_arg) {
        usage(stderr);
        return qkv__cli_usage_error("generate", "give exactly one of --prompt and --ids");
    }
    if (!model_dir) model_dir = qkv__cli_default_model();

    qkv_model *model = NULL;
    qkv_status st = qkv_model_load(model_dir, &model);
    if (st) return qkv__cli_fail("generate", st);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    int *ids = NULL, *out = NULL, n = 0, n_out = 0, rc = 0;
    if (prompt) {
        if (!tok) {
            qkv_model_free(model);
            return qkv__cli_usage_error("generate", "%s has no vocab.json + merges.txt: use --ids", model_dir);
        }
        size_t nn = 0;
        if ((st = qkv_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &nn))) goto fail;
        if (nn > (size_t)cfg->n_ctx) {
            st = qkv__fail(QKV_ETOOLONG, "the prompt is %zu tokens, more than the model's context of %d",
                           nn, cfg->n_ctx);
            goto fail;
        }
        n = (int)nn;
    } else {
        /* "1,2,3" */
        size_t cap = 16;
        ids = malloc(cap * sizeof *ids);
        const char *p = ids_arg;
        while (ids && *p) {
            while (*p == ',' || *p == ' ') p++;
            if (!*p) break;
            long v;
            char *end;
            errno = 0;
            v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > 0x7fffffffL) {
                free(ids);
                qkv_model_free(model);
                return qkv__cli_usage_error("generate", "--ids wants numbers separated by commas");
            }
            if ((size_t)n == cap) {
                cap *= 2;
                int *nv = realloc(ids, cap * sizeof *ids);
                if (!nv) break;
                ids = nv;
            }
            ids[n++] = (int)v;
            p = end;
        }
        if (!ids) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (n == 0) {
        st = qkv__fail(QKV_EINVAL, "the prompt is empty (no tokens)");
        goto fail;
    }
    if (bf16 && (st = qkv_model_use_bf16(model, 1))) goto fail;
    out = malloc(sizeof(int) * (size_t)(max_tokens > 0 ? max_tokens : 1));
    if (!out) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto fail;
    }
    if (!tok && !ids_out) ids_out = 1; /* no tokenizer: ids are all we can print */
    stream_state ss = {.tok = tok, .ids_out = ids_out, .count = 0};
    qkv_sampler sampler = {.temperature = temperature, .top_k = (int)top_k, .top_p = top_p,
                           .seed = (uint64_t)seed};
    double t0 = qkv__now();
    st = qkv_model_generate(model, ids, n, (int)max_tokens, &sampler, on_token, &ss, out, &n_out);
    double dt = qkv__now() - t0;
    if (ids_out) printf("%s]\n", ss.count ? "" : "[");
    else printf("\n");
    fflush(stdout);
    if (st) goto fail;
    if (stats)
        fprintf(stderr, "qkv generate: %d prompt tokens, %d generated in %.3f s (%.1f tokens/s)\n", n,
                n_out, dt, dt > 0 ? n_out / dt : 0.0);
    goto done;
fail:
    rc = qkv__cli_fail("generate", st);
done:
    free(ids);
    free(out);
    qkv_model_free(model);
    return rc;
}
