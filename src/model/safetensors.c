/*
 * safetensors.c -- a reader that checks everything before it trusts it.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data area; offsets are relative to the data area's start.
 *
 * Checks (research/reliability-anchors.md 2.1): 8 <= file size, N <= 100 MB and 8 + N <= file
 * size (compared without overflow), at most 2^20 JSON values (counted before parsing), a real JSON parse (jansson, duplicate keys refused), an
 * object of objects, dtype F32/F16/BF16 (other safetensors dtypes: "unsupported"), at most 8
 * dims each in [0, 2^40], element products and byte counts without overflow,
 * 0 <= begin <= end <= data size, end - begin == count x dtype size, no two non-empty tensors
 * overlapping. Holes between tensors are allowed (nothing reads them). Values are not
 * checked: NaN weights load and propagate, they cannot cause an out-of-bounds access.
 */
#include "model/model.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int supported; /* index into qkv__st_dtype, or -1 */
    int size;
} st_dtypes[] = {
    {"F32", QKV__ST_F32, 4},  {"F16", QKV__ST_F16, 2}, {"BF16", QKV__ST_BF16, 2},
    {"F64", -1, 8},           {"I64", -1, 8},          {"U64", -1, 8},
    {"I32", -1, 4},           {"U32", -1, 4},          {"I16", -1, 2},
    {"U16", -1, 2},           {"I8", -1, 1},           {"U8", -1, 1},
    {"BOOL", -1, 1},          {"F8_E4M3", -1, 1},      {"F8_E5M2", -1, 1},
};

static size_t dtype_size(qkv__st_dtype d) { return d == QKV__ST_F32 ? 4 : 2; }

/* A parsed JSON value costs jansson 30-60 bytes, so a 100 MB header of "[0,0,0,..." would
 * become gigabytes of allocations before any check ran (issue 14). A checkpoint's header has
 * about 10 values per tensor (GPT-2 XL: ~6,000), so more than this many is refused by a scan
 * of the raw bytes before parsing. Strings (metadata) count as one value whatever their size. */
#define ST_MAX_JSON_VALUES (1u << 20)

/* An upper bound on the number of values in JSON text: one per '[', ',' or ':' outside
 * strings, plus the top-level one. */
static size_t json_value_bound(const uint8_t *s, size_t n) {
    size_t values = 1;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == ',' || c == ':') {
            values++;
        }
    }
    return values;
}

void qkv__st_close(qkv__st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    qkv__mmap_close(&f->map);
    f->tensors = NULL;
    f->n_tensors = 0;
}

static int cmp_begin(const void *a, const void *b) {
    const qkv__st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* One entry of the header. */
static qkv_status parse_entry(const char *path, const char *key, json_t *val, const uint8_t *data,
                              uint64_t data_size, qkv__st_tensor *t) {
    if (!json_is_object(val))
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s: header entry is not an object", path, key);
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
           *jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s: needs \"dtype\" (string), \"shape\" and "
                         "\"data_offsets\" (arrays)", path, key);
    const char *dt = json_string_value(jd);
    int found = -1;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(dt, st_dtypes[i].name)) found = (int)i;
    if (found < 0) return qkv__fail(QKV_EFORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", path, key, dt);
    if (st_dtypes[found].supported < 0)
        return qkv__fail(QKV_EUNSUPPORTED, "%s: tensor %s: dtype %s not supported (F32, F16, BF16 only)",
                         path, key, dt);
    t->dtype = (qkv__st_dtype)st_dtypes[found].supported;
    size_t nd = json_array_size(js);
    if (nd > QKV__ST_MAX_DIMS)
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s: %zu dimensions (at most %d)", path, key, nd,
                         QKV__ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t count = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) > ((json_int_t)1 << 40))
            return qkv__fail(QKV_EFORMAT, "%s: tensor %s: shape[%zu] is not an integer in [0, 2^40]",
                             path, key, d);
        t->shape[d] = (int64_t)json_integer_value(x);
        if (!qkv__mul_size(count, (size_t)t->shape[d], &count))
            return qkv__fail(QKV_EFORMAT, "%s: tensor %s: shape product overflows", path, key);
    }
    t->count = count;
    size_t bytes;
    if (!qkv__mul_size(count, dtype_size(t->dtype), &bytes))
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s: byte count overflows", path, key);
    json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
    if (json_array_size(jo) != 2 || !json_is_integer(b0) || !json_is_integer(b1))
        return qkv__fail(QKV_EFORMAT, "%s: tensor %s: data_offsets must be two integers", path, key);
    json_int_t begin = json_integer_value(b0), end = json_integer_value(b1);
    if (begin < 0 || end < begin || (uint64_t)end > data_size)
        return qkv__fail(QKV_EFORMAT,
                         "%s: tensor %s: data_offsets [%lld, %lld] outside the data area of %llu bytes",
                         path, key, (long long)begin, (long long)end, (unsigned long long)data_size);
    if ((uint64_t)(end - begin) != (uint64_t)bytes)
        return qkv__fail(QKV_EFORMAT,
                         "%s: tensor %s: data_offsets span %lld bytes, but shape x %s is %zu bytes",
                         path, key, (long long)(end - begin), dt, bytes);
    t->data = data + begin;
    return QKV_OK;
}

