/*
 * bench_serve.c -- `qkv bench serve`: how fast the playground answers.
 *
 *   qkv bench serve [--model DIR] [--reps R] [--wrk-seconds S] [--threads N] [--no-gpt2] [--no-wrk] [--no-peers]
 *
 * For the built-in model (or --model DIR) and for GPT-2 small's shapes (12 layers x 12 heads,
 * C = 768, random weights made here, GPT-2's vocabulary from ../shared/data/gpt2 when
 * present), times the server side of POST /api/attend (qkv__api_handle: tokenize, forward
 * with every layer's maps captured, top-k, JSON writing) for a 20-token and a 200-token
 * sentence, as the page asks for it (attention + raw scores) and attention only, and splits
 * out the forward pass. Then serves the built-in model on a loopback port and measures
 * requests/s with wrk (skipped with a message when wrk is not installed).
 *
 * Peer (same weights, same run): bench/peers/serve_peers.py, a PyTorch forward that keeps
 * every layer's attention and raw scores, then json.dumps, as a Python attention server does
 * (OPENBLAS_CORETYPE=SkylakeX, its best OpenBLAS kernel here). It checks its attention
 * against ours first.
 *
 * Checks first: every response parses (jansson), has [L][H][N][N] attention whose rows sum
 * to 1, and the attention equals what qkv_model_forward gives directly.
 *
 * The which-heads-matter grid (issue 12): POST /api/ablate on a 20-token sentence, every
 * layer x head zero-ablated once (goals: < 100 ms server-side on the built-in model, < 2 s on
 * GPT-2 small's shapes), against the same grid computed with PyTorch hooks in the same run
 * (bench/peers/ablate_peers.py), which checks its grid against ours first.
 */
#include "cli/cli.h"
#include "model/model.h"
#include "server/server.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GPT-2 small's shapes with random weights and GPT-2's tokenizer; NULL (and why) if the
 * vocabulary is not available. */
static qkv_model *make_gpt2_small(const char **why) {
    const char *dirs[] = {"../shared/data/gpt2", "/work/shared/data/gpt2"};
    const char *env = getenv("QKV_SHARED_DATA");
    char envdir[1024];
    qkv_tokenizer *tok = NULL;
    if (env) {
        snprintf(envdir, sizeof envdir, "%s/gpt2", env);
        dirs[0] = envdir;
    }
    for (int i = 0; i < 2 && !tok; i++) {
        char *v = qkv__path_join(dirs[i], "encoder.json"), *m = qkv__path_join(dirs[i], "vocab.bpe");
        if (v && m && access(v, R_OK) == 0 && qkv_tokenizer_load(v, m, &tok) != QKV_OK) tok = NULL;
        free(v);
        free(m);
    }
    if (!tok) {
        *why = "GPT-2's vocabulary (shared/data/gpt2) is not here";
        return NULL;
    }
    qkv_model_config cfg = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_ctx = 1024, .vocab_size = 50257, .layer_norm_eps = 1e-5f};
    qkv_model *m = NULL;
    if (qkv__model_create(&cfg, &m)) {
        qkv_tokenizer_free(tok);
        *why = "out of memory";
        return NULL;
    }
    size_t n;
    float *b = qkv__model_params_block(m, &n);
    for (size_t i = 0; i < n; i++) b[i] = 0.05f * frand();
    qkv__params *p = qkv__model_params(m);
    for (int i = 0; i < 12 * 768; i++) p->ln1_w[i] = p->ln2_w[i] = 1.0f;
    for (int i = 0; i < 768; i++) p->lnf_w[i] = 1.0f;
    qkv__model_set_tokenizer(m, tok);
    snprintf(m->name, sizeof m->name, "gpt2-small-shapes");
    return m;
}

/* A text of exactly n tokens (or the context length, if smaller): prose cut at a token
 * boundary and decoded back; *got is its token count. Malloc'ed. */
