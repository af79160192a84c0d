/*
 * cmd_generate.c -- `qkv generate`: text continuation with a KV cache, streamed to stdout.
 *
 *   qkv generate [--model DIR] (--prompt "..." | --ids 1,2,3) [--max-tokens N]
 *                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--bf16] [--q8] [--ids-out]
 *                [--stats] [--attn-timeline FILE [--attn-heads all|L.H,...]
 *                [--attn-format f16|topk] [--attn-topk K]]
 *
 * --attn-timeline writes the attention of every generated token (qkv_model_attn_timeline):
 * for each step, the chosen heads' rows over everything before, as float16 (base64) or as
 * the top-k keys per head, in a JSON file; the size is printed.
 */
#include "cli.h"
#include "cli/interp.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qkv generate [--model DIR] --prompt \"...\" [--max-tokens N] [--temperature T]\n"
            "                    [--top-k K] [--top-p P] [--seed S] [--bf16] [--q8] [--ids-out] [--stats]\n"
            "\n"
            "Continues the prompt, printing the continuation as it is generated. Stops at <|endoftext|>,\n"
            "after N tokens (default 64) or when the context is full.\n"
            "  --temperature T  0 = greedy (the most likely token every time); default 1\n"
            "  --top-k K        sample among the K most likely tokens (0 = off, default)\n"
            "  --top-p P        sample among the most likely tokens whose mass reaches P (1 = off)\n"
            "  --seed S         random seed (default 0): the same seed gives the same text\n"
            "  --ids 1,2,3      start from token ids instead of --prompt\n"
            "  --bf16           generate with BF16 copies of the weights (about 2x faster)\n"
            "  --q8             generate with Q8_0 copies (llama.cpp's int8 blocks: about 1/4 of F32's\n"
            "                   bytes; logits within about 3%% of their spread of F32's)\n"
            "  --ids-out        print the generated ids as a JSON array instead of text\n"
            "  --stats          print tokens/s to stderr\n"
            "  --attn-timeline FILE  write the attention of every generated token (JSON): step t's\n"
            "                   query (the position that chose token t) over every token before\n"
            "  --attn-heads H   all (default) or LAYER.HEAD,... : which heads to keep\n"
            "  --attn-format F  f16 (default): each row as float16, base64; topk: the K largest\n"
            "                   weights per head as [key, weight] pairs\n"
            "  --attn-topk K    keys per head for --attn-format topk (default 8)\n"
            "  --threads N      compute threads (default: all cores, or $QKV_THREADS)\n"
            "DIR defaults to the built-in model ($QKV_MODEL overrides).\n");
}

typedef struct {
    qkv_tokenizer *tok;
    int ids_out, count;
} stream_state;

/* Streams each token's bytes as they come (a character split over tokens comes out whole
 * once its last byte arrives: the terminal sees the same bytes either way). */
static int on_token(void *user, int id) {
    stream_state *s = user;
    if (s->ids_out) {
        printf("%s%d", s->count ? "," : "[", id);
    } else {
        const char *b;
        size_t len;
        if (s->tok && !qkv_tokenizer_token_bytes(s->tok, id, &b, &len)) fwrite(b, 1, len, stdout);
    }
    s->count++;
    fflush(stdout);
    return 0;
}

/* ---- the attention timeline file ---------------------------------------------------------- */

