/* model.h -- private to src/model: the model object, the safetensors reader and the matmul
 * kernels the forward pass and generation share. Shape letters as in qkv.h. */
#ifndef QKV_MODEL_H
#define QKV_MODEL_H

#include "model/params.h"

#include <stdint.h>

/* One Q8_0 block, ggml's block_q8_0 byte for byte: 32 weights w = d * qs[i], d a half float
 * (34 bytes, no padding). A matrix of [out, in] is out rows of in / 32 blocks. */
typedef struct qkv__q8 {
    uint16_t d;
    int8_t qs[32];
} qkv__q8;

struct qkv_model {
    qkv_model_config cfg;   /* checked: every default filled in (qkv__check_config) */
    float *block;           /* n_block floats, the tensor kinds of params.h in order */
    size_t n_block;
    qkv__params p;          /* pointers into block */
    uint16_t *bf16;         /* BF16 copies for generation, or NULL: the block matrices packed
                               (qkv__bf16p_pack), the head [V, C] as it is */
    uint16_t *bf16_attn_w, *bf16_proj_w, *bf16_fc_w, *bf16_fcproj_w, *bf16_out; /* into bf16 */
    /* Q8_0 copies for generation (qkv_model_use_q8), or NULL: each matrix transposed to
     * [out, in] rows of blocks along in (per layer, layers one after another); NULL for a
     * matrix whose in is not a multiple of 32 (it stays F32 / BF16). */
    qkv__q8 *q8;
    qkv__q8 *q8_attn_w, *q8_proj_w, *q8_fc_w, *q8_fcproj_w, *q8_out; /* into q8 */
    qkv_tokenizer *tok;     /* owned, or NULL */
    /* qkv_tokenizer_free, set where a tokenizer is attached (model_load.c), so that the core
     * (create/save, which training links) does not pull in the tokenizer. */
    void (*free_tok)(qkv_tokenizer *);
    char name[128];
};

/* 2 MB-aligned, huge-page-advised float storage for weights; free() it. */
float *qkv__alloc_params(size_t n_floats);

/* ---- safetensors ------------------------------------------------------------------ */

typedef enum { QKV__ST_F32 = 0, QKV__ST_F16 = 1, QKV__ST_BF16 = 2 } qkv__st_dtype;

#define QKV__ST_MAX_DIMS 8
#define QKV__ST_MAX_HEADER ((uint64_t)100000000) /* safetensors' own MAX_HEADER_SIZE */

typedef struct qkv__st_tensor {
    char *name;
    qkv__st_dtype dtype;
    int ndim;
    int64_t shape[QKV__ST_MAX_DIMS];
    size_t count;        /* product of shape */
    const uint8_t *data; /* into the mapping, count * dtype size bytes */
} qkv__st_tensor;

typedef struct qkv__st_file {
    qkv__mmap map;
    const char *path; /* borrowed, for messages */
    int n_tensors;
    qkv__st_tensor *tensors;
} qkv__st_file;

/* Maps and validates a whole safetensors file: header length against the file size and the
 * 100 MB cap, a JSON object of {dtype, shape, data_offsets} entries (F32/F16/BF16 only),
 * shape products without overflow, offsets inside the data area, byte counts equal to
 * count x dtype size, no overlapping tensors, no duplicate names. */
qkv_status qkv__st_open(const char *path, qkv__st_file *f);
/* Same, on bytes already in memory (tests, fuzzing); buf must outlive f. */
qkv_status qkv__st_parse(const uint8_t *buf, size_t size, const char *path, qkv__st_file *f);
void qkv__st_close(qkv__st_file *f);
const qkv__st_tensor *qkv__st_find(const qkv__st_file *f, const char *name);
/* Converts a tensor to float32 (dst holds t->count floats). */
void qkv__st_to_f32(const qkv__st_tensor *t, float *dst);

