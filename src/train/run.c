/*
 * run.c -- qkv_train: a whole training run. Tokenise the corpus once into OUT/tokens.bin
 * (training a byte-level BPE vocabulary first if none is given), build or load the model,
 * then loop: batches, forward/backward, AdamW, validation loss, checkpoints (HF model files
 * + OUT/optimizer.bin so --resume continues exactly), train_log.csv, loss.svg and loss.png.
 */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void qkv_train_opts_init(qkv_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.05f;
    o->vocab_size = 4096;
    o->n_layer = 4;
    o->n_head = 4;
    o->n_embd = 256;
    o->n_ctx = 256;
    o->batch = 8;
    o->accum = 1;
    o->steps = 1000;
    o->warmup = -1; /* steps / 20 */
    o->lr = 1e-3f;
    o->min_lr_frac = 0.1f;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->adam_eps = 1e-8f;
    o->grad_clip = 1.0f;
    o->seed = 1337;
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 500;
    o->final_eval = 1;
}

/* ---- little-endian helpers ----------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t x) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t x) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) x |= (uint32_t)p[i] << (8 * i);
    return x;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static uint64_t fnv1a(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* ---- token file ---------------------------------------------------------------------- */

typedef struct token_data {
    int *train, *val; /* malloc'ed */
    size_t n_train, n_val;
    int vocab_size;   /* from the header */
} token_data;

static void token_data_free(token_data *d) {
    free(d->train);
    free(d->val);
    memset(d, 0, sizeof *d);
}

static int is_token_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    int ok = fread(m, 1, 8, f) == 8 && !memcmp(m, QKV__TOKENS_MAGIC, 8);
    fclose(f);
    return ok;
}

static qkv_status tokens_write(const char *path, const token_data *d) {
    int wide = d->vocab_size > 65536;
    size_t tb = wide ? 4 : 2, n = d->n_train + d->n_val;
    size_t total = 64 + n * tb;
    uint8_t *buf = calloc(total, 1);
    if (!buf) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    memcpy(buf, QKV__TOKENS_MAGIC, 8);
    put_u32(buf + 8, QKV__TOKENS_VERSION);
    put_u32(buf + 12, (uint32_t)tb);
    put_u32(buf + 16, (uint32_t)d->vocab_size);
    put_u64(buf + 24, d->n_train);
    put_u64(buf + 32, d->n_val);
    uint8_t *at = buf + 64;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = (uint32_t)(i < d->n_train ? d->train[i] : d->val[i - d->n_train]);
        if (wide) put_u32(at + 4 * i, id);
        else {
            at[2 * i] = (uint8_t)id;
            at[2 * i + 1] = (uint8_t)(id >> 8);
        }
    }
    qkv_status st = qkv__write_file(path, buf, total);
    free(buf);
    return st;
}

static qkv_status tokens_read(const char *path, token_data *d) {
    memset(d, 0, sizeof *d);
    qkv__mmap m;
    qkv_status st = qkv__mmap_open(path, &m);
    if (st) return st;
    st = QKV_OK;
    if (m.size < 64 || memcmp(m.data, QKV__TOKENS_MAGIC, 8)) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a qkv token file (bad magic)", path);
        goto done;
    }
    uint32_t ver = get_u32(m.data + 8), tb = get_u32(m.data + 12), V = get_u32(m.data + 16);
    uint64_t nt = get_u64(m.data + 24), nv = get_u64(m.data + 32);
    if (ver != QKV__TOKENS_VERSION) {
        st = qkv__fail(QKV_EFORMAT, "%s: token file version %u, this qkv reads version %u "
                       "(delete it to re-tokenise)", path, ver, QKV__TOKENS_VERSION);
        goto done;
    }
    if ((tb != 2 && tb != 4) || V < 1 || V > (1u << 24) || nt > ((uint64_t)1 << 40) ||
        nv > ((uint64_t)1 << 40) || (uint64_t)m.size != 64 + (nt + nv) * tb) {
        st = qkv__fail(QKV_EFORMAT, "%s: inconsistent header (%u-byte tokens, vocab %u, %llu + %llu "
                       "tokens, file %zu bytes)", path, tb, V, (unsigned long long)nt,
                       (unsigned long long)nv, m.size);
        goto done;
    }
    d->n_train = (size_t)nt;
    d->n_val = (size_t)nv;
    d->vocab_size = (int)V;
    d->train = malloc((d->n_train ? d->n_train : 1) * sizeof(int));
    d->val = malloc((d->n_val ? d->n_val : 1) * sizeof(int));
    if (!d->train || !d->val) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    const uint8_t *at = m.data + 64;
    for (size_t i = 0; i < d->n_train + d->n_val; i++) {
        uint32_t id = tb == 4 ? get_u32(at + 4 * i) : (uint32_t)(at[2 * i] | (at[2 * i + 1] << 8));
        if (id >= V) {
            st = qkv__fail(QKV_EFORMAT, "%s: token %zu is %u, outside the vocabulary [0, %u)", path, i,
                           id, V);
            goto done;
        }
        if (i < d->n_train) d->train[i] = (int)id;
        else d->val[i - d->n_train] = (int)id;
    }
