/*
 * test_tokenizer.c -- GPT-2 byte-level BPE: byte alphabet, UTF-8, pre-tokenizer, merges,
 * invalid UTF-8 round trips, special tokens, long words, loader errors, the trainer, threads.
 * Uses GPT-2's vocabulary from shared/data when present (those tests skip otherwise) and a
 * vocabulary trained here for the rest.
 */
#include "qkv.h"
#include "test.h"
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[256];

static const char *tmp_dir(void) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/qkv-test-tok-XXXXXX");
        if (!mkdtemp(tmp_root)) return NULL;
    }
    return tmp_root;
}

static void write_text(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) FAIL("cannot write %s", path);
    if (n && fwrite(s, 1, n, f) != n) FAIL("short write %s", path);
    fclose(f);
}

/* ---- GPT-2's vocabulary (shared data) ------------------------------------------------ */

static qkv_tokenizer *gpt2_tok(void) {
    static qkv_tokenizer *tok;
    static int tried;
    if (!tried) {
        tried = 1;
        const char *d = test_shared_data();
        if (d) {
            char v[512], m[512];
            snprintf(v, sizeof v, "%s/gpt2/encoder.json", d);
            snprintf(m, sizeof m, "%s/gpt2/vocab.bpe", d);
            if (qkv_tokenizer_load(v, m, &tok) != QKV_OK) {
                printf("note: loading GPT-2's vocabulary failed: %s\n", qkv_last_error());
                tok = NULL;
            }
        }
    }
    return tok;
}

#define NEED_GPT2(tok)                                                                  \
    qkv_tokenizer *tok = gpt2_tok();                                                    \
    if (!tok) SKIP("shared/data/gpt2 (GPT-2's encoder.json + vocab.bpe) is absent")

/* ---- a vocabulary trained here --------------------------------------------------------- */

static char *small_corpus(size_t *len) {
    static const char *words[] = {"the", "cat", "sat", "on", "mat", "and", "it's", "we'll",
                                  "bank", "river", "keys", "cabinet", "were", "attention",
                                  "3.14", "2026", "naïve", "café", "Ünïcödé", "日本語", "😀",
                                  "aaaaaaaaaaaaaaaa", "aaaa", "aa", "--", "!!", "\n", "\t",
                                  "Hello", "World", "qkv"};
    size_t n_words = sizeof words / sizeof words[0], cap = 64 * 1024, n = 0;
    char *s = malloc(cap);
    unsigned long long seed = 42;
    while (n + 64 < cap) {
        const char *w = words[test_rand_u64(&seed) % n_words];
        size_t l = strlen(w);
        memcpy(s + n, w, l);
        n += l;
        s[n++] = (test_rand_u64(&seed) % 7) ? ' ' : '.';
    }
    *len = n;
    return s;
}

static qkv_tokenizer *trained_tok(void) {
    static qkv_tokenizer *tok;
    if (tok) return tok;
    size_t len;
    char *corpus = small_corpus(&len);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/trained", tmp_dir());
    qkv_status st = qkv_bpe_train(corpus, len, 400, dir);
    free(corpus);
    if (st) FAIL("qkv_bpe_train: %s", qkv_last_error());
    st = qkv_tokenizer_load_dir(dir, &tok);
    if (st) FAIL("loading the trained vocabulary: %s", qkv_last_error());
    return tok;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_byte_map(void) {
    qkv__bytemap m;
    qkv__bytemap_init(&m);
    ASSERT_EQ_INT(m.cp_of_byte[' '], 0x120);   /* "Ġ" */
    ASSERT_EQ_INT(m.cp_of_byte['\n'], 0x10A);  /* "Ċ" */
    ASSERT_EQ_INT(m.cp_of_byte[0], 0x100);
    ASSERT_EQ_INT(m.cp_of_byte['A'], 'A');
    ASSERT_EQ_INT(m.cp_of_byte[0xAD], 0x143);  /* soft hyphen is not printable */
    ASSERT_EQ_INT(m.cp_of_byte[0xFF], 0xFF);
    ASSERT_EQ_INT(m.order[0], '!');
    ASSERT_EQ_INT(m.order[188], 0); /* ids 188.. are the remapped bytes, from byte 0 */
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = m.cp_of_byte[b];
        ASSERT(cp < 324);
        ASSERT(!seen[cp]);
        seen[cp] = 1;
        ASSERT_EQ_INT(m.byte_of_cp[cp], b);
    }
}

