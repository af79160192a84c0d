/*
 * qkv.h -- the one public header of libqkv: attention from first principles.
 *
 * libqkv computes scaled dot-product multi-head attention,
 *
 *     O = softmax(Q K^T * scale / temperature + mask) V
 *
 * forward and backward, runs GPT-2-family models around it, tokenizes like GPT-2 and
 * trains small models from scratch. Everything the `qkv` binary does goes through here.
 *
 * Conventions
 *   - Every function that can fail returns qkv_status: QKV_OK (0) on success, an error
 *     code otherwise. qkv_strerror(code) names the code; qkv_last_error() gives the
 *     detailed message of the last failure on the calling thread ("model.safetensors:
 *     tensor h.0.attn.c_attn.weight: shape [768, 2303], expected [768, 2304]").
 *   - The library never exits and never prints; only the CLI does.
 *   - Objects are opaque (qkv_model, qkv_tokenizer, qkv_kvcache) with _load/_create and
 *     _free pairs; every _free accepts NULL.
 *   - Tensors are float32, row-major. Shape letters: B batch, H heads (Hq query heads,
 *     Hkv key/value heads), N sequence length (Nq queries, Nk keys), d head dim,
 *     L layers, C channels (n_embd), V vocabulary size.
 */
#ifndef QKV_H
#define QKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------- */

/* X(name, value, description): one table makes the enum and qkv_strerror(). */
#define QKV_STATUS_MAP(X)                                              \
    X(QKV_OK,              0, "success")                               \
    X(QKV_EINVAL,          1, "invalid argument")                      \
    X(QKV_ENOMEM,          2, "out of memory")                         \
    X(QKV_EIO,             3, "input/output error")                    \
    X(QKV_EFORMAT,         4, "malformed file or data")                \
    X(QKV_ESHAPE,          5, "shapes do not agree")                   \
    X(QKV_EUNSUPPORTED,    6, "unsupported feature")                   \
    X(QKV_ERANGE,          7, "value out of range")                    \
    X(QKV_ENOTFOUND,       8, "not found")                             \
    X(QKV_EUTF8,           9, "invalid UTF-8")                         \
    X(QKV_ETOOLONG,       10, "input too long")                       \
    X(QKV_ECANCELED,      11, "cancelled")

typedef enum qkv_status {
#define QKV__ENUM(name, value, text) name = value,
    QKV_STATUS_MAP(QKV__ENUM)
#undef QKV__ENUM
} qkv_status;

/* Short description of a status code ("shapes do not agree"); never NULL. */
const char *qkv_strerror(qkv_status status);

/* Detailed message of the last failure on this thread; "" if none. Valid until the next
 * failing call on the same thread. */
const char *qkv_last_error(void);

/* ---------------------------------------------------------------------------------------
 * Runtime settings
 * ------------------------------------------------------------------------------------- */

/* Threads used by compute kernels. 0 = all cores (the default, or $QKV_THREADS). */
void qkv_set_threads(int n_threads);
int qkv_get_threads(void);

/* The SIMD path chosen at run time: "avx512", "avx2" or "scalar". $QKV_SIMD overrides the
 * detection (to test every path on one machine); qkv_set_simd() does the same. */
const char *qkv_simd_name(void);
qkv_status qkv_set_simd(const char *name);

/* ---------------------------------------------------------------------------------------
 * Attention engine
 *
 * Shapes (PyTorch's scaled_dot_product_attention layout by default):
 *   q, out, dq   [B, Hq,  Nq, d]      lse   [B, Hq, Nq]        probs [B, Hq, Nq, Nk]
 *   k, v, dk, dv [B, Hkv, Nk, d]
 * Hq must be a multiple of Hkv: query head h reads key/value head h / (Hq / Hkv).
 *
 * Strides (in floats) let a caller point into a packed buffer, e.g. a model's [N, 3C]
 * QKV activations or a KV cache; 0 means "contiguous in the shape above". The row
 * (token) stride is *_stride_n, the head stride *_stride_h, the batch stride *_stride_b.
 * out, dq, dk, dv follow the strides of q, k, v respectively.
 *
 * Masks: causal aligned bottom-right: query i sees key j iff j <= i + (Nk - Nq), which is
 * what decoding with a KV cache needs. kv_len (optional, [B]) counts the valid keys of
 * each sequence (padding): keys j >= kv_len[b] are masked. A row that sees no key has
 * output 0, probabilities 0 and lse -inf (never NaN).
 *
 * logits = q.k * scale / temperature. lse is the natural-log log-sum-exp of each row's
 * logits over the keys it sees.
 * ------------------------------------------------------------------------------------- */

typedef struct qkv_attn_desc {
    int batch;          /* B  >= 1 */
    int n_head_q;       /* Hq >= 1 */
    int n_head_kv;      /* Hkv >= 1, divides Hq */
    int n_q;            /* Nq >= 0 */
    int n_k;            /* Nk >= 0 */
    int head_dim;       /* d in [1, 256] */
    float scale;        /* 0 means 1/sqrt(d) */
    float temperature;  /* 0 means 1; must be > 0 otherwise ("focus dial") */
    int causal;         /* nonzero: bottom-right aligned causal mask */
    const int *kv_len;  /* [B] valid key count per sequence, or NULL for all Nk */
    /* strides in floats; 0 = contiguous */
    ptrdiff_t q_stride_b, q_stride_h, q_stride_n;
    ptrdiff_t k_stride_b, k_stride_h, k_stride_n;
    ptrdiff_t v_stride_b, v_stride_h, v_stride_n;
} qkv_attn_desc;

/* Fills *desc with defaults for the given shape (scale 1/sqrt(d), temperature 1, no mask,
 * contiguous strides). */
void qkv_attn_desc_init(qkv_attn_desc *desc, int batch, int n_head_q, int n_head_kv, int n_q,
                        int n_k, int head_dim);

/* Checks a descriptor (shapes, divisibility, d <= 256, temperature > 0, kv_len range). */
qkv_status qkv_attn_validate(const qkv_attn_desc *desc);