/* ---- tensor sources ----------------------------------------------------------------

 * Every file format hands the loader the same thing: tensors by their Hugging Face name and
 * in Hugging Face layout (nn.Linear weights [out, in]; GPT-2's Conv1D [in, out] as HF
 * stores it), converted to float32 on request. A safetensors file or sharded folder
 * (st_folder.c), a GGUF file (gguf_model.c: blk.N.attn_q.weight -> model.layers.N.self_attn.
 * q_proj.weight, Q/K rows un-permuted back to HF's rotary halves) and a llama2.c checkpoint
 * (llama2c.c) are sources; model_load.c builds any family from any of them. */
typedef struct qkv__tensor_src {
    const char *path; /* for messages */
    void *ctx;
    /* 1 and the shape if the source has the tensor, else 0. */
    int (*shape)(void *ctx, const char *name, int *ndim, int64_t shape[QKV__ST_MAX_DIMS]);
    /* Its values as float32 into dst (as many floats as the shape holds). */
    qkv_status (*read)(void *ctx, const char *name, float *dst);
    /* Bytes the source's tensors occupy in the file (to refuse configs the file cannot back). */
    uint64_t (*file_bytes)(void *ctx);
    void (*close)(void *ctx);
} qkv__tensor_src;

/* ---- config.json ------------------------------------------------------------------ */

/* Parses a config.json text (HF GPT2Config keys, missing keys take GPT2Config's defaults). */
qkv_status qkv__gpt2_parse_config(const char *json, size_t len, const char *path,
                                  qkv_model_config *cfg);

/* ---- matmul kernels (matmul.c) ---------------------------------------------------- */

/* y[N, out] = x[N, in] @ Wb[in, out] (+ b) with Wb the packed BF16 copy of w: a GEMV for one row,
 * else BF16 dot products where the CPU has them, else (or out of memory) F32 with w. */
void qkv__linear_bf16(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                      const uint16_t *wb, const float *b, float *y);
/* y[N, out] = x[N, in] (row stride ldx) @ W[in, out] (+ b[out] if b). */
void qkv__linear(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                 const float *b, float *y);
/* y[N, V] (row stride ldy) = x[N, C] (row stride ldx) @ E[V, C]^T (row stride lde): the
 * tied output projection, and q.k scores. */
void qkv__linear_t(const float *x, ptrdiff_t ldx, int n, int c, int v, const float *e,
                   ptrdiff_t lde, float *y, ptrdiff_t ldy);
/* BF16 copies of W[in, out] are packed once (qkv_model_use_bf16): panels of 32 output columns,
 * each ceil(in / 2) pair rows of 32 dwords, dword (q, j) holding W[2q, j] in its low half and
 * W[2q + 1, j] in its high half, zeros past in and out. It is what the BF16 GEMM's kernel reads
 * (no packing per call), and one contiguous stream per panel for the GEMV. Sizes are in
 * uint16 elements, a multiple of 64 (every packed matrix starts 128-byte aligned). */
#define QKV__BF16P_NR 32
size_t qkv__bf16p_size(int in, int out);
/* Packs w[in, out] (F32) into dst (qkv__bf16p_size(in, out) elements, 64-byte aligned). */
void qkv__bf16p_pack(const float *w, int in, int out, uint16_t *dst);
/* Where element (k, j) of W[in, out] lies in its packed copy (the layout's one formula). */
static inline size_t qkv__bf16p_index(int in, int k, int j) {
    size_t kp = ((size_t)in + 1) / 2;
    return (((size_t)(j / QKV__BF16P_NR) * kp + (size_t)(k / 2)) * QKV__BF16P_NR + (size_t)(j % QKV__BF16P_NR)) * 2 +
           (size_t)(k & 1);
}
/* Element (k, j) of a packed copy. */
static inline uint16_t qkv__bf16p_at(const uint16_t *wp, int in, int k, int j) {
    return wp[qkv__bf16p_index(in, k, j)];
}
/* One row: y[out] = x[in] @ W[in, out] (+ b). W is F32, or BF16 if wb != NULL (packed, above). */
void qkv__gemv(const float *x, int in, int out, const float *w, const uint16_t *wb,
               const float *b, float *y);