static void test_utf8_decode(void) {
    uint32_t cp;
    ASSERT_EQ_INT(qkv__utf8_decode((const uint8_t *)"A", 1, &cp), 1);
    ASSERT_EQ_INT(cp, 'A');
    ASSERT_EQ_INT(qkv__utf8_decode((const uint8_t *)"\xc3\xa9", 2, &cp), 2);
    ASSERT_EQ_INT(cp, 0xE9);
    ASSERT_EQ_INT(qkv__utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &cp), 4);
    ASSERT_EQ_INT(cp, 0x1F600);
    /* invalid: continuation, overlong, surrogate, > U+10FFFF, truncated, F5.. */
    const char *bad[] = {"\x80", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                         "\xf4\x90\x80\x80", "\xf0\x8f\xbf\xbf", "\xf5\x80\x80\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(qkv__utf8_decode((const uint8_t *)bad[i], strlen(bad[i]), &cp) == 0,
                   "bad sequence %zu accepted", i);
    ASSERT_EQ_INT(qkv__utf8_decode((const uint8_t *)"\xe2\x82", 2, &cp), 0); /* truncated */
    uint8_t out[4];
    for (uint32_t c = 0; c < 0x110000; c += 0x101) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        size_t l = qkv__utf8_encode(c, out);
        ASSERT_EQ_INT(qkv__utf8_decode(out, l, &cp), l);
        ASSERT_EQ_INT(cp, c);
    }
}

