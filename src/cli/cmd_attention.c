/* cmd_attention.c -- `qkv attention` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_attention(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("attention", "not implemented yet");
}
