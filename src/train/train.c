/*
 * train.c -- the whole model's forward with saved activations and its backward, for every
 * family, on the params.h block: the blocks of src/model/layers.c (the same code inference
 * runs) with one activation set per layer kept, then the backward through them in reverse.
 * Attention goes through the engine: qkv_attention_forward saves out and lse,
 * qkv_attention_backward recomputes the probabilities from them. Also initialisation.
 */
#include "train/train.h"

#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The mask key of one dropout site: 0 = embeddings, 1 + 2l = layer l's attention output,
 * 2 + 2l = its MLP output. */
static uint64_t site_key(const qkv__train_acts *a, int site) {
    return qkv__mix64(a->dropout_key ^ ((uint64_t)(site + 1) * 0xD1B54A32D192ED03ULL));
}

/* ---- activations ---------------------------------------------------------------------- */

qkv_status qkv__train_acts_alloc(qkv__train_acts *a, const qkv_model_config *cfg, int B, int T) {
    memset(a, 0, sizeof *a);
    if (B < 1 || T < 1 || T > cfg->n_ctx)
        return qkv__fail(QKV_ERANGE, "train: batch %d x context %d (the model's context is %d)", B,
                         T, cfg->n_ctx);
    qkv__dims m = qkv__dims_of(cfg);
    size_t L = (size_t)cfg->n_layer, C = (size_t)m.C, V = (size_t)cfg->vocab_size,
           H = (size_t)m.H, KV = (size_t)m.KV, W = (size_t)m.W, F = (size_t)m.F,
           F2 = (size_t)m.F2, N = (size_t)B * (size_t)T, qn = cfg->qk_norm ? 1 : 0;
    struct {
        float **ptr;
        size_t count;
    } t[] = {
        {&a->encoded, N * C},       {&a->ln1, L * N * C},        {&a->ln1_mean, L * N},
        {&a->ln1_rstd, L * N},      {&a->qkv_raw, qn * L * N * W}, {&a->qn_rstd, qn * L * N * H},
        {&a->kn_rstd, qn * L * N * KV}, {&a->qkv, L * N * W},    {&a->att, L * N * W},
        {&a->lse, L * N * H},       {&a->residual2, L * N * C},  {&a->ln2, L * N * C},
        {&a->ln2_mean, L * N},      {&a->ln2_rstd, L * N},       {&a->fch, L * N * F2},
        {&a->fch_act, L * N * F},   {&a->residual3, L * N * C},  {&a->lnf, N * C},
        {&a->lnf_mean, N},          {&a->lnf_rstd, N},           {&a->logits, N * V},
        {&a->losses, N},            {&a->dresidual, N * C},      {&a->dbuf_c, N * C},
        {&a->dbuf_w, N * W},        {&a->dbuf_w2, N * (W > F ? W : F)}, {&a->dbuf_f, N * F2},
    };
    size_t n = sizeof t / sizeof t[0], total = 0;
    for (size_t i = 0; i < n; i++) total += (t[i].count + 15) & ~(size_t)15; /* 64-byte aligned */
    a->block = qkv__alloc_aligned(total * sizeof(float));
    if (!a->block)
        return qkv__fail(QKV_ENOMEM, "train: cannot allocate %.1f MB of activations for batch %d x %d",
                         (double)total * 4.0 / 1e6, B, T);
    memset(a->block, 0, total * sizeof(float));
    float *at = a->block;
    for (size_t i = 0; i < n; i++) {
        *t[i].ptr = t[i].count ? at : NULL;
        at += (t[i].count + 15) & ~(size_t)15;
    }
    a->B = B;
    a->T = T;
    return QKV_OK;
}

void qkv__train_acts_free(qkv__train_acts *a) {
    if (!a) return;
    qkv__free_aligned(a->block);
    memset(a, 0, sizeof *a);
}

