/*
 * cmd_attention.c -- `qkv attention`: the engine on NumPy arrays, forward and backward.
 *
 *   qkv attention --q Q.npy --k K.npy --v V.npy [--causal] [--scale S] [--temperature T]
 *                 [--out O.npy] [--lse LSE.npy] [--probs P.npy]
 *                 [--dout DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy] [--threads N] [--bf16]
 *
 * Q is [B, Hq, Nq, d], K and V are [B, Hkv, Nk, d] (PyTorch's scaled_dot_product_attention
 * layout), float32. LSE is [B, Hq, Nq], P is [B, Hq, Nq, Nk]. Any one output may be "-"
 * (standard output; the summary line then goes to stderr). Bad input gets a message
 * naming the file and the problem, and exit status 1 (2 for a malformed command line).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "attention";

static void usage(FILE *out) {
    fprintf(out,
            "usage: qkv attention --q Q.npy --k K.npy --v V.npy [--causal] [--scale S]\n"
            "                     [--temperature T] [--out O.npy] [--lse LSE.npy] [--probs P.npy]\n"
            "                     [--dout DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy] [--threads N]\n"
            "                     [--bf16]\n"
            "\n"
            "  O = softmax(Q K^T * scale / temperature + mask) V for every head, float32 .npy:\n"
            "  Q [B, Hq, Nq, d], K and V [B, Hkv, Nk, d] (Hq a multiple of Hkv, d <= 256).\n"
            "  --causal         query i sees key j iff j <= i + (Nk - Nq) (bottom-right aligned)\n"
            "  --scale S        logit scale (default 1/sqrt(d))\n"
            "  --temperature T  divides the logits (default 1; in [1e-6, 1e6])\n"
            "  --out, --lse     output [B, Hq, Nq, d] and natural-log log-sum-exp [B, Hq, Nq]\n"
            "  --probs          the attention probabilities [B, Hq, Nq, Nk] (materialised)\n"
            "                   any one output may be '-': the .npy goes to stdout\n"
            "  --dout ...       backward: gradient of the output in, dQ dK dV out\n"
            "  --threads N      compute threads (default: all cores, or $QKV_THREADS)\n"
            "  --bf16           the BF16 forward (AVX512_BF16 CPUs; no --probs or backward):\n"
            "                   faster on long sequences, error bound in include/qkv.h\n"
            "  $QKV_SIMD=avx512|avx2|scalar forces a kernel path.\n");
}

/* A number in [lo, hi]; the message states that range (issue 14: "1e30" must not be told
 * "must be positive"). */
static int parse_float(const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !(x >= lo && x <= hi))
        return qkv__cli_usage_error(CMD, "%s must be a number in [%g, %g] (got '%s')", opt, lo, hi, s);
    *out = (float)x;
    return 0;
}

/* A 4-D float32 array's header: reads only the header (and checks the file's size fits the
 * shape) and the rank. The data is read by qkv__npy_read once every shape has been checked
 * against the others, so a mismatched 1 GiB K is refused without reading it (issue 14). */
static qkv_status header4(const char *what, const char *path, qkv__npy *a) {
    qkv_status st = qkv__npy_header(path, a);
    if (st) return st;
    if (a->ndim != 4) {
        return qkv__fail(QKV_ESHAPE, "%s (%s): %d dimensions, expected 4 [B, heads, N, d]", what, path,
                         a->ndim);
    }
    for (int i = 0; i < 4; i++)
        if (a->shape[i] > 0x7fffffff) {
            qkv__npy_free(a);
            return qkv__fail(QKV_ESHAPE, "%s (%s): dimension %d is too large", what, path, i);
        }
    return QKV_OK;
}

static void shape_str(const qkv__npy *a, char *buf, size_t n) {
    snprintf(buf, n, "[%lld, %lld, %lld, %lld]", (long long)a->shape[0], (long long)a->shape[1],
             (long long)a->shape[2], (long long)a->shape[3]);
}

