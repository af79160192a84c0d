/* test_sources.c -- the readers behind every family (src/model/sources.h): config.json of each
 * model_type (fields, defaults, refusals), the safetensors folder (single file, shards and
 * their index, hostile indexes), and llama2.c checkpoints (the real aidreams260K from
 * shared/data, and legacy / version 1 / version 2 files written here, whole and malformed). */
#include "model/sources.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static char *tmp_dir(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/qkv-test-sources-XXXXXX");
    return mkdtemp(path);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) FAIL("cannot write %s", path);
    if (n && fwrite(data, 1, n, f) != n) FAIL("short write %s", path);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, text, strlen(text));
}

/* A safetensors file of n F32 tensors: names[i] with 1-D length lens[i], values base[i] + j. */
static void write_st(const char *dir, const char *file, int n, const char **names, const int *lens,
                     const float *base) {
    char header[4096];
    size_t at = 0, off = 0;
    at += (size_t)snprintf(header + at, sizeof header - at, "{");
    for (int i = 0; i < n; i++) {
        at += (size_t)snprintf(header + at, sizeof header - at,
                               "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", names[i], lens[i], off, off + 4 * (size_t)lens[i]);
        off += 4 * (size_t)lens[i];
    }
    at += (size_t)snprintf(header + at, sizeof header - at, "}");
    while (at % 8) header[at++] = ' ';
    size_t total = 8 + at + off;
    uint8_t *buf = malloc(total);
    uint64_t hl = at;
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(hl >> (8 * b));
    memcpy(buf + 8, header, at);
    float *d = (float *)(void *)(buf + 8 + at);
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < lens[i]; j++) {
            float v = base[i] + (float)j;
            memcpy((uint8_t *)d + 4 * k++, &v, 4);
        }
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    write_bytes(p, buf, total);
    free(buf);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static qkv_status parse(const char *json, qkv_model_config *cfg) {
    return qkv__hf_parse_config(json, strlen(json), "config.json", cfg);
}

/* The call fails with status want and a message containing needle. */
#define ASSERT_REFUSED(call, want, needle)                                                 \
    do {                                                                                   \
        int st__ = (int)(call);                                                            \
        ASSERT_MSG(st__ == (int)(want), "%s -> %d (%s), wanted %d", #call, st__,          \
                   qkv_last_error(), (int)(want));                                         \
        ASSERT_MSG(strstr(qkv_last_error(), needle), "%s: message \"%s\" lacks \"%s\"",    \
                   #call, qkv_last_error(), needle);                                       \
    } while (0)

/* ---- config.json --------------------------------------------------------------------------- */

static void test_config_llama_smollm2(void) {
    /* SmolLM2-135M's config.json (the keys that matter) */
    qkv_model_config c;
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":576,\"intermediate_size\":1536,"
                    "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,"
                    "\"max_position_embeddings\":8192,\"rms_norm_eps\":1e-05,\"rope_theta\":100000,"
                    "\"rope_scaling\":null,\"tie_word_embeddings\":true,\"vocab_size\":49152,"
                    "\"hidden_act\":\"silu\",\"attention_bias\":false,\"mlp_bias\":false,"
                    "\"head_dim\":64,\"pretraining_tp\":1}", &c));
    ASSERT(!strcmp(c.family, "llama"));
    ASSERT_EQ_INT(c.n_layer, 30);
    ASSERT_EQ_INT(c.n_head, 9);
    ASSERT_EQ_INT(c.n_kv_head, 3);
    ASSERT_EQ_INT(c.n_embd, 576);
    ASSERT_EQ_INT(c.head_dim, 64);
    ASSERT_EQ_INT(c.n_ff, 1536);
    ASSERT_EQ_INT(c.n_ctx, 8192);
    ASSERT_EQ_INT(c.vocab_size, 49152);
    ASSERT_CLOSE(c.layer_norm_eps, 1e-5, 1e-12);
    ASSERT_EQ_INT(c.norm, QKV_NORM_RMS);
    ASSERT_EQ_INT(c.mlp, QKV_MLP_SWIGLU);
    ASSERT_EQ_INT(c.pos, QKV_POS_ROPE);
    ASSERT_EQ_INT(c.bias, QKV_BIAS_NONE);
    ASSERT_EQ_INT(c.qk_norm, 0);
    ASSERT_EQ_INT(c.untied, 0);
    ASSERT_CLOSE(c.attn_scale, 0.125, 1e-9);
    ASSERT_CLOSE(c.rope_theta, 100000.0, 0);
    ASSERT_EQ_INT(c.rope_dim, 64);
    ASSERT_EQ_INT(c.rope_interleaved, 0);
    ASSERT_CLOSE(c.rope_factor, 0, 0);
    /* absent keys: LlamaConfig's defaults (kv heads = heads, untied, theta 1e4, eps 1e-6) */
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_hidden_layers\":2,\"intermediate_size\":512,\"vocab_size\":300}", &c));
    ASSERT_EQ_INT(c.n_kv_head, 4);
    ASSERT_EQ_INT(c.head_dim, 64);
    ASSERT_EQ_INT(c.untied, 1);
    ASSERT_EQ_INT(c.n_ctx, 2048);
    ASSERT_CLOSE(c.rope_theta, 10000.0, 0);
    ASSERT_CLOSE(c.layer_norm_eps, 1e-6, 1e-12);
    /* partial rotary */
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_hidden_layers\":2,\"partial_rotary_factor\":0.5}", &c));
    ASSERT_EQ_INT(c.rope_dim, 32);
}