/* One row against E[V, C]: y[V] = E x. E is F32, or BF16 if eb != NULL. */
void qkv__gemv_t(const float *x, int c, int v, const float *e, const uint16_t *eb, float *y);
/* ---- Q8_0 (matmul.c, matmul_avx512.c) ---- */
/* Weights: n floats (a multiple of 32) to n / 32 blocks, ggml's quantize_row_q8_0_ref
 * (d = amax / 127 as a half, q = round(x / d) half away from zero); a block holding NaN or
 * Inf gets d = NaN and q = 0, so that it poisons the outputs it touches (as F32 would). */
void qkv__q8_quantize(const float *src, size_t n, qkv__q8 *dst);
/* Activations, once per GEMV: in floats (a multiple of 32) to q[in] and one float scale per
 * block, d[in / 32] = amax / 127, q = x * (1 / d) rounded to nearest even (ggml's AVX
 * quantize_row_q8_0, with the scale kept in float); a non-finite block gets d = NaN, q = 0.
 * Both implementations (scalar, AVX-512) give the same bytes. */
void qkv__q8_quantize_x(const float *x, int in, int8_t *q, float *d);
void qkv__q8_quantize_x_avx512(const float *x, int in, int8_t *q, float *d);
/* y[out] = W x (+ b[out] if b): W [out, in] in Q8_0 rows (in a multiple of 32), x quantised
 * as above, int8 dot products per block (q8_0 x q8_0, as llama.cpp), summed in float with
 * the two scales. AVX-512 VNNI when the CPU has it, else a portable loop; they differ only in
 * float summation order. Threads split the output rows. */
void qkv__gemv_q8(const float *x, int in, int out, const qkv__q8 *w, const float *b, float *y);
void qkv__gemv_q8_avx512(const int8_t *xq, const float *xd, int in, int out, const qkv__q8 *w,
                         const float *b, float *y, int n_threads);
/* 1 when the CPU has AVX-512 F/BW/VL/DQ and VNNI (the Q8_0 kernel). */
int qkv__cpu_has_avx512_vnni(void);

/* Threads for the model's kernels: qkv__threads(), lowered by this thread's cap. */
int qkv__model_threads(void);
/* Sets this thread's cap (0 = none); returns the previous one. */
int qkv__model_threads_cap(int cap);
/* CPU seconds used by the calling thread (to notice it being descheduled). */
double qkv__thread_cpu(void);
/* CPU seconds used by the whole process. */
double qkv__process_cpu(void);
/* Which sgemm path is used ("openblas" or "avx512"); QKV_GEMM=openblas|avx512 overrides. */
const char *qkv__gemm_name(void);
/* Picks the sgemm path for the whole process (the bench compares them); not thread-safe. */
qkv_status qkv__gemm_select(const char *name);
/* OpenBLAS runs one thread a call, inside qkv's OpenMP threads (matmul.c blas_linear, layers.c
 * qkv__gemm): its own threads would spin beside OpenMP's and fight them for the cores. Every
 * caller of cblas_ calls this first (it sets OpenBLAS once). */
void qkv__blas_one_thread(void);
/* OpenBLAS's kernel family ("Haswell", "SkylakeX", "Prescott"...). */
const char *qkv__openblas_core(void);

/* AVX-512 kernels (matmul_avx512.c); only called when the CPU has AVX-512F. */
void qkv__gemm_nn_avx512(const float *x, ptrdiff_t ldx, int n, int in, int out, const float *w,
                         const float *b, float *y, int n_threads);
void qkv__gemm_nt_avx512(const float *x, ptrdiff_t ldx, int n, int c, int v, const float *e,
                         ptrdiff_t lde, float *y, ptrdiff_t ldy, int n_threads);
void qkv__gemv_avx512(const float *x, int in, int out, const float *w, const uint16_t *wb,
                      const float *b, float *y, int n_threads);
void qkv__gemv_t_avx512(const float *x, int c, int v, const float *e, const uint16_t *eb,
                        float *y, int n_threads);
/* AVX2 + FMA kernels (matmul_avx2.c); only called when the CPU has them and the AVX-512 path
 * is not selected (qkv__use_avx2). qkv__gemv_avx2 (F32) returns 0, having done nothing, when in
 * is 0 or its partials' memory cannot be had; qkv__gemv_bf16p_avx2 reads the packed BF16 copy;
 * qkv__gemv_t_avx2 reads eb (BF16 rows) when it is not NULL, else e. */
