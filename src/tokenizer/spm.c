/*
 * spm.c -- llama2.c's tokenizer.bin -> the engine in tokx.c, encoding and decoding exactly as
 * karpathy/llama2.c run.c does.
 *
 * Owns: reading and checking tokenizer.bin:
 *     int32 max_token_length, then per token: float32 score, int32 length, length bytes
 * (little-endian; no count: the caller knows vocab_size, or the tokens run to the end).
 *
 * run.c's encode: a dummy prefix " " when the text is not empty, each UTF-8 character looked
 * up as a token (or its bytes as ids byte + 3, the <0xNN> tokens), then repeatedly merge the
 * adjacent pair whose concatenation is a token with the best score (leftmost among ties); BOS
 * (id 1) only when asked. Decode: a token's leading space is dropped right after BOS (and at
 * the start), <0xNN> is the byte, BOS and EOS print nothing.
 */
#include "tok_ext.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int hexv(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

qkv_status qkv__llama2c_parse(const uint8_t *d, size_t size, const char *path, int vocab_size,
                              qkv__tokx **out) {
    *out = NULL;
    if (vocab_size < 0 || vocab_size > QKV__TOK_MAX_VOCAB)
        return qkv__fail(QKV_EINVAL, "%s: vocab_size %d out of range", path, vocab_size);
    if (size < 4) return qkv__fail(QKV_EFORMAT, "%s: %zu bytes: too short for a llama2.c tokenizer", path, size);
    uint32_t maxlen = rd32(d);
    if (maxlen == 0 || maxlen > QKV__TOK_MAX_TOKEN_BYTES)
        return qkv__fail(QKV_EFORMAT, "%s: max_token_length %u (a llama2.c tokenizer has 1..%d)", path,
                         maxlen, QKV__TOK_MAX_TOKEN_BYTES);
    /* count and check the entries */
    size_t at = 4;
    int n = 0;
    while (vocab_size ? n < vocab_size : at < size) {
        if (size - at < 8)
            return qkv__fail(QKV_EFORMAT, "%s: token %d: truncated (%zu bytes left, need 8)%s", path, n,
                             size - at, vocab_size ? "; is vocab_size right?" : "");
        uint32_t l = rd32(d + at + 4);
        if (l > maxlen || l > size - at - 8)
            return qkv__fail(QKV_EFORMAT, "%s: token %d: length %u (max_token_length %u, %zu bytes left)",
                             path, n, l, maxlen, size - at - 8);
        at += 8 + l;
        if (++n > QKV__TOK_MAX_VOCAB) return qkv__fail(QKV_EFORMAT, "%s: more than %d tokens", path, QKV__TOK_MAX_VOCAB);
    }
    if (n < 3) return qkv__fail(QKV_EFORMAT, "%s: %d tokens (needs <unk>, <s>, </s> at least)", path, n);
    qkv__tokx *x = qkv__tokx_new();
    const char **s = calloc((size_t)n, sizeof *s), **ds = calloc((size_t)n, sizeof *ds);
    size_t *l = calloc((size_t)n, sizeof *l), *dl = calloc((size_t)n, sizeof *dl);
    char *bytes = malloc(256);
    qkv_status st = QKV_OK;
    if (!x || !s || !ds || !l || !dl || !bytes) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    x->score = malloc((size_t)n * sizeof *x->score);
    x->type = malloc((size_t)n);
    if (!x->score || !x->type) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    for (int b = 0; b < 256; b++) bytes[b] = (char)b;
    at = 4;
    for (int i = 0; i < n; i++) {
        uint32_t bits = rd32(d + at);
        float f;
        memcpy(&f, &bits, sizeof f);
        x->score[i] = f == f ? f : -1e30f; /* NaN would break the ordering */
        l[i] = rd32(d + at + 4);
        s[i] = (const char *)d + at + 8;
        ds[i] = s[i];
        dl[i] = l[i];
        x->type[i] = QKV__TT_NORMAL;
        if (l[i] == 6 && !memcmp(s[i], "<0x", 3) && s[i][5] == '>' && hexv(s[i][3]) >= 0 && hexv(s[i][4]) >= 0) {
            ds[i] = bytes + hexv(s[i][3]) * 16 + hexv(s[i][4]);
            dl[i] = 1;
            x->type[i] = QKV__TT_BYTE;
        }
        if (i == 1 || i == 2) { /* <s>, </s>: run.c never prints them */
            dl[i] = 0;
            x->type[i] = QKV__TT_CONTROL;
        }
        if (i == 0) x->type[i] = QKV__TT_UNKNOWN;
        at += 8 + l[i];
    }
    if ((st = qkv__tokx_set_vocab(x, n, s, l, ds, dl))) {
        st = qkv__tok_refail(st, path);
        goto done;
    }
    x->llama2c = 1;
    x->strip_lead = 1;
    x->bos = 1;
    x->eos = 2;
    x->kind = "llama2.c";
    if ((st = qkv__tokx_score_merges(x))) goto done;
    if ((st = qkv__tokx_finish(x))) goto done;
    /* run.c's fallback is id byte + 3, whatever those tokens are */
    for (int b = 0; b < 256; b++) x->byte_tok[b] = b + 3 < n ? b + 3 : -1;
    int *pre = malloc(sizeof *pre);
    if (!pre) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto done;
    }
    pre[0] = 1;
    x->prefix = pre;
    x->n_prefix = 1;
done:
    free(s);
    free(ds);
    free(l);
    free(dl);
    free(bytes);
    if (st) {
        qkv__tokx_free(x);
        return st;
    }
    *out = x;
    return QKV_OK;
}

qkv_status qkv__llama2c_load(const char *path, int vocab_size, qkv__tokx **out) {
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    qkv_status st = qkv__read_file(path, QKV__TOK_MAX_FILE, &data, &len);
    if (st) return st;
    st = qkv__llama2c_parse((const uint8_t *)data, len, path, vocab_size, out);
    free(data);
    return st;
}

qkv_status qkv_tokenizer_load_llama2c(const char *path, int vocab_size, qkv_tokenizer **out) {
    if (!out) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load_llama2c: out is NULL");
    *out = NULL;
    if (!path) return qkv__fail(QKV_EINVAL, "qkv_tokenizer_load_llama2c: path is NULL");
    qkv__tokx *x = NULL;
    qkv_status st = qkv__llama2c_load(path, vocab_size, &x);
    if (st) return st;
    return qkv__tokenizer_wrap(x, out);
}
