/* api.c -- the playground's JSON API (docs/HTTP.md):
 *
 *   GET  /api/model    name, sizes, vocabulary size, context length, limits
 *   POST /api/attend   {"text", "temperature", "causal", ...} -> tokens, attention [L][H][N][N],
 *                      next-token predictions, and on request raw scores and one head's q/k/v
 *   POST /api/compare  {"a", "b", "word"} -> the word's hidden-state cosine similarity per layer
 *   GET  /api/heads    what each head does: probe scores and tags (qkv_model_head_scores),
 *                      computed once when the server starts
 *
 * Requests are parsed with jansson and checked field by field (type, range, unknown keys);
 * responses are written by hand (jsonw.c). Every error is {"error": "..."} with a 4xx. */
#include "server/server.h"
#include "server/jsonw.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
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
    *out = api;
    return QKV_OK;
}

void qkv__api_free(qkv__api *api) {
    if (!api) return;
    sem_destroy(&api->slots);
    qkv_head_scores_free(&api->heads);
    free(api);
}

/* ---- responses ------------------------------------------------------------------------ */

typedef struct reply {
    int status;
    qkv__jw w;
    const char *allow;
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double w = api->queue_wait_s;
    ts.tv_sec += (time_t)w;
    ts.tv_nsec += (long)((w - floor(w)) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (sem_timedwait(&api->slots, &ts) != 0) {
        if (errno == EINTR) continue;
        reply_error(r, 503, "the server is busy; try again");
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
static void write_maps(qkv__jw *w, const float *maps, int L, int H, int N, const int *want_layer) {
    size_t nn = (size_t)N * (size_t)N;
    qkv__jw_raw(w, "[", 1);
    for (int l = 0; l < L; l++) {
        if (l) qkv__jw_raw(w, ",", 1);
        if (!want_layer[l]) {
            qkv__jw_lit(w, "null");
            continue;
        }
        qkv__jw_raw(w, "[", 1);
        for (int h = 0; h < H; h++) {
            if (h) qkv__jw_raw(w, ",", 1);
            qkv__jw_matrix(w, maps + ((size_t)l * (size_t)H + (size_t)h) * nn, N, N, N);
        }
        qkv__jw_raw(w, "]", 1);
    }
    qkv__jw_raw(w, "]", 1);
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
    qkv__jw_int(w, c->n_head > 0 ? c->n_embd / c->n_head : 0);
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
    static const char *keys[QKV_HEAD_TAG_COUNT] = {"prev", "induction", "sink", "self", "punctuation", "uniformity"};
    static const float thr[QKV_HEAD_TAG_COUNT] = {QKV_HEAD_PREV_MIN, QKV_HEAD_INDUCTION_MIN, QKV_HEAD_SINK_MIN,
                                                  QKV_HEAD_SELF_MIN, QKV_HEAD_PUNCT_MIN, QKV_HEAD_UNIFORM_MIN};
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
        qkv__jw_key(w, keys[k], k == 0);
        qkv__jw_float(w, thr[k]);
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
            qkv__jw_key(w, keys[k], k == 0);
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
    qkv_forward_opts opts = {(float)temperature, !causal};

    if (!acquire_slot(api, r)) goto done;
    have_slot = 1;
    double t0 = qkv__now();
    qkv_status st = qkv_model_forward(api->model, ids, N, &opts, NULL, last_logits, &cap);
    double t_forward = qkv__now() - t0;
    release_slot(api);
    have_slot = 0;
    if (st != QKV_OK) {
        reply_error(r, st == QKV_ENOMEM ? 503 : 500, "forward failed: %.300s", qkv_last_error());
        goto done;
    }
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
    qkv__jw_key(w, "n_tokens", 0);
    qkv__jw_int(w, N);
    qkv__jw_key(w, "head_dim", 0);
    qkv__jw_int(w, H ? api->cfg.n_embd / H : 0);
    qkv__jw_key(w, "temperature", 0);
    qkv__jw_float(w, (float)temperature);
    qkv__jw_key(w, "causal", 0);
    qkv__jw_lit(w, causal ? "true" : "false");
    if (cap.probs) {
        qkv__jw_key(w, "attention", 0);
        write_maps(w, cap.probs, L, H, N, want_layer);
    }
    if (cap.scores) {
        qkv__jw_key(w, "scores", 0);
        write_maps(w, cap.scores, L, H, N, want_sc_layer);
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
    if (w->oom) reply_error(r, 500, "out of memory writing the response");
    r->status = 200;
    if (w->oom) r->status = 500;

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
    for (int s = 0; s < 2; s++) {
        cap[s].want_hidden = 1;
        cap[s].want_probs = 1;
        if (!acquire_slot(api, r)) goto done;
        qkv_status st = qkv_model_forward(api->model, ids[s], n[s], NULL, NULL, logits, &cap[s]);
        release_slot(api);
        if (st != QKV_OK) {
            reply_error(r, 500, "forward failed: %.300s", qkv_last_error());
            goto done;
        }
    }
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

/* ---- routing -------------------------------------------------------------------------- */

void qkv__api_handle(qkv__api *api, const char *method, const char *path, const char *body,
                     size_t body_len, int *status, char **body_out, size_t *body_len_out,
                     const char **allow) {
    reply r;
    memset(&r, 0, sizeof r);
    qkv__jw_init(&r.w);
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
    *status = r.status ? r.status : 500;
    *body_out = r.w.buf;
    *body_len_out = r.w.len;
    *allow = r.allow;
}
