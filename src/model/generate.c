/*
 * generate.c -- generation with a KV cache, sampling, and the BF16 and Q8_0 weight copies.
 *
 * The prompt runs as one batch that fills the cache; then one token at a time, each step a
 * GEMV per matrix over weights read once (memory bound). The cache (the engine's
 * qkv_kvcache) is per call.
 *
 * Sampling: temperature 0 = greedy (the first maximum); otherwise softmax(logits / T),
 * top-k keeps the k most likely, top-p the smallest most-likely prefix whose mass reaches p
 * (after top-k, on the renormalised distribution, as Hugging Face does), then one draw from
 * a splitmix64-seeded xorshift64* generator: the same seed gives the same tokens.
 */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- BF16 copies --------------------------------------------------------------------------- */

qkv_status qkv_model_use_bf16(qkv_model *model, int on) {
    if (!model) return qkv__fail(QKV_EINVAL, "use_bf16: model is NULL");
    if (!on) {
        qkv__free_aligned(model->bf16);
        model->bf16 = NULL;
        return QKV_OK;
    }
    if (model->bf16) return QKV_OK;
    const qkv_model_config *c = &model->cfg;
    qkv__dims m = qkv__dims_of(c);
    int L = c->n_layer, C = c->n_embd, V = c->vocab_size;
    /* the block matrices packed (qkv__bf16p_pack), the head [V, C] row by row as it is */
    const int in[4] = {C, m.Hd, C, m.F}, out[4] = {m.W, C, m.F2, C};
    const float *src[5] = {model->p.attn_w, model->p.proj_w, model->p.fc_w, model->p.fcproj_w,
                           model->p.lm_head ? model->p.lm_head : model->p.wte};
    size_t cnt[5], total = 0;
    for (int t = 0; t < 4; t++) total += cnt[t] = (size_t)L * qkv__bf16p_size(in[t], out[t]);
    total += cnt[4] = (size_t)V * C;
    uint16_t *b = (uint16_t *)qkv__alloc_params((total + 1) / 2);
    if (!b) return qkv__fail(QKV_ENOMEM, "use_bf16: cannot allocate %.1f MB", (double)total * 2e-6);
    uint16_t *at = b, *starts[5];
    for (int t = 0; t < 5; t++) {
        starts[t] = at;
        if (t < 4) {
            for (int l = 0; l < L; l++)
                qkv__bf16p_pack(src[t] + (size_t)l * in[t] * out[t], in[t], out[t], at + (size_t)l * (cnt[t] / L));
        } else {
            const float *s = src[t];
            size_t n = cnt[t];
            int nt = qkv__model_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
            for (size_t i = 0; i < n; i++) at[i] = qkv__f32_to_bf16(s[i]);
        }
        at += cnt[t];
    }
    model->bf16_attn_w = starts[0];
    model->bf16_proj_w = starts[1];
    model->bf16_fc_w = starts[2];
    model->bf16_fcproj_w = starts[3];
    model->bf16_out = starts[4];
    model->bf16 = b;
    return QKV_OK;
}

/* ---- Q8_0 copies ---------------------------------------------------------------------------- */

/* n_mat matrices [in, out] (one per layer, one after another) to Q8_0 rows [out, in / 32]
 * (trans = 0), or matrices already [out, in] (trans = 1: the output head) quantised row by
 * row. Threads take 16 output rows at a time, gathered from the [in, out] layout through a
 * [16, in] buffer (whole cache lines of every source row), then quantised. */
static qkv_status q8_copy(const float *src, int n_mat, int in, int out, int trans, qkv__q8 *dst) {
    size_t nb = (size_t)in / 32;
    int n_chunks = (out + 15) / 16, nt = qkv__model_threads(), failed = 0;
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        float *buf = trans ? NULL : malloc(sizeof(float) * 16 * (size_t)in);
        if (!trans && !buf) failed = 1;
#pragma omp for schedule(static) collapse(2)
        for (int l = 0; l < n_mat; l++)
            for (int ch = 0; ch < n_chunks; ch++) {
                if (failed) continue;
                const float *m = src + (size_t)l * in * out;
                qkv__q8 *dm = dst + (size_t)l * out * nb;
                int o0 = ch * 16, no = out - o0 < 16 ? out - o0 : 16;
                if (trans) {
                    for (int r = 0; r < no; r++)
                        qkv__q8_quantize(m + (size_t)(o0 + r) * in, (size_t)in, dm + (size_t)(o0 + r) * nb);
                    continue;
                }
                for (int k = 0; k < in; k++) {
                    const float *row = m + (size_t)k * out + o0;
                    for (int r = 0; r < no; r++) buf[(size_t)r * in + k] = row[r];
                }
                for (int r = 0; r < no; r++)
                    qkv__q8_quantize(buf + (size_t)r * in, (size_t)in, dm + (size_t)(o0 + r) * nb);
            }
        free(buf);
    }
    return failed ? qkv__fail(QKV_ENOMEM, "use_q8: out of memory") : QKV_OK;
}