/* Forward. out is required; lse and probs are optional (NULL). The fast path streams key
 * blocks with an online softmax and never builds the Nq x Nk matrix; asking for probs
 * makes it write that matrix (for viewing). Extra memory is O(N * d) per thread.
 *
 * Non-finite values follow PyTorch's float32 semantics, the same on every SIMD path and in
 * the reference: NaN in, NaN out, in the rows it reaches and nowhere else.
 *   - NaN in a query row, or in a key that row sees: its out row, lse and probabilities
 *     (over the keys it sees) are NaN. NaN or +-inf in a value: NaN or +-inf in that
 *     column of the rows that see the key (lse unchanged); an inf times a probability
 *     that underflowed to 0 is NaN, as in float arithmetic.
 *   - Masked keys (causal, kv_len) take no part: whatever they hold reaches no row.
 *   - The softmax is max-subtracted: finite logits of any size give the right answer
 *     (one-hot when they are far apart). A -inf logit has probability 0. A +inf or NaN
 *     logit, or a row whose logits are all -inf, leaves the softmax undefined: that out row
 *     and its lse are NaN.
 *   - Logits are float32: |q.k * scale / temperature| beyond about 2.4e38 overflows to
 *     +-inf or NaN (so q, k ~ 1e30 give NaN rows, as PyTorch does); which of the two can
 *     depend on the summation order, so paths may differ on such a row (NaN or p = 0).
 * Nothing is printed and the status stays QKV_OK: check the output if inputs may be bad. */
qkv_status qkv_attention_forward(const qkv_attn_desc *desc, const float *q, const float *k,
                                 const float *v, float *out, float *lse, float *probs);

/* Backward: given the forward's out and lse and the upstream gradient dout (same layout as
 * out), writes dq, dk, dv (overwritten, not accumulated). Probabilities are recomputed
 * from lse (FlashAttention-2). A NaN or inf in any input (or a NaN lse) propagates like
 * the forward's: through the (query, key) pairs that are not masked, into dq of those
 * rows and dk, dv of those keys, never turned into finite numbers; such a (batch, kv head)
 * is computed by the reference (slow, exact about masks). */
qkv_status qkv_attention_backward(const qkv_attn_desc *desc, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse,
                                  const float *dout, float *dq, float *dk, float *dv);

/* The plain reference (double accumulation, materialises the full matrix): the oracle the
 * tests check every fast path against. Same contract as the functions above. */
qkv_status qkv_attention_forward_ref(const qkv_attn_desc *desc, const float *q, const float *k,
                                     const float *v, float *out, float *lse, float *probs);
qkv_status qkv_attention_backward_ref(const qkv_attn_desc *desc, const float *q, const float *k,
                                      const float *v, const float *out, const float *lse,
                                      const float *dout, float *dq, float *dk, float *dv);

/* BF16 forward, optional (qkv_attention_forward stays the default): the same contract
 * without probs (shapes, strides, GQA, masks, kv_len, temperature, the non-finite policy),
 * with Q.K^T and P.V as AVX512_BF16 dot products of bf16-rounded q, k, v and P (round to
 * nearest even) accumulated in float32; scale, masks and the online softmax stay float32.
 * QKV_EUNSUPPORTED, with a message, when the CPU lacks AVX512_BF16 or a non-avx512 SIMD path
 * is forced. Error, with u = 2^-8 (bf16's rounding) and s = |scale / temperature|:
 *   each logit moves by at most ds = (2u + u^2) * s * sum_c |q_c k_c|;
 *   lse by at most ds; out by at most (exp(2 ds) - 1 + 2u) * max |v|.
 * Against exact attention on bf16-rounded q, k, v: lse to float32 rounding, out within
 * u * max |v| (P's rounding). Measured, inputs uniform in [-1, 1], d 32..128, N = 1024: out
 * within 2e-4 of float64 (2.6e-3 causal: its first rows average few keys), lse 1.5e-3.
 * For forward-only inference on long sequences (1.6-1.9x the float32 path's speed at
 * N >= 1024, d = 64, one thread, on Zen 5); not for training (no backward) or where 1e-3 matters. */
qkv_status qkv_attention_forward_bf16(const qkv_attn_desc *desc, const float *q, const float *k,
                                      const float *v, float *out, float *lse);

/* ---------------------------------------------------------------------------------------
 * KV cache for decoding: per layer, keys and values [Hkv, max_len, d], grown token by token.
 * ------------------------------------------------------------------------------------- */

typedef struct qkv_kvcache qkv_kvcache;

qkv_status qkv_kvcache_create(int n_layer, int n_head_kv, int head_dim, int max_len,
                              qkv_kvcache **out);
void qkv_kvcache_free(qkv_kvcache *cache);
void qkv_kvcache_reset(qkv_kvcache *cache);
int qkv_kvcache_len(const qkv_kvcache *cache);

/* Appends n new tokens' keys and values for one layer. k_new and v_new are
 * [Hkv, n, d] with row stride new_stride_n (0 = d) and head stride new_stride_h
 * (0 = n * row stride). The length advances once every layer has appended: call
 * qkv_kvcache_commit(cache, n) after the last layer. */
qkv_status qkv_kvcache_append(qkv_kvcache *cache, int layer, int n, const float *k_new,
                              const float *v_new, ptrdiff_t new_stride_h,
                              ptrdiff_t new_stride_n);
qkv_status qkv_kvcache_commit(qkv_kvcache *cache, int n);

/* Attention of n_q new queries (already appended to the cache) against the whole cache of
 * one layer; causal, bottom-right aligned. q and out are [Hq, n_q, d] with strides as in
 * qkv_attn_desc (0 = contiguous). The n_q == 1 path is bound by memory bandwidth. */
qkv_status qkv_kvcache_attend(const qkv_kvcache *cache, int layer, int n_head_q, int n_q,
                              const float *q, ptrdiff_t q_stride_h, ptrdiff_t q_stride_n,
                              float *out, float scale, float temperature);

