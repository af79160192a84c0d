/*
 * params.h -- the parameter layout of every family, shared by src/model (inference,
 * loading, saving) and src/train (backward, optimiser).
 *
 * Parameters live in one float32 block (llm.c style), tensor kinds contiguous across layers,
 * matrices stored [in, out] (GPT-2's Conv1D layout; the loader transposes nn.Linear's
 * [out, in]) so that one matmul kernel serves every family. A kind the config does not use
 * has size 0 (and a NULL pointer). With W = (H + 2 KV) d, F = n_ff, F2 = F (GELU) or 2F
 * (SwiGLU: gate | up):
 *
 *   0  wte      [V, C]      token embeddings (also the output projection unless untied)
 *   1  wpe      [T, C]      learned positions (GPT-2)
 *   2  ln1_w    [L, C]      norm before attention
 *   3  ln1_b    [L, C]      (LayerNorm)
 *   4  attn_w   [L, C, W]   x -> q | k | v, heads contiguous inside each
 *   5  attn_b   [L, W]      (bias ALL or QKV)
 *   6  proj_w   [L, Hd, C]  attention output
 *   7  proj_b   [L, C]      (bias ALL)
 *   8  ln2_w    [L, C]      norm before the MLP
 *   9  ln2_b    [L, C]      (LayerNorm)
 *  10  fc_w     [L, C, F2]
 *  11  fc_b     [L, F2]     (bias ALL)
 *  12  fcproj_w [L, F, C]
 *  13  fcproj_b [L, C]      (bias ALL)
 *  14  lnf_w    [C]         final norm
 *  15  lnf_b    [C]         (LayerNorm)
 *  16  qn_w     [L, d]      QK-norm (Qwen3)
 *  17  kn_w     [L, d]
 *  18  lm_head  [V, C]      (untied)
 *
 * Kinds 0-15 are GPT-2's, in the order and sizes earlier versions used, so GPT-2 blocks
 * (and training checkpoints) are unchanged.
 */
#ifndef QKV_PARAMS_H
#define QKV_PARAMS_H

#include "qkv_internal.h"

enum {
    QKV__P_WTE, QKV__P_WPE, QKV__P_LN1_W, QKV__P_LN1_B, QKV__P_ATTN_W, QKV__P_ATTN_B,
    QKV__P_PROJ_W, QKV__P_PROJ_B, QKV__P_LN2_W, QKV__P_LN2_B, QKV__P_FC_W, QKV__P_FC_B,
    QKV__P_FCPROJ_W, QKV__P_FCPROJ_B, QKV__P_LNF_W, QKV__P_LNF_B, QKV__P_QN_W, QKV__P_KN_W,
    QKV__P_LM_HEAD, QKV__N_KINDS
};

typedef struct qkv__params {
    float *wte, *wpe, *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b,
        *fc_w, *fc_b, *fcproj_w, *fcproj_b, *lnf_w, *lnf_b, *qn_w, *kn_w, *lm_head;
} qkv__params;

/* The derived sizes every piece of code needs (from a checked config). */
typedef struct qkv__dims {
    int C, H, KV, d, Hd, KVd, W; /* W = Hd + 2 KVd: the q | k | v row */
    int F, F2;                   /* MLP hidden width; fc's output width (F or 2F) */
    int rope_dim;
} qkv__dims;

static inline qkv__dims qkv__dims_of(const qkv_model_config *c) {
    qkv__dims m;
    m.C = c->n_embd;
    m.H = c->n_head;
    m.KV = c->n_kv_head ? c->n_kv_head : c->n_head;
    m.d = c->head_dim ? c->head_dim : c->n_embd / c->n_head;
    m.Hd = m.H * m.d;
    m.KVd = m.KV * m.d;
    m.W = m.Hd + 2 * m.KVd;
    m.F = c->n_ff ? c->n_ff : 4 * c->n_embd;
    m.F2 = c->mlp == QKV_MLP_SWIGLU ? 2 * m.F : m.F;
    m.rope_dim = c->pos == QKV_POS_ROPE ? (c->rope_dim ? c->rope_dim : m.d) : 0;
    return m;
}

/* Element count of each tensor kind (0 where the config has none). */
void qkv__param_sizes(const qkv_model_config *cfg, size_t sizes[QKV__N_KINDS]);

/* Points p's pointers into block (which holds the sum of the sizes, in order); NULL for
 * kinds of size 0. */
void qkv__point_params(const qkv_model_config *cfg, float *block, qkv__params *p);

/* Fills the defaults a config leaves at 0 (family "gpt2", n_kv_head = H, head_dim = C / H,
 * n_ff = 4C, rope_theta 10000, rope_dim = d) and validates it (positive sizes, heads dividing
 * the width and KV heads dividing the heads, d <= 256, sane limits). */
qkv_status qkv__check_config(qkv_model_config *cfg);

/* A model with zeroed parameters and no tokenizer (training initialises the weights). */
qkv_status qkv__model_create(const qkv_model_config *cfg, qkv_model **out);

/* The parameter block: n_params floats laid out as above. */
float *qkv__model_params_block(qkv_model *model, size_t *n_params);
qkv__params *qkv__model_params(qkv_model *model);

/* Writes dir/config.json and dir/model.safetensors (F32, the family's Hugging Face names and
 * layouts; a tied output head is not stored), creating dir if needed. */
qkv_status qkv__model_save(const qkv_model *model, const char *dir);

/* Writes a block of this config's layout (parameters or gradients) as an F32 safetensors file
 * under the family's Hugging Face names. */
qkv_status qkv__save_named(const qkv_model_config *cfg, const float *block, const char *path);

/* Attaches a tokenizer (the model takes ownership; NULL detaches). */
void qkv__model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok);

/* ---- the tensor table: every tensor of a config by its Hugging Face name -------------- */

/* One file tensor. Either a contiguous range of the block (GPT-2's Conv1D matrices, norms,
 * biases; a bias slice q | k | v), or, with transpose, an nn.Linear [out, in] that is the
 * columns [col, col + out) of a block matrix [in, ld] (Llama's q_proj, k_proj, gate_proj...). */
typedef struct qkv__tensor_entry {
    char name[96];
    float *data;      /* block start of the range, or of the column slice */
    int ndim;
    int64_t shape[2]; /* as the file has it */
    size_t count;
    int transpose;
    int ld;           /* row length of the block matrix (transpose only) */
} qkv__tensor_entry;

/* Number of entries of cfg's table. */
int qkv__n_entries(const qkv_model_config *cfg);
/* Fills ents (qkv__n_entries of them) for a block pointed to by p. */
int qkv__tensor_table(const qkv_model_config *cfg, const qkv__params *p, qkv__tensor_entry *ents);
/* Copies between a file-layout tensor and the block. */
void qkv__entry_from_file(const qkv__tensor_entry *e, const float *src);
void qkv__entry_to_file(const qkv__tensor_entry *e, float *dst);

#endif /* QKV_PARAMS_H */