/* float32 -> IEEE half, round to nearest even (weights are in [0, 1]: no overflow). */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (mag < 0x38800000u) { /* subnormal half (or zero) */
        if (mag < 0x33000000u) return (uint16_t)sign;
        uint32_t e = mag >> 23, m = (mag & 0x7fffffu) | 0x800000u;
        int shift = (int)(126 - e) + 14; /* 14..24 */
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((mag - 0x38000000u) >> 13), rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static char *base64(const unsigned char *b, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* "all" or "L.H,..." -> head indices l * H + h (malloc'ed); -1 on a bad list. */
static int parse_heads(const char *s, int L, int H, int **sel, int *n_sel) {
    *sel = malloc(sizeof(int) * (size_t)L * H);
    *n_sel = 0;
    if (!*sel) return -1;
    if (!strcmp(s, "all")) {
        for (int i = 0; i < L * H; i++) (*sel)[(*n_sel)++] = i;
        return 0;
    }
    const char *p = s;
    while (*p) {
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || *end != '.') return -1;
        p = end + 1;
        long h = strtol(p, &end, 10);
        if (end == p || l < 0 || l >= L || h < 0 || h >= H || *n_sel >= L * H) return -1;
        (*sel)[(*n_sel)++] = (int)(l * H + h);
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return *n_sel ? 0 : -1;
}

/* Writes the timeline JSON; *bytes gets the size of the attention payload. */
static qkv_status write_timeline(const char *path, qkv_model *model, const int *ids, int n_prompt,
                                 int n_gen, const int *sel, int n_sel, int topk, size_t *bytes) {
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    int N = n_prompt + n_gen - 1, H = cfg->n_head;
    float *rows = malloc(sizeof(float) * (size_t)n_gen * n_sel * N);
    uint16_t *half = malloc(sizeof(uint16_t) * (size_t)n_sel * N);
    if (!rows || !half) {
        free(rows);
        free(half);
        return qkv__fail(QKV_ENOMEM, "attention timeline: out of memory");
    }
    qkv_status st = qkv_model_attn_timeline(model, ids, n_prompt, n_gen, sel, n_sel, rows);
    if (st) {
        free(rows);
        free(half);
        return st;
    }
    json_t *root = json_object(), *jp = json_array(), *jg = json_array(), *jpt = json_array(),
           *jgt = json_array(), *jh = json_array(), *steps = json_array();
    for (int i = 0; i < n_prompt; i++) {
        json_array_append_new(jp, json_integer(ids[i]));
        json_array_append_new(jpt, qkv__cli_token_json(tok, ids[i]));
    }
    for (int t = 0; t < n_gen; t++) {
        json_array_append_new(jg, json_integer(ids[n_prompt + t]));
        json_array_append_new(jgt, qkv__cli_token_json(tok, ids[n_prompt + t]));
    }
    for (int k = 0; k < n_sel; k++) json_array_append_new(jh, json_pack("[ii]", sel[k] / H, sel[k] % H));
    *bytes = 0;
    for (int t = 0; t < n_gen; t++) {
        int keys = n_prompt + t; /* the step's query sees keys 0 .. n_prompt - 1 + t */
        const float *r = rows + (size_t)t * n_sel * N;
        if (topk > 0) {
            json_t *step = json_array();
            int k_eff = topk < keys ? topk : keys;
            for (int k = 0; k < n_sel; k++) {
                const float *w = r + (size_t)k * N;
                json_t *hd = json_array();
                int *best = malloc(sizeof(int) * (size_t)k_eff);
                int nb = 0;
                for (int j = 0; best && j < keys; j++) { /* insertion into the k largest */
                    if (nb == k_eff && !(w[j] > w[best[k_eff - 1]])) continue;
                    int at = nb < k_eff ? nb++ : k_eff - 1;
                    while (at > 0 && w[j] > w[best[at - 1]]) {
                        best[at] = best[at - 1];
                        at--;
                    }
                    best[at] = j;
                }
                for (int b = 0; b < nb; b++) json_array_append_new(hd, json_pack("[if]", best[b], (double)w[best[b]]));
                free(best);
                json_array_append_new(step, hd);
                *bytes += (size_t)nb * 6; /* a 16-bit key and a float32 weight each */
            }
            json_array_append_new(steps, step);
        } else {
            for (int k = 0; k < n_sel; k++)
                for (int j = 0; j < keys; j++) half[(size_t)k * keys + j] = f32_to_f16(r[(size_t)k * N + j]);
            size_t nb = sizeof(uint16_t) * (size_t)n_sel * keys;
            char *b64 = base64((const unsigned char *)half, nb); /* little-endian hosts only */
            json_array_append_new(steps, b64 ? json_string(b64) : json_null());
            free(b64);
            *bytes += nb;
        }
    }
    json_object_set_new(root, "model", json_string(qkv_model_name(model)));
    json_object_set_new(root, "n_layer", json_integer(cfg->n_layer));
    json_object_set_new(root, "n_head", json_integer(H));
    json_object_set_new(root, "prompt_ids", jp);
    json_object_set_new(root, "prompt_tokens", jpt);
    json_object_set_new(root, "ids", jg);
    json_object_set_new(root, "tokens", jgt);
    json_object_set_new(root, "heads", jh);
    json_object_set_new(root, "query", json_string("step t: the position n_prompt - 1 + t, whose logits chose token t"));
    json_object_set_new(root, "format", json_string(topk > 0 ? "topk" : "f16"));
    if (topk > 0) json_object_set_new(root, "topk", json_integer(topk));
    json_object_set_new(root, "layout", json_string(topk > 0 ? "steps[t][head] = [[key, weight], ...], largest first"
                                                             : "steps[t] = base64 of float16 little-endian [heads][n_prompt + t]"));
    json_object_set_new(root, "payload_bytes", json_integer((json_int_t)*bytes));
    json_object_set_new(root, "steps", steps);
    int bad = json_dump_file(root, path, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    free(rows);
    free(half);
    if (bad) return qkv__fail(QKV_EIO, "%s: cannot write the attention timeline", path);
    return QKV_OK;
}

int qkv__cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *ids_arg = NULL;
    long max_tokens = 64, top_k = 0, threads = 0;
    unsigned long long seed = 0;
    float temperature = 1.0f, top_p = 1.0f;
    int bf16 = 0, q8 = 0, ids_out = 0, stats = 0, attn_topk = 0;
    const char *timeline = NULL, *attn_heads = "all", *attn_format = "f16";
    long attn_k = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--prompt") && has) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--ids") && has) {
            ids_arg = argv[++i];
        } else if (!strcmp(a, "--max-tokens") && has) {
            if (qkv__cli_read_long(argv[++i], 0, 1 << 20, &max_tokens))
                return qkv__cli_usage_error("generate", "--max-tokens must be an integer in [0, 1048576]");
        } else if (!strcmp(a, "--temperature") && has) {
            const char *v = argv[++i];
            if (qkv__cli_read_float(v, &temperature) || !(temperature >= 0.0f) || temperature > 1e6f)
                return qkv__cli_usage_error("generate", "--temperature must be a number in [0, 1e6] (0: greedy; got '%s')", v);
        } else if (!strcmp(a, "--top-k") && has) {
            const char *v = argv[++i];
            if (qkv__cli_read_long(v, 0, 1 << 24, &top_k))
                return qkv__cli_usage_error("generate", "--top-k must be an integer in [0, 16777216] (0: off; got '%s')", v);
        } else if (!strcmp(a, "--top-p") && has) {
            const char *v = argv[++i];
            if (qkv__cli_read_float(v, &top_p) || !(top_p > 0.0f && top_p <= 1.0f))
                return qkv__cli_usage_error("generate", "--top-p must be a number in (0, 1] (got '%s')", v);
        } else if (!strcmp(a, "--seed") && has) {
            char *end;
            const char *s = argv[++i];
            errno = 0;
            seed = strtoull(s, &end, 10);
            if (*s == '\0' || *s == '-' || *end || errno)
                return qkv__cli_usage_error("generate", "--seed must be a non-negative integer");
        } else if (!strcmp(a, "--threads") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &threads))
                return qkv__cli_usage_error("generate", "--threads must be in [1, 1024]");
            qkv_set_threads((int)threads);
        } else if (!strcmp(a, "--attn-timeline") && has) {
            timeline = argv[++i];
        } else if (!strcmp(a, "--attn-heads") && has) {
            attn_heads = argv[++i];
        } else if (!strcmp(a, "--attn-format") && has) {
            attn_format = argv[++i];
            if (strcmp(attn_format, "f16") && strcmp(attn_format, "topk"))
                return qkv__cli_usage_error("generate", "--attn-format must be f16 or topk");
        } else if (!strcmp(a, "--attn-topk") && has) {
            if (qkv__cli_read_long(argv[++i], 1, 1024, &attn_k))
                return qkv__cli_usage_error("generate", "--attn-topk must be in [1, 1024]");
        } else if (!strcmp(a, "--bf16")) {
            bf16 = 1;
        } else if (!strcmp(a, "--q8")) {
            q8 = 1;
        } else if (!strcmp(a, "--ids-out")) {
            ids_out = 1;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else {
            usage(stderr);
            return qkv__cli_usage_error("generate", "unknown or incomplete option '%s'", a);
        }
    }
    if (!!prompt == !!ids_arg) {
        usage(stderr);
        return qkv__cli_usage_error("generate", "give exactly one of --prompt and --ids");
    }
    if (!model_dir) model_dir = qkv__cli_default_model();
    attn_topk = !strcmp(attn_format, "topk") ? (int)attn_k : 0;

    qkv_model *model = NULL;
    qkv_status st = qkv__cli_load_model(model_dir, &model);
    if (st) return qkv__cli_fail("generate", st);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    const qkv_model_config *cfg = qkv_model_get_config(model);
    int *ids = NULL, *out = NULL, n = 0, n_out = 0, rc = 0, *sel = NULL, n_sel = 0;
    if (timeline && parse_heads(attn_heads, cfg->n_layer, cfg->n_head, &sel, &n_sel)) {
        int L = cfg->n_layer, H = cfg->n_head; /* cfg belongs to the model, freed next */
        free(sel);
        qkv_model_free(model);
        return qkv__cli_usage_error("generate", "--attn-heads wants all or LAYER.HEAD,... with layers in "
                                    "[0, %d) and heads in [0, %d)", L, H);
    }
    if (prompt) {
        if (!tok) {
            qkv_model_free(model);
            return qkv__cli_usage_error("generate", "%s has no tokenizer (give --tokenizer FILE, or use --ids)",
                                        model_dir);
        }
        size_t nn = 0;
        /* with the tokenizer's own specials: BOS for Llama-family tokenizers and llama2.c
         * (run.c starts from BOS), nothing for GPT-2's */
        if ((st = qkv_tokenizer_encode_ex(tok, prompt, strlen(prompt), QKV_ENCODE_ADD_SPECIAL, &ids, &nn)))
            goto fail;
        if (nn > (size_t)cfg->n_ctx) {
            st = qkv__fail(QKV_ETOOLONG, "the prompt is %zu tokens, more than the model's context of %d",
                           nn, cfg->n_ctx);
            goto fail;
        }
        n = (int)nn;
    } else {
        /* "1,2,3" */
        size_t cap = 16;
        ids = malloc(cap * sizeof *ids);
        const char *p = ids_arg;
        while (ids && *p) {
            while (*p == ',' || *p == ' ') p++;
            if (!*p) break;
            long v;
            char *end;
            errno = 0;
            v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > 0x7fffffffL) {
                free(ids);
                qkv_model_free(model);
                return qkv__cli_usage_error("generate", "--ids wants numbers separated by commas");
            }
            if ((size_t)n == cap) {
                cap *= 2;
                int *nv = realloc(ids, cap * sizeof *ids);
                if (!nv) break;
                ids = nv;
            }
            ids[n++] = (int)v;
            p = end;
        }
        if (!ids) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (n == 0) {
        st = qkv__fail(QKV_EINVAL, "the prompt is empty (no tokens)");
        goto fail;
    }
    if (bf16 && (st = qkv_model_use_bf16(model, 1))) goto fail;
    if (q8 && (st = qkv_model_use_q8(model, 1))) goto fail;
    out = malloc(sizeof(int) * (size_t)(max_tokens > 0 ? max_tokens : 1));
    if (!out) {
        st = qkv__fail(QKV_ENOMEM, "out of memory");
        goto fail;
    }
    if (!tok && !ids_out) ids_out = 1; /* no tokenizer: ids are all we can print */
    stream_state ss = {.tok = tok, .ids_out = ids_out, .count = 0};
    qkv_sampler sampler = {.temperature = temperature, .top_k = (int)top_k, .top_p = top_p,
                           .seed = (uint64_t)seed};
    double t0 = qkv__now();
    st = qkv_model_generate(model, ids, n, (int)max_tokens, &sampler, on_token, &ss, out, &n_out);
    double dt = qkv__now() - t0;
    if (ids_out) printf("%s]\n", ss.count ? "" : "[");
    else printf("\n");
    fflush(stdout);
    if (st) goto fail;
    if (stats)
        fprintf(stderr, "qkv generate: %d prompt tokens, %d generated in %.3f s (%.1f tokens/s)\n", n,
                n_out, dt, dt > 0 ? n_out / dt : 0.0);
    if (timeline && n_out > 0) {
        int *all = malloc(sizeof(int) * (size_t)(n + n_out));
        if (!all) {
            st = qkv__fail(QKV_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(all, ids, sizeof(int) * (size_t)n);
        memcpy(all + n, out, sizeof(int) * (size_t)n_out);
        size_t bytes = 0;
        st = write_timeline(timeline, model, all, n, n_out, sel, n_sel, attn_topk, &bytes);
        free(all);
        if (st) goto fail;
        fprintf(stderr, "qkv generate: attention timeline of %d tokens x %d heads (%s) -> %s: %zu bytes "
                "of attention (%.1f KB)\n", n_out, n_sel, attn_topk ? "top-k keys per head" : "float16 rows",
                timeline, bytes, bytes / 1024.0);
    } else if (timeline) {
        fprintf(stderr, "qkv generate: no token generated: no attention timeline written\n");
    }
    goto done;
fail:
    rc = qkv__cli_fail("generate", st);
done:
    free(ids);
    free(out);
    free(sel);
    qkv_model_free(model);
    return rc;
}