qkv_status qkv_model_use_q8(qkv_model *model, int on) {
    if (!model) return qkv__fail(QKV_EINVAL, "use_q8: model is NULL");
    if (!on) {
        qkv__free_aligned(model->q8);
        model->q8 = model->q8_attn_w = model->q8_proj_w = model->q8_fc_w = model->q8_fcproj_w =
            model->q8_out = NULL;
        return QKV_OK;
    }
    if (model->q8) return QKV_OK;
    const qkv_model_config *c = &model->cfg;
    qkv__dims m = qkv__dims_of(c);
    int L = c->n_layer, C = c->n_embd, V = c->vocab_size;
    /* in, out of each matrix; one whose in is not a multiple of 32 (odd configs) has no Q8
     * copy and keeps the F32 (or BF16) path */
    const int ins[5] = {C, m.Hd, C, m.F, C}, outs[5] = {m.W, C, m.F2, C, V}, nmat[5] = {L, L, L, L, 1};
    const float *src[5] = {model->p.attn_w, model->p.proj_w, model->p.fc_w, model->p.fcproj_w,
                           model->p.lm_head ? model->p.lm_head : model->p.wte};
    size_t nblk[5], total = 0;
    for (int t = 0; t < 5; t++) {
        nblk[t] = ins[t] % 32 ? 0 : (size_t)nmat[t] * (size_t)outs[t] * (size_t)(ins[t] / 32);
        total += nblk[t];
    }
    if (!total) return QKV_OK; /* nothing quantisable: generation stays F32 / BF16 */
    qkv__q8 *q = qkv__alloc_aligned(sizeof(qkv__q8) * total);
    if (!q) return qkv__fail(QKV_ENOMEM, "use_q8: cannot allocate %.1f MB", (double)total * 34e-6);
    qkv__q8 *at = q, *starts[5];
    for (int t = 0; t < 5; t++) {
        starts[t] = nblk[t] ? at : NULL;
        if (!nblk[t]) continue;
        qkv_status st = q8_copy(src[t], nmat[t], ins[t], outs[t], t == 4, at);
        if (st) {
            qkv__free_aligned(q);
            return st;
        }
        at += nblk[t];
    }
    model->q8_attn_w = starts[0];
    model->q8_proj_w = starts[1];
    model->q8_fc_w = starts[2];
    model->q8_fcproj_w = starts[3];
    model->q8_out = starts[4];
    model->q8 = q;
    return QKV_OK;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t xorshift64s(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, 1). */
static double rand_unit(uint64_t *s) { return (double)(xorshift64s(s) >> 11) * (1.0 / 9007199254740992.0); }

typedef struct {
    float p;
    int id;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* One token from one row of logits; work has room for V candidates. */
static int sample(const float *logits, int V, const qkv_sampler *s, uint64_t *rng, cand *work) {
    if (!s || !(s->temperature > 0.0f)) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    if (!isfinite(mx)) return argmax(logits, V);
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        work[i].id = i;
        work[i].p = (float)exp(((double)logits[i] - mx) / s->temperature);
        sum += work[i].p;
    }
    int n = V;
    int top_k = s->top_k > 0 && s->top_k < V ? s->top_k : 0;
    int top_p = s->top_p > 0.0f && s->top_p < 1.0f;
    if (top_k || top_p) {
        if (top_p && !top_k) { /* tokens below (1-p)/(V-1) cannot be in the nucleus: skip sorting them */
            double cut = (1.0 - s->top_p) / (V > 1 ? V - 1 : 1) * sum;
            int m = 0;
            for (int i = 0; i < V; i++)
                if (work[i].p >= cut) work[m++] = work[i];
            n = m > 0 ? m : V;
        }
        qsort(work, (size_t)n, sizeof *work, cmp_cand);
        if (top_k && top_k < n) n = top_k;
        double mass = 0.0;
        for (int i = 0; i < n; i++) mass += work[i].p;
        if (top_p) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) {
                acc += work[i].p;
                if (acc >= s->top_p * mass) {
                    n = i + 1;
                    break;
                }
            }
        }
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += work[i].p;
    }
    double u = rand_unit(rng) * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += work[i].p;
        if (u < acc) return work[i].id;
    }
    return work[n - 1].id;
}

/* ---- generation ---------------------------------------------------------------------------- */