static void test_char_classes(void) {
    ASSERT_EQ_INT(qkv__char_class('a'), QKV__CL_LETTER);
    ASSERT_EQ_INT(qkv__char_class(0x4E2D), QKV__CL_LETTER); /* 中 */
    ASSERT_EQ_INT(qkv__char_class(0x02B0), QKV__CL_LETTER); /* modifier letter (Lm) */
    ASSERT_EQ_INT(qkv__char_class('7'), QKV__CL_NUMBER);
    ASSERT_EQ_INT(qkv__char_class(0xBC), QKV__CL_NUMBER);   /* ¼ (No) */
    ASSERT_EQ_INT(qkv__char_class(0x2165), QKV__CL_NUMBER); /* Ⅵ (Nl) */
    ASSERT_EQ_INT(qkv__char_class(0x0663), QKV__CL_NUMBER); /* Arabic-Indic 3 (Nd) */
    ASSERT_EQ_INT(qkv__char_class(0x0301), QKV__CL_OTHER);  /* combining acute (Mn) */
    ASSERT_EQ_INT(qkv__char_class(0x1F600), QKV__CL_OTHER); /* emoji */
    /* \s is Unicode White_Space: U+0085 yes, U+FEFF and U+200B no, U+001C no */
    const uint32_t ws[] = {9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028,
                           0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        ASSERT_MSG(qkv__char_class(ws[i]) == QKV__CL_SPACE, "U+%04X should be space", ws[i]);
    const uint32_t not_ws[] = {0x1C, 0x1F, 0xFEFF, 0x200B, 0x180E, 0};
    for (size_t i = 0; i < sizeof not_ws / sizeof not_ws[0]; i++)
        ASSERT_MSG(qkv__char_class(not_ws[i]) == QKV__CL_OTHER, "U+%04X is not space", not_ws[i]);
}

/* Pieces of text joined with '|' (text must not contain '|'). */
static void pieces(const char *text, size_t len, char *out, size_t cap) {
    qkv__pretok pt;
    qkv__pretok_init(&pt, text, len);
    size_t start, n, o = 0, covered = 0;
    while (qkv__pretok_next(&pt, &start, &n)) {
        if (start != covered || n == 0) FAIL("pieces do not tile the text at %zu", start);
        covered += n;
        if (o && o < cap) out[o++] = '|';
        for (size_t i = 0; i < n && o + 1 < cap; i++) out[o++] = text[start + i];
    }
    if (covered != len) FAIL("pieces cover %zu of %zu bytes", covered, len);
    out[o < cap ? o : cap - 1] = '\0';
}

static void test_pretokenizer(void) {
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"Hello world", "Hello| world"},
        {"it's", "it|'s"},
        {"IT'S", "IT|'|S"},
        {"we'll've'd'm're't", "we|'ll|'ve|'d|'m|'re|'t"},
        {"'sup", "'s|up"},
        {"x''s", "x|''|s"},
        {"a  b", "a| | b"},
        {"a   \n\nb", "a|   \n|\n|b"},
        {"x  ", "x|  "},
        {"  ", "  "},
        {" ", " "},
        {" 123 4", " 123| 4"},
        {"abc123", "abc|123"},
        {"hello!!! ok", "hello|!!!| ok"},
        {"\t\tx", "\t|\t|x"},
        {"a\n b", "a|\n| b"},
        {"a \xc2\xa0x", "a| |\xc2\xa0|x"},            /* NBSP is \s */
        {"a \xe3\x80\x87" "b", "a| \xe3\x80\x87|b"},   /* 〇 is Nl: a number */
        {"\xc2\xbc-a", "\xc2\xbc|-|a"},                /* ¼ */
        {"e\xcc\x81t", "e|\xcc\x81|t"},                /* combining mark is "other" */
        {"x\xf0\x9d\x9f\x98", "x|\xf0\x9d\x9f\x98"},   /* 𝟘 (Nd) */
        {" \xc2\x85x", " |\xc2\x85|x"},                /* U+0085 is White_Space */
        {" \xef\xbb\xbfx", " \xef\xbb\xbf|x"},         /* U+FEFF is not */
        {"'s'", "'s|'"},
        {"http://x.io/a?b=1", "http|://|x|.|io|/|a|?|b|=|1"},
        /* invalid UTF-8: each bad byte alone; the runs around it end there */
        {"ab\xff" "cd", "ab|\xff|cd"},
        {" \xff", " |\xff"},
        {"a \xff", "a| |\xff"},
        {"  \xff", "  |\xff"},
        {"\xe2\x82", "\xe2|\x82"},
        {"\xe2\x82\xac", "\xe2\x82\xac"},
        {"x\xc0\x80y", "x|\xc0|\x80|y"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pieces(cases[i].in, strlen(cases[i].in), got, sizeof got);
        ASSERT_MSG(strcmp(got, cases[i].want) == 0, "case %zu: got \"%s\", want \"%s\"", i, got,
                   cases[i].want);
    }
    pieces("", 0, got, sizeof got);
    ASSERT_EQ_INT(strlen(got), 0);
}

static void test_gpt2_known_ids(void) {
    NEED_GPT2(tok);
    ASSERT_EQ_INT(qkv_tokenizer_vocab_size(tok), 50257);
    ASSERT_EQ_INT(qkv_tokenizer_eot(tok), 50256);
    ASSERT_EQ_INT(qkv__tokenizer_n_merges(tok), 50000);
    static const struct {
        const char *text;
        int n, ids[8];
    } cases[] = {
        {"Hello world", 2, {15496, 995}},
        {"The dog", 2, {464, 3290}},
        {" ", 1, {220}},
        {"\n\n", 1, {628}},
        {"it's", 2, {270, 338}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int *ids;
        size_t n;
        ASSERT_OK(qkv_tokenizer_encode(tok, cases[c].text, strlen(cases[c].text), 0, &ids, &n));
        int ok = n == (size_t)cases[c].n;
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == cases[c].ids[i];
        free(ids);
        ASSERT_MSG(ok, "case %zu (\"%s\"): wrong ids", c, cases[c].text);
    }
    const char *b;
    size_t bl;
    ASSERT_OK(qkv_tokenizer_token_bytes(tok, 220, &b, &bl));
    ASSERT(bl == 1 && b[0] == ' ');
    ASSERT_OK(qkv_tokenizer_token_bytes(tok, 50256, &b, &bl));
    ASSERT(bl == 13 && !memcmp(b, "<|endoftext|>", 13));
    ASSERT_EQ_INT(qkv_tokenizer_token_bytes(tok, 50257, &b, &bl), QKV_ERANGE);
    ASSERT_EQ_INT(qkv_tokenizer_token_bytes(tok, -1, &b, &bl), QKV_ERANGE);
}

static void test_special_token(void) {
    NEED_GPT2(tok);
    const char *s = "a<|endoftext|>b<|endoftext|>";
    int *ids;
    size_t n;
    ASSERT_OK(qkv_tokenizer_encode(tok, s, strlen(s), 1, &ids, &n));
    ASSERT_EQ_INT(n, 4);
    ASSERT(ids[0] == 64 && ids[1] == 50256 && ids[2] == 65 && ids[3] == 50256);
    free(ids);
    /* as plain text (the default): never the special id */
    ASSERT_OK(qkv_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n));
    ASSERT(n > 4);
    for (size_t i = 0; i < n; i++) ASSERT(ids[i] != 50256);
    char *text;
    size_t len;
    ASSERT_OK(qkv_tokenizer_decode(tok, ids, n, &text, &len));
    ASSERT(len == strlen(s) && !memcmp(text, s, len));
    free(text);
    free(ids);
}