static void test_config_llama3_scaling(void) {
    qkv_model_config c;
    /* Llama-3.2-1B's rope */
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":2048,\"num_attention_heads\":32,"
                    "\"num_key_value_heads\":8,\"num_hidden_layers\":16,\"intermediate_size\":8192,"
                    "\"vocab_size\":128256,\"max_position_embeddings\":131072,\"rope_theta\":500000.0,"
                    "\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
                    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
                    "\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-05}", &c));
    ASSERT_CLOSE(c.rope_theta, 500000.0, 0);
    ASSERT_CLOSE(c.rope_factor, 32.0, 0);
    ASSERT_CLOSE(c.rope_low_freq_factor, 1.0, 0);
    ASSERT_CLOSE(c.rope_high_freq_factor, 4.0, 0);
    ASSERT_EQ_INT(c.rope_orig_ctx, 8192);
    ASSERT_EQ_INT(c.n_kv_head, 8);
    ASSERT_EQ_INT(c.head_dim, 64);
    /* transformers 5 writes rope_parameters */
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_hidden_layers\":2,\"rope_parameters\":{\"rope_type\":\"llama3\","
                    "\"rope_theta\":500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,"
                    "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}}", &c));
    ASSERT_CLOSE(c.rope_theta, 500000.0, 0);
    ASSERT_CLOSE(c.rope_factor, 8.0, 0);
    ASSERT_EQ_INT(c.rope_orig_ctx, 64);
    ASSERT_OK(parse("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"rope_scaling\":{\"type\":\"default\"}}", &c));
    ASSERT_CLOSE(c.rope_factor, 0, 0);
}

static void test_config_mistral_qwen(void) {
    qkv_model_config c;
    /* Mistral-7B-v0.1: no sliding-window attention here, so n_ctx is capped at the window */
    ASSERT_OK(parse("{\"model_type\":\"mistral\",\"hidden_size\":4096,\"intermediate_size\":14336,"
                    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
                    "\"max_position_embeddings\":32768,\"sliding_window\":4096,\"rope_theta\":10000.0,"
                    "\"vocab_size\":32000,\"tie_word_embeddings\":false}", &c));
    ASSERT(!strcmp(c.family, "mistral"));
    ASSERT_EQ_INT(c.n_ctx, 4096);
    ASSERT_EQ_INT(c.n_kv_head, 8);
    ASSERT_EQ_INT(c.untied, 1);
    ASSERT_OK(parse("{\"model_type\":\"mistral\",\"hidden_size\":256,\"num_attention_heads\":8,"
                    "\"num_key_value_heads\":2,\"max_position_embeddings\":128,\"sliding_window\":null}", &c));
    ASSERT_EQ_INT(c.n_ctx, 128);
    /* absent: MistralConfig's default window of 4096 */
    ASSERT_OK(parse("{\"model_type\":\"mistral\",\"hidden_size\":256,\"num_attention_heads\":8,"
                    "\"max_position_embeddings\":32768}", &c));
    ASSERT_EQ_INT(c.n_ctx, 4096);
    /* Qwen: only with use_sliding_window, and only if some layer is at or past
     * max_window_layers */
    ASSERT_OK(parse("{\"model_type\":\"qwen2\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":2,\"num_hidden_layers\":2,\"max_position_embeddings\":256,"
                    "\"use_sliding_window\":true,\"sliding_window\":64,\"max_window_layers\":1}", &c));
    ASSERT_EQ_INT(c.n_ctx, 64);
    ASSERT_OK(parse("{\"model_type\":\"qwen2\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":2,\"num_hidden_layers\":2,\"max_position_embeddings\":256,"
                    "\"use_sliding_window\":true,\"sliding_window\":64,\"max_window_layers\":2}", &c));
    ASSERT_EQ_INT(c.n_ctx, 256);
    ASSERT_OK(parse("{\"model_type\":\"qwen3\",\"hidden_size\":256,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":2,\"num_hidden_layers\":2,\"max_position_embeddings\":256,"
                    "\"sliding_window\":64,\"max_window_layers\":0}", &c));
    ASSERT_EQ_INT(c.n_ctx, 256);
    /* Qwen2.5-0.5B */
    ASSERT_OK(parse("{\"model_type\":\"qwen2\",\"hidden_size\":896,\"intermediate_size\":4864,"
                    "\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                    "\"max_position_embeddings\":32768,\"max_window_layers\":21,\"rope_theta\":1000000.0,"
                    "\"sliding_window\":32768,\"use_sliding_window\":false,\"tie_word_embeddings\":true,"
                    "\"vocab_size\":151936,\"rms_norm_eps\":1e-06,\"hidden_act\":\"silu\"}", &c));
    ASSERT(!strcmp(c.family, "qwen2"));
    ASSERT_EQ_INT(c.bias, QKV_BIAS_QKV);
    ASSERT_EQ_INT(c.head_dim, 64);
    ASSERT_EQ_INT(c.n_kv_head, 2);
    ASSERT_EQ_INT(c.n_ctx, 32768);
    ASSERT_EQ_INT(c.untied, 0);
    ASSERT_EQ_INT(c.qk_norm, 0);
    /* Qwen3-0.6B: head_dim 128 apart from 1024 / 16 */
    ASSERT_OK(parse("{\"model_type\":\"qwen3\",\"hidden_size\":1024,\"intermediate_size\":3072,"
                    "\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
                    "\"head_dim\":128,\"max_position_embeddings\":40960,\"rope_theta\":1000000,"
                    "\"attention_bias\":false,\"tie_word_embeddings\":true,\"vocab_size\":151936,"
                    "\"use_sliding_window\":false,\"sliding_window\":null,\"rope_scaling\":null}", &c));
    ASSERT(!strcmp(c.family, "qwen3"));
    ASSERT_EQ_INT(c.head_dim, 128);
    ASSERT_EQ_INT(c.rope_dim, 128);
    ASSERT_EQ_INT(c.qk_norm, 1);
    ASSERT_EQ_INT(c.bias, QKV_BIAS_NONE);
    ASSERT_CLOSE(c.attn_scale, 1.0 / sqrt(128.0), 1e-8);
    ASSERT_EQ_INT(c.n_ctx, 40960);
}

