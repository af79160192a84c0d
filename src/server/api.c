/* api.c -- the playground's JSON API (docs/HTTP.md):
 *
 *   GET  /api/model    name, sizes, vocabulary size, context length, limits
 *   POST /api/attend   {"text", "temperature", "causal", ...} -> tokens, attention [L][H][N][N],
 *                      next-token predictions, and on request raw scores and one head's q/k/v
 *   POST /api/compare  {"a", "b", "word"} -> the word's hidden-state cosine similarity per layer
 *   GET  /api/heads    what each head does: probe scores and tags (qkv_model_head_scores),
 *                      computed once when the server starts
 *   POST /api/ablate   {"text", "target", "vs", "mode", "detail"} -> the which-heads-matter grid
 *                      [L][H] (qkv_model_ablation_grid), and one ablated head's pattern and
 *                      new predictions on request
 *   POST /api/patch    {"source", "text", "target", "vs", "what"} -> activation patching maps
 *                      [L][H] and [L][N] (qkv_model_patch_maps)
 *   POST /api/lens     {"text", "top_k", "target", "positions"} -> the logit lens: top tokens
 *                      after every layer at every position (qkv_model_logit_lens)
 *   POST /api/generate {"prompt", "max_tokens", ...} -> newline-delimited JSON streamed as the
 *                      tokens are made, then every step's attention (qkv_model_attn_timeline);
 *                      cancelled when the client goes away (http.c drives the stream)
 *
 * Requests are parsed with jansson and checked field by field (type, range, unknown keys);
 * responses are written by hand (jsonw.c). Every error is {"error": "..."} with a 4xx. */
#include "server/server.h"
#include "server/jsonw.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct qkv__api {
    qkv_model *model;
    qkv_tokenizer *tok;
    qkv_model_config cfg;
    sem_t slots;          /* compute slots: forwards running at once */
    double queue_wait_s;
    qkv_head_scores heads; /* score == NULL when they could not be computed */
    char heads_error[256];
    pthread_mutex_t streams_lock; /* n_streams, stopping */
    pthread_cond_t streams_done;
    int n_streams, stopping;
    int max_streams; /* generations at once (running or waiting for a slot); 0 = no limit */
};

qkv_status qkv__api_create(qkv_model *model, int compute_slots, double queue_wait_s,
                           qkv__api **out) {
    *out = NULL;
    if (!model) return qkv__fail(QKV_EINVAL, "server: no model");
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    if (!tok)
        return qkv__fail(QKV_ENOTFOUND, "server: model '%s' has no tokenizer (vocab.json + "
                                        "merges.txt)", qkv_model_name(model));
    qkv__api *api = calloc(1, sizeof *api);
    if (!api) return qkv__fail(QKV_ENOMEM, "server: out of memory");
    api->model = model;
    api->tok = tok;
    api->cfg = *qkv_model_get_config(model);
    api->queue_wait_s = queue_wait_s > 0 ? queue_wait_s : 30.0;
    /* head tags once, before any request: read-only afterwards, so no locking */
    if (qkv_model_head_scores(model, &api->heads) != QKV_OK)
        snprintf(api->heads_error, sizeof api->heads_error, "%s", qkv_last_error());
    if (sem_init(&api->slots, 0, (unsigned)(compute_slots > 0 ? compute_slots : 2)) != 0) {
        qkv_head_scores_free(&api->heads);
        free(api);
        return qkv__fail(QKV_EINVAL, "server: sem_init failed");
    }
    pthread_mutex_init(&api->streams_lock, NULL);
    pthread_cond_init(&api->streams_done, NULL);
    *out = api;
    return QKV_OK;
}

void qkv__api_set_max_streams(qkv__api *api, int n) {
    pthread_mutex_lock(&api->streams_lock);
    api->max_streams = n;
    pthread_mutex_unlock(&api->streams_lock);
}

void qkv__api_free(qkv__api *api) {
    if (!api) return;
    pthread_mutex_destroy(&api->streams_lock);
    pthread_cond_destroy(&api->streams_done);
    sem_destroy(&api->slots);
    qkv_head_scores_free(&api->heads);
    free(api);
}

/* ---- responses ------------------------------------------------------------------------ */

typedef struct reply {
    int status;
    qkv__jw w;
    const char *allow;
    qkv__api_cancel_fn cancel; /* may be NULL */
    void *cancel_arg;
    int gone;                  /* cancel said the client has gone: status 499, no body */
    int want_binary;           /* the client asked for the binary form (POST /api/attend) */
    int binary;                /* the body is the binary form */
} reply;

static void reply_error(reply *r, int status, const char *fmt, ...) QKV__PRINTF(3, 4);
static void reply_error(reply *r, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    qkv__jw_free(&r->w);
    qkv__jw_init(&r->w);
    r->status = status;
    qkv__jw_lit(&r->w, "{\"error\":");
    qkv__jw_cstr(&r->w, msg);
    qkv__jw_lit(&r->w, "}");
}

/* Whether the request should stop: the client has gone (http.c looks at its socket) or the
 * server is stopping. Asked before computing, between the layers of every forward pass (through
 * reply_opts), between forward passes and between the layers of a long response. */
static int reply_gone(reply *r) {
    if (r->gone) return 1;
    if (!r->cancel || !r->cancel(r->cancel_arg)) return 0;
    reply_error(r, QKV__SRV_CANCELLED, "the client closed the connection");
    r->gone = 1;
    return 1;
}

static int reply_gone_hook(void *r) { return reply_gone(r); }

/* A request's forward options: its attention dials, and reply_gone asked before each layer. */
static qkv_forward_opts reply_opts(reply *r, float temperature, int no_causal_mask) {
    return (qkv_forward_opts){.attn_temperature = temperature, .no_causal_mask = no_causal_mask,
                              .cancel = reply_gone_hook, .cancel_arg = r};
}

/* Whether a computation was stopped by reply_gone (QKV_ECANCELED): the reply is the 499. */
static int reply_stopped(reply *r, qkv_status st) {
    if (st != QKV_ECANCELED) return 0;
    if (!r->gone) {
        reply_error(r, QKV__SRV_CANCELLED, "cancelled");
        r->gone = 1;
    }
    return 1;
}

/* ---- request fields ------------------------------------------------------------------- */

/* Rejects keys not in allowed (NULL-terminated): a typo should not be silently ignored. */
static int check_keys(reply *r, json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(key, *a)) ok = 1;
        if (!ok) {
            reply_error(r, 400, "unknown field '%.64s'", key);
            return 0;
        }
    }
    return 1;
}

/* A required non-empty string of at most QKV__SRV_MAX_TEXT bytes. */
static int get_text(reply *r, json_t *obj, const char *key, const char **s, size_t *n) {
    json_t *v = json_object_get(obj, key);
    if (!v) return reply_error(r, 400, "missing field '%s' (a string)", key), 0;
    if (!json_is_string(v)) return reply_error(r, 400, "'%s' must be a string", key), 0;
    *s = json_string_value(v);
    *n = json_string_length(v);
    if (*n == 0) return reply_error(r, 400, "'%s' is empty", key), 0;
    if (*n > QKV__SRV_MAX_TEXT)
        return reply_error(r, 400, "'%s' is %zu bytes; the limit is %d", key, *n,
                           QKV__SRV_MAX_TEXT), 0;
    return 1;
}

/* An optional number in [lo, hi]; *out keeps its default when absent. */
static int get_number(reply *r, json_t *obj, const char *key, double lo, double hi, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 1;
    if (!json_is_number(v)) return reply_error(r, 400, "'%s' must be a number", key), 0;
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return reply_error(r, 400, "'%s' must be between %g and %g (got %g)", key, lo, hi, x), 0;
    *out = x;
    return 1;
}

/* An optional integer in [lo, hi]. */
static int get_int(reply *r, json_t *obj, const char *key, long long lo, long long hi, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 1;
    if (!json_is_integer(v)) return reply_error(r, 400, "'%s' must be an integer", key), 0;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return reply_error(r, 400, "'%s' must be between %lld and %lld (got %lld)", key, lo, hi,
                           (long long)x), 0;
    *out = (int)x;
    return 1;
}

static int get_bool(reply *r, json_t *obj, const char *key, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 1;
    if (!json_is_boolean(v)) return reply_error(r, 400, "'%s' must be true or false", key), 0;
    *out = json_is_true(v);
    return 1;
}

/* Parses a body that must be a JSON object. */
static json_t *parse_object(reply *r, const char *body, size_t len) {
    if (!body || len == 0) return reply_error(r, 400, "empty body: send a JSON object"), NULL;
    json_error_t err;
    /* JSON_REJECT_DUPLICATES: {"text":"a","text":"b"} is ambiguous; JSON_ALLOW_NUL is not
     * given, so "\u0000" in a string is refused */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return reply_error(r, 400, "invalid JSON at line %d, column %d: %.200s", err.line,
                           err.column, err.text), NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return reply_error(r, 400, "the body must be a JSON object"), NULL;
    }
    return root;
}

/* ---- model calls ---------------------------------------------------------------------- */

/* Waits for a compute slot (bounded); 0 with a 503 reply when none frees up. */
static int acquire_slot(qkv__api *api, reply *r) {
    double deadline = qkv__now() + api->queue_wait_s;
    if (reply_gone(r)) return 0;
    /* in steps of 100 ms, so that a client that leaves while waiting is noticed */
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (sem_timedwait(&api->slots, &ts) == 0) break;
        if (errno == EINTR) continue;
        if (reply_gone(r)) return 0;
        if (qkv__now() >= deadline) {
            reply_error(r, 503, "the server is busy; try again");
            return 0;
        }
    }
    if (reply_gone(r)) {
        sem_post(&api->slots);
        return 0;
    }
    return 1;
}

static void release_slot(qkv__api *api) { sem_post(&api->slots); }

