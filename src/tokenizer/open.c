/*
 * open.c -- qkv_tokenizer_open: what a path holds, decided by its content.
 *
 *   folder     tokenizer.json (preferred), else vocab.json + merges.txt, else tokenizer.bin
 *              (llama2.c), else a single *.gguf, else the GPT-2 loader's error (what is missing)
 *   file       "GGUF" magic -> GGUF; JSON ({ or [) -> tokenizer.json (which wants an object);
 *              otherwise a plausible llama2.c header (max_token_length 1..4096 and
 *              the first entries fitting the file) -> llama2.c
 */
#include "tok_ext.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static qkv_status open_file(const char *path, qkv_tokenizer **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return qkv__fail(QKV_EIO, "cannot open %s", path);
    uint8_t head[64];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    qkv__tokx *x = NULL;
    qkv_status st;
    if (n >= 4 && !memcmp(head, "GGUF", 4)) {
        st = qkv__gguf_vocab_load(path, &x);
    } else {
        size_t i = 0;
        while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
        if (i < n && (head[i] == '{' || head[i] == '[')) {
            st = qkv__hf_load(path, &x);
        } else if (n >= 12) {
            uint32_t maxlen = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
                              (uint32_t)head[3] << 24;
            uint32_t l0 = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 |
                          (uint32_t)head[11] << 24;
            if (maxlen >= 1 && maxlen <= QKV__TOK_MAX_TOKEN_BYTES && l0 <= maxlen)
                st = qkv__llama2c_load(path, 0, &x);
            else
                return qkv__fail(QKV_EFORMAT, "%s: not a tokenizer qkv knows (tokenizer.json, GGUF, "
                                              "llama2.c tokenizer.bin, or a folder with vocab.json + merges.txt)",
                                 path);
        } else {
            return qkv__fail(QKV_EFORMAT, "%s: %zu bytes: not a tokenizer qkv knows", path, n);
        }
    }
    if (st) return st;
    return qkv__tokenizer_wrap(x, out);
}

qkv_status qkv_tokenizer_open(const char *path, qkv_tokenizer **out) {
    if (!out) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_open: out is NULL");
    *out = NULL;
    if (!path) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_open: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0) return qkv__fail(QKV_EIO, "%s: no such file or folder", path);
    if (!S_ISDIR(sb.st_mode)) return open_file(path, out);
    static const char *names[] = {"tokenizer.json", "vocab.json", "tokenizer.bin"};
    for (int k = 0; k < 3; k++) {
        char *p = qkv__path_join(path, names[k]);
        if (!p) return qkv__fail(QKV_ENOMEM, "out of memory");
        struct stat fs;
        /* vocab.json that exists at all goes to the GPT-2 loader (its messages) */
        int ok = k == 1 ? stat(p, &fs) == 0 : is_file(p);
        qkv_status st = QKV_OK;
        if (ok) st = k == 1 ? qkv_tokenizer_load_dir(path, out) : open_file(p, out);
        free(p);
        if (ok) return st;
    }
    /* a folder holding one .gguf */
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char *found = NULL;
        int count = 0;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l > 5 && !strcmp(e->d_name + l - 5, ".gguf")) {
                count++;
                if (!found) found = qkv__path_join(path, e->d_name);
            }
        }
        closedir(d);
        if (count == 1 && found) {
            qkv_status st = open_file(found, out);
            free(found);
            return st;
        }
        free(found);
    }
    /* nothing recognisable: the GPT-2 loader says which file is missing */
    return qkv_tokenizer_load_dir(path, out);
}
