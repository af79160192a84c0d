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
    qkv__dims m = qkv__dims_of(cfg);
    size_t L = (size_t)cfg->n_layer, C = (size_t)m.C, V = (size_t)cfg->vocab_size,
           T = (size_t)cfg->n_ctx, W = (size_t)m.W, F = (size_t)m.F, F2 = (size_t)m.F2;
    int ln = cfg->norm == QKV_NORM_LAYER, all = cfg->bias == QKV_BIAS_ALL;
    sizes[QKV__P_WTE] = V * C;
    sizes[QKV__P_WPE] = cfg->pos == QKV_POS_LEARNED ? T * C : 0;
    sizes[QKV__P_LN1_W] = L * C;
    sizes[QKV__P_LN1_B] = ln ? L * C : 0;
    sizes[QKV__P_ATTN_W] = L * C * W;
    sizes[QKV__P_ATTN_B] = cfg->bias != QKV_BIAS_NONE ? L * W : 0;
    sizes[QKV__P_PROJ_W] = L * (size_t)m.Hd * C;
    sizes[QKV__P_PROJ_B] = all ? L * C : 0;
    sizes[QKV__P_LN2_W] = L * C;
    sizes[QKV__P_LN2_B] = ln ? L * C : 0;
    sizes[QKV__P_FC_W] = L * C * F2;
    sizes[QKV__P_FC_B] = all ? L * F2 : 0;
    sizes[QKV__P_FCPROJ_W] = L * F * C;
    sizes[QKV__P_FCPROJ_B] = all ? L * C : 0;
    sizes[QKV__P_LNF_W] = C;
    sizes[QKV__P_LNF_B] = ln ? C : 0;
    sizes[QKV__P_QN_W] = cfg->qk_norm ? L * (size_t)m.d : 0;
    sizes[QKV__P_KN_W] = cfg->qk_norm ? L * (size_t)m.d : 0;
    sizes[QKV__P_LM_HEAD] = cfg->untied ? V * C : 0;
}

void qkv__point_params(const qkv_model_config *cfg, float *block, qkv__params *p) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    float **ptrs = (float **)p; /* the struct is QKV__N_KINDS pointers in kind order */
    float *at = block;
    for (int i = 0; i < QKV__N_KINDS; i++) {
        ptrs[i] = sizes[i] ? at : NULL;
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

static const char *const families[] = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};

