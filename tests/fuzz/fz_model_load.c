/* fz_model_load.c -- qkv_model_load on a folder whose config.json and model.safetensors come
 * from the input, split at its first NUL byte (config.json text, NUL, safetensors bytes).
 *
 * Every config is loaded, however large: since the fix of tests/fuzz/FINDINGS.md F-1 the loader
 * refuses a config whose parameters the weights file cannot hold before allocating, so
 * libFuzzer's malloc limit catches any return of that bug.
 * Properties on success: the config is the one parsed, the file holds at least 2 bytes per
 * parameter, and a forward pass over two tokens runs without any out-of-bounds access
 * (weights are the file's, whatever they are). */
#include "model/model.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    qkv_set_threads(1);
    fz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n_cfg, n_st;
    const uint8_t *st_bytes;
    fz_split_nul(data, size, &n_cfg, &st_bytes, &n_st);
    qkv_model_config cfg;
    if (qkv__gpt2_parse_config((const char *)data, n_cfg, "config.json", &cfg) != QKV_OK) {
        fz_note(0, qkv_last_error());
        return 0;
    }
    size_t sizes[QKV__N_KINDS], total = 0;
    qkv__param_sizes(&cfg, sizes);
    for (int i = 0; i < QKV__N_KINDS; i++) total += sizes[i];

    const char *dir = fz_tmpdir();
    fz_write_file(dir, "config.json", data, n_cfg);
    fz_write_file(dir, "model.safetensors", st_bytes, n_st);
    qkv_model *model = NULL;
    qkv_status st = qkv_model_load(dir, &model);
    fz_note(st == QKV_OK, qkv_last_error());
    if (st != QKV_OK) {
        FZ_CHECK(model == NULL, "failed load returned a model");
        FZ_CHECK(qkv_last_error()[0] != '\0', "status %d without a message", (int)st);
        return 0;
    }
    const qkv_model_config *c = qkv_model_get_config(model);
    FZ_CHECK(c->n_layer == cfg.n_layer && c->n_head == cfg.n_head && c->n_embd == cfg.n_embd &&
                 c->n_ctx == cfg.n_ctx && c->vocab_size == cfg.vocab_size,
             "loaded config differs from the parsed one");
    FZ_CHECK(qkv_model_n_params(model) >= total, "%zu params, config says %zu",
             qkv_model_n_params(model), total);
    FZ_CHECK(n_st / 2 >= total, "%zu parameters loaded from a %zu-byte file", total, n_st);
    FZ_CHECK(qkv_model_tokenizer(model) == NULL, "tokenizer from nowhere");
    int ids[2] = {0, c->vocab_size - 1};
    int n = c->n_ctx >= 2 ? 2 : 1;
    float *logits = malloc(sizeof(float) * (size_t)n * (size_t)c->vocab_size);
    FZ_CHECK(logits != NULL, "oom");
    st = qkv_model_forward(model, ids, n, NULL, logits, NULL, NULL);
    FZ_CHECK(st == QKV_OK, "forward on a loaded model failed: %s", qkv_last_error());
    fz_touch(logits, sizeof(float) * (size_t)n * (size_t)c->vocab_size);
    free(logits);
    qkv_model_free(model);
    return 0;
}
