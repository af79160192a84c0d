/*
 * gguf.c -- llama.cpp's GGUF container, read with every count, length, offset and extent
 * checked before it is trusted (the layout is in gguf.h).
 *
 * DESIGN. The parse is one forward pass over the bytes with a cursor that refuses to read
 * past the end. Nothing is allocated from a count until the count has been checked against
 * a cap and against the bytes left (every kv costs at least 13 bytes, every tensor info 32,
 * every string 8), so a 40-byte file cannot ask for gigabytes (ggml PR #1516, gguf-py
 * #27188). Allocations: the kv table, the tensor table, and one offset index per string
 * array (making qkv__gguf_arr_str O(1)); their sizes are bounded by the file's own size.
 * Every multiply and add that sizes something goes through __builtin_*_overflow
 * (CVE-2024-21802, CVE-2024-23605, CVE-2025-53630, CVE-2026-27940, CVE-2026-33298).
 *
 * What is refused (each with a message naming the key or tensor):
 *   - magic not "GGUF"; version other than 2 or 3 (v1's 32-bit counts, big-endian files);
 *   - n_kv > 4096 or n_tensors > 65536, or more than the bytes left could hold;
 *   - a key or tensor name empty, longer than 256 bytes, or holding a NUL; a string longer
 *     than 1 MiB or than the bytes left; an array of more than 2^20 elements or more than
 *     the bytes left; arrays of arrays; unknown value types; a bool other than 0 or 1;
 *   - duplicate keys, duplicate tensor names;
 *   - general.alignment not a UINT32, zero, not a power of two, or above 1 MiB;
 *   - n_dims outside 1..4; a dim of 0 or above INT64_MAX; an element count or byte count
 *     that overflows int64; a tensor type unknown to ggml (known but unsupported types load,
 *     and qkv__gguf_to_f32 refuses them by name); ne[0] not a multiple of the type's block;
 *   - a tensor offset not a multiple of the alignment, or whose data runs past the end of
 *     the file (Ollama CVE-2026-7482); two tensors whose bytes overlap.
 * A file with no tensors may end before the padded start of the data section (vocab-only
 * files do); a file with tensors must hold it.
 */
#include "model/gguf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------------- */

static const char *const value_type_names[] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *qkv__gguf_type_name(uint32_t type) {
    return type < sizeof value_type_names / sizeof value_type_names[0] ? value_type_names[type] : "?";
}

/* Bytes of one scalar value; 0 for STRING, ARRAY and unknown types. */
static size_t scalar_size(uint32_t type) {
    switch (type) {
    case QKV__GGUF_UINT8: case QKV__GGUF_INT8: case QKV__GGUF_BOOL: return 1;
    case QKV__GGUF_UINT16: case QKV__GGUF_INT16: return 2;
    case QKV__GGUF_UINT32: case QKV__GGUF_INT32: case QKV__GGUF_FLOAT32: return 4;
    case QKV__GGUF_UINT64: case QKV__GGUF_INT64: case QKV__GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* ggml's tensor types (ggml.h, gguf-py constants.py GGML_QUANT_SIZES): elements per block
 * and bytes per block. Numbers ggml retired (4, 5, 31-33, 36-38) are unknown here. */
static const struct {
    uint32_t id;
    const char *name;
    uint32_t blck, size;
} ggml_types[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},     {6, "Q5_0", 32, 22},       {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},       {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144},    {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74}, {18, "IQ3_XXS", 256, 98},  {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},   {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136},{24, "I8", 1, 1},          {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},         {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},  {30, "BF16", 1, 2},        {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},     {40, "NVFP4", 64, 36},
    {41, "Q1_0", 128, 18},   {42, "Q2_0", 64, 18},
};

static int ggml_type_index(uint32_t type) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].id == type) return (int)i;
    return -1;
}

const char *qkv__ggml_type_name(uint32_t type) {
    int i = ggml_type_index(type);
    return i < 0 ? NULL : ggml_types[i].name;
}

int qkv__ggml_type_block(uint32_t type, uint64_t *blck, uint64_t *type_size) {
    int i = ggml_type_index(type);
    if (i < 0) return 0;
    *blck = ggml_types[i].blck;
    *type_size = ggml_types[i].size;
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * The cursor: reads that never pass the end
 * ------------------------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *buf;
    size_t size, pos;
    const char *path;
} cursor;

