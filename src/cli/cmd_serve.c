/* `lowbit serve`: parse the flags, load the model and run the HTTP server until SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "server/server.h"

static const char *help =
    "usage: lowbit serve -m MODEL [options]\n"
    "\n"
    "Serves the model over HTTP: OpenAI-compatible /v1/completions and\n"
    "/v1/chat/completions (SSE when \"stream\": true), /v1/models, /health and\n"
    "/metrics (Prometheus).  Stops cleanly on SIGINT or SIGTERM.  See docs/server.md.\n"
    "\n"
    "  -m, --model FILE      GGUF model\n"
    "      --host ADDR       address to listen on (default 127.0.0.1: this machine only)\n"
    "      --port N          port (default 8080; 0 = any free port, printed at start)\n"
    "      --api-key KEY     require 'Authorization: Bearer KEY' on everything but /health\n"
    "                        (also read from $LOWBIT_API_KEY, which keeps it out of ps)\n"
    "  -c, --ctx-size N      context per slot (default: the model's, at most 4096)\n"
    "  -t, --threads N       threads for inference (default: all CPUs)\n"
    "      --parallel N      sessions decoded together in one batched step (default 1)\n"
    "      --queue N         requests that may wait for a slot; more get 429 (default 16)\n"
    "      --max-tokens N    default and upper limit of a request's max_tokens (default 512)\n"
    "      --max-body BYTES  largest request body; larger gets 413 (default 1048576)\n"
    "      --timeout S       a generation request's whole time, queue included (default 300)\n"
    "      --web-root DIR    serve static files (the chat page) from DIR at / (default: the\n"
    "                        repository's www/, two levels above the binary, if there; \"\" = none)\n"
    "      --cors ORIGIN     allow browsers on ORIGIN (or *) to call the API (default: off,\n"
    "                        no Access-Control-* headers at all)\n"
    "      --io-timeout S    headers must arrive, and each socket read or write finish,\n"
    "                        within S seconds (default 30; bounds slowloris clients)\n"
    "      --name NAME       the model id reported to clients (default: general.name or the file name)\n"
    "      --no-prompt-cache evaluate every prompt in full (default: a prompt starts from the\n"
    "                        longest prefix of it a slot's KV cache or the prompt store holds;\n"
    "                        F16 caches without --window only)\n"
    "      --prompt-store MB keys and values kept after their slot took another request, for\n"
    "                        prompts that begin the same way later (default 128; 0 = none)\n"
    LB_CLI_KV_HELP;

static volatile sig_atomic_t stop_flag;

/* The chat page ships in the repository's www/; a binary in build/<kind>/ finds it two levels up. */
static const char *default_web_root(char *buf, size_t cap)
{
    char exe[PATH_MAX], probe[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    snprintf(probe, sizeof probe, "%s/../../www/index.html", exe);
    if (access(probe, R_OK) || (size_t)snprintf(buf, cap, "%s/../../www", exe) >= cap)
        return NULL;
    return buf;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int lb_cli_serve(int argc, char **argv)
{
    const char *cmd = "serve", *model = NULL, *name = NULL;
    lb_server_params p = lb_server_default_params();
    p.api_key = getenv("LOWBIT_API_KEY");
    if (p.api_key && !*p.api_key)
        p.api_key = NULL;
    long n_ctx = 0;
    lb_session_params kv = lb_session_default_params();   /* only the KV flags are taken from it */
    bool web_root_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long l;
        int kvf;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "--host")) { VAL(); p.host = v; }
        else if (!strcmp(a, "--port")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 65535, &l)) return 2; p.port = (int)l; }
        else if (!strcmp(a, "--api-key")) { VAL(); p.api_key = *v ? v : NULL; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 24, &n_ctx)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &l)) return 2; p.n_threads = (int)l; }
        else if (!strcmp(a, "--parallel")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 64, &l)) return 2; p.parallel = (int)l; }
        else if (!strcmp(a, "--queue")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 4096, &l)) return 2; p.queue = (int)l; }
        else if (!strcmp(a, "--max-tokens")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 1 << 24, &l)) return 2; p.max_tokens = (int)l; }
        else if (!strcmp(a, "--max-body")) { VAL(); if (!lb_cli_int(cmd, a, v, 64, 1L << 30, &l)) return 2; p.max_body = (size_t)l; }
        else if (!strcmp(a, "--timeout")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 86400, &l)) return 2; p.timeout_s = (int)l; }
        else if (!strcmp(a, "--web-root")) { VAL(); p.web_root = v; web_root_set = true; }
        else if (!strcmp(a, "--cors")) { VAL(); p.cors = *v ? v : NULL; }
        else if (!strcmp(a, "--io-timeout")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 3600, &l)) return 2; p.io_timeout_s = (int)l; }
        else if (!strcmp(a, "--name")) { VAL(); name = v; }
        else if (!strcmp(a, "--no-prompt-cache")) p.prompt_cache = false;
        else if (!strcmp(a, "--prompt-store")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 1 << 20, &l)) return 2; p.prompt_store = (size_t)l << 20; }
        else if ((kvf = lb_cli_kv_flag(cmd, argc, argv, &i, &kv)) != 0) { if (kvf < 0) return 2; }
        else { fprintf(stderr, "lowbit serve: unknown option '%s' (see lowbit serve --help)\n", a); return 2; }
#undef VAL
    }
    if (!model) {
        fprintf(stderr, "lowbit serve: -m MODEL is required\n\n%s", help);
        return 2;
    }
    lb_model *m = lb_cli_load(cmd, model, NULL);
    if (!m)
        return 1;
    lb_model_info info;
    lb_model_get_info(m, &info);
    p.kv_k = kv.kv_type_k;
    p.kv_v = kv.kv_type_v;
    p.n_window = kv.n_window;
    p.n_sinks = kv.n_sinks;
    p.n_ctx = (int)(n_ctx ? n_ctx : (info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096));
    if (!name) {
        name = info.name && *info.name ? info.name : model;
        const char *slash = strrchr(name, '/');
        if (slash && slash[1])
            name = slash + 1;
    }
    p.model_name = name;
    char www[PATH_MAX];
    if (!web_root_set)
        p.web_root = default_web_root(www, sizeof www);
    else if (p.web_root && !*p.web_root)
        p.web_root = NULL;
    /* A client that vanishes mid-write must give an error on that write, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = lb_server_run(m, &p, &stop_flag);
    lb_model_free(m);
    return rc;
}