static void round_trip(qkv_tokenizer *tok, const char *s, size_t n) {
    int *ids;
    size_t n_ids;
    ASSERT_OK(qkv_tokenizer_encode(tok, s, n, 0, &ids, &n_ids));
    char *text;
    size_t len;
    ASSERT_OK(qkv_tokenizer_decode(tok, ids, n_ids, &text, &len));
    int same = len == n && memcmp(text, s, n) == 0 && text[len] == '\0';
    free(text);
    free(ids);
    ASSERT_MSG(same, "decode(encode(x)) != x for a %zu-byte input", n);
}

/* Arbitrary bytes: invalid UTF-8 of every kind round-trips exactly. */
static void random_bytes_round_trips(qkv_tokenizer *tok) {
    unsigned long long seed = 7;
    char buf[300];
    static const char *frags[] = {"\xe2\x82", "\xf0\x9f", "\xc3", "\x80", "\xed\xa0\x80", " ",
                                  "'s", "a", "\xe2\x82\xac", "\n", "9", "\xff", "\xc0\xaf"};
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0, target = test_rand_u64(&seed) % 200;
        while (n < target) {
            if (test_rand_u64(&seed) % 2) {
                buf[n++] = (char)(test_rand_u64(&seed) & 0xFF);
            } else {
                const char *f = frags[test_rand_u64(&seed) % (sizeof frags / sizeof frags[0])];
                size_t l = strlen(f);
                memcpy(buf + n, f, l);
                n += l;
            }
        }
        round_trip(tok, buf, n);
    }
}

static void test_invalid_utf8_round_trip_gpt2(void) {
    NEED_GPT2(tok);
    random_bytes_round_trips(tok);
    /* each invalid byte is its own piece: "\xff" alone -> its byte token */
    int *ids;
    size_t n;
    ASSERT_OK(qkv_tokenizer_encode(tok, "a\xff" "b", 3, 0, &ids, &n));
    ASSERT_EQ_INT(n, 3);
    ASSERT(ids[0] == 64 && ids[2] == 65);
    const char *b;
    size_t bl;
    ASSERT_OK(qkv_tokenizer_token_bytes(tok, ids[1], &b, &bl));
    ASSERT(bl == 1 && (unsigned char)b[0] == 0xFF);
    free(ids);
}

static void test_invalid_utf8_round_trip_trained(void) { random_bytes_round_trips(trained_tok()); }

static void test_empty_input(void) {
    qkv_tokenizer *tok = trained_tok();
    int *ids = (int *)1;
    size_t n = 99;
    ASSERT_OK(qkv_tokenizer_encode(tok, "", 0, 0, &ids, &n));
    ASSERT_EQ_INT(n, 0);
    free(ids);
    ASSERT_OK(qkv_tokenizer_encode(tok, NULL, 0, 1, &ids, &n));
    ASSERT_EQ_INT(n, 0);
    free(ids);
    char *text;
    size_t len = 5;
    ASSERT_OK(qkv_tokenizer_decode(tok, NULL, 0, &text, &len));
    ASSERT(len == 0 && text && text[0] == '\0');
    free(text);
    int bad = 400;
    ASSERT_EQ_INT(qkv_tokenizer_decode(tok, &bad, 1, &text, &len), QKV_ERANGE);
    ASSERT(strstr(qkv_last_error(), "400") != NULL);
}