/* Layer l's view of the saved activations (capacity capN rows per layer). */
static qkv__block_acts layer_acts(const qkv_model_config *cfg, const qkv__train_acts *a, int l) {
    qkv__dims m = qkv__dims_of(cfg);
    size_t capN = (size_t)a->B * a->T, ul = (size_t)l, C = (size_t)m.C, W = (size_t)m.W;
    qkv__block_acts b;
    memset(&b, 0, sizeof b);
    b.ln1 = a->ln1 + ul * capN * C;
    b.ln1_mean = a->ln1_mean + ul * capN;
    b.ln1_rstd = a->ln1_rstd + ul * capN;
    if (cfg->qk_norm) {
        b.qkv_raw = a->qkv_raw + ul * capN * W;
        b.qn_rstd = a->qn_rstd + ul * capN * (size_t)m.H;
        b.kn_rstd = a->kn_rstd + ul * capN * (size_t)m.KV;
    }
    b.qkv = a->qkv + ul * capN * W;
    b.att = a->att + ul * capN * W;
    b.lse = a->lse + ul * capN * (size_t)m.H;
    b.res2 = a->residual2 + ul * capN * C;
    b.ln2 = a->ln2 + ul * capN * C;
    b.ln2_mean = a->ln2_mean + ul * capN;
    b.ln2_rstd = a->ln2_rstd + ul * capN;
    b.fch = a->fch + ul * capN * (size_t)m.F2;
    b.fch_act = a->fch_act + ul * capN * (size_t)m.F;
    b.res3 = a->residual3 + ul * capN * C;
    return b;
}

/* ---- whole model ---------------------------------------------------------------------- */

static qkv_status check_ids(const int *ids, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return qkv__fail(QKV_ERANGE, "train: %s[%zu] = %d outside the vocabulary [0, %d)", what,
                             i, ids[i], V);
    return QKV_OK;
}

qkv_status qkv__train_forward(const qkv_model_config *cfg, const qkv__params *p,
                              qkv__train_acts *a, const int *inputs, const int *targets, int B,
                              int T, float *mean_loss) {
    int L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size;
    if (B < 1 || T < 1 || (size_t)B * T > (size_t)a->B * a->T || T > a->T || T > cfg->n_ctx)
        return qkv__fail(QKV_ERANGE, "train: batch %d x %d exceeds the allocated %d x %d (context %d)",
                         B, T, a->B, a->T, cfg->n_ctx);
    size_t N = (size_t)B * T, capN = (size_t)a->B * a->T;
    qkv_status st = check_ids(inputs, N, V, "inputs");
    if (!st && targets) st = check_ids(targets, N, V, "targets");
    if (st) return st;
    qkv__dims m = qkv__dims_of(cfg);

    qkv__encoder_forward(a->encoded, inputs, p->wte, p->wpe, B, T, C, 0);
    float drop = a->dropout;
    if (drop > 0.0f) qkv__dropout(a->encoded, a->encoded, N * C, drop, site_key(a, 0));
    qkv_attn_desc d;
    qkv__block_attn_desc(cfg, &d, B, T);
    for (int l = 0; l < L; l++) {
        const float *x = l == 0 ? a->encoded : a->residual3 + (l - 1) * capN * C;
        qkv__block_acts b = layer_acts(cfg, a, l);
        qkv__block_attn_in(cfg, p, l, &b, x, B, T, 0, NULL);
        st = qkv_attention_forward(&d, b.qkv, b.qkv + m.Hd, b.qkv + m.Hd + m.KVd, b.att, b.lse, NULL);
        if (st) return st;
        qkv__block_attn_out(cfg, p, l, &b, x, (int)N, NULL, drop, site_key(a, 1 + 2 * l),
                            site_key(a, 2 + 2 * l));
    }
    const float *last = a->residual3 + (L - 1) * capN * C;
    qkv__norm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, last, p->lnf_w, p->lnf_b, (int)N, C,
                      cfg->layer_norm_eps, cfg->norm);
    /* logits[N, V] = lnf @ wte^T (or the untied lm_head) */
    const float *out_w = p->lm_head ? p->lm_head : p->wte;
    qkv__gemm(0, 1, (int)N, V, C, a->lnf, C, out_w, C, 0.0f, a->logits, V);
    if (targets) {
        qkv__crossentropy_forward(a->logits, a->losses, targets, (int)N, V);
        double sum = 0.0;
        for (size_t i = 0; i < N; i++) sum += a->losses[i];
        if (mean_loss) *mean_loss = (float)(sum / (double)N);
    }
    return QKV_OK;
}