/* Tokenizes text; 0 with a 400 reply if it is empty or longer than the context. */
static int encode_text(qkv__api *api, reply *r, const char *key, const char *text, size_t len,
                       int **ids, int *n) {
    size_t n_ids = 0;
    *ids = NULL;
    qkv_status st = qkv_tokenizer_encode(api->tok, text, len, 0, ids, &n_ids);
    if (st != QKV_OK) {
        reply_error(r, 400, "'%s' could not be tokenized: %.300s", key, qkv_last_error());
        return 0;
    }
    if (n_ids == 0) {
        free(*ids);
        *ids = NULL;
        reply_error(r, 400, "'%s' has no tokens", key);
        return 0;
    }
    if (n_ids > (size_t)api->cfg.n_ctx) {
        free(*ids);
        *ids = NULL;
        reply_error(r, 400, "'%s' is %zu tokens; this model reads at most %d", key, n_ids,
                    api->cfg.n_ctx);
        return 0;
    }
    *n = (int)n_ids;
    return 1;
}

static void write_token(qkv__api *api, qkv__jw *w, int id, int as_bytes) {
    const char *b = "";
    size_t bl = 0;
    if (qkv_tokenizer_token_bytes(api->tok, id, &b, &bl) != QKV_OK) b = "", bl = 0;
    if (as_bytes) qkv__jw_hex(w, b, bl);
    else qkv__jw_str(w, b, bl);
}

/* "tokens", "bytes" (hex of each piece's raw bytes), "partial" (pieces that are not whole
 * UTF-8 on their own) and "ids". */
static void write_tokens(qkv__api *api, qkv__jw *w, const int *ids, int n) {
    qkv__jw_key(w, "tokens", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) qkv__jw_raw(w, ",", 1);
        write_token(api, w, ids[i], 0);
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "bytes", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) qkv__jw_raw(w, ",", 1);
        write_token(api, w, ids[i], 1);
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "partial", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < n; i++) {
        const char *b = "";
        size_t bl = 0;
        if (qkv_tokenizer_token_bytes(api->tok, ids[i], &b, &bl) != QKV_OK) bl = 0;
        qkv__jw_lit(w, i ? "," : "");
        qkv__jw_lit(w, qkv__jw_utf8_valid(b, bl) ? "false" : "true");
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "ids", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) qkv__jw_raw(w, ",", 1);
        qkv__jw_int(w, ids[i]);
    }
    qkv__jw_raw(w, "]", 1);
}

/* [L][H][N][N] with null for layers not in want_layer. */
static void write_maps(reply *r, const float *maps, int L, int H, int N, const int *want_layer) {
    qkv__jw *w = &r->w;
    size_t nn = (size_t)N * (size_t)N;
    qkv__jw_raw(w, "[", 1);
    for (int l = 0; l < L; l++) {
        if (reply_gone(r)) return; /* the body is now the error: the caller stops writing */
        if (l) qkv__jw_raw(w, ",", 1);
        if (!want_layer[l]) {
            qkv__jw_lit(w, "null");
            continue;
        }
        qkv__jw_raw(w, "[", 1);
        for (int h = 0; h < H; h++) {
            if (h && reply_gone(r)) return; /* and between heads: one poll() each */
            if (h) qkv__jw_raw(w, ",", 1);
            qkv__jw_matrix(w, maps + ((size_t)l * (size_t)H + (size_t)h) * nn, N, N, N);
        }
        qkv__jw_raw(w, "]", 1);
    }
    qkv__jw_raw(w, "]", 1);
}

/* ---- the binary form (docs/HTTP.md, "Binary form") ---------------------------------------
 *
 *   "QKVATTN1"   8 bytes
 *   J            uint32, little-endian: bytes of the JSON header that follows
 *   header       J bytes: the JSON response, with each map replaced by its descriptor
 *                {"dtype": "float32", "shape": [n, H, N, N], "layers": [...], "offset": o,
 *                 "bytes": b}; padded with spaces so that the data starts 4-byte aligned
 *   data         the maps, float32 little-endian, each at 12 + J + offset */

#define QKV__BIN_MAGIC "QKVATTN1"

static void write_map_desc(qkv__jw *w, int L, int H, int N, const int *want_layer, size_t *offset) {
    int n = 0;
    for (int l = 0; l < L; l++) n += want_layer[l] != 0;
    size_t bytes = (size_t)n * (size_t)H * (size_t)N * (size_t)N * sizeof(float);
    qkv__jw_lit(w, "{\"dtype\":\"float32\",\"shape\":[");
    qkv__jw_int(w, n);
    qkv__jw_lit(w, ",");
    qkv__jw_int(w, H);
    qkv__jw_lit(w, ",");
    qkv__jw_int(w, N);
    qkv__jw_lit(w, ",");
    qkv__jw_int(w, N);
    qkv__jw_lit(w, "],\"layers\":[");
    for (int l = 0, k = 0; l < L; l++)
        if (want_layer[l]) {
            if (k++) qkv__jw_lit(w, ",");
            qkv__jw_int(w, l);
        }
    qkv__jw_lit(w, "],\"offset\":");
    qkv__jw_int(w, (long long)*offset);
    qkv__jw_lit(w, ",\"bytes\":");
    qkv__jw_int(w, (long long)bytes);
    qkv__jw_lit(w, "}");
    *offset += bytes;
}

/* Replaces r's JSON (the header) by the whole binary body; 0 (with the reply set) on failure
 * or when the client has gone. maps[k] may be NULL (not captured). */
static int pack_binary(reply *r, const float *const maps[2], const int *const wants[2], int L,
                       int H, int N, size_t data_bytes) {
    size_t json = r->w.len, pad = (4 - (12 + json) % 4) % 4;
    size_t head = 12 + json + pad, total = head + data_bytes;
    if (json + pad > UINT32_MAX) {
        reply_error(r, 500, "response header too large");
        return 0;
    }
    char *buf = malloc(total);
    if (!buf) {
        reply_error(r, 503, "out of memory for a %zu-byte response", total);
        return 0;
    }
    uint32_t j = (uint32_t)(json + pad);
    memcpy(buf, QKV__BIN_MAGIC, 8);
    unsigned char le[4] = {(unsigned char)j, (unsigned char)(j >> 8), (unsigned char)(j >> 16),
                           (unsigned char)(j >> 24)};
    memcpy(buf + 8, le, 4);
    memcpy(buf + 12, r->w.buf, json);
    memset(buf + 12 + json, ' ', pad);
    size_t at = head, per_layer = (size_t)H * (size_t)N * (size_t)N;
    for (int k = 0; k < 2; k++) {
        if (!maps[k]) continue;
        for (int l = 0; l < L; l++) {
            if (!wants[k][l]) continue;
            if (reply_gone(r)) {
                free(buf);
                return 0;
            }
            /* float32 as stored: little-endian on every machine qkv builds for (x86-64) */
            memcpy(buf + at, maps[k] + (size_t)l * per_layer, per_layer * sizeof(float));
            at += per_layer * sizeof(float);
        }
    }
    qkv__jw_free(&r->w);
    r->w.buf = buf;
    r->w.len = r->w.cap = total;
    r->binary = 1;
    return 1;
}

/* ---- GET /api/model ------------------------------------------------------------------- */

static void api_model(qkv__api *api, reply *r) {
    qkv__jw *w = &r->w;
    const qkv_model_config *c = &api->cfg;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "name", 1);
    qkv__jw_cstr(w, qkv_model_name(api->model));
    qkv__jw_key(w, "n_layer", 0);
    qkv__jw_int(w, c->n_layer);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, c->n_head);
    qkv__jw_key(w, "n_embd", 0);
    qkv__jw_int(w, c->n_embd);
    qkv__jw_key(w, "head_dim", 0);
    qkv__jw_int(w, c->head_dim);
    /* the family and its attention layout: with grouped heads, query head h reads key/value
     * head h / (n_head / n_kv_head) */
    qkv__jw_key(w, "family", 0);
    qkv__jw_cstr(w, c->family);
    qkv__jw_key(w, "n_kv_head", 0);
    qkv__jw_int(w, c->n_kv_head);
    qkv__jw_key(w, "attention", 0);
    qkv__jw_cstr(w, c->n_kv_head == c->n_head ? "MHA" : c->n_kv_head == 1 ? "MQA" : "GQA");
    qkv__jw_key(w, "positions", 0);
    qkv__jw_cstr(w, c->pos == QKV_POS_ROPE ? "rope" : "learned");
    qkv__jw_key(w, "norm", 0);
    qkv__jw_cstr(w, c->norm == QKV_NORM_RMS ? "rmsnorm" : "layernorm");
    qkv__jw_key(w, "mlp", 0);
    qkv__jw_cstr(w, c->mlp == QKV_MLP_SWIGLU ? "swiglu" : "gelu");
    qkv__jw_key(w, "n_ctx", 0);
    qkv__jw_int(w, c->n_ctx);
    qkv__jw_key(w, "vocab_size", 0);
    qkv__jw_int(w, c->vocab_size);
    qkv__jw_key(w, "n_params", 0);
    qkv__jw_int(w, (long long)qkv_model_n_params(api->model));
    qkv__jw_key(w, "limits", 0);
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "max_body_bytes", 1);
    qkv__jw_int(w, QKV__SRV_MAX_BODY);
    qkv__jw_key(w, "max_text_bytes", 0);
    qkv__jw_int(w, QKV__SRV_MAX_TEXT);
    qkv__jw_key(w, "max_tokens", 0);
    qkv__jw_int(w, c->n_ctx);
    qkv__jw_key(w, "max_values", 0);
    qkv__jw_int(w, QKV__SRV_MAX_VALUES);
    qkv__jw_lit(w, "}}");
}

/* ---- GET /api/heads -------------------------------------------------------------------- */