qkv_status qkv__check_config(qkv_model_config *cfg) {
    if (!cfg) return qkv__fail(QKV_EINVAL, "model config: NULL");
    if (!cfg->family[0]) snprintf(cfg->family, sizeof cfg->family, "gpt2");
    int known = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        known |= !strncmp(cfg->family, families[i], sizeof cfg->family);
    if (!known || !memchr(cfg->family, 0, sizeof cfg->family))
        return qkv__fail(QKV_EUNSUPPORTED, "model config: family \"%.15s\" is not one of gpt2, llama, "
                         "mistral, qwen2, qwen3", cfg->family);
    if (cfg->n_layer < 1 || cfg->n_layer > LIM_LAYER)
        return qkv__fail(QKV_ERANGE, "model config: n_layer %d outside [1, %d]", cfg->n_layer, LIM_LAYER);
    if (cfg->n_head < 1 || cfg->n_head > LIM_HEAD)
        return qkv__fail(QKV_ERANGE, "model config: n_head %d outside [1, %d]", cfg->n_head, LIM_HEAD);
    if (cfg->n_embd < 1 || cfg->n_embd > LIM_EMBD)
        return qkv__fail(QKV_ERANGE, "model config: n_embd %d outside [1, %d]", cfg->n_embd, LIM_EMBD);
    if (cfg->n_kv_head == 0) cfg->n_kv_head = cfg->n_head;
    if (cfg->n_kv_head < 1 || cfg->n_kv_head > cfg->n_head || cfg->n_head % cfg->n_kv_head)
        return qkv__fail(QKV_ESHAPE, "model config: %d key/value heads do not divide %d query heads",
                         cfg->n_kv_head, cfg->n_head);
    if (cfg->head_dim == 0) {
        if (cfg->n_embd % cfg->n_head != 0)
            return qkv__fail(QKV_ESHAPE, "model config: n_embd %d is not a multiple of n_head %d",
                             cfg->n_embd, cfg->n_head);
        cfg->head_dim = cfg->n_embd / cfg->n_head;
    }
    if (!strcmp(cfg->family, "gpt2") &&
        (cfg->n_embd % cfg->n_head || cfg->head_dim != cfg->n_embd / cfg->n_head || cfg->n_kv_head != cfg->n_head ||
         cfg->norm || cfg->mlp || cfg->pos || cfg->bias || cfg->qk_norm))
        return qkv__fail(QKV_ESHAPE, "model config: a GPT-2 has LayerNorm, GELU, learned positions, biases "
                         "and n_embd %d = n_head %d x head size %d", cfg->n_embd, cfg->n_head, cfg->head_dim);
    if (cfg->head_dim > 256)
        return qkv__fail(QKV_EUNSUPPORTED, "model config: head size %d > 256", cfg->head_dim);
    if (cfg->head_dim < 1 || cfg->head_dim > 256)
        return qkv__fail(QKV_EUNSUPPORTED, "model config: head size %d outside [1, 256]", cfg->head_dim);
    if ((long long)cfg->head_dim * cfg->n_head > LIM_EMBD)
        return qkv__fail(QKV_ERANGE, "model config: %d heads of %d too wide", cfg->n_head, cfg->head_dim);
    if (cfg->n_ff == 0) cfg->n_ff = 4 * cfg->n_embd;
    if (cfg->n_ff < 1 || cfg->n_ff > 16 * LIM_EMBD)
        return qkv__fail(QKV_ERANGE, "model config: MLP width %d outside [1, %d]", cfg->n_ff, 16 * LIM_EMBD);
    if (cfg->n_ctx < 1 || cfg->n_ctx > LIM_CTX)
        return qkv__fail(QKV_ERANGE, "model config: n_positions %d outside [1, %d]", cfg->n_ctx, LIM_CTX);
    if (cfg->vocab_size < 1 || cfg->vocab_size > LIM_VOCAB)
        return qkv__fail(QKV_ERANGE, "model config: vocab_size %d outside [1, %d]", cfg->vocab_size,
                         LIM_VOCAB);
    if (!(cfg->layer_norm_eps > 0.0f) || !(cfg->layer_norm_eps < 1.0f))
        return qkv__fail(QKV_ERANGE, "model config: layer_norm_epsilon %g outside (0, 1)",
                         (double)cfg->layer_norm_eps);
    if ((unsigned)cfg->norm > QKV_NORM_RMS || (unsigned)cfg->mlp > QKV_MLP_SWIGLU ||
        (unsigned)cfg->pos > QKV_POS_ROPE || (unsigned)cfg->bias > QKV_BIAS_QKV)
        return qkv__fail(QKV_ERANGE, "model config: unknown norm/mlp/positions/bias kind");
    if (!(cfg->attn_scale >= 0.0f) || !isfinite(cfg->attn_scale))
        return qkv__fail(QKV_ERANGE, "model config: attention scale %g", (double)cfg->attn_scale);
    if (cfg->pos == QKV_POS_ROPE) {
        if (cfg->rope_theta == 0.0f) cfg->rope_theta = 10000.0f;
        if (!(cfg->rope_theta > 1.0f) || !isfinite(cfg->rope_theta))
            return qkv__fail(QKV_ERANGE, "model config: rope_theta %g must be > 1", (double)cfg->rope_theta);
        if (cfg->rope_dim == 0) cfg->rope_dim = cfg->head_dim;
        if (cfg->rope_dim < 2 || cfg->rope_dim > cfg->head_dim || cfg->rope_dim % 2)
            return qkv__fail(QKV_ERANGE, "model config: %d rotary dimensions of a head of %d (even, 2..d)",
                             cfg->rope_dim, cfg->head_dim);
        if (cfg->rope_factor != 0.0f &&
            (!(cfg->rope_factor >= 1.0f) || !isfinite(cfg->rope_factor) || cfg->rope_orig_ctx < 1 ||
             !(cfg->rope_low_freq_factor > 0.0f) || !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) ||
             !isfinite(cfg->rope_high_freq_factor)))
            return qkv__fail(QKV_ERANGE, "model config: llama3 rope_scaling needs factor >= 1, "
                             "0 < low_freq_factor < high_freq_factor, original_max_position_embeddings >= 1");
    } else if (cfg->rope_dim || cfg->rope_factor != 0.0f) {
        return qkv__fail(QKV_EINVAL, "model config: rotary settings without rotary positions");
    }
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

