/*
 * test_tokenizer_hf.c -- the tokenizers of today's models: the Split-regex engine (semantics
 * and linear time on pathological input), malformed tokenizer.json refused with messages,
 * invalid UTF-8 input, and llama2.c's tokenizer.bin against run.c's recorded output
 * (shared/data/aidreams260K; skips when absent). The big comparisons against llama.cpp's
 * vectors and transformers.js are tests/py/test_tokenizer_vectors.py and _hf.py.
 */
#include "test.h"
#include "tokenizer/tok_ext.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- regex ---------------------------------------------------------------------------- */

/* Splits s with pattern (Isolated: matches and gaps) and joins the pieces with '|'. */
static void split_join(const char *pat, const char *s, char *out, size_t cap) {
    qkv__re *re = NULL;
    qkv__re_work *w = NULL;
    ASSERT_OK(qkv__re_compile(pat, strlen(pat), &re));
    size_t n = strlen(s), at = 0, ms, me, o = 0;
    out[0] = '\0';
    while (at < n) {
        int r = qkv__re_find(re, &w, (const uint8_t *)s, n, at, &ms, &me);
        ASSERT(r >= 0);
        size_t a = r ? ms : n;
        if (a > at) o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "|" : "", (int)(a - at), s + at);
        if (!r) break;
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "|" : "", (int)(me - ms), s + ms);
        at = me > ms ? me : ms + 1;
    }
    qkv__re_work_free(w);
    qkv__re_free(re);
}

#define LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static void test_regex_llama3_split(void) {
    char out[512];
    split_join(LLAMA3, "I'VE got 12345 apples!!  \n\n  ok", out, sizeof out);
    /* \s*[\r\n]+ takes "  \n\n"; then \s+(?!\S) one space, and " ok" is a word */
    ASSERT_MSG(!strcmp(out, "I|'VE| got| |123|45| apples|!!|  \n\n| | ok"), "got %s", out);
    split_join(LLAMA3, "a   b", out, sizeof out);
    ASSERT_MSG(!strcmp(out, "a|  | b"), "got %s", out);
    split_join("\\p{N}", "ab12c", out, sizeof out);
    ASSERT_MSG(!strcmp(out, "ab|1|2|c"), "got %s", out);
    split_join("[A-Z]{2,3}?x|\\d+$", "ABCx 99", out, sizeof out);
    ASSERT_MSG(!strcmp(out, "ABCx| |99"), "got %s", out);
}

static void test_regex_refusals(void) {
    static const char *bad[] = {"(?<=a)b", "a{2,1}", "[z-a]", "\\p{Greek}", "(a", "a)", "*a",
                                "(?!ab)", "\\k<x>", "a++", "[[:alpha:]]", "\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qkv__re *re = NULL;
        qkv_status st = qkv__re_compile(bad[i], strlen(bad[i]), &re);
        ASSERT_MSG(st != QKV_OK && re == NULL, "pattern %s was accepted", bad[i]);
        ASSERT_MSG(strstr(qkv_last_error(), "regex:") != NULL, "message: %s", qkv_last_error());
    }
}

/* The Pike VM has no backtracking: (a*)*b-style and \s*[\r\n]+ on long runs stay linear. */
static double time_find(const char *pat, size_t n, char fill) {
    qkv__re *re = NULL;
    qkv__re_work *w = NULL;
    ASSERT_OK(qkv__re_compile(pat, strlen(pat), &re));
    char *s = malloc(n);
    ASSERT(s);
    memset(s, fill, n);
    clock_t t0 = clock();
    size_t at = 0, ms, me;
    int r = qkv__re_find(re, &w, (const uint8_t *)s, n, at, &ms, &me);
    (void)r;
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    free(s);
    qkv__re_work_free(w);
    qkv__re_free(re);
    return dt;
}