/* ---------------------------------------------------------------------------------------
 * Tokenizer: GPT-2 byte-level BPE (vocab.json + merges.txt), byte for byte.
 *
 * Invalid UTF-8 in the input is not an error: each byte of an invalid sequence becomes a
 * piece of its own and is encoded through the byte-level alphabet, so decode(encode(x))
 * returns x's bytes exactly. "<|endoftext|>" in text is plain text unless allow_special.
 * (The valid stretches between invalid bytes are pre-tokenized as separate texts. \s is
 * Unicode White_Space, as in Python's `regex` module and tiktoken. docs/TOKENIZER.md.)
 * ------------------------------------------------------------------------------------- */

typedef struct qkv_tokenizer qkv_tokenizer;

qkv_status qkv_tokenizer_load(const char *vocab_json_path, const char *merges_txt_path,
                              qkv_tokenizer **out);
/* Loads DIR/vocab.json and DIR/merges.txt. */
qkv_status qkv_tokenizer_load_dir(const char *dir, qkv_tokenizer **out);
void qkv_tokenizer_free(qkv_tokenizer *tok);
int qkv_tokenizer_vocab_size(const qkv_tokenizer *tok);
/* Id of "<|endoftext|>", or -1 if the vocabulary has none. */
int qkv_tokenizer_eot(const qkv_tokenizer *tok);

/* Encodes len bytes of text. *ids is malloc'ed (free() it); *n_ids its length.
 * Thread-safe on a shared tokenizer. */
qkv_status qkv_tokenizer_encode(qkv_tokenizer *tok, const char *text, size_t len,
                                int allow_special, int **ids, size_t *n_ids);

/* The raw bytes of one token (not NUL-terminated; may be partial UTF-8). */
qkv_status qkv_tokenizer_token_bytes(const qkv_tokenizer *tok, int id, const char **bytes,
                                     size_t *len);

/* Decodes ids to bytes; *text is malloc'ed and NUL-terminated, *len excludes the NUL. */
qkv_status qkv_tokenizer_decode(const qkv_tokenizer *tok, const int *ids, size_t n_ids,
                                char **text, size_t *len);

/* Today's models' tokenizers (docs/TOKENIZER.md, "Other formats").
 *
 * qkv_tokenizer_open opens whatever PATH is, decided by content, not by name:
 *   - a folder with tokenizer.json (preferred) or vocab.json + merges.txt;
 *   - a Hugging Face tokenizer.json: BPE, byte-level (GPT-2, Llama 3, Qwen, SmolLM2,
 *     DeepSeek, StarCoder: the file's own Split regex) or SentencePiece-style with byte
 *     fallback and the metaspace (Llama 2, Mistral, Gemma); normalizers, pre-tokenizers,
 *     added tokens, the post-processor's BOS/EOS and decoders as the file says. A
 *     component qkv does not implement is refused with its name;
 *   - a GGUF file (tokenizer.ggml.model "gpt2" or "llama");
 *   - a llama2.c tokenizer.bin.
 * The qkv_tokenizer_* calls above work on all of them (token_bytes gives what a token
 * decodes to). */
qkv_status qkv_tokenizer_open(const char *path, qkv_tokenizer **out);
/* llama2.c's tokenizer.bin (int32 max_token_length, then per token: float score, int32
 * length, bytes). vocab_size 0: read tokens to the end of the file. Encodes and decodes as
 * run.c: a dummy " " before non-empty text, <0xNN> byte fallback, merges by score. */
qkv_status qkv_tokenizer_load_llama2c(const char *path, int vocab_size, qkv_tokenizer **out);
/* Beginning / end of sequence ids, or -1 if the tokenizer has none. */
int qkv_tokenizer_bos(const qkv_tokenizer *tok);
int qkv_tokenizer_eos(const qkv_tokenizer *tok);

/* Flags for qkv_tokenizer_encode_ex. */
#define QKV_ENCODE_ALLOW_SPECIAL 1u /* special tokens written in the text are matched */
#define QKV_ENCODE_ADD_SPECIAL 2u   /* add BOS etc. as the file's post-processor says */
/* Encodes with flags; without QKV_ENCODE_ADD_SPECIAL the ids are those of the text alone
 * (as llama.cpp's and Hugging Face's test vectors are made). Non-special added tokens are
 * always matched. qkv_tokenizer_encode(..., allow_special, ...) is
 * encode_ex(..., allow_special ? QKV_ENCODE_ALLOW_SPECIAL : 0, ...). */
qkv_status qkv_tokenizer_encode_ex(qkv_tokenizer *tok, const char *text, size_t len,
                                   unsigned flags, int **ids, size_t *n_ids);

/* Trains a GPT-2-style byte-level BPE vocabulary of vocab_size tokens (256 bytes + merges +
 * "<|endoftext|>") on a corpus, with GPT-2's pre-tokenization, and writes
 * out_dir/vocab.json and out_dir/merges.txt (out_dir is created if missing; its parent must
 * exist). Deterministic: the most frequent pair wins, ties go to the smaller (left id,
 * right id). Errors: QKV_EINVAL for an empty corpus, QKV_ERANGE for vocab_size < 257 or
 * more than the corpus supports (the message says how many it does), QKV_EIO. */
qkv_status qkv_bpe_train(const char *text, size_t len, int vocab_size, const char *out_dir);

/* ---------------------------------------------------------------------------------------
 * Models: GPT-2 and the Llama family (Llama, Mistral, Qwen2, Qwen3, SmolLM2), one parameter
 * layout and one layer library for all (src/model/params.h, layers.h); the config says which
 * pieces a family uses.
 * ------------------------------------------------------------------------------------- */

typedef struct qkv_model qkv_model;

/* The pieces a family picks. Zero is GPT-2's choice everywhere, so a config that sets only
 * the first six fields is a GPT-2. */
typedef enum { QKV_NORM_LAYER = 0, QKV_NORM_RMS = 1 } qkv_norm_kind;
typedef enum { QKV_MLP_GELU_TANH = 0, QKV_MLP_SWIGLU = 1 } qkv_mlp_kind;
typedef enum { QKV_POS_LEARNED = 0, QKV_POS_ROPE = 1 } qkv_pos_kind;
typedef enum { QKV_BIAS_ALL = 0, QKV_BIAS_NONE = 1, QKV_BIAS_QKV = 2 } qkv_bias_kind;