int qkv__cmd_attention(int argc, char **argv) {
    const char *q_path = NULL, *k_path = NULL, *v_path = NULL, *out_path = NULL, *lse_path = NULL;
    const char *probs_path = NULL, *dout_path = NULL, *dq_path = NULL, *dk_path = NULL, *dv_path = NULL;
    int causal = 0, threads = 0, have_scale = 0, bf16 = 0;
    float scale = 0.0f, temperature = 1.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--causal")) {
            causal = 1;
            continue;
        }
        if (!strcmp(a, "--bf16")) {
            bf16 = 1;
            continue;
        }
        const char **slot = !strcmp(a, "--q") ? &q_path : !strcmp(a, "--k") ? &k_path
                          : !strcmp(a, "--v") ? &v_path : !strcmp(a, "--out") ? &out_path
                          : !strcmp(a, "--lse") ? &lse_path : !strcmp(a, "--probs") ? &probs_path
                          : !strcmp(a, "--dout") ? &dout_path : !strcmp(a, "--dq") ? &dq_path
                          : !strcmp(a, "--dk") ? &dk_path : !strcmp(a, "--dv") ? &dv_path : NULL;
        int takes_value = slot || !strcmp(a, "--scale") || !strcmp(a, "--temperature") ||
                          !strcmp(a, "--threads");
        if (!takes_value) {
            usage(stderr);
            return qkv__cli_usage_error(CMD, "unknown option '%s'", a);
        }
        if (i + 1 >= argc) return qkv__cli_usage_error(CMD, "%s needs a value", a);
        const char *val = argv[++i];
        if (slot) {
            *slot = val;
        } else if (!strcmp(a, "--scale")) {
            if (parse_float(a, val, -3e38, 3e38, &scale)) return 2;
            if (scale == 0.0f) return qkv__cli_usage_error(CMD, "--scale must be nonzero (got '%s')", val);
            have_scale = 1;
        } else if (!strcmp(a, "--temperature")) {
            /* it divides the logits; the engine takes [1e-6, float max], the CLI stops at 1e6 */
            if (parse_float(a, val, 1e-6, 1e6, &temperature)) return 2;
        } else {
            char *end;
            long n = strtol(val, &end, 10);
            if (end == val || *end || n < 1 || n > 1024)
                return qkv__cli_usage_error(CMD, "--threads must be an integer in [1, 1024] (got '%s')", val);
            threads = (int)n;
        }
    }
    if (!q_path || !k_path || !v_path) {
        usage(stderr);
        return qkv__cli_usage_error(CMD, "--q, --k and --v are required");
    }
    int want_bwd = dout_path || dq_path || dk_path || dv_path;
    const char *outs[] = {out_path, lse_path, probs_path, dq_path, dk_path, dv_path};
    int n_stdout = 0;
    for (size_t j = 0; j < sizeof outs / sizeof outs[0]; j++) n_stdout += outs[j] && !strcmp(outs[j], "-");
    if (n_stdout > 1) return qkv__cli_usage_error(CMD, "only one output can be '-' (standard output)");
    FILE *report = n_stdout ? stderr : stdout; /* stdout carries the array */
    if (want_bwd && !(dout_path && dq_path && dk_path && dv_path))
        return qkv__cli_usage_error(CMD, "backward needs all of --dout, --dq, --dk and --dv");
    if (bf16 && (want_bwd || probs_path))
        return qkv__cli_usage_error(CMD, "--bf16 is a forward without probabilities: no --probs, --dout, --dq, --dk or --dv");
    if (threads) qkv_set_threads(threads);

    int rc = 1;
    qkv_status st = QKV_OK;
    qkv__npy Q = {0}, K = {0}, V = {0}, DO = {0};
    float *out = NULL, *lse = NULL, *probs = NULL, *grads = NULL;
    char s1[96], s2[96];
    if ((st = header4("Q", q_path, &Q)) || (st = header4("K", k_path, &K)) || (st = header4("V", v_path, &V)))
        goto fail;
    shape_str(&K, s1, sizeof s1);
    shape_str(&V, s2, sizeof s2);
    if (memcmp(K.shape, V.shape, sizeof(int64_t) * 4) != 0) {
        st = qkv__fail(QKV_ESHAPE, "K %s and V %s must have the same shape", s1, s2);
        goto fail;
    }
    shape_str(&Q, s2, sizeof s2);
    if (Q.shape[0] != K.shape[0] || Q.shape[3] != K.shape[3]) {
        st = qkv__fail(QKV_ESHAPE, "Q %s and K %s: batch and head dim must agree ([B, H, N, d])", s2, s1);
        goto fail;
    }
    const int B = (int)Q.shape[0], Hq = (int)Q.shape[1], Nq = (int)Q.shape[2], D = (int)Q.shape[3];
    const int Hkv = (int)K.shape[1], Nk = (int)K.shape[2];
    if (B < 1 || Hq < 1 || Hkv < 1) {
        st = qkv__fail(QKV_ESHAPE, "Q %s, K %s: batch and head counts must be at least 1", s2, s1);
        goto fail;
    }
    if (Hq % Hkv != 0) {
        st = qkv__fail(QKV_ESHAPE, "Q has %d heads, K and V have %d: query heads must be a multiple of key/value heads",
                       Hq, Hkv);
        goto fail;
    }
    if (D < 1 || D > 256) {
        st = qkv__fail(QKV_EUNSUPPORTED, "head dim d = %d (last dimension of Q and K): must be in [1, 256]", D);
        goto fail;
    }
    if (dout_path) {
        if ((st = header4("dO", dout_path, &DO))) goto fail;
        if (memcmp(DO.shape, Q.shape, sizeof(int64_t) * 4) != 0) {
            shape_str(&DO, s1, sizeof s1);
            st = qkv__fail(QKV_ESHAPE, "dO %s must have Q's shape %s", s1, s2);
            goto fail;
        }
    }
    qkv_attn_desc desc;
    qkv_attn_desc_init(&desc, B, Hq, Hkv, Nq, Nk, D);
    desc.causal = causal;
    desc.scale = have_scale ? scale : 0.0f;
    desc.temperature = temperature;
    if ((st = qkv_attn_validate(&desc))) goto fail;
    /* every shape agrees: now read the data */
    if ((st = qkv__npy_read(q_path, &Q)) || (st = qkv__npy_read(k_path, &K)) ||
        (st = qkv__npy_read(v_path, &V)) || (dout_path && (st = qkv__npy_read(dout_path, &DO))))
        goto fail;
    size_t n_rows = (size_t)B * Hq * Nq, n_probs = 0;
    out = qkv__alloc_huge(sizeof(float) * (Q.count ? Q.count : 1));
    lse = qkv__alloc_aligned(sizeof(float) * (n_rows ? n_rows : 1));
    if (probs_path && (!qkv__mul_size(n_rows, (size_t)Nk, &n_probs) ||
                       !(probs = qkv__alloc_huge(sizeof(float) * (n_probs ? n_probs : 1))))) {
        st = qkv__fail(QKV_ENOMEM, "--probs: cannot allocate %zu x %d floats", n_rows, Nk);
        goto fail;
    }
    if (!out || !lse) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto fail;
    }
    double t0 = qkv__now();
    if ((st = bf16 ? qkv_attention_forward_bf16(&desc, Q.data, K.data, V.data, out, lse)
                   : qkv_attention_forward(&desc, Q.data, K.data, V.data, out, lse, probs)))
        goto fail;
    double t_fwd = qkv__now() - t0, t_bwd = 0.0;
    size_t n_bad = 0; /* not an error (PyTorch's semantics, include/qkv.h), but say so */
    for (size_t i = 0; i < Q.count; i++) n_bad += !isfinite(out[i]);
    if (n_bad)
        fprintf(stderr, "qkv %s: warning: %zu of %zu output values are NaN or inf (NaN or inf in the "
                        "input, or logits beyond float32's range; see docs/ENGINE.md)\n",
                CMD, n_bad, Q.count);
    if (want_bwd) {
        grads = qkv__alloc_huge(sizeof(float) * (Q.count + 2 * K.count + 1));
        if (!grads) {
            st = qkv__fail(QKV_ENOMEM, "backward: out of memory");
            goto fail;
        }
        float *dq = grads, *dk = grads + Q.count, *dv = grads + Q.count + K.count;
        t0 = qkv__now();
        if ((st = qkv_attention_backward(&desc, Q.data, K.data, V.data, out, lse, DO.data, dq, dk, dv)))
            goto fail;
        t_bwd = qkv__now() - t0;
    }
    /* the inputs are spent: freed first, their pages become the output files' page cache
     * (pages the guest has not used lately cost a VM a host fault each: 12 MB of O took
     * 21-26 ms to write into fresh pages, 4-9 ms into these) */
    qkv__npy_free(&Q), qkv__npy_free(&K), qkv__npy_free(&V), qkv__npy_free(&DO);
    if (want_bwd) {
        const float *dq = grads, *dk = grads + Q.count, *dv = grads + Q.count + K.count;
        if ((st = qkv__npy_save(dq_path, dq, 4, Q.shape)) || (st = qkv__npy_save(dk_path, dk, 4, K.shape)) ||
            (st = qkv__npy_save(dv_path, dv, 4, K.shape)))
            goto fail;
    }
    int64_t lse_shape[3] = {B, Hq, Nq}, p_shape[4] = {B, Hq, Nq, Nk};
    if (out_path && (st = qkv__npy_save(out_path, out, 4, Q.shape))) goto fail;
    if (lse_path && (st = qkv__npy_save(lse_path, lse, 3, lse_shape))) goto fail;
    if (probs_path && (st = qkv__npy_save(probs_path, probs, 4, p_shape))) goto fail;
    fprintf(report, "attention: B=%d Hq=%d Hkv=%d Nq=%d Nk=%d d=%d%s scale=%g temperature=%g | simd %s, %d threads | "
           "forward%s %.3f ms%s",
           B, Hq, Hkv, Nq, Nk, D, causal ? " causal" : "", (double)(have_scale ? scale : 1.0f / sqrtf((float)D)),
           (double)temperature, qkv_simd_name(), qkv_get_threads(), bf16 ? " (bf16)" : "", t_fwd * 1e3,
           want_bwd ? "" : "\n");
    if (want_bwd) fprintf(report, ", backward %.3f ms\n", t_bwd * 1e3);
    rc = 0;
    goto done;
fail:
    rc = qkv__cli_fail(CMD, st);
done:
    qkv__npy_free(&Q), qkv__npy_free(&K), qkv__npy_free(&V), qkv__npy_free(&DO);
    qkv__free_aligned(out), qkv__free_aligned(lse), qkv__free_aligned(probs), qkv__free_aligned(grads);
    return rc;
}
