/*
 * hf_config.c -- a Hugging Face config.json into a qkv_model_config, for every family qkv
 * runs: GPT-2 (qkv__gpt2_parse_config, model_core.c), and the Llama family read here:
 *
 *   model_type  what it means here
 *   llama       RMSNorm, RoPE (halves, as HF stores q/k), SwiGLU, no biases, GQA when
 *               num_key_value_heads < num_attention_heads; SmolLM2, TinyLlama, Llama 2 and
 *               Llama 3.x (rope_scaling {"rope_type": "llama3"}) are all "llama"
 *   mistral     llama + sliding_window (see cap_sliding_window)
 *   qwen2       llama + biases on q_proj, k_proj, v_proj
 *   qwen3       llama + head_dim apart from hidden_size / heads + RMSNorm over each head's
 *               q and k before RoPE (q_norm, k_norm)
 *
 * An absent key takes the default of the family's transformers config class (LlamaConfig,
 * MistralConfig, Qwen2Config, Qwen3Config), as from_pretrained would. Every field of the
 * config is written explicitly. Refusals name the file and the key.
 */
#include "model/sources.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Caps in the spirit of qkv__gpt2_check_config: generous for any released model, small
 * enough that every size product below fits in 64 bits and no int overflows. */
#define LIM_LAYER 1024
#define LIM_HEAD 1024
#define LIM_EMBD 65536
#define LIM_FF (1 << 20)
#define LIM_CTX (1 << 20)
#define LIM_VOCAB (1 << 24)
#define LIM_HEAD_DIM 256 /* the attention engine's limit */
#define LIM_PARAMS ((uint64_t)1 << 36) /* 64 G floats */

/* The transformers class defaults that differ between the families. */
typedef struct family_defaults {
    const char *name;
    int vocab, hidden, ff, layers, heads, kv_heads, ctx;
    int qkv_bias; /* Qwen2: always */
    int qk_norm;  /* Qwen3: always */
} family_defaults;

static const family_defaults families[] = {
    /* name      vocab   hidden  ff     L   H   KV(0 = H) ctx      bias qk */
    {"llama",    32000,  4096, 11008,  32, 32, 0,  2048,   0, 0},
    {"mistral",  32000,  4096, 14336,  32, 32, 8,  131072, 0, 0},
    {"qwen2",    151936, 4096, 22016,  32, 32, 32, 32768,  1, 0},
    {"qwen3",    151936, 4096, 22016,  32, 32, 32, 32768,  0, 1},
};

/* ---- typed getters: absent or null -> *v unchanged (the default) ------------------------ */

static qkv_status get_int(json_t *o, const char *key, long long lo, long long hi,
                          const char *path, int *v, int *present) {
    json_t *j = json_object_get(o, key);
    if (present) *present = 0;
    if (!j || json_is_null(j)) return QKV_OK;
    /* 4096.0 is an integer written by a float-minded exporter; 4096.5 is not */
    long long x;
    if (json_is_integer(j)) {
        x = (long long)json_integer_value(j);
    } else if (json_is_real(j) && json_real_value(j) == floor(json_real_value(j)) &&
               fabs(json_real_value(j)) < 1e15) {
        x = (long long)json_real_value(j);
    } else {
        return qkv__fail(QKV_EFORMAT, "%s: \"%s\" must be an integer", path, key);
    }
    if (x < lo || x > hi)
        return qkv__fail(QKV_ERANGE, "%s: \"%s\" = %lld outside [%lld, %lld]", path, key, x, lo, hi);
    *v = (int)x;
    if (present) *present = 1;
    return QKV_OK;
}

static qkv_status get_num(json_t *o, const char *key, const char *path, double *v, int *present) {
    json_t *j = json_object_get(o, key);
    if (present) *present = 0;
    if (!j || json_is_null(j)) return QKV_OK;
    if (!json_is_number(j)) return qkv__fail(QKV_EFORMAT, "%s: \"%s\" must be a number", path, key);
    *v = json_number_value(j);
    if (!isfinite(*v)) return qkv__fail(QKV_ERANGE, "%s: \"%s\" is not finite", path, key);
    if (present) *present = 1;
    return QKV_OK;
}

static qkv_status get_bool(json_t *o, const char *key, const char *path, int *v) {
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) return QKV_OK;
    if (!json_is_boolean(j)) return qkv__fail(QKV_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *v = json_is_true(j);
    return QKV_OK;
}

/* ---- rope_scaling ---------------------------------------------------------------------- */

/* rope_scaling (or rope_parameters, transformers 5's name): null, {"rope_type": "default"},
 * or Llama 3.1's {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"}. Older files say "type" for "rope_type". */