done:
    if (st) token_data_free(d);
    qkv__mmap_close(&m);
    return st;
}

/* ---- run state ----------------------------------------------------------------------- */

typedef struct log_row {
    int step;
    double tokens, loss, val_loss, lr, grad_norm, elapsed, tok_s;
} log_row;

typedef struct run {
    const qkv_train_opts *o;
    qkv_model *model;
    qkv_tokenizer *tok; /* owned here when the model has none */
    token_data data;
    qkv__trainer tr;
    qkv__adamw adam;
    int B, T, accum, steps, warmup;
    uint64_t rng;
    uint64_t data_pos;
    double tokens_seen, elapsed_before;
    log_row *rows;
    int n_rows, cap_rows;
    int *batch_in, *batch_tg; /* [B * T] */
    char msg[1024];
} run;

static int emit(run *r, qkv_train_event ev, const qkv_train_progress *p0, const char *msg) {
    if (!r->o->callback) return 0;
    qkv_train_progress p = *p0;
    p.event = ev;
    p.message = msg;
    return r->o->callback(r->o->user, &p);
}

static void info(run *r, const char *fmt, ...) QKV__PRINTF(2, 3);
static void info(run *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    qkv_train_progress p = {0};
    p.val_loss = NAN;
    p.bits_per_byte = NAN;
    emit(r, QKV_TRAIN_INFO, &p, r->msg);
}

static char *out_path(const run *r, const char *name) { return qkv__path_join(r->o->out_dir, name); }

static qkv_status copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    qkv_status st = qkv__read_file(from, (size_t)1 << 31, &data, &len);
    if (st) return st;
    st = qkv__write_file(to, data, len);
    free(data);
    return st;
}

static int file_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

/* ---- data ---------------------------------------------------------------------------- */

/* Splits the corpus (or uses val_data), gets a vocabulary into OUT, tokenises, writes
 * OUT/tokens.bin. */
static qkv_status prepare_tokens(run *r) {
    const qkv_train_opts *o = r->o;
    char *tok_path = out_path(r, "tokens.bin");
    char *vocab_out = out_path(r, "vocab.json"), *merges_out = out_path(r, "merges.txt");
    char *text = NULL, *val_text = NULL;
    size_t len = 0, val_len = 0;
    int *ids = NULL;
    qkv_status st = QKV_OK;
    if (!tok_path || !vocab_out || !merges_out) {
        st = qkv__fail(QKV_ENOMEM, "train: out of memory");
        goto done;
    }
    if (r->o->resume && file_exists(tok_path)) {
        st = tokens_read(tok_path, &r->data);
        if (!st && file_exists(vocab_out)) st = qkv_tokenizer_load_dir(o->out_dir, &r->tok);
        goto done;
    }
    if (is_token_file(o->data)) { /* already tokenised (by an earlier run or a test) */
        st = tokens_read(o->data, &r->data);
        if (st) goto done;
        if (o->vocab_dir) {
            if ((st = qkv_tokenizer_load_dir(o->vocab_dir, &r->tok))) goto done;
            char *vj = qkv__path_join(o->vocab_dir, "vocab.json"), *mt = qkv__path_join(o->vocab_dir, "merges.txt");
            st = (vj && mt) ? copy_file(vj, vocab_out) : QKV_ENOMEM;
            if (!st) st = copy_file(mt, merges_out);
            free(vj);
            free(mt);
        }
        goto done;
    }
    if ((st = qkv__read_file(o->data, (size_t)1 << 32, &text, &len))) goto done;
    if (len == 0) {
        st = qkv__fail(QKV_EINVAL, "%s: the corpus is empty", o->data);
        goto done;
    }
    if (o->val_data) {
        if ((st = qkv__read_file(o->val_data, (size_t)1 << 32, &val_text, &val_len))) goto done;
    } else {
        /* the last val_fraction of the text, starting at a line break when there is one */
        size_t cut = len - (size_t)((double)len * o->val_fraction), c = cut;
        while (c > len / 2 && text[c - 1] != '\n') c--;
        if (c > len / 2) cut = c;
        val_len = len - cut;
        val_text = malloc(val_len + 1);
        if (!val_text) {
            st = qkv__fail(QKV_ENOMEM, "train: out of memory");
            goto done;
        }
        memcpy(val_text, text + cut, val_len);
        val_text[val_len] = '\0';
        len = cut;
    }
    if (o->vocab_dir) {
        if ((st = qkv_tokenizer_load_dir(o->vocab_dir, &r->tok))) goto done;
        char *vj = qkv__path_join(o->vocab_dir, "vocab.json"), *mt = qkv__path_join(o->vocab_dir, "merges.txt");
        st = (vj && mt) ? QKV_OK : qkv__fail(QKV_ENOMEM, "train: out of memory");
        if (!st && strcmp(o->vocab_dir, o->out_dir)) {
            st = copy_file(vj, vocab_out);
            if (!st) st = copy_file(mt, merges_out);
        }
        free(vj);
        free(mt);
        if (st) goto done;
    } else {
        info(r, "training a %d-token byte-level BPE vocabulary on %zu bytes", o->vocab_size, len);
        double t0 = qkv__now();
        if ((st = qkv_bpe_train(text, len, o->vocab_size, o->out_dir))) goto done;
        if ((st = qkv_tokenizer_load_dir(o->out_dir, &r->tok))) goto done;
        int got = qkv_tokenizer_vocab_size(r->tok);
        if (got != o->vocab_size) {
            st = qkv__fail(QKV_ERANGE, "%s: the corpus supports a vocabulary of only %d tokens, "
                           "not %d (lower --vocab-size)", o->data, got, o->vocab_size);
            goto done;
        }
        info(r, "vocabulary: %d tokens in %.1f s -> %s/vocab.json, merges.txt", got,
             qkv__now() - t0, o->out_dir);
    }
    double t0 = qkv__now();
    size_t n;
    if ((st = qkv_tokenizer_encode(r->tok, text, len, 0, &ids, &n))) goto done;
    r->data.train = ids;
    r->data.n_train = n;
    ids = NULL;
    if ((st = qkv_tokenizer_encode(r->tok, val_text, val_len, 0, &ids, &n))) goto done;
    r->data.val = ids;
    r->data.n_val = n;
    ids = NULL;
    r->data.vocab_size = qkv_tokenizer_vocab_size(r->tok);
    info(r, "tokens: %zu train (%.2f bytes/token), %zu validation, in %.1f s -> %s",
         r->data.n_train, r->data.n_train ? (double)len / (double)r->data.n_train : 0.0,
         r->data.n_val, qkv__now() - t0, tok_path);
    st = tokens_write(tok_path, &r->data);
done:
    free(ids);
    free(text);
    free(val_text);
    free(tok_path);
    free(vocab_out);
    free(merges_out);
    return st;
}

