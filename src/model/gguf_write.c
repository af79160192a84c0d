/*
 * gguf_write.c -- a GGUF version 3 writer: metadata of every type, tensors F32 / F16 / BF16 /
 * Q8_0 / Q4_0 (converted from float32 with ggml's reference rounding) or given as raw bytes
 * of any ggml type, each tensor's data aligned (general.alignment, default 32).
 *
 * The file is assembled in memory and written through qkv__write_file (a temporary file
 * beside the target, then rename; a symbolic link, FIFO, device or directory at the path is
 * refused). Layout as gguf-py's GGUFWriter makes it: header, kv, tensor infos, padding to
 * the alignment, then each tensor's data followed by padding to the alignment. What the
 * writer refuses (a duplicate key or tensor name, an empty or over-long name, a type it
 * cannot produce, a row length that is not a multiple of the block, sizes that overflow) is
 * what the reader refuses, so anything written here reads back.
 */
#include "model/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[QKV__GGUF_MAX_DIMS];
    const uint8_t *data; /* n_bytes: owned, or the caller's (qkv__gguf_w_tensor_ref) */
    size_t n_bytes;
    int owned;
} wtensor;

struct qkv__gguf_writer {
    qkv_status err;    /* the first error, returned by every later call */
    char errmsg[512];
    uint32_t alignment;
    uint64_t n_kv;
    qkv__buf kv;       /* serialised kv entries */
    char **keys;       /* for duplicate checks */
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

/* ---------------------------------------------------------------------------------------
 * Errors and serialising
 * ------------------------------------------------------------------------------------- */

static qkv_status w_fail(qkv__gguf_writer *w, qkv_status st) {
    if (!w->err) {
        w->err = st;
        snprintf(w->errmsg, sizeof w->errmsg, "%s", qkv_last_error());
    }
    return st;
}

/* The remembered error, re-recorded as the last error. */
static qkv_status w_check(qkv__gguf_writer *w) {
    if (!w) return qkv__fail(QKV_EINVAL, "GGUF writer: no writer (out of memory?)");
    if (w->err) return qkv__fail(w->err, "%s", w->errmsg);
    return QKV_OK;
}

static int put_u32(qkv__buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return qkv__buf_put(b, x, 4);
}
static int put_u64(qkv__buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    return qkv__buf_put(b, x, 8);
}
static int put_str(qkv__buf *b, const char *s, size_t n) {
    return put_u64(b, n) && qkv__buf_put(b, s, n);
}

/* ---------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------- */

qkv__gguf_writer *qkv__gguf_writer_new(void) {
    qkv__gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = QKV__GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void qkv__gguf_writer_free(qkv__gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        if (w->tensors[i].owned) free((void *)w->tensors[i].data);
    }
    free(w->tensors);
    qkv__buf_free(&w->kv);
    free(w);
}

/* ---------------------------------------------------------------------------------------
 * Metadata
 * ------------------------------------------------------------------------------------- */

static qkv_status check_name(qkv__gguf_writer *w, const char *what, const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > QKV__GGUF_MAX_NAME)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: %s \"%.64s\" must be 1 to %u bytes",
                                   what, name ? name : "", QKV__GGUF_MAX_NAME));
    return QKV_OK;
}

/* Starts a kv: checks the key, records it, writes it and the type. */
static qkv_status begin_kv(qkv__gguf_writer *w, const char *key, uint32_t type) {
    qkv_status st = w_check(w);
    if (st || (st = check_name(w, "key", key))) return st;
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: key %s written twice", key));
    if (w->n_kv >= QKV__GGUF_MAX_KV)
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: more than %u keys", QKV__GGUF_MAX_KV));
    char **keys = realloc(w->keys, sizeof *keys * (size_t)(w->n_kv + 1));
    if (!keys) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    w->keys = keys;
    if (!(keys[w->n_kv] = strdup(key))) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    w->n_kv++;
    if (!put_str(&w->kv, key, strlen(key)) || !put_u32(&w->kv, type))
        return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    return QKV_OK;
}

