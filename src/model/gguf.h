/*
 * gguf.h -- llama.cpp's GGUF container (versions 2 and 3): the reader that validates every
 * count, length, offset and extent before trusting it, shared by the model loader
 * (weights, hyperparameters) and the tokenizer (tokenizer.ggml.*), and the writer behind
 * `qkv convert --to gguf`.
 *
 *   magic "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x { string key, u32 type, value }          (arrays: u32 elem type, u64 n, n values)
 *   n_tensors x { string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data (offsets relative to it)
 *
 * Strings are u64 length + bytes (not NUL-terminated in the file; the reader keeps a
 * pointer and a length). Everything is little-endian.
 */
#ifndef QKV_GGUF_H
#define QKV_GGUF_H

#include "qkv_internal.h"

#include <stddef.h>
#include <stdint.h>

/* Metadata value types, as in ggml's gguf.h. */
typedef enum {
    QKV__GGUF_UINT8 = 0, QKV__GGUF_INT8 = 1, QKV__GGUF_UINT16 = 2, QKV__GGUF_INT16 = 3,
    QKV__GGUF_UINT32 = 4, QKV__GGUF_INT32 = 5, QKV__GGUF_FLOAT32 = 6, QKV__GGUF_BOOL = 7,
    QKV__GGUF_STRING = 8, QKV__GGUF_ARRAY = 9, QKV__GGUF_UINT64 = 10, QKV__GGUF_INT64 = 11,
    QKV__GGUF_FLOAT64 = 12
} qkv__gguf_type;

/* Tensor types qkv reads (ggml's numbering); others are refused by name. */
typedef enum {
    QKV__GGML_F32 = 0, QKV__GGML_F16 = 1, QKV__GGML_Q4_0 = 2, QKV__GGML_Q8_0 = 8,
    QKV__GGML_Q4_K = 12, QKV__GGML_BF16 = 30
} qkv__ggml_type;

typedef struct qkv__gguf_str {
    const char *s; /* into the mapping; NOT NUL-terminated */
    uint64_t n;
} qkv__gguf_str;

typedef struct qkv__gguf_kv {
    qkv__gguf_str key;
    qkv__gguf_type type;
    /* scalars (widened): */
    uint64_t u;   /* unsigned ints, bool */
    int64_t i;    /* signed ints */
    double f;     /* floats */
    qkv__gguf_str str;
    /* arrays: element type and count; elements start at arr (strings: walk them with
     * qkv__gguf_arr_str, which the reader has already validated) */
    qkv__gguf_type arr_type;
    uint64_t arr_n;
    const uint8_t *arr;
    /* (addition) string arrays: arr_off[i] is element i's offset from arr (its u64 length
     * prefix), built at open so qkv__gguf_arr_str is O(1); owned by the qkv__gguf. */
    uint64_t *arr_off;
} qkv__gguf_kv;

#define QKV__GGUF_MAX_DIMS 4

typedef struct qkv__gguf_tensor {
    qkv__gguf_str name;
    int n_dims;
    int64_t ne[QKV__GGUF_MAX_DIMS]; /* ggml order: ne[0] is the fastest-varying (row length) */
    uint32_t type;                  /* qkv__ggml_type */
    uint64_t offset;                /* from the data start */
    uint64_t n_elems, n_bytes;
    const uint8_t *data;            /* into the mapping */
} qkv__gguf_tensor;

typedef struct qkv__gguf {
    qkv__mmap map; /* or an unowned buffer (qkv__gguf_parse) */
    const char *path;
    uint32_t version;
    uint64_t n_kv, n_tensors, alignment;
    qkv__gguf_kv *kv;
    qkv__gguf_tensor *tensors;
    const uint8_t *data; size_t data_size;
    int owns_map; /* (addition) 1 after qkv__gguf_open: close unmaps */
    /* (additions) kv and tensors sorted by key / name, for O(log n) lookups */
    qkv__gguf_kv **kv_by_key;
    qkv__gguf_tensor **t_by_name;
} qkv__gguf;

/* Maps and validates a GGUF file: magic, version 2 or 3, counts against the bytes left,
 * string lengths, nesting (arrays of arrays refused), alignment a power of two, tensor
 * dims positive with no overflow, types known, extents inside the file, no overlaps, no
 * duplicate keys or tensor names. Messages name the key or tensor at fault. */
qkv_status qkv__gguf_open(const char *path, qkv__gguf *g);
/* (Both take g uninitialised; on failure it holds nothing to free. parse: buf and path must
 * outlive g, which only points into buf; open keeps path too.) */
qkv_status qkv__gguf_parse(const uint8_t *buf, size_t size, const char *path, qkv__gguf *g);
void qkv__gguf_close(qkv__gguf *g);