qkv_status qkv__train_backward(const qkv_model_config *cfg, const qkv__params *p, qkv__params *g,
                               qkv__train_acts *a, const int *inputs, const int *targets, int B,
                               int T, float loss_scale) {
    int L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size;
    size_t N = (size_t)B * T, capN = (size_t)a->B * a->T;
    float drop = a->dropout;
    /* d(mean loss)/d logits, in place over the probabilities */
    qkv__crossentropy_backward(a->logits, targets, loss_scale / (float)N, (int)N, V);
    /* dlnf = dlogits @ W_out; dW_out += dlogits^T @ lnf */
    const float *out_w = p->lm_head ? p->lm_head : p->wte;
    float *g_out = p->lm_head ? g->lm_head : g->wte;
    qkv__gemm(0, 0, (int)N, C, V, a->logits, V, out_w, C, 0.0f, a->dbuf_c, C);
    qkv__gemm(1, 0, V, C, (int)N, a->logits, V, a->lnf, C, 1.0f, g_out, C);
    float *dres = a->dresidual;
    memset(dres, 0, N * C * sizeof(float));
    qkv__norm_backward(dres, g->lnf_w, g->lnf_b, a->dbuf_c, a->residual3 + (L - 1) * capN * C,
                       p->lnf_w, a->lnf_mean, a->lnf_rstd, (int)N, C, cfg->norm);
    for (int l = L - 1; l >= 0; l--) {
        const float *x = l == 0 ? a->encoded : a->residual3 + (l - 1) * capN * C;
        qkv__block_acts b = layer_acts(cfg, a, l);
        qkv_status st = qkv__block_backward(cfg, p, g, l, &b, x, B, T, dres, a->dbuf_c, a->dbuf_w,
                                            a->dbuf_w2, a->dbuf_f, drop, site_key(a, 1 + 2 * l),
                                            site_key(a, 2 + 2 * l));
        if (st) return st;
    }
    if (drop > 0.0f) qkv__dropout(dres, dres, N * C, drop, site_key(a, 0));
    qkv__encoder_backward(g->wte, g->wpe, dres, inputs, B, T, C);
    return QKV_OK;
}

/* ---- initialisation ------------------------------------------------------------------- */

static double rng_uniform01(uint64_t *s) { /* (0, 1] */
    return ((double)(qkv__rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

int qkv__kind_decays(int kind) {
    return kind == QKV__P_WTE || kind == QKV__P_WPE || kind == QKV__P_ATTN_W ||
           kind == QKV__P_PROJ_W || kind == QKV__P_FC_W || kind == QKV__P_FCPROJ_W ||
           kind == QKV__P_LM_HEAD;
}

void qkv__init_weights(const qkv_model_config *cfg, float *block, uint64_t seed) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    uint64_t s = seed ^ 0x71C7C0DE5EEDULL;
    float resid_std = 0.02f / sqrtf(2.0f * (float)cfg->n_layer);
    float *at = block;
    for (int k = 0; k < QKV__N_KINDS; k++) {
        int norm_w = k == QKV__P_LN1_W || k == QKV__P_LN2_W || k == QKV__P_LNF_W ||
                     k == QKV__P_QN_W || k == QKV__P_KN_W;
        if (qkv__kind_decays(k)) {
            float std = (k == QKV__P_PROJ_W || k == QKV__P_FCPROJ_W) ? resid_std : 0.02f;
            for (size_t i = 0; i < sizes[k]; i += 2) { /* Box-Muller, two normals per draw */
                double u1 = rng_uniform01(&s), u2 = rng_uniform01(&s);
                double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
                at[i] = (float)(r * cos(th)) * std;
                if (i + 1 < sizes[k]) at[i + 1] = (float)(r * sin(th)) * std;
            }
        } else {
            for (size_t i = 0; i < sizes[k]; i++) at[i] = norm_w ? 1.0f : 0.0f;
        }
        at += sizes[k];
    }
}

void qkv__init_sinusoid_wpe(const qkv_model_config *cfg, float *block) {
    size_t sizes[QKV__N_KINDS];
    qkv__param_sizes(cfg, sizes);
    if (!sizes[QKV__P_WPE]) return; /* rotary positions: nothing to initialise */
    float *wpe = block + sizes[QKV__P_WTE]; /* wpe follows wte in the block */
    int C = cfg->n_embd;
    double amp = 0.02 * sqrt(2.0); /* sin^2 + cos^2 = 1 per pair: per-element RMS 0.02 */
    for (int t = 0; t < cfg->n_ctx; t++)
        for (int c = 0; c < C; c++) {
            double w = (double)t / pow(10000.0, (double)(c & ~1) / (double)C);
            wpe[(size_t)t * C + c] = (float)(amp * ((c & 1) ? cos(w) : sin(w)));
        }
}
