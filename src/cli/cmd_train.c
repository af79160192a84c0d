/*
 * cmd_train.c -- `qkv train`: train a GPT-2-style model from scratch on a text corpus.
 *
 *   qkv train --data corpus.txt --out DIR [--vocab DIR] [--layers L --heads H --embd C --ctx T]
 *             [--steps N | --minutes M] [--batch B] [--lr X] [--seed S] [--resume]
 *
 * A progress bar on a terminal (plain lines otherwise); Ctrl-C saves a checkpoint and exits,
 * and `--resume` continues from it exactly.
 */
#include "cli.h"
#include "train_cli.h"
#include "viz/viz_internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared helpers (train_cli.h) ----------------------------------------------------- */

void qkv__cli_blas_reexec(const char *prefix, int argc, char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("QKV_NO_REEXEC")) return;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2")) core = "Haswell";
    if (!core) return;
    char **nargv = calloc((size_t)argc + 3, sizeof *nargv);
    if (!nargv) return;
    int k = 0;
    nargv[k++] = (char *)"qkv";
    if (prefix) nargv[k++] = (char *)prefix;
    for (int i = 0; i < argc; i++) nargv[k++] = argv[i];
    nargv[k] = NULL;
    setenv("OPENBLAS_CORETYPE", core, 1);
    /* idle OpenMP workers sleep instead of spinning: on a shared machine a spinning worker
     * takes the core its partner (or another job) needs */
    if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "passive", 1);
    fflush(stdout);
    fflush(stderr);
    execv("/proc/self/exe", nargv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the default kernel */
    free(nargv);
}