static size_t left(const cursor *c) { return c->size - c->pos; }

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static qkv_status truncated(const cursor *c, const char *what) {
    return qkv__fail(QKV_EFORMAT, "%s: file ends inside %s (offset %zu of %zu bytes)", c->path, what,
                     c->pos, c->size);
}

static qkv_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (left(c) < 4) return truncated(c, what);
    *v = le32(c->buf + c->pos);
    c->pos += 4;
    return QKV_OK;
}

static qkv_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (left(c) < 8) return truncated(c, what);
    *v = le64(c->buf + c->pos);
    c->pos += 8;
    return QKV_OK;
}

/* A string: u64 length (<= cap and <= the bytes left) + bytes. */
static qkv_status rd_str(cursor *c, qkv__gguf_str *s, uint64_t cap, const char *what) {
    uint64_t n = 0;
    qkv_status st = rd_u64(c, &n, what);
    if (st) return st;
    if (n > cap)
        return qkv__fail(QKV_EFORMAT, "%s: %s is %llu bytes long (at most %llu)", c->path, what,
                         (unsigned long long)n, (unsigned long long)cap);
    if (n > left(c))
        return qkv__fail(QKV_EFORMAT, "%s: %s is %llu bytes long, past the end of the file (%zu left)",
                         c->path, what, (unsigned long long)n, left(c));
    s->s = (const char *)c->buf + c->pos;
    s->n = n;
    c->pos += (size_t)n;
    return QKV_OK;
}

/* A key or tensor name: non-empty, <= QKV__GGUF_MAX_NAME bytes, no NUL. */
static qkv_status rd_name(cursor *c, qkv__gguf_str *s, const char *what, uint64_t index) {
    char label[64];
    snprintf(label, sizeof label, "%s %llu", what, (unsigned long long)index);
    qkv_status st = rd_str(c, s, QKV__GGUF_MAX_NAME, label);
    if (st) return st;
    if (s->n == 0) return qkv__fail(QKV_EFORMAT, "%s: %s is empty", c->path, label);
    if (memchr(s->s, 0, (size_t)s->n))
        return qkv__fail(QKV_EFORMAT, "%s: %s \"%.*s\" contains a NUL byte", c->path, label,
                         (int)strnlen(s->s, (size_t)s->n), s->s);
    return QKV_OK;
}

/* ---------------------------------------------------------------------------------------
 * Metadata
 * ------------------------------------------------------------------------------------- */

#define KEYF "%.*s"
#define KEYA(str) (int)(str).n, (str).s

/* Reads one scalar of type into kv's u / i / f fields. */
static qkv_status rd_scalar(cursor *c, uint32_t type, qkv__gguf_kv *kv) {
    size_t n = scalar_size(type);
    if (left(c) < n) return truncated(c, "a metadata value");
    const uint8_t *p = c->buf + c->pos;
    switch (type) {
    case QKV__GGUF_UINT8: kv->u = p[0]; break;
    case QKV__GGUF_INT8: kv->i = (int8_t)p[0]; break;
    case QKV__GGUF_BOOL:
        if (p[0] > 1)
            return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": BOOL value %u (0 or 1)", c->path,
                             KEYA(kv->key), p[0]);
        kv->u = p[0];
        break;
    case QKV__GGUF_UINT16: kv->u = le16(p); break;
    case QKV__GGUF_INT16: kv->i = (int16_t)le16(p); break;
    case QKV__GGUF_UINT32: kv->u = le32(p); break;
    case QKV__GGUF_INT32: kv->i = (int32_t)le32(p); break;
    case QKV__GGUF_UINT64: kv->u = le64(p); break;
    case QKV__GGUF_INT64: kv->i = (int64_t)le64(p); break;
    case QKV__GGUF_FLOAT32: {
        uint32_t b = le32(p);
        float f;
        memcpy(&f, &b, 4);
        kv->f = f;
        break;
    }
    case QKV__GGUF_FLOAT64: {
        uint64_t b = le64(p);
        memcpy(&kv->f, &b, 8);
        break;
    }
    default: QKV_ASSERT(0);
    }
    c->pos += n;
    return QKV_OK;
}