/* Lookups (NULL / -1 when absent). */
const qkv__gguf_kv *qkv__gguf_find(const qkv__gguf *g, const char *key);
const qkv__gguf_tensor *qkv__gguf_find_tensor(const qkv__gguf *g, const char *name);
/* Typed getters: QKV_OK, or a message naming the key when absent or of another type. */
qkv_status qkv__gguf_get_u64(const qkv__gguf *g, const char *key, uint64_t *v);
qkv_status qkv__gguf_get_f64(const qkv__gguf *g, const char *key, double *v);
qkv_status qkv__gguf_get_str(const qkv__gguf *g, const char *key, qkv__gguf_str *v);
/* Element i of a string array (validated at open); of a numeric array, widened. */
qkv__gguf_str qkv__gguf_arr_str(const qkv__gguf_kv *kv, uint64_t i);
double qkv__gguf_arr_f64(const qkv__gguf_kv *kv, uint64_t i);
int64_t qkv__gguf_arr_i64(const qkv__gguf_kv *kv, uint64_t i);

/* Converts a tensor (F32, F16, BF16, Q8_0, Q4_0, Q4_K) to float32 (dst: n_elems floats). */
qkv_status qkv__gguf_to_f32(const qkv__gguf_tensor *t, float *dst);

/* ---- additions ------------------------------------------------------------------------ */

/* Caps (reliability-anchors.md 2.1 / 4.x "GGUF": ggml PR #1516, gguf-py #27188). Every count
 * and length is also checked against the bytes left in the file before anything is
 * allocated. */
#define QKV__GGUF_MAX_KV        4096u
#define QKV__GGUF_MAX_TENSORS   65536u /* the anchors say 4096; big MoE files with per-expert
                                         * tensors pass it, and each info costs >= 33 bytes */
#define QKV__GGUF_MAX_STRING    ((uint64_t)1 << 20)  /* 1 MiB */
#define QKV__GGUF_MAX_ARRAY     ((uint64_t)1 << 20)  /* elements */
#define QKV__GGUF_MAX_ALIGNMENT ((uint64_t)1 << 20)  /* 1 MiB */
#define QKV__GGUF_MAX_NAME      256u                 /* key and tensor name bytes */
#define QKV__GGUF_DEFAULT_ALIGNMENT 32u

/* "UINT32", "STRING"... ("?" for an unknown type). */
const char *qkv__gguf_type_name(uint32_t type);
/* ggml's name of a tensor type ("Q8_0"), or NULL when unknown to qkv. */
const char *qkv__ggml_type_name(uint32_t type);
/* Elements per block and bytes per block of a ggml tensor type; 0 when unknown. */
int qkv__ggml_type_block(uint32_t type, uint64_t *blck, uint64_t *type_size);
/* 1 when s equals the NUL-terminated c. */
int qkv__gguf_str_eq(qkv__gguf_str s, const char *c);
/* The whole array of a kv as a typed pointer, or NULL when kv is not an array of that
 * element type (the check PR #26690 asks of every consumer). */
const qkv__gguf_kv *qkv__gguf_find_arr(const qkv__gguf *g, const char *key, qkv__gguf_type elem);

/* float <-> half / bfloat16: qkv_internal.h (src/common/half.c). */
/* ggml's reference quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref): n a multiple
 * of 32; dst holds n / 32 blocks (34 / 18 bytes each). */
void qkv__quantize_q8_0(const float *src, size_t n, uint8_t *dst);
void qkv__quantize_q4_0(const float *src, size_t n, uint8_t *dst);

/* ---- writer (gguf_write.c): GGUF v3 ----------------------------------------------------
 *
 *   qkv__gguf_writer *w = qkv__gguf_writer_new();
 *   qkv__gguf_writer_set_alignment(w, 32);                 (also writes general.alignment)
 *   qkv__gguf_w_str(w, "general.architecture", "llama");
 *   qkv__gguf_w_u32(w, "llama.block_count", 2);
 *   qkv__gguf_w_tensor_f32(w, "token_embd.weight", QKV__GGML_Q8_0, 2, ne, floats);
 *   qkv__gguf_writer_save(w, "out.gguf");                   (temp file + rename)
 *   qkv__gguf_writer_free(w);
 *
 * ne is in ggml order (ne[0] the row length). Errors (duplicate key or name, bad type, a
 * row length not a multiple of the block) are remembered: the first one is returned by
 * every later call and by _save / _bytes, so callers may check only the end. */
