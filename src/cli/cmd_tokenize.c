/*
 * cmd_tokenize.c -- `qkv tokenize`: a model's tokenizer on stdin.
 *
 * --model X: a folder (tokenizer.json, or vocab.json + merges.txt), a tokenizer.json, a .gguf
 * or a llama2.c tokenizer.bin (qkv_tokenizer_open decides by content).
 *
 *   qkv tokenize [--model X] [--special] [--add-special] [--stats]   bytes -> [ids]
 *   qkv tokenize [--model DIR] --decode                ids on stdin -> raw bytes on stdout
 *   qkv tokenize [--model DIR] --tokens                one line per token: id, JSON string
 *   qkv tokenize [--model DIR] --jsonl                 a JSON string a line -> [ids] a line
 */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STDIN ((size_t)1 << 30) /* 1 GiB */

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv tokenize [--model X] [--special] [--add-special]\n"
            "                    [--decode | --tokens | --jsonl] [--stats [--repeat N]]\n"
            "\n"
            "Reads raw bytes on stdin and prints the token ids of the text alone as a JSON array.\n"
            "X: a folder with tokenizer.json or vocab.json + merges.txt, a tokenizer.json, a\n"
            ".gguf file or a llama2.c tokenizer.bin (default: the built-in model, or $QKV_MODEL).\n"
            "  --special  special tokens written in the text (\"<|endoftext|>\", \"<s>\"...) become\n"
            "             those tokens (default: plain text)\n"
            "  --add-special  add BOS / EOS as the tokenizer's post-processor says (llama2.c: BOS)\n"
            "  --decode   read ids instead (a JSON array, or numbers separated by spaces or\n"
            "             commas) and write the bytes they stand for\n"
            "  --tokens   print one token a line: id, then its bytes as a JSON string\n"
            "             (bytes that are not UTF-8 shown as \\u00XX escapes of their value)\n"
            "  --jsonl    batch mode: each stdin line is a JSON string; prints one JSON array\n"
            "             of ids a line (for tests and scripts)\n"
            "  --stats    print bytes, tokens, time and MB/s to stderr\n"
            "  --repeat N with --stats: encode N times and report the fastest run\n");
}

/* Prints ids as a JSON array and a newline ("[1,2,3]"); printf per id is slower than BPE. */
static void print_ids(const int *ids, size_t n) {
    char buf[1 << 14];
    size_t o = 0;
    buf[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (o > sizeof buf - 16) {
            fwrite(buf, 1, o, stdout);
            o = 0;
        }
        if (i) buf[o++] = ',';
        char digits[12];
        int nd = 0;
        unsigned v = (unsigned)ids[i]; /* ids are >= 0 */
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (nd) buf[o++] = digits[--nd];
    }
    buf[o++] = ']';
    buf[o++] = '\n';
    fwrite(buf, 1, o, stdout);
}

/* CPU seconds of this thread: with six engineers on two cores, wall time says little. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Writes bytes as a JSON string; bytes of invalid UTF-8 become \u00XX (their byte value). */
static void print_json_bytes(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            /* copy a complete, valid multi-byte sequence; otherwise escape the byte */
            size_t l = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                     : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
            int ok = l > 0 && i + l <= n;
            for (size_t k = 1; ok && k < l; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
            if (ok && l == 3) {
                unsigned char c1 = (unsigned char)s[i + 1];
                ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
            }
            if (ok && l == 4) {
                unsigned char c1 = (unsigned char)s[i + 1];
                ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
            }
            if (ok) {
                fwrite(s + i, 1, l, f);
                i += l;
            } else {
                fprintf(f, "\\u%04x", c);
                i++;
            }
        }
    }
    fputc('"', f);
}