static qkv_status rd_array(cursor *c, qkv__gguf_kv *kv) {
    uint32_t et = 0;
    uint64_t n = 0;
    qkv_status st = rd_u32(c, &et, "an array's element type");
    if (!st) st = rd_u64(c, &n, "an array's length");
    if (st) return st;
    if (et == QKV__GGUF_ARRAY)
        return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": arrays of arrays are not supported", c->path,
                         KEYA(kv->key));
    if (et != QKV__GGUF_STRING && scalar_size(et) == 0)
        return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": unknown array element type %u", c->path,
                         KEYA(kv->key), et);
    if (n > QKV__GGUF_MAX_ARRAY)
        return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": array of %llu elements (at most %llu)",
                         c->path, KEYA(kv->key), (unsigned long long)n,
                         (unsigned long long)QKV__GGUF_MAX_ARRAY);
    /* the smallest an element can be: a string's length prefix, or the scalar */
    uint64_t min_bytes, esz = et == QKV__GGUF_STRING ? 8 : scalar_size(et);
    if (__builtin_mul_overflow(n, esz, &min_bytes) || min_bytes > left(c))
        return qkv__fail(QKV_EFORMAT,
                         "%s: key " KEYF ": array of %llu %s elements does not fit in the %zu bytes left",
                         c->path, KEYA(kv->key), (unsigned long long)n, qkv__gguf_type_name(et),
                         left(c));
    kv->arr_type = (qkv__gguf_type)et;
    kv->arr_n = n;
    kv->arr = c->buf + c->pos;
    if (et != QKV__GGUF_STRING) {
        if (et == QKV__GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (kv->arr[i] > 1)
                    return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": element %llu is BOOL %u (0 or 1)",
                                     c->path, KEYA(kv->key), (unsigned long long)i, kv->arr[i]);
        c->pos += (size_t)min_bytes;
        return QKV_OK;
    }
    /* n * 8 <= bytes left, so the index is at most the file's size */
    kv->arr_off = malloc((size_t)(n ? n : 1) * sizeof *kv->arr_off);
    if (!kv->arr_off) return qkv__fail(QKV_ENOMEM, "%s: out of memory", c->path);
    size_t start = c->pos;
    for (uint64_t i = 0; i < n; i++) {
        kv->arr_off[i] = c->pos - start;
        if (left(c) < 8) return truncated(c, "a string array");
        uint64_t len = le64(c->buf + c->pos);
        c->pos += 8;
        if (len > QKV__GGUF_MAX_STRING || len > left(c))
            return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": element %llu is %llu bytes long (at most "
                             "%llu, and %zu bytes are left)", c->path, KEYA(kv->key),
                             (unsigned long long)i, (unsigned long long)len,
                             (unsigned long long)QKV__GGUF_MAX_STRING, left(c));
        c->pos += (size_t)len;
    }
    return QKV_OK;
}

static qkv_status rd_kv(cursor *c, qkv__gguf_kv *kv, uint64_t index) {
    qkv_status st = rd_name(c, &kv->key, "key", index);
    if (st) return st;
    uint32_t type = 0;
    if ((st = rd_u32(c, &type, "a value type"))) return st;
    if (type > QKV__GGUF_FLOAT64)
        return qkv__fail(QKV_EFORMAT, "%s: key " KEYF ": unknown value type %u", c->path,
                         KEYA(kv->key), type);
    kv->type = (qkv__gguf_type)type;
    if (type == QKV__GGUF_STRING) {
        char label[96];
        snprintf(label, sizeof label, "the value of " KEYF, KEYA(kv->key));
        return rd_str(c, &kv->str, QKV__GGUF_MAX_STRING, label);
    }
    if (type == QKV__GGUF_ARRAY) return rd_array(c, kv);
    return rd_scalar(c, type, kv);
}

/* ---------------------------------------------------------------------------------------
 * Duplicates: sort indices by name
 * ------------------------------------------------------------------------------------- */

static int cmp_str(qkv__gguf_str a, qkv__gguf_str b) {
    size_t n = (size_t)(a.n < b.n ? a.n : b.n);
    int r = memcmp(a.s, b.s, n);
    if (r) return r;
    return a.n < b.n ? -1 : a.n > b.n;
}

