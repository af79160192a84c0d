/*
 * kvcache.c -- the KV cache for decoding: per layer, keys and values [Hkv, max_len, d],
 * grown token by token.
 *
 * One allocation holds every layer. Each layer counts the tokens appended since the last
 * commit (pending); the cache's length advances by n once every layer has appended n
 * (qkv_kvcache_commit). Attention of new queries runs over len + pending keys, so a
 * model appends a layer's keys, attends, and moves on to the next layer.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

struct qkv_kvcache {
    int n_layer, n_head_kv, head_dim, max_len;
    int len;      /* committed tokens */
    int *pending; /* [L] tokens appended since the last commit */
    float *data;  /* [L][2][Hkv][max_len][d]: keys then values of each layer */
};

static float *layer_k(const qkv_kvcache *c, int layer) {
    return c->data + (size_t)layer * 2 * c->n_head_kv * c->max_len * c->head_dim;
}

static float *layer_v(const qkv_kvcache *c, int layer) {
    return layer_k(c, layer) + (size_t)c->n_head_kv * c->max_len * c->head_dim;
}

#define WHOLE_MAX ((size_t)256 << 20) /* bytes: qkv__kvcache_create_whole's pages up front */

static qkv_status create(int n_layer, int n_head_kv, int head_dim, int max_len, int whole,
                         qkv_kvcache **out) {
    if (!out) return qkv__fail(QKV_EINVAL, "kvcache: NULL out");
    *out = NULL;
    if (n_layer < 1 || n_head_kv < 1 || head_dim < 1 || head_dim > 256 || max_len < 1)
        return qkv__fail(QKV_EINVAL,
                         "kvcache: bad shape (layers %d, kv heads %d, head dim %d in [1, 256], max_len %d)",
                         n_layer, n_head_kv, head_dim, max_len);
    size_t n = 1;
    if (!qkv__mul_size(n, (size_t)n_layer * 2, &n) || !qkv__mul_size(n, (size_t)n_head_kv, &n) ||
        !qkv__mul_size(n, (size_t)max_len, &n) || !qkv__mul_size(n, (size_t)head_dim, &n) ||
        !qkv__mul_size(n, sizeof(float), &n))
        return qkv__fail(QKV_ENOMEM, "kvcache: size overflows");
    qkv_kvcache *c = calloc(1, sizeof *c);
    if (!c) return qkv__fail(QKV_ENOMEM, "kvcache: out of memory");
    c->n_layer = n_layer, c->n_head_kv = n_head_kv, c->head_dim = head_dim, c->max_len = max_len;
    c->pending = calloc((size_t)n_layer, sizeof(int));
    /* up front only up to WHOLE_MAX: a long max_len on a big model (gigabytes) that ends at
     * an early end-of-text would otherwise commit all of it */
    c->data = whole && n <= WHOLE_MAX ? qkv__alloc_whole(n) : qkv__alloc_aligned(n);
    if (!c->pending || !c->data) {
        qkv_kvcache_free(c);
        return qkv__fail(QKV_ENOMEM, "kvcache: cannot allocate %zu bytes", n);
    }
    *out = c;
    return QKV_OK;
}

qkv_status qkv_kvcache_create(int n_layer, int n_head_kv, int head_dim, int max_len,
                              qkv_kvcache **out) {
    return create(n_layer, n_head_kv, head_dim, max_len, 0, out);
}

/* Generation sizes its cache to what it will write: every page up front (qkv__alloc_whole), up
 * to WHOLE_MAX.
 * Appended lazily, each head's rows faulted a 4 KB page in every 16 positions: 18 page faults
 * a GPT-2 token, ~16 us of each layer's step on this VM. */
qkv_status qkv__kvcache_create_whole(int n_layer, int n_head_kv, int head_dim, int max_len,
                                     qkv_kvcache **out) {
    return create(n_layer, n_head_kv, head_dim, max_len, 1, out);
}

void qkv_kvcache_free(qkv_kvcache *cache) {
    if (!cache) return;
    free(cache->pending);
    qkv__free_aligned(cache->data);
    free(cache);
}

void qkv_kvcache_reset(qkv_kvcache *cache) {
    if (!cache) return;
    cache->len = 0;
    memset(cache->pending, 0, sizeof(int) * (size_t)cache->n_layer);
}

int qkv_kvcache_len(const qkv_kvcache *cache) { return cache ? cache->len : 0; }

