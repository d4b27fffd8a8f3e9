/* Shared pieces of the `lowbit` command-line tool: subcommand entry points
 * and strict argument parsing (a bad number is an error, never a zero). */
#ifndef LB_CLI_CLI_H
#define LB_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lowbit.h"

int lb_cli_run(int argc, char **argv);
int lb_cli_perplexity(int argc, char **argv);
int lb_cli_info(int argc, char **argv);
int lb_cli_tokenize(int argc, char **argv);
int lb_cli_quantize(int argc, char **argv);
int lb_cli_imatrix(int argc, char **argv);
int lb_cli_eval(int argc, char **argv);
int lb_cli_serve(int argc, char **argv);
int lb_cli_plan(int argc, char **argv);
int lb_cli_tune(int argc, char **argv);

/* Parsers: return false after printing "lowbit <cmd>: bad value for FLAG: ..." */
bool lb_cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
bool lb_cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out);
/* The value after flag argv[*i]; advances *i.  Prints an error and returns NULL when missing. */
const char *lb_cli_value(const char *cmd, int argc, char **argv, int *i);

/* The KV cache flags shared by run, perplexity and serve: --kv-k TYPE,
 * --kv-v TYPE, --window W, --sinks S, written into *sp.  Returns 1 when
 * argv[*i] was one of them (and advances *i past its value), 0 when it is
 * not, -1 after printing an error. */
int lb_cli_kv_flag(const char *cmd, int argc, char **argv, int *i, lb_session_params *sp);
#define LB_CLI_KV_HELP \
    "      --kv-k TYPE         KV cache type of keys: f16 (default), q8, q4, q3, q2\n" \
    "      --kv-v TYPE         KV cache type of values (same choices)\n" \
    "      --window W          keep only the newest W positions (+ the sinks): runs past\n" \
    "                          the context in constant memory (quantized caches round W up\n" \
    "                          to 128-token groups and keep up to 128 more)\n" \
    "      --sinks S           with --window, also keep the first S positions (default 0)\n"

/* Loads a model, printing a clear error (and a progress bar on a terminal). */
lb_model *lb_cli_load(const char *cmd, const char *path, double *load_ms);

/* Writes s (len bytes) as a JSON string literal, escaped. */
void lb_cli_json_str(FILE *f, const char *s, size_t len);

/* Reads a whole file into a NUL-terminated buffer; NULL (with a message) on failure. */
char *lb_cli_read_file(const char *cmd, const char *path, size_t *len);

#endif