static size_t scalar_bytes(qkv__gguf_type t) {
    switch (t) {
    case QKV__GGUF_UINT8: case QKV__GGUF_INT8: case QKV__GGUF_BOOL: return 1;
    case QKV__GGUF_UINT16: case QKV__GGUF_INT16: return 2;
    case QKV__GGUF_UINT32: case QKV__GGUF_INT32: case QKV__GGUF_FLOAT32: return 4;
    case QKV__GGUF_UINT64: case QKV__GGUF_INT64: case QKV__GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

qkv_status qkv__gguf_w_scalar(qkv__gguf_writer *w, const char *key, qkv__gguf_type type,
                              const void *v) {
    size_t n = scalar_bytes(type);
    qkv_status st = w_check(w);
    if (st) return st;
    if (!n || !v)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: key %s: %s is not a scalar type", key,
                                   qkv__gguf_type_name((uint32_t)type)));
    if (type == QKV__GGUF_BOOL && *(const uint8_t *)v > 1)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: key %s: bool must be 0 or 1", key));
    if (!strcmp(key, "general.alignment")) {
        uint32_t a = 0;
        if (type == QKV__GGUF_UINT32) memcpy(&a, v, 4);
        if (type != QKV__GGUF_UINT32 || a == 0 || (a & (a - 1)) || a > QKV__GGUF_MAX_ALIGNMENT)
            return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: general.alignment must be a UINT32 "
                                       "power of two up to %llu",
                                       (unsigned long long)QKV__GGUF_MAX_ALIGNMENT));
        w->alignment = a;
    }
    if ((st = begin_kv(w, key, (uint32_t)type))) return st;
    /* little-endian hosts only (as the reader): the value's bytes as they are */
    if (!qkv__buf_put(&w->kv, v, n)) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    return QKV_OK;
}

qkv_status qkv__gguf_writer_set_alignment(qkv__gguf_writer *w, uint32_t alignment) {
    return qkv__gguf_w_scalar(w, "general.alignment", QKV__GGUF_UINT32, &alignment);
}
qkv_status qkv__gguf_w_u32(qkv__gguf_writer *w, const char *key, uint32_t v) {
    return qkv__gguf_w_scalar(w, key, QKV__GGUF_UINT32, &v);
}
qkv_status qkv__gguf_w_i32(qkv__gguf_writer *w, const char *key, int32_t v) {
    return qkv__gguf_w_scalar(w, key, QKV__GGUF_INT32, &v);
}
qkv_status qkv__gguf_w_u64(qkv__gguf_writer *w, const char *key, uint64_t v) {
    return qkv__gguf_w_scalar(w, key, QKV__GGUF_UINT64, &v);
}
qkv_status qkv__gguf_w_f32(qkv__gguf_writer *w, const char *key, float v) {
    return qkv__gguf_w_scalar(w, key, QKV__GGUF_FLOAT32, &v);
}
qkv_status qkv__gguf_w_bool(qkv__gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return qkv__gguf_w_scalar(w, key, QKV__GGUF_BOOL, &b);
}

qkv_status qkv__gguf_w_strn(qkv__gguf_writer *w, const char *key, const char *s, size_t n) {
    qkv_status st = w_check(w);
    if (st) return st;
    if (n > QKV__GGUF_MAX_STRING || (!s && n))
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: key %s: string of %zu bytes (at most "
                                   "%llu)", key, n, (unsigned long long)QKV__GGUF_MAX_STRING));
    if ((st = begin_kv(w, key, QKV__GGUF_STRING))) return st;
    if (!put_str(&w->kv, s, n)) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    return QKV_OK;
}

qkv_status qkv__gguf_w_str(qkv__gguf_writer *w, const char *key, const char *s) {
    return qkv__gguf_w_strn(w, key, s ? s : "", s ? strlen(s) : 0);
}

qkv_status qkv__gguf_w_arr(qkv__gguf_writer *w, const char *key, qkv__gguf_type elem_type,
                           uint64_t n, const void *elems) {
    size_t es = scalar_bytes(elem_type), bytes;
    qkv_status st = w_check(w);
    if (st) return st;
    if (!es)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: key %s: arrays of %s are not written "
                                   "here", key, qkv__gguf_type_name((uint32_t)elem_type)));
    if (n > QKV__GGUF_MAX_ARRAY || (!elems && n) || __builtin_mul_overflow((size_t)n, es, &bytes))
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: key %s: array of %llu elements (at "
                                   "most %llu)", key, (unsigned long long)n,
                                   (unsigned long long)QKV__GGUF_MAX_ARRAY));
    if (elem_type == QKV__GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)elems)[i] > 1)
                return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: key %s: bool must be 0 or 1", key));
    if ((st = begin_kv(w, key, QKV__GGUF_ARRAY))) return st;
    if (!put_u32(&w->kv, (uint32_t)elem_type) || !put_u64(&w->kv, n) ||
        !qkv__buf_put(&w->kv, elems, bytes))
        return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    return QKV_OK;
}