/* ---- optimizer state ----------------------------------------------------------------- */

#define OPT_HEADER 128

static qkv_status opt_save(run *r, double elapsed) {
    const qkv_model_config *c = &r->tr.cfg;
    size_t n = r->tr.n_params, total = OPT_HEADER + 2 * n * sizeof(float);
    uint8_t *buf = calloc(total, 1);
    char *path = out_path(r, "optimizer.bin");
    if (!buf || !path) {
        free(buf);
        free(path);
        return qkv__fail(QKV_ENOMEM, "train: out of memory");
    }
    memcpy(buf, QKV__OPT_MAGIC, 8);
    put_u32(buf + 8, QKV__OPT_VERSION);
    put_u32(buf + 12, OPT_HEADER);
    put_u32(buf + 16, (uint32_t)c->n_layer);
    put_u32(buf + 20, (uint32_t)c->n_head);
    put_u32(buf + 24, (uint32_t)c->n_embd);
    put_u32(buf + 28, (uint32_t)c->n_ctx);
    put_u32(buf + 32, (uint32_t)c->vocab_size);
    put_u64(buf + 40, n);
    put_u64(buf + 48, (uint64_t)r->tr.step);
    put_u64(buf + 56, r->rng);
    put_u64(buf + 64, r->data_pos);
    uint64_t tmp;
    memcpy(&tmp, &r->tokens_seen, 8);
    put_u64(buf + 72, tmp);
    memcpy(&tmp, &elapsed, 8);
    put_u64(buf + 80, tmp);
    put_u64(buf + 88, fnv1a(r->tr.params, n * sizeof(float)));
    memcpy(buf + OPT_HEADER, r->tr.m, n * sizeof(float));
    memcpy(buf + OPT_HEADER + n * sizeof(float), r->tr.v, n * sizeof(float));
    qkv_status st = qkv__write_file(path, buf, total);
    free(buf);
    free(path);
    return st;
}

