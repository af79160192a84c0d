/* web_assets.h -- the playground's files (web/), compiled into the binary by tools/embed.c
 * so that one file runs anywhere. */
#ifndef QKV_WEB_ASSETS_H
#define QKV_WEB_ASSETS_H

#include <stddef.h>

typedef struct qkv__web_asset {
    const char *name;          /* file name inside web/, e.g. "index.html" */
    const unsigned char *data;
    size_t len;
} qkv__web_asset;

extern const qkv__web_asset qkv__web_assets[];
extern const size_t qkv__web_assets_count;

#endif /* QKV_WEB_ASSETS_H */
