/*
 * cmd_attend.c -- `qkv attend`: draw one sentence's attention.
 *
 *   qkv attend [--model DIR] "sentence" [--layer L|all] [--head H|all|avg] [--query I]
 *              [--format ansi|json|csv|svg|png] [--out FILE] [--temperature T] [--no-causal]
 *
 * Runs the model once with attention capture and hands the maps to the renderers in
 * src/viz (qkv_viz_*): a colour heatmap in the terminal (all heads of a layer, one head,
 * their mean, or one query's row as bars), or JSON / CSV / SVG / PNG files. The numbers
 * are the ones `qkv forward --attn` writes for the same text. docs/VIEWS.md shows each.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CMD "attend"
#define MAX_SENTENCE_BYTES (1u << 20) /* a sentence, not a book: stdin beyond this is refused */
#define MAX_HEAD_LIST 64

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: qkv attend [--model DIR] [options] \"sentence\"      (\"-\": read stdin)\n"
        "\n"
        "Draws the attention of a sentence: in the terminal as a colour heatmap with token\n"
        "labels, or as JSON / CSV / SVG / PNG.\n"
        "  --layer L|all      layer to draw (default 0; JSON/CSV: every layer unless given)\n"
        "  --head H|all|avg   one head, every head as small multiples (default), their mean,\n"
        "                     or a list: --head 0,1,2,avg (the lessons' three heads + average)\n"
        "  --avg              same as --head avg\n"
        "  --query I          one query token's weights as bars with numbers (-1 = last token)\n"
        "  --format F         ansi (default) | json | csv | svg | png  (else from --out's suffix)\n"
        "  --out FILE         write to FILE instead of stdout ('-': stdout)\n"
        "  --temperature T    attention temperature, the focus dial (default 1: as trained)\n"
        "  --no-causal        let every token see every token (not how the model was trained)\n"
        "  --ignore-first     leave out the first token (the \"attention sink\"), renormalise rows\n"
        "  --color WHEN       auto (default) | always | never | 256 | truecolor; NO_COLOR is "
        "honoured\n"
        "  --width N          terminal columns (default: $COLUMNS, the terminal, else 80)\n"
        "  --scale S          fixed (0..1, default) | max (0..the largest weight shown)\n"
        "  --top K            next-token predictions shown (default 5, 0 = none)\n"
        "  --png / --svg / --json / --csv   shorthands for --format\n"
        "DIR defaults to the built-in model ($QKV_MODEL overrides). Token pieces are shown with\n"
        "spaces as '\xC2\xB7', newlines as '\xE2\x86\xB5', and unprintable or partial UTF-8 bytes "
        "as \\xNN.\n");
}

enum { FMT_ANSI, FMT_JSON, FMT_CSV, FMT_SVG, FMT_PNG, FMT_UNSET };

static int parse_format(const char *s) {
    if (!strcmp(s, "ansi") || !strcmp(s, "term") || !strcmp(s, "terminal"))
        return FMT_ANSI;
    if (!strcmp(s, "json"))
        return FMT_JSON;
    if (!strcmp(s, "csv"))
        return FMT_CSV;
    if (!strcmp(s, "svg"))
        return FMT_SVG;
    if (!strcmp(s, "png"))
        return FMT_PNG;
    return -1;
}

static int format_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/'))
        return FMT_UNSET;
    int f = parse_format(dot + 1);
    return f < 0 || f == FMT_ANSI ? FMT_UNSET : f;
}

/* Strict integer parse: the whole string, within [lo, hi]. */
/* Reads stdin (at most MAX_SENTENCE_BYTES) into a malloc'ed NUL-terminated buffer. */
static qkv_status read_stdin(char **text, size_t *len) {
    /* + 1: a trailing newline from `echo` is not part of the sentence */
    qkv_status st = qkv__read_stream(stdin, MAX_SENTENCE_BYTES + 1, "reading stdin", text, len);
    if (!st && *len && (*text)[*len - 1] == '\n')
        (*text)[--*len] = '\0';
    if (st == QKV_ETOOLONG || (!st && *len > MAX_SENTENCE_BYTES)) {
        free(*text);
        *text = NULL;
        return qkv__fail(QKV_ETOOLONG, "the sentence on stdin is longer than %u bytes",
                         MAX_SENTENCE_BYTES);
    }
    return st;
}