static char *text_of_tokens(qkv_model *m, int n, int *got) {
    static const char *prose =
        "The bank of the river was steep and muddy, so the children walked along the path "
        "toward the old mill. The keys to the cabinet were on the table next to the lamp, "
        "and nobody remembered who had left them there. ";
    const qkv_model_config *c = qkv_model_get_config(m);
    if (n > c->n_ctx) n = c->n_ctx;
    size_t plen = strlen(prose), len = 0;
    char *buf = malloc(plen * 40 + 1);
    if (!buf) return NULL;
    for (int i = 0; i < 40; i++, len += plen) memcpy(buf + len, prose, plen);
    buf[len] = '\0';
    int *ids = NULL;
    size_t n_ids = 0;
    char *out = NULL;
    size_t out_len = 0;
    qkv_tokenizer *tok = qkv_model_tokenizer(m);
    if (qkv_tokenizer_encode(tok, buf, len, 0, &ids, &n_ids) == QKV_OK && n_ids >= (size_t)n &&
        qkv_tokenizer_decode(tok, ids, (size_t)n, &out, &out_len) == QKV_OK) {
        free(ids);
        ids = NULL;
        /* re-encoding a cut text can merge differently at the cut: report what it gives */
        if (qkv_tokenizer_encode(tok, out, out_len, 0, &ids, &n_ids) == QKV_OK) *got = (int)n_ids;
    }
    free(ids);
    free(buf);
    return out;
}

static char *json_body(const char *text, int scores) {
    json_t *o = json_pack("{s:s, s:b, s:i}", "text", text, "scores", scores, "top_k", 10);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Checks a response against a direct forward pass; 0 if it is wrong. */
static int check_response(qkv_model *m, const char *text, const char *resp, size_t len) {
    json_error_t err;
    json_t *j = json_loadb(resp, len, 0, &err);
    if (!j) {
        fprintf(stderr, "bench serve: response is not JSON: %s\n", err.text);
        return 0;
    }
    const qkv_model_config *c = qkv_model_get_config(m);
    int ok = 1, *ids = NULL;
    size_t n = 0;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);
    cap.want_probs = 1;
    json_t *att = json_object_get(j, "attention");
    if (qkv_tokenizer_encode(qkv_model_tokenizer(m), text, strlen(text), 0, &ids, &n) != QKV_OK ||
        qkv_model_forward(m, ids, (int)n, NULL, NULL, NULL, &cap) != QKV_OK || !json_is_array(att) ||
        json_array_size(att) != (size_t)c->n_layer) {
        ok = 0;
    }
    double max_diff = 0, max_rowerr = 0;
    for (int l = 0; ok && l < c->n_layer; l++)
        for (int h = 0; ok && h < c->n_head; h++)
            for (size_t i = 0; ok && i < n; i++) {
                json_t *row = json_array_get(json_array_get(json_array_get(att, (size_t)l), (size_t)h), i);
                if (json_array_size(row) != n) {
                    ok = 0;
                    break;
                }
                double sum = 0;
                for (size_t k = 0; k < n; k++) {
                    double v = json_number_value(json_array_get(row, k));
                    double want = cap.probs[(((size_t)l * c->n_head + h) * n + i) * n + k];
                    sum += v;
                    if (fabs(v - want) > max_diff) max_diff = fabs(v - want);
                }
                if (fabs(sum - 1) > max_rowerr) max_rowerr = fabs(sum - 1);
            }
    if (ok && (max_diff > 1e-6 || max_rowerr > 1e-5)) {
        fprintf(stderr, "bench serve: API differs from the forward pass: %g (row sums off by %g)\n",
                max_diff, max_rowerr);
        ok = 0;
    }
    qkv_capture_free(&cap);
    free(ids);
    json_decref(j);
    return ok;
}

typedef struct row {
    char model[64];
    int n_tokens;
    const char *what;
    double ms_total, ms_forward, mbytes;
} row;

