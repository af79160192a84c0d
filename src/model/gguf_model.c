/*
 * gguf_model.c -- a GGUF file as a model: its config (qkv__gguf_model_config) and its tensors
 * under Hugging Face names, in Hugging Face layout (a qkv__tensor_src, model.h).
 *
 * Names (llama.cpp's gguf-py tensor_mapping.py, read in the bundled source):
 *
 *   llama, qwen2, qwen3                          gpt2 (no "transformer." prefix)
 *   token_embd.weight   model.embed_tokens.weight    token_embd.weight     wte.weight
 *   blk.N.attn_norm     model.layers.N.input_layernorm  position_embd.weight  wpe.weight
 *   blk.N.attn_q/k/v    ...self_attn.q_proj/k_proj/v_proj blk.N.attn_norm    h.N.ln_1
 *   blk.N.attn_output   ...self_attn.o_proj          blk.N.attn_qkv        h.N.attn.c_attn
 *   blk.N.attn_q_norm   ...self_attn.q_norm (Qwen3)  blk.N.attn_output     h.N.attn.c_proj
 *   blk.N.attn_k_norm   ...self_attn.k_norm          blk.N.ffn_norm        h.N.ln_2
 *   blk.N.ffn_norm      ...post_attention_layernorm  blk.N.ffn_up          h.N.mlp.c_fc
 *   blk.N.ffn_gate/up/down  ...mlp.gate/up/down_proj blk.N.ffn_down        h.N.mlp.c_proj
 *   output_norm.weight  model.norm.weight            output_norm           ln_f
 *   output.weight       lm_head.weight               output.weight         lm_head.weight
 *
 * (.weight and .bias alike.) Layouts: GGUF's ne is the reverse of the PyTorch shape, so a
 * [out, in] nn.Linear has ne = {in, out} and the same bytes. Two conversions are undone:
 *   - arch llama (and Mistral, whose GGUFs say llama): convert_hf_to_gguf.py's
 *     LlamaModel.permute reorders each head's rows of q_proj and k_proj (weights and biases)
 *     from HF's rotate-half order to Meta's interleaved one:
 *       gguf[h*d + 2*b + a] = hf[h*d + a*d/2 + b]   (a in {0, 1}, b < d/2)
 *     with the KV head count for k. Read here, rows go back to HF's order, so the config says
 *     rope_interleaved = 0 as a Hugging Face folder would. qwen2 / qwen3 are not permuted.
 *   - arch gpt2: GPT2Model.modify_tensors transposes the Conv1D weights (c_attn, c_proj,
 *     c_fc, mlp.c_proj) to [out, in]; read here they are transposed back to HF's [in, out].
 * A name that is not a Hugging Face one but is a tensor of the file (rope_freqs.weight) is
 * answered as is.
 */
#include "model/gguf.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_GPT2 };
static const char *const arch_names[] = {"llama", "qwen2", "qwen3", "gpt2"};

/* How a tensor's values are rearranged on the way out. */
enum { X_NONE, X_PERMUTE_Q, X_PERMUTE_K, X_TRANSPOSE };

/* ---------------------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------------------- */

#define LIM_LAYER 1024
#define LIM_HEAD 1024
#define LIM_EMBD 65536
#define LIM_FF (1 << 20)
#define LIM_CTX (1 << 24)
#define LIM_VOCAB (1 << 24)
#define LIM_HEAD_DIM 256 /* the attention engine's limit */
#define LIM_PARAMS ((uint64_t)1 << 36)

static int arch_of(qkv__gguf_str s) {
    for (int i = 0; i < 4; i++)
        if (qkv__gguf_str_eq(s, arch_names[i])) return i;
    return -1;
}

/* <arch>.<suffix> as an int in [lo, hi]; absent: *v = def, or an error when required. */
static qkv_status get_int(const qkv__gguf *g, const char *arch, const char *suffix, long long lo,
                          long long hi, int required, int def, int *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!qkv__gguf_find(g, key)) {
        if (required) return qkv__fail(QKV_EFORMAT, "%s: key %s missing", g->path, key);
        *v = def;
        return QKV_OK;
    }
    uint64_t u;
    qkv_status st = qkv__gguf_get_u64(g, key, &u);
    if (st) return st;
    if ((long long)u < lo || u > (uint64_t)hi)
        return qkv__fail(QKV_ERANGE, "%s: %s = %llu outside [%lld, %lld]", g->path, key,
                         (unsigned long long)u, lo, hi);
    *v = (int)u;
    return QKV_OK;
}

static qkv_status get_num(const qkv__gguf *g, const char *arch, const char *suffix, double def,
                          double *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!qkv__gguf_find(g, key)) {
        *v = def;
        return QKV_OK;
    }
    return qkv__gguf_get_f64(g, key, v);
}

