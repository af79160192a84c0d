/* fz_api.c -- the playground server's request handler (qkv__api_handle: JSON body in, JSON
 * reply out, no sockets) on arbitrary bodies (reliability-anchors.md 4.2 F5), with a tiny
 * random model (2 layers, 2 heads, C = 16, 32 positions) and a 300-token BPE vocabulary
 * trained at start-up, so each request is fast.
 *
 * Input: byte 0 picks the route (bits 0-1: attend, compare, model, an unknown path; bit 2:
 * a wrong method); the rest is the body, passed NUL-terminated and at most 64 KiB like
 * src/server/http.c does. Properties: status in {200, 400, 404, 405, 413, 503}; the reply
 * is valid JSON with exactly body_len bytes and no NUL; errors carry an "error" string;
 * 405 comes with an Allow value. */
#include "model/params.h"
#include "server/server.h"
#include "fuzz_common.h"

#include <jansson.h>

static qkv_model *model;
static qkv__api *api;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const char corpus[] =
        "The keys to the cabinet were on the table. The bank of the river was steep and muddy. "
        "We walked along the river and sat down on the bank. He took his money to the bank. "
        "emoji \xf0\x9f\xa4\x97 and \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text.";
    qkv_set_threads(1);
    const char *dir = fz_tmpdir();
    qkv_tokenizer *tok = NULL;
    if (qkv_bpe_train(corpus, sizeof corpus - 1, 300, dir) != QKV_OK ||
        qkv_tokenizer_load_dir(dir, &tok) != QKV_OK) {
        fprintf(stderr, "fz_api: vocabulary: %s\n", qkv_last_error());
        abort();
    }
    qkv_model_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = 32, .vocab_size = qkv_tokenizer_vocab_size(tok), .layer_norm_eps = 1e-5f};
    if (qkv__model_create(&cfg, &model) != QKV_OK) abort();
    size_t n;
    float *b = qkv__model_params_block(model, &n);
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (float)((int)((x >> 32) % 2001) - 1000) * 2e-4f;
    }
    qkv__model_set_tokenizer(model, tok);
    if (qkv__api_create(model, 1, 5, &api) != QKV_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size - 1 > QKV__SRV_MAX_BODY) return 0;
    static const char *const paths[] = {"/api/attend", "/api/compare", "/api/model", "/api/nope"};
    const char *path = paths[data[0] & 3];
    int wrong_method = (data[0] >> 2) & 1;
    const char *method = (data[0] & 3) == 2 ? (wrong_method ? "POST" : "GET")
                                             : (wrong_method ? "GET" : "POST");
    size_t len = size - 1;
    char *body = malloc(len + 1);
    FZ_CHECK(body != NULL, "oom");
    memcpy(body, data + 1, len);
    body[len] = '\0';
    int status = 0;
    char *out = NULL;
    size_t out_len = 0;
    const char *allow = NULL;
    qkv__api_handle(api, method, path, body, len, &status, &out, &out_len, &allow);
    FZ_CHECK(out != NULL, "no reply body");
    fz_note(status == 200, out);
    FZ_CHECK(strlen(out) == out_len, "reply has a NUL or wrong length (%zu vs %zu)", strlen(out),
             out_len);
    FZ_CHECK(status == 200 || status == 400 || status == 404 || status == 405 || status == 413 ||
                 status == 503,
             "status %d for %s %s", status, method, path);
    json_error_t err;
    json_t *j = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, &err);
    FZ_CHECK(j != NULL, "reply is not valid JSON (%s): %.300s", err.text, out);
    if (status != 200)
        FZ_CHECK(json_is_string(json_object_get(j, "error")), "status %d without an error: %.300s",
                 status, out);
    if (status == 405) FZ_CHECK(allow != NULL, "405 without Allow");
    json_decref(j);
    free(out);
    free(body);
    return 0;
}
