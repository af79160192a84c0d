/* cmd_vocab.c -- `qkv vocab` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_vocab(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("vocab", "not implemented yet");
}
