/*
 * pretok.c -- GPT-2's byte alphabet, strict UTF-8, and the pre-tokenizer written by hand.
 *
 * The pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * is an ordered alternation tried at each position; what it matches reduces to:
 *   1. an apostrophe followed by s t m d / re ve ll  -> that contraction (lower case only);
 *   2. an optional U+0020 then a maximal run of one class (letters, numbers, or "other":
 *      neither space nor letter nor number) -> the run, with the space in front;
 *   3. a whitespace run: all of it when it ends the text, else all but its last character
 *      (which then starts the next piece, e.g. " word"), unless the run is one character.
 * No backtracking, so the time is linear in the input.
 */
#include "tok_internal.h"

#include <utf8proc.h>

void qkv__bytemap_init(qkv__bytemap *m) {
    int n_order = 0;
    for (int i = 0; i < 324; i++) m->byte_of_cp[i] = -1;
    /* the printable bytes keep their own code point, in byte order, first */
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) {
            m->cp_of_byte[b] = (uint32_t)b;
            m->order[n_order++] = (uint8_t)b;
        }
    }
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) {
            m->cp_of_byte[b] = (uint32_t)(256 + next++);
            m->order[n_order++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) m->byte_of_cp[m->cp_of_byte[b]] = (int16_t)b;
}


int qkv__char_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((uint32_t)((cp | 32) - 'a') < 26) return QKV__CL_LETTER;
        if ((uint32_t)(cp - '0') < 10) return QKV__CL_NUMBER;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return QKV__CL_SPACE;
        return QKV__CL_OTHER;
    }
    /* Unicode White_Space (PropList.txt): what Python's `regex` \s and tiktoken match */
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return QKV__CL_SPACE;
    default:
        break;
    }
    if (cp >= 0x2000 && cp <= 0x200A) return QKV__CL_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return QKV__CL_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return QKV__CL_NUMBER;
    default:
        return QKV__CL_OTHER;
    }
}

#define CL_INVALID (-1) /* a byte that starts no valid UTF-8 sequence */
#define CL_END (-2)

/* Class of the character at pos and its byte length. */
static inline int class_at(const uint8_t *s, size_t n, size_t pos, size_t *clen) {
    if (pos >= n) {
        *clen = 0;
        return CL_END;
    }
    uint8_t b = s[pos];
    if (b < 0x80) {
        *clen = 1;
        return qkv__char_class(b);
    }
    uint32_t cp;
    size_t l = qkv__utf8_decode(s + pos, n - pos, &cp);
    if (l == 0) {
        *clen = 1;
        return CL_INVALID;
    }
    *clen = l;
    return qkv__char_class(cp);
}

int qkv__pretok_next(qkv__pretok *pt, size_t *start, size_t *n_out) {
    const uint8_t *s = pt->text;
    size_t n = pt->len, p = pt->pos;
    if (p >= n) return 0;
    *start = p;
    size_t l0;
    int c0 = class_at(s, n, p, &l0);
    if (c0 == CL_INVALID) { /* a piece of its own; it also ends the runs around it */
        pt->pos = p + 1;
        *n_out = 1;
        return 1;
    }
    if (s[p] == '\'' && p + 1 < n) {
        uint8_t b1 = s[p + 1];
        size_t clen = 0;
        if (b1 == 's' || b1 == 't' || b1 == 'm' || b1 == 'd') {
            clen = 2;
        } else if (p + 2 < n) {
            uint8_t b2 = s[p + 2];
            if ((b1 == 'r' && b2 == 'e') || (b1 == 'v' && b2 == 'e') || (b1 == 'l' && b2 == 'l'))
                clen = 3;
        }
        if (clen) {
            pt->pos = p + clen;
            *n_out = clen;
            return 1;
        }
    }
    int run_class = c0;
    size_t q = p;
    if (s[p] == ' ') { /* " ?" in front of a letter, number or other run */
        size_t l1;
        int c1 = class_at(s, n, p + 1, &l1);
        if (c1 == QKV__CL_LETTER || c1 == QKV__CL_NUMBER || c1 == QKV__CL_OTHER) {
            run_class = c1;
            q = p + 1;
        }
    }
    if (run_class != QKV__CL_SPACE) {
        size_t l;
        while (class_at(s, n, q, &l) == run_class) q += l;
    } else {
        /* \s+(?!\S) then \s+: the run, less its last character when a non-space follows */
        size_t last = p, l;
        int c;
        while ((c = class_at(s, n, q, &l)) == QKV__CL_SPACE) {
            last = q;
            q += l;
        }
        if (c != CL_END && c != CL_INVALID && last > p) q = last;
    }
    pt->pos = q;
    *n_out = q - p;
    return 1;
}