static qkv_status opt_load(run *r) {
    char *path = out_path(r, "optimizer.bin");
    if (!path) return qkv__fail(QKV_ENOMEM, "train: out of memory");
    qkv__mmap m;
    qkv_status st = qkv__mmap_open(path, &m);
    if (st) {
        st = qkv__fail(st, "--resume: %s (no optimizer state: was this folder written by qkv train?)",
                       qkv_last_error());
        free(path);
        return st;
    }
    const qkv_model_config *c = &r->tr.cfg;
    size_t n = r->tr.n_params;
    if (m.size < OPT_HEADER || memcmp(m.data, QKV__OPT_MAGIC, 8)) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a qkv optimizer state (bad magic)", path);
    } else if (get_u32(m.data + 8) != QKV__OPT_VERSION) {
        st = qkv__fail(QKV_EFORMAT, "%s: version %u, this qkv reads version %u", path,
                       get_u32(m.data + 8), QKV__OPT_VERSION);
    } else if ((int)get_u32(m.data + 16) != c->n_layer || (int)get_u32(m.data + 20) != c->n_head ||
               (int)get_u32(m.data + 24) != c->n_embd || (int)get_u32(m.data + 28) != c->n_ctx ||
               (int)get_u32(m.data + 32) != c->vocab_size || get_u64(m.data + 40) != n ||
               m.size != OPT_HEADER + 2 * n * sizeof(float)) {
        st = qkv__fail(QKV_ESHAPE, "%s: written for another model shape than %s/config.json", path,
                       r->o->out_dir);
    } else if (get_u64(m.data + 88) != fnv1a(r->tr.params, n * sizeof(float))) {
        st = qkv__fail(QKV_EFORMAT, "%s: belongs to other weights than %s/model.safetensors (a save "
                       "was interrupted?)", path, r->o->out_dir);
    } else {
        r->tr.step = (int)get_u64(m.data + 48);
        r->rng = get_u64(m.data + 56);
        r->data_pos = get_u64(m.data + 64);
        uint64_t tmp = get_u64(m.data + 72);
        memcpy(&r->tokens_seen, &tmp, 8);
        tmp = get_u64(m.data + 80);
        memcpy(&r->elapsed_before, &tmp, 8);
        memcpy(r->tr.m, m.data + OPT_HEADER, n * sizeof(float));
        memcpy(r->tr.v, m.data + OPT_HEADER + n * sizeof(float), n * sizeof(float));
    }
    qkv__mmap_close(&m);
    free(path);
    return st;
}

/* ---- log, curve ---------------------------------------------------------------------- */

static void add_row(run *r, const log_row *row) {
    if (r->n_rows == r->cap_rows) {
        int cap = r->cap_rows ? 2 * r->cap_rows : 1024;
        log_row *p = realloc(r->rows, (size_t)cap * sizeof *p);
        if (!p) return; /* the log is a convenience; training goes on */
        r->rows = p;
        r->cap_rows = cap;
    }
    r->rows[r->n_rows++] = *row;
}

/* Reads an existing train_log.csv, keeping rows up to step (the checkpoint resumed from). */
static void load_log(run *r, int upto) {
    char *path = out_path(r, "train_log.csv"), *text = NULL;
    size_t len;
    if (!path || qkv__read_file(path, (size_t)1 << 30, &text, &len)) {
        free(path);
        qkv__clear_error();
        return;
    }
    char *line = strchr(text, '\n'); /* skip the header */
    while (line && *++line) {
        /* step,tokens,loss,val_loss,lr,grad_norm,elapsed_s,tokens_per_s; val_loss may be empty */
        double f[8];
        int nf = 0;
        char *at = line;
        for (; nf < 8; nf++) {
            char *end;
            f[nf] = strtod(at, &end);
            if (end == at) f[nf] = NAN;
            at = end;
            if (*at != ',') break;
            at++;
        }
        if (nf == 7 && !isnan(f[0]) && f[0] <= upto) {
            log_row row = {(int)f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]};
            add_row(r, &row);
        }
        line = strchr(line, '\n');
    }
    free(text);
    free(path);
}

static qkv_status write_log(run *r, const char *dir) {
    size_t cap = (size_t)r->n_rows * 128 + 256, at = 0;
    char *buf = malloc(cap), *path = qkv__path_join(dir, "train_log.csv");
    if (!buf || !path) {
        free(buf);
        free(path);
        return qkv__fail(QKV_ENOMEM, "train: out of memory");
    }
    at += (size_t)snprintf(buf, cap, "step,tokens,loss,val_loss,lr,grad_norm,elapsed_s,tokens_per_s\n");
    for (int i = 0; i < r->n_rows; i++) {
        const log_row *w = &r->rows[i];
        char val[32] = "";
        if (!isnan(w->val_loss)) snprintf(val, sizeof val, "%.6f", w->val_loss);
        at += (size_t)snprintf(buf + at, cap - at, "%d,%.0f,%.6f,%s,%.6g,%.6g,%.3f,%.1f\n", w->step,
                               w->tokens, w->loss, val, w->lr, w->grad_norm, w->elapsed, w->tok_s);
    }
    qkv_status st = qkv__write_file(path, buf, at);
    free(buf);
    free(path);
    return st;
}

static const char *run_name(const run *r) {
    const char *base = strrchr(r->o->out_dir, '/');
    return base && base[1] ? base + 1 : r->o->out_dir;
}


/* ---- batches and evaluation ---------------------------------------------------------- */

