/*
 * cmd_vocab.c -- `qkv vocab`: train a GPT-2-style byte-level BPE vocabulary on a corpus.
 *
 *   qkv vocab --data corpus.txt --size 4096 --out DIR
 *
 * Writes DIR/vocab.json and DIR/merges.txt (loadable by `qkv tokenize --model DIR` and by
 * Hugging Face's GPT2Tokenizer), then reloads them and reports bytes per token on the corpus.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CORPUS ((size_t)1 << 30) /* 1 GiB */

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv vocab --data CORPUS.txt --size N --out DIR\n"
            "\n"
            "Trains a byte-level BPE vocabulary of N tokens (256 bytes + N-257 merges +\n"
            "<|endoftext|>) on CORPUS with GPT-2's pre-tokenization, and writes DIR/vocab.json\n"
            "and DIR/merges.txt. N must be at least 257 and no more than the corpus supports.\n");
}

int qkv__cmd_vocab(int argc, char **argv) {
    const char *cmd = "vocab";
    const char *data = NULL, *out = NULL;
    long size = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--data") || !strcmp(a, "--size") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) return qkv__cli_usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--data")) {
                data = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else {
                char *end;
                size = strtol(v, &end, 10);
                if (*v == '\0' || *end != '\0' || size < 0 || size > 100000000)
                    return qkv__cli_usage_error(cmd, "--size must be an integer in [257, 100000000] (got '%s')", v);
            }
        } else {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!data || !out || size < 0) {
        usage(stderr);
        return qkv__cli_usage_error(cmd, "--data, --size and --out are required");
    }
    if (size < 257)
        return qkv__cli_usage_error(cmd, "--size %ld is too small: the vocabulary needs 256 byte "
                                         "tokens + <|endoftext|> (257) plus merges", size);
    char *text = NULL;
    size_t len = 0;
    qkv_status st = qkv__read_file(data, MAX_CORPUS, &text, &len);
    if (st) return qkv__cli_fail(cmd, st);
    if (len == 0) {
        free(text);
        return qkv__cli_fail(cmd, qkv__fail(QKV_EINVAL, "%s: the corpus is empty", data));
    }
    double t0 = qkv__now();
    st = qkv_bpe_train(text, len, (int)size, out);
    double dt = qkv__now() - t0;
    if (st) {
        free(text);
        return qkv__cli_fail(cmd, st);
    }
    /* reload what was written: proves it loads, and measures the compression */
    qkv_tokenizer *tok = NULL;
    st = qkv_tokenizer_load_dir(out, &tok);
    if (st) {
        free(text);
        return qkv__cli_fail(cmd, st);
    }
    int *ids = NULL;
    size_t n = 0;
    st = qkv_tokenizer_encode(tok, text, len, 0, &ids, &n);
    free(text);
    if (st) {
        qkv_tokenizer_free(tok);
        return qkv__cli_fail(cmd, st);
    }
    printf("qkv vocab: %d tokens trained on %s (%zu bytes) in %.2f s; wrote %s/vocab.json and "
           "%s/merges.txt\n",
           qkv_tokenizer_vocab_size(tok), data, len, dt, out, out);
    printf("qkv vocab: the corpus encodes to %zu tokens (%.2f bytes per token)\n", n,
           n ? (double)len / (double)n : 0.0);
    free(ids);
    qkv_tokenizer_free(tok);
    return 0;
}
