/*
 * llama2c.c -- karpathy/llama2.c checkpoints as a qkv__tensor_src (HF names and layout) and a
 * qkv_model_config.
 *
 * Three layouts, all little-endian, memory-mapped and checked against the file size with
 * checked arithmetic before any tensor is pointed at:
 *
 *   legacy (run.c reads it; export.py legacy_export): 7 x int32 header
 *       dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *     (vocab_size < 0: an unshared classifier follows), then float32, each kind for every
 *     layer at once: tok_embeddings [V, C], rms_att [L, C], wq [L, C, C], wk [L, KVd, C],
 *     wv [L, KVd, C], wo [L, C, C], rms_ffn [L, C], w1 [L, F, C], w2 [L, C, F], w3 [L, F, C],
 *     rms_final [C], freq_cis_real and _imag [T, hs/2] each (unused), wcls [V, C] if unshared.
 *   version 1 (export.py version1_export): uint32 magic 0x616b3432 ("ak42"), int32 version 1,
 *     the 7 int32, uint8 shared_classifier, zeros to byte 256; then float32: attention_norm x L,
 *     ffn_norm x L, norm, tok_embeddings, wq x L, wk x L, wv x L, wo x L, w1 x L, w2 x L,
 *     w3 x L, output (if not shared).
 *   version 2 (export.py version2_export, what runq.c reads): as version 1, plus int32
 *     group_size right after the flag (byte 37); float32 norms (attention x L, ffn x L, final),
 *     then per weight (tok_embeddings, wq x L, ..., w3 x L, output if not shared): int8 values,
 *     then float32 scales, one per group of group_size. Read as q * scale (runq.c's
 *     dequantize), so the values are exactly the quantised model's.
 *
 * Every matrix is an nn.Linear weight [out, in] already, as HF stores them. Q and K rows keep
 * Meta's interleaved RoPE order (run.c rotates pairs (2i, 2i+1)): the config says
 * rope_interleaved = 1 rather than the rows being permuted to HF's halves.
 */
#include "model/sources.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L2C_MAGIC 0x616b3432u /* "ak42" read as a little-endian uint32 */
#define L2C_V12_HEADER 256
#define L2C_LEGACY_HEADER 28

/* caps as in hf_config.c */
#define LIM_LAYER 1024
#define LIM_HEAD 1024
#define LIM_EMBD 65536
#define LIM_FF (1 << 20)
#define LIM_CTX (1 << 20)
#define LIM_VOCAB (1 << 24)
#define LIM_HEAD_DIM 256

typedef struct l2c_tensor {
    char name[64];
    int ndim;
    int64_t shape[2];
    uint64_t count;
    const uint8_t *data;   /* float32, or int8 (Q8_0) */
    const uint8_t *scales; /* Q8_0: float32, count / group_size of them; else NULL */
} l2c_tensor;

typedef struct l2c_file {
    qkv__mmap map;
    char *path;
    size_t header;       /* bytes before the tensors */
    int group_size;      /* Q8_0 (version 2), else 0 */
    int n;
    l2c_tensor *t;       /* sorted by name */
} l2c_file;

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const l2c_tensor *)a)->name, ((const l2c_tensor *)b)->name);
}

static const l2c_tensor *l2c_find(const l2c_file *f, const char *name) {
    l2c_tensor key;
    snprintf(key.name, sizeof key.name, "%s", name);
    if (strlen(name) >= sizeof key.name) return NULL;
    return bsearch(&key, f->t, (size_t)f->n, sizeof *f->t, cmp_tensor);
}

static void l2c_close(void *ctx) {
    l2c_file *f = ctx;
    if (!f) return;
    qkv__mmap_close(&f->map);
    free(f->t);
    free(f->path);
    free(f);
}

static int l2c_shape(void *ctx, const char *name, int *ndim, int64_t shape[QKV__ST_MAX_DIMS]) {
    const l2c_tensor *t = l2c_find(ctx, name);
    if (!t) return 0;
    *ndim = t->ndim;
    for (int d = 0; d < QKV__ST_MAX_DIMS; d++) shape[d] = d < t->ndim ? t->shape[d] : 0;
    return 1;
}