typedef struct qkv__gguf_writer qkv__gguf_writer;
qkv__gguf_writer *qkv__gguf_writer_new(void);
void qkv__gguf_writer_free(qkv__gguf_writer *w);
qkv_status qkv__gguf_writer_set_alignment(qkv__gguf_writer *w, uint32_t alignment);
/* One scalar: type any scalar qkv__gguf_type; v points to a value of that type (bool: a
 * uint8_t 0 or 1). */
qkv_status qkv__gguf_w_scalar(qkv__gguf_writer *w, const char *key, qkv__gguf_type type,
                              const void *v);
qkv_status qkv__gguf_w_u32(qkv__gguf_writer *w, const char *key, uint32_t v);
qkv_status qkv__gguf_w_i32(qkv__gguf_writer *w, const char *key, int32_t v);
qkv_status qkv__gguf_w_u64(qkv__gguf_writer *w, const char *key, uint64_t v);
qkv_status qkv__gguf_w_f32(qkv__gguf_writer *w, const char *key, float v);
qkv_status qkv__gguf_w_bool(qkv__gguf_writer *w, const char *key, int v);
qkv_status qkv__gguf_w_str(qkv__gguf_writer *w, const char *key, const char *s);
qkv_status qkv__gguf_w_strn(qkv__gguf_writer *w, const char *key, const char *s, size_t n);
/* Arrays: elems packed little-endian values of elem_type (a scalar type); strings: n
 * pointers with their lengths (lens NULL: NUL-terminated). */
qkv_status qkv__gguf_w_arr(qkv__gguf_writer *w, const char *key, qkv__gguf_type elem_type,
                           uint64_t n, const void *elems);
qkv_status qkv__gguf_w_arr_str(qkv__gguf_writer *w, const char *key, uint64_t n,
                               const char *const *strs, const size_t *lens);
/* A tensor from bytes already in its type (n_bytes must be what ne and type imply). */
qkv_status qkv__gguf_w_tensor(qkv__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                              const int64_t *ne, const void *data, size_t n_bytes);
/* The same without a copy: data must stay valid until _bytes / _save (for `qkv convert`,
 * whose weights are already in memory, so the file is the only second copy). */
qkv_status qkv__gguf_w_tensor_ref(qkv__gguf_writer *w, const char *name, uint32_t type,
                                  int n_dims, const int64_t *ne, const void *data, size_t n_bytes);
/* A tensor from float32, converted to type (F32, F16, BF16, Q8_0, Q4_0). */
qkv_status qkv__gguf_w_tensor_f32(qkv__gguf_writer *w, const char *name, uint32_t type,
                                  int n_dims, const int64_t *ne, const float *src);
/* The whole file in a malloc'ed buffer (free() it). */
qkv_status qkv__gguf_writer_bytes(qkv__gguf_writer *w, uint8_t **buf, size_t *len);
/* Writes the file through qkv__write_file (temp + rename; a non-regular file is refused). */
qkv_status qkv__gguf_writer_save(qkv__gguf_writer *w, const char *path);

/* ---- GGUF as a model (gguf_model.c) -------------------------------------------------- */

/* The config of a GGUF model from general.architecture (llama, qwen2, qwen3, gpt2; mistral
 * files say llama) and <arch>.* hyperparameters; other architectures are refused by name. */
qkv_status qkv__gguf_model_config(const qkv__gguf *g, qkv_model_config *cfg);
/* Opens path as a qkv__tensor_src (model.h): Hugging Face names and layouts (llama's Q/K rows
 * un-permuted, GPT-2's Conv1D weights transposed back), any supported tensor type read as
 * float32; and, when cfg is not NULL, its config. path must outlive the source. */
struct qkv__tensor_src;
qkv_status qkv__gguf_src_open(const char *path, struct qkv__tensor_src *src, qkv_model_config *cfg);

/* (addition) qkv convert --to gguf: general.*, <arch>.* hyperparameters and every tensor of
 * model under llama.cpp's names and layouts, as convert_hf_to_gguf.py writes them (arch
 * gpt2 / llama (mistral too) / qwen2 / qwen3; llama's Q/K rows permuted to interleaved pairs
 * unless the model's already are; GPT-2's Conv1D weights as [out, in]; a tied output not
 * stored). Matrices in type (F32, F16, BF16, Q8_0; Q8_0 rows not a multiple of 32 fall back
 * to F16), 1-D tensors in F32; Llama 3 rope scaling as rope_freqs.weight. Models llama.cpp
 * cannot express (partial rotary, ...) are refused with the reason. No tokenizer keys. */
struct qkv_model;
qkv_status qkv__gguf_export_model(const struct qkv_model *model, qkv__gguf_writer *w, uint32_t type,
                                  const char *name);

#endif /* QKV_GGUF_H */
