/*
 * heads.c -- what each attention head does, measured on a probe set: qkv_model_head_scores.
 *
 * Two probes, both built here so that any model with a tokenizer can be scored:
 *   - ordinary prose (PROSE below, written for qkv) in windows of up to 128 tokens: the weight
 *     each head puts on the previous token, on itself, on the first token (a "sink"), on
 *     punctuation, and how close its rows are to uniform (normalised entropy);
 *   - a random sequence of common words shown twice (the vocabulary's first space-prefixed
 *     alphabetic tokens; BPE numbers tokens roughly by frequency): the weight that each token
 *     of the second copy puts on the token that followed its first occurrence (induction).
 * Tags come from fixed thresholds on those scores (qkv.h lists them), so they are computed
 * from the model, never written down per model.
 */
#include "qkv_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char PROSE[] =
    "The old house stood at the end of the road, and nobody had lived in it for years. "
    "One morning a young woman came up the hill with a small bag and a letter in her hand. "
    "She knocked twice, waited, and then pushed the door open. Inside, the rooms were cold and "
    "dark; the windows had been covered with heavy cloth. She walked from room to room, "
    "opening the curtains and looking at the dusty chairs, the empty shelves and the long table "
    "in the kitchen.\n"
    "In the afternoon her brother arrived from the city. He had driven all day, and he was "
    "tired, but he laughed when he saw the garden. \"We will need a month to clear it,\" he "
    "said. She did not answer at once. She was reading the letter again, the one their "
    "grandmother had written before she died, which said that the house and the land were "
    "theirs, on one condition: that they live in it together for a year.\n"
    "The town below the hill had changed since they were children. There was a new school, a "
    "bank with glass doors, and a market where farmers sold apples, bread and cheese on "
    "Saturdays. The people were friendly, though a few of them asked questions that were hard "
    "to answer. Why had they come back? How long would they stay? What would they do with the "
    "old mill by the river?\n"
    "By the end of the first week the two of them had a plan. He would repair the roof and the "
    "fences, and she would look after the accounts, write to the lawyers and find out what the "
    "mill was worth. In the evenings they sat by the fire and talked about the summers they had "
    "spent there, the games they had played in the woods, and the stories their grandmother had "
    "told them about the war, the flood and the winter when the river froze.";

#define WINDOW 128
/* splitmix64: the probe's sequence is the same on every machine */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
#define IND_LEN 24
#define IND_REPS 4
#define IND_POOL 2000

const char *qkv_head_tag_name(int tag) {
    static const char *names[QKV_HEAD_TAG_COUNT] = {"previous-token", "induction", "first-token sink",
                                                     "self", "punctuation", "uniform"};
    return tag >= 0 && tag < QKV_HEAD_TAG_COUNT ? names[tag] : "?";
}

const char *qkv_head_score_key(int k) {
    static const char *keys[QKV_HEAD_TAG_COUNT] = {"prev", "induction", "sink", "self", "punctuation", "uniformity"};
    return k >= 0 && k < QKV_HEAD_TAG_COUNT ? keys[k] : "?";
}

float qkv_head_threshold(int k) {
    static const float thr[QKV_HEAD_TAG_COUNT] = {QKV_HEAD_PREV_MIN, QKV_HEAD_INDUCTION_MIN, QKV_HEAD_SINK_MIN,
                                                  QKV_HEAD_SELF_MIN, QKV_HEAD_PUNCT_MIN, QKV_HEAD_UNIFORM_MIN};
    return k >= 0 && k < QKV_HEAD_TAG_COUNT ? thr[k] : 0.0f;
}

void qkv_head_scores_free(qkv_head_scores *s) {
    if (!s) return;
    free(s->score);
    free(s->tags);
    memset(s, 0, sizeof *s);
}

/* A token is punctuation when its bytes, after leading spaces, are all ASCII punctuation or
 * line breaks. */
static int is_punct_token(const qkv_tokenizer *tok, int id) {
    const char *b;
    size_t n;
    if (qkv_tokenizer_token_bytes(tok, id, &b, &n)) return 0;
    size_t i = 0;
    while (i < n && b[i] == ' ') i++;
    if (i == n) return 0;
    for (; i < n; i++)
        if (!strchr(".,;:!?\"'()-\n", b[i]) || b[i] == '\0') return 0;
    return 1;
}

