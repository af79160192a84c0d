/* fz_npy.c -- the .npy loader (qkv__npy_load, the CLI's array input) on arbitrary bytes.
 * Properties: no crash or out-of-bounds access; on success the shape has at most 8 dims,
 * count is their product, and data holds count floats (every byte is read back). */
#include "qkv_internal.h"
#include "fuzz_common.h"

static fz_memfile file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_memfile_open(&file, "fuzz.npy");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    fz_memfile_set(&file, data, size);
    qkv__npy arr;
    qkv_status st = qkv__npy_load(file.path, &arr);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st == QKV_OK) {
        FZ_CHECK(arr.ndim >= 0 && arr.ndim <= QKV__NPY_MAX_DIMS, "ndim %d", arr.ndim);
        size_t count = 1;
        for (int i = 0; i < arr.ndim; i++) {
            FZ_CHECK(arr.shape[i] >= 0, "shape[%d] = %lld", i, (long long)arr.shape[i]);
            count *= (size_t)arr.shape[i];
        }
        FZ_CHECK(count == arr.count, "count %zu, shape product %zu", arr.count, count);
        FZ_CHECK(arr.count * 4 <= size, "%zu floats from a %zu-byte file", arr.count, size);
        FZ_CHECK(arr.count == 0 || arr.data != NULL, "no data");
        fz_touch(arr.data, arr.count * sizeof(float));
        qkv__npy_free(&arr);
    } else {
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
    }
    return 0;
}