static void api_heads(qkv__api *api, reply *r) {
    const qkv_head_scores *hs = &api->heads;
    if (!hs->score) {
        reply_error(r, 503, "head scores are not available: %.200s", api->heads_error);
        return;
    }
    qkv__jw *w = &r->w;
    int L = hs->n_layer, H = hs->n_head;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "n_layer", 1);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, H);
    qkv__jw_key(w, "probe_tokens", 0);
    qkv__jw_int(w, hs->n_probe_tokens);
    qkv__jw_key(w, "punctuation_base", 0);
    qkv__jw_float(w, hs->punct_base);
    qkv__jw_key(w, "thresholds", 0);
    qkv__jw_lit(w, "{");
    for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++) {
        qkv__jw_key(w, qkv_head_score_key(k), k == 0);
        qkv__jw_float(w, qkv_head_threshold(k));
    }
    qkv__jw_key(w, "punctuation_ratio", 0);
    qkv__jw_float(w, QKV_HEAD_PUNCT_RATIO);
    qkv__jw_lit(w, "}");
    qkv__jw_key(w, "heads", 0);
    qkv__jw_lit(w, "[");
    for (int i = 0; i < L * H; i++) {
        const float *sc = hs->score + (size_t)i * QKV_HEAD_TAG_COUNT;
        qkv__jw_lit(w, i ? ",{" : "{");
        qkv__jw_key(w, "layer", 1);
        qkv__jw_int(w, i / H);
        qkv__jw_key(w, "head", 0);
        qkv__jw_int(w, i % H);
        qkv__jw_key(w, "scores", 0);
        qkv__jw_lit(w, "{");
        for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++) {
            qkv__jw_key(w, qkv_head_score_key(k), k == 0);
            qkv__jw_float(w, sc[k]);
        }
        qkv__jw_lit(w, "}");
        qkv__jw_key(w, "tags", 0);
        qkv__jw_lit(w, "[");
        int any = 0;
        for (int k = 0; k < QKV_HEAD_TAG_COUNT; k++)
            if (hs->tags[i] >> k & 1) {
                if (any++) qkv__jw_lit(w, ",");
                qkv__jw_cstr(w, qkv_head_tag_name(k));
            }
        qkv__jw_lit(w, "]}");
    }
    qkv__jw_lit(w, "]}");
    r->status = 200;
}

/* ---- POST /api/attend ----------------------------------------------------------------- */

static void api_attend(qkv__api *api, reply *r, const char *body, size_t len) {
    static const char *const keys[] = {"text", "temperature", "causal", "top_k", "layers",
                                       "scores", "attention", "detail", "probe", NULL};
    json_t *root = parse_object(r, body, len);
    if (!root) return;
    int *ids = NULL, *top_ids = NULL, *want_layer = NULL, *want_sc_layer = NULL;
    float *last_logits = NULL, *top_p = NULL;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    int have_slot = 0;

    const char *text;
    size_t text_len;
    double temperature = 1.0;
    int causal = 1, top_k = 10, want_scores = 0, want_attention = 1;
    int d_layer = -1, d_head = -1;
    const int L = api->cfg.n_layer, H = api->cfg.n_head, V = api->cfg.vocab_size;
    if (!check_keys(r, root, keys) || !get_text(r, root, "text", &text, &text_len) ||
        !get_number(r, root, "temperature", 0.01, 100.0, &temperature) ||
        !get_bool(r, root, "causal", &causal) ||
        !get_int(r, root, "top_k", 0, QKV__SRV_MAX_TOP_K, &top_k) ||
        !get_bool(r, root, "attention", &want_attention))
        goto done;
    want_layer = calloc((size_t)L + 1, sizeof *want_layer);
    want_sc_layer = calloc((size_t)L + 1, sizeof *want_sc_layer);
    if (!want_layer || !want_sc_layer) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    json_t *layers = json_object_get(root, "layers");
    if (layers) {
        if (!json_is_array(layers) || json_array_size(layers) > (size_t)L) {
            reply_error(r, 400, "'layers' must be an array of at most %d layer indices", L);
            goto done;
        }
        size_t i;
        json_t *v;
        json_array_foreach(layers, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= L) {
                reply_error(r, 400, "'layers' entries must be integers in [0, %d]", L - 1);
                goto done;
            }
            want_layer[json_integer_value(v)] = 1;
        }
    } else {
        for (int l = 0; l < L; l++) want_layer[l] = 1;
    }
    int n_want = 0;
    for (int l = 0; l < L; l++) n_want += want_layer[l];
    /* "scores": true (the same layers as the attention) or a list of layers of its own */
    json_t *scores = json_object_get(root, "scores");
    if (scores && json_is_array(scores)) {
        if (json_array_size(scores) > (size_t)L) {
            reply_error(r, 400, "'scores' lists more than %d layers", L);
            goto done;
        }
        size_t i;
        json_t *v;
        json_array_foreach(scores, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= L) {
                reply_error(r, 400, "'scores' entries must be integers in [0, %d]", L - 1);
                goto done;
            }
            want_sc_layer[json_integer_value(v)] = 1;
        }
        want_scores = 1;
    } else if (scores) {
        if (!get_bool(r, root, "scores", &want_scores)) goto done;
        for (int l = 0; l < L; l++) want_sc_layer[l] = want_scores && want_layer[l];
    }
    int n_want_sc = 0;
    for (int l = 0; l < L; l++) n_want_sc += want_sc_layer[l];

    json_t *detail = json_object_get(root, "detail");
    if (detail) {
        static const char *const dkeys[] = {"layer", "head", NULL};
        if (!json_is_object(detail)) {
            reply_error(r, 400, "'detail' must be an object {\"layer\": l, \"head\": h}");
            goto done;
        }
        d_layer = 0, d_head = 0;
        if (!check_keys(r, detail, dkeys) || !get_int(r, detail, "layer", 0, L - 1, &d_layer) ||
            !get_int(r, detail, "head", 0, H - 1, &d_head))
            goto done;
    }
    json_t *probe = json_object_get(root, "probe");
    if (probe) {
        if (!json_is_array(probe) || json_array_size(probe) > QKV__SRV_MAX_PROBES) {
            reply_error(r, 400, "'probe' must be an array of at most %d strings",
                        QKV__SRV_MAX_PROBES);
            goto done;
        }
        size_t i;
        json_t *v;
        json_array_foreach(probe, i, v) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
                reply_error(r, 400, "'probe' entries must be non-empty strings of at most 64 bytes");
                goto done;
            }
        }
    }

    int N;
    if (!encode_text(api, r, "text", text, text_len, &ids, &N)) goto done;

    /* the response must stay bounded: [L][H][N][N] per map asked for */
    size_t per_layer = (size_t)H * (size_t)N * (size_t)N;
    size_t values = per_layer * ((size_t)(want_attention ? n_want : 0) + (size_t)n_want_sc);
    if (values > QKV__SRV_MAX_VALUES) {
        reply_error(r, 413, "%d tokens x %d layers x %d heads is %zu numbers (limit %u): ask for "
                    "fewer \"layers\" or a shorter text", N, n_want, H, values,
                    QKV__SRV_MAX_VALUES);
        goto done;
    }

    size_t captured = (size_t)L * per_layer *
                      (size_t)((want_attention && n_want > 0 ? 1 : 0) + (want_scores && n_want_sc > 0 ? 1 : 0));
    if (captured > QKV__SRV_MAX_CAPTURE) {
        reply_error(r, 413, "%d tokens: recording every layer's maps would take %zu MB; ask for the "
                    "attention without \"scores\", or a shorter text", N, captured * 4 >> 20);
        goto done;
    }
    last_logits = malloc((size_t)V * sizeof *last_logits);
    top_ids = malloc(((size_t)top_k + 1) * sizeof *top_ids);
    top_p = malloc(((size_t)top_k + 1) * sizeof *top_p);
    if (!last_logits || !top_ids || !top_p) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    cap.want_probs = want_attention && n_want > 0;
    cap.want_scores = want_scores && n_want_sc > 0;
    cap.want_qkv = cap.want_head_out = detail != NULL;
    qkv_forward_opts opts = reply_opts(r, (float)temperature, !causal);

    if (!acquire_slot(api, r)) goto done;
    have_slot = 1;
    double t0 = qkv__now();
    qkv_status st = qkv_model_forward(api->model, ids, N, &opts, NULL, last_logits, &cap);
    double t_forward = qkv__now() - t0;
    release_slot(api);
    have_slot = 0;
    if (reply_stopped(r, st)) goto done;
    if (st != QKV_OK) {
        reply_error(r, st == QKV_ENOMEM ? 503 : 500, "forward failed: %.300s", qkv_last_error());
        goto done;
    }
    if (reply_gone(r)) goto done;
    if (top_k > 0 && qkv_top_k(last_logits, V, top_k, top_ids, top_p) != QKV_OK) {
        reply_error(r, 500, "top_k failed: %.300s", qkv_last_error());
        goto done;
    }

    qkv__jw *w = &r->w;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "model", 1);
    qkv__jw_cstr(w, qkv_model_name(api->model));
    write_tokens(api, w, ids, N);
    qkv__jw_key(w, "n_layer", 0);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, H);
    qkv__jw_key(w, "n_kv_head", 0);
    qkv__jw_int(w, api->cfg.n_kv_head);
    qkv__jw_key(w, "n_tokens", 0);
    qkv__jw_int(w, N);
    qkv__jw_key(w, "head_dim", 0);
    qkv__jw_int(w, api->cfg.head_dim);
    qkv__jw_key(w, "temperature", 0);
    qkv__jw_float(w, (float)temperature);
    qkv__jw_key(w, "causal", 0);
    qkv__jw_lit(w, causal ? "true" : "false");
    size_t bin_bytes = 0; /* binary form: the arrays described so far */
    if (cap.probs) {
        qkv__jw_key(w, "attention", 0);
        if (r->want_binary) write_map_desc(w, L, H, N, want_layer, &bin_bytes);
        else write_maps(r, cap.probs, L, H, N, want_layer);
        if (r->gone) goto done;
    }
    if (cap.scores) {
        qkv__jw_key(w, "scores", 0);
        if (r->want_binary) write_map_desc(w, L, H, N, want_sc_layer, &bin_bytes);
        else write_maps(r, cap.scores, L, H, N, want_sc_layer);
        if (r->gone) goto done;
    }
    /* next-token predictions after the last token */
    qkv__jw_key(w, "top", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < top_k; i++) {
        if (i) qkv__jw_raw(w, ",", 1);
        qkv__jw_lit(w, "{\"token\":");
        write_token(api, w, top_ids[i], 0);
        qkv__jw_lit(w, ",\"bytes\":");
        write_token(api, w, top_ids[i], 1);
        qkv__jw_lit(w, ",\"id\":");
        qkv__jw_int(w, top_ids[i]);
        {
            const char *b = "";
            size_t bl = 0;
            if (qkv_tokenizer_token_bytes(api->tok, top_ids[i], &b, &bl) != QKV_OK) bl = 0;
            qkv__jw_lit(w, qkv__jw_utf8_valid(b, bl) ? ",\"partial\":false" : ",\"partial\":true");
        }
        qkv__jw_lit(w, ",\"prob\":");
        qkv__jw_float(w, top_p[i]);
        qkv__jw_lit(w, "}");
    }
    qkv__jw_raw(w, "]", 1);
    if (probe) {
        /* probability of the first token of each probe string (softmax at temperature 1) */
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++)
            if (last_logits[i] > mx) mx = last_logits[i];
        for (int i = 0; i < V; i++) sum += exp((double)last_logits[i] - mx);
        qkv__jw_key(w, "probe", 0);
        qkv__jw_raw(w, "[", 1);
        size_t i;
        json_t *v;
        json_array_foreach(probe, i, v) {
            int *pids = NULL;
            size_t np = 0;
            if (i) qkv__jw_raw(w, ",", 1);
            qkv__jw_lit(w, "{\"text\":");
            qkv__jw_str(w, json_string_value(v), json_string_length(v));
            if (qkv_tokenizer_encode(api->tok, json_string_value(v), json_string_length(v), 0,
                                     &pids, &np) == QKV_OK && np > 0 && pids[0] >= 0 &&
                pids[0] < V) {
                qkv__jw_lit(w, ",\"id\":");
                qkv__jw_int(w, pids[0]);
                qkv__jw_lit(w, ",\"token\":");
                write_token(api, w, pids[0], 0);
                qkv__jw_lit(w, ",\"n_tokens\":");
                qkv__jw_int(w, (long long)np);
                qkv__jw_lit(w, ",\"prob\":");
                qkv__jw_float(w, (float)(exp((double)last_logits[pids[0]] - mx) / sum));
            } else {
                qkv__jw_lit(w, ",\"id\":null,\"prob\":null");
            }
            free(pids);
            qkv__jw_lit(w, "}");
        }
        qkv__jw_raw(w, "]", 1);
    }
    if (detail) {
        /* one head's projections for every token, and its outputs (the weighted blends) */
        int d = cap.head_dim;
        size_t off = ((size_t)d_layer * (size_t)H + (size_t)d_head) * (size_t)N * (size_t)d;
        qkv__jw_key(w, "detail", 0);
        qkv__jw_lit(w, "{");
        qkv__jw_key(w, "layer", 1);
        qkv__jw_int(w, d_layer);
        qkv__jw_key(w, "head", 0);
        qkv__jw_int(w, d_head);
        qkv__jw_key(w, "head_dim", 0);
        qkv__jw_int(w, d);
        qkv__jw_key(w, "scale", 0);
        qkv__jw_float(w, (float)(1.0 / sqrt((double)d)));
        qkv__jw_key(w, "q", 0);
        qkv__jw_matrix(w, cap.q + off, N, d, d);
        qkv__jw_key(w, "k", 0);
        qkv__jw_matrix(w, cap.k + off, N, d, d);
        qkv__jw_key(w, "v", 0);
        qkv__jw_matrix(w, cap.v + off, N, d, d);
        qkv__jw_key(w, "out", 0);
        qkv__jw_matrix(w, cap.head_out + off, N, d, d);
        qkv__jw_lit(w, "}");
    }
    qkv__jw_key(w, "forward_ms", 0);
    qkv__jw_float(w, (float)(t_forward * 1e3));
    qkv__jw_lit(w, "}");
    if (w->oom) {
        reply_error(r, 500, "out of memory writing the response");
        goto done;
    }
    if (r->want_binary) {
        const float *maps[2] = {cap.probs, cap.scores};
        const int *wants[2] = {want_layer, want_sc_layer};
        if (!pack_binary(r, maps, wants, L, H, N, bin_bytes)) goto done;
    }
    r->status = 200;