static void test_regex_linear(void) {
    static const char *pats[] = {"(a*)*b", "(a|aa)+c", "\\s*[\\r\\n]+", "(?:a?){30}a{30}z"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        char fill = i == 2 ? ' ' : 'a';
        double t1 = time_find(pats[i], 20000, fill), t2 = time_find(pats[i], 200000, fill);
        /* 10x the text: at most ~10x the time (30x allowed for noise), never 100x */
        ASSERT_MSG(t2 < 30 * t1 + 0.05, "%s: %.4f s for 20K, %.4f s for 200K", pats[i], t1, t2);
        ASSERT_MSG(t2 < 5.0, "%s: %.2f s for 200K", pats[i], t2);
    }
}

/* ---- tokenizer.json ------------------------------------------------------------------- */

static const char *tmp_write(const char *name, const char *data, size_t n) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/qkv_test_tokhf_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

#define MINI_VOCAB "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u2581\":3,\"<unk>\":4,\"<0x41>\":5}"

static void test_json_refused(void) {
    static const struct { const char *json, *want; } cases[] = {
        {"{", "invalid JSON"},
        {"[]", "expected a JSON object"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model \"WordPiece\""},
        {"{\"model\":{\"type\":\"Unigram\"}}", "model \"Unigram\""},
        {"{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}",
         "normalizer \"Precompiled\""},
        {"{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}",
         "pre_tokenizer \"BertPreTokenizer\""},
        {"{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}",
         "decoder \"WordPiece\""},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?<=x)\"},\"behavior\":\"Isolated\"},"
         "\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}", "lookbehind"},
        {"{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[\"a c\"]}}", "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[17]}}", "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "not an integer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},\"merges\":[]}}", "not an integer"},
        {"{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[],\"unk_token\":\"<nope>\"}}", "unk_token"},
        {"{\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}", "added_tokens[0]"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}",
         "without a token for byte"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "empty vocabulary"},
        {"{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"continuing_subword_prefix\":\"##\",\"merges\":[]}}",
         "continuing_subword_prefix"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}}],"
         "\"special_tokens\":{}},\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}", "has no ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tmp_write("bad.json", cases[i].json, strlen(cases[i].json));
        ASSERT(p);
        qkv_tokenizer *t = NULL;
        qkv_status st = qkv_tokenizer_open(p, &t);
        remove(p);
        ASSERT_MSG(st != QKV_OK && t == NULL, "case %zu accepted", i);
        ASSERT_MSG(strstr(qkv_last_error(), cases[i].want) != NULL, "case %zu: message \"%s\" lacks \"%s\"", i,
                   qkv_last_error(), cases[i].want);
    }
}

/* A SentencePiece-style file: metaspace, byte fallback, Prepend/Replace, BOS by template. */
static const char MINI_SPM[] =
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
    "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
    "\"start\":1,\"stop\":0}]},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"fuse_unk\":true,\"unk_token\":\"<unk>\","
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"<0xC3>\":2,\"<0xA9>\":3,\"\\u2581\":4,\"a\":5,\"b\":6,\"\\u2581a\":7,"
    "\"ab\":8,\"\\u2581ab\":9},\"merges\":[\"a b\",\"\\u2581 ab\",\"\\u2581 a\"]}}";