static qkv_status parse_rope_scaling(json_t *rs, const char *key, const char *path,
                                     qkv_model_config *cfg) {
    if (!rs || json_is_null(rs)) return QKV_OK;
    if (!json_is_object(rs)) return qkv__fail(QKV_EFORMAT, "%s: \"%s\" must be an object or null", path, key);
    json_t *jt = json_object_get(rs, "rope_type");
    if (!jt || json_is_null(jt)) jt = json_object_get(rs, "type");
    const char *type = "default";
    if (jt && !json_is_null(jt)) {
        if (!json_is_string(jt))
            return qkv__fail(QKV_EFORMAT, "%s: \"%s\".rope_type must be a string", path, key);
        type = json_string_value(jt);
    }
    if (!strcmp(type, "default")) return QKV_OK;
    if (strcmp(type, "llama3"))
        return qkv__fail(QKV_EUNSUPPORTED,
                         "%s: \"%s\" type \"%.40s\" is not supported (\"default\" and \"llama3\" "
                         "are; not linear, dynamic, yarn, longrope)", path, key, type);
    double factor = 0, low = 0, high = 0;
    int has_f, has_l, has_h, has_o, orig = 0;
    qkv_status st;
    if ((st = get_num(rs, "factor", path, &factor, &has_f)) ||
        (st = get_num(rs, "low_freq_factor", path, &low, &has_l)) ||
        (st = get_num(rs, "high_freq_factor", path, &high, &has_h)) ||
        (st = get_int(rs, "original_max_position_embeddings", 1, LIM_CTX, path, &orig, &has_o)))
        return st;
    if (!has_f || !has_l || !has_h || !has_o)
        return qkv__fail(QKV_EFORMAT, "%s: \"%s\" of type llama3 needs factor, low_freq_factor, "
                         "high_freq_factor and original_max_position_embeddings", path, key);
    if (!(factor >= 1.0 && factor <= 1e6))
        return qkv__fail(QKV_ERANGE, "%s: \"%s\".factor %g outside [1, 1e6]", path, key, factor);
    if (!(low > 0.0 && low <= 1e6) || !(high > low && high <= 1e6))
        return qkv__fail(QKV_ERANGE, "%s: \"%s\": low_freq_factor %g and high_freq_factor %g must "
                         "satisfy 0 < low < high", path, key, low, high);
    cfg->rope_factor = (float)factor;
    cfg->rope_low_freq_factor = (float)low;
    cfg->rope_high_freq_factor = (float)high;
    cfg->rope_orig_ctx = orig;
    return QKV_OK;
}

/* ---- the Llama family ---------------------------------------------------------------- */

/* We have no sliding-window attention. Within the window, sliding-window attention is plain
 * causal attention, so capping the context at the window keeps every result exact: a model
 * whose window is smaller than its context runs with n_ctx = the window. */
static void cap_sliding_window(qkv_model_config *cfg, int window) {
    if (window > 0 && window < cfg->n_ctx) cfg->n_ctx = window;
}