static void next_batch(run *r) {
    size_t BT = (size_t)r->B * r->T;
    for (int b = 0; b < r->B; b++) {
        size_t start;
        if (r->o->sequential) {
            if (r->data_pos + BT + 1 > r->data.n_train) r->data_pos = 0;
            start = r->data_pos + (size_t)b * r->T;
        } else {
            start = (size_t)(qkv__rng_next(&r->rng) % (uint64_t)(r->data.n_train - (size_t)r->T));
        }
        memcpy(r->batch_in + (size_t)b * r->T, r->data.train + start, (size_t)r->T * sizeof(int));
        memcpy(r->batch_tg + (size_t)b * r->T, r->data.train + start + 1, (size_t)r->T * sizeof(int));
    }
    if (r->o->sequential) r->data_pos += BT;
}

/* Mean loss over the first max_windows windows of the validation split (all when <= 0):
 * windows of T + 1 tokens at stride T, so every token after the first is predicted once.
 * *bytes: the UTF-8 bytes of the predicted tokens (when a tokenizer is known). */
static qkv_status evaluate(run *r, int max_windows, double *mean, double *sum_out, double *bytes,
                           size_t *n_pred) {
    int T = r->T;
    if (r->data.n_val < (size_t)T + 1) T = (int)r->data.n_val - 1;
    *mean = NAN;
    if (T < 1) return QKV_OK;
    size_t W = (r->data.n_val - 1) / (size_t)T;
    if (max_windows > 0 && (size_t)max_windows < W) W = (size_t)max_windows;
    double sum = 0.0, nb = 0.0;
    size_t count = 0;
    for (size_t w0 = 0; w0 < W; w0 += (size_t)r->B) {
        int B = (int)((W - w0) < (size_t)r->B ? (W - w0) : (size_t)r->B);
        for (int b = 0; b < B; b++) {
            const int *src = r->data.val + (w0 + (size_t)b) * T;
            memcpy(r->batch_in + (size_t)b * T, src, (size_t)T * sizeof(int));
            memcpy(r->batch_tg + (size_t)b * T, src + 1, (size_t)T * sizeof(int));
        }
        float ml;
        r->tr.acts.dropout = 0.0f;
        qkv_status st = qkv__train_forward(&r->tr.cfg, &r->tr.p, &r->tr.acts, r->batch_in,
                                                r->batch_tg, B, T, &ml);
        if (st) return st;
        for (size_t i = 0; i < (size_t)B * T; i++) {
            sum += r->tr.acts.losses[i];
            if (r->tok) {
                const char *tb;
                size_t tl = 0;
                if (!qkv_tokenizer_token_bytes(r->tok, r->batch_tg[i], &tb, &tl)) nb += (double)tl;
            }
        }
        count += (size_t)B * T;
    }
    *mean = count ? sum / (double)count : NAN;
    if (sum_out) *sum_out = sum;
    if (bytes) *bytes = r->tok ? nb : NAN;
    if (n_pred) *n_pred = count;
    return QKV_OK;
}

/* The application's hook (the CLI draws loss.svg and loss.png): the log so far. */
static qkv_status report(run *r, const char *dir) {
    if (!r->o->on_checkpoint) return QKV_OK;
    qkv_train_point *pts = malloc(sizeof *pts * (size_t)(r->n_rows ? r->n_rows : 1));
    if (!pts) return qkv__fail(QKV_ENOMEM, "train: out of memory");
    for (int i = 0; i < r->n_rows; i++)
        pts[i] = (qkv_train_point){r->rows[i].step, r->rows[i].loss, r->rows[i].val_loss};
    char title[256];
    const qkv_model_config *c = &r->tr.cfg;
    snprintf(title, sizeof title, "qkv train: %s (%s L%d H%d C%d T%d V%d)", run_name(r), c->family, c->n_layer,
             c->n_head, c->n_embd, r->T, c->vocab_size);
    qkv_status st = r->o->on_checkpoint(r->o->on_checkpoint_user, dir, title, pts, r->n_rows);
    free(pts);
    return st;
}

/* ---- checkpoints --------------------------------------------------------------------- */

static qkv_status export_to(run *r, const char *dir) {
    qkv_status st = qkv__model_save(r->model, dir);
    static const char *extra[] = {"vocab.json", "merges.txt", "eval.json"};
    for (size_t i = 0; !st && i < sizeof extra / sizeof extra[0]; i++) {
        char *from = out_path(r, extra[i]), *to = qkv__path_join(dir, extra[i]);
        if (!from || !to) st = qkv__fail(QKV_ENOMEM, "train: out of memory");
        else if (file_exists(from)) st = copy_file(from, to);
        free(from);
        free(to);
    }
    if (!st) st = write_log(r, dir);
    if (!st) st = report(r, dir);
    return st;
}

/* elapsed: wall time of the whole run so far (earlier sessions included) */
static qkv_status save(run *r, double elapsed) {
    qkv_status st = qkv__model_save(r->model, r->o->out_dir);
    if (!st) st = opt_save(r, elapsed);
    if (!st) st = write_log(r, r->o->out_dir);
    if (!st) st = report(r, r->o->out_dir);
    if (!st && r->o->export_dir) st = export_to(r, r->o->export_dir);
    return st;
}