static void test_config_gpt2_delegates(void) {
    qkv_model_config c;
    ASSERT_OK(parse("{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":4,\"n_embd\":64,"
                    "\"n_positions\":128,\"vocab_size\":300}", &c));
    ASSERT(!strcmp(c.family, "gpt2"));
    ASSERT_EQ_INT(c.n_layer, 2);
    ASSERT_EQ_INT(c.n_ctx, 128);
    ASSERT_EQ_INT(c.n_kv_head, 4);
    ASSERT_EQ_INT(c.head_dim, 16);
    ASSERT_EQ_INT(c.n_ff, 256);
    ASSERT_EQ_INT(c.norm, QKV_NORM_LAYER);
    ASSERT_EQ_INT(c.pos, QKV_POS_LEARNED);
    ASSERT_EQ_INT(c.bias, QKV_BIAS_ALL);
    ASSERT_OK(parse("{\"n_layer\":1,\"n_head\":1,\"n_embd\":8,\"n_positions\":16,\"vocab_size\":257}", &c));
    ASSERT(!strcmp(c.family, "gpt2"));
}

static void test_config_refusals(void) {
    qkv_model_config c;
    ASSERT_REFUSED(parse("{\"model_type\":\"gemma3\"}", &c), QKV_EUNSUPPORTED, "gemma3");
    ASSERT_REFUSED(parse("{\"model_type\":7}", &c), QKV_EFORMAT, "model_type");
    ASSERT_REFUSED(parse("[1]", &c), QKV_EFORMAT, "not a JSON object");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",", &c), QKV_EFORMAT, "invalid JSON");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":100,\"num_attention_heads\":3}", &c),
                   QKV_ESHAPE, "hidden_size");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":96,\"num_attention_heads\":6,"
                         "\"num_key_value_heads\":4}", &c), QKV_ESHAPE, "num_key_value_heads");
    /* Mistral's class default of 8 KV heads does not divide 6 heads */
    ASSERT_REFUSED(parse("{\"model_type\":\"mistral\",\"hidden_size\":96,\"num_attention_heads\":6}", &c),
                   QKV_ESHAPE, "num_key_value_heads");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", &c),
                   QKV_EUNSUPPORTED, "yarn");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}", &c),
                   QKV_EUNSUPPORTED, "linear");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", &c),
                   QKV_EFORMAT, "low_freq_factor");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
                         "\"low_freq_factor\":4,\"high_freq_factor\":4,"
                         "\"original_max_position_embeddings\":8192}}", &c), QKV_ERANGE, "high_freq_factor");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_scaling\":[1]}", &c), QKV_EFORMAT, "rope_scaling");
    ASSERT_REFUSED(parse("{\"model_type\":\"qwen2\",\"hidden_act\":\"gelu\"}", &c), QKV_EUNSUPPORTED,
                   "hidden_act");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":1048576}", &c), QKV_ERANGE, "hidden_size");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"num_hidden_layers\":0}", &c), QKV_ERANGE,
                   "num_hidden_layers");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"vocab_size\":-5}", &c), QKV_ERANGE, "vocab_size");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"vocab_size\":\"many\"}", &c), QKV_EFORMAT, "vocab_size");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":512,\"num_attention_heads\":1}", &c),
                   QKV_EUNSUPPORTED, "head size 512");
    ASSERT_REFUSED(parse("{\"model_type\":\"qwen3\",\"head_dim\":1024}", &c), QKV_ERANGE, "head_dim");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":65536,\"num_attention_heads\":256,"
                         "\"intermediate_size\":1048576,\"num_hidden_layers\":1024}", &c),
                   QKV_ERANGE, "parameters");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"attention_bias\":true}", &c), QKV_EUNSUPPORTED,
                   "attention_bias");
    ASSERT_REFUSED(parse("{\"model_type\":\"qwen3\",\"attention_bias\":true}", &c), QKV_EUNSUPPORTED,
                   "o_proj");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"mlp_bias\":true}", &c), QKV_EUNSUPPORTED, "mlp_bias");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rms_norm_eps\":0}", &c), QKV_ERANGE, "rms_norm_eps");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"tie_word_embeddings\":1}", &c), QKV_EFORMAT,
                   "tie_word_embeddings");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"head_dim\":10,\"partial_rotary_factor\":0.3}", &c),
                   QKV_EUNSUPPORTED, "partial_rotary_factor");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"rope_theta\":-1}", &c), QKV_ERANGE, "rope_theta");
    ASSERT_REFUSED(parse("{\"model_type\":\"llama\",\"hidden_size\":64,\"hidden_size\":64}", &c), QKV_EFORMAT,
                   "invalid JSON");
    /* GPT-2's own checks still apply through the delegate */
    ASSERT_REFUSED(parse("{\"model_type\":\"gpt2\",\"n_embd\":100,\"n_head\":3}", &c), QKV_ESHAPE, "n_embd");
}