qkv_status qkv__gguf_w_arr_str(qkv__gguf_writer *w, const char *key, uint64_t n,
                               const char *const *strs, const size_t *lens) {
    qkv_status st = w_check(w);
    if (st) return st;
    if (n > QKV__GGUF_MAX_ARRAY || (!strs && n))
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: key %s: array of %llu strings (at most "
                                   "%llu)", key, (unsigned long long)n,
                                   (unsigned long long)QKV__GGUF_MAX_ARRAY));
    for (uint64_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
        if (len > QKV__GGUF_MAX_STRING || (!strs[i] && len))
            return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: key %s: element %llu is %zu bytes "
                                       "(at most %llu)", key, (unsigned long long)i, len,
                                       (unsigned long long)QKV__GGUF_MAX_STRING));
    }
    if ((st = begin_kv(w, key, QKV__GGUF_ARRAY))) return st;
    if (!put_u32(&w->kv, QKV__GGUF_STRING) || !put_u64(&w->kv, n))
        return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    for (uint64_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
        if (!put_str(&w->kv, strs[i] ? strs[i] : "", len))
            return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------- */

/* Checks name, dims and type; the element and byte counts. */
static qkv_status check_tensor(qkv__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                               const int64_t *ne, uint64_t *n_elems, uint64_t *n_bytes) {
    qkv_status st = w_check(w);
    if (st || (st = check_name(w, "tensor name", name))) return st;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s written twice", name));
    if (w->n_tensors >= QKV__GGUF_MAX_TENSORS)
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: more than %u tensors",
                                   QKV__GGUF_MAX_TENSORS));
    uint64_t blck, tsize;
    if (!qkv__ggml_type_block(type, &blck, &tsize))
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s: unknown ggml type %u", name,
                                   type));
    if (n_dims < 1 || n_dims > QKV__GGUF_MAX_DIMS || !ne)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s: %d dims (1 to %d)", name,
                                   n_dims, QKV__GGUF_MAX_DIMS));
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || __builtin_mul_overflow(n, (uint64_t)ne[d], &n) || n > (uint64_t)INT64_MAX)
            return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s: ne[%d] = %lld (dims must "
                                       "be >= 1, their product < 2^63)", name, d, (long long)ne[d]));
    }
    if ((uint64_t)ne[0] % blck)
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s: row length %lld is not a "
                                   "multiple of %s's block of %llu", name, (long long)ne[0],
                                   qkv__ggml_type_name(type), (unsigned long long)blck));
    if (__builtin_mul_overflow(n / blck, tsize, n_bytes) || *n_bytes > (uint64_t)SIZE_MAX / 2)
        return w_fail(w, qkv__fail(QKV_ERANGE, "GGUF writer: tensor %s: byte count overflows", name));
    *n_elems = n;
    return QKV_OK;
}

/* Appends a tensor; data is owned (and freed on failure) when owned. */
static qkv_status add_tensor(qkv__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                             const int64_t *ne, const uint8_t *data, size_t n_bytes, int owned) {
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        wtensor *t = realloc(w->tensors, sizeof *t * cap);
        if (!t) {
            if (owned) free((void *)data);
            return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
        }
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        if (owned) free((void *)data);
        return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    }
    t->owned = owned;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < QKV__GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->n_bytes = n_bytes;
    w->n_tensors++;
    return QKV_OK;
}

static qkv_status w_tensor(qkv__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                           const int64_t *ne, const void *data, size_t n_bytes, int copy) {
    uint64_t n_elems, want;
    qkv_status st = check_tensor(w, name, type, n_dims, ne, &n_elems, &want);
    if (st) return st;
    if (want != n_bytes || (!data && n_bytes))
        return w_fail(w, qkv__fail(QKV_EINVAL, "GGUF writer: tensor %s: %zu bytes given, its shape "
                                   "and type need %llu", name, n_bytes, (unsigned long long)want));
    if (!copy) return add_tensor(w, name, type, n_dims, ne, data, n_bytes, 0);
    uint8_t *c = malloc(n_bytes ? n_bytes : 1);
    if (!c) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    if (n_bytes) memcpy(c, data, n_bytes);
    return add_tensor(w, name, type, n_dims, ne, c, n_bytes, 1);
}

qkv_status qkv__gguf_w_tensor(qkv__gguf_writer *w, const char *name, uint32_t type, int n_dims,
                              const int64_t *ne, const void *data, size_t n_bytes) {
    return w_tensor(w, name, type, n_dims, ne, data, n_bytes, 1);
}

qkv_status qkv__gguf_w_tensor_ref(qkv__gguf_writer *w, const char *name, uint32_t type,
                                  int n_dims, const int64_t *ne, const void *data, size_t n_bytes) {
    return w_tensor(w, name, type, n_dims, ne, data, n_bytes, 0);
}