done:
    if (have_slot) release_slot(api);
    qkv_capture_free(&cap);
    free(ids);
    free(top_ids);
    free(top_p);
    free(last_logits);
    free(want_layer);
    free(want_sc_layer);
    json_decref(root);
}

/* ---- POST /api/compare ---------------------------------------------------------------- */

/* Index of the token holding the last byte of the first whole-word, case-insensitive match
 * of word in text (so under the causal mask its state has seen the whole word); -1 if the
 * word does not occur. Token byte offsets come from the pieces, which concatenate to the
 * text exactly. */
static int find_word(qkv__api *api, const char *text, size_t len, const char *word, size_t wl,
                     const int *ids, int n) {
    size_t at = (size_t)-1;
    for (size_t i = 0; i + wl <= len; i++) {
        if (strncasecmp(text + i, word, wl) != 0) continue;
        int left_ok = i == 0 || !isalnum((unsigned char)text[i - 1]);
        int right_ok = i + wl == len || !isalnum((unsigned char)text[i + wl]);
        if (left_ok && right_ok) {
            at = i + wl - 1;
            break;
        }
    }
    if (at == (size_t)-1) return -1;
    size_t pos = 0;
    for (int t = 0; t < n; t++) {
        const char *b;
        size_t bl = 0;
        if (qkv_tokenizer_token_bytes(api->tok, ids[t], &b, &bl) != QKV_OK) return -1;
        if (at < pos + bl) return t;
        pos += bl;
    }
    return -1;
}

static void api_compare(qkv__api *api, reply *r, const char *body, size_t len) {
    static const char *const keys[] = {"a", "b", "word", "index_a", "index_b", NULL};
    json_t *root = parse_object(r, body, len);
    if (!root) return;
    int *ids[2] = {NULL, NULL};
    qkv_capture cap[2];
    memset(cap, 0, sizeof cap);
    float *logits = NULL;
    const char *text[2], *word = NULL;
    size_t tlen[2], wlen = 0;
    int idx[2] = {-1, -1}, n[2] = {0, 0};
    const int L = api->cfg.n_layer, H = api->cfg.n_head;
    if (!check_keys(r, root, keys) || !get_text(r, root, "a", &text[0], &tlen[0]) ||
        !get_text(r, root, "b", &text[1], &tlen[1]))
        goto done;
    if (json_object_get(root, "word") && !get_text(r, root, "word", &word, &wlen)) goto done;
    if (!get_int(r, root, "index_a", 0, api->cfg.n_ctx - 1, &idx[0]) ||
        !get_int(r, root, "index_b", 0, api->cfg.n_ctx - 1, &idx[1]))
        goto done;
    if (!word && (idx[0] < 0 || idx[1] < 0)) {
        reply_error(r, 400, "give 'word', or both 'index_a' and 'index_b'");
        goto done;
    }
    logits = malloc((size_t)api->cfg.vocab_size * sizeof *logits);
    if (!logits) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    static const char *names[2] = {"a", "b"};
    for (int s = 0; s < 2; s++) {
        if (!encode_text(api, r, names[s], text[s], tlen[s], &ids[s], &n[s])) goto done;
        if (idx[s] < 0) idx[s] = find_word(api, text[s], tlen[s], word, wlen, ids[s], n[s]);
        if (idx[s] < 0) {
            reply_error(r, 400, "'%s' has no word '%.64s'", names[s], word);
            goto done;
        }
        if (idx[s] >= n[s]) {
            reply_error(r, 400, "'index_%s' is %d but '%s' has %d tokens", names[s], idx[s],
                        names[s], n[s]);
            goto done;
        }
        if ((size_t)H * (size_t)n[s] * (size_t)n[s] * (size_t)L > QKV__SRV_MAX_VALUES) {
            reply_error(r, 413, "'%s' is too long to compare", names[s]);
            goto done;
        }
    }
    qkv_forward_opts opts = reply_opts(r, 0.0f, 0);
    for (int s = 0; s < 2; s++) {
        cap[s].want_hidden = 1;
        cap[s].want_probs = 1;
        if (!acquire_slot(api, r)) goto done;
        qkv_status st = qkv_model_forward(api->model, ids[s], n[s], &opts, NULL, logits, &cap[s]);
        release_slot(api);
        if (reply_stopped(r, st)) goto done;
        if (st != QKV_OK) {
            reply_error(r, 500, "forward failed: %.300s", qkv_last_error());
            goto done;
        }
    }
    if (reply_gone(r)) goto done;
    qkv__jw *w = &r->w;
    const int C = api->cfg.n_embd;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "n_layer", 1);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, H);
    for (int s = 0; s < 2; s++) {
        qkv__jw_key(w, names[s], 0);
        qkv__jw_lit(w, "{\"index\":");
        qkv__jw_int(w, idx[s]);
        write_tokens(api, w, ids[s], n[s]);
        /* the word's attention row in every layer and head: [L][H][N] */
        qkv__jw_key(w, "attention", 0);
        qkv__jw_raw(w, "[", 1);
        size_t nn = (size_t)n[s] * (size_t)n[s];
        for (int l = 0; l < L; l++) {
            qkv__jw_lit(w, l ? ",[" : "[");
            for (int h = 0; h < H; h++) {
                if (h) qkv__jw_raw(w, ",", 1);
                qkv__jw_floats(w, cap[s].probs + ((size_t)l * H + h) * nn + (size_t)idx[s] * n[s],
                               (size_t)n[s]);
            }
            qkv__jw_raw(w, "]", 1);
        }
        qkv__jw_lit(w, "]}");
    }
    /* cosine similarity of the word's hidden state, entering each block and after the last */
    qkv__jw_key(w, "similarity", 0);
    qkv__jw_raw(w, "[", 1);
    for (int l = 0; l <= L; l++) {
        const float *x = cap[0].hidden + ((size_t)l * n[0] + idx[0]) * C;
        const float *y = cap[1].hidden + ((size_t)l * n[1] + idx[1]) * C;
        double xy = 0, xx = 0, yy = 0;
        for (int c = 0; c < C; c++) {
            xy += (double)x[c] * y[c];
            xx += (double)x[c] * x[c];
            yy += (double)y[c] * y[c];
        }
        if (l) qkv__jw_raw(w, ",", 1);
        qkv__jw_float(w, (xx > 0 && yy > 0) ? (float)(xy / sqrt(xx * yy)) : 0.0f);
    }
    qkv__jw_lit(w, "]}");
    r->status = 200;
    if (w->oom) reply_error(r, 500, "out of memory writing the response");