/* Space-prefixed lowercase words of 3+ letters: the "common words" of the induction probe. */
static int is_word_token(const qkv_tokenizer *tok, int id) {
    const char *b;
    size_t n;
    if (qkv_tokenizer_token_bytes(tok, id, &b, &n) || n < 4 || b[0] != ' ') return 0;
    for (size_t i = 1; i < n; i++)
        if (b[i] < 'a' || b[i] > 'z') return 0;
    return 1;
}

/* Accumulates one window's statistics into acc[L*H][QKV_HEAD_TAG_COUNT] (sums) and counts. */
static void prose_stats(const float *P, int L, int H, int N, const unsigned char *punct,
                        double *acc, double *n_rows, double *base_sum) {
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            const float *A = P + ((size_t)l * H + h) * N * N;
            double *a = acc + ((size_t)l * H + h) * QKV_HEAD_TAG_COUNT;
            for (int i = 1; i < N; i++) {
                const float *row = A + (size_t)i * N;
                a[QKV_HEAD_PREV] += row[i - 1];
                a[QKV_HEAD_SELF] += row[i];
                if (i < 4) continue; /* early rows are forced to look at few tokens */
                a[QKV_HEAD_SINK] += row[0];
                double pw = 0, ent = 0;
                for (int j = 0; j <= i; j++) {
                    if (punct[j]) pw += row[j];
                    if (row[j] > 0) ent -= row[j] * log(row[j]);
                }
                a[QKV_HEAD_PUNCT] += pw;
                a[QKV_HEAD_UNIFORM] += ent / log((double)i + 1);
            }
        }
    for (int i = 4; i < N; i++) {
        int k = 0;
        for (int j = 0; j <= i; j++) k += punct[j];
        *base_sum += (double)k / (i + 1);
    }
    n_rows[0] += N - 1;
    n_rows[1] += N > 4 ? N - 4 : 0;
}