int qkv__gemv_avx2(const float *x, int in, int out, const float *w, const float *b, float *y, int n_threads);
void qkv__gemv_bf16p_avx2(const float *x, int in, int out, const uint16_t *wb, const float *b, float *y,
                          int n_threads);
void qkv__gemv_t_avx2(const float *x, int c, int v, const float *e, const uint16_t *eb, float *y, int n_threads);
/* Q8_0 rows (as qkv__gemv_q8_avx512: x already quantised, xq 32-byte aligned). */
void qkv__gemv_q8_avx2(const int8_t *xq, const float *xd, int in, int out, const qkv__q8 *w, const float *b,
                       float *y, int n_threads);
int qkv__use_avx2(void);
/* The calling thread's scratch for the GEMVs (partial sums, x's BF16 parts): n floats, 64-byte
 * aligned, kept between calls (a step's GEMVs come microseconds apart; a fresh allocation
 * would fault its pages in again) and freed when the thread ends; NULL when out of memory. */
float *qkv__gemv_part(size_t n);
/* 1: the F32 GEMV by column slices (as QKV_GEMV=cols) instead of by rows, for the bench's
 * before/after and the tests; 0: by rows. Not while a GEMV runs. */
void qkv__gemv_set_cols(int on);
/* y[n, out] = x[n, in] @ Wb[in, out] + b with Wb packed BF16 and x rounded to BF16, products
 * summed in FP32 (AVX512_BF16; only when qkv__cpu_has_avx512_bf16). QKV_ENOMEM leaves y undefined. */
qkv_status qkv__gemm_bf16_avx512(const float *x, ptrdiff_t ldx, int n, int in, int out, const uint16_t *wb,
                                 const float *b, float *y, int n_threads);
int qkv__cpu_has_avx512_bf16(void);
int qkv__cpu_has_avx512(void);
/* The model's AVX-512 kernels apply: the CPU has them and QKV_SIMD does not force another path. */
int qkv__use_avx512(void);
void qkv__gelu_tanh_avx512(float *y, const float *x, size_t n); /* y may be x */
/* One row of qkv__norm_forward (rms: RMSNorm, b unused); mean / rstd may be NULL. */
void qkv__norm_row_avx512(float *o, const float *x, const float *w, const float *b, int C, float eps,
                          int rms, float *mean, float *rstd);
/* Bench helpers: sustained FMA GFLOP/s; best read GB/s over reps passes of buf (64-aligned). */
double qkv__fma_peak_avx512(double seconds, int n_threads);
double qkv__read_bw_avx512(const float *buf, size_t n, int reps, int n_threads);

/* ---- forward pieces (forward.c) ------------------------------------------------ */

/* 1 <= n <= n_ctx and every id in [0, V). */
qkv_status qkv__check_ids(const qkv_model *model, const int *ids, int n);
qkv_status qkv__model_run(const qkv_model *model, const int *ids, int n, qkv_kvcache *kv,
                         const qkv_forward_opts *opts, float *logits,
                         float *last_logits, qkv_capture *cap, int bf16);
/* The same with interventions, for n_var variants of the sentence at once (their rows one
 * after another through every matmul: many small passes become a few efficient ones). iv:
 * NULL (none) or one intervention per variant; not with kv. x_start (or NULL): [n_var, N, C],
 * each variant's stream entering block start_layer (a recorded run, possibly edited); the pass
 * starts there. With n_var > 1: no kv, no capture, no full logits; last_logits is
 * [n_var, V]. interp.c's grids resume at the layer a change starts from. */
qkv_status qkv__model_run_iv(const qkv_model *model, const int *ids, int n, qkv_kvcache *kv,
                            const qkv_forward_opts *opts, int n_var, const qkv_intervention *iv,
                            int start_layer, const float *x_start, float *logits,
                            float *last_logits, qkv_capture *cap, int bf16);

#endif /* QKV_MODEL_H */