qkv_status qkv__model_create(const qkv_model_config *cfg_in, qkv_model **out) {
    *out = NULL;
    qkv_model_config cfg = *cfg_in;
    qkv_status st = qkv__check_config(&cfg);
    if (st) return st;
    qkv_model *m = calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ENOMEM, "model: out of memory");
    m->cfg = cfg;
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(&cfg, sizes);
    for (int i = 0; i < QKV__N_KINDS; i++) m->n_block += sizes[i];
    m->block = qkv__alloc_params(m->n_block);
    if (!m->block) {
        size_t n = m->n_block;
        free(m);
        return qkv__fail(QKV_ENOMEM, "model: cannot allocate %zu parameters (%.1f MB)", n,
                         (double)n * 4e-6);
    }
    memset(m->block, 0, m->n_block * sizeof(float));
    qkv__point_params(&cfg, m->block, &m->p);
    snprintf(m->name, sizeof m->name, "%s", cfg.family);
    *out = m;
    return QKV_OK;
}

void qkv_model_free(qkv_model *model) {
    if (!model) return;
    qkv__free_aligned(model->block);
    qkv__free_aligned(model->bf16);
    qkv__free_aligned(model->q8);
    if (model->tok && model->free_tok) model->free_tok(model->tok);
    free(model);
}

const qkv_model_config *qkv_model_get_config(const qkv_model *model) { return &model->cfg; }
qkv_tokenizer *qkv_model_tokenizer(const qkv_model *model) { return model->tok; }
const char *qkv_model_name(const qkv_model *model) { return model->name; }

size_t qkv_model_n_params(const qkv_model *model) {
    return model->n_block;
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

static int is_gpt2(const qkv_model_config *c) { return !strcmp(c->family, "gpt2"); }

/* A float as the shortest decimal that reads back as it (1e-05, not 9.9999997e-06). */
static json_t *json_f32(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static qkv_status write_config(const qkv_model_config *c, const char *path) {
    json_t *o = json_object();
    json_t *arch = json_array();
    if (!o || !arch) {
        json_decref(o);
        json_decref(arch);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    if (is_gpt2(c)) {
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
        json_object_set_new(o, "layer_norm_epsilon", json_f32(c->layer_norm_eps));
    } else {
        static const struct { const char *family, *arch; } names[] = {
            {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
            {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
        const char *an = "LlamaForCausalLM";
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(c->family, names[i].family)) an = names[i].arch;
        json_array_append_new(arch, json_string(an));
        json_object_set_new(o, "architectures", arch);
        json_object_set_new(o, "model_type", json_string(c->family));
        json_object_set_new(o, "hidden_act", json_string("silu"));
        json_object_set_new(o, "hidden_size", json_integer(c->n_embd));
        json_object_set_new(o, "intermediate_size", json_integer(c->n_ff));
        json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
        json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
        json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_head));
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
        json_object_set_new(o, "max_position_embeddings", json_integer(c->n_ctx));
        json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
        json_object_set_new(o, "rms_norm_eps", json_f32(c->layer_norm_eps));
        json_object_set_new(o, "rope_theta", json_f32(c->rope_theta));
        if (c->rope_dim && c->rope_dim != c->head_dim)
            json_object_set_new(o, "partial_rotary_factor", json_real((double)c->rope_dim / c->head_dim));
        if (c->rope_factor != 0.0f) {
            json_t *rs = json_object();
            json_object_set_new(rs, "rope_type", json_string("llama3"));
            json_object_set_new(rs, "factor", json_f32(c->rope_factor));
            json_object_set_new(rs, "low_freq_factor", json_f32(c->rope_low_freq_factor));
            json_object_set_new(rs, "high_freq_factor", json_f32(c->rope_high_freq_factor));
            json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_orig_ctx));
            json_object_set_new(o, "rope_scaling", rs);
        }
        if (strcmp(c->family, "qwen2"))
            json_object_set_new(o, "attention_bias", json_boolean(c->bias == QKV_BIAS_QKV));
        if (c->rope_interleaved) /* not a Hugging Face key: llama2.c's pairing, kept for qkv */
            json_object_set_new(o, "qkv_rope_interleaved", json_true());
    }
    json_object_set_new(o, "tie_word_embeddings", json_boolean(!c->untied));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    s[n] = '\n'; /* replace the NUL: the file ends with a newline */
    qkv_status st = qkv__write_file(path, s, n + 1);
    free(s);
    return st;
}

/* The safetensors bytes of a block under cfg's names (F32, 8-aligned header). */
static qkv_status build_safetensors(const qkv_model_config *cfg, const float *block, uint8_t **out,
                                    size_t *out_len, const char *path) {
    qkv__params p;
    qkv__point_params(cfg, (float *)block, &p);
    int n = qkv__n_entries(cfg);
    qkv__tensor_entry *ents = malloc(sizeof *ents * (size_t)n);
    json_t *hdr = json_object();
    char *hs = NULL;
    qkv_status st = QKV_OK;
    if (!ents || !hdr) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    qkv__tensor_table(cfg, &p, ents);
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < ents[i].ndim; d++) json_array_append_new(shape, json_integer(ents[i].shape[d]));
        size_t bytes = ents[i].count * sizeof(float);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(hdr, ents[i].name, e);
        off += bytes;
    }
    hs = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hs) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t hlen = strlen(hs), padded = (hlen + 7) & ~(size_t)7; /* data starts 8-aligned */
    size_t total = 8 + padded + off;
    uint8_t *buf = malloc(total);
    if (!buf) {
        st = qkv__fail(QKV_ENOMEM, "%s: cannot allocate %zu bytes", path, total);
        goto done;
    }
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hs, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    size_t at = 8 + padded;
    for (int i = 0; i < n; i++) {
        float *dst = (float *)(void *)(buf + at); /* 8-aligned within a malloc'ed buffer */
        qkv__entry_to_file(&ents[i], dst);
        at += ents[i].count * sizeof(float);
    }
    *out = buf;
    *out_len = total;