static int has_tensor(const qkv__gguf *g, const char *name) {
    return qkv__gguf_find_tensor(g, name) != NULL;
}

/* Llama 3.x's rope scaling: convert_hf_to_gguf.py stores no rope_scaling keys but a
 * rope_freqs.weight tensor of d/2 factors made from (factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings). Every released Llama 3.1 / 3.2 / 3.3
 * uses low 1, high 4, original 8192 (factor 8 or 32); the tensor is checked against those
 * with its largest value as the factor, and refused when it is something else. */
static qkv_status llama3_rope_from_freqs(const qkv__gguf *g, const qkv__gguf_tensor *t,
                                         qkv_model_config *cfg) {
    int half = cfg->rope_dim / 2;
    if (t->n_dims != 1 || t->ne[0] != half || t->type != QKV__GGML_F32)
        return qkv__fail(QKV_EFORMAT, "%s: rope_freqs.weight is not %d F32 values", g->path, half);
    float *f = malloc(sizeof *f * (size_t)half);
    if (!f) return qkv__fail(QKV_ENOMEM, "%s: out of memory", g->path);
    qkv_status st = qkv__gguf_to_f32(t, f);
    double factor = 1, low = 1, high = 4;
    int orig = 8192;
    for (int i = 0; !st && i < half; i++) factor = f[i] > factor ? f[i] : factor;
    for (int i = 0; !st && i < half; i++) {
        double freq = 1.0 / pow(cfg->rope_theta, (2.0 * i) / cfg->rope_dim);
        double wavelen = 2 * M_PI / freq, want;
        if (wavelen < orig / high) want = 1;
        else if (wavelen > orig / low) want = factor;
        else {
            double smooth = (orig / wavelen - low) / (high - low);
            want = 1 / ((1 - smooth) / factor + smooth);
        }
        if (!(fabs(f[i] - want) <= 1e-3 * want))
            st = qkv__fail(QKV_EUNSUPPORTED, "%s: rope_freqs.weight[%d] = %g is not Llama 3's scaling "
                           "(factor %g, low 1, high 4, original context 8192 give %g)", g->path, i,
                           f[i], factor, want);
    }
    free(f);
    if (st) return st;
    if (factor > 1) {
        cfg->rope_factor = (float)factor;
        cfg->rope_low_freq_factor = (float)low;
        cfg->rope_high_freq_factor = (float)high;
        cfg->rope_orig_ctx = orig;
    }
    return QKV_OK;
}

/* 1 when output.weight is a copy of token_embd.weight (GPT-2 conversions write one). */
static int output_is_embedding(const qkv__gguf *g) {
    const qkv__gguf_tensor *o = qkv__gguf_find_tensor(g, "output.weight"),
                           *e = qkv__gguf_find_tensor(g, "token_embd.weight");
    return o && e && o->type == e->type && o->n_bytes == e->n_bytes &&
           !memcmp(o->ne, e->ne, sizeof o->ne) && !memcmp(o->data, e->data, (size_t)o->n_bytes);
}