done:
    for (int s = 0; s < 2; s++) {
        qkv_capture_free(&cap[s]);
        free(ids[s]);
    }
    free(logits);
    json_decref(root);
}

/* ---- interventions: shared pieces ------------------------------------------------------ */

/* An optional token: a string that is exactly one token of the vocabulary (" were"), or an
 * integer id in [0, V). *id keeps its value (-1) when the field is absent. */
static int get_token(qkv__api *api, reply *r, json_t *obj, const char *key, int *id) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 1;
    int V = api->cfg.vocab_size;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x >= V)
            return reply_error(r, 400, "'%s' is token id %lld, outside the vocabulary [0, %d)", key,
                               (long long)x, V), 0;
        *id = (int)x;
        return 1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)
        return reply_error(r, 400, "'%s' must be a token: its text (1 to 256 bytes) or its id", key), 0;
    int *ids = NULL;
    size_t n = 0;
    if (qkv_tokenizer_encode(api->tok, json_string_value(v), json_string_length(v), 0, &ids, &n) != QKV_OK) {
        reply_error(r, 400, "'%s' could not be tokenized: %.300s", key, qkv_last_error());
        return 0;
    }
    int one = n == 1 ? ids[0] : -1;
    free(ids);
    if (one < 0)
        return reply_error(r, 400, "'%s' is %zu tokens, not one token of the vocabulary (GPT-2's "
                           "pieces carry their leading space: \" were\"; or give the id)", key, n), 0;
    *id = one;
    return 1;
}

/* {"id", "token", "bytes"} or null */
static void write_token_obj(qkv__api *api, qkv__jw *w, int id) {
    if (id < 0) {
        qkv__jw_lit(w, "null");
        return;
    }
    qkv__jw_lit(w, "{\"id\":");
    qkv__jw_int(w, id);
    qkv__jw_lit(w, ",\"token\":");
    write_token(api, w, id, 0);
    qkv__jw_lit(w, ",\"bytes\":");
    write_token(api, w, id, 1);
    qkv__jw_lit(w, "}");
}

/* The k most likely next tokens: [{"token", "bytes", "id", "prob"}] (k <= QKV__SRV_MAX_TOP_K) */
static void write_top(qkv__api *api, qkv__jw *w, const float *logits, int k) {
    int ids[QKV__SRV_MAX_TOP_K];
    float p[QKV__SRV_MAX_TOP_K];
    if (k > api->cfg.vocab_size) k = api->cfg.vocab_size;
    if (k < 1 || qkv_top_k(logits, api->cfg.vocab_size, k, ids, p) != QKV_OK) k = 0;
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < k; i++) {
        qkv__jw_lit(w, i ? ",{\"token\":" : "{\"token\":");
        write_token(api, w, ids[i], 0);
        qkv__jw_lit(w, ",\"bytes\":");
        write_token(api, w, ids[i], 1);
        qkv__jw_lit(w, ",\"id\":");
        qkv__jw_int(w, ids[i]);
        qkv__jw_lit(w, ",\"prob\":");
        qkv__jw_float(w, p[i]);
        qkv__jw_lit(w, "}");
    }
    qkv__jw_raw(w, "]", 1);
}

static int encode_iv_text(qkv__api *api, reply *r, const char *key, const char *text, size_t len,
                          int **ids, int *n) {
    if (!encode_text(api, r, key, text, len, ids, n)) return 0;
    if (*n > QKV__SRV_MAX_IV_TOKENS) {
        free(*ids);
        *ids = NULL;
        reply_error(r, 413, "'%s' is %d tokens; interventions run one forward per cell and take at "
                    "most %d", key, *n, QKV__SRV_MAX_IV_TOKENS);
        return 0;
    }
    return 1;
}

static const char *const mode_names[] = {"none", "zero", "mean", "uniform"};

/* ---- POST /api/ablate ------------------------------------------------------------------ */

static void api_ablate(qkv__api *api, reply *r, const char *body, size_t len) {
    static const char *const keys[] = {"text", "target", "vs", "mode", "top_k", "detail", NULL};
    json_t *root = parse_object(r, body, len);
    if (!root) return;
    int *ids = NULL, have_slot = 0, N = 0, target = -1, vs = -1, top_k = 10, mode = QKV_ABLATE_ZERO;
    int d_layer = -1, d_head = -1;
    const int L = api->cfg.n_layer, H = api->cfg.n_head, V = api->cfg.vocab_size;
    float *logits = NULL, *grid = NULL;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    const char *text;
    size_t text_len;
    if (!check_keys(r, root, keys) || !get_text(r, root, "text", &text, &text_len) ||
        !get_token(api, r, root, "target", &target) || !get_token(api, r, root, "vs", &vs) ||
        !get_int(r, root, "top_k", 1, QKV__SRV_MAX_TOP_K, &top_k))
        goto done;
    json_t *jm = json_object_get(root, "mode");
    if (jm) {
        mode = -1;
        for (int m = QKV_ABLATE_ZERO; m <= QKV_ABLATE_UNIFORM; m++)
            if (json_is_string(jm) && !strcmp(json_string_value(jm), mode_names[m])) mode = m;
        if (mode < 0) {
            reply_error(r, 400, "'mode' must be \"zero\", \"mean\" or \"uniform\"");
            goto done;
        }
    }
    json_t *detail = json_object_get(root, "detail");
    if (detail) {
        static const char *const dkeys[] = {"layer", "head", NULL};
        if (!json_is_object(detail) || !json_object_get(detail, "layer") || !json_object_get(detail, "head")) {
            reply_error(r, 400, "'detail' must be an object {\"layer\": l, \"head\": h}");
            goto done;
        }
        if (!check_keys(r, detail, dkeys) || !get_int(r, detail, "layer", 0, L - 1, &d_layer) ||
            !get_int(r, detail, "head", 0, H - 1, &d_head))
            goto done;
    }
    if (target >= 0 && vs == target) {
        reply_error(r, 400, "'vs' is the target itself");
        goto done;
    }
    if (!encode_iv_text(api, r, "text", text, text_len, &ids, &N)) goto done;
    logits = malloc(sizeof(float) * (size_t)V * 2);
    grid = malloc(sizeof(float) * (size_t)L * H);
    if (!logits || !grid) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    if (!acquire_slot(api, r)) goto done;
    have_slot = 1;
    double t0 = qkv__now();
    qkv_forward_opts opts = reply_opts(r, 0.0f, 0);
    qkv_status st = qkv_model_forward(api->model, ids, N, &opts, NULL, logits, NULL);
    if (!st && target < 0) {
        float p;
        qkv_top_k(logits, V, 1, &target, &p);
        if (vs == target) vs = -1; /* the default target happens to be vs: compare with nothing */
    }
    double t1 = qkv__now();
    float base = 0;
    if (!st && reply_gone(r)) goto done; /* between the clean pass and the grid */
    if (!st) st = qkv_model_ablation_grid(api->model, ids, N, &opts, (qkv_ablate_mode)mode, target, vs, grid, &base);
    double t_grid = qkv__now() - t1;
    if (!st && detail) {
        unsigned char *ab = calloc((size_t)L * H, 1);
        if (!ab) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
        } else {
            ab[d_layer * H + d_head] = (unsigned char)mode;
            qkv_intervention iv = {.ablate = ab};
            cap.want_probs = 1;
            st = qkv_model_forward_iv(api->model, ids, N, &opts, &iv, NULL, logits + V, &cap);
            free(ab);
        }
    }
    double t_all = qkv__now() - t0;
    release_slot(api);
    have_slot = 0;
    if (reply_stopped(r, st)) goto done;
    if (st) {
        reply_error(r, st == QKV_ENOMEM ? 503 : 500, "ablation failed: %.300s", qkv_last_error());
        goto done;
    }
    if (reply_gone(r)) goto done;
    qkv__jw *w = &r->w;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "model", 1);
    qkv__jw_cstr(w, qkv_model_name(api->model));
    write_tokens(api, w, ids, N);
    qkv__jw_key(w, "n_layer", 0);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, H);
    qkv__jw_key(w, "n_kv_head", 0);
    qkv__jw_int(w, api->cfg.n_kv_head);
    qkv__jw_key(w, "n_tokens", 0);
    qkv__jw_int(w, N);
    qkv__jw_key(w, "mode", 0);
    qkv__jw_cstr(w, mode_names[mode]);
    qkv__jw_key(w, "target", 0);
    write_token_obj(api, w, target);
    qkv__jw_key(w, "vs", 0);
    write_token_obj(api, w, vs);
    qkv__jw_key(w, "metric", 0);
    qkv__jw_cstr(w, vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)");
    qkv__jw_key(w, "base", 0);
    qkv__jw_float(w, base);
    qkv__jw_key(w, "grid", 0);
    qkv__jw_matrix(w, grid, L, H, H);
    qkv__jw_key(w, "top", 0);
    write_top(api, w, logits, top_k);
    if (detail) {
        qkv__jw_key(w, "detail", 0);
        qkv__jw_lit(w, "{");
        qkv__jw_key(w, "layer", 1);
        qkv__jw_int(w, d_layer);
        qkv__jw_key(w, "head", 0);
        qkv__jw_int(w, d_head);
        qkv__jw_key(w, "delta", 0);
        qkv__jw_float(w, (float)(qkv_logit_metric(logits + V, V, target, vs) - base));
        qkv__jw_key(w, "attention", 0);
        qkv__jw_matrix(w, cap.probs + ((size_t)d_layer * H + d_head) * (size_t)N * N, N, N, N);
        qkv__jw_key(w, "top", 0);
        write_top(api, w, logits + V, top_k);
        qkv__jw_lit(w, "}");
    }
    qkv__jw_key(w, "grid_ms", 0);
    qkv__jw_float(w, (float)(t_grid * 1e3));
    qkv__jw_key(w, "ms", 0);
    qkv__jw_float(w, (float)(t_all * 1e3));
    qkv__jw_lit(w, "}");
    r->status = w->oom ? 500 : 200;