static int terminal_width(void) {
    const char *cols = getenv("COLUMNS");
    long w;
    if (cols && !qkv__cli_read_long(cols, 20, 10000, &w))
        return (int)w;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* --color WHEN -> the mode; to_tty: the output is a terminal. */
static int color_mode(const char *when, int to_tty, qkv_viz_color *mode) {
    const char *no_color = getenv("NO_COLOR");
    const char *ct = getenv("COLORTERM");
    qkv_viz_color best = ct && (strstr(ct, "truecolor") || strstr(ct, "24bit")) ? QKV_VIZ_COLOR_TRUE
                                                                                : QKV_VIZ_COLOR_256;
    if (!strcmp(when, "auto"))
        *mode = (no_color && *no_color) || !to_tty ? QKV_VIZ_COLOR_NONE : best;
    else if (!strcmp(when, "always"))
        *mode = best;
    else if (!strcmp(when, "never") || !strcmp(when, "none"))
        *mode = QKV_VIZ_COLOR_NONE;
    else if (!strcmp(when, "256"))
        *mode = QKV_VIZ_COLOR_256;
    else if (!strcmp(when, "truecolor") || !strcmp(when, "24bit"))
        *mode = QKV_VIZ_COLOR_TRUE;
    else
        return -1;
    return 0;
}

int qkv__cmd_attend(int argc, char **argv) {
    const char *model_dir = NULL, *sentence = NULL, *out_path = NULL, *color = "auto";
    const char *layer_arg = NULL, *head_arg = NULL, *query_arg = NULL;
    int format = FMT_UNSET, no_causal = 0, scale_max = 0, width = 0, drop_first = 0;
    long top_k = 5;
    float temperature = 1.0f;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--layer") && has) {
            layer_arg = argv[++i];
        } else if (!strcmp(a, "--head") && has) {
            head_arg = argv[++i];
        } else if (!strcmp(a, "--avg")) {
            head_arg = "avg";
        } else if (!strcmp(a, "--query") && has) {
            query_arg = argv[++i];
        } else if (!strcmp(a, "--format") && has) {
            if ((format = parse_format(argv[++i])) < 0)
                return qkv__cli_usage_error(CMD,
                                            "--format must be ansi, json, csv, svg or png "
                                            "(got '%s')",
                                            argv[i]);
        } else if (!strcmp(a, "--png") || !strcmp(a, "--svg") || !strcmp(a, "--json") ||
                   !strcmp(a, "--csv")) {
            format = parse_format(a + 2);
        } else if (!strcmp(a, "--out") && has) {
            out_path = argv[++i];
            if (!strcmp(out_path, "-")) out_path = NULL; /* standard output, the default */
        } else if (!strcmp(a, "--temperature") && has) {
            char *end;
            errno = 0;
            double t = strtod(argv[++i], &end);
            if (end == argv[i] || *end || errno || !(t >= 1e-6 && t <= 1e6))
                return qkv__cli_usage_error(CMD, "--temperature must be a number in [1e-6, 1e6] (got '%s')",
                                            argv[i]);
            temperature = (float)t;
        } else if (!strcmp(a, "--no-causal")) {
            no_causal = 1;
        } else if (!strcmp(a, "--ignore-first") || !strcmp(a, "--drop-first")) {
            drop_first = 1;
        } else if (!strcmp(a, "--color") && has) {
            color = argv[++i];
        } else if (!strcmp(a, "--width") && has) {
            long w;
            if (qkv__cli_read_long(argv[++i], 24, 10000, &w))
                return qkv__cli_usage_error(CMD,
                                            "--width must be an integer in [24, 10000] "
                                            "(got '%s')",
                                            argv[i]);
            width = (int)w;
        } else if (!strcmp(a, "--scale") && has) {
            const char *s = argv[++i];
            if (!strcmp(s, "max"))
                scale_max = 1;
            else if (!strcmp(s, "fixed"))
                scale_max = 0;
            else
                return qkv__cli_usage_error(CMD, "--scale must be fixed or max (got '%s')", s);
        } else if (!strcmp(a, "--top") && has) {
            if (qkv__cli_read_long(argv[++i], 0, 100, &top_k))
                return qkv__cli_usage_error(CMD, "--top must be an integer in [0, 100] (got '%s')",
                                            argv[i]);
        } else if (a[0] == '-' && a[1] != '\0') {
            if (!has && (!strcmp(a, "--model") || !strcmp(a, "--layer") || !strcmp(a, "--head") ||
                         !strcmp(a, "--query") || !strcmp(a, "--format") || !strcmp(a, "--out") ||
                         !strcmp(a, "--temperature") || !strcmp(a, "--color") ||
                         !strcmp(a, "--width") || !strcmp(a, "--scale") || !strcmp(a, "--top")))
                return qkv__cli_usage_error(CMD, "%s needs a value", a);
            usage(stderr);
            return qkv__cli_usage_error(CMD, "unknown option '%s'", a);
        } else {
            if (sentence)
                return qkv__cli_usage_error(CMD,
                                            "give the sentence as one argument (quote it): "
                                            "got '%s' after '%s'",
                                            a, sentence);
            sentence = a;
        }
    }
    if (!sentence) {
        usage(stderr);
        return qkv__cli_usage_error(CMD, "no sentence given");
    }
    qkv_viz_color cmode = QKV_VIZ_COLOR_NONE;
    if (format == FMT_UNSET)
        format = out_path ? format_from_path(out_path) : FMT_ANSI;
    if (format == FMT_UNSET)
        format = FMT_ANSI;
    int to_tty = out_path ? 0 : isatty(STDOUT_FILENO);
    if (color_mode(color, to_tty, &cmode))
        return qkv__cli_usage_error(CMD,
                                    "--color must be auto, always, never, 256 or truecolor "
                                    "(got '%s')",
                                    color);
    if (format == FMT_PNG && !out_path && to_tty)
        return qkv__cli_usage_error(CMD, "not writing a PNG to a terminal: use --out FILE.png");

    /* the view, before the model loads, for what can be checked without it */
    qkv_viz_view view;
    qkv_viz_view_init(&view);
    int data_format = format == FMT_JSON || format == FMT_CSV;
    view.layer = data_format ? QKV_VIZ_ALL : 0;
    long x;
    if (layer_arg) {
        if (!strcmp(layer_arg, "all"))
            view.layer = QKV_VIZ_ALL;
        else if (qkv__cli_read_long(layer_arg, 0, 1000000, &x))
            return qkv__cli_usage_error(CMD,
                                        "--layer must be a layer index >= 0 or 'all' "
                                        "(got '%s')",
                                        layer_arg);
        else
            view.layer = (int)x;
    }
    int head_list[MAX_HEAD_LIST], n_head_list = 0;
    if (head_arg && !strcmp(head_arg, "all")) {
        view.head = QKV_VIZ_ALL;
    } else if (head_arg) { /* "3", "avg", or a list such as "0,1,2,avg" */
        const char *p = head_arg;
        for (;;) {
            size_t len = strcspn(p, ",");
            char item[32];
            if (len == 0 || len >= sizeof item || n_head_list == MAX_HEAD_LIST)
                return qkv__cli_usage_error(CMD,
                                            "--head must be a head index >= 0, 'all', 'avg', "
                                            "or a list such as 0,1,2,avg (got '%s')",
                                            head_arg);
            memcpy(item, p, len);
            item[len] = '\0';
            if (!strcmp(item, "avg") || !strcmp(item, "mean"))
                head_list[n_head_list++] = QKV_VIZ_AVG;
            else if (qkv__cli_read_long(item, 0, 1000000, &x))
                return qkv__cli_usage_error(CMD,
                                            "--head must be a head index >= 0, 'all', 'avg', "
                                            "or a list such as 0,1,2,avg (got '%s')",
                                            head_arg);
            else
                head_list[n_head_list++] = (int)x;
            if (!p[len])
                break;
            p += len + 1;
        }
        if (n_head_list == 1) {
            view.head = head_list[0];
        } else {
            view.heads = head_list;
            view.n_heads = n_head_list;
        }
    }
    long query = -1000000000L;
    if (query_arg && qkv__cli_read_long(query_arg, -1000000, 1000000, &query))
        return qkv__cli_usage_error(CMD,
                                    "--query must be a token index (negative: from the "
                                    "end; got '%s')",
                                    query_arg);
    view.width = width > 0 ? width : terminal_width();
    view.color = cmode;
    view.vmax = scale_max ? -1.0f : 0.0f;
    view.drop_first = drop_first;

    /* the sentence */
    char *stdin_text = NULL;
    size_t text_len = 0;
    qkv_status st;
    if (!strcmp(sentence, "-")) {
        if ((st = read_stdin(&stdin_text, &text_len)))
            return qkv__cli_fail(CMD, st);
        sentence = stdin_text;
    } else {
        text_len = strlen(sentence);
        if (text_len > MAX_SENTENCE_BYTES) {
            return qkv__cli_usage_error(CMD, "the sentence is %zu bytes, more than %u", text_len,
                                        MAX_SENTENCE_BYTES);
        }
    }
    if (text_len == 0) {
        free(stdin_text);
        return qkv__cli_usage_error(CMD, "the sentence is empty: nothing to attend to");
    }

    int rc = 1;
    qkv_model *model = NULL;
    int *ids = NULL;
    size_t n_ids = 0;
    float *last_logits = NULL;
    const char **tok_bytes = NULL, **top_bytes = NULL;
    size_t *tok_len = NULL, *top_len = NULL;
    int *top_ids = NULL;
    float *top_probs = NULL;
    char *rendered = NULL;
    size_t rendered_len = 0;
    qkv_capture cap;
    memset(&cap, 0, sizeof cap);

    int default_model = !model_dir;
    if (!model_dir)
        model_dir = qkv__cli_default_model();
    if ((st = qkv__cli_load_model(model_dir, &model))) {
        fprintf(stderr, "qkv attend: error: cannot load the model '%s': %s\n", model_dir,
                *qkv_last_error() ? qkv_last_error() : qkv_strerror(st));
        if (default_model)
            fprintf(stderr, "qkv attend: (no --model given and the built-in model is not there; "
                            "pass --model DIR)\n");
        goto done;
    }
    const qkv_model_config *cfg = qkv_model_get_config(model);
    qkv_tokenizer *tok = qkv_model_tokenizer(model);
    if (!tok) {
        fprintf(stderr,
                "qkv attend: error: the model '%s' has no tokenizer (vocab.json and "
                "merges.txt): it cannot read text\n",
                model_dir);
        goto done;
    }
    if (view.layer >= cfg->n_layer) {
        fprintf(stderr,
                "qkv attend: error: --layer %d is out of range: the model has %d layers "
                "(0..%d)\n",
                view.layer, cfg->n_layer, cfg->n_layer - 1);
        rc = 2;
        goto done;
    }
    for (int k = -1; k < view.n_heads; k++) {
        int h = k < 0 ? view.head : view.heads[k];
        if (h >= cfg->n_head) {
            fprintf(stderr,
                    "qkv attend: error: --head %d is out of range: the model has %d heads "
                    "(0..%d)\n",
                    h, cfg->n_head, cfg->n_head - 1);
            rc = 2;
            goto done;
        }
    }
    if ((st = qkv_tokenizer_encode(tok, sentence, text_len, 0, &ids, &n_ids))) {
        rc = qkv__cli_fail(CMD, st);
        goto done;
    }
    if (n_ids == 0) {
        fprintf(stderr, "qkv attend: error: the sentence gives no tokens: nothing to attend to\n");
        rc = 2;
        goto done;
    }
    if (n_ids > (size_t)cfg->n_ctx) {
        fprintf(stderr,
                "qkv attend: error: the sentence is %zu tokens, more than the model's "
                "context of %d: shorten it\n",
                n_ids, cfg->n_ctx);
        rc = 2;
        goto done;
    }
    int n = (int)n_ids;
    if (query_arg) {
        if (query < -(long)n || query >= n) {
            fprintf(stderr,
                    "qkv attend: error: --query %ld is out of range: the sentence has %d "
                    "tokens (0..%d, or -1..-%d from the end)\n",
                    query, n, n - 1, n);
            rc = 2;
            goto done;
        }
        view.query = (int)(query < 0 ? query + n : query);
    }

    /* one forward pass, capturing the attention probabilities */
    qkv_forward_opts opts = {.attn_temperature = temperature, .no_causal_mask = no_causal};
    cap.want_probs = 1;
    int n_top = top_k < cfg->vocab_size ? (int)top_k : cfg->vocab_size;
    if (n_top > 0 && !(last_logits = malloc(sizeof(float) * (size_t)cfg->vocab_size))) {
        fprintf(stderr, "qkv attend: error: out of memory\n");
        goto done;
    }
    if ((st = qkv_model_forward(model, ids, n, &opts, NULL, last_logits, &cap))) {
        rc = qkv__cli_fail(CMD, st);
        goto done;
    }
    tok_bytes = calloc((size_t)n, sizeof *tok_bytes);
    tok_len = calloc((size_t)n, sizeof *tok_len);
    if (n_top > 0) {
        top_ids = calloc((size_t)n_top, sizeof *top_ids);
        top_probs = calloc((size_t)n_top, sizeof *top_probs);
        top_bytes = calloc((size_t)n_top, sizeof *top_bytes);
        top_len = calloc((size_t)n_top, sizeof *top_len);
    }
    if (!tok_bytes || !tok_len ||
        (n_top > 0 && (!top_ids || !top_probs || !top_bytes || !top_len))) {
        fprintf(stderr, "qkv attend: error: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++)
        if ((st = qkv_tokenizer_token_bytes(tok, ids[i], &tok_bytes[i], &tok_len[i]))) {
            rc = qkv__cli_fail(CMD, st);
            goto done;
        }
    if (n_top > 0) {
        if ((st = qkv_top_k(last_logits, cfg->vocab_size, n_top, top_ids, top_probs))) {
            rc = qkv__cli_fail(CMD, st);
            goto done;
        }
        for (int k = 0; k < n_top; k++)
            if (qkv_tokenizer_token_bytes(tok, top_ids[k], &top_bytes[k], &top_len[k])) {
                top_bytes[k] = ""; /* an id beyond the vocabulary files: show it empty */
                top_len[k] = 0;
            }
    }

    qkv_viz_data data;
    memset(&data, 0, sizeof data);
    data.n_tokens = n;
    data.token_bytes = tok_bytes;
    data.token_len = tok_len;
    data.ids = ids;
    data.n_layer = cap.n_layer;
    data.n_head = cap.n_head;
    data.attn = cap.probs;
    data.model_name = qkv_model_name(model);
    data.temperature = temperature;
    data.causal = !no_causal;
    data.n_top = n_top;
    data.top_ids = top_ids;
    data.top_probs = top_probs;
    data.top_bytes = top_bytes;
    data.top_len = top_len;

    switch (format) {
    case FMT_JSON:
        st = qkv_viz_json(&data, &view, &rendered, &rendered_len);
        break;
    case FMT_CSV:
        st = qkv_viz_csv(&data, &view, &rendered, &rendered_len);
        break;
    case FMT_SVG:
        st = qkv_viz_svg(&data, &view, &rendered, &rendered_len);
        break;
    case FMT_PNG:
        st = qkv_viz_png(&data, &view, &rendered, &rendered_len);
        break;
    default:
        st = qkv_viz_ansi(&data, &view, &rendered, &rendered_len);
        break;
    }
    if (st) {
        rc = qkv__cli_fail(CMD, st);
        goto done;
    }
    if (out_path) {
        if ((st = qkv__write_file(out_path, rendered, rendered_len))) {
            rc = qkv__cli_fail(CMD, st);
            goto done;
        }
    } else if (fwrite(rendered, 1, rendered_len, stdout) != rendered_len || fflush(stdout)) {
        fprintf(stderr, "qkv attend: error: writing to stdout: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(rendered);
    free(top_ids);
    free(top_probs);
    free(top_bytes);
    free(top_len);
    free(tok_bytes);
    free(tok_len);
    free(last_logits);
    qkv_capture_free(&cap);
    free(ids);
    qkv_model_free(model);
    free(stdin_text);
    return rc;
}