/* ---- the safetensors folder ---------------------------------------------------------------- */

static void expect_tensor(qkv__tensor_src *s, const char *name, int len, float base) {
    int nd = 0;
    int64_t shape[QKV__ST_MAX_DIMS];
    ASSERT_MSG(s->shape(s->ctx, name, &nd, shape), "%s missing", name);
    ASSERT_EQ_INT(nd, 1);
    ASSERT_EQ_INT(shape[0], len);
    float v[16];
    ASSERT_OK(s->read(s->ctx, name, v));
    for (int j = 0; j < len; j++) ASSERT_CLOSE(v[j], base + (float)j, 0);
}

static void test_folder_single_file(void) {
    char *d = tmp_dir();
    ASSERT(d);
    const char *names[] = {"model.embed_tokens.weight", "model.norm.weight"};
    int lens[] = {6, 3};
    float base[] = {1, 100};
    write_st(d, "model.safetensors", 2, names, lens, base);
    qkv__tensor_src s;
    ASSERT_OK(qkv__st_folder_open(d, &s));
    expect_tensor(&s, "model.embed_tokens.weight", 6, 1);
    expect_tensor(&s, "model.norm.weight", 3, 100);
    int nd;
    int64_t shape[QKV__ST_MAX_DIMS];
    ASSERT(!s.shape(s.ctx, "norm.weight", &nd, shape)); /* exact names only */
    ASSERT(s.read(s.ctx, "lm_head.weight", NULL) == QKV_ENOTFOUND);
    ASSERT_EQ_INT(s.file_bytes(s.ctx), 36);
    s.close(s.ctx);
    rm_rf(d);
    /* neither file */
    d = tmp_dir();
    ASSERT_REFUSED(qkv__st_folder_open(d, &s), QKV_ENOTFOUND, "model.safetensors.index.json");
    write_text(d, "pytorch_model.bin", "PK");
    ASSERT_REFUSED(qkv__st_folder_open(d, &s), QKV_ENOTFOUND, "convert it to safetensors");
    rm_rf(d);
}

/* Two shards: a = {t0, t1}, b = {t2}; index as given (NULL: the right one). */
static char *shard_folder(const char *index) {
    char *d = tmp_dir();
    const char *na[] = {"model.layers.0.a", "model.layers.0.b"}, *nb[] = {"model.norm.weight"};
    int la[] = {4, 2}, lb[] = {5};
    float ba[] = {0, 10}, bb[] = {20};
    write_st(d, "model-00001-of-00002.safetensors", 2, na, la, ba);
    write_st(d, "model-00002-of-00002.safetensors", 1, nb, lb, bb);
    write_text(d, "model.safetensors.index.json",
               index ? index
                     : "{\"metadata\":{\"total_size\":44},\"weight_map\":{"
                       "\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
                       "\"model.layers.0.b\":\"model-00001-of-00002.safetensors\","
                       "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}");
    return d;
}

static void test_folder_shards(void) {
    char *d = shard_folder(NULL);
    qkv__tensor_src s;
    ASSERT_OK(qkv__st_folder_open(d, &s));
    expect_tensor(&s, "model.layers.0.a", 4, 0);
    expect_tensor(&s, "model.layers.0.b", 2, 10);
    expect_tensor(&s, "model.norm.weight", 5, 20);
    ASSERT_EQ_INT(s.file_bytes(s.ctx), 44);
    s.close(s.ctx);
    rm_rf(d);
}

