/*
 * gpt2_core.c -- the model object: parameter layout (gpt2.h), config.json, create/free,
 * the tensor table shared by the loader and the writer, and qkv__model_save.
 */
#include "model/model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- layout ------------------------------------------------------------------------- */

void qkv__param_sizes(const qkv_model_config *cfg, size_t sizes[QKV__N_KINDS]) {
    size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size,
           T = (size_t)cfg->n_ctx;
    sizes[0] = V * C;          /* wte */
    sizes[1] = T * C;          /* wpe */
    sizes[2] = L * C;          /* ln1_w */
    sizes[3] = L * C;          /* ln1_b */
    sizes[4] = L * C * 3 * C;  /* attn_w */
    sizes[5] = L * 3 * C;      /* attn_b */
    sizes[6] = L * C * C;      /* proj_w */
    sizes[7] = L * C;          /* proj_b */
    sizes[8] = L * C;          /* ln2_w */
    sizes[9] = L * C;          /* ln2_b */
    sizes[10] = L * C * 4 * C; /* fc_w */
    sizes[11] = L * 4 * C;     /* fc_b */
    sizes[12] = L * 4 * C * C; /* fcproj_w */
    sizes[13] = L * C;         /* fcproj_b */
    sizes[14] = C;             /* lnf_w */
    sizes[15] = C;             /* lnf_b */
}

void qkv__point_params(const qkv_model_config *cfg, float *block, qkv__params *p) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    float **ptrs[QKV__N_KINDS] = {&p->wte,   &p->wpe,    &p->ln1_w, &p->ln1_b,
                                         &p->attn_w, &p->attn_b, &p->proj_w, &p->proj_b,
                                         &p->ln2_w, &p->ln2_b,  &p->fc_w,  &p->fc_b,
                                         &p->fcproj_w, &p->fcproj_b, &p->lnf_w, &p->lnf_b};
    float *at = block;
    for (int i = 0; i < QKV__N_KINDS; i++) {
        *ptrs[i] = at;
        at += sizes[i];
    }
}

/* Limits: generous for any GPT-2-family model, small enough that every size product below
 * fits easily in 64 bits and no int overflows (n_ctx * n_embd, vocab * n_embd, ...). */
#define LIM_LAYER 1024
#define LIM_HEAD 1024
#define LIM_EMBD 65536
#define LIM_CTX (1 << 20)
#define LIM_VOCAB (1 << 24)
#define LIM_PARAMS ((size_t)1 << 36) /* 64 G floats */

qkv_status qkv__check_config(const qkv_model_config *cfg) {
    if (!cfg) return qkv__fail(QKV_EINVAL, "model config: NULL");
    if (cfg->n_layer < 1 || cfg->n_layer > LIM_LAYER)
        return qkv__fail(QKV_ERANGE, "model config: n_layer %d outside [1, %d]", cfg->n_layer, LIM_LAYER);
    if (cfg->n_head < 1 || cfg->n_head > LIM_HEAD)
        return qkv__fail(QKV_ERANGE, "model config: n_head %d outside [1, %d]", cfg->n_head, LIM_HEAD);
    if (cfg->n_embd < 1 || cfg->n_embd > LIM_EMBD)
        return qkv__fail(QKV_ERANGE, "model config: n_embd %d outside [1, %d]", cfg->n_embd, LIM_EMBD);
    if (cfg->n_embd % cfg->n_head != 0)
        return qkv__fail(QKV_ESHAPE, "model config: n_embd %d is not a multiple of n_head %d",
                         cfg->n_embd, cfg->n_head);
    if (cfg->n_embd / cfg->n_head > 256)
        return qkv__fail(QKV_EUNSUPPORTED, "model config: head size %d > 256 (n_embd %d / n_head %d)",
                         cfg->n_embd / cfg->n_head, cfg->n_embd, cfg->n_head);
    if (cfg->n_ctx < 1 || cfg->n_ctx > LIM_CTX)
        return qkv__fail(QKV_ERANGE, "model config: n_positions %d outside [1, %d]", cfg->n_ctx, LIM_CTX);
    if (cfg->vocab_size < 1 || cfg->vocab_size > LIM_VOCAB)
        return qkv__fail(QKV_ERANGE, "model config: vocab_size %d outside [1, %d]", cfg->vocab_size,
                         LIM_VOCAB);
    if (!(cfg->layer_norm_eps > 0.0f) || !(cfg->layer_norm_eps < 1.0f))
        return qkv__fail(QKV_ERANGE, "model config: layer_norm_epsilon %g outside (0, 1)",
                         (double)cfg->layer_norm_eps);
    size_t sizes[QKV__N_KINDS], total = 0;
    qkv__param_sizes(cfg, sizes);
    for (int i = 0; i < QKV__N_KINDS; i++) total += sizes[i]; /* limits above: no overflow */
    if (total > LIM_PARAMS)
        return qkv__fail(QKV_ERANGE, "model config: %zu parameters, more than the limit %zu", total,
                         LIM_PARAMS);
    return QKV_OK;
}