static void encode_str(qkv_tokenizer *t, const char *s, size_t n, unsigned flags, char *out, size_t cap) {
    int *ids = NULL;
    size_t k = 0, o = 0;
    ASSERT_OK(qkv_tokenizer_encode_ex(t, s, n, flags, &ids, &k));
    out[0] = '\0';
    for (size_t i = 0; i < k && o + 12 < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%s%d", i ? "," : "", ids[i]);
    free(ids);
}

static void test_json_spm_and_invalid_utf8(void) {
    const char *p = tmp_write("spm.json", MINI_SPM, sizeof MINI_SPM - 1);
    qkv_tokenizer *t = NULL;
    ASSERT_OK(qkv_tokenizer_open(p, &t));
    remove(p);
    char out[256];
    encode_str(t, "ab a", 4, 0, out, sizeof out);
    ASSERT_MSG(!strcmp(out, "9,7"), "got %s", out);
    encode_str(t, "ab a", 4, QKV_ENCODE_ADD_SPECIAL, out, sizeof out);
    ASSERT_MSG(!strcmp(out, "1,9,7"), "got %s", out);
    ASSERT_EQ_INT(qkv_tokenizer_bos(t), 1);
    /* é -> byte fallback; z -> <unk>, fused with the next unknown */
    encode_str(t, "\xC3\xA9zz", 4, 0, out, sizeof out);
    ASSERT_MSG(!strcmp(out, "4,2,3,0"), "got %s", out);
    /* <s> written in the text: text unless allowed */
    encode_str(t, "<s>a", 4, QKV_ENCODE_ALLOW_SPECIAL, out, sizeof out);
    ASSERT_MSG(!strcmp(out, "1,7"), "got %s", out);
    /* invalid UTF-8: no crash, every byte accounted for (byte fallback or <unk>) */
    static const char *bad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80" "ab", "\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int *ids = NULL;
        size_t k = 0;
        ASSERT_OK(qkv_tokenizer_encode_ex(t, bad[i], strlen(bad[i]), 0, &ids, &k));
        ASSERT(k >= 1);
        free(ids);
    }
    qkv_tokenizer_free(t);
    /* an added token with normalized: true is matched in the normalized text, against its
     * normalized content ("b" -> "\u2581b" through Prepend + Replace), as HF does */
    static const char norm_added[] = "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
                                     "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
                                     "{\"id\":6,\"content\":\"b\",\"normalized\":true}],";
    char *j2 = malloc(sizeof MINI_SPM + sizeof norm_added);
    ASSERT(j2);
    const char *cut = strstr(MINI_SPM, "\"added_tokens\"");
    const char *cut_end = strstr(MINI_SPM, "\"model\"");
    ASSERT(cut && cut_end);
    size_t o = (size_t)(cut - MINI_SPM);
    memcpy(j2, MINI_SPM, o);
    memcpy(j2 + o, norm_added, sizeof norm_added - 1);
    strcpy(j2 + o + sizeof norm_added - 1, cut_end);
    p = tmp_write("spm2.json", j2, strlen(j2));
    free(j2);
    ASSERT_OK(qkv_tokenizer_open(p, &t));
    remove(p);
    encode_str(t, "a b", 3, 0, out, sizeof out);
    ASSERT_MSG(!strcmp(out, "7,6"), "got %s", out);
    encode_str(t, "ab", 2, 0, out, sizeof out); /* "\u2581ab": no "\u2581b" in it */
    ASSERT_MSG(!strcmp(out, "9"), "got %s", out);
    int ids[] = {1, 9, 7, 2, 3};
    char *text = NULL;
    size_t tl = 0;
    ASSERT_OK(qkv_tokenizer_decode(t, ids + 1, 4, &text, &tl));
    ASSERT_MSG(tl == 6 && !memcmp(text, "ab a\xC3\xA9", 6), "decoded \"%s\"", text);
    free(text);
    qkv_tokenizer_free(t);
}

/* ---- llama2.c ------------------------------------------------------------------------- */