qkv_status qkv__gguf_model_config(const qkv__gguf *g, qkv_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    qkv__gguf_str as;
    qkv_status st = qkv__gguf_get_str(g, "general.architecture", &as);
    if (st) return st;
    int arch = arch_of(as);
    if (arch < 0)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: GGUF architecture \"%.*s\" is not supported (llama, "
                         "qwen2, qwen3, gpt2; Mistral files say llama)", g->path,
                         (int)(as.n > 40 ? 40 : as.n), as.s);
    const char *a = arch_names[arch];
    snprintf(cfg->family, sizeof cfg->family, "%s", a);
    int gpt2 = arch == ARCH_GPT2;
    if ((st = get_int(g, a, "block_count", 1, LIM_LAYER, 1, 0, &cfg->n_layer)) ||
        (st = get_int(g, a, "embedding_length", 1, LIM_EMBD, 1, 0, &cfg->n_embd)) ||
        (st = get_int(g, a, "attention.head_count", 1, LIM_HEAD, 1, 0, &cfg->n_head)) ||
        (st = get_int(g, a, "attention.head_count_kv", 1, LIM_HEAD, 0, cfg->n_head, &cfg->n_kv_head)) ||
        (st = get_int(g, a, "context_length", 1, LIM_CTX, 1, 0, &cfg->n_ctx)) ||
        (st = get_int(g, a, "feed_forward_length", 1, LIM_FF, !gpt2, 4 * cfg->n_embd, &cfg->n_ff)))
        return st;
    if (cfg->n_head % cfg->n_kv_head)
        return qkv__fail(QKV_EFORMAT, "%s: %s.attention.head_count_kv %d does not divide head_count %d",
                         g->path, a, cfg->n_kv_head, cfg->n_head);
    /* head dim: attention.key_length (Qwen3), else C / H */
    int kl = 0, vl = 0;
    if ((st = get_int(g, a, "attention.key_length", 1, LIM_HEAD_DIM, 0, 0, &kl)) ||
        (st = get_int(g, a, "attention.value_length", 1, LIM_HEAD_DIM, 0, kl, &vl)))
        return st;
    if (kl && vl != kl)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: %s.attention.key_length %d != value_length %d", g->path,
                         a, kl, vl);
    if (!kl && cfg->n_embd % cfg->n_head)
        return qkv__fail(QKV_EFORMAT, "%s: %s.embedding_length %d is not a multiple of head_count %d",
                         g->path, a, cfg->n_embd, cfg->n_head);
    cfg->head_dim = kl ? kl : cfg->n_embd / cfg->n_head;
    if (cfg->head_dim > LIM_HEAD_DIM)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: head dim %d > %d", g->path, cfg->head_dim, LIM_HEAD_DIM);
    if (gpt2 && (cfg->n_kv_head != cfg->n_head || kl))
        return qkv__fail(QKV_EFORMAT, "%s: a gpt2 file with grouped or resized heads", g->path);
    cfg->attn_scale = 1.0f / sqrtf((float)cfg->head_dim);

    /* vocabulary: the embedding's rows, else the tokenizer's */
    const qkv__gguf_tensor *emb = qkv__gguf_find_tensor(g, "token_embd.weight");
    const qkv__gguf_kv *toks = qkv__gguf_find_arr(g, "tokenizer.ggml.tokens", QKV__GGUF_STRING);
    int64_t V = emb && emb->n_dims == 2 ? emb->ne[1] : toks ? (int64_t)toks->arr_n : 0;
    if (V < 1 || V > LIM_VOCAB)
        return qkv__fail(QKV_EFORMAT, "%s: vocabulary size %lld (from %s) outside [1, %d]", g->path,
                         (long long)V, emb ? "token_embd.weight" : "tokenizer.ggml.tokens", LIM_VOCAB);
    cfg->vocab_size = (int)V;

    double eps;
    if (gpt2) {
        if ((st = get_num(g, a, "attention.layer_norm_epsilon", 1e-5, &eps))) return st;
        cfg->norm = QKV_NORM_LAYER;
        cfg->mlp = QKV_MLP_GELU_TANH;
        cfg->pos = QKV_POS_LEARNED;
        cfg->bias = QKV_BIAS_ALL;
        cfg->untied = has_tensor(g, "output.weight") && !output_is_embedding(g);
    } else {
        if ((st = get_num(g, a, "attention.layer_norm_rms_epsilon", 1e-6, &eps))) return st;
        cfg->norm = QKV_NORM_RMS;
        cfg->mlp = QKV_MLP_SWIGLU;
        cfg->pos = QKV_POS_ROPE;
        cfg->qk_norm = arch == ARCH_QWEN3;
        int qb = has_tensor(g, "blk.0.attn_q.bias"), ob = has_tensor(g, "blk.0.attn_output.bias");
        if (ob || has_tensor(g, "blk.0.ffn_up.bias") || has_tensor(g, "blk.0.ffn_down.bias"))
            return qkv__fail(QKV_EUNSUPPORTED, "%s: biases on %s are not supported (qkv has q/k/v "
                             "biases only)", g->path, ob ? "attn_output" : "the MLP");
        cfg->bias = arch == ARCH_QWEN2 || qb ? QKV_BIAS_QKV : QKV_BIAS_NONE;
        cfg->untied = has_tensor(g, "output.weight") && !output_is_embedding(g);
        double theta;
        int rd = 0;
        if ((st = get_num(g, a, "rope.freq_base", 10000.0, &theta)) ||
            (st = get_int(g, a, "rope.dimension_count", 2, LIM_HEAD_DIM, 0, cfg->head_dim, &rd)))
            return st;
        if (!(theta >= 1.0 && theta <= 1e12))
            return qkv__fail(QKV_ERANGE, "%s: %s.rope.freq_base %g outside [1, 1e12]", g->path, a, theta);
        if (rd % 2 || rd > cfg->head_dim)
            return qkv__fail(QKV_EUNSUPPORTED, "%s: %s.rope.dimension_count %d (even, at most the head "
                             "dim %d)", g->path, a, rd, cfg->head_dim);
        cfg->rope_theta = (float)theta;
        cfg->rope_dim = rd;
        cfg->rope_interleaved = 0; /* the source un-permutes llama's q/k rows */
        /* rope scaling: keys (other converters), or Llama 3's rope_freqs tensor */
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", a);
        qkv__gguf_str type = {"none", 4};
        if (qkv__gguf_find(g, key) && (st = qkv__gguf_get_str(g, key, &type))) return st;
        double factor;
        if ((st = get_num(g, a, "rope.scaling.factor", 1.0, &factor))) return st;
        if (!qkv__gguf_str_eq(type, "none") && !(qkv__gguf_str_eq(type, "linear") && factor == 1.0))
            return qkv__fail(QKV_EUNSUPPORTED, "%s: %s \"%.*s\" (factor %g) is not supported", g->path,
                             key, (int)(type.n > 20 ? 20 : type.n), type.s, factor);
        const qkv__gguf_tensor *rf = qkv__gguf_find_tensor(g, "rope_freqs.weight");
        if (rf && (st = llama3_rope_from_freqs(g, rf, cfg))) return st;
        /* sliding window (Mistral): qkv attends to at most n_ctx tokens, so cap it */
        int window = 0;
        if ((st = get_int(g, a, "attention.sliding_window", 0, INT32_MAX, 0, 0, &window))) return st;
        if (window > 0 && window < cfg->n_ctx) cfg->n_ctx = window;
    }
    if (!(eps > 0.0 && eps < 1.0))
        return qkv__fail(QKV_ERANGE, "%s: norm epsilon %g outside (0, 1)", g->path, eps);
    cfg->layer_norm_eps = (float)eps;

    uint64_t C = (uint64_t)cfg->n_embd, L = (uint64_t)cfg->n_layer, F = (uint64_t)cfg->n_ff,
             d = (uint64_t)cfg->head_dim, qd = (uint64_t)cfg->n_head * d,
             kd = (uint64_t)cfg->n_kv_head * d;
    uint64_t total = (uint64_t)V * C * (cfg->untied ? 2 : 1) + C +
                     L * (2 * C + C * qd + 2 * C * kd + qd * C + 3 * C * F);
    if (total > LIM_PARAMS)
        return qkv__fail(QKV_ERANGE, "%s: %llu parameters, more than the limit %llu", g->path,
                         (unsigned long long)total, (unsigned long long)LIM_PARAMS);
    return QKV_OK;
}

