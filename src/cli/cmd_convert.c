/*
 * cmd_convert.c -- `qkv convert`: a model from any source qkv_model_load opens (a Hugging
 * Face folder, a GGUF file, a llama2.c checkpoint) to a GGUF file llama.cpp runs, or to a
 * Hugging Face folder (config.json + model.safetensors + the tokenizer's files).
 *
 *   qkv convert --model SRC --out DST --to gguf|safetensors [--type f32|f16|bf16|q8_0]
 *               [--tokenizer FILE]
 *
 * GGUF: src/model/gguf_model.c's qkv__gguf_export_model (names, layouts and hyperparameters
 * as llama.cpp's convert_hf_to_gguf.py writes them) and the tokenizer's tokenizer.ggml.*
 * (src/tokenizer/export.c). Safetensors: qkv__model_save (F32) and the tokenizer's files,
 * copied when the source has them, else written as GPT-2's vocab.json + merges.txt for a
 * byte-level BPE vocabulary; otherwise the output says why none was written.
 */
#include "cli.h"
#include "model/gguf.h"
#include "model/params.h"
#include "tokenizer/tok_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *qkv__cli_tokenizer_path(void); /* main.c: --tokenizer, or NULL */

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv convert --model SRC --out DST --to gguf|safetensors [--type f32|f16|bf16|q8_0]\n"
            "                   [--tokenizer FILE]\n"
            "\n"
            "SRC: a Hugging Face folder, a GGUF file or a llama2.c checkpoint (what --model opens\n"
            "everywhere else). --to gguf writes the file DST for llama.cpp: general.architecture gpt2,\n"
            "llama (Mistral too), qwen2 or qwen3, llama.cpp's tensor names and layouts, matrices in\n"
            "--type (default f32; norms and biases stay F32), and the tokenizer (tokenizer.ggml.*).\n"
            "--to safetensors writes the folder DST: config.json, model.safetensors (F32) and the\n"
            "tokenizer's files (copied, or vocab.json + merges.txt for a byte-level BPE vocabulary).\n");
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The tokenizer's source: --tokenizer, else the model's folder / GGUF file / the llama2.c
 * tokenizer.bin beside the checkpoint. Malloc'ed, or NULL. */
static char *tokenizer_source(const char *src) {
    const char *t = qkv__cli_tokenizer_path();
    if (t) return strdup(t);
    if (is_dir(src)) return strdup(src);
    FILE *f = fopen(src, "rb");
    char head[4] = {0};
    size_t n = f ? fread(head, 1, 4, f) : 0;
    if (f) fclose(f);
    if (n == 4 && !memcmp(head, "GGUF", 4)) return strdup(src);
    const char *slash = strrchr(src, '/');
    char *dir = slash ? strndup(src, (size_t)(slash - src)) : strdup(".");
    char *p = dir ? qkv__path_join(dir[0] ? dir : "/", "tokenizer.bin") : NULL;
    free(dir);
    return p;
}

static qkv_status copy_file(const char *from_dir, const char *name, const char *to_dir) {
    char *a = qkv__path_join(from_dir, name), *b = qkv__path_join(to_dir, name), *data = NULL;
    size_t len = 0;
    qkv_status st = (!a || !b) ? qkv__fail(QKV_ENOMEM, "out of memory") : QKV_OK;
    if (!st) st = qkv__read_file(a, (size_t)1 << 30, &data, &len);
    if (!st) st = qkv__write_file(b, data, len);
    free(data);
    free(a);
    free(b);
    return st;
}

static int has(const char *dir, const char *name) {
    char *p = qkv__path_join(dir, name);
    int ok = p && is_file(p);
    free(p);
    return ok;
}

/* The tokenizer files of a Hugging Face folder: copied when the source has them, else
 * written from the vocabulary. Prints what was done; returns 0, or 1 on an error. */
static int tokenizer_to_folder(const char *cmd, const char *tsrc, int vocab_size, const char *dst) {
    qkv_status st;
    if (is_dir(tsrc) && has(tsrc, "tokenizer.json")) {
        st = copy_file(tsrc, "tokenizer.json", dst);
        if (!st && has(tsrc, "tokenizer_config.json")) st = copy_file(tsrc, "tokenizer_config.json", dst);
        if (st) return qkv__cli_fail(cmd, st);
        printf("  tokenizer: copied tokenizer.json\n");
        return 0;
    }
    if (is_dir(tsrc) && has(tsrc, "vocab.json") && has(tsrc, "merges.txt")) {
        if ((st = copy_file(tsrc, "vocab.json", dst)) || (st = copy_file(tsrc, "merges.txt", dst)))
            return qkv__cli_fail(cmd, st);
        printf("  tokenizer: copied vocab.json + merges.txt\n");
        return 0;
    }
    if (is_file(tsrc)) { /* a tokenizer.json given with --tokenizer */
        FILE *f = fopen(tsrc, "rb");
        int c = ' ';
        while (f && (c = fgetc(f)) != EOF && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) {}
        if (f) fclose(f);
        if (c == '{') {
            char *data = NULL, *b = qkv__path_join(dst, "tokenizer.json");
            size_t len = 0;
            st = b ? qkv__read_file(tsrc, (size_t)1 << 30, &data, &len) : qkv__fail(QKV_ENOMEM, "out of memory");
            if (!st) st = qkv__write_file(b, data, len);
            free(data);
            free(b);
            if (st) return qkv__cli_fail(cmd, st);
            printf("  tokenizer: copied %s as tokenizer.json\n", tsrc);
            return 0;
        }
    }
    qkv__tok_vocab v;
    if ((st = qkv__tok_vocab_open(tsrc, vocab_size, &v))) {
        printf("  tokenizer: none written (%s)\n", qkv_last_error());
        return 0;
    }
    if (strcmp(v.model, "gpt2")) {
        printf("  tokenizer: none written: a SentencePiece-style vocabulary (%d tokens, scores) has no "
               "vocab.json + merges.txt form and qkv does not write tokenizer.json; use the source (%s) "
               "with --tokenizer\n", v.n, tsrc);
        qkv__tok_vocab_free(&v);
        return 0;
    }
    st = qkv__tok_vocab_save_gpt2(&v, dst);
    if (!st)
        printf("  tokenizer: vocab.json (%d tokens) + merges.txt (%d merges), byte-level BPE\n", v.n, v.n_merges);
    if (!st && strcmp(v.pre, "gpt-2") && strcmp(v.pre, "default"))
        printf("  note: vocab.json + merges.txt imply GPT-2's split pattern; the source's is \"%s\"\n", v.pre);
    qkv__tok_vocab_free(&v);
    return st ? qkv__cli_fail(cmd, st) : 0;
}

