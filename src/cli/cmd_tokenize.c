/* `lowbit tokenize`: the token ids and pieces of a text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *help =
    "usage: lowbit tokenize -m MODEL (-p TEXT | -f FILE) [options]\n"
    "\n"
    "  -m, --model FILE   GGUF model (only the vocabulary is used)\n"
    "  -p, --prompt TEXT  text to tokenize\n"
    "  -f, --file FILE    read the text from a file\n"
    "      --ids          print only the ids, space-separated, on one line\n"
    "      --no-bos       do not add BOS/EOS even if the model asks for it\n"
    "      --no-parse-special  treat text like \"<s>\" as plain text\n";

int lb_cli_tokenize(int argc, char **argv)
{
    const char *cmd = "tokenize", *model = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, add_special = true, parse_special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = lb_cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(prompt = lb_cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(file = lb_cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--no-bos")) add_special = false;
        else if (!strcmp(a, "--no-parse-special")) parse_special = false;
        else { fprintf(stderr, "lowbit tokenize: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!model || (!prompt && !file)) {
        fprintf(stderr, "lowbit tokenize: -m MODEL and -p TEXT (or -f FILE) are required\n\n%s", help);
        return 2;
    }
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = lb_cli_read_file(cmd, file, &len)))
            return 1;
        prompt = buf;
    } else {
        len = strlen(prompt);
    }
    lb_model *m = lb_cli_load(cmd, model, NULL);
    if (!m) {
        free(buf);
        return 1;
    }
    size_t cap = len + 16, n = 0;
    lb_token *toks = malloc(cap * sizeof *toks);
    int rc = 0;
    if (!toks || lb_tokenize(m, prompt, len, add_special, parse_special, toks, cap, &n)) {
        fprintf(stderr, "lowbit tokenize: tokenization failed\n");
        rc = 1;
    } else if (ids_only) {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", toks[i]);
        printf("\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = lb_token_piece(m, toks[i], &pl);
            printf("%6d -> ", toks[i]);
            lb_cli_json_str(stdout, p ? p : "", p ? pl : 0);
            printf("\n");
        }
        fprintf(stderr, "%zu tokens\n", n);
    }
    free(toks);
    lb_model_free(m);
    free(buf);
    return rc;
}