/* ---------------------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------------------- */

typedef struct name_map {
    const char *hf, *gguf;
    int xform;
} name_map;

/* Per-layer suffixes after "model.layers.N." / "blk.N." (the llama family). */
static const name_map llama_layer[] = {
    {"self_attn.q_proj.weight", "attn_q.weight", X_PERMUTE_Q},
    {"self_attn.k_proj.weight", "attn_k.weight", X_PERMUTE_K},
    {"self_attn.v_proj.weight", "attn_v.weight", X_NONE},
    {"self_attn.o_proj.weight", "attn_output.weight", X_NONE},
    {"self_attn.q_proj.bias", "attn_q.bias", X_PERMUTE_Q},
    {"self_attn.k_proj.bias", "attn_k.bias", X_PERMUTE_K},
    {"self_attn.v_proj.bias", "attn_v.bias", X_NONE},
    {"self_attn.o_proj.bias", "attn_output.bias", X_NONE},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", X_NONE},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", X_NONE},
    {"mlp.gate_proj.weight", "ffn_gate.weight", X_NONE},
    {"mlp.up_proj.weight", "ffn_up.weight", X_NONE},
    {"mlp.down_proj.weight", "ffn_down.weight", X_NONE},
    {"input_layernorm.weight", "attn_norm.weight", X_NONE},
    {"post_attention_layernorm.weight", "ffn_norm.weight", X_NONE},
};
static const name_map llama_global[] = {
    {"model.embed_tokens.weight", "token_embd.weight", X_NONE},
    {"model.norm.weight", "output_norm.weight", X_NONE},
    {"lm_head.weight", "output.weight", X_NONE},
};
/* GPT-2, after "h.N." / "blk.N." */
static const name_map gpt2_layer[] = {
    {"ln_1.weight", "attn_norm.weight", X_NONE},
    {"ln_1.bias", "attn_norm.bias", X_NONE},
    {"attn.c_attn.weight", "attn_qkv.weight", X_TRANSPOSE},
    {"attn.c_attn.bias", "attn_qkv.bias", X_NONE},
    {"attn.c_proj.weight", "attn_output.weight", X_TRANSPOSE},
    {"attn.c_proj.bias", "attn_output.bias", X_NONE},
    {"ln_2.weight", "ffn_norm.weight", X_NONE},
    {"ln_2.bias", "ffn_norm.bias", X_NONE},
    {"mlp.c_fc.weight", "ffn_up.weight", X_TRANSPOSE},
    {"mlp.c_fc.bias", "ffn_up.bias", X_NONE},
    {"mlp.c_proj.weight", "ffn_down.weight", X_TRANSPOSE},
    {"mlp.c_proj.bias", "ffn_down.bias", X_NONE},
};
static const name_map gpt2_global[] = {
    {"wte.weight", "token_embd.weight", X_NONE},
    {"wpe.weight", "position_embd.weight", X_NONE},
    {"ln_f.weight", "output_norm.weight", X_NONE},
    {"ln_f.bias", "output_norm.bias", X_NONE},
    {"lm_head.weight", "output.weight", X_NONE},
};