done:
    free(hs);
    free(ents);
    json_decref(hdr);
    return st;
}

qkv_status qkv__save_named(const qkv_model_config *cfg, const float *block, const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    qkv_status st = build_safetensors(cfg, block, &buf, &len, path);
    if (!st) st = qkv__write_file(path, buf, len);
    free(buf);
    return st;
}

qkv_status qkv__model_save(const qkv_model *model, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return qkv__fail(QKV_EIO, "%s: cannot create folder: %s", dir, strerror(errno));
    char *cpath = qkv__path_join(dir, "config.json");
    char *spath = qkv__path_join(dir, "model.safetensors");
    qkv_status st = QKV_OK;
    if (!cpath || !spath) st = qkv__fail(QKV_ENOMEM, "save: out of memory");
    if (!st) st = write_config(&model->cfg, cpath);
    if (!st) st = qkv__save_named(&model->cfg, model->block, spath);
    free(cpath);
    free(spath);
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
    e->transpose = 0;
    e->ld = 0;
}

/* nn.Linear weight [out, in]: columns [col, col + out) of the block matrix [in, ld] at m. */
static void ent_t(qkv__tensor_entry *e, const char *name, float *m, int in, int ld, int col, int out) {
    ent(e, name, m + col, out, in);
    e->transpose = 1;
    e->ld = ld;
}

int qkv__n_entries(const qkv_model_config *c) {
    if (is_gpt2(c)) return 4 + 12 * c->n_layer + (c->untied != 0);
    int per = 9 + (c->bias != QKV_BIAS_NONE ? 3 : 0) + (c->qk_norm ? 2 : 0);
    return 2 + per * c->n_layer + (c->untied != 0);
}