/* ---- the object --------------------------------------------------------------------- */

/* Parameters: 2 MB aligned and marked for transparent huge pages, so streaming the weights
 * (every generated token reads all of them) does not miss the TLB every 4 KB. Freed with
 * free() like qkv__alloc_aligned memory. */
float *qkv__alloc_params(size_t n_floats) {
    size_t bytes, align = (size_t)2 << 20;
    if (!qkv__mul_size(n_floats ? n_floats : 1, sizeof(float), &bytes)) return NULL;
    if (bytes < align) return qkv__alloc_aligned(bytes);
    size_t rounded;
    if (!qkv__add_size(bytes, align - 1, &rounded)) return NULL;
    rounded &= ~(align - 1);
    void *p = aligned_alloc(align, rounded);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

qkv_status qkv__model_create(const qkv_model_config *cfg, qkv_model **out) {
    *out = NULL;
    qkv_status st = qkv__check_config(cfg);
    if (st) return st;
    qkv_model *m = calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    for (int i = 0; i < QKV__N_KINDS; i++) m->n_block += sizes[i];
    m->block = qkv__alloc_params(m->n_block);
    if (!m->block) {
        size_t n = m->n_block;
        free(m);
        return qkv__fail(QKV_ENOMEM, "model: cannot allocate %zu parameters (%.1f MB)", n,
                         (double)n * 4e-6);
    }
    memset(m->block, 0, m->n_block * sizeof(float));
    qkv__point_params(cfg, m->block, &m->p);
    snprintf(m->name, sizeof m->name, "gpt2");
    *out = m;
    return QKV_OK;
}

void qkv_model_free(qkv_model *model) {
    if (!model) return;
    qkv__free_aligned(model->block);
    qkv__free_aligned(model->lm_head);
    qkv__free_aligned(model->bf16);
    if (model->tok && model->free_tok) model->free_tok(model->tok);
    free(model);
}

const qkv_model_config *qkv_model_get_config(const qkv_model *model) { return &model->cfg; }
qkv_tokenizer *qkv_model_tokenizer(const qkv_model *model) { return model->tok; }
const char *qkv_model_name(const qkv_model *model) { return model->name; }

size_t qkv_model_n_params(const qkv_model *model) {
    size_t n = model->n_block;
    if (model->lm_head) n += (size_t)model->cfg.vocab_size * (size_t)model->cfg.n_embd;
    return n;
}

float *qkv__model_params_block(qkv_model *model, size_t *n_params) {
    if (n_params) *n_params = model->n_block;
    return model->block;
}

qkv__params *qkv__model_params(qkv_model *model) { return &model->p; }


/* ---- config.json -------------------------------------------------------------------- */

/* An integer key: absent -> *v unchanged (the default); present -> must be an integer in
 * [1, lim]. */
static qkv_status cfg_int(json_t *root, const char *key, int lim, const char *path, int *v,
                          int *present) {
    json_t *j = json_object_get(root, key);
    if (present) *present = 0;
    if (!j || json_is_null(j)) return QKV_OK;
    if (!json_is_integer(j))
        return qkv__fail(QKV_EFORMAT, "%s: \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(j);
    if (x < 1 || x > lim)
        return qkv__fail(QKV_ERANGE, "%s: \"%s\" = %lld outside [1, %d]", path, key, (long long)x, lim);
    *v = (int)x;
    if (present) *present = 1;
    return QKV_OK;
}

qkv_status qkv__gpt2_parse_config(const char *text, size_t len, const char *path,
                                  qkv_model_config *cfg) {
    /* GPT2Config's defaults: GPT-2 small. */
    *cfg = (qkv_model_config){.n_layer = 12, .n_head = 12, .n_embd = 768, .n_ctx = 1024,
                              .vocab_size = 50257, .layer_norm_eps = 1e-5f};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
    qkv_status st = QKV_OK;
    if (!json_is_object(root)) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a JSON object", path);
        goto done;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && !(json_is_string(mt) && !strcmp(json_string_value(mt), "gpt2"))) {
        st = qkv__fail(QKV_EUNSUPPORTED, "%s: model_type must be \"gpt2\"", path);
        goto done;
    }
    json_t *act = json_object_get(root, "activation_function");
    if (act) {
        const char *a = json_is_string(act) ? json_string_value(act) : "";
        if (strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh")) {
            st = qkv__fail(QKV_EUNSUPPORTED,
                           "%s: activation_function \"%s\" not supported (GPT-2's tanh GELU "
                           "\"gelu_new\" only)", path, a);
            goto done;
        }
    }
    int has_pos = 0, has_ctx = 0, n_ctx_key = 0;
    if ((st = cfg_int(root, "n_layer", LIM_LAYER, path, &cfg->n_layer, NULL)) ||
        (st = cfg_int(root, "n_head", LIM_HEAD, path, &cfg->n_head, NULL)) ||
        (st = cfg_int(root, "n_embd", LIM_EMBD, path, &cfg->n_embd, NULL)) ||
        (st = cfg_int(root, "vocab_size", LIM_VOCAB, path, &cfg->vocab_size, NULL)) ||
        (st = cfg_int(root, "n_positions", LIM_CTX, path, &cfg->n_ctx, &has_pos)) ||
        (st = cfg_int(root, "n_ctx", LIM_CTX, path, &n_ctx_key, &has_ctx)))
        goto done;
    /* HF sizes wpe by n_positions; very old configs carry only n_ctx. */
    if (!has_pos && has_ctx) cfg->n_ctx = n_ctx_key;
    json_t *inner = json_object_get(root, "n_inner");
    if (inner && !json_is_null(inner) &&
        !(json_is_integer(inner) && json_integer_value(inner) == 4 * (json_int_t)cfg->n_embd)) {
        st = qkv__fail(QKV_EUNSUPPORTED, "%s: n_inner must be null or 4 * n_embd", path);
        goto done;
    }
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    if (eps && !json_is_null(eps)) {
        if (!json_is_number(eps)) {
            st = qkv__fail(QKV_EFORMAT, "%s: \"layer_norm_epsilon\" must be a number", path);
            goto done;
        }
        double e = json_number_value(eps);
        if (!(e > 0.0 && e < 1.0)) {
            st = qkv__fail(QKV_ERANGE, "%s: layer_norm_epsilon %g outside (0, 1)", path, e);
            goto done;
        }
        cfg->layer_norm_eps = (float)e;
    }
    /* Variants GPT-2's forward pass here does not implement. */
    static const struct { const char *key; int want; } flags[] = {
        {"scale_attn_weights", 1}, {"scale_attn_by_inverse_layer_idx", 0},
        {"reorder_and_upcast_attn", 0}, {"add_cross_attention", 0}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        json_t *f = json_object_get(root, flags[i].key);
        if (f && json_is_boolean(f) && json_is_true(f) != flags[i].want) {
            st = qkv__fail(QKV_EUNSUPPORTED, "%s: %s = %s is not supported", path, flags[i].key,
                           flags[i].want ? "false" : "true");
            goto done;
        }
    }
    st = qkv__check_config(cfg);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qkv_last_error());
        st = qkv__fail(st, "%s: %s", path, msg);
    }
