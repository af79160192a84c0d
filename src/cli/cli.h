/* cli.h -- the qkv binary's subcommands and the few helpers they share. Only src/cli prints
 * and exits. Each command takes (argc, argv) with argv[0] the command's name and returns
 * the process exit status. */
#ifndef QKV_CLI_H
#define QKV_CLI_H

#include "qkv_internal.h"

int qkv__cmd_attention(int argc, char **argv); /* cmd_attention.c: engine on .npy files */
int qkv__cmd_bench(int argc, char **argv);     /* cmd_bench.c: bench attention|model|train|serve */
int qkv__cmd_tokenize(int argc, char **argv);  /* cmd_tokenize.c */
int qkv__cmd_vocab(int argc, char **argv);     /* cmd_vocab.c: train a BPE vocabulary */
int qkv__cmd_forward(int argc, char **argv);   /* cmd_forward.c */
int qkv__cmd_generate(int argc, char **argv);  /* cmd_generate.c */
int qkv__cmd_attend(int argc, char **argv);    /* cmd_attend.c: attention views ansi/json/csv/svg */
int qkv__cmd_serve(int argc, char **argv);     /* cmd_serve.c: the playground */
int qkv__cmd_train(int argc, char **argv);     /* cmd_train.c */
int qkv__cmd_grad(int argc, char **argv);      /* cmd_grad.c */
int qkv__cmd_heads(int argc, char **argv);     /* cmd_heads.c: what each head does (tags) */
int qkv__cmd_ablate(int argc, char **argv);    /* cmd_ablate.c: head ablation, the grid */
int qkv__cmd_patch(int argc, char **argv);     /* cmd_patch.c: activation patching maps */
int qkv__cmd_lens(int argc, char **argv);      /* cmd_lens.c: logit lens */

/* Benchmarks, one per area; `qkv bench NAME` runs one, `qkv bench` all. */
int qkv__bench_attention(int argc, char **argv); /* bench_attention.c */
int qkv__bench_model(int argc, char **argv);     /* bench_model.c */
int qkv__bench_train(int argc, char **argv);     /* bench_train.c */
int qkv__bench_serve(int argc, char **argv);     /* bench_serve.c */

/* Prints "qkv CMD: error: MESSAGE" (qkv_last_error(), else qkv_strerror(st)) to stderr and
 * returns the exit status 1. */
int qkv__cli_fail(const char *cmd, qkv_status st);
/* Prints "qkv CMD: error: ..." and returns 2 (usage errors). */
int qkv__cli_usage_error(const char *cmd, const char *fmt, ...) QKV__PRINTF(2, 3);

/* Option values: 0 on success, -1 if s is not a number in [lo, hi] (the whole string). */
int qkv__cli_read_long(const char *s, long lo, long hi, long *out);
int qkv__cli_read_float(const char *s, float *out);
/* Token ids "1,2,3" (spaces allowed, optionally in [ ]): 0 on success with *ids malloc'ed
 * (free it), -1 on anything else. */
int qkv__cli_read_ids(const char *s, int **ids, int *n);

/* The model folder to use when no --model is given: $QKV_MODEL, else the built-in model
 * (models/qkv-lessons next to the binary's build/ folder, else models/qkv-brown, or an
 * installed copy). Never NULL;
 * the string is static. */
const char *qkv__cli_default_model(void);
/* qkv_model_load, then the tokenizer given by --tokenizer FILE (any command), if any. */
qkv_status qkv__cli_load_model(const char *path, qkv_model **out);

#endif /* QKV_CLI_H */