typedef struct gguf_src {
    qkv__gguf g;
    int arch, n_head, n_kv_head;
} gguf_src;

/* "<prefix>N.<rest>" with N a plain decimal (no sign, no leading zero unless 0): the layer
 * and rest, or -1. */
static int split_layer(const char *name, const char *prefix, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return -1;
    const char *p = name + pl;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    int layer = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        layer = layer * 10 + (*p - '0');
        if (layer >= LIM_LAYER) return -1;
    }
    if (*p != '.') return -1;
    *rest = p + 1;
    return layer;
}

/* The GGUF tensor for a Hugging Face name, and how to rearrange it; NULL when none. */
static const qkv__gguf_tensor *lookup(const gguf_src *s, const char *name, int *xform) {
    const name_map *layer_map = s->arch == ARCH_GPT2 ? gpt2_layer : llama_layer;
    const name_map *global = s->arch == ARCH_GPT2 ? gpt2_global : llama_global;
    size_t n_layer_map = s->arch == ARCH_GPT2 ? sizeof gpt2_layer / sizeof gpt2_layer[0]
                                               : sizeof llama_layer / sizeof llama_layer[0];
    size_t n_global = s->arch == ARCH_GPT2 ? sizeof gpt2_global / sizeof gpt2_global[0]
                                            : sizeof llama_global / sizeof llama_global[0];
    char gname[QKV__GGUF_MAX_NAME + 1];
    *xform = X_NONE;
    const char *rest;
    int layer = split_layer(name, s->arch == ARCH_GPT2 ? "h." : "model.layers.", &rest);
    if (layer >= 0) {
        for (size_t i = 0; i < n_layer_map; i++)
            if (!strcmp(rest, layer_map[i].hf)) {
                snprintf(gname, sizeof gname, "blk.%d.%s", layer, layer_map[i].gguf);
                *xform = layer_map[i].xform;
                if (s->arch != ARCH_LLAMA && (*xform == X_PERMUTE_Q || *xform == X_PERMUTE_K))
                    *xform = X_NONE;
                return qkv__gguf_find_tensor(&s->g, gname);
            }
        return NULL;
    }
    for (size_t i = 0; i < n_global; i++)
        if (!strcmp(name, global[i].hf)) return qkv__gguf_find_tensor(&s->g, global[i].gguf);
    /* not a Hugging Face name: the file's own (rope_freqs.weight), if it is not one that
     * has a Hugging Face name (those are answered only under that name) */
    if (!strncmp(name, "blk.", 4) || !strcmp(name, "token_embd.weight") ||
        !strcmp(name, "output.weight") || !strncmp(name, "output_norm.", 12) ||
        !strcmp(name, "position_embd.weight"))
        return NULL;
    return qkv__gguf_find_tensor(&s->g, name);
}

static int src_shape(void *ctx, const char *name, int *ndim, int64_t shape[QKV__ST_MAX_DIMS]) {
    const gguf_src *s = ctx;
    int x;
    const qkv__gguf_tensor *t = lookup(s, name, &x);
    if (!t) return 0;
    *ndim = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d]; /* PyTorch order */
    if (x == X_TRANSPOSE && t->n_dims == 2) {
        shape[0] = t->ne[0];
        shape[1] = t->ne[1];
    }
    return 1;
}