qkv_status qkv_model_generate(qkv_model *model, const int *prompt, int n_prompt, int max_new,
                              const qkv_sampler *sampler, qkv_token_cb cb, void *user,
                              int *out_ids, int *n_out) {
    if (n_out) *n_out = 0;
    if (!model) return qkv__fail(QKV_EINVAL, "generate: model is NULL");
    if (max_new < 0) return qkv__fail(QKV_EINVAL, "generate: max_new %d < 0", max_new);
    if (max_new > 0 && !out_ids) return qkv__fail(QKV_EINVAL, "generate: out_ids is NULL");
    if (sampler && (!isfinite(sampler->temperature) || sampler->temperature < 0.0f))
        return qkv__fail(QKV_ERANGE, "generate: temperature %g must be a finite number >= 0 (0: greedy)",
                         (double)sampler->temperature);
    if (sampler && !(sampler->top_p > 0.0f && sampler->top_p <= 1.0f))
        return qkv__fail(QKV_ERANGE, "generate: top_p %g outside (0, 1]", (double)sampler->top_p);
    if (sampler && sampler->top_k < 0)
        return qkv__fail(QKV_ERANGE, "generate: top_k %d < 0", sampler->top_k);
    qkv_status st = qkv__check_ids(model, prompt, n_prompt);
    if (st) return st;
    const qkv_model_config *c = &model->cfg;
    int V = c->vocab_size;
    long want = (long)n_prompt + max_new;
    int cap_len = want < c->n_ctx ? (int)want : c->n_ctx;
    qkv_kvcache *kv = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    cand *work = malloc(sizeof(cand) * (size_t)V);
    if ((st = qkv__kvcache_create_whole(c->n_layer, c->n_kv_head, c->head_dim, cap_len, &kv))) goto done;
    if (!logits || !work) {
        st = qkv__fail(QKV_ENOMEM, "generate: out of memory for a %d-token cache", cap_len);
        goto done;
    }
    int eot = model->tok ? qkv_tokenizer_eot(model->tok) : -1;
    uint64_t seed_state = sampler ? sampler->seed : 0, rng = splitmix64(&seed_state);
    if (!rng) rng = 0x9E3779B97F4A7C15ull; /* xorshift must not start at 0 */
    /* "bf16" for qkv__model_run: the one-token steps read the reduced copies, Q8_0 where the
     * model has them, else BF16 (forward.c) */
    int bf16 = model->bf16 != NULL || model->q8 != NULL;
    st = qkv__model_run(model, prompt, n_prompt, kv, NULL, NULL, logits, NULL, bf16);
    int pos = n_prompt, produced = 0;
    /* Thread tuning. A probe is 4 steps alternating all threads and one thread; the faster
     * (min of 2 each; one thread only by a clear margin) runs until the next probe. On all
     * threads a probe starts only when the machine looks busy: over the last 16 steps the
     * process used less CPU than its threads times the wall time (the pool's threads spin
     * between loops, so a shortfall is a thread of ours waiting for a core). On a quiet
     * machine no step runs narrower; on one thread, a probe every 64 steps looks for the way
     * back. On a machine whose cores are busy one thread can be many times faster. */
    int saved_cap = qkv__model_threads_cap(0), full = qkv__model_threads();
    qkv__model_threads_cap(saved_cap);
    int step = 0, chosen = saved_cap, probe = 4; /* probe: the step within a probe, 4 = none */
    double best_full = 1e30, best_one = 1e30, win_wall = 0, win_cpu = 0;
    while (!st && produced < max_new) {
        int id = sample(logits, V, sampler, &rng, work);
        if (id == eot) break;
        out_ids[produced++] = id;
        if (n_out) *n_out = produced;
        if (cb && cb(user, id)) break;
        if (produced == max_new || pos >= cap_len) break; /* done, or the context is full */
        if (full > 1 && probe == 4 && step > 0 && step % 16 == 0) {
            int narrow = chosen == 1;
            if ((narrow && step % 64 == 0) || (!narrow && win_cpu < 0.85 * full * win_wall)) {
                probe = 0;
                best_full = best_one = 1e30;
            }
            win_wall = win_cpu = 0;
        }
        if (probe < 4) qkv__model_threads_cap(probe % 2 ? 1 : saved_cap);
        double t0 = qkv__now(), c0 = qkv__process_cpu();
        st = qkv__model_run(model, &id, 1, kv, NULL, NULL, logits, NULL, bf16);
        double dt = qkv__now() - t0;
        if (probe < 4) {
            if (probe % 2) best_one = dt < best_one ? dt : best_one;
            else best_full = dt < best_full ? dt : best_full;
            if (probe == 3) chosen = best_one < 0.9 * best_full ? 1 : saved_cap;
            qkv__model_threads_cap(chosen);
            probe++;
        } else {
            win_wall += dt;
            win_cpu += qkv__process_cpu() - c0;
        }
        step++;
        pos++;
    }
    qkv__model_threads_cap(saved_cap);
done:
    qkv_kvcache_free(kv);
    free(logits);
    free(work);
    return st;
}