static qkv_status parse_llama_family(json_t *root, const family_defaults *fd, const char *path,
                                     qkv_model_config *cfg) {
    qkv_status st;
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->family, sizeof cfg->family, "%s", fd->name);
    cfg->vocab_size = fd->vocab;
    cfg->n_embd = fd->hidden;
    cfg->n_ff = fd->ff;
    cfg->n_layer = fd->layers;
    cfg->n_head = fd->heads;
    cfg->n_ctx = fd->ctx;
    int kv = 0, has_kv = 0, head_dim = 0, has_head_dim = 0;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        const char *a = json_is_string(act) ? json_string_value(act) : "(not a string)";
        if (strcmp(a, "silu") && strcmp(a, "swish"))
            return qkv__fail(QKV_EUNSUPPORTED, "%s: \"hidden_act\" \"%.40s\" is not supported "
                             "(SwiGLU with \"silu\" only)", path, a);
    }
    if ((st = get_int(root, "vocab_size", 1, LIM_VOCAB, path, &cfg->vocab_size, NULL)) ||
        (st = get_int(root, "hidden_size", 1, LIM_EMBD, path, &cfg->n_embd, NULL)) ||
        (st = get_int(root, "intermediate_size", 1, LIM_FF, path, &cfg->n_ff, NULL)) ||
        (st = get_int(root, "num_hidden_layers", 1, LIM_LAYER, path, &cfg->n_layer, NULL)) ||
        (st = get_int(root, "num_attention_heads", 1, LIM_HEAD, path, &cfg->n_head, NULL)) ||
        (st = get_int(root, "num_key_value_heads", 1, LIM_HEAD, path, &kv, &has_kv)) ||
        (st = get_int(root, "head_dim", 1, LIM_HEAD_DIM, path, &head_dim, &has_head_dim)) ||
        (st = get_int(root, "max_position_embeddings", 1, LIM_CTX, path, &cfg->n_ctx, NULL)))
        return st;

    /* heads */
    /* absent: the class default (Mistral 8, Qwen 32, Llama = heads); null: = heads */
    cfg->n_kv_head = has_kv ? kv : fd->kv_heads && !json_object_get(root, "num_key_value_heads")
                                       ? fd->kv_heads : cfg->n_head;
    if (cfg->n_head % cfg->n_kv_head != 0)
        return qkv__fail(QKV_ESHAPE, "%s: \"num_key_value_heads\" %d does not divide "
                         "\"num_attention_heads\" %d", path, cfg->n_kv_head, cfg->n_head);
    if (has_head_dim) {
        cfg->head_dim = head_dim;
    } else {
        if (cfg->n_embd % cfg->n_head != 0)
            return qkv__fail(QKV_ESHAPE, "%s: \"hidden_size\" %d is not a multiple of "
                             "\"num_attention_heads\" %d (and there is no \"head_dim\")", path,
                             cfg->n_embd, cfg->n_head);
        cfg->head_dim = cfg->n_embd / cfg->n_head;
        if (cfg->head_dim > LIM_HEAD_DIM)
            return qkv__fail(QKV_EUNSUPPORTED, "%s: head size %d (\"hidden_size\" %d / "
                             "\"num_attention_heads\" %d) > %d", path, cfg->head_dim, cfg->n_embd,
                             cfg->n_head, LIM_HEAD_DIM);
    }

    /* norm */
    double eps = 1e-6;
    if ((st = get_num(root, "rms_norm_eps", path, &eps, NULL))) return st;
    if (!(eps > 0.0 && eps < 1.0))
        return qkv__fail(QKV_ERANGE, "%s: \"rms_norm_eps\" %g outside (0, 1)", path, eps);
    cfg->layer_norm_eps = (float)eps;
    cfg->norm = QKV_NORM_RMS;
    cfg->mlp = QKV_MLP_SWIGLU;
    cfg->pos = QKV_POS_ROPE;
    cfg->qk_norm = fd->qk_norm;

    /* biases: Qwen2 always has them on q, k, v; Llama's and Qwen3's attention_bias puts
     * them on q, k, v AND o_proj, which no qkv_bias_kind describes. */
    int attn_bias = 0, mlp_bias = 0;
    if ((st = get_bool(root, "attention_bias", path, &attn_bias)) ||
        (st = get_bool(root, "mlp_bias", path, &mlp_bias)))
        return st;
    if (attn_bias && !fd->qkv_bias)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: \"attention_bias\": true is not supported "
                         "(biases on q/k/v and o_proj; qkv has q/k/v biases only)", path);
    if (mlp_bias)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: \"mlp_bias\": true is not supported", path);
    cfg->bias = fd->qkv_bias ? QKV_BIAS_QKV : QKV_BIAS_NONE;

    /* output head: every one of these classes defaults to untied */
    int tie = 0;
    if ((st = get_bool(root, "tie_word_embeddings", path, &tie))) return st;
    cfg->untied = !tie;

    /* attention scale: HF's head_dim ** -0.5 */
    cfg->attn_scale = 1.0f / sqrtf((float)cfg->head_dim);

    /* RoPE: theta and rope_scaling at the top level, or (transformers 5) inside
     * rope_parameters; partial_rotary_factor rotates the first head_dim * factor dims. */
    double theta = 10000.0, prf = 1.0;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return qkv__fail(QKV_EFORMAT, "%s: \"rope_parameters\" must be an object or null", path);
    if ((st = get_num(root, "rope_theta", path, &theta, NULL))) return st;
    if (json_is_object(rp)) {
        if ((st = get_num(rp, "rope_theta", path, &theta, NULL)) ||
            (st = get_num(rp, "partial_rotary_factor", path, &prf, NULL)) ||
            (st = parse_rope_scaling(rp, "rope_parameters", path, cfg)))
            return st;
    }
    if ((st = get_num(root, "partial_rotary_factor", path, &prf, NULL)) ||
        (st = parse_rope_scaling(json_object_get(root, "rope_scaling"), "rope_scaling", path, cfg)))
        return st;
    if (!(theta >= 1.0 && theta <= 1e12))
        return qkv__fail(QKV_ERANGE, "%s: \"rope_theta\" %g outside [1, 1e12]", path, theta);
    cfg->rope_theta = (float)theta;
    if (!(prf > 0.0 && prf <= 1.0))
        return qkv__fail(QKV_ERANGE, "%s: \"partial_rotary_factor\" %g outside (0, 1]", path, prf);
    cfg->rope_dim = (int)(cfg->head_dim * prf); /* HF: int(head_dim * partial_rotary_factor) */
    if (cfg->rope_dim < 2 || cfg->rope_dim % 2)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: \"partial_rotary_factor\" %g gives %d rotary "
                         "dimensions of head_dim %d (must be even and at least 2)", path, prf,
                         cfg->rope_dim, cfg->head_dim);
    cfg->rope_interleaved = 0; /* HF stores q/k rows for rotate_half (pairs i, i + d/2) */

    /* sliding windows (class default 4096 where the class has one; null = none): Mistral's
     * applies to every layer; Qwen's only with use_sliding_window, and then to the layers
     * from max_window_layers on */
    if (strcmp(fd->name, "llama")) {
        int window = 4096, mistral = !strcmp(fd->name, "mistral"), use_window = mistral,
            first_layer = mistral ? 0 : 28;
        json_t *jw = json_object_get(root, "sliding_window");
        if (jw && json_is_null(jw)) window = 0;
        if ((st = get_bool(root, "use_sliding_window", path, &use_window)) ||
            (st = get_int(root, "sliding_window", 1, INT32_MAX, path, &window, NULL)) ||
            (!mistral && (st = get_int(root, "max_window_layers", 0, INT32_MAX, path, &first_layer, NULL))))
            return st;
        if (mistral || (use_window && first_layer < cfg->n_layer)) cap_sliding_window(cfg, window);
    }

    /* the total, in 64 bits (the caps above keep each product far below 2^63) */
    uint64_t C = (uint64_t)cfg->n_embd, V = (uint64_t)cfg->vocab_size, L = (uint64_t)cfg->n_layer,
             F = (uint64_t)cfg->n_ff, d = (uint64_t)cfg->head_dim,
             qd = (uint64_t)cfg->n_head * d, kd = (uint64_t)cfg->n_kv_head * d;
    uint64_t per_layer = 2 * C + C * qd + 2 * C * kd + qd * C + 3 * C * F;
    if (cfg->bias == QKV_BIAS_QKV) per_layer += qd + 2 * kd;
    if (cfg->qk_norm) per_layer += 2 * d;
    uint64_t total = V * C * (cfg->untied ? 2 : 1) + L * per_layer + C;
    if (total > LIM_PARAMS)
        return qkv__fail(QKV_ERANGE, "%s: %llu parameters, more than the limit %llu", path,
                         (unsigned long long)total, (unsigned long long)LIM_PARAMS);
    return QKV_OK;
}