/* A long word costs about n log n merge steps, not n^2: 10x the length, < 15x the work. */
static void long_word_work(qkv_tokenizer *tok, const char *what) {
    size_t n_small = 20000, n_big = 200000;
    char *s = malloc(n_big);
    memset(s, 'a', n_big);
    uint64_t w0 = qkv__tokenizer_merge_work();
    int *ids;
    size_t n;
    ASSERT_OK(qkv_tokenizer_encode(tok, s, n_small, 0, &ids, &n));
    free(ids);
    uint64_t w1 = qkv__tokenizer_merge_work();
    double t0 = qkv__now();
    ASSERT_OK(qkv_tokenizer_encode(tok, s, n_big, 0, &ids, &n));
    double dt = qkv__now() - t0;
    uint64_t w2 = qkv__tokenizer_merge_work();
    free(ids);
    free(s);
    double ratio = (double)(w2 - w1) / (double)(w1 - w0);
    printf("note: %s: %zu-byte word: %llu merge steps; %zu bytes: %llu (x%.1f), %.3f s\n", what,
           n_small, (unsigned long long)(w1 - w0), n_big, (unsigned long long)(w2 - w1), ratio, dt);
    ASSERT_MSG(w1 - w0 > n_small / 2, "the word did not merge (%llu steps)",
               (unsigned long long)(w1 - w0));
    ASSERT_MSG(ratio < 15.0, "10x longer word cost %.1fx the merge steps", ratio);
    ASSERT_MSG(dt < 20.0, "a %zu-byte word took %.1f s", n_big, dt); /* generous */
}

static void test_long_word_linear_gpt2(void) {
    NEED_GPT2(tok);
    long_word_work(tok, "GPT-2");
}

static void test_long_word_linear_trained(void) { long_word_work(trained_tok(), "trained"); }

static void test_long_word_mixed(void) {
    /* a 1 MB word of varied letters (real merges everywhere) round-trips */
    qkv_tokenizer *tok = gpt2_tok() ? gpt2_tok() : trained_tok();
    size_t n = 1 << 20;
    char *s = malloc(n);
    unsigned long long seed = 3;
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + test_rand_u64(&seed) % 26);
    double t0 = qkv__now();
    round_trip(tok, s, n);
    double dt = qkv__now() - t0;
    free(s);
    ASSERT_MSG(dt < 30.0, "1 MB word took %.1f s", dt);
}

static void test_trainer_round_trip(void) {
    qkv_tokenizer *tok = trained_tok();
    ASSERT_EQ_INT(qkv_tokenizer_vocab_size(tok), 400);
    ASSERT_EQ_INT(qkv_tokenizer_eot(tok), 399);
    qkv__bytemap m;
    qkv__bytemap_init(&m);
    for (int i = 0; i < 256; i++) { /* ids 0..255 are the bytes in GPT-2's order */
        const char *b;
        size_t bl;
        ASSERT_OK(qkv_tokenizer_token_bytes(tok, i, &b, &bl));
        ASSERT(bl == 1 && (uint8_t)b[0] == m.order[i]);
    }
    size_t len;
    char *corpus = small_corpus(&len);
    int *ids;
    size_t n;
    ASSERT_OK(qkv_tokenizer_encode(tok, corpus, len, 0, &ids, &n));
    printf("note: trained 400-token vocabulary: %zu bytes -> %zu tokens\n", len, n);
    ASSERT_MSG(n * 3 < len, "the trained merges barely compress: %zu bytes -> %zu tokens", len, n);
    char *text;
    size_t tl;
    ASSERT_OK(qkv_tokenizer_decode(tok, ids, n, &text, &tl));
    ASSERT(tl == len && !memcmp(text, corpus, len));
    free(text);
    free(ids);
    /* a frequent word is a single token */
    ASSERT_OK(qkv_tokenizer_encode(tok, " attention", 10, 0, &ids, &n));
    ASSERT_EQ_INT(n, 1);
    free(ids);
    free(corpus);
}