done:
    if (have_slot) release_slot(api);
    qkv_capture_free(&cap);
    free(ids);
    free(logits);
    free(grid);
    json_decref(root);
}

/* ---- POST /api/patch ------------------------------------------------------------------- */

/* rows x cols of (m - md) / (ms - md); null where ms == md */
static void write_restored(qkv__jw *w, const float *m, int rows, int cols, float ms, float md) {
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < rows; i++) {
        qkv__jw_lit(w, i ? ",[" : "[");
        for (int j = 0; j < cols; j++) {
            if (j) qkv__jw_raw(w, ",", 1);
            qkv__jw_float(w, ms != md ? (m[(size_t)i * cols + j] - md) / (ms - md) : NAN);
        }
        qkv__jw_raw(w, "]", 1);
    }
    qkv__jw_raw(w, "]", 1);
}

static void api_patch(qkv__api *api, reply *r, const char *body, size_t len) {
    static const char *const keys[] = {"source", "text", "target", "vs", "what", "top_k", NULL};
    json_t *root = parse_object(r, body, len);
    if (!root) return;
    int *sids = NULL, *dids = NULL, ns = 0, N = 0, have_slot = 0, target = -1, vs = -1, top_k = 5;
    int do_heads = 1, do_pos = 1;
    const int L = api->cfg.n_layer, H = api->cfg.n_head, V = api->cfg.vocab_size;
    float *logits = NULL, *hm = NULL, *pm = NULL;
    const char *src, *dst;
    size_t src_len, dst_len;
    if (!check_keys(r, root, keys) || !get_text(r, root, "source", &src, &src_len) ||
        !get_text(r, root, "text", &dst, &dst_len) || !get_token(api, r, root, "target", &target) ||
        !get_token(api, r, root, "vs", &vs) || !get_int(r, root, "top_k", 1, QKV__SRV_MAX_TOP_K, &top_k))
        goto done;
    json_t *jw = json_object_get(root, "what");
    if (jw) {
        const char *s = json_is_string(jw) ? json_string_value(jw) : "";
        if (!strcmp(s, "heads")) do_pos = 0;
        else if (!strcmp(s, "positions")) do_heads = 0;
        else if (strcmp(s, "both")) {
            reply_error(r, 400, "'what' must be \"heads\", \"positions\" or \"both\"");
            goto done;
        }
    }
    if (target >= 0 && vs == target) {
        reply_error(r, 400, "'vs' is the target itself");
        goto done;
    }
    if (!encode_iv_text(api, r, "source", src, src_len, &sids, &ns) ||
        !encode_iv_text(api, r, "text", dst, dst_len, &dids, &N))
        goto done;
    if (ns != N) {
        reply_error(r, 400, "'source' is %d tokens and 'text' %d: patching needs two texts of the "
                    "same number of tokens", ns, N);
        goto done;
    }
    logits = malloc(sizeof(float) * (size_t)V * 2);
    hm = malloc(sizeof(float) * (size_t)L * H);
    pm = malloc(sizeof(float) * (size_t)L * N);
    if (!logits || !hm || !pm) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    if (!acquire_slot(api, r)) goto done;
    have_slot = 1;
    double t0 = qkv__now();
    float ms = 0, md = 0, p;
    qkv_forward_opts opts = reply_opts(r, 0.0f, 0);
    qkv_status st = qkv_model_forward(api->model, sids, N, &opts, NULL, logits, NULL);
    if (!st) st = qkv_model_forward(api->model, dids, N, &opts, NULL, logits + V, NULL);
    if (!st) {
        int vs_given = json_object_get(root, "vs") != NULL;
        if (target < 0) qkv_top_k(logits, V, 1, &target, &p);
        if (!vs_given) {
            qkv_top_k(logits + V, V, 1, &vs, &p);
            if (vs == target) vs = -1;
        } else if (vs == target) {
            vs = -1;
        }
        st = qkv_model_patch_maps(api->model, sids, dids, N, &opts, target, vs, do_heads ? hm : NULL,
                                  do_pos ? pm : NULL, &ms, &md);
    }
    double t_all = qkv__now() - t0;
    release_slot(api);
    have_slot = 0;
    if (reply_stopped(r, st)) goto done;
    if (st) {
        reply_error(r, st == QKV_ENOMEM ? 503 : 500, "patching failed: %.300s", qkv_last_error());
        goto done;
    }
    if (reply_gone(r)) goto done;
    qkv__jw *w = &r->w;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "model", 1);
    qkv__jw_cstr(w, qkv_model_name(api->model));
    qkv__jw_key(w, "n_layer", 0);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_head", 0);
    qkv__jw_int(w, H);
    qkv__jw_key(w, "n_kv_head", 0);
    qkv__jw_int(w, api->cfg.n_kv_head);
    qkv__jw_key(w, "n_tokens", 0);
    qkv__jw_int(w, N);
    for (int s = 0; s < 2; s++) {
        qkv__jw_key(w, s ? "dest" : "source", 0);
        qkv__jw_lit(w, "{");
        qkv__jw_key(w, "top", 1);
        write_top(api, w, logits + (size_t)s * V, top_k);
        write_tokens(api, w, s ? dids : sids, N);
        qkv__jw_lit(w, "}");
    }
    qkv__jw_key(w, "target", 0);
    write_token_obj(api, w, target);
    qkv__jw_key(w, "vs", 0);
    write_token_obj(api, w, vs);
    qkv__jw_key(w, "metric", 0);
    qkv__jw_cstr(w, vs >= 0 ? "log P(target) - log P(vs)" : "log P(target)");
    qkv__jw_key(w, "source_metric", 0);
    qkv__jw_float(w, ms);
    qkv__jw_key(w, "dest_metric", 0);
    qkv__jw_float(w, md);
    if (do_heads) {
        qkv__jw_key(w, "head_metric", 0);
        qkv__jw_matrix(w, hm, L, H, H);
        qkv__jw_key(w, "head_restored", 0);
        write_restored(w, hm, L, H, ms, md);
    }
    if (do_pos) {
        qkv__jw_key(w, "pos_metric", 0);
        qkv__jw_matrix(w, pm, L, N, N);
        qkv__jw_key(w, "pos_restored", 0);
        write_restored(w, pm, L, N, ms, md);
    }
    qkv__jw_key(w, "ms", 0);
    qkv__jw_float(w, (float)(t_all * 1e3));
    qkv__jw_lit(w, "}");
    r->status = w->oom ? 500 : 200;
done:
    if (have_slot) release_slot(api);
    free(sids);
    free(dids);
    free(logits);
    free(hm);
    free(pm);
    json_decref(root);
}

/* ---- POST /api/lens -------------------------------------------------------------------- */

static void api_lens(qkv__api *api, reply *r, const char *body, size_t len) {
    static const char *const keys[] = {"text", "top_k", "target", "positions", NULL};
    json_t *root = parse_object(r, body, len);
    if (!root) return;
    int *ids = NULL, N = 0, have_slot = 0, target = -1, top_k = 5, last_only = 0;
    const int L = api->cfg.n_layer, S = L + 1, C = api->cfg.n_embd;
    int *top_ids = NULL;
    float *top_p = NULL, *tp = NULL, *rows = NULL;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    const char *text;
    size_t text_len;
    if (!check_keys(r, root, keys) || !get_text(r, root, "text", &text, &text_len) ||
        !get_int(r, root, "top_k", 1, 20, &top_k) || !get_token(api, r, root, "target", &target))
        goto done;
    json_t *jp = json_object_get(root, "positions");
    if (jp) {
        const char *s = json_is_string(jp) ? json_string_value(jp) : "";
        if (!strcmp(s, "last")) last_only = 1;
        else if (strcmp(s, "all")) {
            reply_error(r, 400, "'positions' must be \"all\" or \"last\"");
            goto done;
        }
    }
    if (!encode_text(api, r, "text", text, text_len, &ids, &N)) goto done;
    int P = last_only ? 1 : N;
    if ((size_t)S * P > QKV__SRV_MAX_LENS_ROWS) {
        reply_error(r, 413, "%d states x %d positions is more than %d rows: ask for "
                    "\"positions\": \"last\" or a shorter text", S, P, QKV__SRV_MAX_LENS_ROWS);
        goto done;
    }
    size_t nr = (size_t)S * P;
    top_ids = malloc(sizeof(int) * nr * top_k);
    top_p = malloc(sizeof(float) * nr * top_k);
    tp = malloc(sizeof(float) * nr);
    rows = malloc(sizeof(float) * nr * C);
    if (!top_ids || !top_p || !tp || !rows) {
        reply_error(r, 500, "out of memory");
        goto done;
    }
    cap.want_hidden = 1;
    if (!acquire_slot(api, r)) goto done;
    have_slot = 1;
    double t0 = qkv__now();
    qkv_forward_opts opts = reply_opts(r, 0.0f, 0);
    qkv_status st = qkv_model_forward(api->model, ids, N, &opts, NULL, NULL, &cap);
    if (!st) {
        for (int s = 0; s < S; s++)
            memcpy(rows + (size_t)s * P * C, cap.hidden + ((size_t)s * N + (size_t)(N - P)) * C,
                   sizeof(float) * (size_t)P * C);
        st = qkv_model_logit_lens(api->model, rows, S, P, top_k, top_ids, top_p, target, tp);
    }
    double t_all = qkv__now() - t0;
    release_slot(api);
    have_slot = 0;
    if (reply_stopped(r, st)) goto done;
    if (st) {
        reply_error(r, st == QKV_ENOMEM ? 503 : 500, "logit lens failed: %.300s", qkv_last_error());
        goto done;
    }
    if (reply_gone(r)) goto done;
    qkv__jw *w = &r->w;
    qkv__jw_lit(w, "{");
    qkv__jw_key(w, "model", 1);
    qkv__jw_cstr(w, qkv_model_name(api->model));
    write_tokens(api, w, ids, N);
    qkv__jw_key(w, "n_layer", 0);
    qkv__jw_int(w, L);
    qkv__jw_key(w, "n_tokens", 0);
    qkv__jw_int(w, N);
    qkv__jw_key(w, "states", 0);
    qkv__jw_raw(w, "[", 1);
    for (int s = 0; s < S; s++) {
        char name[32];
        if (s == 0) snprintf(name, sizeof name, "embeddings");
        else snprintf(name, sizeof name, "after layer %d", s - 1);
        if (s) qkv__jw_raw(w, ",", 1);
        qkv__jw_cstr(w, name);
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "positions", 0);
    qkv__jw_raw(w, "[", 1);
    for (int i = 0; i < P; i++) {
        if (i) qkv__jw_raw(w, ",", 1);
        qkv__jw_int(w, N - P + i);
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "top", 0);
    qkv__jw_raw(w, "[", 1);
    for (int s = 0; s < S; s++) {
        qkv__jw_lit(w, s ? ",[" : "[");
        for (int i = 0; i < P; i++) {
            qkv__jw_lit(w, i ? ",[" : "[");
            size_t rr = (size_t)s * P + i;
            for (int k = 0; k < top_k; k++) {
                int id = top_ids[rr * top_k + k];
                qkv__jw_lit(w, k ? ",{\"id\":" : "{\"id\":");
                qkv__jw_int(w, id);
                qkv__jw_lit(w, ",\"token\":");
                write_token(api, w, id, 0);
                qkv__jw_lit(w, ",\"bytes\":");
                write_token(api, w, id, 1);
                qkv__jw_lit(w, ",\"prob\":");
                qkv__jw_float(w, top_p[rr * top_k + k]);
                qkv__jw_lit(w, "}");
            }
            qkv__jw_raw(w, "]", 1);
        }
        qkv__jw_raw(w, "]", 1);
    }
    qkv__jw_raw(w, "]", 1);
    qkv__jw_key(w, "target", 0);
    write_token_obj(api, w, target);
    if (target >= 0) {
        qkv__jw_key(w, "target_probs", 0);
        qkv__jw_matrix(w, tp, S, P, P);
    }
    qkv__jw_key(w, "ms", 0);
    qkv__jw_float(w, (float)(t_all * 1e3));
    qkv__jw_lit(w, "}");
    r->status = w->oom ? 500 : 200;
done:
    if (have_slot) release_slot(api);
    qkv_capture_free(&cap);
    free(ids);
    free(top_ids);
    free(top_p);
    free(tp);
    free(rows);
    json_decref(root);
}

