/* cmd_tokenize.c -- `qkv tokenize` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("tokenize", "not implemented yet");
}
