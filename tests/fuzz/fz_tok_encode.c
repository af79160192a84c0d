/* fz_tok_encode.c -- tokenizer encode and decode on arbitrary bytes (reliability-anchors.md
 * 4.2 F3), with GPT-2's vocabulary when ../shared/data/gpt2 (or $QKV_FUZZ_GPT2) is there,
 * else a 400-token vocabulary trained here with qkv_bpe_train.
 *
 * Input: byte 0 bit 0 = allow_special; the rest is the text.
 * Properties: every id in [0, V); decode(encode(x)) == x byte for byte (the API promises it
 * for invalid UTF-8 too); without allow_special no "<|endoftext|>" id comes out of text;
 * the token bytes of the ids concatenate to the same text. */
#include "qkv_internal.h"
#include "fuzz_common.h"

#include <errno.h>

static qkv_tokenizer *tok;

static int try_gpt2(const char *dir) {
    char v[512], m[512];
    snprintf(v, sizeof v, "%s/encoder.json", dir);
    snprintf(m, sizeof m, "%s/vocab.bpe", dir);
    if (access(v, R_OK) || access(m, R_OK)) return 0;
    if (qkv_tokenizer_load(v, m, &tok) != QKV_OK) {
        fprintf(stderr, "fz_tok_encode: %s: %s\n", dir, qkv_last_error());
        abort();
    }
    fprintf(stderr, "fz_tok_encode: GPT-2 vocabulary from %s (%d tokens)\n", dir,
            qkv_tokenizer_vocab_size(tok));
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *env = getenv("QKV_FUZZ_GPT2");
    if (env && *env && try_gpt2(env)) return 0;
    if (!(env && *env) && (try_gpt2("../shared/data/gpt2") || try_gpt2("/work/shared/data/gpt2")))
        return 0;
    static const char corpus[] =
        "The keys to the cabinet were on the table. The bank of the river was steep and muddy. "
        "We walked along the river and sat down on the bank. He took his money to the bank. "
        "It's 2024: numbers 12345, symbols !?@#$%^&*() and    spaces\t\ttabs\n\nnewlines. "
        "emoji \xf0\x9f\xa4\x97 and \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text, caf\xc3\xa9, "
        "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 <|endoftext|> they'll we've I'm.";
    const char *dir = fz_tmpdir();
    if (qkv_bpe_train(corpus, sizeof corpus - 1, 400, dir) != QKV_OK ||
        qkv_tokenizer_load_dir(dir, &tok) != QKV_OK) {
        fprintf(stderr, "fz_tok_encode: trained vocabulary: %s\n", qkv_last_error());
        abort();
    }
    fprintf(stderr, "fz_tok_encode: trained vocabulary (%d tokens)\n",
            qkv_tokenizer_vocab_size(tok));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    int allow_special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int *ids = NULL;
    size_t n_ids = 0;
    qkv_status st = qkv_tokenizer_encode(tok, text, len, allow_special, &ids, &n_ids);
    FZ_CHECK(st == QKV_OK, "encode failed on %zu bytes: %s", len, qkv_last_error());
    fz_note(1, NULL);
    int V = qkv_tokenizer_vocab_size(tok), eot = qkv_tokenizer_eot(tok);
    FZ_CHECK(n_ids <= len, "%zu ids for %zu bytes", n_ids, len);
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        FZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside [0, %d)", ids[i], V);
        FZ_CHECK(allow_special || eot < 0 || ids[i] != eot, "<|endoftext|> id from plain text");
        const char *b;
        size_t bl;
        FZ_CHECK(qkv_tokenizer_token_bytes(tok, ids[i], &b, &bl) == QKV_OK, "token_bytes(%d)",
                 ids[i]);
        FZ_CHECK(bl <= len - total && memcmp(b, text + total, bl) == 0,
                 "token %zu (id %d) bytes differ from the text at %zu", i, ids[i], total);
        total += bl;
    }
    FZ_CHECK(total == len, "tokens cover %zu of %zu bytes", total, len);
    char *out = NULL;
    size_t out_len = 0;
    st = qkv_tokenizer_decode(tok, ids, n_ids, &out, &out_len);
    FZ_CHECK(st == QKV_OK, "decode failed: %s", qkv_last_error());
    FZ_CHECK(out_len == len && memcmp(out, text, len) == 0 && out[out_len] == '\0',
             "decode(encode(x)) != x (%zu vs %zu bytes)", out_len, len);
    free(out);
    free(ids);
    return 0;
}