/* ---- POST /api/generate: a stream --------------------------------------------------------- */

struct qkv__gen_stream {
    qkv__api *api;
    int *ids, n_prompt, max_new, *out, n_out, *sel, n_sel, want_attention;
    qkv_sampler sampler;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;  /* everything below */
    qkv__jw buf;           /* produced, not yet read: buf.buf[head .. buf.len) */
    size_t head;
    int finished, cancel, sleeping;
    void (*sleep)(void *), (*wake)(void *);
    void *arg;
};

/* Appends one line (w's text + '\n') and wakes the reader. */
static void stream_emit(qkv__gen_stream *s, qkv__jw *w) {
    pthread_mutex_lock(&s->lock);
    if (!w->oom && w->buf) {
        qkv__jw_raw(&s->buf, w->buf, w->len);
        qkv__jw_raw(&s->buf, "\n", 1);
    }
    if (s->sleeping && s->wake) {
        s->sleeping = 0;
        s->wake(s->arg);
    }
    pthread_mutex_unlock(&s->lock);
}

static int stream_cancelled(qkv__gen_stream *s) {
    pthread_mutex_lock(&s->lock);
    int c = s->cancel;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->api->streams_lock);
    c |= s->api->stopping;
    pthread_mutex_unlock(&s->api->streams_lock);
    return c;
}

static int stream_on_token(void *user, int id) {
    qkv__gen_stream *s = user;
    qkv__jw w;
    qkv__jw_init(&w);
    qkv__jw_lit(&w, "{\"step\":");
    qkv__jw_int(&w, s->n_out);
    qkv__jw_lit(&w, ",\"id\":");
    qkv__jw_int(&w, id);
    qkv__jw_lit(&w, ",\"token\":");
    write_token(s->api, &w, id, 0);
    qkv__jw_lit(&w, ",\"bytes\":");
    write_token(s->api, &w, id, 1);
    qkv__jw_lit(&w, "}");
    stream_emit(s, &w);
    qkv__jw_free(&w);
    s->n_out++;
    return stream_cancelled(s);
}