int qkv__cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        qkv__cli_usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int qkv__cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                         double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) {
        qkv__cli_usage_error(cmd, "%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

/* ---- progress ------------------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends at once */
}

typedef struct progress {
    int tty, print_every, bar_open;
    float last_val;
} progress;

static void hms(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

static void status_line(progress *pr, const qkv_train_progress *p, char *line, size_t n) {
    char el[32], left[32], val[32] = "";
    hms(p->elapsed_s, el, sizeof el);
    hms(p->remaining_s, left, sizeof left);
    if (!isnan(pr->last_val)) snprintf(val, sizeof val, " val %.4f", pr->last_val);
    snprintf(line, n, "step %*d/%d  loss %.4f%s  lr %.2e  %.0f tok/s  %s elapsed  %s left",
             p->steps >= 10000 ? 5 : 4, p->step, p->steps, p->loss, val, p->lr, p->tokens_per_s, el,
             left);
}

static int on_progress(void *user, const qkv_train_progress *p) {
    progress *pr = user;
    char line[256];
    switch (p->event) {
    case QKV_TRAIN_INFO:
    case QKV_TRAIN_SAVE:
    case QKV_TRAIN_DONE:
        if (pr->bar_open) {
            printf("\n");
            pr->bar_open = 0;
        }
        if (p->event == QKV_TRAIN_SAVE) printf("checkpoint: step %d -> %s\n", p->step, p->message);
        else printf("%s\n", p->message);
        break;
    case QKV_TRAIN_EVAL:
        pr->last_val = p->val_loss;
        /* fallthrough */
    case QKV_TRAIN_STEP:
        status_line(pr, p, line, sizeof line);
        if (pr->tty) {
            int width = 24, fill = p->steps ? (int)((long long)width * p->step / p->steps) : 0;
            char bar[32];
            for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
            bar[width] = '\0';
            printf("\r[%s] %s\033[K", bar, line);
            pr->bar_open = 1;
        } else if (p->event == QKV_TRAIN_EVAL || p->step % pr->print_every == 0 || p->step == 1 ||
                   p->step == p->steps) {
            printf("%s%s\n", p->event == QKV_TRAIN_EVAL ? "eval " : "     ", line);
        }
        break;
    }
    fflush(stdout);
    return interrupted != 0;
}

/* ---- the command --------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
        "usage: qkv train --data CORPUS.txt --out DIR [options]\n"
        "\n"
        "Trains a GPT-2-style or Llama-style model from scratch. DIR receives the checkpoint in the Hugging Face\n"
        "layout (config.json, model.safetensors, vocab.json, merges.txt: it opens in every qkv\n"
        "command and in PyTorch), optimizer.bin (to resume exactly), tokens.bin (the corpus\n"
        "tokenised once), train_log.csv, loss.svg, loss.png and eval.json. Ctrl-C saves and exits.\n"
        "\n"
        "data:\n"
        "  --data FILE         UTF-8 corpus, or a tokens.bin written by an earlier run\n"
        "  --val FILE          held-out text for validation (default: the last --val-fraction)\n"
        "  --val-fraction F    default 0.05\n"
        "  --vocab DIR         use DIR/vocab.json + merges.txt (e.g. GPT-2's)\n"
        "  --vocab-size N      else train a byte-level BPE of N tokens on the corpus (4096)\n"
        "model (ignored with --resume / --init):\n"
        "  --layers L --heads H --embd C --ctx T    default 4, 4, 256, 256\n"
        "  --pos-init KIND     wpe starts as normal (GPT-2, N(0, 0.02)) or sinusoid (sine/cosine\n"
        "                      position code, then trained)\n"
        "  --arch gpt2|llama   GPT-2 (LayerNorm, GELU, learned positions, biases) or a Llama-style\n"
        "                      model (RMSNorm, SwiGLU, RoPE, no biases; opens in Hugging Face)\n"
        "  --kv-heads N        llama: key/value heads (GQA; default = --heads)\n"
        "  --ff N              MLP width (default 4C; llama 8C/3 rounded up to 32)\n"
        "  --rope-theta X      llama: RoPE base (10000); --qk-norm: Qwen3's QK-norm\n"
        "  --init DIR          start from this model's weights (e.g. to compare with PyTorch)\n"
        "schedule:\n"
        "  --steps N           optimizer steps; the cosine schedule ends here (1000)\n"
        "  --minutes M         stop (and save) after M minutes of wall time\n"
        "  --stop-after N      stop (and save) after N steps of this call; --resume goes on\n"
        "  --batch B           sequences per micro-batch (8)\n"
        "  --accum K           micro-batches per step (gradient accumulation, 1)\n"
        "  --lr X              peak learning rate (1e-3); --min-lr-frac F final/peak (0.1)\n"
        "  --warmup N          linear warm-up steps (steps/20)\n"
        "  --weight-decay X    AdamW decay on matrices (0.1); --beta1, --beta2 (0.9, 0.95)\n"
        "  --dropout P         residual dropout on embeddings, attention and MLP outputs (0)\n"
        "  --clip X            gradient global-norm clip (1.0; 0 = off)\n"
        "  --seed S            initialisation and batch order (1337)\n"
        "  --sequential        consecutive windows instead of random ones\n"
        "  --eval-every N      validation loss every N steps (100); --eval-batches K (8)\n"
        "  --save-every N      checkpoint every N steps (500; always at the end)\n"
        "  --no-final-eval     skip the final pass over the whole validation split\n"
        "  --export DIR        also copy the model, vocabulary, log and curve to DIR at each save\n"
        "  --resume            continue DIR's last checkpoint exactly\n"
        "  --threads N         compute threads (default: all cores or $QKV_THREADS)\n");
}

int qkv__cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    qkv_train_opts o;
    qkv_train_opts_init(&o);
    o.on_checkpoint = qkv__loss_curve_write; /* loss.svg and loss.png beside each checkpoint */
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--resume")) { o.resume = 1; continue; }
        if (!strcmp(a, "--sequential")) { o.sequential = 1; continue; }
        if (!strcmp(a, "--qk-norm")) { o.qk_norm = 1; continue; }
        if (!strcmp(a, "--no-final-eval")) { o.final_eval = 0; continue; }
        if (i + 1 >= argc || strncmp(a, "--", 2)) {
            usage(stderr);
            return qkv__cli_usage_error(cmd, strncmp(a, "--", 2) ? "unexpected argument '%s'"
                                                                 : "%s needs a value", a);
        }
        const char *v = argv[++i];
        double d;
        int rc = 0;
        if (!strcmp(a, "--data")) o.data = v;
        else if (!strcmp(a, "--val")) o.val_data = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--vocab")) o.vocab_dir = v;
        else if (!strcmp(a, "--init")) o.init_dir = v;
        else if (!strcmp(a, "--pos-init")) {
            if (!strcmp(v, "sinusoid")) o.sinusoid_wpe = 1;
            else if (!strcmp(v, "normal")) o.sinusoid_wpe = 0;
            else return qkv__cli_usage_error(cmd, "--pos-init: '%s' is not normal or sinusoid", v);
        }
        else if (!strcmp(a, "--export")) o.export_dir = v;
        else if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--kv-heads")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1024, &o.n_kv_head);
        else if (!strcmp(a, "--ff")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1 << 20, &o.n_ff);
        else if (!strcmp(a, "--rope-theta")) rc = qkv__cli_parse_float(cmd, a, v, 2.0, 1e9, &d), o.rope_theta = (float)d;
        else if (!strcmp(a, "--vocab-size")) rc = qkv__cli_parse_int(cmd, a, v, 257, 262144, &o.vocab_size);
        else if (!strcmp(a, "--layers")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1024, &o.n_layer);
        else if (!strcmp(a, "--heads")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1024, &o.n_head);
        else if (!strcmp(a, "--embd")) rc = qkv__cli_parse_int(cmd, a, v, 1, 65536, &o.n_embd);
        else if (!strcmp(a, "--ctx")) {
            rc = qkv__cli_parse_int(cmd, a, v, -1000000000, 1000000000, &o.n_ctx);
            if (!rc && o.n_ctx < 1)
                return qkv__cli_usage_error(cmd, "--ctx %d: the context must be at least 1 token", o.n_ctx);
        }
        else if (!strcmp(a, "--steps")) rc = qkv__cli_parse_int(cmd, a, v, 1, 100000000, &o.steps);
        else if (!strcmp(a, "--minutes")) rc = qkv__cli_parse_float(cmd, a, v, 0.0, 1e7, &o.minutes);
        else if (!strcmp(a, "--batch")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1 << 20, &o.batch);
        else if (!strcmp(a, "--accum")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1 << 20, &o.accum);
        else if (!strcmp(a, "--stop-after")) rc = qkv__cli_parse_int(cmd, a, v, 0, 100000000, &o.stop_after);
        else if (!strcmp(a, "--warmup")) rc = qkv__cli_parse_int(cmd, a, v, 0, 100000000, &o.warmup);
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end || errno || *v == '-') return qkv__cli_usage_error(cmd, "--seed: '%s' is not a non-negative integer", v);
            o.seed = s;
        }
        else if (!strcmp(a, "--eval-every")) rc = qkv__cli_parse_int(cmd, a, v, 0, 100000000, &o.eval_every);
        else if (!strcmp(a, "--eval-batches")) rc = qkv__cli_parse_int(cmd, a, v, 1, 1000000, &o.eval_batches);
        else if (!strcmp(a, "--save-every")) rc = qkv__cli_parse_int(cmd, a, v, 0, 100000000, &o.save_every);
        else if (!strcmp(a, "--threads")) rc = qkv__cli_parse_int(cmd, a, v, 1, 4096, &threads);
        else if (!strcmp(a, "--lr")) { rc = qkv__cli_parse_float(cmd, a, v, 1e-12, 10.0, &d); o.lr = (float)d; }
        else if (!strcmp(a, "--min-lr-frac")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 1.0, &d); o.min_lr_frac = (float)d; }
        else if (!strcmp(a, "--weight-decay")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 10.0, &d); o.weight_decay = (float)d; }
        else if (!strcmp(a, "--beta1")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 0.999999, &d); o.beta1 = (float)d; }
        else if (!strcmp(a, "--beta2")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 0.999999, &d); o.beta2 = (float)d; }
        else if (!strcmp(a, "--dropout")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 0.95, &d); o.dropout = (float)d; }
        else if (!strcmp(a, "--clip")) { rc = qkv__cli_parse_float(cmd, a, v, 0.0, 1e6, &d); o.grad_clip = (float)d; }
        else if (!strcmp(a, "--val-fraction")) { rc = qkv__cli_parse_float(cmd, a, v, 1e-6, 0.49, &d); o.val_fraction = (float)d; }
        else {
            usage(stderr);
            return qkv__cli_usage_error(cmd, "unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!o.data || !o.out_dir) {
        usage(stderr);
        return qkv__cli_usage_error(cmd, "--data and --out are required");
    }
    qkv__cli_blas_reexec(NULL, argc, argv);
    if (threads) qkv_set_threads(threads);
    progress pr = {isatty(STDOUT_FILENO), o.steps >= 50 ? o.steps / 50 : 1, 0, NAN};
    o.callback = on_progress;
    o.user = &pr;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    qkv_status st = qkv_train(&o);
    if (pr.bar_open) printf("\n");
    if (st) return qkv__cli_fail(cmd, st);
    if (interrupted) {
        printf("interrupted: checkpoint saved in %s; continue with the same command and --resume\n",
               o.out_dir);
        return 130;
    }
    return 0;
}