static int cmp_kv_key(const void *a, const void *b) {
    return cmp_str((*(const qkv__gguf_kv *const *)a)->key, (*(const qkv__gguf_kv *const *)b)->key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return cmp_str((*(const qkv__gguf_tensor *const *)a)->name,
                   (*(const qkv__gguf_tensor *const *)b)->name);
}
static int cmp_tensor_offset(const void *a, const void *b) {
    const qkv__gguf_tensor *x = *(const qkv__gguf_tensor *const *)a;
    const qkv__gguf_tensor *y = *(const qkv__gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* ---------------------------------------------------------------------------------------
 * Tensor infos
 * ------------------------------------------------------------------------------------- */

static qkv_status rd_tensor_info(cursor *c, qkv__gguf_tensor *t, uint64_t index) {
    qkv_status st = rd_name(c, &t->name, "tensor name", index);
    if (st) return st;
    uint32_t nd = 0;
    if ((st = rd_u32(c, &nd, "a tensor's n_dims"))) return st;
    if (nd < 1 || nd > QKV__GGUF_MAX_DIMS)
        return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": n_dims %u (1 to %d)", c->path,
                         KEYA(t->name), nd, QKV__GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n_elems = 1;
    for (int d = 0; d < QKV__GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v = 0;
        if ((st = rd_u64(c, &v, "a tensor's dims"))) return st;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": ne[%u] = %llu (1 to 2^63-1)", c->path,
                             KEYA(t->name), d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        if (__builtin_mul_overflow(n_elems, v, &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": element count overflows", c->path,
                             KEYA(t->name));
    }
    if ((st = rd_u32(c, &t->type, "a tensor's type"))) return st;
    uint64_t blck, tsize;
    if (!qkv__ggml_type_block(t->type, &blck, &tsize))
        return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": unknown ggml type %u", c->path,
                         KEYA(t->name), t->type);
    if ((uint64_t)t->ne[0] % blck)
        return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": row length %lld is not a multiple of %s's "
                         "block of %llu", c->path, KEYA(t->name), (long long)t->ne[0],
                         qkv__ggml_type_name(t->type), (unsigned long long)blck);
    t->n_elems = n_elems;
    /* n_elems / blck is exact (ne[0] divides, the rest multiply) */
    if (__builtin_mul_overflow(n_elems / blck, tsize, &t->n_bytes) || t->n_bytes > (uint64_t)INT64_MAX)
        return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": byte count overflows", c->path,
                         KEYA(t->name));
    return rd_u64(c, &t->offset, "a tensor's offset");
}

/* ---------------------------------------------------------------------------------------
 * Open / parse / close
 * ------------------------------------------------------------------------------------- */

static void free_tables(qkv__gguf *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].arr_off);
    free(g->kv);
    free(g->tensors);
    free(g->kv_by_key);
    free(g->t_by_name);
    g->kv = NULL;
    g->tensors = NULL;
    g->kv_by_key = NULL;
    g->t_by_name = NULL;
    g->n_kv = g->n_tensors = 0;
}

void qkv__gguf_close(qkv__gguf *g) {
    if (!g) return;
    free_tables(g);
    if (g->owns_map) qkv__mmap_close(&g->map);
    g->owns_map = 0;
    g->map.data = NULL;
    g->map.size = 0;
    g->data = NULL;
    g->data_size = 0;
}