qkv_status qkv_kvcache_append(qkv_kvcache *cache, int layer, int n, const float *k_new,
                              const float *v_new, ptrdiff_t new_stride_h,
                              ptrdiff_t new_stride_n) {
    if (!cache) return qkv__fail(QKV_EINVAL, "kvcache append: NULL cache");
    if (layer < 0 || layer >= cache->n_layer)
        return qkv__fail(QKV_ERANGE, "kvcache append: layer %d outside [0, %d)", layer, cache->n_layer);
    if (n < 0) return qkv__fail(QKV_EINVAL, "kvcache append: negative token count %d", n);
    if (n > 0 && (!k_new || !v_new)) return qkv__fail(QKV_EINVAL, "kvcache append: NULL keys or values");
    const int d = cache->head_dim;
    int at = cache->len + cache->pending[layer];
    if (n > cache->max_len - at)
        return qkv__fail(QKV_ETOOLONG, "kvcache append: %d + %d tokens exceed the cache's %d", at, n,
                         cache->max_len);
    ptrdiff_t sn = new_stride_n ? new_stride_n : d;
    ptrdiff_t sh = new_stride_h ? new_stride_h : sn * n;
    float *K = layer_k(cache, layer), *V = layer_v(cache, layer);
    for (int h = 0; h < cache->n_head_kv; h++)
        for (int t = 0; t < n; t++) {
            size_t dst = ((size_t)h * cache->max_len + (size_t)(at + t)) * d;
            memcpy(K + dst, k_new + h * sh + t * sn, sizeof(float) * (size_t)d);
            memcpy(V + dst, v_new + h * sh + t * sn, sizeof(float) * (size_t)d);
        }
    cache->pending[layer] += n;
    return QKV_OK;
}

qkv_status qkv_kvcache_commit(qkv_kvcache *cache, int n) {
    if (!cache) return qkv__fail(QKV_EINVAL, "kvcache commit: NULL cache");
    if (n < 0 || n > cache->max_len - cache->len)
        return qkv__fail(QKV_ETOOLONG, "kvcache commit: %d tokens after %d exceed the cache's %d", n,
                         cache->len, cache->max_len);
    for (int l = 0; l < cache->n_layer; l++)
        if (cache->pending[l] != n)
            return qkv__fail(QKV_EINVAL, "kvcache commit of %d tokens: layer %d appended %d", n, l,
                             cache->pending[l]);
    cache->len += n;
    memset(cache->pending, 0, sizeof(int) * (size_t)cache->n_layer);
    return QKV_OK;
}

qkv_status qkv_kvcache_attend(const qkv_kvcache *cache, int layer, int n_head_q, int n_q,
                              const float *q, ptrdiff_t q_stride_h, ptrdiff_t q_stride_n,
                              float *out, float scale, float temperature) {
    if (!cache || !q || !out) return qkv__fail(QKV_EINVAL, "kvcache attend: NULL cache, q or out");
    if (layer < 0 || layer >= cache->n_layer)
        return qkv__fail(QKV_ERANGE, "kvcache attend: layer %d outside [0, %d)", layer, cache->n_layer);
    if (n_head_q < 1 || n_head_q % cache->n_head_kv != 0)
        return qkv__fail(QKV_ESHAPE, "kvcache attend: %d query heads is not a multiple of %d kv heads",
                         n_head_q, cache->n_head_kv);
    const int n_k = cache->len + cache->pending[layer];
    if (n_q < 0 || n_q > n_k)
        return qkv__fail(QKV_ESHAPE, "kvcache attend: %d queries but %d cached keys (append first)",
                         n_q, n_k);
    qkv_attn_desc d;
    qkv_attn_desc_init(&d, 1, n_head_q, cache->n_head_kv, n_q, n_k, cache->head_dim);
    d.scale = scale;
    d.temperature = temperature;
    d.causal = 1;
    d.q_stride_h = q_stride_h;
    d.q_stride_n = q_stride_n;
    d.k_stride_n = d.v_stride_n = cache->head_dim;
    d.k_stride_h = d.v_stride_h = (ptrdiff_t)cache->max_len * cache->head_dim;
    qkv_status st = qkv_attn_validate(&d);
    if (st) return st;
    if (n_q == 0) return QKV_OK;
    const float *K = layer_k(cache, layer), *V = layer_v(cache, layer);
    if (n_q == 1) {
        /* decoding: one query per head, streamed over the cache (memory bound) */
        ptrdiff_t qh = q_stride_h ? q_stride_h : (q_stride_n ? q_stride_n : cache->head_dim);
        qkv__attn_kernels_get()->decode(n_head_q, cache->n_head_kv, n_k, cache->head_dim, q, qh, K,
                                        V, d.k_stride_h, out, qh,
                                        qkv__attn_scale(&d) / qkv__attn_temperature(&d));
        return QKV_OK;
    }
    return qkv_attention_forward(&d, q, K, V, out, NULL, NULL);
}