typedef struct qkv_model_config {
    int n_layer;    /* L */
    int n_head;     /* H: query heads */
    int n_embd;     /* C */
    int n_ctx;      /* maximum sequence length (n_positions / max_position_embeddings) */
    int vocab_size; /* V */
    float layer_norm_eps; /* LayerNorm or RMSNorm epsilon */
    /* ---- the family's pieces (0 = GPT-2's; the loader fills every field) ---- */
    char family[16];   /* "gpt2", "llama", "mistral", "qwen2", "qwen3" ("" = gpt2) */
    int n_kv_head;     /* KV heads: H (MHA), fewer (GQA), 1 (MQA); 0 = H */
    int head_dim;      /* d; 0 = C / H (Qwen3 sets it apart from C / H) */
    int n_ff;          /* MLP hidden width; 0 = 4 C */
    int norm;          /* qkv_norm_kind: LayerNorm (weight, bias) or RMSNorm (weight) */
    int mlp;           /* qkv_mlp_kind: gelu_tanh(x W1 + b1) W2 + b2, or (silu(x Wg) * x Wu) Wd */
    int pos;           /* qkv_pos_kind: learned wpe, or rotary on q and k */
    int bias;          /* qkv_bias_kind: biases on every linear (GPT-2), none (Llama), q/k/v only (Qwen2) */
    int qk_norm;       /* RMSNorm over each head's q and k before RoPE (Qwen3), weights [d] */
    int untied;        /* a separate output head (lm_head) instead of the token embedding */
    float attn_scale;  /* 0 = 1 / sqrt(d) */
    float rope_theta;  /* 0 = 10000 */
    int rope_dim;      /* dimensions rotated per head (partial rotary); 0 = d */
    int rope_interleaved; /* pairs (2i, 2i+1) as Meta's and llama2.c's code; 0: halves (i, i + d/2) as HF */
    /* Llama 3.1's rope_scaling {"rope_type": "llama3"}; factor 0 = none */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx; /* original_max_position_embeddings */
} qkv_model_config;

/* Loads a model: PATH is a Hugging Face folder (config.json of model_type gpt2, llama,
 * mistral, qwen2 or qwen3 (SmolLM2, TinyLlama, Llama 3.x are llama) + model.safetensors or
 * shards with model.safetensors.index.json; F32, F16, BF16; its tokenizer.json, or
 * vocab.json + merges.txt, when present), a GGUF file, or a llama2.c checkpoint (.bin, with
 * tokenizer.bin beside it when present). Decided by content, not by name. */
qkv_status qkv_model_load(const char *path, qkv_model **out);
/* Replaces the model's tokenizer (the model takes ownership; NULL detaches); refused when
 * the tokenizer has more tokens than the model's vocabulary. */
qkv_status qkv_model_set_tokenizer(qkv_model *model, qkv_tokenizer *tok);
void qkv_model_free(qkv_model *model);
const qkv_model_config *qkv_model_get_config(const qkv_model *model);
/* The model's tokenizer, or NULL if DIR had none. Owned by the model. */
qkv_tokenizer *qkv_model_tokenizer(const qkv_model *model);
/* A short name for display (the folder's base name). */
const char *qkv_model_name(const qkv_model *model);
/* Number of parameters. */
size_t qkv_model_n_params(const qkv_model *model);

/* What to record during a forward pass, for viewing. The model allocates every array
 * asked for (free with qkv_capture_free); arrays not asked for stay NULL.
 *   probs, scores  [L, H, N, N]  softmax weights; raw logits q.k*scale (before the
 *                                temperature and the mask, so views can redo both)
 *   q, k, v, head_out [L, H, N, d]  per-head projections and outputs (weighted blends)
 *   hidden         [L + 1, N, C]  residual stream entering each block, and after the last
 */
typedef struct qkv_capture {
    int want_probs, want_scores, want_qkv, want_head_out, want_hidden;
    int n_layer, n_head, n_tokens, head_dim, n_embd; /* filled by the model */
    float *probs, *scores, *q, *k, *v, *head_out, *hidden;
} qkv_capture;

void qkv_capture_free(qkv_capture *cap);

/* Options that change the attention of every layer (the playground's dials), and a hook to
 * stop a long pass. New fields are appended: initialise with designated initializers
 * ({.attn_temperature = t}); a positional one that leaves fields out draws
 * -Wmissing-field-initializers. */
typedef struct qkv_forward_opts {
    float attn_temperature; /* 0 or 1: the model as trained */
    int no_causal_mask;     /* nonzero: let every token see every token (not how it was trained) */
    /* NULL, or asked before each layer (and before the output head), on the calling thread:
     * when it returns nonzero the call stops and returns QKV_ECANCELED ("forward: cancelled
     * before layer l of L" or "... before the output head"); outputs and capture contents are
     * then undefined (a capture is freed, as on any error). The functions that run several
     * passes with these options (qkv_model_ablation_grid, qkv_model_patch_maps) ask it in each
     * of them. */
    int (*cancel)(void *arg);
    void *cancel_arg;       /* passed to cancel */
    /* nonzero, with qkv_model_use_bf16 on: every weight matrix is read from the BF16 copies,
     * and passes of several tokens multiply with the CPU's BF16 dot products (AVX512_BF16:
     * activations rounded to BF16, products summed in float32, twice the FP32 rate; F32
     * where the CPU lacks them). Logits differ from F32 by about 1% of their spread
     * (tests/test_model.c bounds it). Ignored when the copies are off. */
    int bf16;
} qkv_forward_opts;

/* Full forward pass over n ids (1 <= n <= n_ctx; else QKV_EINVAL / QKV_ETOOLONG; ids
 * outside [0, V) give QKV_ERANGE). logits: [n, V] or NULL; last_logits: [V] (the last
 * position only) or NULL. opts and cap may be NULL; QKV_ECANCELED when opts->cancel says stop.
 * Re-entrant: all scratch is allocated per call and the model is only read, so several
 * threads may call qkv_model_forward / qkv_model_generate on one shared model at once
 * (each with its own cap). Not while another thread calls qkv_model_use_bf16, _use_q8 or _free. */