int qkv__cmd_convert(int argc, char **argv) {
    const char *cmd = "convert";
    const char *src = NULL, *out = NULL, *to = NULL, *type_s = "f32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--model") || !strcmp(a, "--out") || !strcmp(a, "--to") || !strcmp(a, "--type")) {
            if (i + 1 >= argc) return qkv__cli_usage_error(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) src = v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--to")) to = v;
            else type_s = v;
        } else {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if (!src || !out || !to) {
        usage(stderr);
        return qkv__cli_usage_error(cmd, "--model, --out and --to are required");
    }
    int gguf = !strcmp(to, "gguf");
    if (!gguf && strcmp(to, "safetensors"))
        return qkv__cli_usage_error(cmd, "--to must be gguf or safetensors (got '%s')", to);
    uint32_t type;
    if (!strcmp(type_s, "f32")) type = QKV__GGML_F32;
    else if (!strcmp(type_s, "f16")) type = QKV__GGML_F16;
    else if (!strcmp(type_s, "bf16")) type = QKV__GGML_BF16;
    else if (!strcmp(type_s, "q8_0")) type = QKV__GGML_Q8_0;
    else return qkv__cli_usage_error(cmd, "--type must be f32, f16, bf16 or q8_0 (got '%s')", type_s);
    if (!gguf && type != QKV__GGML_F32)
        return qkv__cli_usage_error(cmd, "--to safetensors writes F32 (--type %s is for --to gguf)", type_s);

    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(src, &model);
    if (st) return qkv__cli_fail(cmd, st);
    const qkv_model_config *c = qkv_model_get_config(model);
    char *tsrc = qkv_model_tokenizer(model) ? tokenizer_source(src) : NULL;
    int rc = 0;

    if (!gguf) {
        if ((st = qkv__model_save(model, out))) {
            rc = qkv__cli_fail(cmd, st);
        } else {
            printf("qkv convert: wrote %s/config.json + model.safetensors (%s, %zu parameters, F32)\n", out,
                   c->family[0] ? c->family : "gpt2", qkv_model_n_params(model));
            if (tsrc) rc = tokenizer_to_folder(cmd, tsrc, c->vocab_size, out);
            else printf("  tokenizer: none written (the source has no tokenizer; give one with --tokenizer)\n");
        }
    } else {
        qkv__gguf_writer *w = qkv__gguf_writer_new();
        if (!w) st = qkv__fail(QKV_ENOMEM, "out of memory");
        if (!st) st = qkv__gguf_export_model(model, w, type, qkv_model_name(model));
        char tok_msg[512] = "none (the source has no tokenizer; llama.cpp needs one: give --tokenizer)";
        char note[300] = "";
        if (!st && tsrc) {
            qkv__tok_vocab v;
            if (qkv__tok_vocab_open(tsrc, c->vocab_size, &v)) {
                snprintf(tok_msg, sizeof tok_msg, "none written (%s)", qkv_last_error());
            } else {
                st = qkv__tok_vocab_to_gguf(&v, c->vocab_size, w);
                if (!strcmp(v.model, "gpt2"))
                    snprintf(tok_msg, sizeof tok_msg, "gpt2 (pre \"%s\"), %d tokens%s, %d merges", v.pre, v.n,
                             v.n < c->vocab_size ? " + padding" : "", v.n_merges);
                else
                    snprintf(tok_msg, sizeof tok_msg, "llama (SentencePiece, scores), %d tokens%s", v.n,
                             v.n < c->vocab_size ? " + padding" : "");
                snprintf(note, sizeof note, "%s", v.note);
                qkv__tok_vocab_free(&v);
            }
        }
        if (!st) st = qkv__gguf_writer_save(w, out);
        if (st) {
            rc = qkv__cli_fail(cmd, st);
        } else {
            const char *arch = !strcmp(c->family, "mistral") ? "llama" : c->family[0] ? c->family : "gpt2";
            printf("qkv convert: wrote %s (GGUF v3, arch %s, %zu parameters, matrices %s)\n", out, arch,
                   qkv_model_n_params(model), qkv__ggml_type_name(type));
            printf("  tokenizer: %s\n", tok_msg);
            if (note[0]) printf("  note: %s\n", note);
        }
        qkv__gguf_writer_free(w);
    }
    free(tsrc);
    qkv_model_free(model);
    return rc;
}