static qkv_status l2c_read(void *ctx, const char *name, float *dst) {
    const l2c_file *f = ctx;
    const l2c_tensor *t = l2c_find(f, name);
    if (!t) return qkv__fail(QKV_ENOTFOUND, "%s: no tensor %s", f->path, name);
    if (!t->scales) {
        memcpy(dst, t->data, (size_t)t->count * sizeof(float)); /* little-endian, as the file */
        return QKV_OK;
    }
    const int8_t *q = (const int8_t *)t->data;
    size_t gs = (size_t)f->group_size;
    for (size_t g = 0; g < (size_t)t->count / gs; g++) {
        float s;
        memcpy(&s, t->scales + 4 * g, 4); /* scales follow int8 data: not 4-aligned */
        for (size_t i = 0; i < gs; i++) dst[g * gs + i] = (float)q[g * gs + i] * s;
    }
    return QKV_OK;
}

/* The bytes after the header: float32 tensors (4 per value), or Q8_0 (1 + 4 / group_size per
 * value) for version 2. */
static uint64_t l2c_bytes(void *ctx) {
    const l2c_file *f = ctx;
    return (uint64_t)(f->map.size - f->header);
}

static int32_t rd_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/* ---- the layout ------------------------------------------------------------------------ */

/* The tensor kinds, in HF names; dims filled from the header. */
enum { K_EMB, K_ATT_NORM, K_Q, K_K, K_V, K_O, K_FFN_NORM, K_GATE, K_DOWN, K_UP, K_NORM, K_CLS, K_N };

typedef struct l2c_dims {
    int64_t C, F, L, H, KV, V, T, hs;
} l2c_dims;

static void kind_shape(const l2c_dims *d, int kind, int *ndim, int64_t shape[2]) {
    int64_t qd = d->H * d->hs, kd = d->KV * d->hs;
    static const int one_d[K_N] = {[K_ATT_NORM] = 1, [K_FFN_NORM] = 1, [K_NORM] = 1};
    int64_t s[K_N][2] = {
        [K_EMB] = {d->V, d->C}, [K_ATT_NORM] = {d->C, 0}, [K_Q] = {qd, d->C},
        [K_K] = {kd, d->C},     [K_V] = {kd, d->C},       [K_O] = {d->C, qd},
        [K_FFN_NORM] = {d->C, 0}, [K_GATE] = {d->F, d->C}, [K_DOWN] = {d->C, d->F},
        [K_UP] = {d->F, d->C},  [K_NORM] = {d->C, 0},     [K_CLS] = {d->V, d->C}};
    *ndim = one_d[kind] ? 1 : 2;
    shape[0] = s[kind][0];
    shape[1] = s[kind][1];
}

