/*
 * sources.h -- private to src/model: the readers that turn a file format into a
 * qkv__tensor_src (model.h) and a qkv_model_config, for model_load.c.
 *
 *   hf_config.c   config.json of model_type gpt2 / llama / mistral / qwen2 / qwen3
 *   st_folder.c   DIR/model.safetensors, or DIR/model.safetensors.index.json + its shards
 *   llama2c.c     karpathy/llama2.c checkpoints (legacy header, export.py versions 1 and 2)
 *
 * A source answers exact Hugging Face names in Hugging Face layout (nn.Linear [out, in]);
 * prefixes such as "model." / "transformer." are the loader's concern. Every open function
 * fills *src only on success; on failure it returns a status with a message naming the file
 * and what is wrong (qkv_last_error) and leaves nothing open. src->close(src->ctx) frees it.
 */
#ifndef QKV_SOURCES_H
#define QKV_SOURCES_H

#include "model/model.h"

#include <stddef.h>

/* Parses a Hugging Face config.json text (len bytes; path is for messages) into *cfg,
 * filling every field. model_type "gpt2" (or absent) goes to qkv__gpt2_parse_config;
 * "llama" (SmolLM2, TinyLlama, Llama 2/3.x), "mistral", "qwen2" and "qwen3" are read here
 * with their Hugging Face class defaults for absent keys. Refused with path and key: another
 * model_type, hidden_size not a multiple of the heads (no head_dim), KV heads not dividing
 * the query heads, rope_scaling other than llama3/default, hidden_act other than silu,
 * biases qkv has no place for (o_proj, MLP), sizes outside the caps. */
qkv_status qkv__hf_parse_config(const char *json, size_t len, const char *path,
                                qkv_model_config *cfg);

/* Opens DIR/model.safetensors, else DIR/model.safetensors.index.json and the shards its
 * weight_map names (each file name must stay inside DIR: no '/', no "..", not absolute; each
 * shard present; each tensor in exactly the shard the index assigns it to, and nowhere
 * else). Exact-name lookup; F32/F16/BF16 read as float32. */
qkv_status qkv__st_folder_open(const char *dir, qkv__tensor_src *src);

/* Opens a llama2.c checkpoint (legacy 7 x int32 header; export.py "ak42" version 1, fp32, and
 * version 2, Q8_0 groups dequantised on read), checks its size against the header with
 * checked arithmetic, and fills *cfg (family "llama", RMSNorm eps 1e-5, SwiGLU, RoPE theta
 * 10000 on interleaved pairs as run.c rotates them, untied when the header says so) and
 * *src with HF names: model.embed_tokens.weight, model.layers.N.{input_layernorm,
 * post_attention_layernorm}.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
 * model.layers.N.mlp.{gate,up,down}_proj.weight (w1, w3, w2), model.norm.weight and, when
 * unshared, lm_head.weight. Q and K rows stay in llama2.c's (Meta's) interleaved order. */
qkv_status qkv__llama2c_open(const char *path, qkv_model_config *cfg, qkv__tensor_src *src);

#endif /* QKV_SOURCES_H */