static qkv_status src_read(void *ctx, const char *name, float *dst) {
    const gguf_src *s = ctx;
    int x;
    const qkv__gguf_tensor *t = lookup(s, name, &x);
    if (!t) return qkv__fail(QKV_ENOTFOUND, "%s: no tensor for %s", s->g.path, name);
    qkv_status st = qkv__gguf_to_f32(t, dst);
    if (st || x == X_NONE) {
        if (st) qkv__fail(st, "%s: %s (%.*s): %s", s->g.path, name, (int)t->name.n, t->name.s,
                          qkv_last_error());
        return st;
    }
    /* rows: the last PyTorch dim is the row length ne[0] (1 for a 1-D bias) */
    uint64_t row = t->n_dims == 1 ? 1 : (uint64_t)t->ne[0], rows = t->n_elems / row;
    if (x == X_TRANSPOSE && t->n_dims != 2)
        return qkv__fail(QKV_EFORMAT, "%s: %.*s is not 2-D", s->g.path, (int)t->name.n, t->name.s);
    int heads = x == X_PERMUTE_Q ? s->n_head : s->n_kv_head;
    if (x != X_TRANSPOSE && (heads < 1 || rows % ((uint64_t)heads * 2)))
        return qkv__fail(QKV_EFORMAT, "%s: %.*s has %llu rows, not a multiple of 2 x %d heads",
                         s->g.path, (int)t->name.n, t->name.s, (unsigned long long)rows, heads);
    float *tmp = malloc(sizeof *tmp * (size_t)t->n_elems);
    if (!tmp) return qkv__fail(QKV_ENOMEM, "%s: out of memory", s->g.path);
    memcpy(tmp, dst, sizeof *tmp * (size_t)t->n_elems);
    if (x == X_TRANSPOSE) { /* GGUF [out][in] -> HF Conv1D [in][out] */
        uint64_t in = (uint64_t)t->ne[0], out = (uint64_t)t->ne[1];
        for (uint64_t o = 0; o < out; o++)
            for (uint64_t i = 0; i < in; i++) dst[i * out + o] = tmp[o * in + i];
    } else { /* hf[h*d + a*d/2 + b] = gguf[h*d + 2b + a] */
        uint64_t d = rows / (uint64_t)heads, half = d / 2;
        for (uint64_t h = 0; h < (uint64_t)heads; h++)
            for (uint64_t a = 0; a < 2; a++)
                for (uint64_t b = 0; b < half; b++)
                    memcpy(dst + (h * d + a * half + b) * row, tmp + (h * d + 2 * b + a) * row,
                           sizeof *dst * (size_t)row);
    }
    free(tmp);
    return QKV_OK;
}

static uint64_t src_file_bytes(void *ctx) {
    const gguf_src *s = ctx;
    uint64_t total = 0;
    for (uint64_t i = 0; i < s->g.n_tensors; i++) total += s->g.tensors[i].n_bytes; /* <= file size */
    return total;
}

static void src_close(void *ctx) {
    gguf_src *s = ctx;
    if (!s) return;
    qkv__gguf_close(&s->g);
    free(s);
}

qkv_status qkv__gguf_src_open(const char *path, struct qkv__tensor_src *src, qkv_model_config *cfg) {
    gguf_src *s = calloc(1, sizeof *s);
    if (!s) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    qkv_status st = qkv__gguf_open(path, &s->g);
    if (st) {
        free(s);
        return st;
    }
    qkv_model_config c;
    if ((st = qkv__gguf_model_config(&s->g, &c))) {
        src_close(s);
        return st;
    }
    s->arch = arch_of((qkv__gguf_str){c.family, strlen(c.family)});
    s->n_head = c.n_head;
    s->n_kv_head = c.n_kv_head;
    if (cfg) *cfg = c;
    memset(src, 0, sizeof *src);
    src->path = s->g.path;
    src->ctx = s;
    src->shape = src_shape;
    src->read = src_read;
    src->file_bytes = src_file_bytes;
    src->close = src_close;
    return QKV_OK;
}

/* ---------------------------------------------------------------------------------------
 * (addition) The writer side: a model as llama.cpp's convert_hf_to_gguf.py would write it
 * (qkv convert --to gguf). The same name tables as above, read the other way; the same two
 * conversions done forwards (llama's Q/K rows permuted to Meta's interleaved pairs, GPT-2's
 * Conv1D weights transposed to [out, in]).
 * ------------------------------------------------------------------------------------- */

/* The GGUF name and transform of a Hugging Face name of the tensor table (gpt2: without the
 * "transformer." prefix); 0 when it has none. */
static int export_name(int arch, const char *hf, char *out, size_t cap, int *xform) {
    int gpt2 = arch == ARCH_GPT2;
    const name_map *layer_map = gpt2 ? gpt2_layer : llama_layer;
    const name_map *global = gpt2 ? gpt2_global : llama_global;
    size_t n_layer_map = gpt2 ? sizeof gpt2_layer / sizeof gpt2_layer[0]
                              : sizeof llama_layer / sizeof llama_layer[0];
    size_t n_global = gpt2 ? sizeof gpt2_global / sizeof gpt2_global[0]
                           : sizeof llama_global / sizeof llama_global[0];
    if (gpt2 && !strncmp(hf, "transformer.", 12)) hf += 12;
    const char *rest;
    int layer = split_layer(hf, gpt2 ? "h." : "model.layers.", &rest);
    *xform = X_NONE;
    if (layer >= 0) {
        for (size_t i = 0; i < n_layer_map; i++)
            if (!strcmp(rest, layer_map[i].hf)) {
                snprintf(out, cap, "blk.%d.%s", layer, layer_map[i].gguf);
                *xform = layer_map[i].xform;
                return 1;
            }
        return 0;
    }
    for (size_t i = 0; i < n_global; i++)
        if (!strcmp(hf, global[i].hf)) {
            snprintf(out, cap, "%s", global[i].gguf);
            return 1;
        }
    return 0;
}