static qkv_status parse(cursor *c, qkv__gguf *g) {
    qkv_status st;
    const char *path = c->path;
    if (c->size < 4 || memcmp(c->buf, "GGUF", 4))
        return qkv__fail(QKV_EFORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", path);
    c->pos = 4;
    if ((st = rd_u32(c, &g->version, "the version"))) return st;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return qkv__fail(QKV_EUNSUPPORTED, "%s: GGUF version 1 (32-bit counts) is not supported; "
                             "versions 2 and 3 are", path);
        if (g->version && (g->version & 0xffff) == 0)
            return qkv__fail(QKV_EUNSUPPORTED, "%s: big-endian GGUF (version field %#x) is not supported",
                             path, g->version);
        return qkv__fail(QKV_EUNSUPPORTED, "%s: GGUF version %u (2 and 3 are supported)", path,
                         g->version);
    }
    uint64_t n_tensors = 0, n_kv = 0;
    if ((st = rd_u64(c, &n_tensors, "the tensor count")) || (st = rd_u64(c, &n_kv, "the kv count")))
        return st;
    /* caps, then what the bytes left could hold: a kv is >= 8 + 1 + 4 + 1 bytes, a tensor
     * info >= 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > QKV__GGUF_MAX_KV || n_kv > left(c) / 14)
        return qkv__fail(QKV_EFORMAT, "%s: %llu metadata entries (at most %u, and the file's %zu bytes "
                         "hold fewer)", path, (unsigned long long)n_kv, QKV__GGUF_MAX_KV, c->size);
    if (n_tensors > QKV__GGUF_MAX_TENSORS || n_tensors > left(c) / 33)
        return qkv__fail(QKV_EFORMAT, "%s: %llu tensors (at most %u, and the file's %zu bytes hold "
                         "fewer)", path, (unsigned long long)n_tensors, QKV__GGUF_MAX_TENSORS, c->size);
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    if (!g->kv || !g->tensors) return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);

    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* so that close frees this entry's index */
        if ((st = rd_kv(c, &g->kv[i], i))) return st;
    }
    g->n_kv = n_kv;

    /* sorted by key: duplicates are neighbours, and lookups binary-search it */
    g->kv_by_key = malloc(sizeof *g->kv_by_key * (size_t)(n_kv + 1));
    g->t_by_name = malloc(sizeof *g->t_by_name * (size_t)(n_tensors + 1));
    void **sorted = malloc(sizeof *sorted * (size_t)(n_tensors + 1)); /* by offset, below */
    if (!g->kv_by_key || !g->t_by_name || !sorted) {
        free(sorted);
        return qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
    }
    for (uint64_t i = 0; i < n_kv; i++) g->kv_by_key[i] = &g->kv[i];
    qsort(g->kv_by_key, (size_t)n_kv, sizeof *g->kv_by_key, cmp_kv_key);
    for (uint64_t i = 1; i < n_kv; i++)
        if (!cmp_kv_key(&g->kv_by_key[i - 1], &g->kv_by_key[i])) {
            const qkv__gguf_kv *kv = g->kv_by_key[i];
            free(sorted);
            return qkv__fail(QKV_EFORMAT, "%s: key " KEYF " appears twice", path, KEYA(kv->key));
        }

    g->alignment = QKV__GGUF_DEFAULT_ALIGNMENT;
    const qkv__gguf_kv *al = qkv__gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != QKV__GGUF_UINT32)
            st = qkv__fail(QKV_EFORMAT, "%s: general.alignment is %s (must be UINT32)", path,
                           qkv__gguf_type_name(al->type));
        else if (al->u == 0 || (al->u & (al->u - 1)) || al->u > QKV__GGUF_MAX_ALIGNMENT)
            st = qkv__fail(QKV_EFORMAT, "%s: general.alignment %llu is not a power of two up to %llu",
                           path, (unsigned long long)al->u, (unsigned long long)QKV__GGUF_MAX_ALIGNMENT);
        if (st) {
            free(sorted);
            return st;
        }
        g->alignment = al->u;
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((st = rd_tensor_info(c, &g->tensors[i], i))) {
            free(sorted);
            return st;
        }
    }
    g->n_tensors = n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) g->t_by_name[i] = &g->tensors[i];
    qsort(g->t_by_name, (size_t)n_tensors, sizeof *g->t_by_name, cmp_tensor_name);
    for (uint64_t i = 1; i < n_tensors; i++)
        if (!cmp_tensor_name(&g->t_by_name[i - 1], &g->t_by_name[i])) {
            const qkv__gguf_tensor *t = g->t_by_name[i];
            free(sorted);
            return qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF " appears twice", path, KEYA(t->name));
        }

    /* the data section: the header's end rounded up to the alignment (c->pos <= size, and
     * alignment <= 2^20, so this cannot overflow a size_t; checked anyway) */
    size_t start;
    if (__builtin_add_overflow(c->pos, (size_t)g->alignment - 1, &start)) {
        free(sorted);
        return qkv__fail(QKV_EFORMAT, "%s: data section offset overflows", path);
    }
    start -= start % (size_t)g->alignment;
    if (start > c->size) {
        if (n_tensors) {
            free(sorted);
            return qkv__fail(QKV_EFORMAT, "%s: file ends before its data section (offset %zu, %zu bytes)",
                             path, start, c->size);
        }
        start = c->size;
    }
    g->data = c->buf + start;
    g->data_size = c->size - start;

    for (uint64_t i = 0; i < n_tensors; i++) {
        qkv__gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (t->offset % g->alignment)
            st = qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": offset %llu is not a multiple of the "
                           "alignment %llu", path, KEYA(t->name), (unsigned long long)t->offset,
                           (unsigned long long)g->alignment);
        else if (__builtin_add_overflow(t->offset, t->n_bytes, &end) || end > g->data_size)
            st = qkv__fail(QKV_EFORMAT, "%s: tensor " KEYF ": %llu bytes at offset %llu run past the "
                           "end of the data section (%zu bytes)", path, KEYA(t->name),
                           (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                           g->data_size);
        if (st) {
            free(sorted);
            return st;
        }
        t->data = g->data + t->offset;
    }
    /* every tensor has >= 1 byte (dims >= 1), so sorted by offset, each must end before
     * the next begins */
    for (uint64_t i = 0; i < n_tensors; i++) sorted[i] = &g->tensors[i];
    qsort(sorted, (size_t)n_tensors, sizeof *sorted, cmp_tensor_offset);
    for (uint64_t i = 1; i < n_tensors; i++) {
        const qkv__gguf_tensor *a = sorted[i - 1], *b = sorted[i];
        if (b->offset - a->offset < a->n_bytes) {
            st = qkv__fail(QKV_EFORMAT, "%s: tensors " KEYF " and " KEYF " overlap", path,
                           KEYA(a->name), KEYA(b->name));
            free(sorted);
            return st;
        }
    }
    free(sorted);
    return QKV_OK;
}