/* ---- qkv_train ----------------------------------------------------------------------- */

static qkv_status check_opts(const qkv_train_opts *o) {
    if (!o || !o->data || !o->out_dir) return qkv__fail(QKV_EINVAL, "train: --data and --out are required");
    if (o->n_ctx < 1) return qkv__fail(QKV_ERANGE, "train: context %d: must be at least 1", o->n_ctx);
    if (o->seq_len < 0) return qkv__fail(QKV_ERANGE, "train: sequence length %d < 0", o->seq_len);
    if (o->batch < 1) return qkv__fail(QKV_ERANGE, "train: batch %d: must be at least 1", o->batch);
    if (o->accum < 1) return qkv__fail(QKV_ERANGE, "train: accum %d: must be at least 1", o->accum);
    if (o->steps < 1) return qkv__fail(QKV_ERANGE, "train: steps %d: must be at least 1", o->steps);
    if (!(o->lr > 0.0f) || !isfinite(o->lr)) return qkv__fail(QKV_ERANGE, "train: learning rate %g must be > 0", (double)o->lr);
    if (!(o->min_lr_frac >= 0.0f && o->min_lr_frac <= 1.0f)) return qkv__fail(QKV_ERANGE, "train: min lr fraction %g outside [0, 1]", (double)o->min_lr_frac);
    if (!(o->weight_decay >= 0.0f) || !(o->beta1 >= 0.0f && o->beta1 < 1.0f) ||
        !(o->beta2 >= 0.0f && o->beta2 < 1.0f) || !(o->adam_eps > 0.0f) || !(o->grad_clip >= 0.0f))
        return qkv__fail(QKV_ERANGE, "train: AdamW settings out of range (weight decay >= 0, betas in "
                         "[0, 1), eps > 0, clip >= 0)");
    if (!(o->val_fraction > 0.0f && o->val_fraction < 0.5f) && !o->val_data)
        return qkv__fail(QKV_ERANGE, "train: validation fraction %g outside (0, 0.5)", (double)o->val_fraction);
    if (!o->vocab_dir && (o->vocab_size < 257 || o->vocab_size > 65536 * 4))
        return qkv__fail(QKV_ERANGE, "train: vocabulary size %d outside [257, 262144] (256 bytes + "
                         "merges + <|endoftext|>)", o->vocab_size);
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
        return qkv__fail(QKV_ERANGE, "train: dropout %g outside [0, 1)", (double)o->dropout);
    if (o->stop_after < 0) return qkv__fail(QKV_ERANGE, "train: stop-after %d < 0", o->stop_after);
    if (!(o->minutes >= 0.0)) return qkv__fail(QKV_ERANGE, "train: minutes %g < 0", o->minutes);
    return QKV_OK;
}