static void kind_name(int kind, int layer, char name[64]) {
    static const char *fmt[K_N] = {
        [K_EMB] = "model.embed_tokens.weight",
        [K_ATT_NORM] = "model.layers.%d.input_layernorm.weight",
        [K_Q] = "model.layers.%d.self_attn.q_proj.weight",
        [K_K] = "model.layers.%d.self_attn.k_proj.weight",
        [K_V] = "model.layers.%d.self_attn.v_proj.weight",
        [K_O] = "model.layers.%d.self_attn.o_proj.weight",
        [K_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
        [K_GATE] = "model.layers.%d.mlp.gate_proj.weight",
        [K_DOWN] = "model.layers.%d.mlp.down_proj.weight",
        [K_UP] = "model.layers.%d.mlp.up_proj.weight",
        [K_NORM] = "model.norm.weight",
        [K_CLS] = "lm_head.weight"};
    snprintf(name, 64, fmt[kind], layer);
}

static int per_layer(int kind) { return kind != K_EMB && kind != K_NORM && kind != K_CLS; }

/* A cursor over the file: each take() claims the next bytes, refusing to run past the end. */
typedef struct cursor {
    const l2c_file *f;
    uint64_t at;
    int overflow;
} cursor;

static const uint8_t *take(cursor *c, uint64_t count, uint64_t elem) {
    uint64_t bytes;
    size_t b;
    if (c->overflow || !qkv__mul_size((size_t)count, (size_t)elem, &b)) {
        c->overflow = 1;
        return NULL;
    }
    bytes = b;
    if (bytes > c->f->map.size - c->at) {
        c->overflow = 1;
        return NULL;
    }
    const uint8_t *p = c->f->map.data + c->at;
    c->at += bytes;
    return p;
}

/* Appends the L tensors of a per-layer kind (or the one of a global kind), one after another
 * (the legacy [L, ...] block is the same bytes): float32, or Q8_0 (int8 then scales, per
 * tensor) when q8. */
static void add_kind(l2c_file *f, cursor *c, const l2c_dims *d, int kind, int q8) {
    int n_l = per_layer(kind) ? (int)d->L : 1;
    for (int l = 0; l < n_l; l++) {
        l2c_tensor *t = &f->t[f->n++];
        kind_name(kind, l, t->name);
        kind_shape(d, kind, &t->ndim, t->shape);
        t->count = (uint64_t)t->shape[0] * (uint64_t)(t->ndim == 2 ? t->shape[1] : 1);
        if (q8) {
            t->data = take(c, t->count, 1);
            t->scales = take(c, t->count / (uint64_t)f->group_size, 4);
        } else {
            t->data = take(c, t->count, 4);
            t->scales = NULL;
        }
    }
}

/* ---- open ------------------------------------------------------------------------------ */

static qkv_status check_dim(const char *path, const char *what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return qkv__fail(QKV_ERANGE, "%s: llama2.c header: %s = %lld outside [%lld, %lld]", path, what,
                         (long long)v, (long long)lo, (long long)hi);
    return QKV_OK;
}

qkv_status qkv__llama2c_open(const char *path, qkv_model_config *cfg, qkv__tensor_src *src) {
    memset(src, 0, sizeof *src);
    memset(cfg, 0, sizeof *cfg);
    if (!path) return qkv__fail(QKV_EINVAL, "model: no llama2.c checkpoint given");
    l2c_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        l2c_close(f);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    qkv_status st = qkv__mmap_open(path, &f->map);
    if (st) goto fail;
    const uint8_t *b = f->map.data;
    size_t size = f->map.size;
    int version = 0, shared = 1;
    size_t hdr = L2C_LEGACY_HEADER;
    const uint8_t *p7;
    if (size >= 8 && (uint32_t)rd_i32(b) == L2C_MAGIC) {
        version = rd_i32(b + 4);
        if (version != 1 && version != 2) {
            st = qkv__fail(QKV_EUNSUPPORTED, "%s: llama2.c export version %d is not supported (the "
                           "legacy header, version 1 fp32 and version 2 Q8_0 are)", path, version);
            goto fail;
        }
        if (size < L2C_V12_HEADER) {
            st = qkv__fail(QKV_EFORMAT, "%s: %zu bytes, shorter than the 256-byte llama2.c version %d "
                           "header", path, size, version);
            goto fail;
        }
        hdr = L2C_V12_HEADER;
        p7 = b + 8;
        if (b[36] > 1) {
            st = qkv__fail(QKV_EFORMAT, "%s: llama2.c header: shared_classifier byte %d (0 or 1)", path,
                           b[36]);
            goto fail;
        }
        shared = b[36];
        if (version == 2) f->group_size = rd_i32(b + 37);
    } else {
        if (size < L2C_LEGACY_HEADER) {
            st = qkv__fail(QKV_EFORMAT, "%s: %zu bytes, too short for a llama2.c checkpoint", path, size);
            goto fail;
        }
        p7 = b;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = rd_i32(p7 + 4 * i);
    int64_t vocab = h[5];
    if (version == 0) {
        shared = vocab > 0; /* run.c: a negative vocab_size means an unshared classifier */
        vocab = vocab < 0 ? -vocab : vocab;
    }
    l2c_dims d = {.C = h[0], .F = h[1], .L = h[2], .H = h[3], .KV = h[4], .V = vocab, .T = h[6]};
    if ((st = check_dim(path, "dim", d.C, 1, LIM_EMBD)) ||
        (st = check_dim(path, "hidden_dim", d.F, 1, LIM_FF)) ||
        (st = check_dim(path, "n_layers", d.L, 1, LIM_LAYER)) ||
        (st = check_dim(path, "n_heads", d.H, 1, LIM_HEAD)) ||
        (st = check_dim(path, "n_kv_heads", d.KV, 1, LIM_HEAD)) ||
        (st = check_dim(path, "vocab_size", d.V, 1, LIM_VOCAB)) ||
        (st = check_dim(path, "seq_len", d.T, 1, LIM_CTX)))
        goto fail;
    if (d.C % d.H) {
        st = qkv__fail(QKV_ESHAPE, "%s: llama2.c header: dim %lld is not a multiple of n_heads %lld",
                       path, (long long)d.C, (long long)d.H);
        goto fail;
    }
    if (d.H % d.KV) {
        st = qkv__fail(QKV_ESHAPE, "%s: llama2.c header: n_kv_heads %lld does not divide n_heads %lld",
                       path, (long long)d.KV, (long long)d.H);
        goto fail;
    }
    d.hs = d.C / d.H;
    if (d.hs % 2 || d.hs > LIM_HEAD_DIM) {
        st = qkv__fail(QKV_EUNSUPPORTED, "%s: llama2.c header: head size %lld (dim / n_heads) must be "
                       "even and at most %d", path, (long long)d.hs, LIM_HEAD_DIM);
        goto fail;
    }
    if (version == 2 && (f->group_size < 1 || d.C % f->group_size)) {
        st = qkv__fail(QKV_EFORMAT, "%s: llama2.c version 2 header: group_size %d does not divide "
                       "dim %lld", path, f->group_size, (long long)d.C);
        goto fail;
    }

    /* the tensor table: the layout's order, checked against the file as it goes */
    int n_max = (int)(K_N * d.L + 3);
    f->t = calloc((size_t)n_max, sizeof *f->t);
    if (!f->t) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    f->header = hdr;
    cursor c = {f, hdr, 0};
    if (version == 0) {
        static const int order[] = {K_EMB, K_ATT_NORM, K_Q, K_K, K_V, K_O, K_FFN_NORM,
                                    K_GATE, K_DOWN, K_UP, K_NORM};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) add_kind(f, &c, &d, order[i], 0);
        take(&c, (uint64_t)d.T * (uint64_t)(d.hs / 2), 4); /* freq_cis_real: unused */
        take(&c, (uint64_t)d.T * (uint64_t)(d.hs / 2), 4); /* freq_cis_imag: unused */
        if (!shared) add_kind(f, &c, &d, K_CLS, 0);
    } else {
        add_kind(f, &c, &d, K_ATT_NORM, 0);
        add_kind(f, &c, &d, K_FFN_NORM, 0);
        add_kind(f, &c, &d, K_NORM, 0);
        int q8 = version == 2;
        static const int order[] = {K_EMB, K_Q, K_K, K_V, K_O, K_GATE, K_DOWN, K_UP};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            if (q8) {
                /* export.py asserts each weight's numel is a multiple of the group size */
                int nd;
                int64_t s[2];
                kind_shape(&d, order[i], &nd, s);
                if (((uint64_t)s[0] * (uint64_t)s[1]) % (uint64_t)f->group_size) {
                    st = qkv__fail(QKV_EFORMAT, "%s: llama2.c version 2: a [%lld, %lld] weight is not "
                                   "a whole number of groups of %d", path, (long long)s[0],
                                   (long long)s[1], f->group_size);
                    goto fail;
                }
            }
            add_kind(f, &c, &d, order[i], q8);
        }
        if (!shared) add_kind(f, &c, &d, K_CLS, q8);
    }
    if (c.overflow || c.at != size) {
        /* the size the header implies, for the message (each term below the caps: no overflow) */
        st = qkv__fail(QKV_EFORMAT, "%s: %zu bytes, but the llama2.c %s header (dim %lld, hidden_dim "
                       "%lld, n_layers %lld, n_heads %lld, n_kv_heads %lld, vocab_size %lld%s, seq_len "
                       "%lld) describes %s bytes", path, size,
                       version == 0 ? "legacy" : version == 1 ? "version 1" : "version 2",
                       (long long)d.C, (long long)d.F, (long long)d.L, (long long)d.H, (long long)d.KV,
                       (long long)d.V, shared ? "" : ", unshared classifier", (long long)d.T,
                       c.overflow ? "more" : "fewer");
        goto fail;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_tensor);

    snprintf(cfg->family, sizeof cfg->family, "llama");
    cfg->n_layer = (int)d.L;
    cfg->n_head = (int)d.H;
    cfg->n_embd = (int)d.C;
    cfg->n_ctx = (int)d.T;
    cfg->vocab_size = (int)d.V;
    cfg->layer_norm_eps = 1e-5f; /* run.c's rmsnorm */
    cfg->n_kv_head = (int)d.KV;
    cfg->head_dim = (int)d.hs;
    cfg->n_ff = (int)d.F;
    cfg->norm = QKV_NORM_RMS;
    cfg->mlp = QKV_MLP_SWIGLU;
    cfg->pos = QKV_POS_ROPE;
    cfg->bias = QKV_BIAS_NONE;
    cfg->qk_norm = 0;
    cfg->untied = !shared;
    cfg->attn_scale = 1.0f / sqrtf((float)d.hs);
    cfg->rope_theta = 10000.0f;
    cfg->rope_dim = (int)d.hs;
    cfg->rope_interleaved = 1;
    cfg->rope_factor = cfg->rope_low_freq_factor = cfg->rope_high_freq_factor = 0.0f;
    cfg->rope_orig_ctx = 0;

    src->path = f->path;
    src->ctx = f;
    src->shape = l2c_shape;
    src->read = l2c_read;
    src->file_bytes = l2c_bytes;
    src->close = l2c_close;
    return QKV_OK;
fail:
    l2c_close(f);
    memset(cfg, 0, sizeof *cfg);
    return st;
}
