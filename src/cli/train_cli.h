/* train_cli.h -- helpers shared by `qkv train`, `qkv grad` and `qkv bench train`
 * (defined in cmd_train.c). */
#ifndef QKV_TRAIN_CLI_H
#define QKV_TRAIN_CLI_H

/* Debian's OpenBLAS does not recognise this CPU and falls back to its SSE3 kernel (5x
 * slower sgemm); it reads OPENBLAS_CORETYPE only when the library loads. When the variable
 * is unset this sets it (SkylakeX with AVX-512, else Haswell with AVX2) and re-executes the
 * binary as `qkv [prefix] argv...` (also setting OMP_WAIT_POLICY=passive unless set); it
 * returns only if nothing had to be done or exec
 * failed. QKV_NO_REEXEC=1 turns it off. */
void qkv__cli_blas_reexec(const char *prefix, int argc, char **argv);

/* Strict number parsing for options: 0 on success, else prints a usage error. */
int qkv__cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int qkv__cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                         double *out);

#endif
