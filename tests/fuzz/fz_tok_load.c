/* fz_tok_load.c -- tokenizer loading (reliability-anchors.md 4.2 F4): the input split at its
 * first NUL byte into a vocab.json part and a merges.txt part, loaded with qkv_tokenizer_load.
 * Either a clear error, or a tokenizer that encodes a fixed corpus (valid and invalid UTF-8,
 * "<|endoftext|>") without crashing, with ids in [0, V), token bytes for every id, and
 * decode(encode(x)) == x whenever encode succeeds. */
#include "qkv_internal.h"
#include "fuzz_common.h"

static fz_memfile vocab, merges;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_memfile_open(&vocab, "vocab.json");
    fz_memfile_open(&merges, "merges.txt");
    return 0;
}

static const char *const texts[] = {
    "Hello world! It's 2024, isn't it?  ",
    "a ab abc abcd <|endoftext|> \xc4\xa0 \xc4\x8a",
    "\xff\xfe invalid \xc3( bytes \xed\xa0\x80 surrogate \xf0\x9f\xa4\x97 emoji",
    "\n\n\t  \xe3\x80\x80 whitespace \xc2\x85",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    size_t n1, n2;
    const uint8_t *p2;
    fz_split_nul(data, size, &n1, &p2, &n2);
    fz_memfile_set(&vocab, data, n1);
    fz_memfile_set(&merges, p2, n2);
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_load(vocab.path, merges.path, &tok);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st != QKV_OK) {
        FZ_CHECK(tok == NULL, "failed load returned a tokenizer");
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
        return 0;
    }
    int V = qkv_tokenizer_vocab_size(tok), eot = qkv_tokenizer_eot(tok);
    FZ_CHECK(V >= 0 && eot >= -1 && eot < V, "V %d, eot %d", V, eot);
    for (int id = 0; id < V; id++) {
        const char *b;
        size_t bl;
        FZ_CHECK(qkv_tokenizer_token_bytes(tok, id, &b, &bl) == QKV_OK, "no bytes for id %d", id);
        fz_touch(b, bl);
    }
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        for (int special = 0; special < 2; special++) {
            size_t len = strlen(texts[t]);
            int *ids = NULL;
            size_t n_ids = 0;
            if (qkv_tokenizer_encode(tok, texts[t], len, special, &ids, &n_ids) != QKV_OK) continue;
            for (size_t i = 0; i < n_ids; i++)
                FZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside [0, %d)", ids[i], V);
            char *out = NULL;
            size_t out_len = 0;
            st = qkv_tokenizer_decode(tok, ids, n_ids, &out, &out_len);
            FZ_CHECK(st == QKV_OK, "decode of encode's ids failed: %s", qkv_last_error());
            FZ_CHECK(out_len == len && memcmp(out, texts[t], len) == 0,
                     "decode(encode(text %zu, special %d)) != text (%zu vs %zu bytes)", t, special,
                     out_len, len);
            free(out);
            free(ids);
        }
    }
    qkv_tokenizer_free(tok);
    return 0;
}