qkv_status qkv_model_forward(qkv_model *model, const int *ids, int n, const qkv_forward_opts *opts,
                             float *logits, float *last_logits, qkv_capture *cap);

/* Interventions: change heads or the residual stream inside one forward pass, to find out
 * what a head does by taking it away (ablation) or by transplanting it from another sentence
 * (activation patching). Applied in this order at each layer l:
 *   1. residual patches of layer l overwrite rows of the stream entering block l;
 *   2. attention runs; then every head with ablate[l * H + h] != QKV_ABLATE_NONE has its
 *      output [N, d] (the weighted blend, before the output projection c_proj) replaced:
 *        ZERO     by 0
 *        MEAN     by its mean over the sentence's N positions (every row the same)
 *        UNIFORM  by the output of uniform attention over the keys each query sees (the
 *                 causal running mean of v; the mean of all v without the causal mask);
 *                 a capture's probs then hold those uniform rows
 *   3. head patches of layer l overwrite head outputs (after any ablation).
 * A capture records what the run actually used (patched/ablated head_out and hidden).
 * Residual patches with layer == L overwrite the stream after the last block (before ln_f). */
typedef enum qkv_ablate_mode {
    QKV_ABLATE_NONE = 0,
    QKV_ABLATE_ZERO = 1,
    QKV_ABLATE_MEAN = 2,
    QKV_ABLATE_UNIFORM = 3
} qkv_ablate_mode;

typedef struct qkv_head_patch {
    int layer, head;      /* 0..L-1, 0..H-1 */
    int pos;              /* -1: every position; else only this one (0..N-1) */
    const float *values;  /* [N, d] the head's output in the source run (capture head_out of
                             the same layer and head); with pos >= 0 only row pos is read */
} qkv_head_patch;

typedef struct qkv_resid_patch {
    int layer;            /* 0..L: the stream entering block layer (L: after the last block) */
    int pos;              /* -1: every position; else only this one */
    const float *values;  /* [N, C] the source run's stream (capture hidden row layer); with
                             pos >= 0 only row pos is read */
} qkv_resid_patch;

typedef struct qkv_intervention {
    const unsigned char *ablate;  /* [L * H] qkv_ablate_mode per head, or NULL: none */
    const qkv_head_patch *head_patches;
    int n_head_patches;
    const qkv_resid_patch *resid_patches;
    int n_resid_patches;
} qkv_intervention;

/* qkv_model_forward with an intervention (iv may be NULL: the plain forward). Errors as
 * qkv_model_forward, plus QKV_ERANGE for a mode, layer, head or position out of range and
 * QKV_EINVAL for a patch without values. (A separate entry point rather than a field of
 * qkv_forward_opts, so that callers initialising the options positionally kept compiling
 * under -Wmissing-field-initializers.) */
qkv_status qkv_model_forward_iv(qkv_model *model, const int *ids, int n,
                                const qkv_forward_opts *opts, const qkv_intervention *iv,
                                float *logits, float *last_logits, qkv_capture *cap);

/* The which-heads-matter grid: for each head alone ablated with mode, the change in
 * m = log P(target) - log P(vs) (log P(target) alone when vs < 0) at the last position:
 * grid[l * H + h] = m(ablated) - m(clean). *base gets m(clean) (may be NULL). One clean pass,
 * then per layer one batched pass carrying each of its heads' ablations as a variant, started
 * at that layer from the recorded stream (earlier layers are unchanged by the ablation).
 * target and vs in [0, V). */
qkv_status qkv_model_ablation_grid(qkv_model *model, const int *ids, int n,
                                   const qkv_forward_opts *opts, qkv_ablate_mode mode,
                                   int target, int vs, float *grid, float *base);

/* Activation patching between two sentences of the same length n (src: the "clean" run
 * whose behaviour is transplanted; dst: the run patched). With m as in the ablation grid,
 * measured on the dst run at the last position:
 *   head_metric[l * H + h]  m when head l.h's output at every position is copied from src
 *   pos_metric[l * n + i]   m when the stream entering block l at position i is copied from src
 * (either may be NULL: not computed). *m_src and *m_dst (may be NULL) get m of the two
 * unpatched runs; the fraction of the difference a patch restores is
 * (metric - m_dst) / (m_src - m_dst). */
qkv_status qkv_model_patch_maps(qkv_model *model, const int *src_ids, const int *dst_ids, int n,
                                const qkv_forward_opts *opts, int target, int vs,
                                float *head_metric, float *pos_metric, float *m_src,
                                float *m_dst);

/* Logit lens: reads every recorded residual stream through the final LayerNorm and the
 * unembedding. hidden: [S, N, C] (a capture's hidden, S = L + 1). For each state s and
 * position i: the k most likely tokens (ids [S, N, k], probs [S, N, k], softmax at
 * temperature 1) and, when target >= 0, target_probs[s * N + i] = P(target) (else NULL
 * allowed). State L read this way is exactly the model's output. */
qkv_status qkv_model_logit_lens(qkv_model *model, const float *hidden, int n_states, int n,
                                int k, int *ids, float *probs, int target,
                                float *target_probs);

/* The attention of every generated token, to scrub through a generation step by step.
 * ids: the prompt (n_prompt >= 1 tokens) followed by the n_gen >= 1 generated ones (as
 * qkv_model_generate returned them). Step t is the query at position n_prompt - 1 + t, the one
 * whose logits chose token t, attending over keys 0 .. n_prompt - 1 + t. sel: n_sel head
 * indices l * H + h (NULL: every head, n_sel = L * H). rows: [n_gen][n_sel][n_prompt + n_gen - 1]
 * floats, keys after the step's query 0. One forward pass over ids[0 .. n_prompt + n_gen - 2]
 * with the probabilities recorded (L x H x N^2 floats during the call); under the causal mask
 * each row is the row the KV-cache step computed (up to float rounding). */
qkv_status qkv_model_attn_timeline(qkv_model *model, const int *ids, int n_prompt, int n_gen,
                                   const int *sel, int n_sel, float *rows);

/* Sampling. temperature 0 = greedy; top_k 0 = off; top_p 1 = off. */
typedef struct qkv_sampler {
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
} qkv_sampler;

