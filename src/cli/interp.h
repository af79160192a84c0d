/* interp.h -- what `qkv ablate`, `qkv patch` and `qkv lens` share: reading the sentence
 * (--text or --ids), naming a token (--target " were" or id:N), token text for JSON and the
 * terminal, and a diverging layer x head heatmap. Only src/cli prints. */
#ifndef QKV_CLI_INTERP_H
#define QKV_CLI_INTERP_H

#include "cli.h"

#include <jansson.h>
#include <stdio.h>

/* The sentence: exactly one of text / ids_arg. 0 on success (*ids malloc'ed), else the exit
 * status after printing "qkv CMD: error: ..." (2 for bad input: no tokens, too long, ids out
 * of [0, V), no tokenizer for text). what names the options ("--text/--ids"). */
int qkv__cli_sentence(const char *cmd, const char *what, qkv_model *model, const char *text,
                      const char *ids_arg, int **ids, int *n);

/* A token named on the command line: "id:N" (N in [0, V)), or text that is exactly one token
 * of the model's vocabulary (" were": GPT-2's pieces carry their leading space). 0 on
 * success, else the exit status after printing why (unknown, several tokens, ...). */
int qkv__cli_token(const char *cmd, const char *opt, qkv_model *model, const char *s, int *id);

/* A token as a JSON string (invalid UTF-8 bytes as U+FFFD), or null without a tokenizer. */
json_t *qkv__cli_token_json(qkv_tokenizer *tok, int id);

/* A display label for the terminal (spaces as '·', controls escaped); malloc'ed. */
char *qkv__cli_token_label(qkv_tokenizer *tok, int id);

/* Prints a rows x cols grid of numbers with row/column labels; with color, each cell's
 * background is blue (< 0) or red (> 0), stronger with |value| / max |value|. */
void qkv__cli_heatmap(FILE *f, const char *const *row_labels, int rows,
                      const char *const *col_labels, int cols, const float *vals, int color);

/* Top-k of a row of logits as a JSON array of {"id", "token", "prob"}. */
json_t *qkv__cli_top_json(qkv_tokenizer *tok, const float *logits, int V, int k);

/* Prints a JSON value compactly with a newline; frees it. */
void qkv__cli_print_json(json_t *v);

#endif /* QKV_CLI_INTERP_H */