qkv_status qkv__st_parse(const uint8_t *buf, size_t size, const char *path, qkv__st_file *f) {
    f->path = path;
    f->n_tensors = 0;
    f->tensors = NULL;
    if (size < 8) return qkv__fail(QKV_EFORMAT, "%s: %zu bytes, too short for a safetensors file", path, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > QKV__ST_MAX_HEADER)
        return qkv__fail(QKV_EFORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                         (unsigned long long)n, (unsigned long long)QKV__ST_MAX_HEADER);
    if (n > size - 8)
        return qkv__fail(QKV_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                         path, (unsigned long long)n, size);
    if (n < 2 || buf[8] != '{')
        return qkv__fail(QKV_EFORMAT, "%s: header does not start with a JSON object", path);
    const uint8_t *data = buf + 8 + n;
    uint64_t data_size = size - 8 - n;
    if (json_value_bound(buf + 8, (size_t)n) > ST_MAX_JSON_VALUES)
        return qkv__fail(QKV_EFORMAT, "%s: header has more than %u JSON values (a checkpoint has about "
                         "10 per tensor)", path, ST_MAX_JSON_VALUES);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qkv__fail(QKV_EFORMAT, "%s: header is not valid JSON (column %d: %s)", path,
                         jerr.column, jerr.text);
    qkv_status st = QKV_OK;
    if (!json_is_object(root)) {
        st = qkv__fail(QKV_EFORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                st = qkv__fail(QKV_EFORMAT, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            continue;
        }
        qkv__st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = parse_entry(path, key, val, data, data_size, t))) goto fail;
        t->name = strdup(key);
        if (!t->name) {
            st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        f->n_tensors++;
    }
    /* Overlap check: sort a copy of the non-empty extents by start. */
    qkv__st_tensor *sorted = malloc(sizeof *sorted * (size_t)(f->n_tensors ? f->n_tensors : 1));
    if (!sorted) {
        st = qkv__fail(QKV_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    int m = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].count) sorted[m++] = f->tensors[i];
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_begin);
    for (int i = 1; i < m; i++) {
        const uint8_t *prev_end = sorted[i - 1].data + sorted[i - 1].count * dtype_size(sorted[i - 1].dtype);
        if (sorted[i].data < prev_end) {
            st = qkv__fail(QKV_EFORMAT, "%s: tensors %s and %s overlap", path, sorted[i - 1].name,
                           sorted[i].name);
            free(sorted);
            goto fail;
        }
    }
    free(sorted);
    json_decref(root);
    return QKV_OK;
fail:
    json_decref(root);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
    return st;
}

qkv_status qkv__st_open(const char *path, qkv__st_file *f) {
    memset(f, 0, sizeof *f);
    qkv_status st = qkv__mmap_open(path, &f->map);
    if (st) return st;
    st = qkv__st_parse(f->map.data, f->map.size, path, f);
    if (st) qkv__mmap_close(&f->map);
    return st;
}

const qkv__st_tensor *qkv__st_find(const qkv__st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

void qkv__st_to_f32(const qkv__st_tensor *t, float *dst) {
    const uint8_t *s = t->data;
    switch (t->dtype) {
    case QKV__ST_F32:
        memcpy(dst, s, t->count * 4); /* the file is little-endian, like every target here */
        break;
    case QKV__ST_F16:
        for (size_t i = 0; i < t->count; i++) dst[i] = qkv__f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        break;
    case QKV__ST_BF16:
        for (size_t i = 0; i < t->count; i++) dst[i] = qkv__bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        break;
    }
}
