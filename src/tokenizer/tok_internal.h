/*
 * tok_internal.h -- pieces shared by the BPE tokenizer (bpe.c) and its trainer (train.c):
 * GPT-2's byte <-> unicode alphabet, strict UTF-8 decoding, the hand-written GPT-2
 * pre-tokenizer, and a byte-string hash.
 */
#ifndef QKV_TOK_INTERNAL_H
#define QKV_TOK_INTERNAL_H

#include "qkv_internal.h"

#include <stddef.h>
#include <stdint.h>

/* GPT-2's bytes_to_unicode(): the printable bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to
 * themselves, the other 68 bytes to U+0100.. in byte order. cp_of_byte[b] is b's code point;
 * byte_of_cp[cp] (cp < 324) is the byte or -1. */
typedef struct qkv__bytemap {
    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[324];
    uint8_t order[256]; /* bytes in GPT-2's id order: id i of a GPT-2 vocab is byte order[i] */
} qkv__bytemap;
void qkv__bytemap_init(qkv__bytemap *m);



/* The pre-tokenizer: GPT-2's pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written by hand (no regex engine, no backtracking), with \p{L} = categories L*,
 * \p{N} = N* (utf8proc) and \s = Unicode White_Space (as Python's `regex` module and
 * tiktoken; JavaScript differs on U+0085 and U+FEFF).
 * Invalid UTF-8: every byte that does not start a valid sequence is a piece of its own,
 * and the valid stretches between such bytes are split as if each were a whole text. */
typedef struct qkv__pretok {
    const uint8_t *text;
    size_t len;
    size_t pos;
} qkv__pretok;

static inline void qkv__pretok_init(qkv__pretok *pt, const char *text, size_t len) {
    pt->text = (const uint8_t *)text;
    pt->len = len;
    pt->pos = 0;
}
/* Next piece [*start, *start + *n); returns 0 at the end of the text. Pieces tile the text. */
int qkv__pretok_next(qkv__pretok *pt, size_t *start, size_t *n);

/* Character classes the pattern needs. */
enum { QKV__CL_OTHER = 0, QKV__CL_LETTER = 1, QKV__CL_NUMBER = 2, QKV__CL_SPACE = 3 };
int qkv__char_class(uint32_t cp);

/* 64-bit FNV-1a-style hash of a byte string (mixed at the end). */
static inline uint64_t qkv__hash_bytes(const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
}

static inline uint64_t qkv__hash_u64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* The merge queue both BPE encoders use: a binary min-heap of (rank << 32 | position) keys,
 * so the lowest rank, then the leftmost position, merges first. */
static inline void qkv__heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static inline uint64_t qkv__heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len) break;
        if (c + 1 < len && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (len) h[i] = v;
    return top;
}

/* Number of merges a loaded tokenizer has. */
int qkv__tokenizer_n_merges(const qkv_tokenizer *tok);
/* Merge steps (heap pops and short-piece merges) done by encode on this thread so far:
 * lets tests check that encoding a long word costs about n log n, not n^2. */
uint64_t qkv__tokenizer_merge_work(void);

/* Limits on tokenizer files (clear errors instead of huge allocations). */
#define QKV__TOK_MAX_FILE ((size_t)256 << 20) /* vocab.json, merges.txt: 256 MiB */
#define QKV__TOK_MAX_VOCAB (1 << 22)          /* 4M tokens */
#define QKV__TOK_MAX_TOKEN_BYTES 4096         /* bytes in one vocabulary entry */

#endif /* QKV_TOK_INTERNAL_H */