static char *slurp(const char *path, size_t *n) {
    char *d = NULL;
    if (qkv__read_file(path, 1 << 26, &d, n)) return NULL;
    return d;
}

static void test_trainer_deterministic(void) {
    size_t len;
    char *corpus = small_corpus(&len);
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/det1", tmp_dir());
    snprintf(d2, sizeof d2, "%s/det2", tmp_dir());
    ASSERT_OK(qkv_bpe_train(corpus, len, 350, d1));
    ASSERT_OK(qkv_bpe_train(corpus, len, 350, d2));
    free(corpus);
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char p1[600], p2[600];
        snprintf(p1, sizeof p1, "%s/%s", d1, names[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, names[i]);
        size_t n1, n2;
        char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
        ASSERT(a && b);
        int same = n1 == n2 && !memcmp(a, b, n1);
        if (i == 1) ASSERT(n1 > 14 && !memcmp(a, "#version: 0.2\n", 14));
        free(a);
        free(b);
        ASSERT_MSG(same, "%s differs between two runs", names[i]);
    }
}

static void test_trainer_refuses(void) {
    char d[512];
    snprintf(d, sizeof d, "%s/refuse", tmp_dir());
    ASSERT_EQ_INT(qkv_bpe_train("", 0, 300, d), QKV_EINVAL);
    ASSERT(strstr(qkv_last_error(), "empty"));
    ASSERT_EQ_INT(qkv_bpe_train("abc", 3, 256, d), QKV_ERANGE);
    ASSERT_EQ_INT(qkv_bpe_train("abc", 3, -5, d), QKV_ERANGE);
    /* "ab ab ab" has few pairs: a 1000-token vocabulary is more than it supports */
    ASSERT_EQ_INT(qkv_bpe_train("ab ab ab", 8, 1000, d), QKV_ERANGE);
    ASSERT_MSG(strstr(qkv_last_error(), "supports at most"), "message: %s", qkv_last_error());
    /* exactly what it supports works: merges (a,b) then (Ġ,ab) -> 256 + 2 + 1 */
    ASSERT_OK(qkv_bpe_train("ab ab ab", 8, 259, d));
    ASSERT_EQ_INT(qkv_bpe_train("ab ab ab", 8, 260, d), QKV_ERANGE);
    /* "<|endoftext|>" in the corpus is plain text: the special token stays the last id */
    const char *s = "<|endoftext|><|endoftext|> <|endoftext|>";
    ASSERT_OK(qkv_bpe_train(s, strlen(s), 262, d));
    qkv_tokenizer *tok;
    ASSERT_OK(qkv_tokenizer_load_dir(d, &tok));
    ASSERT_EQ_INT(qkv_tokenizer_vocab_size(tok), 262);
    ASSERT_EQ_INT(qkv_tokenizer_eot(tok), 261);
    round_trip(tok, s, strlen(s));
    qkv_tokenizer_free(tok);
    ASSERT_EQ_INT(qkv_bpe_train("abc abc", 7, 258, "/nonexistent-dir/x/y"), QKV_EIO);
}

/* Writes vocab.json and merges.txt into a fresh folder and tries to load it. */
static qkv_status load_files(const char *name, const char *vocab, size_t vlen, const char *merges,
                             qkv_tokenizer **tok) {
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/%s", tmp_dir(), name);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/vocab.json", d);
    if (vocab) write_text(p, vocab, vlen);
    snprintf(p, sizeof p, "%s/merges.txt", d);
    if (merges) write_text(p, merges, strlen(merges));
    return qkv_tokenizer_load_dir(d, tok);
}

/* A valid 256-byte vocabulary plus extra entries, as JSON; byte `drop` (or -1) is left out
 * and its id given to "ĠĠ" (two spaces) instead. */