qkv_status qkv__gguf_export_model(const qkv_model *model, qkv__gguf_writer *w, uint32_t type,
                                  const char *name) {
    const qkv_model_config *c = &model->cfg;
    if (type != QKV__GGML_F32 && type != QKV__GGML_F16 && type != QKV__GGML_BF16 &&
        type != QKV__GGML_Q8_0)
        return qkv__fail(QKV_EINVAL, "convert: tensor type %u is not F32, F16, BF16 or Q8_0", type);
    const char *fam = c->family[0] ? c->family : "gpt2";
    int arch;
    if (!strcmp(fam, "gpt2")) arch = ARCH_GPT2;
    else if (!strcmp(fam, "llama") || !strcmp(fam, "mistral")) arch = ARCH_LLAMA;
    else if (!strcmp(fam, "qwen2")) arch = ARCH_QWEN2;
    else if (!strcmp(fam, "qwen3")) arch = ARCH_QWEN3;
    else return qkv__fail(QKV_EUNSUPPORTED, "convert: family \"%s\" has no GGUF architecture", fam);
    qkv__dims m = qkv__dims_of(c);
    const char *a = arch_names[arch];
    int gpt2 = arch == ARCH_GPT2;
    /* what llama.cpp's architectures can express */
    if (gpt2 && (c->norm != QKV_NORM_LAYER || c->mlp != QKV_MLP_GELU_TANH || c->pos != QKV_POS_LEARNED ||
                 c->bias != QKV_BIAS_ALL || m.KV != m.H || m.d * m.H != m.C))
        return qkv__fail(QKV_EUNSUPPORTED, "convert: a gpt2 model with non-GPT-2 pieces has no GGUF form");
    if (!gpt2) {
        if (c->norm != QKV_NORM_RMS || c->mlp != QKV_MLP_SWIGLU || c->pos != QKV_POS_ROPE ||
            c->bias == QKV_BIAS_ALL)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: a %s model with GPT-2 pieces has no GGUF form", fam);
        if (c->qk_norm && arch != ARCH_QWEN3)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: QK-norm is written only as qwen3 (this model is %s)", fam);
        if (arch == ARCH_QWEN3 && c->bias != QKV_BIAS_NONE)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: a qwen3 model with q/k/v biases has no GGUF form");
        if (m.rope_dim != m.d)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: partial rotary (%d of %d dims per head) is not "
                             "written to GGUF (llama.cpp's %s rotates the whole head here)", m.rope_dim, m.d, a);
        if (c->rope_interleaved && arch != ARCH_LLAMA)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: interleaved rotary pairs are llama's (NORM rope), "
                             "not %s's", a);
        if (c->attn_scale != 0 && fabsf(c->attn_scale * sqrtf((float)m.d) - 1.0f) > 1e-6f)
            return qkv__fail(QKV_EUNSUPPORTED, "convert: attention scale %g is not 1/sqrt(%d)",
                             (double)c->attn_scale, m.d);
    }
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
    qkv__gguf_w_str(w, "general.architecture", a);
    qkv__gguf_w_str(w, "general.name", name && *name ? name : fam);
    /* llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32 */
    uint32_t ftype = type == QKV__GGML_F32 ? 0 : type == QKV__GGML_F16 ? 1 : type == QKV__GGML_Q8_0 ? 7 : 32;
    qkv__gguf_w_u32(w, "general.file_type", ftype);
    qkv__gguf_w_u32(w, K("block_count"), (uint32_t)c->n_layer);
    qkv__gguf_w_u32(w, K("context_length"), (uint32_t)c->n_ctx);
    qkv__gguf_w_u32(w, K("embedding_length"), (uint32_t)m.C);
    qkv__gguf_w_u32(w, K("feed_forward_length"), (uint32_t)m.F);
    qkv__gguf_w_u32(w, K("attention.head_count"), (uint32_t)m.H);
    if (gpt2) {
        qkv__gguf_w_f32(w, K("attention.layer_norm_epsilon"), c->layer_norm_eps);
    } else {
        qkv__gguf_w_u32(w, K("attention.head_count_kv"), (uint32_t)m.KV);
        qkv__gguf_w_f32(w, K("rope.freq_base"), c->rope_theta > 0 ? c->rope_theta : 10000.0f);
        qkv__gguf_w_f32(w, K("attention.layer_norm_rms_epsilon"), c->layer_norm_eps);
        if (arch == ARCH_QWEN3 || m.d * m.H != m.C) {
            qkv__gguf_w_u32(w, K("attention.key_length"), (uint32_t)m.d);
            qkv__gguf_w_u32(w, K("attention.value_length"), (uint32_t)m.d);
        }
        if (arch == ARCH_LLAMA) {
            qkv__gguf_w_u32(w, K("vocab_size"), (uint32_t)c->vocab_size);
            qkv__gguf_w_u32(w, K("rope.dimension_count"), (uint32_t)m.rope_dim);
        }
    }