qkv_status qkv_train(const qkv_train_opts *opts) {
    qkv_status st = check_opts(opts);
    if (st) return st;
    run R, *r = &R;
    memset(r, 0, sizeof *r);
    r->o = opts;
    if (mkdir(opts->out_dir, 0777) != 0 && errno != EEXIST)
        return qkv__fail(QKV_EIO, "%s: cannot create folder: %s", opts->out_dir, strerror(errno));
    if (opts->export_dir && mkdir(opts->export_dir, 0777) != 0 && errno != EEXIST)
        return qkv__fail(QKV_EIO, "%s: cannot create folder: %s", opts->export_dir, strerror(errno));
    char *cfg_path = out_path(r, "config.json");
    int resume = opts->resume;
    if (resume && !file_exists(cfg_path)) {
        free(cfg_path);
        return qkv__fail(QKV_ENOTFOUND, "--resume: %s has no checkpoint (config.json)", opts->out_dir);
    }
    free(cfg_path);

    if ((st = prepare_tokens(r))) goto done;
    if (r->data.n_train == 0) {
        st = qkv__fail(QKV_EINVAL, "%s: the corpus has no training tokens", opts->data);
        goto done;
    }

    /* the model */
    if (resume || opts->init_dir) {
        const char *dir = resume ? opts->out_dir : opts->init_dir;
        if ((st = qkv_model_load(dir, &r->model))) goto done;
        if (qkv_model_get_config(r->model)->vocab_size < r->data.vocab_size) {
            st = qkv__fail(QKV_ESHAPE, "%s: the model's vocabulary (%d) is smaller than the data's (%d)",
                           dir, qkv_model_get_config(r->model)->vocab_size, r->data.vocab_size);
            goto done;
        }
    } else {
        qkv_model_config cfg = {.n_layer = opts->n_layer, .n_head = opts->n_head, .n_embd = opts->n_embd,
                                .n_ctx = opts->n_ctx, .vocab_size = r->data.vocab_size, .layer_norm_eps = 1e-5f,
                                .n_ff = opts->n_ff};
        int llama = opts->arch && !strcmp(opts->arch, "llama");
        if (opts->arch && !llama && strcmp(opts->arch, "gpt2")) {
            st = qkv__fail(QKV_EINVAL, "train: architecture \"%s\" is not gpt2 or llama", opts->arch);
            goto done;
        }
        if (!llama && (opts->n_kv_head || opts->qk_norm || opts->rope_theta != 0.0f)) {
            st = qkv__fail(QKV_EINVAL, "train: KV heads, QK-norm and rope_theta need --arch llama");
            goto done;
        }
        if (llama) { /* a Llama-style model: as SmolLM2 (tied), or Qwen3 with QK-norm */
            snprintf(cfg.family, sizeof cfg.family, "%s", opts->qk_norm ? "qwen3" : "llama");
            cfg.norm = QKV_NORM_RMS;
            cfg.mlp = QKV_MLP_SWIGLU;
            cfg.pos = QKV_POS_ROPE;
            cfg.bias = QKV_BIAS_NONE;
            cfg.n_kv_head = opts->n_kv_head;
            cfg.qk_norm = opts->qk_norm;
            cfg.rope_theta = opts->rope_theta;
            if (!cfg.n_ff) cfg.n_ff = (8 * opts->n_embd / 3 + 31) / 32 * 32; /* SwiGLU's 2/3 of 4C */
        }
        if ((st = qkv__model_create(&cfg, &r->model))) goto done;
        size_t n;
        const qkv_model_config *mc = qkv_model_get_config(r->model);
        qkv__init_weights(mc, qkv__model_params_block(r->model, &n), opts->seed);
        if (opts->sinusoid_wpe) qkv__init_sinusoid_wpe(mc, qkv__model_params_block(r->model, &n));
    }
    const qkv_model_config *cfg = qkv_model_get_config(r->model);
    r->T = opts->seq_len ? opts->seq_len : cfg->n_ctx;
    if (r->T > cfg->n_ctx) {
        st = qkv__fail(QKV_ERANGE, "train: sequence length %d exceeds the model's context %d", r->T,
                       cfg->n_ctx);
        goto done;
    }
    r->B = opts->batch;
    r->accum = opts->accum;
    r->steps = opts->steps;
    r->warmup = opts->warmup >= 0 ? opts->warmup : opts->steps / 20;
    if (r->data.n_train < (size_t)r->T + 1 ||
        (opts->sequential && r->data.n_train < (size_t)r->B * r->T + 1)) {
        st = qkv__fail(QKV_EINVAL, "%s: %zu training tokens, too few for %s of %d tokens (lower --ctx%s)",
                       opts->data, r->data.n_train, opts->sequential ? "a batch" : "one sequence",
                       opts->sequential ? r->B * r->T + 1 : r->T + 1, opts->sequential ? " or --batch" : "");
        goto done;
    }
    if ((st = qkv__trainer_init(&r->tr, r->model, r->B, r->T))) goto done;
    r->adam = (qkv__adamw){opts->beta1, opts->beta2, opts->adam_eps, opts->weight_decay, opts->grad_clip};
    r->rng = opts->seed * 0x9E3779B97F4A7C15ULL + 1;
    r->batch_in = malloc((size_t)r->B * r->T * sizeof(int));
    r->batch_tg = malloc((size_t)r->B * r->T * sizeof(int));
    if (!r->batch_in || !r->batch_tg) {
        st = qkv__fail(QKV_ENOMEM, "train: out of memory");
        goto done;
    }
    if (resume) {
        if ((st = opt_load(r))) goto done;
        load_log(r, r->tr.step);
        info(r, "resuming %s at step %d of %d", opts->out_dir, r->tr.step, r->steps);
    }
    info(r, "model: %d layers, %d heads, embd %d, context %d, vocab %d: %.2f M parameters; "
         "batch %d x %d x accum %d = %d tokens/step; %d threads", cfg->n_layer, cfg->n_head,
         cfg->n_embd, cfg->n_ctx, cfg->vocab_size, (double)r->tr.n_params / 1e6, r->B, r->T,
         r->accum, r->B * r->T * r->accum, qkv_get_threads());

    double t_start = qkv__now(), ema_step = 0.0;
    int stop = 0, user_stop = 0, saved_at = r->tr.step, first_step = r->tr.step;
    qkv_train_progress p = {0};
    p.steps = r->steps;
    p.bits_per_byte = NAN;
    while (r->tr.step < r->steps && !stop) {
        double t0 = qkv__now();
        memset(r->tr.grads, 0, r->tr.n_params * sizeof(float));
        double loss_sum = 0.0;
        for (int m = 0; m < r->accum; m++) {
            next_batch(r);
            /* masks depend on (seed, step, micro-batch) only: resume replays them exactly */
            r->tr.acts.dropout = opts->dropout;
            r->tr.acts.dropout_key = opts->seed * 0x9E3779B97F4A7C15ULL ^
                                     ((uint64_t)r->tr.step << 20) ^ (uint64_t)m;
            float l;
            if ((st = qkv__trainer_micro(&r->tr, r->batch_in, r->batch_tg, r->B, r->T,
                                         1.0f / (float)r->accum, &l)))
                goto done;
            loss_sum += l;
        }
        float loss = (float)(loss_sum / r->accum);
        if (!isfinite(loss)) {
            st = qkv__fail(QKV_ERANGE, "train: the loss diverged (%g) at step %d; lower --lr",
                           (double)loss, r->tr.step + 1);
            goto done;
        }
        float lr = qkv__train_lr(r->tr.step, r->steps, r->warmup, opts->lr, opts->min_lr_frac);
        float norm = qkv__trainer_update(&r->tr, &r->adam, lr);
        double dt = qkv__now() - t0;
        ema_step = ema_step == 0.0 ? dt : 0.9 * ema_step + 0.1 * dt;
        double step_tokens = (double)r->B * r->T * r->accum;
        r->tokens_seen += step_tokens;
        double elapsed = r->elapsed_before + (qkv__now() - t_start);
        log_row row = {r->tr.step, r->tokens_seen, loss, NAN, lr, norm, elapsed, step_tokens / ema_step};
        p.step = r->tr.step;
        p.loss = loss;
        p.val_loss = NAN;
        p.lr = lr;
        p.grad_norm = norm;
        p.tokens_per_s = row.tok_s;
        p.elapsed_s = elapsed;
        p.remaining_s = (r->steps - r->tr.step) * ema_step;
        if (opts->minutes > 0) {
            double left = opts->minutes * 60.0 - (qkv__now() - t_start);
            if (left < p.remaining_s) p.remaining_s = left > 0 ? left : 0;
            if (left <= 0) stop = 1;
        }
        if (emit(r, QKV_TRAIN_STEP, &p, NULL)) stop = user_stop = 1;
        if (opts->stop_after > 0 && r->tr.step - first_step >= opts->stop_after) stop = 1;
        if (opts->eval_every > 0 && (r->tr.step % opts->eval_every == 0 || r->tr.step == r->steps)) {
            double vl;
            if ((st = evaluate(r, opts->eval_batches * r->B, &vl, NULL, NULL, NULL))) goto done;
            row.val_loss = vl;
            p.val_loss = (float)vl;
            if (emit(r, QKV_TRAIN_EVAL, &p, NULL)) stop = user_stop = 1;
        }
        add_row(r, &row);
        if (opts->save_every > 0 && r->tr.step % opts->save_every == 0) {
            if ((st = save(r, elapsed))) goto done;
            saved_at = r->tr.step;
            if (emit(r, QKV_TRAIN_SAVE, &p, opts->export_dir ? opts->export_dir : opts->out_dir))
                stop = user_stop = 1;
        }
    }
    double elapsed = r->elapsed_before + (qkv__now() - t_start);
    {
        char *mp = out_path(r, "model.safetensors");
        int have = mp && file_exists(mp);
        free(mp);
        if (saved_at != r->tr.step || !have) { /* the last step's checkpoint, once */
            if ((st = save(r, elapsed))) goto done;
            if (emit(r, QKV_TRAIN_SAVE, &p, opts->out_dir)) user_stop = 1;
        }
    }
    /* a run stopped by its caller (Ctrl-C) exits at once; `--resume` with the same --steps
     * finishes it, final evaluation included */
    if (opts->final_eval && !user_stop) {
        double vl, sum, bytes;
        size_t n_pred;
        if ((st = evaluate(r, 0, &vl, &sum, &bytes, &n_pred))) goto done;
        double bpb = (isfinite(bytes) && bytes > 0) ? sum / log(2.0) / bytes : NAN;
        char *ep = out_path(r, "eval.json");
        char js[512];
        int jn = snprintf(js, sizeof js, "{\"step\": %d, \"val_loss\": %.6f, \"bits_per_byte\": %.6f, "
                          "\"val_tokens\": %zu, \"val_bytes\": %.0f}\n", r->tr.step, vl,
                          isfinite(bpb) ? bpb : -1.0, n_pred, isfinite(bytes) ? bytes : -1.0);
        if (ep) st = qkv__write_file(ep, js, (size_t)jn);
        free(ep);
        if (st) goto done;
        if (opts->export_dir && (st = export_to(r, opts->export_dir))) goto done;
        p.val_loss = (float)vl;
        p.bits_per_byte = bpb;
        snprintf(r->msg, sizeof r->msg, "validation: %zu tokens, loss %.4f, %.4f bits per byte", n_pred,
                 vl, bpb);
        emit(r, QKV_TRAIN_DONE, &p, r->msg);
    }
done:
    qkv__trainer_free(&r->tr);
    qkv_model_free(r->model);
    qkv_tokenizer_free(r->tok);
    token_data_free(&r->data);
    free(r->rows);
    free(r->batch_in);
    free(r->batch_tg);
    return st;
}