static void *stream_main(void *arg) {
    qkv__gen_stream *s = arg;
    qkv__api *api = s->api;
    const int L = api->cfg.n_layer, H = api->cfg.n_head;
    qkv__srv_lower_priority(); /* as the compute workers: the HTTP threads come first */
    double t0 = qkv__now();
    qkv__jw w;
    qkv__jw_init(&w);
    /* a compute slot, checking for a cancel while waiting */
    int have = 0;
    for (double waited = 0; !have && waited < api->queue_wait_s && !stream_cancelled(s); waited += 0.05) {
        if (sem_trywait(&api->slots) == 0) have = 1;
        else nanosleep(&(struct timespec){0, 50000000L}, NULL);
    }
    const char *stopped = "cancelled", *error = NULL;
    int n_got = 0;
    qkv_status st = QKV_OK;
    if (have) {
        s->n_out = 0;
        st = qkv_model_generate(api->model, s->ids, s->n_prompt, s->max_new, &s->sampler, stream_on_token, s,
                                s->out, &n_got);
        if (st) error = qkv_last_error();
        else if (stream_cancelled(s)) stopped = "cancelled";
        else if (n_got >= s->max_new) stopped = "max_tokens";
        else if (s->n_prompt + n_got > api->cfg.n_ctx) stopped = "context";
        else stopped = "end of text";
    } else if (!stream_cancelled(s)) {
        error = "the server is busy; try again";
    }
    double t_gen = qkv__now() - t0;
    float *rows = NULL;
    int N = s->n_prompt + n_got - 1;
    if (!error && s->want_attention && n_got > 0 && !stream_cancelled(s)) {
        int *all = malloc(sizeof(int) * (size_t)(s->n_prompt + n_got));
        rows = malloc(sizeof(float) * (size_t)n_got * s->n_sel * N);
        if (!all || !rows) {
            error = "out of memory";
        } else {
            memcpy(all, s->ids, sizeof(int) * (size_t)s->n_prompt);
            memcpy(all + s->n_prompt, s->out, sizeof(int) * (size_t)n_got);
            if (qkv_model_attn_timeline(api->model, all, s->n_prompt, n_got, s->sel, s->n_sel, rows) != QKV_OK)
                error = qkv_last_error();
        }
        free(all);
    }
    if (have) sem_post(&api->slots);
    /* the last line: why it stopped, and every step's attention */
    qkv__jw_lit(&w, "{\"done\":true,\"n_generated\":");
    qkv__jw_int(&w, n_got);
    qkv__jw_lit(&w, ",\"stopped\":");
    qkv__jw_cstr(&w, error ? "error" : stopped);
    if (error) {
        qkv__jw_lit(&w, ",\"error\":");
        qkv__jw_cstr(&w, error);
    }
    qkv__jw_lit(&w, ",\"generate_ms\":");
    qkv__jw_float(&w, (float)(t_gen * 1e3));
    if (rows && !error) {
        qkv__jw_lit(&w, ",\"heads\":[");
        for (int k = 0; k < s->n_sel; k++) {
            qkv__jw_lit(&w, k ? ",[" : "[");
            qkv__jw_int(&w, s->sel[k] / H);
            qkv__jw_lit(&w, ",");
            qkv__jw_int(&w, s->sel[k] % H);
            qkv__jw_lit(&w, "]");
        }
        /* attention[t][k]: step t's query over keys 0 .. n_prompt - 1 + t */
        qkv__jw_lit(&w, "],\"attention\":[");
        for (int t = 0; t < n_got; t++) {
            qkv__jw_lit(&w, t ? ",[" : "[");
            for (int k = 0; k < s->n_sel; k++) {
                if (k) qkv__jw_lit(&w, ",");
                qkv__jw_floats(&w, rows + ((size_t)t * s->n_sel + k) * N, (size_t)(s->n_prompt + t));
            }
            qkv__jw_lit(&w, "]");
        }
        qkv__jw_lit(&w, "]");
    }
    (void)L;
    qkv__jw_lit(&w, ",\"ms\":");
    qkv__jw_float(&w, (float)((qkv__now() - t0) * 1e3));
    qkv__jw_lit(&w, "}");
    if (w.oom) {
        qkv__jw_free(&w);
        qkv__jw_init(&w);
        qkv__jw_lit(&w, "{\"done\":true,\"stopped\":\"error\",\"error\":\"out of memory\"}");
    }
    stream_emit(s, &w);
    qkv__jw_free(&w);
    free(rows);
    pthread_mutex_lock(&s->lock);
    s->finished = 1;
    if (s->sleeping && s->wake) {
        s->sleeping = 0;
        s->wake(s->arg);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

void qkv__gen_stream_set_waker(qkv__gen_stream *s, void (*sleep_fn)(void *), void (*wake)(void *),
                               void *arg) {
    pthread_mutex_lock(&s->lock);
    s->sleep = sleep_fn;
    s->wake = wake;
    s->arg = arg;
    pthread_mutex_unlock(&s->lock);
}

long qkv__gen_stream_read(qkv__gen_stream *s, char *out, size_t max) {
    pthread_mutex_lock(&s->lock);
    long n;
    size_t avail = s->buf.len - s->head;
    if (avail > 0) {
        n = (long)(avail < max ? avail : max);
        memcpy(out, s->buf.buf + s->head, (size_t)n);
        s->head += (size_t)n;
        if (s->head == s->buf.len) s->head = s->buf.len = 0; /* reuse the buffer */
    } else if (s->finished) {
        n = -1;
    } else {
        n = 0;
        s->sleeping = 1;
        if (s->sleep) s->sleep(s->arg);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void qkv__gen_stream_free(qkv__gen_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->cancel = 1;
    s->wake = NULL; /* the connection is gone */
    pthread_mutex_unlock(&s->lock);
    if (s->started) pthread_join(s->thread, NULL);
    qkv__api *api = s->api;
    pthread_mutex_destroy(&s->lock);
    qkv__jw_free(&s->buf);
    free(s->ids);
    free(s->out);
    free(s->sel);
    free(s);
    pthread_mutex_lock(&api->streams_lock);
    if (--api->n_streams == 0) pthread_cond_broadcast(&api->streams_done);
    pthread_mutex_unlock(&api->streams_lock);
}

void qkv__api_stop_streams(qkv__api *api, double timeout_s) {
    if (!api) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout_s;
    pthread_mutex_lock(&api->streams_lock);
    api->stopping = 1;
    while (api->n_streams > 0)
        if (pthread_cond_timedwait(&api->streams_done, &api->streams_lock, &ts) != 0) break;
    pthread_mutex_unlock(&api->streams_lock);
}

qkv__gen_stream *qkv__api_generate_start(qkv__api *api, const char *body, size_t len, int *status,
                                         char **body_out, size_t *body_len_out) {
    static const char *const keys[] = {"prompt", "max_tokens", "temperature", "top_k", "top_p", "seed",
                                       "heads", "attention", NULL};
    reply r;
    memset(&r, 0, sizeof r);
    qkv__jw_init(&r.w);
    qkv__gen_stream *s = NULL;
    int *ids = NULL, n = 0, max_new = 32, top_k = 0, want_attention = 1, seed = 0;
    double temperature = 0.0, top_p = 1.0;
    const int L = api->cfg.n_layer, H = api->cfg.n_head;
    const char *text;
    size_t text_len;
    json_t *root = parse_object(&r, body, len);
    if (!root) goto refuse;
    if (!check_keys(&r, root, keys) || !get_text(&r, root, "prompt", &text, &text_len) ||
        !get_int(&r, root, "max_tokens", 1, QKV__SRV_MAX_GEN_TOKENS, &max_new) ||
        !get_number(&r, root, "temperature", 0.0, 100.0, &temperature) ||
        !get_int(&r, root, "top_k", 0, 1 << 20, &top_k) || !get_number(&r, root, "top_p", 1e-6, 1.0, &top_p) ||
        !get_int(&r, root, "seed", 0, 2147483647, &seed) || !get_bool(&r, root, "attention", &want_attention))
        goto refuse;
    if (!encode_text(api, &r, "prompt", text, text_len, &ids, &n)) goto refuse;
    s = calloc(1, sizeof *s);
    if (!s || !(s->sel = malloc(sizeof(int) * (size_t)L * H)) ||
        !(s->out = malloc(sizeof(int) * (size_t)max_new))) {
        reply_error(&r, 500, "out of memory");
        goto refuse;
    }
    json_t *jh = json_object_get(root, "heads");
    if (!jh || (json_is_string(jh) && !strcmp(json_string_value(jh), "all"))) {
        for (int i = 0; i < L * H; i++) s->sel[s->n_sel++] = i;
    } else {
        size_t i;
        json_t *v;
        if (!json_is_array(jh) || json_array_size(jh) == 0 || json_array_size(jh) > (size_t)L * H) {
            reply_error(&r, 400, "'heads' must be \"all\" or a list of [layer, head] pairs");
            goto refuse;
        }
        json_array_foreach(jh, i, v) {
            json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
            if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(a) || !json_is_integer(b) ||
                json_integer_value(a) < 0 || json_integer_value(a) >= L || json_integer_value(b) < 0 ||
                json_integer_value(b) >= H) {
                reply_error(&r, 400, "'heads' entries must be [layer, head] with layer in [0, %d] and head "
                            "in [0, %d]", L - 1, H - 1);
                goto refuse;
            }
            s->sel[s->n_sel++] = (int)(json_integer_value(a) * H + json_integer_value(b));
        }
    }
    /* the final line holds [steps][heads][keys] numbers: keep it bounded */
    size_t values = (size_t)max_new * (size_t)s->n_sel * (size_t)(n + max_new);
    if (want_attention && values > QKV__SRV_MAX_VALUES) {
        reply_error(&r, 413, "%d steps x %d heads x %d keys is more than %u numbers: ask for fewer "
                    "\"heads\" or \"max_tokens\"", max_new, s->n_sel, n + max_new, QKV__SRV_MAX_VALUES);
        goto refuse;
    }
    s->api = api;
    s->ids = ids;
    ids = NULL;
    s->n_prompt = n;
    s->max_new = max_new;
    s->want_attention = want_attention;
    s->sampler = (qkv_sampler){.temperature = (float)temperature, .top_k = top_k, .top_p = (float)top_p,
                               .seed = (uint64_t)seed};
    pthread_mutex_init(&s->lock, NULL);
    qkv__jw_init(&s->buf);
    pthread_mutex_lock(&api->streams_lock);
    int stopping = api->stopping;
    int full = !stopping && api->max_streams > 0 && api->n_streams >= api->max_streams;
    if (!stopping && !full) api->n_streams++;
    pthread_mutex_unlock(&api->streams_lock);
    if (stopping || full) {
        pthread_mutex_destroy(&s->lock);
        free(s->ids);
        free(s->sel);
        free(s->out);
        free(s);
        s = NULL;
        if (stopping) reply_error(&r, 503, "the server is stopping");
        else reply_error(&r, 503, "%d generations are running or waiting; try again", api->max_streams);
        goto refuse;
    }
    /* the first line: the prompt as tokens */
    qkv__jw w;
    qkv__jw_init(&w);
    qkv__jw_lit(&w, "{\"model\":");
    qkv__jw_cstr(&w, qkv_model_name(api->model));
    write_tokens(api, &w, s->ids, n);
    qkv__jw_lit(&w, ",\"n_layer\":");
    qkv__jw_int(&w, L);
    qkv__jw_lit(&w, ",\"n_head\":");
    qkv__jw_int(&w, H);
    qkv__jw_lit(&w, ",\"max_tokens\":");
    qkv__jw_int(&w, max_new);
    qkv__jw_lit(&w, "}");
    stream_emit(s, &w);
    qkv__jw_free(&w);
    if (pthread_create(&s->thread, NULL, stream_main, s) != 0) {
        qkv__gen_stream_free(s);
        s = NULL;
        reply_error(&r, 503, "cannot start a generation thread");
        goto refuse;
    }
    s->started = 1;
    json_decref(root);
    qkv__jw_free(&r.w);
    return s;
refuse:
    if (s && !s->api) {
        free(s->sel);
        free(s->out);
        free(s);
    }
    free(ids);
    json_decref(root);
    if (!r.status) reply_error(&r, 500, "internal error");
    if (r.w.oom || !r.w.buf) {
        qkv__jw_free(&r.w);
        qkv__jw_init(&r.w);
        qkv__jw_lit(&r.w, "{\"error\":\"out of memory\"}");
        r.status = 500;
    }
    *status = r.status;
    *body_out = r.w.buf;
    *body_len_out = r.w.len;
    return NULL;
}

/* ---- routing -------------------------------------------------------------------------- */

void qkv__api_handle(qkv__api *api, const char *method, const char *path, const char *body,
                     size_t body_len, int *status, char **body_out, size_t *body_len_out,
                     const char **allow) {
    qkv__api_call c = {.method = method, .path = path, .body = body, .body_len = body_len};
    qkv__api_run(api, &c);
    *status = c.status;
    *body_out = c.out;
    *body_len_out = c.out_len;
    *allow = c.allow;
}

void qkv__api_run(qkv__api *api, qkv__api_call *call) {
    const char *method = call->method, *path = call->path, *body = call->body;
    size_t body_len = call->body_len;
    reply r;
    memset(&r, 0, sizeof r);
    qkv__jw_init(&r.w);
    r.cancel = call->cancel;
    r.cancel_arg = call->cancel_arg;
    r.want_binary = call->want_binary;
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_post = !strcmp(method, "POST");
    if (!strcmp(path, "/api/model")) {
        if (is_get) api_model(api, &r), r.status = 200;
        else r.allow = "GET, HEAD", reply_error(&r, 405, "%s /api/model: use GET", method);
    } else if (!strcmp(path, "/api/heads")) {
        if (is_get) api_heads(api, &r);
        else r.allow = "GET, HEAD", reply_error(&r, 405, "%s /api/heads: use GET", method);
    } else if (!strcmp(path, "/api/attend")) {
        if (is_post) api_attend(api, &r, body, body_len);
        else r.allow = "POST", reply_error(&r, 405, "%s /api/attend: use POST", method);
    } else if (!strcmp(path, "/api/ablate")) {
        if (is_post) api_ablate(api, &r, body, body_len);
        else r.allow = "POST", reply_error(&r, 405, "%s /api/ablate: use POST", method);
    } else if (!strcmp(path, "/api/patch")) {
        if (is_post) api_patch(api, &r, body, body_len);
        else r.allow = "POST", reply_error(&r, 405, "%s /api/patch: use POST", method);
    } else if (!strcmp(path, "/api/lens")) {
        if (is_post) api_lens(api, &r, body, body_len);
        else r.allow = "POST", reply_error(&r, 405, "%s /api/lens: use POST", method);
    } else if (!strcmp(path, "/api/generate")) {
        /* POST is streamed by http.c (qkv__api_generate_start); here only the wrong methods */
        r.allow = "POST";
        if (is_post) reply_error(&r, 400, "POST /api/generate is a stream: use the HTTP server");
        else reply_error(&r, 405, "%s /api/generate: use POST", method);
    } else if (!strcmp(path, "/api/compare")) {
        if (is_post) api_compare(api, &r, body, body_len);
        else r.allow = "POST", reply_error(&r, 405, "%s /api/compare: use POST", method);
    } else {
        reply_error(&r, 404, "no such route: %.200s", path);
    }
    if (r.w.oom || !r.w.buf) {
        qkv__jw_free(&r.w);
        qkv__jw_init(&r.w);
        qkv__jw_lit(&r.w, "{\"error\":\"out of memory\"}");
        r.status = 500;
    }
    call->status = r.gone ? QKV__SRV_CANCELLED : r.status ? r.status : 500;
    call->out = r.w.buf;
    call->out_len = r.w.len;
    call->allow = r.allow;
    call->binary = r.binary && call->status == 200;
}