static void test_folder_hostile_indexes(void) {
    static const struct {
        const char *index;
        int status;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\":{\"model.layers.0.a\":\"../model-00001-of-00002.safetensors\"}}", QKV_EFORMAT, "inside the folder"},
        {"{\"weight_map\":{\"model.layers.0.a\":\"/etc/passwd\"}}", QKV_EFORMAT, "inside the folder"},
        {"{\"weight_map\":{\"model.layers.0.a\":\"sub/x.safetensors\"}}", QKV_EFORMAT, "inside the folder"},
        {"{\"weight_map\":{\"model.layers.0.a\":\"..\"}}", QKV_EFORMAT, "inside the folder"},
        {"{\"weight_map\":{\"model.layers.0.a\":\"\"}}", QKV_EFORMAT, "inside the folder"},
        {"{\"weight_map\":{\"model.layers.0.a\":\"model-00003-of-00002.safetensors\"}}", QKV_ENOTFOUND,
         "model-00003-of-00002.safetensors"},
        {"{\"weight_map\":[\"model-00001-of-00002.safetensors\"]}", QKV_EFORMAT, "an array"},
        {"{\"metadata\":{}}", QKV_EFORMAT, "missing"},
        {"{\"weight_map\":{}}", QKV_EFORMAT, "empty"},
        {"{\"weight_map\":{\"model.layers.0.a\":3}}", QKV_EFORMAT, "must be a file name"},
        {"[]", QKV_EFORMAT, "not a JSON object"},
        {"{\"weight_map\":", QKV_EFORMAT, "invalid JSON"},
        /* b is in shard 1 but the index puts it in shard 2 (which lacks it) */
        {"{\"weight_map\":{\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
         "\"model.layers.0.b\":\"model-00002-of-00002.safetensors\","
         "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}", QKV_EFORMAT, "assigns it to"},
        /* the index forgets b */
        {"{\"weight_map\":{\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
         "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}", QKV_EFORMAT, "does not list it"},
        /* the index lists a tensor its shard lacks */
        {"{\"weight_map\":{\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
         "\"model.layers.0.b\":\"model-00001-of-00002.safetensors\","
         "\"model.layers.0.c\":\"model-00001-of-00002.safetensors\","
         "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}", QKV_ENOTFOUND, "does not have it"},
        /* a name listed twice */
        {"{\"weight_map\":{\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
         "\"model.layers.0.a\":\"model-00001-of-00002.safetensors\"}}", QKV_EFORMAT, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = shard_folder(cases[i].index);
        qkv__tensor_src s;
        qkv_status st = qkv__st_folder_open(d, &s);
        rm_rf(d);
        ASSERT_MSG((int)st == cases[i].status, "case %zu: status %d (%s), wanted %d", i, (int)st,
                   qkv_last_error(), cases[i].status);
        ASSERT_MSG(strstr(qkv_last_error(), cases[i].needle), "case %zu: \"%s\" lacks \"%s\"", i,
                   qkv_last_error(), cases[i].needle);
    }
    /* a tensor in two shards: norm.weight also in shard 1 */
    char *d = shard_folder(NULL);
    const char *na[] = {"model.layers.0.a", "model.layers.0.b", "model.norm.weight"};
    int la[] = {4, 2, 5};
    float ba[] = {0, 10, 20};
    write_st(d, "model-00001-of-00002.safetensors", 3, na, la, ba);
    qkv__tensor_src s;
    ASSERT_REFUSED(qkv__st_folder_open(d, &s), QKV_EFORMAT, "two shards");
    /* a broken shard: its own parser's message */
    write_text(d, "model-00002-of-00002.safetensors", "garbage!");
    ASSERT_REFUSED(qkv__st_folder_open(d, &s), QKV_EFORMAT, "model-0000");
    rm_rf(d);
}

/* ---- llama2.c -------------------------------------------------------------------------------- */

