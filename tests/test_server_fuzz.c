/* test_server_fuzz.c -- the API handler (qkv__api_handle, no sockets) on mutated requests:
 * whatever the body, the answer is a status in {200, 400, 404, 405, 413, 503} with a body
 * that is valid JSON (jansson), an error message when not 200, and no crash, leak or
 * out-of-bounds access (this test runs under ASan+UBSan too); and a cancel asked between
 * layers stops every route with a 499. A small random model with a BPE vocabulary trained
 * here (qkv_bpe_train) keeps it fast. */
#include "test.h"
#include "model/params.h"
#include "server/server.h"

#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static qkv_model *model;
static qkv__api *api;
static char vocab_dir[] = "/tmp/qkv-test-server-fuzz-XXXXXX";

static void setup(void) {
    static const char corpus[] =
        "The keys to the cabinet were on the table. The bank of the river was steep and muddy. "
        "We walked along the river and sat down on the bank. He took his money to the bank. "
        "emoji \xf0\x9f\xa4\x97 and \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text.";
    qkv_set_threads(1); /* tiny model: threads would only wait at barriers */
    ASSERT(mkdtemp(vocab_dir) != NULL);
    ASSERT_OK(qkv_bpe_train(corpus, sizeof corpus - 1, 300, vocab_dir));
    qkv_tokenizer *tok = NULL;
    ASSERT_OK(qkv_tokenizer_load_dir(vocab_dir, &tok));
    qkv_model_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = 32, .vocab_size = qkv_tokenizer_vocab_size(tok), .layer_norm_eps = 1e-5f};
    ASSERT_OK(qkv__model_create(&cfg, &model));
    size_t n;
    float *b = qkv__model_params_block(model, &n);
    for (size_t i = 0; i < n; i++) b[i] = (float)((int)(next_u32() % 2001) - 1000) * 2e-4f;
    qkv__model_set_tokenizer(model, tok);
    ASSERT_OK(qkv__api_create(model, 1, 5, &api));
}

/* One request; checks the reply's shape. Returns the status. */
static int call(const char *method, const char *path, const char *body, size_t len) {
    int status = 0;
    char *out = NULL;
    size_t out_len = 0;
    const char *allow = NULL;
    qkv__api_handle(api, method, path, body, len, &status, &out, &out_len, &allow);
    ASSERT_MSG(out != NULL && strlen(out) == out_len, "reply body missing or has a NUL");
    json_error_t err;
    json_t *j = json_loadb(out, out_len, 0, &err);
    ASSERT_MSG(j != NULL, "reply is not JSON (%s): %.200s", err.text, out);
    ASSERT_MSG(status == 200 || status == 400 || status == 404 || status == 405 || status == 413 ||
                   status == 503,
               "status %d for %.100s", status, body ? body : "(null)");
    if (status != 200) ASSERT_MSG(json_is_string(json_object_get(j, "error")), "no error: %.200s", out);
    if (status == 405) ASSERT(allow != NULL);
    json_decref(j);
    free(out);
    return status;
}

