/* `lowbit`: the command-line entry point, dispatching to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "lowbit %d.%d.%d — low-bit LLM inference\n"
            "\n"
            "usage: lowbit <command> [options]\n"
            "\n"
            "commands:\n"
            "  run         generate text from a prompt, streaming tokens to stdout\n"
            "  perplexity  measure perplexity on a text file (llama.cpp's protocol)\n"
            "  info        show a model's metadata, tensors, types and bits per weight\n"
            "  tokenize    show the tokens of a text\n"
            "  quantize    convert an F16/F32 GGUF to quantized types (q4_K_M, q8_0, ...)\n"
            "  imatrix     gather an importance matrix from calibration text (for quantize --imatrix)\n"
            "  tune        train a quantized model's block scales and norms against its F16 reference\n"
            "  eval        compare a quantized model with its reference: PPL, KL, top-1, bits per weight\n"
            "  serve       an OpenAI-compatible HTTP server with SSE streaming and /metrics\n"
            "  plan        how much context fits in a memory budget, per KV cache type\n"
            "\n"
            "`lowbit <command> --help` describes each command's options.\n",
            LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_PATCH);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lowbit %d.%d.%d\n", LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_PATCH);
        return 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run"))
        return lb_cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "perplexity"))
        return lb_cli_perplexity(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return lb_cli_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize"))
        return lb_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize"))
        return lb_cli_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "imatrix"))
        return lb_cli_imatrix(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune"))
        return lb_cli_tune(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return lb_cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return lb_cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan"))
        return lb_cli_plan(argc - 1, argv + 1);
    fprintf(stderr, "lowbit: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