/* Times one request kind: median over reps of the handler's wall time and the forward's. */
static int time_request(qkv__api *api, qkv_model *m, const char *text, int scores, int reps, row *r) {
    char *body = json_body(text, scores);
    if (!body) return 0;
    double *t = calloc((size_t)reps, sizeof *t), *f = calloc((size_t)reps, sizeof *f);
    int ok = t && f;
    for (int k = 0; ok && k <= reps; k++) { /* k = 0: warm-up and check */
        int status;
        char *out = NULL;
        size_t out_len = 0;
        const char *allow;
        double t0 = qkv__now();
        qkv__api_handle(api, "POST", "/api/attend", body, strlen(body), &status, &out, &out_len, &allow);
        double dt = qkv__now() - t0;
        if (status != 200) {
            fprintf(stderr, "bench serve: status %d: %.300s\n", status, out ? out : "");
            ok = 0;
        } else if (k == 0) {
            ok = check_response(m, text, out, out_len);
            r->mbytes = (double)out_len / 1e6;
        } else {
            t[k - 1] = dt * 1e3;
            const char *fm = strstr(out, "\"forward_ms\":");
            f[k - 1] = fm ? atof(fm + 13) : 0;
        }
        free(out);
    }
    if (ok) {
        r->ms_total = median(t, reps);
        r->ms_forward = median(f, reps);
        r->what = scores ? "attention+scores (page)" : "attention";
    }
    free(t);
    free(f);
    free(body);
    return ok;
}

/* requests/s under wrk on loopback, or -1 when wrk is not installed / failed. */
static double run_wrk(qkv_model *m, const char *text, int seconds, double *p50_ms, double *p99_ms) {
    if (system("command -v wrk >/dev/null 2>&1") != 0) return -1;
    qkv__server_opts o;
    memset(&o, 0, sizeof o);
    o.port = 0;
    qkv__server *srv = NULL;
    if (qkv__server_start(m, &o, &srv) != QKV_OK) return -2;
    char lua[] = "/tmp/qkv-bench-serve-XXXXXX";
    int fd = mkstemp(lua);
    double rps = -2;
    if (fd >= 0) {
        char *body = json_body(text, 0);
        FILE *f = fdopen(fd, "w");
        if (f && body) {
            fprintf(f, "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
                       "wrk.body = [==[%s]==]\n"
                       "function response(status, headers, body)\n"
                       "  if status ~= 200 then wrk.thread:stop() end\nend\n", body);
            fclose(f);
            char cmd[512];
            snprintf(cmd, sizeof cmd,
                     "wrk -t2 -c8 -d%ds --latency -s %s http://127.0.0.1:%d/api/attend 2>&1", seconds,
                     lua, qkv__server_port(srv));
            FILE *p = popen(cmd, "r");
            char line[512];
            int non2xx = 0, errors = 0;
            while (p && fgets(line, sizeof line, p)) {
                double v;
                char unit[8];
                if (sscanf(line, " Requests/sec: %lf", &v) == 1) rps = v;
                if (sscanf(line, " 50%% %lf%7s", &v, unit) == 2) *p50_ms = v * (unit[0] == 'u' ? 1e-3 : unit[0] == 's' ? 1e3 : 1);
                if (sscanf(line, " 99%% %lf%7s", &v, unit) == 2) *p99_ms = v * (unit[0] == 'u' ? 1e-3 : unit[0] == 's' ? 1e3 : 1);
                if (strstr(line, "Non-2xx")) non2xx = 1;
                if (strstr(line, "Socket errors")) errors = 1;
            }
            if (p) pclose(p);
            if (non2xx || errors) {
                fprintf(stderr, "bench serve: wrk saw errors or non-2xx responses\n");
                rps = -2;
            }
        } else if (f) {
            fclose(f);
        }
        free(body);
        unlink(lua);
    }
    qkv__server_stop(srv);
    return rps;
}

/* bench/peers/serve_peers.py next to the binary's repository, else relative to the cwd. */
static void peer_script(char *path, size_t cap) {
    char exe[900];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, cap, "%s/../bench/peers/serve_peers.py", exe);
            if (access(path, R_OK) == 0) return;
        }
    }
    snprintf(path, cap, "bench/peers/serve_peers.py");
}