qkv_status qkv_model_head_scores(qkv_model *model, qkv_head_scores *out) {
    if (!model || !out) return qkv__fail(QKV_EINVAL, "head scores: NULL argument");
    memset(out, 0, sizeof *out);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    if (!tok) return qkv__fail(QKV_EINVAL, "head scores: the model has no tokenizer (vocab.json + merges.txt)");
    const qkv_model_config *cfg = qkv_model_get_config(model);
    int L = cfg->n_layer, H = cfg->n_head, V = cfg->vocab_size;
    int W = cfg->n_ctx < WINDOW ? cfg->n_ctx : WINDOW;
    size_t LH = (size_t)L * H;
    int *ids = NULL, pool_n = 0;
    int *pool = malloc(IND_POOL * sizeof *pool);
    double *acc = calloc(LH * QKV_HEAD_TAG_COUNT, sizeof *acc);
    unsigned char *punct = malloc(W > 2 * IND_LEN ? (size_t)W : 2 * IND_LEN);
    size_t n_ids = 0;
    double n_rows[2] = {0, 0}, base_sum = 0;
    qkv_status st = QKV_OK;
    out->score = calloc(LH * QKV_HEAD_TAG_COUNT, sizeof *out->score);
    out->tags = calloc(LH, sizeof *out->tags);
    if (!pool || !acc || !punct || !out->score || !out->tags) {
        st = qkv__fail(QKV_ENOMEM, "head scores: out of memory");
        goto done;
    }
    out->n_layer = L;
    out->n_head = H;
    if ((st = qkv_tokenizer_encode(tok, PROSE, sizeof PROSE - 1, 0, &ids, &n_ids))) goto done;
    for (size_t s = 0; s + 8 <= n_ids; s += (size_t)W) {
        int N = (int)(n_ids - s < (size_t)W ? n_ids - s : (size_t)W);
        qkv_capture cap = {0};
        cap.want_probs = 1;
        if ((st = qkv_model_forward(model, ids + s, N, NULL, NULL, NULL, &cap))) goto done;
        for (int j = 0; j < N; j++) punct[j] = (unsigned char)is_punct_token(tok, ids[s + j]);
        prose_stats(cap.probs, L, H, N, punct, acc, n_rows, &base_sum);
        out->n_probe_tokens += N;
        qkv_capture_free(&cap);
    }
    if (n_rows[1] == 0) {
        st = qkv__fail(QKV_EINVAL, "head scores: the model's context (%d) is too short for the probe", cfg->n_ctx);
        goto done;
    }
    /* induction: common words, a seeded random sequence shown twice */
    for (int id = 0; id < V && pool_n < IND_POOL; id++)
        if (is_word_token(tok, id)) pool[pool_n++] = id;
    if (pool_n >= 2 * IND_LEN && 2 * IND_LEN <= cfg->n_ctx) {
        int seq[2 * IND_LEN];
        uint64_t rng = 1;
        for (int r = 0; r < IND_REPS; r++) {
            for (int i = 0; i < IND_LEN; i++) { /* distinct words, so "the earlier occurrence" is one place */
                int ok;
                do {
                    seq[i] = pool[next_rand(&rng) % (uint64_t)pool_n];
                    ok = 1;
                    for (int j = 0; j < i; j++) ok &= seq[j] != seq[i];
                } while (!ok);
                seq[IND_LEN + i] = seq[i];
            }
            qkv_capture cap = {0};
            cap.want_probs = 1;
            if ((st = qkv_model_forward(model, seq, 2 * IND_LEN, NULL, NULL, NULL, &cap))) goto done;
            int N = 2 * IND_LEN;
            for (size_t lh = 0; lh < LH; lh++) {
                const float *A = cap.probs + lh * N * N;
                double s = 0;
                for (int i = IND_LEN; i < N; i++) s += A[(size_t)i * N + (i - IND_LEN + 1)];
                acc[lh * QKV_HEAD_TAG_COUNT + QKV_HEAD_INDUCTION] += s / IND_LEN / IND_REPS;
            }
            qkv_capture_free(&cap);
        }
        out->has_induction = 1;
    }
    out->punct_base = (float)(base_sum / n_rows[1]);
    for (size_t lh = 0; lh < LH; lh++) {
        float *s = out->score + lh * QKV_HEAD_TAG_COUNT;
        const double *a = acc + lh * QKV_HEAD_TAG_COUNT;
        s[QKV_HEAD_PREV] = (float)(a[QKV_HEAD_PREV] / n_rows[0]);
        s[QKV_HEAD_SELF] = (float)(a[QKV_HEAD_SELF] / n_rows[0]);
        s[QKV_HEAD_SINK] = (float)(a[QKV_HEAD_SINK] / n_rows[1]);
        s[QKV_HEAD_PUNCT] = (float)(a[QKV_HEAD_PUNCT] / n_rows[1]);
        s[QKV_HEAD_UNIFORM] = (float)(a[QKV_HEAD_UNIFORM] / n_rows[1]);
        s[QKV_HEAD_INDUCTION] = (float)a[QKV_HEAD_INDUCTION];
        unsigned t = 0;
        if (s[QKV_HEAD_PREV] >= QKV_HEAD_PREV_MIN) t |= 1u << QKV_HEAD_PREV;
        if (out->has_induction && s[QKV_HEAD_INDUCTION] >= QKV_HEAD_INDUCTION_MIN) t |= 1u << QKV_HEAD_INDUCTION;
        if (s[QKV_HEAD_SINK] >= QKV_HEAD_SINK_MIN) t |= 1u << QKV_HEAD_SINK;
        if (s[QKV_HEAD_SELF] >= QKV_HEAD_SELF_MIN) t |= 1u << QKV_HEAD_SELF;
        if (s[QKV_HEAD_PUNCT] >= QKV_HEAD_PUNCT_MIN && s[QKV_HEAD_PUNCT] >= QKV_HEAD_PUNCT_RATIO * out->punct_base)
            t |= 1u << QKV_HEAD_PUNCT;
        if (s[QKV_HEAD_UNIFORM] >= QKV_HEAD_UNIFORM_MIN) t |= 1u << QKV_HEAD_UNIFORM;
        out->tags[lh] = t;
    }
done:
    free(ids);
    free(pool);
    free(acc);
    free(punct);
    if (st) qkv_head_scores_free(out);
    return st;
}
