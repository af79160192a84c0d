/* cmd_serve.c -- `qkv serve` (not built yet: its issue replaces this file). */
#include "cli.h"

int qkv__cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qkv__cli_usage_error("serve", "not implemented yet");
}
