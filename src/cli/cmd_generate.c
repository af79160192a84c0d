/* cmd_generate.c -- `qkv generate` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("generate", "not implemented yet");
}
