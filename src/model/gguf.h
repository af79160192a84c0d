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
} qkv__gguf;

/* Maps and validates a GGUF file: magic, version 2 or 3, counts against the bytes left,
 * string lengths, nesting (arrays of arrays refused), alignment a power of two, tensor
 * dims positive with no overflow, types known, extents inside the file, no overlaps, no
 * duplicate keys or tensor names. Messages name the key or tensor at fault. */
qkv_status qkv__gguf_open(const char *path, qkv__gguf *g);
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

#endif /* QKV_GGUF_H */