typedef struct peer_row {
    int n;
    double total_ms, forward_ms, mb, diff;
} peer_row;

/* Runs the PyTorch + json peer on dir's weights for the two texts; returns rows filled (0 on
 * failure). The 20-token case also gets qkv's attention to check against. */
static int run_peer(qkv_model *m, const char *dir, char *const texts[2], int reps, peer_row out[2]) {
    char tmp[] = "/tmp/qkv-bench-serve-peer-XXXXXX";
    if (!mkdtemp(tmp)) return 0;
    char cases[256], npy[256], script[1024], cmd[4096];
    snprintf(cases, sizeof cases, "%s/cases.json", tmp);
    snprintf(npy, sizeof npy, "%s/attn20.npy", tmp);
    FILE *f = fopen(cases, "w");
    int ok = f != NULL;
    if (f) fprintf(f, "[");
    for (int t = 0; ok && t < 2; t++) {
        int *ids = NULL;
        size_t n = 0;
        if (!texts[t] || qkv_tokenizer_encode(qkv_model_tokenizer(m), texts[t], strlen(texts[t]), 0, &ids, &n) != QKV_OK) {
            ok = 0;
            break;
        }
        fprintf(f, "%s{\"ids\":[", t ? "," : "");
        for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
        if (t == 0) {
            qkv_capture cap;
            memset(&cap, 0, sizeof cap);
            cap.want_probs = 1;
            const qkv_model_config *c = qkv_model_get_config(m);
            int64_t shape[4] = {c->n_layer, c->n_head, (int64_t)n, (int64_t)n};
            ok = qkv_model_forward(m, ids, (int)n, NULL, NULL, NULL, &cap) == QKV_OK &&
                 qkv__npy_save(npy, cap.probs, 4, shape) == QKV_OK;
            qkv_capture_free(&cap);
            fprintf(f, "],\"attn_npy\":\"%s\"}", npy);
        } else {
            fprintf(f, "],\"attn_npy\":null}");
        }
        free(ids);
    }
    if (f) {
        fprintf(f, "]\n");
        fclose(f);
    }
    int got = 0;
    if (ok) {
        peer_script(script, sizeof script);
        snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 %s %s %s --threads %d --reps %d",
                 script, dir, cases, qkv__threads(), reps);
        FILE *p = popen(cmd, "r");
        char line[8192];
        json_t *j = NULL;
        while (p && fgets(line, sizeof line, p))
            if (line[0] == '{') j = json_loads(line, 0, NULL);
        if (p) pclose(p);
        json_t *cs = json_object_get(j, "cases");
        for (size_t i = 0; i < 2 && i < json_array_size(cs); i++) {
            json_t *c = json_array_get(cs, i);
            out[i].n = (int)json_integer_value(json_object_get(c, "n"));
            out[i].total_ms = json_number_value(json_object_get(c, "total_ms"));
            out[i].forward_ms = json_number_value(json_object_get(c, "forward_ms"));
            out[i].mb = json_number_value(json_object_get(c, "mb"));
            json_t *d = json_object_get(c, "check_max_diff");
            out[i].diff = json_is_number(d) ? json_number_value(d) : -1;
            got++;
        }
        json_decref(j);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "bench serve: could not remove %s\n", tmp);
    return got == 2;
}

/* ---- the which-heads-matter grid -------------------------------------------------------- */

typedef struct grid_row {
    char model[64];
    int n_tokens, target;
    double total_ms, grid_ms, peer_ms, peer_diff;
    float *grid; /* [L * H] from the response */
} grid_row;