static void test_llama2c_aidreams(void) {
    const char *data = test_shared_data();
    if (!data) SKIP("../shared/data is absent (aidreams260K.bin)");
    char path[512];
    snprintf(path, sizeof path, "%s/aidreams260K/aidreams260K.bin", data);
    if (access(path, R_OK)) SKIP("%s is absent", path);
    qkv_model_config c;
    qkv__tensor_src s;
    ASSERT_OK(qkv__llama2c_open(path, &c, &s));
    ASSERT(!strcmp(c.family, "llama"));
    ASSERT_EQ_INT(c.n_embd, 64);
    ASSERT_EQ_INT(c.n_ff, 172);
    ASSERT_EQ_INT(c.n_layer, 4);
    ASSERT_EQ_INT(c.n_head, 4);
    ASSERT_EQ_INT(c.n_kv_head, 4);
    ASSERT_EQ_INT(c.vocab_size, 512);
    ASSERT_EQ_INT(c.n_ctx, 128);
    ASSERT_EQ_INT(c.head_dim, 16);
    ASSERT_EQ_INT(c.untied, 0);
    ASSERT_EQ_INT(c.rope_interleaved, 1);
    ASSERT_EQ_INT(c.rope_dim, 16);
    ASSERT_CLOSE(c.rope_theta, 10000.0, 0);
    ASSERT_CLOSE(c.layer_norm_eps, 1e-5, 1e-12);
    ASSERT_EQ_INT(c.norm, QKV_NORM_RMS);
    ASSERT_EQ_INT(c.mlp, QKV_MLP_SWIGLU);
    ASSERT_EQ_INT(c.bias, QKV_BIAS_NONE);
    ASSERT_EQ_INT(s.file_bytes(s.ctx), 932124 - 28);
    static const struct {
        const char *name;
        int ndim;
        int64_t s0, s1;
        long off; /* float offset after the header (run.c's memory_map_weights) */
    } want[] = {
        {"model.embed_tokens.weight", 2, 512, 64, 0},
        {"model.layers.0.input_layernorm.weight", 1, 64, 0, 32768},
        {"model.layers.3.input_layernorm.weight", 1, 64, 0, 32768 + 3 * 64},
        {"model.layers.0.self_attn.q_proj.weight", 2, 64, 64, 33024},
        {"model.layers.1.self_attn.k_proj.weight", 2, 64, 64, 33024 + 16384 + 4096},
        {"model.layers.2.self_attn.v_proj.weight", 2, 64, 64, 33024 + 2 * 16384 + 2 * 4096},
        {"model.layers.3.self_attn.o_proj.weight", 2, 64, 64, 33024 + 3 * 16384 + 3 * 4096},
        {"model.layers.2.post_attention_layernorm.weight", 1, 64, 0, 33024 + 4 * 16384 + 2 * 64},
        {"model.layers.0.mlp.gate_proj.weight", 2, 172, 64, 33024 + 4 * 16384 + 256},
        {"model.layers.1.mlp.down_proj.weight", 2, 64, 172, 33024 + 4 * 16384 + 256 + 44032 + 11008},
        {"model.layers.3.mlp.up_proj.weight", 2, 172, 64, 33024 + 4 * 16384 + 256 + 2 * 44032 + 3 * 11008},
        {"model.norm.weight", 1, 64, 0, 33024 + 4 * 16384 + 256 + 3 * 44032},
    };
    FILE *fp = fopen(path, "rb");
    ASSERT(fp);
    float *buf = malloc(512 * 64 * sizeof(float)), *raw = malloc(512 * 64 * sizeof(float));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int nd = 0;
        int64_t shape[QKV__ST_MAX_DIMS];
        ASSERT_MSG(s.shape(s.ctx, want[i].name, &nd, shape), "%s missing", want[i].name);
        ASSERT_EQ_INT(nd, want[i].ndim);
        ASSERT_EQ_INT(shape[0], want[i].s0);
        size_t n = (size_t)want[i].s0;
        if (nd == 2) {
            ASSERT_EQ_INT(shape[1], want[i].s1);
            n *= (size_t)want[i].s1;
        }
        ASSERT_OK(s.read(s.ctx, want[i].name, buf));
        fseek(fp, 28 + 4 * want[i].off, SEEK_SET);
        ASSERT(fread(raw, 4, n, fp) == n);
        ASSERT_MSG(!memcmp(buf, raw, n * 4), "%s: values differ from the file's", want[i].name);
    }
    /* the final norm's weights are near 1-ish positive scales, not embedding-like noise */
    int nd;
    int64_t shape[QKV__ST_MAX_DIMS];
    ASSERT(!s.shape(s.ctx, "lm_head.weight", &nd, shape)); /* shared classifier */
    ASSERT(!s.shape(s.ctx, "model.layers.4.input_layernorm.weight", &nd, shape));
    fclose(fp);
    free(buf);
    free(raw);
    s.close(s.ctx);
}

/* A llama2.c file in memory: dims, version 0/1/2, shared or not. Tensor values v(k) = k-th
 * float of the whole stream * 1e-3 (so each tensor's place is checked), or for version 2
 * int8 values (k % 255) - 127 with scale 1/64 per group. */
typedef struct l2c_spec {
    int version, C, F, L, H, KV, V, T, shared, gs;
} l2c_spec;

static size_t l2c_write(const char *path, l2c_spec sp, long delta) {
    int hs = sp.C / sp.H, kvd = sp.KV * hs;
    size_t L = (size_t)sp.L, C = (size_t)sp.C, F = (size_t)sp.F, V = (size_t)sp.V;
    size_t weights = V * C + L * (C * C + 2 * (size_t)kvd * C + C * C + 3 * F * C) + (sp.shared ? 0 : V * C);
    size_t norms = 2 * L * C + C;
    size_t freq = sp.version == 0 ? (size_t)sp.T * (size_t)hs : 0;
    size_t hdr = sp.version == 0 ? 28 : 256;
    size_t bytes = hdr + 4 * norms + 4 * freq +
                   (sp.version == 2 ? weights + 4 * (weights / (size_t)sp.gs) : 4 * weights);
    uint8_t *b = calloc(1, bytes + (delta > 0 ? (size_t)delta : 0) + 64);
    int32_t h[7] = {sp.C, sp.F, sp.L, sp.H, sp.KV, sp.V, sp.T};
    if (sp.version == 0) {
        if (!sp.shared) h[5] = -sp.V;
        memcpy(b, h, 28);
    } else {
        uint32_t magic = 0x616b3432u;
        memcpy(b, &magic, 4);
        memcpy(b + 4, &sp.version, 4);
        memcpy(b + 8, h, 28);
        b[36] = (uint8_t)sp.shared;
        if (sp.version == 2) memcpy(b + 37, &sp.gs, 4);
    }
    size_t at = hdr;
    if (sp.version != 2) {
        for (size_t k = 0; at + 4 <= bytes; k++, at += 4) {
            float v = (float)k * 1e-3f;
            memcpy(b + at, &v, 4);
        }
    } else {
        for (size_t k = 0; k < norms; k++, at += 4) {
            float v = (float)k * 1e-3f;
            memcpy(b + at, &v, 4);
        }
        /* each weight: int8 then scales; all scales 1/64 */
        size_t sizes[64], n_sizes = 0;
        sizes[n_sizes++] = V * C;
        size_t per[7] = {C * C, (size_t)kvd * C, (size_t)kvd * C, C * C, F * C, C * F, F * C};
        for (int kind = 0; kind < 7; kind++)
            for (size_t l = 0; l < L; l++) sizes[n_sizes++] = per[kind];
        if (!sp.shared) sizes[n_sizes++] = V * C;
        for (size_t w = 0; w < n_sizes; w++) {
            for (size_t k = 0; k < sizes[w]; k++) b[at++] = (uint8_t)(int8_t)((int)(k % 255) - 127);
            for (size_t g = 0; g < sizes[w] / (size_t)sp.gs; g++, at += 4) {
                float s = 1.0f / 64.0f;
                memcpy(b + at, &s, 4);
            }
        }
    }
    write_bytes(path, b, (size_t)((long)bytes + delta));
    free(b);
    return bytes;
}