done:
    json_decref(root);
    return st;
}

/* ---- writer --------------------------------------------------------------------------- */

static qkv_status write_config(const qkv_model *m, const char *path) {
    const qkv_model_config *c = &m->cfg;
    json_t *o = json_object();
    json_t *arch = json_array();
    if (!o || !arch) {
        json_decref(o);
        json_decref(arch);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    json_array_append_new(arch, json_string("GPT2LMHeadModel"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("gpt2"));
    json_object_set_new(o, "activation_function", json_string("gelu_new"));
    json_object_set_new(o, "n_layer", json_integer(c->n_layer));
    json_object_set_new(o, "n_head", json_integer(c->n_head));
    json_object_set_new(o, "n_embd", json_integer(c->n_embd));
    json_object_set_new(o, "n_positions", json_integer(c->n_ctx));
    json_object_set_new(o, "n_ctx", json_integer(c->n_ctx));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "layer_norm_epsilon", json_real(c->layer_norm_eps));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(m->lm_head == NULL));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    s[n] = '\n'; /* replace the NUL: the file ends with a newline */
    qkv_status st = qkv__write_file(path, s, n + 1);
    free(s);
    return st;
}

qkv_status qkv__model_save(const qkv_model *model, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return qkv__fail(QKV_EIO, "%s: cannot create folder: %s", dir, strerror(errno));
    char *cpath = qkv__path_join(dir, "config.json");
    char *spath = qkv__path_join(dir, "model.safetensors");
    char *tmp = spath ? malloc(strlen(spath) + 32) : NULL;
    qkv_status st = QKV_OK;
    json_t *hdr = NULL;
    char *hs = NULL;
    FILE *f = NULL;
    qkv__tensor_entry *ents = NULL;
    if (!cpath || !spath || !tmp) {
        st = qkv__fail(QKV_ENOMEM, "save: out of memory");
        goto done;
    }
    if ((st = write_config(model, cpath))) goto done;

    ents = malloc(sizeof *ents * (size_t)qkv__n_entries(model));
    if (!ents) {
        st = qkv__fail(QKV_ENOMEM, "save: out of memory");
        goto done;
    }
    int n_ent = qkv__tensor_table(model, ents);
    hdr = json_object();
    size_t off = 0;
    for (int i = 0; i < n_ent; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < ents[i].ndim; d++) json_array_append_new(shape, json_integer(ents[i].shape[d]));
        size_t bytes = ents[i].count * sizeof(float);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        char name[96] = "transformer.";
        strcpy(ents[i].untied ? name : name + strlen(name), ents[i].name); /* names < 64 bytes */
        json_object_set_new(hdr, name, e);
        off += bytes;
    }
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    hs = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hs) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", spath);
        goto done;
    }
    size_t hlen = strlen(hs), padded = (hlen + 7) & ~(size_t)7; /* data starts 8-aligned */
    snprintf(tmp, strlen(spath) + 32, "%s.tmp%ld", spath, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f) {
        st = qkv__fail(QKV_EIO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(hs, 1, hlen, f) != hlen;
    for (size_t i = hlen; i < padded && !bad; i++) bad = fputc(' ', f) == EOF;
    for (int i = 0; i < n_ent && !bad; i++)
        bad = fwrite(ents[i].data, sizeof(float), ents[i].count, f) != ents[i].count;
    bad |= fflush(f) != 0;
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad || rename(tmp, spath) != 0) {
        st = qkv__fail(QKV_EIO, "%s: cannot write: %s", spath, strerror(errno));
        remove(tmp);
    }
done:
    if (f) {
        fclose(f);
        remove(tmp);
    }
    free(hs);
    free(ents);
    json_decref(hdr);
    free(cpath);
    free(spath);
    free(tmp);
    return st;
}