/* Called for each generated token; return nonzero to stop. */
typedef int (*qkv_token_cb)(void *user, int id);

/* Generates up to max_new tokens after the prompt with a KV cache. Generated ids are
 * written to out_ids (capacity max_new) and counted in *n_out. Stops at <|endoftext|>
 * (not emitted; only when the model has a tokenizer) or when the context is full (the
 * last token comes from the logits at position n_ctx - 1). Deterministic for a given
 * sampler (seed included) and independent of the thread count: the kernels use
 * qkv_get_threads() threads, or one when a few timed steps show one is faster (cores busy
 * with other work). */
qkv_status qkv_model_generate(qkv_model *model, const int *prompt, int n_prompt, int max_new,
                              const qkv_sampler *sampler, qkv_token_cb cb, void *user,
                              int *out_ids, int *n_out);

/* Makes generation (the one-token steps of qkv_model_generate; not the prompt, not
 * qkv_model_forward) read BF16 copies of the weight matrices (about 250 MB more for GPT-2
 * small): half the bytes per token, about twice the speed, weights rounded to 8 bits of
 * mantissa; the activations enter the BF16 dot products as two BF16 parts (exact to 2^-16 of
 * their magnitude), products exact and summed in float32. on = 0 frees the copies. Call
 * before sharing the model between threads. */
qkv_status qkv_model_use_bf16(qkv_model *model, int on);

/* Makes generation (the same one-token steps) read Q8_0 copies of the weight matrices and
 * the output head: llama.cpp's block format (32 int8 values and one half-float scale per
 * block, 34 bytes), each token's activations quantised to int8 blocks too, int8 dot products
 * (AVX-512 VNNI where the CPU has it). About 1.06 bytes per weight (130 MB more for GPT-2
 * small). A matrix whose input width is not a multiple of 32 keeps F32 (or BF16 when
 * qkv_model_use_bf16 is on too; Q8_0 wins where both exist). Logits differ from F32 by about
 * 3% of their spread (max - min) at worst, about 3 times BF16's error (tests/test_model.c
 * bounds it). on = 0 frees the copies. Call before sharing the model between threads. */
qkv_status qkv_model_use_q8(qkv_model *model, int on);

/* The k most likely next tokens from one row of logits, probabilities after a softmax at
 * temperature 1. ids and probs have room for k. */
qkv_status qkv_top_k(const float *logits, int vocab_size, int k, int *ids, float *probs);

/* log P(target) - log P(vs) from one row of logits (softmax at temperature 1, accumulated in
 * double); log P(target) alone when vs < 0. The metric of the ablation grid and the patching
 * maps. target (and vs when >= 0) in [0, vocab_size). */
double qkv_logit_metric(const float *logits, int vocab_size, int target, int vs);

/* What each head does, measured on a probe set the library carries (ordinary prose in
 * windows of up to 128 tokens, and a random sequence of common words shown twice), so that
 * any model with a tokenizer can be scored. score[(l * n_head + h) * QKV_HEAD_TAG_COUNT + k]:
 *   QKV_HEAD_PREV       mean weight on token i-1 (uniform causal attention: ~0.04 at 128)
 *   QKV_HEAD_INDUCTION  on the repeat, the weight on the token after the same token's
 *                       earlier occurrence (0 and has_induction = 0 if the context is < 48)
 *   QKV_HEAD_SINK       mean weight on the first token (rows 4..)
 *   QKV_HEAD_SELF       mean weight on the token itself
 *   QKV_HEAD_PUNCT      mean weight on punctuation / line-break tokens (rows 4..);
 *                       punct_base is what uniform attention would put there
 *   QKV_HEAD_UNIFORM    mean normalised entropy of the rows, H(row) / log(i + 1), in [0, 1]
 * tags[l * n_head + h] has bit k set when score k passes its threshold below (punctuation
 * also needs QKV_HEAD_PUNCT_RATIO x punct_base). */
enum { QKV_HEAD_PREV, QKV_HEAD_INDUCTION, QKV_HEAD_SINK, QKV_HEAD_SELF, QKV_HEAD_PUNCT,
       QKV_HEAD_UNIFORM, QKV_HEAD_TAG_COUNT };
#define QKV_HEAD_PREV_MIN 0.4f
#define QKV_HEAD_INDUCTION_MIN 0.3f
#define QKV_HEAD_SINK_MIN 0.4f
#define QKV_HEAD_SELF_MIN 0.4f
#define QKV_HEAD_PUNCT_MIN 0.3f
#define QKV_HEAD_PUNCT_RATIO 2.5f
#define QKV_HEAD_UNIFORM_MIN 0.85f
typedef struct qkv_head_scores {
    int n_layer, n_head;
    int n_probe_tokens, has_induction;
    float punct_base;
    float *score;    /* [n_layer * n_head * QKV_HEAD_TAG_COUNT] */
    unsigned *tags;  /* [n_layer * n_head] bit masks */
} qkv_head_scores;
qkv_status qkv_model_head_scores(qkv_model *model, qkv_head_scores *out);
void qkv_head_scores_free(qkv_head_scores *s);
/* "previous-token", "induction", "first-token sink", "self", "punctuation", "uniform". */
const char *qkv_head_tag_name(int tag);
/* The score's short key ("prev", "induction", "sink", "self", "punctuation", "uniformity":
 * the JSON field names) and the threshold that tags it (QKV_HEAD_*_MIN). */
const char *qkv_head_score_key(int k);
float qkv_head_threshold(int k);

/* ---------------------------------------------------------------------------------------
 * Attention views: one sentence's attention maps rendered as a terminal heatmap (ANSI),
 * JSON, CSV, SVG or PNG. Shared by `qkv attend` and the server's exports; docs/VIEWS.md
 * shows each. Token bytes are untrusted: every format renders them safely (control bytes,
 * invalid or partial UTF-8 shown as \xNN, text escaped for JSON/CSV/XML/the terminal).
 * Every renderer writes a malloc'ed buffer (free() it): NUL-terminated text, or PNG bytes.
 * ------------------------------------------------------------------------------------- */

#define QKV_VIZ_ALL (-1) /* view.layer / view.head: every layer / every head */
#define QKV_VIZ_AVG (-2) /* view.head: the mean over the layer's heads */

