/* `lowbit run`: streaming generation from a prompt. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *help =
    "usage: lowbit run -m MODEL -p PROMPT [options]\n"
    "\n"
    "Generates text after PROMPT, printing each token as it is produced, then a\n"
    "timing line on stderr.\n"
    "\n"
    "  -m, --model FILE        GGUF model\n"
    "  -p, --prompt TEXT       prompt (the model's BOS is added as its metadata asks)\n"
    "  -f, --file FILE         read the prompt from a file instead\n"
    "  -n, --n-predict N       tokens to generate (default 128)\n"
    "  -c, --ctx-size N        context length (default: the model's, at most 4096)\n"
    "  -t, --threads N         threads (default: all CPUs)\n"
    LB_CLI_KV_HELP
    "      --temp T            temperature; 0 = greedy (default 0.8)\n"
    "      --top-k K           (default 40; 0 = off)\n"
    "      --top-p P           (default 0.95; 1 = off)\n"
    "      --min-p P           (default 0.05; 0 = off)\n"
    "      --repeat-penalty R  (default 1.0 = off)\n"
    "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n"
    "  -s, --seed S            random seed (default: fixed, so runs repeat)\n"
    "      --no-echo           do not print the prompt before the generated text\n"
    "      --ignore-eos        keep generating past end-of-generation tokens\n";

typedef struct out_state {
    int n;
} out_state;

/* Ctrl-C stops the generation at the next token (the timing line is still
 * printed); a second Ctrl-C kills the process as usual. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL);
}

static bool on_token(const lb_token_event *ev, void *user)
{
    out_state *o = user;
    fwrite(ev->piece, 1, ev->piece_len, stdout);
    fflush(stdout);
    o->n++;
    return !interrupted;
}

int lb_cli_run(int argc, char **argv)
{
    const char *cmd = "run", *model = NULL, *prompt = NULL, *file = NULL;
    lb_gen_params g = lb_gen_default_params();
    lb_session_params sp = lb_session_default_params();
    bool echo = true;
    long n_ctx = 0;
    g.max_tokens = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long l;
        double d;
        int kvf;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); file = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 24, &l)) return 2; g.max_tokens = (int)l; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 24, &n_ctx)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &l)) return 2; sp.n_threads = (int)l; }
        else if (!strcmp(a, "--temp")) { VAL(); if (!lb_cli_float(cmd, a, v, 0, 100, &d)) return 2; g.sampler.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 24, &l)) return 2; g.sampler.top_k = (int)l; }
        else if (!strcmp(a, "--top-p")) { VAL(); if (!lb_cli_float(cmd, a, v, 0, 1, &d)) return 2; g.sampler.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { VAL(); if (!lb_cli_float(cmd, a, v, 0, 1, &d)) return 2; g.sampler.min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { VAL(); if (!lb_cli_float(cmd, a, v, 0.01, 100, &d)) return 2; g.sampler.repeat_penalty = (float)d; }
        else if (!strcmp(a, "--repeat-last-n")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 20, &l)) return 2; g.sampler.repeat_last_n = (int)l; }
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 0x7fffffffL, &l)) return 2; g.sampler.seed = (uint64_t)l; }
        else if (!strcmp(a, "--no-echo")) echo = false;
        else if ((kvf = lb_cli_kv_flag(cmd, argc, argv, &i, &sp)) != 0) { if (kvf < 0) return 2; }
        else if (!strcmp(a, "--ignore-eos")) g.stop_at_eog = false;
        else { fprintf(stderr, "lowbit run: unknown option '%s' (see lowbit run --help)\n", a); return 2; }
#undef VAL
    }
    if (!model || (!prompt && !file)) {
        fprintf(stderr, "lowbit run: -m MODEL and -p PROMPT (or -f FILE) are required\n\n%s", help);
        return 2;
    }
    char *prompt_buf = NULL;
    if (file) {
        size_t len;
        if (!(prompt_buf = lb_cli_read_file(cmd, file, &len)))
            return 1;
        prompt = prompt_buf;
    }
    double load_ms = 0;
    lb_model *m = lb_cli_load(cmd, model, &load_ms);
    if (!m) {
        free(prompt_buf);
        return 1;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    sp.n_ctx = (int)(n_ctx ? n_ctx : (info.n_ctx_train < 4096 ? info.n_ctx_train : 4096));
    lb_session *s = NULL;
    lb_status st = lb_session_new(m, &sp, &s);
    if (st) {
        fprintf(stderr, "lowbit run: cannot create a session: %s: %s\n", lb_status_str(st), lb_model_last_error(m));
        lb_model_free(m);
        free(prompt_buf);
        return 1;
    }
    if (echo) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    out_state o = {0};
    lb_gen_stats gs;
    signal(SIGINT, on_sigint);
    st = lb_generate(s, prompt, &g, on_token, &o, &gs);
    if (st == LB_ERR_CANCELLED && interrupted)
        st = LB_OK;
    fputc('\n', stdout);
    fflush(stdout);
    int rc = 0;
    if (st) {
        fprintf(stderr, "lowbit run: %s: %s\n", lb_status_str(st), lb_session_last_error(s));
        rc = 1;
    }
    double pp = gs.prompt_ms > 0 ? gs.n_prompt * 1000.0 / gs.prompt_ms : 0;
    double tg = gs.gen_ms > 0 ? gs.n_gen * 1000.0 / gs.gen_ms : 0;
    fprintf(stderr,
            "lowbit: load %.1f ms | prompt %d tok, %.1f tok/s | generation %d tok, %.1f tok/s, %.2f ms/token\n",
            load_ms, gs.n_prompt, pp, gs.n_gen, tg, gs.n_gen ? gs.gen_ms / gs.n_gen : 0.0);
    lb_session_free(s);
    lb_model_free(m);
    free(prompt_buf);
    return rc;
}
