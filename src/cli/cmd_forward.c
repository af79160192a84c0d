/* cmd_forward.c -- `qkv forward` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_forward(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("forward", "not implemented yet");
}