/* What to draw. Nothing is copied; the arrays must outlive the call. */
typedef struct qkv_viz_data {
    int n_tokens;                   /* N >= 1 */
    const char *const *token_bytes; /* [N] raw bytes of each token (any bytes at all) */
    const size_t *token_len;        /* [N] their lengths */
    const int *ids;                 /* [N] token ids, or NULL */
    int n_layer, n_head;            /* L, H >= 1 */
    const float *attn;              /* [L, H, N, N] probabilities; row = query, column = key */
    const char *model_name;         /* for titles; NULL = "model" */
    float temperature;              /* shown in titles and JSON; 0 = 1 */
    int causal;                     /* nonzero: key j > query i is masked (drawn as masked) */
    /* Optional next-token predictions after the last token (n_top = 0: none). */
    int n_top;
    const int *top_ids;              /* [n_top] */
    const float *top_probs;          /* [n_top] */
    const char *const *top_bytes;    /* [n_top] token bytes */
    const size_t *top_len;           /* [n_top] */
} qkv_viz_data;

typedef enum qkv_viz_color {
    QKV_VIZ_COLOR_NONE = 0, /* plain text: numbers and shade characters */
    QKV_VIZ_COLOR_256 = 1,  /* xterm 256-colour palette */
    QKV_VIZ_COLOR_TRUE = 2  /* 24-bit colour */
} qkv_viz_color;

/* Which part to draw, and how. */
typedef struct qkv_viz_view {
    int layer;           /* 0..L-1, or QKV_VIZ_ALL (every layer) */
    int head;            /* 0..H-1, QKV_VIZ_ALL (every head: small multiples), QKV_VIZ_AVG */
    int query;           /* -1: whole matrices; 0..N-1: that query's row (ANSI: bars with
                            numbers; SVG/PNG: the row outlined; JSON: "query" field) */
    int width;           /* ANSI: terminal columns (<= 0: 80); long labels are truncated */
    qkv_viz_color color; /* ANSI colour mode */
    float vmax;          /* top of the colour scale: 0 = 1.0; < 0 = the largest weight shown */
    const int *heads;    /* optional: draw these heads side by side (QKV_VIZ_AVG allowed, e.g.
                            {0, 1, 2, QKV_VIZ_AVG}: the lessons' three heads + their mean);
                            overrides head when n_heads > 0 */
    int n_heads;         /* 0..1024 */
    int drop_first;      /* nonzero: leave key 0 out (where many heads park weight they do not
                            need: the "attention sink") and renormalise each row over the other
                            keys it sees; JSON/CSV then carry those numbers */
} qkv_viz_view;

/* Defaults: layer 0, every head, no query, 80 columns, 24-bit colour, scale 0..1. */
void qkv_viz_view_init(qkv_viz_view *view);

/* Checks data (non-NULL arrays, N, L, H >= 1) and the view against it (layer/head/query in
 * range). QKV_EINVAL / QKV_ERANGE with a message naming the value and its range. */
qkv_status qkv_viz_validate(const qkv_viz_data *data, const qkv_viz_view *view);

/* JSON object: model, n_layer, n_head, n_tokens, temperature, causal, tokens (UTF-8 text,
 * invalid bytes as U+FFFD), labels (display form), token_bytes (arrays of byte values), ids,
 * layers, heads (indices, or ["avg"]), attention [layers][heads][N][N] (float32 printed
 * with 9 significant digits: exact), optional query and top. */
qkv_status qkv_viz_json(const qkv_viz_data *data, const qkv_viz_view *view, char **out,
                        size_t *len);
/* CSV, long format, RFC 4180 quoting, one row per (layer, head, query, key):
 * layer,head,query_index,query_token,key_index,key_token,weight */
qkv_status qkv_viz_csv(const qkv_viz_data *data, const qkv_viz_view *view, char **out,
                       size_t *len);
/* A standalone SVG: heatmap with token labels on both axes, labelled colour scale, title;
 * small multiples when view->head or view->layer is QKV_VIZ_ALL. Cells carry <title>
 * tooltips with the exact weight. */
qkv_status qkv_viz_svg(const qkv_viz_data *data, const qkv_viz_view *view, char **out,
                       size_t *len);
/* Terminal heatmap (or, with view->query >= 0, bars with numbers) fitted to view->width. */
qkv_status qkv_viz_ansi(const qkv_viz_data *data, const qkv_viz_view *view, char **out,
                        size_t *len);
/* PNG image of the same layout as the SVG (ASCII labels drawn with a built-in bitmap font;
 * other characters as '?'). *out is binary, *len its size. */
qkv_status qkv_viz_png(const qkv_viz_data *data, const qkv_viz_view *view, char **out,
                       size_t *len);

/* Token label helpers. Flags: */
#define QKV_VIZ_LABEL_SPACES 1 /* ' ' shown as U+00B7 '·' */
#define QKV_VIZ_LABEL_BREAKS 2 /* '\n' as '↵', '\t' as '⇥', '\r' as '␍' */
#define QKV_VIZ_LABEL_LOSSY 4  /* invalid UTF-8 as U+FFFD and control characters kept (for a
                                  caller that escapes them, e.g. JSON); default: \xNN */
/* A display label for a token's bytes: always valid UTF-8, NUL-terminated, malloc'ed.
 * Without LOSSY it holds no control character (C0, DEL, C1), no bidi override, no U+2028/9:
 * those and invalid or partial UTF-8 bytes appear as \xNN / \uNNNN. */
qkv_status qkv_viz_label(const char *bytes, size_t len, int flags, char **out);

/* The colour scale (viridis; colour-blind safe): t in [0, 1] (clamped, NaN = 0) -> sRGB. */
void qkv_viz_colormap(float t, uint8_t rgb[3]);

/* ---------------------------------------------------------------------------------------
 * Training: GPT-2 from scratch (llm.c style: forward with saved activations, backward
 * through every layer, attention through qkv_attention_backward, AdamW).
 * ------------------------------------------------------------------------------------- */