static int decode_ids(const char *cmd, qkv_tokenizer *tok, const char *in, size_t len) {
    size_t cap = 256, n = 0;
    int *ids = malloc(cap * sizeof *ids);
    if (!ids) return qkv__cli_fail(cmd, qkv__fail(QKV_ENOMEM, "out of memory"));
    size_t i = 0;
    while (i < len) {
        char c = in[i];
        if (c == '[' || c == ']' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9')) {
            free(ids);
            return qkv__cli_usage_error(cmd, "--decode: unexpected character '%c' at byte %zu of "
                                             "stdin (expected token ids)", c, i);
        }
        long long v = 0;
        int neg = c == '-', digits = 0;
        if (neg) i++;
        while (i < len && in[i] >= '0' && in[i] <= '9') {
            if (v < 1000000000LL) v = v * 10 + (in[i] - '0');
            i++;
            digits++;
        }
        if (!digits) {
            free(ids);
            return qkv__cli_usage_error(cmd, "--decode: a '-' without digits at byte %zu", i);
        }
        if (neg) v = -v;
        if (v < 0 || v >= qkv_tokenizer_vocab_size(tok)) {
            free(ids);
            return qkv__cli_usage_error(cmd, "--decode: token id %lld out of range (vocabulary of %d)",
                                        v, qkv_tokenizer_vocab_size(tok));
        }
        if (n == cap) {
            cap *= 2;
            int *p = realloc(ids, cap * sizeof *ids);
            if (!p) {
                free(ids);
                return qkv__cli_fail(cmd, qkv__fail(QKV_ENOMEM, "out of memory"));
            }
            ids = p;
        }
        ids[n++] = (int)v;
    }
    char *text = NULL;
    size_t tlen = 0;
    qkv_status st = qkv_tokenizer_decode(tok, ids, n, &text, &tlen);
    free(ids);
    if (st) return qkv__cli_fail(cmd, st);
    fwrite(text, 1, tlen, stdout);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int encode_jsonl(const char *cmd, qkv_tokenizer *tok, const char *in, size_t len,
                        unsigned flags) {
    size_t pos = 0;
    long line = 0;
    while (pos < len) {
        line++;
        const char *s = in + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n == 0 || (n == 1 && s[0] == '\r')) continue;
        json_error_t err;
        json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!v || !json_is_string(v)) {
            json_decref(v);
            return qkv__cli_usage_error(cmd, "--jsonl: stdin line %ld: expected a JSON string%s%s",
                                        line, v ? "" : ": ", v ? "" : err.text);
        }
        int *ids = NULL;
        size_t n_ids = 0;
        qkv_status st = qkv_tokenizer_encode_ex(tok, json_string_value(v), json_string_length(v),
                                                flags, &ids, &n_ids);
        json_decref(v);
        if (st) return qkv__cli_fail(cmd, st);
        print_ids(ids, n_ids);
        free(ids);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int qkv__cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    const char *model = NULL;
    int special = 0, decode = 0, tokens = 0, stats = 0, jsonl = 0, add_special = 0;
    long repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model")) {
            if (++i >= argc) return qkv__cli_usage_error(cmd, "--model needs a folder or file");
            model = argv[i];
        } else if (!strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else if (!strcmp(a, "--special")) {
            special = 1;
        } else if (!strcmp(a, "--add-special")) {
            add_special = 1;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--tokens")) {
            tokens = 1;
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = 1;
        } else if (!strcmp(a, "--repeat")) {
            char *end;
            if (++i >= argc) return qkv__cli_usage_error(cmd, "--repeat needs a count");
            repeat = strtol(argv[i], &end, 10);
            if (*argv[i] == '\0' || *end || repeat < 1 || repeat > 1000)
                return qkv__cli_usage_error(cmd, "--repeat must be an integer in [1, 1000] (got '%s')", argv[i]);
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (decode + tokens + jsonl > 1)
        return qkv__cli_usage_error(cmd, "--decode, --tokens and --jsonl exclude each other");
    if (!model) model = qkv__cli_default_model();
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_open(model, &tok);
    if (st) {
        int rc = qkv__cli_fail(cmd, st);
        fprintf(stderr, "qkv tokenize: (--model takes a folder with tokenizer.json or vocab.json + "
                        "merges.txt, a tokenizer.json, a .gguf or a llama2.c tokenizer.bin)\n");
        return rc;
    }
    unsigned flags = (special ? QKV_ENCODE_ALLOW_SPECIAL : 0u) | (add_special ? QKV_ENCODE_ADD_SPECIAL : 0u);
    char *in = NULL;
    size_t len = 0;
    qkv_status rs = qkv__read_stream(stdin, MAX_STDIN, "cannot read stdin", &in, &len);
    if (rs) {
        qkv_tokenizer_free(tok);
        return qkv__cli_fail(cmd, rs);
    }
    int rc;
    if (decode) {
        rc = decode_ids(cmd, tok, in, len);
    } else if (jsonl) {
        rc = encode_jsonl(cmd, tok, in, len, flags);
    } else {
        int *ids = NULL;
        size_t n = 0;
        double dt = 0, dcpu = 0;
        st = QKV_OK;
        for (long r = 0; r < repeat && !st; r++) {
            free(ids);
            ids = NULL;
            double t0 = qkv__now(), c0 = cpu_now();
            st = qkv_tokenizer_encode_ex(tok, in, len, flags, &ids, &n);
            double t = qkv__now() - t0, c = cpu_now() - c0;
            if (r == 0 || t < dt) dt = t;
            if (r == 0 || c < dcpu) dcpu = c;
        }
        if (st) {
            rc = qkv__cli_fail(cmd, st);
        } else {
            if (tokens) {
                for (size_t i = 0; i < n; i++) {
                    const char *b;
                    size_t bl;
                    qkv_tokenizer_token_bytes(tok, ids[i], &b, &bl);
                    printf("%d\t", ids[i]);
                    print_json_bytes(stdout, b, bl);
                    putchar('\n');
                }
            } else {
                print_ids(ids, n);
            }
            rc = fflush(stdout) == 0 ? 0 : 1;
            if (stats)
                fprintf(stderr, "qkv tokenize: %zu bytes -> %zu tokens in %.4f s%s (%.2f MB/s, %.0f "
                                "tokens/s; CPU time %.4f s: %.2f MB/s)\n",
                        len, n, dt, repeat > 1 ? " (fastest of --repeat)" : "",
                        dt > 0 ? (double)len / dt / 1e6 : 0.0, dt > 0 ? (double)n / dt : 0.0, dcpu,
                        dcpu > 0 ? (double)len / dcpu / 1e6 : 0.0);
        }
        free(ids);
    }
    free(in);
    qkv_tokenizer_free(tok);
    return rc;
}