/* ---- GPT-2 ------------------------------------------------------------------------------ */

/* qkv__gpt2_parse_config fills the first six fields; the family's pieces are GPT-2's. */
static void fill_gpt2(qkv_model_config *cfg) {
    snprintf(cfg->family, sizeof cfg->family, "gpt2");
    cfg->n_kv_head = cfg->n_head;
    cfg->head_dim = cfg->n_embd / cfg->n_head;
    cfg->n_ff = 4 * cfg->n_embd;
    cfg->norm = QKV_NORM_LAYER;
    cfg->mlp = QKV_MLP_GELU_TANH;
    cfg->pos = QKV_POS_LEARNED;
    cfg->bias = QKV_BIAS_ALL;
    cfg->qk_norm = 0;
    cfg->untied = 0; /* GPT-2 ties; the loader keeps an lm_head.weight that differs from wte */
    cfg->attn_scale = 1.0f / sqrtf((float)cfg->head_dim);
    cfg->rope_theta = 0.0f; /* no rotary */
    cfg->rope_dim = 0;
    cfg->rope_interleaved = 0;
    cfg->rope_factor = cfg->rope_low_freq_factor = cfg->rope_high_freq_factor = 0.0f;
    cfg->rope_orig_ctx = 0;
}

/* ---- entry ----------------------------------------------------------------------------- */

qkv_status qkv__hf_parse_config(const char *json, size_t len, const char *path,
                                qkv_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
    qkv_status st = QKV_OK;
    if (!json_is_object(root)) {
        st = qkv__fail(QKV_EFORMAT, "%s: not a JSON object", path);
        goto done;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && !json_is_null(mt) && !json_is_string(mt)) {
        st = qkv__fail(QKV_EFORMAT, "%s: \"model_type\" must be a string", path);
        goto done;
    }
    const char *type = mt && json_is_string(mt) ? json_string_value(mt) : "gpt2";
    if (!strcmp(type, "gpt2")) {
        st = qkv__gpt2_parse_config(json, len, path, cfg);
        if (!st) fill_gpt2(cfg);
        goto done;
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (strcmp(type, families[i].name)) continue;
        st = parse_llama_family(root, &families[i], path, cfg);
        goto done;
    }
    st = qkv__fail(QKV_EUNSUPPORTED, "%s: \"model_type\" \"%.40s\" is not supported (gpt2, llama, "
                   "mistral, qwen2, qwen3)", path, type);
done:
    json_decref(root);
    if (st) memset(cfg, 0, sizeof *cfg);
    return st;
}