static char *byte_vocab_without(const char *extra, int drop) {
    qkv__bytemap m;
    qkv__bytemap_init(&m);
    size_t cap = 8192 + strlen(extra), n = 0;
    char *s = malloc(cap);
    s[n++] = '{';
    for (int i = 0; i < 256; i++) {
        uint8_t u[4];
        size_t l = qkv__utf8_encode(m.cp_of_byte[m.order[i]], u);
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s", i ? ", " : "",
                              (u[0] == '"' || u[0] == '\\') ? "\\" : "");
        if (m.order[i] == drop) l = 4, memcpy(u, "\xc4\xa0\xc4\xa0", 4);
        memcpy(s + n, u, l);
        n += l;
        n += (size_t)snprintf(s + n, cap - n, "\": %d", i);
    }
    n += (size_t)snprintf(s + n, cap - n, "%s}", extra);
    return s;
}

static char *byte_vocab(const char *extra) { return byte_vocab_without(extra, -1); }

static void expect_load_error(const char *name, const char *vocab, const char *merges,
                              qkv_status want, const char *msg_part) {
    qkv_tokenizer *tok = (qkv_tokenizer *)1;
    qkv_status st = load_files(name, vocab, vocab ? strlen(vocab) : 0, merges, &tok);
    ASSERT_MSG(st == want, "%s: status %d (%s), want %d", name, st, qkv_last_error(), want);
    ASSERT(tok == NULL);
    ASSERT_MSG(strstr(qkv_last_error(), msg_part), "%s: message \"%s\" lacks \"%s\"", name,
               qkv_last_error(), msg_part);
}

static void test_loader_errors(void) {
    char *ok = byte_vocab(", \"ab\": 256, \"<|endoftext|>\": 257");
    qkv_tokenizer *tok;
    ASSERT_OK(load_files("good", ok, strlen(ok), "#version: 0.2\na b\n", &tok));
    ASSERT_EQ_INT(qkv_tokenizer_vocab_size(tok), 258);
    ASSERT_EQ_INT(qkv_tokenizer_eot(tok), 257);
    int *ids;
    size_t n;
    ASSERT_OK(qkv_tokenizer_encode(tok, "abab", 4, 0, &ids, &n));
    ASSERT(n == 2 && ids[0] == 256 && ids[1] == 256);
    free(ids);
    qkv_tokenizer_free(tok);
    /* no #version line, CRLF line ends, blank lines: accepted */
    ASSERT_OK(load_files("crlf", ok, strlen(ok), "a b\r\n\r\n", &tok));
    qkv_tokenizer_free(tok);

    expect_load_error("missing", NULL, NULL, QKV_EIO, "vocab.json");
    expect_load_error("notjson", "{\"a\": 1,,}", "", QKV_EFORMAT, "invalid JSON at line 1");
    expect_load_error("array", "[1, 2, 3]", "", QKV_EFORMAT, "JSON object");
    expect_load_error("small", "{\"a\": 0}", "", QKV_EFORMAT, "1 entries");
    char *v;
    v = byte_vocab(", \"ab\": \"x\"");
    expect_load_error("strid", v, "", QKV_EFORMAT, "not an integer");
    free(v);
    v = byte_vocab(", \"ab\": 300");
    expect_load_error("gap", v, "", QKV_EFORMAT, "out of range");
    free(v);
    v = byte_vocab(", \"ab\": 5");
    expect_load_error("dupid", v, "", QKV_EFORMAT, "twice");
    free(v);
    v = byte_vocab(", \"a b\": 256");
    expect_load_error("alphabet", v, "", QKV_EFORMAT, "U+0020");
    free(v);
    v = byte_vocab(", \"ab\": 256, \"ab\": 257");
    expect_load_error("dupkey", v, "", QKV_EFORMAT, "duplicate");
    free(v);
    v = byte_vocab_without("", 'A');
    expect_load_error("nobyte", v, "", QKV_EFORMAT, "no token for byte 0x41");
    free(v);

    expect_load_error("merge_unknown", ok, "#version: 0.2\na zz\n", QKV_EFORMAT,
                      "line 2: token \"zz\" is not in vocab.json");
    expect_load_error("merge_result", ok, "b c\n", QKV_EFORMAT, "line 1: the merge of \"b c\"");
    expect_load_error("merge_shape", ok, "a b c\n", QKV_EFORMAT, "line 1");
    expect_load_error("merge_one", ok, "#version: 0.2\nab\n", QKV_EFORMAT, "two tokens");
    expect_load_error("merge_dup", ok, "a b\na b\n", QKV_EFORMAT, "twice");
    expect_load_error("merge_utf8", ok, "a \xff\n", QKV_EFORMAT, "UTF-8");
    expect_load_error("merge_alpha", ok, "a \xc4\x80\xc5\x90\n", QKV_EFORMAT, "U+0150");
    /* no merges (issue 14): refused unless the vocabulary is bytes-only (+ <|endoftext|>) */
    expect_load_error("merges_empty", ok, "", QKV_EFORMAT,
                      "no merges, but vocab.json has 1 token beyond the 256 bytes and <|endoftext|>");
    expect_load_error("merges_version_only", ok, "#version: 0.2\n", QKV_EFORMAT, "no merges");
    expect_load_error("merges_blank_lines", ok, "#version: 0.2\r\n\n\n", QKV_EFORMAT, "no merges");
    v = byte_vocab(", \"ab\": 256");
    expect_load_error("merges_empty_no_eot", v, "", QKV_EFORMAT, "1 token beyond the 256 bytes;");
    free(v);
    v = byte_vocab("");
    ASSERT_OK(load_files("bytes_only", v, strlen(v), "", &tok));
    ASSERT_EQ_INT(qkv__tokenizer_n_merges(tok), 0);
    qkv_tokenizer_free(tok);
    free(v);
    v = byte_vocab(", \"<|endoftext|>\": 256");
    ASSERT_OK(load_files("bytes_eot", v, strlen(v), "#version: 0.2\n", &tok));
    ASSERT_EQ_INT(qkv_tokenizer_eot(tok), 256);
    ASSERT_OK(qkv_tokenizer_encode(tok, "ab", 2, 0, &ids, &n));
    ASSERT(n == 2);
    free(ids);
    qkv_tokenizer_free(tok);
    free(v);
    free(ok);
}