/* Times POST /api/ablate (zero, the whole grid) for text: median of reps; 0 on a bad answer. */
static int time_grid(qkv__api *api, qkv_model *m, const char *text, int reps, grid_row *g) {
    const qkv_model_config *c = qkv_model_get_config(m);
    json_t *o = json_pack("{s:s, s:s}", "text", text, "mode", "zero");
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    double *t = calloc((size_t)reps, sizeof *t), *gm = calloc((size_t)reps, sizeof *gm);
    g->grid = calloc((size_t)c->n_layer * c->n_head, sizeof(float));
    int ok = body && t && gm && g->grid;
    for (int k = 0; ok && k <= reps; k++) { /* k = 0: warm-up and check */
        int status;
        char *out = NULL;
        size_t out_len = 0;
        const char *allow;
        double t0 = qkv__now();
        qkv__api_handle(api, "POST", "/api/ablate", body, strlen(body), &status, &out, &out_len, &allow);
        double dt = qkv__now() - t0;
        json_t *j = status == 200 ? json_loadb(out, out_len, 0, NULL) : NULL;
        json_t *jg = json_object_get(j, "grid");
        if (!j || json_array_size(jg) != (size_t)c->n_layer) {
            fprintf(stderr, "bench serve: /api/ablate status %d: %.300s\n", status, out ? out : "");
            ok = 0;
        } else if (k == 0) {
            g->n_tokens = (int)json_integer_value(json_object_get(j, "n_tokens"));
            g->target = (int)json_integer_value(json_object_get(json_object_get(j, "target"), "id"));
            for (int l = 0; l < c->n_layer; l++)
                for (int h = 0; h < c->n_head; h++) {
                    json_t *v = json_array_get(json_array_get(jg, (size_t)l), (size_t)h);
                    if (!json_is_number(v)) ok = 0;
                    else g->grid[l * c->n_head + h] = (float)json_number_value(v);
                }
        } else {
            t[k - 1] = dt * 1e3;
            gm[k - 1] = json_number_value(json_object_get(j, "grid_ms"));
        }
        json_decref(j);
        free(out);
    }
    if (ok) {
        g->total_ms = median(t, reps);
        g->grid_ms = median(gm, reps);
        snprintf(g->model, sizeof g->model, "%s", qkv_model_name(m));
    }
    free(t);
    free(gm);
    free(body);
    return ok;
}

/* bench/peers/ablate_peers.py on dir's weights: fills g->peer_ms and g->peer_diff. */
static int run_grid_peer(qkv_model *m, const char *dir, const char *text, int reps, grid_row *g) {
    const qkv_model_config *c = qkv_model_get_config(m);
    char tmp[] = "/tmp/qkv-bench-grid-peer-XXXXXX", cases[256], script[1024], cmd[4096];
    if (!mkdtemp(tmp)) return 0;
    snprintf(cases, sizeof cases, "%s/cases.json", tmp);
    int *ids = NULL;
    size_t n = 0;
    FILE *f = fopen(cases, "w");
    int ok = f && qkv_tokenizer_encode(qkv_model_tokenizer(m), text, strlen(text), 0, &ids, &n) == QKV_OK;
    if (ok) {
        fprintf(f, "[{\"ids\":[");
        for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
        fprintf(f, "],\"target\":%d,\"grid\":[", g->target);
        for (int l = 0; l < c->n_layer; l++) {
            fprintf(f, "%s[", l ? "," : "");
            for (int h = 0; h < c->n_head; h++) fprintf(f, "%s%.9g", h ? "," : "", (double)g->grid[l * c->n_head + h]);
            fprintf(f, "]");
        }
        fprintf(f, "]}]\n");
    }
    if (f) fclose(f);
    free(ids);
    int got = 0;
    if (ok) {
        peer_script(script, sizeof script);
        char *slash = strrchr(script, '/');
        if (slash) snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "ablate_peers.py");
        snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 %s %s %s --threads %d --reps %d",
                 script, dir, cases, qkv__threads(), reps);
        FILE *p = popen(cmd, "r");
        char line[8192];
        json_t *j = NULL;
        while (p && fgets(line, sizeof line, p))
            if (line[0] == '{') j = json_loads(line, 0, NULL);
        if (p) pclose(p);
        json_t *c0 = json_array_get(json_object_get(j, "cases"), 0);
        if (c0) {
            g->peer_ms = json_number_value(json_object_get(c0, "grid_ms"));
            g->peer_diff = json_number_value(json_object_get(c0, "check_max_diff"));
            got = 1;
        }
        json_decref(j);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "bench serve: could not remove %s\n", tmp);
    return got;
}