int qkv__tensor_table(const qkv_model_config *c, const qkv__params *p, qkv__tensor_entry *ents) {
    qkv__dims m = qkv__dims_of(c);
    int64_t C = m.C;
    size_t uC = (size_t)C, W = (size_t)m.W, F = (size_t)m.F, F2 = (size_t)m.F2, Hd = (size_t)m.Hd;
    int n = 0;
    char nm[96];
    if (is_gpt2(c)) {
        ent(&ents[n++], "transformer.wte.weight", p->wte, c->vocab_size, C);
        ent(&ents[n++], "transformer.wpe.weight", p->wpe, c->n_ctx, C);
        for (int l = 0; l < c->n_layer; l++) {
            size_t L = (size_t)l;
#define E(suffix, ptr, d0, d1)                                         \
    snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, suffix);         \
    ent(&ents[n++], nm, ptr, d0, d1)
            E("ln_1.weight", p->ln1_w + L * uC, C, 0);
            E("ln_1.bias", p->ln1_b + L * uC, C, 0);
            E("attn.c_attn.weight", p->attn_w + L * uC * W, C, (int64_t)W);
            E("attn.c_attn.bias", p->attn_b + L * W, (int64_t)W, 0);
            E("attn.c_proj.weight", p->proj_w + L * Hd * uC, (int64_t)Hd, C);
            E("attn.c_proj.bias", p->proj_b + L * uC, C, 0);
            E("ln_2.weight", p->ln2_w + L * uC, C, 0);
            E("ln_2.bias", p->ln2_b + L * uC, C, 0);
            E("mlp.c_fc.weight", p->fc_w + L * uC * F2, C, (int64_t)F2);
            E("mlp.c_fc.bias", p->fc_b + L * F2, (int64_t)F2, 0);
            E("mlp.c_proj.weight", p->fcproj_w + L * F * uC, (int64_t)F, C);
            E("mlp.c_proj.bias", p->fcproj_b + L * uC, C, 0);
#undef E
        }
        ent(&ents[n++], "transformer.ln_f.weight", p->lnf_w, C, 0);
        ent(&ents[n++], "transformer.ln_f.bias", p->lnf_b, C, 0);
    } else {
        ent(&ents[n++], "model.embed_tokens.weight", p->wte, c->vocab_size, C);
        for (int l = 0; l < c->n_layer; l++) {
            size_t L = (size_t)l;
#define NM(suffix) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), nm)
            float *aw = p->attn_w + L * uC * W, *fw = p->fc_w + L * uC * F2;
            ent(&ents[n++], NM("input_layernorm.weight"), p->ln1_w + L * uC, C, 0);
            ent_t(&ents[n++], NM("self_attn.q_proj.weight"), aw, m.C, m.W, 0, m.Hd);
            ent_t(&ents[n++], NM("self_attn.k_proj.weight"), aw, m.C, m.W, m.Hd, m.KVd);
            ent_t(&ents[n++], NM("self_attn.v_proj.weight"), aw, m.C, m.W, m.Hd + m.KVd, m.KVd);
            if (c->bias != QKV_BIAS_NONE) {
                float *ab = p->attn_b + L * W;
                ent(&ents[n++], NM("self_attn.q_proj.bias"), ab, m.Hd, 0);
                ent(&ents[n++], NM("self_attn.k_proj.bias"), ab + m.Hd, m.KVd, 0);
                ent(&ents[n++], NM("self_attn.v_proj.bias"), ab + m.Hd + m.KVd, m.KVd, 0);
            }
            if (c->qk_norm) {
                ent(&ents[n++], NM("self_attn.q_norm.weight"), p->qn_w + L * (size_t)m.d, m.d, 0);
                ent(&ents[n++], NM("self_attn.k_norm.weight"), p->kn_w + L * (size_t)m.d, m.d, 0);
            }
            ent_t(&ents[n++], NM("self_attn.o_proj.weight"), p->proj_w + L * Hd * uC, m.Hd, m.C, 0, m.C);
            ent(&ents[n++], NM("post_attention_layernorm.weight"), p->ln2_w + L * uC, C, 0);
            ent_t(&ents[n++], NM("mlp.gate_proj.weight"), fw, m.C, m.F2, 0, m.F);
            ent_t(&ents[n++], NM("mlp.up_proj.weight"), fw, m.C, m.F2, m.F, m.F);
            ent_t(&ents[n++], NM("mlp.down_proj.weight"), p->fcproj_w + L * F * uC, m.F, m.C, 0, m.C);
#undef NM
        }
        ent(&ents[n++], "model.norm.weight", p->lnf_w, C, 0);
    }
    if (c->untied) ent(&ents[n++], "lm_head.weight", p->lm_head, c->vocab_size, C);
    return n;
}

void qkv__entry_from_file(const qkv__tensor_entry *e, const float *src) {
    if (!e->transpose) {
        memcpy(e->data, src, e->count * sizeof(float));
        return;
    }
    int out = (int)e->shape[0], in = (int)e->shape[1];
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) e->data[(size_t)i * e->ld + o] = src[(size_t)o * in + i];
}

void qkv__entry_to_file(const qkv__tensor_entry *e, float *dst) {
    if (!e->transpose) {
        memcpy(dst, e->data, e->count * sizeof(float));
        return;
    }
    int out = (int)e->shape[0], in = (int)e->shape[1];
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) dst[(size_t)o * in + i] = e->data[(size_t)i * e->ld + o];
}
