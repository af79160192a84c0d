/*
 * json.c -- the one JSON string escaper: the server's replies (src/server/jsonw.c) and the
 * views' JSON files (src/viz/viz_data.c) both write strings through it.
 *
 * Valid UTF-8 passes through; each byte of an invalid sequence becomes U+FFFD (so a reply is
 * always valid JSON); '"', '\\' and control characters are escaped, and so are '<', '>', '&'
 * (JSON pasted into HTML stays inert) and U+2028/U+2029 (valid JSON, not valid JavaScript).
 */
#include "qkv_internal.h"

#include <string.h>

size_t qkv__json_escape(char *dst, const char *s, size_t n) {
    char *o = dst;
    const unsigned char *p = (const unsigned char *)s;
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = qkv__utf8_decode(p + i, n - i, &cp);
            if (!k) { /* one invalid byte -> one replacement character */
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
            } else if (cp == 0x2028 || cp == 0x2029) { /* valid JSON, but not valid JS */
                memcpy(o, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
                o += 6;
                i += k;
            } else {
                memcpy(o, p + i, k);
                o += k;
                i += k;
            }
            continue;
        }
        i++;
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        default:
            /* control characters, and <>& so that JSON pasted into HTML stays inert */
            if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7F) {
                *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            } else {
                *o++ = (char)c;
            }
        }
    }
    *o++ = '"';
    return (size_t)(o - dst);
}