#undef K
    qkv_status st = qkv__gguf_w_u32(w, "general.quantization_version", 2);
    if (st) return st;

    int n = qkv__n_entries(c);
    qkv__tensor_entry *ents = calloc((size_t)n, sizeof *ents);
    if (!ents) return qkv__fail(QKV_ENOMEM, "convert: out of memory");
    qkv__tensor_table(c, &model->p, ents);
    size_t max = 0;
    for (int i = 0; i < n; i++) max = ents[i].count > max ? ents[i].count : max;
    float *buf = malloc(sizeof *buf * (max ? max : 1)), *tmp = malloc(sizeof *tmp * (max ? max : 1));
    if (!buf || !tmp) st = qkv__fail(QKV_ENOMEM, "convert: out of memory");
    for (int i = 0; !st && i < n; i++) {
        const qkv__tensor_entry *e = &ents[i];
        char gname[QKV__GGUF_MAX_NAME + 1];
        int x;
        if (!export_name(arch, e->name, gname, sizeof gname, &x)) {
            st = qkv__fail(QKV_EUNSUPPORTED, "convert: tensor %s has no GGUF name", e->name);
            break;
        }
        qkv__entry_to_file(e, buf);
        int64_t ne[2];
        int nd = e->ndim;
        if (nd == 1) ne[0] = e->shape[0];
        else {
            ne[0] = e->shape[1];
            ne[1] = e->shape[0];
        }
        if (x == X_TRANSPOSE && gpt2 && nd == 2) { /* HF Conv1D [in][out] -> [out][in] */
            int64_t in = e->shape[0], out = e->shape[1];
            for (int64_t o = 0; o < out; o++)
                for (int64_t k = 0; k < in; k++) tmp[o * in + k] = buf[k * out + o];
            memcpy(buf, tmp, sizeof *buf * e->count);
            ne[0] = in;
            ne[1] = out;
        } else if ((x == X_PERMUTE_Q || x == X_PERMUTE_K) && arch == ARCH_LLAMA && !c->rope_interleaved) {
            /* convert_hf_to_gguf.py's LlamaModel.permute: gguf[h*d + 2b + a] = hf[h*d + a*d/2 + b] */
            size_t row = nd == 1 ? 1 : (size_t)e->shape[1], rows = e->count / row;
            size_t heads = (size_t)(x == X_PERMUTE_Q ? m.H : m.KV), d = rows / heads, half = d / 2;
            if (rows % (2 * heads)) {
                st = qkv__fail(QKV_EFORMAT, "convert: %s has %zu rows, not 2 x %zu heads", e->name,
                               rows, heads);
                break;
            }
            for (size_t h = 0; h < heads; h++)
                for (size_t aa = 0; aa < 2; aa++)
                    for (size_t b = 0; b < half; b++)
                        memcpy(tmp + (h * d + 2 * b + aa) * row, buf + (h * d + aa * half + b) * row,
                               sizeof *buf * row);
            memcpy(buf, tmp, sizeof *buf * e->count);
        }
        /* norms, biases, any 1-D tensor and GPT-2's position embeddings in F32 (as
         * convert_hf_to_gguf.py); a matrix whose rows are not whole Q8_0 blocks falls back to
         * F16, as there */
        uint32_t t = nd == 1 || !strcmp(gname, "position_embd.weight") ? QKV__GGML_F32 : type;
        if (t == QKV__GGML_Q8_0 && ne[0] % 32) t = QKV__GGML_F16;
        st = qkv__gguf_w_tensor_f32(w, gname, t, nd, ne, buf);
    }
    /* Llama 3.x rope scaling: the rope_freqs.weight factors convert_hf_to_gguf.py writes */
    if (!st && arch == ARCH_LLAMA && c->rope_factor > 1.0f) {
        int half = m.rope_dim / 2;
        double factor = c->rope_factor, low = c->rope_low_freq_factor, high = c->rope_high_freq_factor;
        double orig = c->rope_orig_ctx, theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(theta, (2.0 * i) / m.rope_dim), wavelen = 2 * M_PI / freq;
            double lo_wl = orig / low, hi_wl = orig / high;
            if (wavelen < hi_wl) buf[i] = 1.0f;
            else if (wavelen > lo_wl) buf[i] = (float)factor;
            else {
                double smooth = (orig / wavelen - low) / (high - low);
                buf[i] = (float)(1 / ((1 - smooth) / factor + smooth));
            }
        }
        int64_t ne[1] = {half};
        st = qkv__gguf_w_tensor_f32(w, "rope_freqs.weight", QKV__GGML_F32, 1, ne, buf);
    }
    free(buf);
    free(tmp);
    free(ents);
    return st;
}