/* Parses g->map into g's tables (g zeroed but for map, owns_map and path). */
static qkv_status parse_map(qkv__gguf *g) {
    if (!g->map.data && g->map.size) return qkv__fail(QKV_EINVAL, "%s: no buffer", g->path);
    cursor c = {g->map.data, g->map.size, 0, g->path};
    qkv_status st = parse(&c, g);
    if (st) {
        free_tables(g);
        g->data = NULL;
        g->data_size = 0;
    }
    return st;
}

qkv_status qkv__gguf_parse(const uint8_t *buf, size_t size, const char *path, qkv__gguf *g) {
    memset(g, 0, sizeof *g);
    g->map.data = buf; /* not owned: close leaves it alone */
    g->map.size = size;
    g->path = path;
    return parse_map(g);
}

qkv_status qkv__gguf_open(const char *path, qkv__gguf *g) {
    memset(g, 0, sizeof *g);
    g->path = path;
    qkv_status st = qkv__mmap_open(path, &g->map);
    if (st) return st;
    g->owns_map = 1;
    if ((st = parse_map(g))) qkv__gguf_close(g);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------------------- */

int qkv__gguf_str_eq(qkv__gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.n == n && (n == 0 || !memcmp(s.s, c, n));
}

/* Binary search of a table sorted by name (the parse's duplicate check sorted it). */
#define BSEARCH(table, n, field, want)                                                  \
    do {                                                                                \
        qkv__gguf_str w__ = {(want), strlen(want)};                                     \
        uint64_t lo__ = 0, hi__ = (n);                                                  \
        while (lo__ < hi__) {                                                           \
            uint64_t mid__ = lo__ + (hi__ - lo__) / 2;                                  \
            int r__ = cmp_str((table)[mid__]->field, w__);                              \
            if (r__ == 0) return (table)[mid__];                                        \
            if (r__ < 0) lo__ = mid__ + 1;                                              \
            else hi__ = mid__;                                                          \
        }                                                                               \
        return NULL;                                                                    \
    } while (0)

const qkv__gguf_kv *qkv__gguf_find(const qkv__gguf *g, const char *key) {
    if (!g->kv_by_key) /* during the parse, before the table is sorted */
        for (uint64_t i = 0; i < g->n_kv; i++)
            if (qkv__gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
    if (!g->kv_by_key) return NULL;
    BSEARCH(g->kv_by_key, g->n_kv, key, key);
}

const qkv__gguf_tensor *qkv__gguf_find_tensor(const qkv__gguf *g, const char *name) {
    if (!g->t_by_name) return NULL;
    BSEARCH(g->t_by_name, g->n_tensors, name, name);
}

const qkv__gguf_kv *qkv__gguf_find_arr(const qkv__gguf *g, const char *key, qkv__gguf_type elem) {
    const qkv__gguf_kv *kv = qkv__gguf_find(g, key);
    return kv && kv->type == QKV__GGUF_ARRAY && kv->arr_type == elem ? kv : NULL;
}

qkv_status qkv__gguf_get_u64(const qkv__gguf *g, const char *key, uint64_t *v) {
    const qkv__gguf_kv *kv = qkv__gguf_find(g, key);
    if (!kv) return qkv__fail(QKV_ENOTFOUND, "%s: key %s missing", g->path, key);
    switch (kv->type) {
    case QKV__GGUF_UINT8: case QKV__GGUF_UINT16: case QKV__GGUF_UINT32: case QKV__GGUF_UINT64:
        *v = kv->u;
        return QKV_OK;
    case QKV__GGUF_INT8: case QKV__GGUF_INT16: case QKV__GGUF_INT32: case QKV__GGUF_INT64:
        if (kv->i < 0)
            return qkv__fail(QKV_ERANGE, "%s: key %s is %lld (must not be negative)", g->path, key,
                             (long long)kv->i);
        *v = (uint64_t)kv->i;
        return QKV_OK;
    default:
        return qkv__fail(QKV_EFORMAT, "%s: key %s is %s, not an integer", g->path, key,
                         qkv__gguf_type_name(kv->type));
    }
}

qkv_status qkv__gguf_get_f64(const qkv__gguf *g, const char *key, double *v) {
    const qkv__gguf_kv *kv = qkv__gguf_find(g, key);
    if (!kv) return qkv__fail(QKV_ENOTFOUND, "%s: key %s missing", g->path, key);
    switch (kv->type) {
    case QKV__GGUF_FLOAT32: case QKV__GGUF_FLOAT64: *v = kv->f; return QKV_OK;
    case QKV__GGUF_UINT8: case QKV__GGUF_UINT16: case QKV__GGUF_UINT32: case QKV__GGUF_UINT64:
        *v = (double)kv->u;
        return QKV_OK;
    case QKV__GGUF_INT8: case QKV__GGUF_INT16: case QKV__GGUF_INT32: case QKV__GGUF_INT64:
        *v = (double)kv->i;
        return QKV_OK;
    default:
        return qkv__fail(QKV_EFORMAT, "%s: key %s is %s, not a number", g->path, key,
                         qkv__gguf_type_name(kv->type));
    }
}

qkv_status qkv__gguf_get_str(const qkv__gguf *g, const char *key, qkv__gguf_str *v) {
    const qkv__gguf_kv *kv = qkv__gguf_find(g, key);
    if (!kv) return qkv__fail(QKV_ENOTFOUND, "%s: key %s missing", g->path, key);
    if (kv->type != QKV__GGUF_STRING)
        return qkv__fail(QKV_EFORMAT, "%s: key %s is %s, not a STRING", g->path, key,
                         qkv__gguf_type_name(kv->type));
    *v = kv->str;
    return QKV_OK;
}

qkv__gguf_str qkv__gguf_arr_str(const qkv__gguf_kv *kv, uint64_t i) {
    qkv__gguf_str s = {NULL, 0};
    if (!kv || kv->type != QKV__GGUF_ARRAY || kv->arr_type != QKV__GGUF_STRING || i >= kv->arr_n ||
        !kv->arr_off)
        return s;
    const uint8_t *p = kv->arr + kv->arr_off[i];
    s.n = le64(p);
    s.s = (const char *)p + 8;
    return s;
}

/* Element i of a numeric array as a double (d) and an int64 (i64). 0 when not numeric. */
static int arr_elem(const qkv__gguf_kv *kv, uint64_t i, double *d, int64_t *i64) {
    *d = 0;
    *i64 = 0;
    if (!kv || kv->type != QKV__GGUF_ARRAY || i >= kv->arr_n) return 0;
    size_t es = scalar_size(kv->arr_type);
    if (!es) return 0;
    const uint8_t *p = kv->arr + i * es; /* i < arr_n, and arr_n * es was checked at open */
    switch (kv->arr_type) {
    case QKV__GGUF_UINT8: case QKV__GGUF_BOOL: *i64 = p[0]; *d = p[0]; break;
    case QKV__GGUF_INT8: *i64 = (int8_t)p[0]; *d = (double)*i64; break;
    case QKV__GGUF_UINT16: *i64 = le16(p); *d = (double)*i64; break;
    case QKV__GGUF_INT16: *i64 = (int16_t)le16(p); *d = (double)*i64; break;
    case QKV__GGUF_UINT32: *i64 = le32(p); *d = (double)*i64; break;
    case QKV__GGUF_INT32: *i64 = (int32_t)le32(p); *d = (double)*i64; break;
    case QKV__GGUF_UINT64: {
        uint64_t u = le64(p);
        *i64 = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        *d = (double)u;
        break;
    }
    case QKV__GGUF_INT64: *i64 = (int64_t)le64(p); *d = (double)*i64; break;
    case QKV__GGUF_FLOAT32: {
        uint32_t b = le32(p);
        float f;
        memcpy(&f, &b, 4);
        *d = f;
        *i64 = f >= -9.2e18f && f <= 9.2e18f ? (int64_t)f : 0; /* NaN and out of range: 0 */
        break;
    }
    case QKV__GGUF_FLOAT64: {
        uint64_t b = le64(p);
        memcpy(d, &b, 8);
        *i64 = *d >= -9.2e18 && *d <= 9.2e18 ? (int64_t)*d : 0;
        break;
    }
    default: return 0;
    }
    return 1;
}

double qkv__gguf_arr_f64(const qkv__gguf_kv *kv, uint64_t i) {
    double d;
    int64_t v;
    arr_elem(kv, i, &d, &v);
    return d;
}

int64_t qkv__gguf_arr_i64(const qkv__gguf_kv *kv, uint64_t i) {
    double d;
    int64_t v;
    arr_elem(kv, i, &d, &v);
    return v;
}

/* ---------------------------------------------------------------------------------------
 * Numbers: half, bfloat16, quantized blocks
 * ------------------------------------------------------------------------------------- */


void qkv__quantize_q8_0(const float *src, size_t n, uint8_t *dst) {
    for (size_t b = 0; b < n / 32; b++, src += 32, dst += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t h = qkv__f32_to_f16(d);
        dst[0] = (uint8_t)h;
        dst[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) dst[2 + j] = (uint8_t)(int8_t)roundf(src[j] * id);
    }
}

void qkv__quantize_q4_0(const float *src, size_t n, uint8_t *dst) {
    for (size_t b = 0; b < n / 32; b++, src += 32, dst += 18) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(src[j]) > amax) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t h = qkv__f32_to_f16(d);
        dst[0] = (uint8_t)h;
        dst[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 16; j++) {
            float x0 = src[j] * id, x1 = src[16 + j] * id;
            int q0 = (int)(x0 + 8.5f), q1 = (int)(x1 + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            dst[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q4_K's 6-bit scale and min j of 8, packed in 12 bytes (ggml's get_scale_min_k4). */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

qkv_status qkv__gguf_to_f32(const qkv__gguf_tensor *t, float *dst) {
    const uint8_t *s = t->data;
    uint64_t n = t->n_elems;
    switch (t->type) {
    case QKV__GGML_F32:
        memcpy(dst, s, (size_t)n * 4); /* little-endian file, little-endian targets */
        return QKV_OK;
    case QKV__GGML_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = qkv__f16_to_f32(le16(s + 2 * i));
        return QKV_OK;
    case QKV__GGML_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = qkv__bf16_to_f32(le16(s + 2 * i));
        return QKV_OK;
    case QKV__GGML_Q8_0: /* {f16 d; int8 qs[32]}: x = d * q */
        for (uint64_t b = 0; b < n / 32; b++, s += 34, dst += 32) {
            float d = qkv__f16_to_f32(le16(s));
            for (int j = 0; j < 32; j++) dst[j] = d * (float)(int8_t)s[2 + j];
        }
        return QKV_OK;
    case QKV__GGML_Q4_0: /* {f16 d; u8 qs[16]}: low nibbles are 0..15, high 16..31; x = d (q - 8) */
        for (uint64_t b = 0; b < n / 32; b++, s += 18, dst += 32) {
            float d = qkv__f16_to_f32(le16(s));
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((s[2 + j] & 0xf) - 8);
                dst[16 + j] = d * (float)((s[2 + j] >> 4) - 8);
            }
        }
        return QKV_OK;
    case QKV__GGML_Q4_K: /* {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 */
        for (uint64_t b = 0; b < n / 256; b++, s += 144) {
            float d = qkv__f16_to_f32(le16(s)), dmin = qkv__f16_to_f32(le16(s + 2));
            const uint8_t *sc = s + 4, *q = s + 16;
            for (int j = 0; j < 256; j += 64, q += 32) {
                int is = j / 32, a, m;
                scale_min_k4(is, sc, &a, &m);
                float d1 = d * (float)a, m1 = dmin * (float)m;
                scale_min_k4(is + 1, sc, &a, &m);
                float d2 = d * (float)a, m2 = dmin * (float)m;
                for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0xf) - m1;
                for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
            }
        }
        return QKV_OK;
    default: {
        const char *name = qkv__ggml_type_name(t->type);
        return qkv__fail(QKV_EUNSUPPORTED, "tensor %.*s: type %s cannot be converted to float32 "
                         "(F32, F16, BF16, Q8_0, Q4_0, Q4_K can)", (int)t->name.n, t->name.s,
                         name ? name : "unknown");
    }
    }
}
