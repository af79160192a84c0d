/*
 * gpt2.h -- the GPT-2 model's private layout, shared by src/model (inference, loading,
 * saving) and src/train (backward, optimiser).
 *
 * Parameters live in one float32 block (llm.c style), tensor kinds contiguous across layers,
 * matrices in Hugging Face Conv1D layout [in, out]:
 *
 *   wte      [V, C]          token embeddings (also the tied output projection)
 *   wpe      [T, C]          position embeddings, T = n_ctx
 *   ln1_w/b  [L, C]
 *   attn_w   [L, C, 3C]      c_attn: x -> q | k | v
 *   attn_b   [L, 3C]
 *   proj_w   [L, C, C]       attn.c_proj
 *   proj_b   [L, C]
 *   ln2_w/b  [L, C]
 *   fc_w     [L, C, 4C]      mlp.c_fc
 *   fc_b     [L, 4C]
 *   fcproj_w [L, 4C, C]      mlp.c_proj
 *   fcproj_b [L, C]
 *   lnf_w/b  [C]
 */
#ifndef QKV_GPT2_H
#define QKV_GPT2_H

#include "qkv_internal.h"

#define QKV__N_KINDS 16

typedef struct qkv__params {
    float *wte, *wpe, *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b,
        *fc_w, *fc_b, *fcproj_w, *fcproj_b, *lnf_w, *lnf_b;
} qkv__params;

/* Element count of each of the 16 tensor kinds above, in that order. */
void qkv__param_sizes(const qkv_model_config *cfg, size_t sizes[QKV__N_KINDS]);

/* Points p's 16 pointers into block (which holds the sum of the sizes, in order). */
void qkv__point_params(const qkv_model_config *cfg, float *block, qkv__params *p);

/* Validates a config (positive sizes, n_embd divisible by n_head, sane limits). */
qkv_status qkv__check_config(const qkv_model_config *cfg);

/* A model with zeroed parameters and no tokenizer (training initialises the weights). */
qkv_status qkv__model_create(const qkv_model_config *cfg, qkv_model **out);

/* The parameter block: n_params floats laid out as above. */
float *qkv__model_params_block(qkv_model *model, size_t *n_params);
qkv__params *qkv__model_params(qkv_model *model);

/* Writes dir/config.json and dir/model.safetensors (F32, Hugging Face names with the
 * "transformer." prefix, lm_head tied and not stored), creating dir if needed. */
qkv_status qkv__model_save(const qkv_model *model, const char *dir);

/* Attaches a tokenizer (the model takes ownership; NULL detaches). */
void qkv__model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok);

#endif /* QKV_GPT2_H */