qkv_status qkv__gguf_w_tensor_f32(qkv__gguf_writer *w, const char *name, uint32_t type,
                                  int n_dims, const int64_t *ne, const float *src) {
    uint64_t n, n_bytes;
    qkv_status st = check_tensor(w, name, type, n_dims, ne, &n, &n_bytes);
    if (st) return st;
    if (type != QKV__GGML_F32 && type != QKV__GGML_F16 && type != QKV__GGML_BF16 &&
        type != QKV__GGML_Q8_0 && type != QKV__GGML_Q4_0)
        return w_fail(w, qkv__fail(QKV_EUNSUPPORTED, "GGUF writer: tensor %s: cannot convert float32 "
                                   "to %s (F32, F16, BF16, Q8_0, Q4_0)", name,
                                   qkv__ggml_type_name(type)));
    uint8_t *out = malloc((size_t)n_bytes);
    if (!out) return w_fail(w, qkv__fail(QKV_ENOMEM, "out of memory"));
    switch (type) {
    case QKV__GGML_F32: memcpy(out, src, (size_t)n_bytes); break;
    case QKV__GGML_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = qkv__f32_to_f16(src[i]);
            out[2 * i] = (uint8_t)h;
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        break;
    case QKV__GGML_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = qkv__f32_to_bf16(src[i]);
            out[2 * i] = (uint8_t)h;
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        break;
    case QKV__GGML_Q8_0: qkv__quantize_q8_0(src, (size_t)n, out); break;
    case QKV__GGML_Q4_0: qkv__quantize_q4_0(src, (size_t)n, out); break;
    }
    return add_tensor(w, name, type, n_dims, ne, out, (size_t)n_bytes, 1);
}

/* ---------------------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------------------- */

static qkv_status pad_to(qkv__buf *b, size_t align) {
    static const uint8_t zeros[64];
    while (b->len % align) {
        size_t k = align - b->len % align;
        if (!qkv__buf_put(b, zeros, k > sizeof zeros ? sizeof zeros : k))
            return qkv__fail(QKV_ENOMEM, "out of memory");
    }
    return QKV_OK;
}

qkv_status qkv__gguf_writer_bytes(qkv__gguf_writer *w, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    qkv_status st = w_check(w);
    if (st) return st;
    size_t a = w->alignment;
    /* the data section's size first: every tensor padded to the alignment */
    size_t data_bytes = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        size_t padded;
        if (__builtin_add_overflow(w->tensors[i].n_bytes, a - 1, &padded) ||
            __builtin_add_overflow(data_bytes, padded - padded % a, &data_bytes))
            return qkv__fail(QKV_ERANGE, "GGUF writer: tensor data exceeds the address space");
    }
    qkv__buf b = {0};
    uint64_t offset = 0;
    int ok = qkv__buf_put(&b, "GGUF", 4) && put_u32(&b, 3) && put_u64(&b, w->n_tensors) &&
             put_u64(&b, w->n_kv) && qkv__buf_put(&b, w->kv.data, w->kv.len);
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        ok = put_str(&b, t->name, strlen(t->name)) && put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; ok && d < t->n_dims; d++) ok = put_u64(&b, (uint64_t)t->ne[d]);
        ok = ok && put_u32(&b, t->type) && put_u64(&b, offset);
        offset += (t->n_bytes + a - 1) / a * a; /* bounded by data_bytes above */
    }
    if (!ok || (st = pad_to(&b, a))) {
        qkv__buf_free(&b);
        return ok ? st : qkv__fail(QKV_ENOMEM, "out of memory");
    }
    if (!qkv__buf_reserve(&b, data_bytes)) { /* the data section, filled below */
        int why = b.failed;
        qkv__buf_free(&b);
        return why == QKV_ETOOLONG
                   ? qkv__fail(QKV_ERANGE, "GGUF writer: file exceeds the address space")
                   : qkv__fail(QKV_ENOMEM, "out of memory");
    }
    size_t total = b.len + data_bytes;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->n_bytes) memcpy(b.data + b.len, t->data, t->n_bytes);
        b.len += t->n_bytes;
        size_t padn = (a - b.len % a) % a;
        memset(b.data + b.len, 0, padn);
        b.len += padn;
    }
    QKV_ASSERT(b.len == total);
    *buf = (uint8_t *)qkv__buf_detach(&b, len);
    return QKV_OK;
}

qkv_status qkv__gguf_writer_save(qkv__gguf_writer *w, const char *path) {
    uint8_t *buf;
    size_t len;
    qkv_status st = qkv__gguf_writer_bytes(w, &buf, &len);
    if (st) return st;
    st = qkv__write_file(path, buf, len);
    free(buf);
    return st;
}