/* ---- tensor table --------------------------------------------------------------------- */

static void ent(qkv__tensor_entry *e, const char *name, float *data, int64_t d0, int64_t d1) {
    snprintf(e->name, sizeof e->name, "%s", name);
    e->data = data;
    e->ndim = d1 ? 2 : 1;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->count = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    e->untied = 0;
}

int qkv__n_entries(const qkv_model *m) { return 4 + 12 * m->cfg.n_layer + (m->lm_head != NULL); }

int qkv__tensor_table(const qkv_model *m, qkv__tensor_entry *ents) {
    const qkv_model_config *c = &m->cfg;
    const qkv__params *p = &m->p;
    int64_t C = c->n_embd;
    size_t uC = (size_t)C;
    int n = 0;
    ent(&ents[n++], "wte.weight", p->wte, c->vocab_size, C);
    ent(&ents[n++], "wpe.weight", p->wpe, c->n_ctx, C);
    for (int l = 0; l < c->n_layer; l++) {
        size_t L = (size_t)l;
        char nm[64];
#define E(suffix, ptr, d0, d1)                             \
    snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);         \
    ent(&ents[n++], nm, ptr, d0, d1)
        E("ln_1.weight", p->ln1_w + L * uC, C, 0);
        E("ln_1.bias", p->ln1_b + L * uC, C, 0);
        E("attn.c_attn.weight", p->attn_w + L * uC * 3 * uC, C, 3 * C);
        E("attn.c_attn.bias", p->attn_b + L * 3 * uC, 3 * C, 0);
        E("attn.c_proj.weight", p->proj_w + L * uC * uC, C, C);
        E("attn.c_proj.bias", p->proj_b + L * uC, C, 0);
        E("ln_2.weight", p->ln2_w + L * uC, C, 0);
        E("ln_2.bias", p->ln2_b + L * uC, C, 0);
        E("mlp.c_fc.weight", p->fc_w + L * uC * 4 * uC, C, 4 * C);
        E("mlp.c_fc.bias", p->fc_b + L * 4 * uC, 4 * C, 0);
        E("mlp.c_proj.weight", p->fcproj_w + L * 4 * uC * uC, 4 * C, C);
        E("mlp.c_proj.bias", p->fcproj_b + L * uC, C, 0);
#undef E
    }
    ent(&ents[n++], "ln_f.weight", p->lnf_w, C, 0);
    ent(&ents[n++], "ln_f.bias", p->lnf_b, C, 0);
    if (m->lm_head) {
        ent(&ents[n], "lm_head.weight", m->lm_head, c->vocab_size, C);
        ents[n++].untied = 1;
    }
    return n;
}