static void test_llama2c_written(void) {
    char *d = tmp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/m.bin", d);
    qkv_model_config c;
    qkv__tensor_src s;
    float *buf = malloc(64 * 64 * sizeof(float));
    /* legacy, unshared classifier (negative vocab_size), GQA 4:2 */
    l2c_spec sp = {0, 16, 40, 2, 4, 2, 32, 8, 0, 0};
    size_t bytes = l2c_write(path, sp, 0);
    ASSERT_OK(qkv__llama2c_open(path, &c, &s));
    ASSERT_EQ_INT(c.untied, 1);
    ASSERT_EQ_INT(c.vocab_size, 32);
    ASSERT_EQ_INT(c.n_kv_head, 2);
    ASSERT_EQ_INT(c.head_dim, 4);
    int nd;
    int64_t shape[QKV__ST_MAX_DIMS];
    ASSERT(s.shape(s.ctx, "model.layers.1.self_attn.k_proj.weight", &nd, shape));
    ASSERT_EQ_INT(shape[0], 8);
    ASSERT_EQ_INT(shape[1], 16);
    /* lm_head: after emb 512, rms 32, wq 512, wk 256, wv 256, wo 512, rms 32, 3 x 1280, norm 16,
     * freq 2 x 16 */
    ASSERT(s.shape(s.ctx, "lm_head.weight", &nd, shape));
    ASSERT_OK(s.read(s.ctx, "lm_head.weight", buf));
    long cls = 512 + 32 + 512 + 256 + 256 + 512 + 32 + 3 * 1280 + 16 + 32;
    ASSERT_CLOSE(buf[0], (float)cls * 1e-3f, 0);
    ASSERT_CLOSE(buf[511], (float)(cls + 511) * 1e-3f, 0);
    ASSERT_OK(s.read(s.ctx, "model.layers.1.self_attn.k_proj.weight", buf));
    ASSERT_CLOSE(buf[0], (float)(512 + 32 + 512 + 128) * 1e-3f, 0);
    ASSERT_EQ_INT(s.file_bytes(s.ctx), bytes - 28);
    s.close(s.ctx);
    /* the header lies: a byte short, a byte over */
    l2c_write(path, sp, -1);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "describes more bytes");
    l2c_write(path, sp, 4);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "describes fewer bytes");
    sp.shared = 1; /* the same bytes read as shared: the classifier is extra */
    l2c_write(path, sp, 512 * 4);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "describes fewer bytes");

    /* version 1: norms first */
    l2c_spec v1 = {1, 16, 40, 2, 4, 4, 32, 8, 1, 0};
    l2c_write(path, v1, 0);
    ASSERT_OK(qkv__llama2c_open(path, &c, &s));
    ASSERT_EQ_INT(c.untied, 0);
    ASSERT_OK(s.read(s.ctx, "model.layers.1.post_attention_layernorm.weight", buf));
    ASSERT_CLOSE(buf[0], (float)(3 * 16) * 1e-3f, 0);
    ASSERT_OK(s.read(s.ctx, "model.norm.weight", buf));
    ASSERT_CLOSE(buf[0], (float)(4 * 16) * 1e-3f, 0);
    ASSERT_OK(s.read(s.ctx, "model.embed_tokens.weight", buf));
    ASSERT_CLOSE(buf[0], (float)(5 * 16) * 1e-3f, 0);
    ASSERT_OK(s.read(s.ctx, "model.layers.0.self_attn.q_proj.weight", buf));
    ASSERT_CLOSE(buf[0], (float)(5 * 16 + 512) * 1e-3f, 0);
    s.close(s.ctx);

    /* version 2: Q8_0, group size 8, unshared */
    l2c_spec v2 = {2, 16, 40, 2, 4, 4, 32, 8, 0, 8};
    l2c_write(path, v2, 0);
    ASSERT_OK(qkv__llama2c_open(path, &c, &s));
    ASSERT_EQ_INT(c.untied, 1);
    ASSERT_OK(s.read(s.ctx, "model.layers.0.input_layernorm.weight", buf));
    ASSERT_CLOSE(buf[5], 5.0f * 1e-3f, 0);
    ASSERT_OK(s.read(s.ctx, "model.layers.1.mlp.down_proj.weight", buf));
    for (int k = 0; k < 16 * 40; k++) ASSERT_CLOSE(buf[k], (float)((k % 255) - 127) / 64.0f, 0);
    ASSERT_OK(s.read(s.ctx, "lm_head.weight", buf));
    ASSERT_CLOSE(buf[300], (float)((300 % 255) - 127) / 64.0f, 0);
    s.close(s.ctx);
    l2c_write(path, v2, -3);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "version 2");
    v2.gs = 5;
    l2c_write(path, v2, 0);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "group_size 5");
    free(buf);
    rm_rf(d);
}

