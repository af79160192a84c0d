/* fz_safetensors.c -- the safetensors parser (qkv__st_parse, from memory) on arbitrary
 * bytes: reliability-anchors.md 4.2 F1. Properties on success: every tensor's bytes lie
 * inside the data area [8 + N, size), count is the product of the shape and matches the
 * byte span, non-empty tensors do not overlap, names are unique and qkv__st_find finds each;
 * converting every tensor to float32 reads only its own bytes. */
#include "model/model.h"
#include "fuzz_common.h"

static int cmp_ptr(const void *a, const void *b) {
    const qkv__st_tensor *x = *(const qkv__st_tensor *const *)a;
    const qkv__st_tensor *y = *(const qkv__st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qkv__st_file f;
    memset(&f, 0, sizeof f);
    qkv_status st = qkv__st_parse(data, size, "fuzz.safetensors", &f);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st != QKV_OK) {
        FZ_CHECK(f.n_tensors == 0 && f.tensors == NULL, "failed parse left %d tensors",
                 f.n_tensors);
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
        return 0;
    }
    FZ_CHECK(size >= 8, "accepted %zu bytes", size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
    FZ_CHECK(n <= size - 8, "header %llu in %zu bytes", (unsigned long long)n, size);
    const uint8_t *lo = data + 8 + n, *hi = data + size;
    const qkv__st_tensor **sorted = malloc(sizeof *sorted * (size_t)(f.n_tensors + 1));
    FZ_CHECK(sorted != NULL, "oom");
    int m = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const qkv__st_tensor *t = &f.tensors[i];
        FZ_CHECK(t->name != NULL, "tensor %d has no name", i);
        FZ_CHECK(t->ndim >= 0 && t->ndim <= QKV__ST_MAX_DIMS, "%s: ndim %d", t->name, t->ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            FZ_CHECK(t->shape[d] >= 0, "%s: shape[%d] %lld", t->name, d, (long long)t->shape[d]);
            count *= (size_t)t->shape[d];
        }
        FZ_CHECK(count == t->count, "%s: count %zu, shape product %zu", t->name, t->count, count);
        size_t esize = t->dtype == QKV__ST_F32 ? 4 : 2;
        FZ_CHECK(t->dtype == QKV__ST_F32 || t->dtype == QKV__ST_F16 || t->dtype == QKV__ST_BF16,
                 "%s: dtype %d", t->name, (int)t->dtype);
        size_t bytes = t->count * esize;
        FZ_CHECK(t->data >= lo && t->data <= hi && bytes <= (size_t)(hi - t->data),
                 "%s: %zu bytes at offset %td outside the data area [%td, %zu)", t->name, bytes,
                 t->data - data, lo - data, size);
        FZ_CHECK(qkv__st_find(&f, t->name) == t, "%s: qkv__st_find finds another tensor", t->name);
        if (t->count) {
            sorted[m++] = t;
            float *dst = malloc(t->count * sizeof(float));
            FZ_CHECK(dst != NULL, "oom");
            qkv__st_to_f32(t, dst);
            fz_touch(dst, t->count * sizeof(float));
            free(dst);
        }
    }
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_ptr);
    for (int i = 1; i < m; i++) {
        const qkv__st_tensor *a = sorted[i - 1], *b = sorted[i];
        size_t abytes = a->count * (a->dtype == QKV__ST_F32 ? 4 : 2);
        FZ_CHECK(b->data >= a->data + abytes, "tensors %s and %s overlap", a->name, b->name);
    }
    free(sorted);
    qkv__st_close(&f);
    return 0;
}