/* Mean next-token cross-entropy of ids[1:] given ids[:-1] (2 <= n <= n_ctx + 1, ids in
 * [0, V)) in *loss, and its gradient with respect to every weight in grads: NULL or
 * qkv_model_n_params() floats, overwritten. The model must have a tied output projection. */
qkv_status qkv_model_grad(qkv_model *model, const int *ids, int n, float *loss, float *grads);

/* Writes grads (from qkv_model_grad) as an F32 safetensors file, each tensor under its
 * weight's Hugging Face name ("transformer.h.0.attn.c_attn.weight", shape as the weight). */
qkv_status qkv_model_grad_save(const qkv_model *model, const float *grads, const char *path);

/* What qkv_train reports to its callback. */
typedef enum qkv_train_event {
    QKV_TRAIN_INFO = 0, /* message: setup (vocabulary, tokens, model size) */
    QKV_TRAIN_STEP,     /* an optimizer step finished: step, loss, lr, grad_norm, speed */
    QKV_TRAIN_EVAL,     /* validation loss at step (val_loss) */
    QKV_TRAIN_SAVE,     /* checkpoint written (message: the folder) */
    QKV_TRAIN_DONE      /* final evaluation on the whole validation split: val_loss, bpb */
} qkv_train_event;

typedef struct qkv_train_progress {
    qkv_train_event event;
    int step, steps;          /* steps done, steps planned */
    float loss, val_loss;     /* val_loss NaN when not measured */
    float lr, grad_norm;
    double bits_per_byte;     /* DONE only (NaN without a tokenizer) */
    double tokens_per_s, elapsed_s, remaining_s;
    const char *message;      /* INFO/SAVE/DONE text, else NULL */
} qkv_train_progress;

/* Called for every event; return nonzero to stop (the run then saves and returns QKV_OK). */
typedef int (*qkv_train_cb)(void *user, const qkv_train_progress *p);

/* One row of a training log, as qkv_train_opts.on_checkpoint receives it (val_loss NaN where
 * the step had no validation). */
typedef struct qkv_train_point {
    int step;
    double loss, val_loss;
} qkv_train_point;

typedef struct qkv_train_opts {
    /* data */
    const char *data;       /* UTF-8 corpus, or a token file qkv wrote (OUT/tokens.bin) */
    const char *val_data;   /* held-out text; NULL: the last val_fraction of data */
    float val_fraction;     /* default 0.05 */
    const char *out_dir;    /* checkpoint folder (created): HF model files, vocab.json,
                               merges.txt, tokens.bin, optimizer.bin, train_log.csv, loss.svg */
    const char *vocab_dir;  /* vocab.json + merges.txt to use; NULL: train a byte-level BPE of
                               vocab_size tokens on the training text */
    int vocab_size;         /* default 4096 */
    const char *init_dir;   /* start from this model's weights instead of GPT-2 init */
    const char *export_dir; /* also copy model + vocab + log + curve here at every save */
    int resume;             /* continue exactly from out_dir's last checkpoint */
    /* model (from init_dir / the checkpoint when resuming) */
    int n_layer, n_head, n_embd, n_ctx; /* defaults 4, 4, 256, 256 */
    int sinusoid_wpe;       /* nonzero: start wpe as the Transformer's sine/cosine position
                               code (still trained) instead of N(0, 0.02) */
    /* Called after each checkpoint is written to dir (out_dir, and export_dir): the log so far,
     * for the pictures an application draws (the CLI writes loss.svg and loss.png). An error
     * stops the run. NULL: nothing. */
    qkv_status (*on_checkpoint)(void *user, const char *dir, const char *title,
                                const qkv_train_point *pts, int n);
    void *on_checkpoint_user;
    const char *arch;       /* "gpt2" (default) or "llama": RMSNorm, SwiGLU, RoPE, no biases */
    int n_kv_head;          /* llama: key/value heads (0 = n_head; fewer: GQA) */
    int n_ff;               /* MLP width (0: 4C for gpt2, about 8C/3 rounded to 32 for llama) */
    float rope_theta;       /* llama (0 = 10000) */
    int qk_norm;            /* llama: Qwen3's QK-norm */
    /* schedule */
    int batch;              /* B sequences per micro-batch (default 8) */
    int seq_len;            /* T (0 = n_ctx) */
    int accum;              /* micro-batches per step (default 1) */
    int steps;              /* optimizer steps; the cosine schedule ends here (default 1000) */
    double minutes;         /* wall-clock limit (0 = none): stops early, saves */
    int stop_after;         /* stop (and save) after this many steps in this call (0 = none) */
    int warmup;             /* linear warm-up steps (default steps / 20) */
    float lr;               /* peak learning rate (default 1e-3) */
    float min_lr_frac;      /* final lr = lr * min_lr_frac (default 0.1) */
    float weight_decay;     /* AdamW, matrices only (default 0.1) */
    float beta1, beta2, adam_eps; /* defaults 0.9, 0.95, 1e-8 */
    float grad_clip;        /* global-norm clip (default 1.0; 0 = off) */
    float dropout;          /* residual dropout: embeddings, attention and MLP outputs
                               (default 0 = off; evaluation never drops) */
    uint64_t seed;          /* init and batch sampling (default 1337) */
    int sequential;         /* nonzero: consecutive windows instead of random ones */
    int eval_every;         /* steps between validation losses (default 100; 0 = never) */
    int eval_batches;       /* batches per validation loss (default 8) */
    int save_every;         /* steps between checkpoints (default 500; 0 = only at the end) */
    int final_eval;         /* evaluate the whole validation split at the end (default 1) */
    qkv_train_cb callback;  /* may be NULL */
    void *user;
} qkv_train_opts;

/* Fills *opts with the defaults above (data/out_dir NULL). */
void qkv_train_opts_init(qkv_train_opts *opts);

/* Runs a training run: tokenises the corpus once (OUT/tokens.bin, header with magic and
 * version), trains, evaluates, checkpoints every save_every steps and at the end. Errors:
 * unreadable or empty corpus, a vocabulary the corpus cannot support, a context of 0, a
 * corpus shorter than one sequence, a checkpoint that does not match, ... */
qkv_status qkv_train(const qkv_train_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* QKV_H */
