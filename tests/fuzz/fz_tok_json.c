/* fz_tok_json.c -- tokenizer.json loading and encoding (src/tokenizer/hf.c, regex.c, tokx.c).
 *
 * The input split at its first NUL: a tokenizer.json part, loaded with qkv_tokenizer_open, and
 * a text part. Either a clear error (status + message, no tokenizer), or a tokenizer that
 * encodes a fixed corpus and the text part with every flag combination, ids in [0, V), token
 * bytes for every id, and decode of the ids succeeding.
 *
 * Seeds: make_seeds.py seeds_tok_json.
 * replay test needs a seed folder per target). The seeds function to add there:
 *
 *   def seeds_tok_json(out):
 *       t = "fz_tok_json"
 *       bpe = '"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<s>":3},"merges":["a b"]}'
 *       put(out, t, "ok_plain", ("{" + bpe + "}\0ab ba").encode())
 *       put(out, t, "ok_split", ('{"pre_tokenizer":{"type":"Split","pattern":{"Regex":'
 *           '"\\\\s+(?!\\\\S)|\\\\p{L}{1,3}|(?i:ab)"},"behavior":"Isolated"},'
 *           '"added_tokens":[{"id":3,"content":"<s>","special":true}],' + bpe + '}\0a<s>b').encode())
 *       put(out, t, "bad_model", b'{"model":{"type":"Unigram"}}')
 *       put(out, t, "bad_regex", ('{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(?<=a)"},'
 *           '"behavior":"Isolated"},' + bpe + '}').encode())
 *
 * then `git mv tests/fuzz/pending/fz_tok_json.c tests/fuzz/` (and add seeds_tok_json(out) to
 * main()). */
#include "qkv_internal.h"
#include "fuzz_common.h"

static fz_memfile json_file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_memfile_open(&json_file, "tokenizer.json");
    return 0;
}

static const char *const texts[] = {
    "Hello world! It's 2024, isn't it?  \n\n  x",
    "<s>a</s> <|endoftext|> \xe2\x96\x81\xe2\x96\x81",
    "\xff\xfe invalid \xc3( bytes \xed\xa0\x80 surrogate \xf0\x9f\xa4\x97 emoji",
    "",
};

static void run_text(qkv_tokenizer *tok, int V, const char *s, size_t n) {
    for (unsigned flags = 0; flags < 4; flags++) {
        int *ids = NULL;
        size_t n_ids = 0;
        if (qkv_tokenizer_encode_ex(tok, s, n, flags, &ids, &n_ids) != QKV_OK) {
            FZ_CHECK(qkv_last_error()[0] != '\0', "encode failed without a message");
            continue;
        }
        for (size_t i = 0; i < n_ids; i++) FZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside [0, %d)", ids[i], V);
        char *out = NULL;
        size_t out_len = 0;
        FZ_CHECK(qkv_tokenizer_decode(tok, ids, n_ids, &out, &out_len) == QKV_OK, "decode failed: %s",
                 qkv_last_error());
        fz_touch(out, out_len);
        free(out);
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    size_t n1, n2;
    const uint8_t *p2;
    fz_split_nul(data, size, &n1, &p2, &n2);
    fz_memfile_set(&json_file, data, n1);
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_open(json_file.path, &tok);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st != QKV_OK) {
        FZ_CHECK(tok == NULL, "failed load returned a tokenizer");
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
        return 0;
    }
    int V = qkv_tokenizer_vocab_size(tok);
    FZ_CHECK(V > 0, "V %d", V);
    int bos = qkv_tokenizer_bos(tok), eos = qkv_tokenizer_eos(tok);
    FZ_CHECK(bos >= -1 && bos < V && eos >= -1 && eos < V, "bos %d eos %d V %d", bos, eos, V);
    for (int id = 0; id < V; id++) {
        const char *b;
        size_t bl;
        FZ_CHECK(qkv_tokenizer_token_bytes(tok, id, &b, &bl) == QKV_OK, "no bytes for id %d", id);
        fz_touch(b, bl);
    }
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) run_text(tok, V, texts[t], strlen(texts[t]));
    if (p2) run_text(tok, V, (const char *)p2, n2);
    qkv_tokenizer_free(tok);
    return 0;
}