typedef struct thread_arg {
    qkv_tokenizer *tok;
    const char *text;
    size_t len;
    int *ids;
    size_t n;
    int status;
} thread_arg;

static void *encode_thread(void *p) {
    thread_arg *a = p;
    for (int rep = 0; rep < 5 && a->status == 0; rep++) {
        free(a->ids);
        a->status = qkv_tokenizer_encode(a->tok, a->text, a->len, rep & 1, &a->ids, &a->n);
    }
    return NULL;
}

static void test_threads_share_a_tokenizer(void) {
    qkv_tokenizer *tok = gpt2_tok() ? gpt2_tok() : trained_tok();
    size_t len;
    char *corpus = small_corpus(&len);
    int *ref;
    size_t n_ref;
    ASSERT_OK(qkv_tokenizer_encode(tok, corpus, len, 0, &ref, &n_ref));
    enum { T = 4 };
    pthread_t th[T];
    thread_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (thread_arg){tok, corpus, len, NULL, 0, 0};
        ASSERT(pthread_create(&th[i], NULL, encode_thread, &args[i]) == 0);
    }
    int ok = 1;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok &= args[i].status == 0 && args[i].n == n_ref &&
              !memcmp(args[i].ids, ref, n_ref * sizeof *ref);
        free(args[i].ids);
    }
    free(ref);
    free(corpus);
    ASSERT_MSG(ok, "threads disagree");
}

int main(void) {
    RUN(test_byte_map);
    RUN(test_utf8_decode);
    RUN(test_char_classes);
    RUN(test_pretokenizer);
    RUN(test_gpt2_known_ids);
    RUN(test_special_token);
    RUN(test_invalid_utf8_round_trip_gpt2);
    RUN(test_invalid_utf8_round_trip_trained);
    RUN(test_empty_input);
    RUN(test_long_word_linear_gpt2);
    RUN(test_long_word_linear_trained);
    RUN(test_long_word_mixed);
    RUN(test_trainer_round_trip);
    RUN(test_trainer_deterministic);
    RUN(test_trainer_refuses);
    RUN(test_loader_errors);
    RUN(test_threads_share_a_tokenizer);
    qkv_tokenizer_free(gpt2_tok());
    qkv_tokenizer_free(trained_tok());
    if (tmp_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) printf("note: could not remove %s\n", tmp_root);
    }
    return test_summary();
}