static void test_valid_requests(void) {
    const char *ok[] = {
        "{\"text\":\"The keys to the cabinet\"}",
        "{\"text\":\"The bank\",\"temperature\":0.5,\"causal\":false,\"scores\":true,\"top_k\":3}",
        "{\"text\":\"a b c\",\"layers\":[1],\"scores\":[0],\"detail\":{\"layer\":1,\"head\":1},\"probe\":[\" b\",\"zz\"]}",
        "{\"text\":\"emoji \\ud83e\\udd17\",\"attention\":false,\"top_k\":0}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ASSERT_EQ_INT(call("POST", "/api/attend", ok[i], strlen(ok[i])), 200);
    const char *cmp = "{\"a\":\"the bank of the river\",\"b\":\"money in the bank\",\"word\":\"bank\"}";
    ASSERT_EQ_INT(call("POST", "/api/compare", cmp, strlen(cmp)), 200);
    ASSERT_EQ_INT(call("GET", "/api/model", NULL, 0), 200);
    ASSERT_EQ_INT(call("GET", "/api/attend", NULL, 0), 405);
    ASSERT_EQ_INT(call("POST", "/api/nope", "{}", 2), 404);
    ASSERT_EQ_INT(call("POST", "/api/attend", NULL, 0), 400);
    /* more tokens than the context (32) */
    const char *longtext = "{\"text\":\"a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a\"}";
    ASSERT_EQ_INT(call("POST", "/api/attend", longtext, strlen(longtext)), 400);
}

static void test_mutated_requests(void) {
    const char *seeds[] = {
        "{\"text\":\"The keys to the cabinet\",\"temperature\":0.5,\"causal\":false,\"scores\":true,\"top_k\":3}",
        "{\"text\":\"a b c\",\"layers\":[1,0],\"scores\":[0],\"detail\":{\"layer\":1,\"head\":1},\"probe\":[\" b\",\"zz\"]}",
        "{\"a\":\"the bank of the river\",\"b\":\"money in the bank\",\"word\":\"bank\",\"index_a\":1}",
    };
    const char *paths[] = {"/api/attend", "/api/attend", "/api/compare"};
    const char alphabet[] = "{}[]\":,0123456789-+.eEtruefalsnl \\u\xff\x80\xc3";
    int iters = getenv("QKV_SANITIZE") ? 1000 : 3000, counts[600] = {0};
    char buf[512];
    for (int it = 0; it < iters; it++) {
        int s = (int)(next_u32() % 3);
        size_t len = strlen(seeds[s]);
        memcpy(buf, seeds[s], len);
        int n_mut = 1 + (int)(next_u32() % 4);
        for (int m = 0; m < n_mut && len > 0; m++) {
            size_t at = next_u32() % len;
            switch (next_u32() % 5) {
            case 0: buf[at] = alphabet[next_u32() % (sizeof alphabet - 1)]; break; /* replace */
            case 1: len = at; break;                                             /* truncate */
            case 2: buf[at] ^= (char)(1u << (next_u32() % 8)); break;            /* bit flip */
            case 3: /* delete one byte */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default: /* duplicate a span */
                if (len + 16 < sizeof buf) {
                    size_t k = 1 + next_u32() % 15;
                    if (at + k > len) k = len - at;
                    memmove(buf + at + k, buf + at, len - at);
                    len += k;
                }
            }
        }
        int st = call("POST", paths[s], buf, len);
        counts[st]++;
    }
    printf("      %d mutated requests: %d ok, %d refused (400), %d other\n", iters, counts[200],
           counts[400], iters - counts[200] - counts[400]);
    ASSERT(counts[200] > 0 && counts[400] > 0);
}

/* Cancellation (qkv__api_call.cancel, as http.c's socket check): asked before computing, before
 * each layer of every forward pass and between passes. A cancel that says stop on its k-th
 * call, for every k a whole request asks: the reply is the 499 with the call stopping at
 * once (no more asking), the compute slot is given back, and nothing leaks (ASan). */
typedef struct cancel_count {
    int calls, stop_at; /* stop at this call (0: never) */
} cancel_count;

static int cancel_on_kth(void *arg) {
    cancel_count *c = arg;
    return ++c->calls == c->stop_at;
}

static int run_cancelled(const char *path, const char *body, cancel_count *cc) {
    qkv__api_call c = {.method = "POST", .path = path, .body = body, .body_len = strlen(body),
                       .cancel = cancel_on_kth, .cancel_arg = cc};
    qkv__api_run(api, &c);
    if (c.status != 200 && c.status != QKV__SRV_CANCELLED) printf("      %s: %d %s\n", path, c.status, c.out);
    free(c.out);
    return c.status;
}

static void test_cancelled_between_layers(void) {
    const char *reqs[][2] = {
        {"/api/attend", "{\"text\":\"The keys to the cabinet\",\"scores\":true,\"detail\":{\"layer\":1,\"head\":0}}"},
        {"/api/compare", "{\"a\":\"the bank of the river\",\"b\":\"money in the bank\",\"word\":\"bank\"}"},
        {"/api/ablate", "{\"text\":\"The keys to the cabinet\",\"detail\":{\"layer\":1,\"head\":0}}"},
        {"/api/patch", "{\"source\":\"He took his money to the bank\",\"text\":\"He took his money to the river\"}"},
        {"/api/lens", "{\"text\":\"The keys to the cabinet\"}"},
    };
    const int L = 2;
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        cancel_count cc = {0, 0};
        ASSERT_MSG(run_cancelled(reqs[i][0], reqs[i][1], &cc) == 200, "%s not answered", reqs[i][0]);
        int all = cc.calls;
        int in_pass = 0; /* stops inside a forward pass (the library's message) */
        for (int k = 1; k <= all; k++) {
            cc = (cancel_count){0, k};
            qkv__clear_error();
            ASSERT_MSG(run_cancelled(reqs[i][0], reqs[i][1], &cc) == QKV__SRV_CANCELLED,
                       "%s: stop at call %d of %d not a 499", reqs[i][0], k, all);
            ASSERT_MSG(cc.calls == k, "%s: stop at call %d, asked %d times", reqs[i][0], k, cc.calls);
            in_pass += strstr(qkv_last_error(), "forward: cancelled before") != NULL;
        }
        /* at least one pass asked before each of its layers and its output head */
        ASSERT_MSG(in_pass >= L + 1, "%s: %d of %d stops inside a forward pass", reqs[i][0], in_pass, all);
        printf("      %s: cancel asked %d times, %d inside forward passes; stopping at each gives 499\n",
               reqs[i][0], all, in_pass);
    }
    /* the slot came back every time */
    const char *ok = "{\"text\":\"The keys\"}";
    ASSERT_EQ_INT(call("POST", "/api/attend", ok, strlen(ok)), 200);
}

static void teardown(void) {
    qkv__api_free(api);
    qkv_model_free(model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", vocab_dir);
    ASSERT(system(cmd) == 0);
}

int main(void) {
    RUN(setup);
    if (api) {
        RUN(test_valid_requests);
        RUN(test_mutated_requests);
        RUN(test_cancelled_between_layers);
    }
    RUN(teardown);
    return test_summary();
}