static void test_llama2c_bad_headers(void) {
    char *d = tmp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/m.bin", d);
    qkv_model_config c;
    qkv__tensor_src s;
    l2c_spec bad_heads = {0, 18, 40, 2, 4, 4, 32, 8, 1, 0}; /* 18 % 4 */
    l2c_write(path, bad_heads, 0);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_ESHAPE, "not a multiple of n_heads");
    l2c_spec bad_kv = {0, 24, 40, 2, 6, 4, 32, 8, 1, 0};
    l2c_write(path, bad_kv, 0);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_ESHAPE, "n_kv_heads 4 does not divide");
    /* absurd sizes: refused before any arithmetic on them */
    int32_t h[7] = {2000000000, 2000000000, 2000000000, 1, 1, 2000000000, 2000000000};
    write_bytes(path, h, sizeof h);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_ERANGE, "dim");
    int32_t h2[7] = {64, 172, 4, 4, 4, INT32_MIN, 128};
    write_bytes(path, h2, sizeof h2);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_ERANGE, "vocab_size");
    /* the largest dims the caps allow: the size check must not overflow */
    int32_t h3[7] = {65536, 1 << 20, 1024, 256, 256, 1 << 24, 1 << 20};
    write_bytes(path, h3, sizeof h3);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "describes more bytes");
    write_bytes(path, h3, 10);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "too short");
    uint32_t v3[64] = {0x616b3432u, 3};
    write_bytes(path, v3, sizeof v3);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EUNSUPPORTED, "version 3");
    uint32_t v1short[16] = {0x616b3432u, 1};
    write_bytes(path, v1short, sizeof v1short);
    ASSERT_REFUSED(qkv__llama2c_open(path, &c, &s), QKV_EFORMAT, "256-byte");
    ASSERT_REFUSED(qkv__llama2c_open("/nonexistent/m.bin", &c, &s), QKV_EIO, "/nonexistent/m.bin");
    rm_rf(d);
}

/* Every byte of each header kind set to each of a few values: opened or refused, never a
 * crash (the ASan build checks every access), and an opened file reads back whole. */
static void test_llama2c_header_mutations(void) {
    char *d = tmp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/m.bin", d);
    static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff};
    l2c_spec specs[] = {{0, 16, 40, 2, 4, 2, 32, 8, 0, 0}, {1, 16, 40, 2, 4, 2, 32, 8, 1, 0},
                        {2, 16, 40, 2, 4, 2, 32, 8, 0, 8}};
    float *buf = malloc(sizeof(float) * 4096);
    int opened = 0, refused_n = 0;
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        size_t bytes = l2c_write(path, specs[k], 0);
        FILE *f = fopen(path, "rb");
        uint8_t *orig = malloc(bytes);
        ASSERT(fread(orig, 1, bytes, f) == bytes);
        fclose(f);
        int n_hdr = specs[k].version == 0 ? 28 : 41;
        for (int at = 0; at < n_hdr; at++)
            for (size_t v = 0; v < sizeof vals; v++) {
                uint8_t *m = malloc(bytes);
                memcpy(m, orig, bytes);
                m[at] = vals[v];
                write_bytes(path, m, bytes);
                free(m);
                qkv_model_config c;
                qkv__tensor_src s;
                if (qkv__llama2c_open(path, &c, &s) != QKV_OK) {
                    ASSERT(qkv_last_error()[0]);
                    refused_n++;
                    continue;
                }
                opened++;
                const char *names[] = {"model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight",
                                       "lm_head.weight", "model.norm.weight"};
                for (int t = 0; t < 4; t++) {
                    int nd;
                    int64_t shape[QKV__ST_MAX_DIMS];
                    if (!s.shape(s.ctx, names[t], &nd, shape)) continue;
                    ASSERT(shape[0] * (nd == 2 ? shape[1] : 1) <= 4096);
                    ASSERT_OK(s.read(s.ctx, names[t], buf));
                }
                s.close(s.ctx);
            }
        free(orig);
    }
    ASSERT(opened > 0 && refused_n > 0);
    free(buf);
    rm_rf(d);
}

int main(void) {
    RUN(test_config_llama_smollm2);
    RUN(test_config_llama3_scaling);
    RUN(test_config_mistral_qwen);
    RUN(test_config_gpt2_delegates);
    RUN(test_config_refusals);
    RUN(test_folder_single_file);
    RUN(test_folder_shards);
    RUN(test_folder_hostile_indexes);
    RUN(test_llama2c_aidreams);
    RUN(test_llama2c_written);
    RUN(test_llama2c_bad_headers);
    RUN(test_llama2c_header_mutations);
    return test_summary();
}