int qkv__bench_serve(int argc, char **argv) {
    const char *model_dir = NULL;
    int reps = 9, wrk_s = 5, do_gpt2 = 1, do_wrk = 1, do_peers = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--wrk-seconds") && i + 1 < argc) wrk_s = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-gpt2")) do_gpt2 = 0;
        else if (!strcmp(argv[i], "--no-wrk")) do_wrk = 0;
        else if (!strcmp(argv[i], "--no-peers")) do_peers = 0;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else return qkv__cli_usage_error("bench serve", "usage: qkv bench serve [--model DIR] [--reps R] "
                                         "[--wrk-seconds S] [--threads N] [--no-gpt2] [--no-wrk] [--no-peers]");
    }
    if (reps < 1) reps = 1;
    /* as `qkv serve` runs a forward: its share of the cores with 2 workers ($QKV_THREADS or
     * --threads override) */
    if (threads) qkv_set_threads(threads);
    else if (!getenv("QKV_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        qkv_set_threads(cores > 2 ? (int)(cores / 2) : 1);
    }
    if (wrk_s < 1) wrk_s = 1;
    if (!model_dir) model_dir = qkv__cli_default_model();

    qkv_model *models[2] = {NULL, NULL};
    const char *why_gpt2 = "skipped (--no-gpt2)";
    if (qkv_model_load(model_dir, &models[0]) != QKV_OK) {
        fprintf(stderr, "bench serve: built-in model not available (%s): %s\n", model_dir, qkv_last_error());
        models[0] = NULL;
    }
    if (do_gpt2) models[1] = make_gpt2_small(&why_gpt2);
    if (!models[1]) fprintf(stderr, "bench serve: GPT-2 small shapes: %s\n", why_gpt2);
    if (!models[0] && !models[1]) return qkv__cli_usage_error("bench serve", "no model to benchmark");

    row rows[8];
    grid_row grids[2];
    int n_rows = 0, fail = 0, n_peer = 0, n_grid = 0;
    peer_row peer_rows[4];
    char peer_model[4][64];
    printf("qkv bench serve: server-side time of POST /api/attend (median of %d, %d threads)\n\n",
           reps, qkv__threads());
    printf("%-22s %7s %-26s %10s %10s %10s %9s\n", "model", "tokens", "maps", "total ms", "forward ms",
           "json etc", "MB");
    for (int mi = 0; mi < 2; mi++) {
        qkv_model *m = models[mi];
        if (!m) continue;
        qkv__api *api = NULL;
        if (qkv__api_create(m, 1, 60, &api) != QKV_OK) {
            fail = 1;
            continue;
        }
        const int sizes[2] = {20, 200};
        char *texts[2] = {NULL, NULL};
        for (int si = 0; si < 2; si++) {
            int got = 0;
            char *text = texts[si] = text_of_tokens(m, sizes[si], &got);
            for (int scores = 1; text && scores >= 0; scores--) {
                row *r = &rows[n_rows];
                memset(r, 0, sizeof *r);
                snprintf(r->model, sizeof r->model, "%s", qkv_model_name(m));
                r->n_tokens = got;
                if (!time_request(api, m, text, scores, mi == 1 && si == 1 ? (reps + 2) / 3 : reps, r)) {
                    fail = 1;
                    continue;
                }
                printf("%-22s %7d %-26s %10.2f %10.2f %10.2f %9.2f\n", r->model, r->n_tokens, r->what,
                       r->ms_total, r->ms_forward, r->ms_total - r->ms_forward, r->mbytes);
                n_rows++;
            }
        }
        /* the which-heads-matter grid on the 20-token text */
        if (texts[0] && n_grid < 2) {
            grid_row *g = &grids[n_grid];
            memset(g, 0, sizeof *g);
            g->peer_ms = g->peer_diff = -1;
            if (time_grid(api, m, texts[0], mi == 1 ? (reps + 2) / 3 : reps, g)) {
                n_grid++;
            } else {
                free(g->grid);
                fail = 1;
            }
        }
        qkv__api_free(api);
        if (do_peers) {
            /* the peer reads the weights from disk: the model's folder, or a saved copy */
            char saved[] = "/tmp/qkv-bench-serve-model-XXXXXX";
            const char *dir = mi == 0 ? model_dir : NULL;
            if (mi == 1 && mkdtemp(saved) && qkv__model_save(m, saved) == QKV_OK) dir = saved;
            peer_row pr[2];
            memset(pr, 0, sizeof pr);
            if (dir && n_grid && !strcmp(grids[n_grid - 1].model, qkv_model_name(m)) &&
                !run_grid_peer(m, dir, texts[0], mi == 1 ? 1 : 3, &grids[n_grid - 1]))
                fprintf(stderr, "bench serve: the PyTorch grid peer did not run for %s\n", qkv_model_name(m));
            if (dir && run_peer(m, dir, texts, mi == 1 ? 2 : reps, pr)) {
                for (int t = 0; t < 2; t++) {
                    peer_rows[n_peer] = pr[t];
                    snprintf(peer_model[n_peer], sizeof peer_model[0], "%s", qkv_model_name(m));
                    n_peer++;
                }
            } else {
                fprintf(stderr, "bench serve: the PyTorch peer did not run for %s\n", qkv_model_name(m));
            }
            if (mi == 1) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "rm -rf %s", saved);
                if (system(cmd) != 0) fprintf(stderr, "bench serve: could not remove %s\n", saved);
            }
        }
        free(texts[0]);
        free(texts[1]);
    }
    if (n_peer) {
        printf("\npeer: PyTorch %d threads, forward keeping every layer's attention + scores, then "
               "json.dumps (bench/peers/serve_peers.py, same weights)\n", qkv__threads());
        printf("%-22s %7s %10s %10s %9s %12s %14s\n", "model", "tokens", "total ms", "forward ms", "MB",
               "max |diff|", "qkv speed-up");
        for (int k = 0; k < n_peer; k++) {
            double ours = 0;
            for (int r = 0; r < n_rows; r++)
                if (!strcmp(rows[r].model, peer_model[k]) && rows[r].n_tokens == peer_rows[k].n &&
                    rows[r].what[9] == '+')
                    ours = rows[r].ms_total;
            char diff[32] = "-";
            if (peer_rows[k].diff >= 0) snprintf(diff, sizeof diff, "%.1e", peer_rows[k].diff);
            printf("%-22s %7d %10.2f %10.2f %9.2f %12s %13.1fx\n", peer_model[k], peer_rows[k].n,
                   peer_rows[k].total_ms, peer_rows[k].forward_ms, peer_rows[k].mb, diff,
                   ours > 0 ? peer_rows[k].total_ms / ours : 0.0);
            if (peer_rows[k].diff > 1e-4) {
                fprintf(stderr, "bench serve: the peer's attention differs from ours by %g\n", peer_rows[k].diff);
                fail = 1;
            }
        }
    }
    if (models[0]) {
        for (int k = 0; k < n_rows; k++)
            if (rows[k].n_tokens <= 24 && !strcmp(rows[k].model, qkv_model_name(models[0])) &&
                rows[k].what[9] == '+')
                printf("\ngoal: < 50 ms for a 20-token sentence on the built-in model: %.2f ms (%s)\n",
                       rows[k].ms_total, rows[k].ms_total < 50 ? "met" : "NOT met");
    }

    if (n_grid) {
        printf("\nwhich-heads-matter grid: POST /api/ablate, every layer x head zero-ablated once "
               "(median; peer: PyTorch hooks, bench/peers/ablate_peers.py, same weights)\n");
        printf("%-22s %7s %6s %10s %10s %12s %12s %12s  %s\n", "model", "tokens", "heads", "total ms",
               "grid ms", "PyTorch ms", "max |diff|", "qkv speed-up", "goal");
        for (int k = 0; k < n_grid; k++) {
            grid_row *g = &grids[k];
            int gpt2 = models[1] && !strcmp(g->model, qkv_model_name(models[1]));
            const qkv_model_config *gc = qkv_model_get_config(gpt2 ? models[1] : models[0]);
            double goal = gpt2 ? 2000.0 : 100.0;
            char pms[32] = "-", pd[32] = "-", su[32] = "-";
            if (g->peer_ms > 0) {
                snprintf(pms, sizeof pms, "%.1f", g->peer_ms);
                snprintf(pd, sizeof pd, "%.1e", g->peer_diff);
                snprintf(su, sizeof su, "%.1fx", g->peer_ms / g->grid_ms);
            }
            printf("%-22s %7d %6d %10.2f %10.2f %12s %12s %12s  < %.0f ms: %s\n", g->model, g->n_tokens,
                   gc->n_layer * gc->n_head, g->total_ms, g->grid_ms, pms, pd, su, goal,
                   g->grid_ms < goal ? "met" : "NOT met");
            if (g->peer_diff > 1e-3) {
                fprintf(stderr, "bench serve: the PyTorch grid differs from ours by %g\n", g->peer_diff);
                fail = 1;
            }
        }
    }

    double rps = -1, p50 = 0, p99 = 0;
    qkv_model *wm = models[0] ? models[0] : models[1];
    if (do_wrk) {
        int got = 0;
        char *text = text_of_tokens(wm, 20, &got);
        rps = text ? run_wrk(wm, text, wrk_s, &p50, &p99) : -2;
        free(text);
        if (rps == -1) printf("\nwrk: not installed (apt-get install wrk); requests/s skipped\n");
        else if (rps < 0) {
            printf("\nwrk: failed\n");
            fail = 1;
        } else
            printf("\nwrk -t2 -c8 -d%ds, POST /api/attend (%s, %d tokens, every layer's attention): "
                   "%.0f requests/s, p50 %.2f ms, p99 %.2f ms\n",
                   wrk_s, qkv_model_name(wm), got, rps, p50, p99);
    }

    printf("\n{\"bench\":\"serve\",\"threads\":%d,\"rows\":[", qkv__threads());
    for (int k = 0; k < n_rows; k++)
        printf("%s{\"model\":\"%s\",\"tokens\":%d,\"maps\":\"%s\",\"total_ms\":%.3f,\"forward_ms\":%.3f,"
               "\"response_mb\":%.3f}",
               k ? "," : "", rows[k].model, rows[k].n_tokens, rows[k].what, rows[k].ms_total,
               rows[k].ms_forward, rows[k].mbytes);
    printf("],\"peer\":[");
    for (int k = 0; k < n_peer; k++)
        printf("%s{\"model\":\"%s\",\"tokens\":%d,\"total_ms\":%.3f,\"forward_ms\":%.3f,\"max_diff\":%.3g}",
               k ? "," : "", peer_model[k], peer_rows[k].n, peer_rows[k].total_ms, peer_rows[k].forward_ms,
               peer_rows[k].diff);
    printf("],\"grid\":[");
    for (int k = 0; k < n_grid; k++)
        printf("%s{\"model\":\"%s\",\"tokens\":%d,\"total_ms\":%.3f,\"grid_ms\":%.3f,\"peer_ms\":%.3f,"
               "\"max_diff\":%.3g}", k ? "," : "", grids[k].model, grids[k].n_tokens, grids[k].total_ms,
               grids[k].grid_ms, grids[k].peer_ms, grids[k].peer_diff);
    printf("],\"wrk\":");
    if (rps > 0) printf("{\"model\":\"%s\",\"requests_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}}\n",
                        qkv_model_name(wm), rps, p50, p99);
    else printf("null}\n");
    for (int k = 0; k < n_grid; k++) free(grids[k].grid);
    qkv_model_free(models[0]);
    qkv_model_free(models[1]);
    return fail;
}