static void test_llama2c_reference(void) {
    const char *d = test_shared_data();
    if (!d) SKIP("shared/data is absent");
    char tp[512], rp[512];
    snprintf(tp, sizeof tp, "%s/aidreams260K/tok512.bin", d);
    snprintf(rp, sizeof rp, "%s/aidreams260K/greedy-reference.jsonl", d);
    FILE *f = fopen(rp, "r");
    if (!f) SKIP("shared/data/aidreams260K is absent");
    qkv_tokenizer *t = NULL, *t2 = NULL;
    ASSERT_OK(qkv_tokenizer_load_llama2c(tp, 512, &t));
    ASSERT_OK(qkv_tokenizer_open(tp, &t2)); /* by content */
    ASSERT_EQ_INT(qkv_tokenizer_vocab_size(t2), 512);
    qkv_tokenizer_free(t2);
    ASSERT_EQ_INT(qkv_tokenizer_bos(t), 1);
    ASSERT_EQ_INT(qkv_tokenizer_eos(t), 2);
    char line[1 << 16];
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *v = json_loads(line, 0, NULL);
        ASSERT(v);
        const char *prompt = json_string_value(json_object_get(v, "prompt"));
        const char *want = json_string_value(json_object_get(v, "stdout_text"));
        json_t *toks = json_object_get(v, "tokens_after_bos");
        ASSERT(prompt && want && json_is_array(toks));
        size_t nt = json_array_size(toks);
        int *ref = malloc(nt * sizeof *ref);
        for (size_t i = 0; i < nt; i++) ref[i] = (int)json_integer_value(json_array_get(toks, i));
        /* encode: run.c's prompt tokens are the reference's first ones, after BOS */
        int *ids = NULL;
        size_t k = 0;
        ASSERT_OK(qkv_tokenizer_encode_ex(t, prompt, strlen(prompt), QKV_ENCODE_ADD_SPECIAL, &ids, &k));
        ASSERT(k >= 1 && ids[0] == 1);
        ASSERT_MSG(k - 1 <= nt, "prompt \"%s\": %zu tokens", prompt, k - 1);
        for (size_t i = 1; i < k; i++)
            ASSERT_MSG(ids[i] == ref[i - 1], "prompt \"%s\": token %zu is %d, run.c had %d", prompt, i - 1, ids[i],
                       ref[i - 1]);
        /* the prompt's tokens decode back to the prompt */
        char *text = NULL;
        size_t tl = 0;
        ASSERT_OK(qkv_tokenizer_decode(t, ids, k, &text, &tl));
        ASSERT_MSG(tl == strlen(prompt) && !memcmp(text, prompt, tl), "\"%s\" decodes to \"%s\"", prompt, text);
        free(text);
        free(ids);
        /* decode: what run.c printed (it skips lone unprintable bytes: safe_printf) */
        ASSERT_OK(qkv_tokenizer_decode(t, ref, nt, &text, &tl));
        size_t wl = strlen(want);
        while (tl > 0 && wl < tl && (text[tl - 1] == '\n' || text[tl - 1] == ' ')) tl--;
        ASSERT_MSG(tl == wl && !memcmp(text, want, wl), "decode: \"%.60s\" vs run.c \"%.60s\"", text, want);
        free(text);
        free(ref);
        json_decref(v);
        n_cases++;
    }
    fclose(f);
    ASSERT(n_cases >= 8);
    /* a hand-made case: the dummy prefix, then merges by score */
    int *ids = NULL;
    size_t k = 0;
    ASSERT_OK(qkv_tokenizer_encode_ex(t, "", 0, QKV_ENCODE_ADD_SPECIAL, &ids, &k));
    ASSERT(k == 1 && ids[0] == 1);
    free(ids);
    ASSERT_OK(qkv_tokenizer_encode_ex(t, "\xE2\x82\xAC!", 4, 0, &ids, &k)); /* euro sign: byte fallback */
    ASSERT(k >= 3);
    free(ids);
    qkv_tokenizer_free(t);
}

static void test_llama2c_refused(void) {
    unsigned char buf[64] = {0};
    buf[0] = 16; /* max_token_length 16 */
    buf[8] = 200; /* token 0 claims 200 bytes */
    const char *p = tmp_write("bad.bin", (const char *)buf, sizeof buf);
    qkv_tokenizer *t = NULL;
    ASSERT(qkv_tokenizer_load_llama2c(p, 0, &t) != QKV_OK && !t);
    ASSERT_MSG(strstr(qkv_last_error(), "length 200") != NULL, "%s", qkv_last_error());
    ASSERT(qkv_tokenizer_load_llama2c(p, -3, &t) != QKV_OK && !t);
    remove(p);
}

int main(void) {
    RUN(test_regex_llama3_split);
    RUN(test_regex_refusals);
    RUN(test_regex_linear);
    RUN(test_json_refused);
    RUN(test_json_spm_and_invalid_utf8);
    RUN(test_llama2c_reference);
    RUN(test_llama2c_refused);
    return test_summary();
}
