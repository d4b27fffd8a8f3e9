/* `lowbit tune`: end-to-end tuning of a quantized model's block scales and
 * norm weights by distillation from its F16 reference (src/tune/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tune/tune.h"

static const char *help =
    "usage: lowbit tune -m QUANT.gguf --ref F16.gguf -f CALIB.txt -o OUT.gguf [options]\n"
    "\n"
    "Keeps QUANT's integer codes and trains, by distillation from REF on calibration\n"
    "text, one multiplicative factor exp(s) per quantization block of every quantized\n"
    "weight (applied to the block's d and dmin / m) and the RMSNorm weights, to\n"
    "minimize KL(REF || model) at every position.  OUT is QUANT with the tuned scales\n"
    "and norms: same types, same size.  Never tune on the text you evaluate on.\n"
    "\n"
    "  -m, --model FILE     the quantized model (llama architecture)\n"
    "      --ref FILE       the reference (teacher) it was quantized from\n"
    "  -f, --file FILE      calibration text\n"
    "  -o, --output FILE    the tuned model to write\n"
    "      --steps N        optimizer steps (default 200)\n"
    "      --ctx N          tokens per window, BOS included (default 256)\n"
    "      --batch B        windows per step (default 4)\n"
    "      --lr X           peak learning rate (default 0.002; warm-up, then cosine to lr/10)\n"
    "      --warmup N       warm-up steps (default 10)\n"
    "      --holdout K      windows at the end of the text held out for validation (default 8)\n"
    "      --eval-every N   held-out KL every N steps (default 25); the best point is written\n"
    "      --windows N      use at most N training windows (default: all)\n"
    "      --no-norms       train the block scales only\n"
    "      --seed N         window order (default 1)\n"
    "  -t, --threads N      threads (default 2)\n"
    "\n"
    "Progress (step, training KL, held-out KL, seconds per step) goes to stderr.\n";

int lb_cli_tune(int argc, char **argv)
{
    const char *cmd = "tune", *model_path = NULL, *ref_path = NULL, *calib_path = NULL, *out_path = NULL;
    lb_tune_params p = lb_tune_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long n;
        double x;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
#define INT(lo, hi, dst) do { VAL(); if (!lb_cli_int(cmd, a, v, lo, hi, &n)) return 2; dst = (int)n; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "--ref")) { VAL(); ref_path = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); calib_path = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); out_path = v; }
        else if (!strcmp(a, "--steps")) INT(0, 1000000, p.steps);
        else if (!strcmp(a, "--ctx")) INT(8, 4096, p.ctx);
        else if (!strcmp(a, "--batch")) INT(1, 1024, p.batch);
        else if (!strcmp(a, "--warmup")) INT(0, 1000000, p.warmup);
        else if (!strcmp(a, "--holdout")) INT(0, 100000, p.holdout);
        else if (!strcmp(a, "--eval-every")) INT(1, 1000000, p.eval_every);
        else if (!strcmp(a, "--windows")) INT(1, 10000000, p.max_windows);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT(1, 256, p.n_threads);
        else if (!strcmp(a, "--seed")) { VAL(); if (!lb_cli_int(cmd, a, v, 0, 0x7fffffffL, &n)) return 2; p.seed = (uint64_t)n; }
        else if (!strcmp(a, "--lr")) { VAL(); if (!lb_cli_float(cmd, a, v, 1e-7, 1.0, &x)) return 2; p.lr = (float)x; }
        else if (!strcmp(a, "--no-norms")) p.train_norms = false;
        else { fprintf(stderr, "lowbit tune: unknown argument '%s' (see --help)\n", a); return 2; }
#undef INT
#undef VAL
    }
    if (!model_path || !ref_path || !calib_path || !out_path) {
        fprintf(stderr, "lowbit tune: -m, --ref, -f and -o are required\n\n%s", help);
        return 2;
    }
    size_t len = 0;
    char *text = lb_cli_read_file(cmd, calib_path, &len);
    if (!text)
        return 1;
    lb_model *student = lb_cli_load(cmd, model_path, NULL);
    lb_model *teacher = student ? lb_cli_load(cmd, ref_path, NULL) : NULL;
    int rc = 1;
    if (student && teacher) {
        lb_tune_report rep;
        lb_err err = {0};
        lb_status st = lb_tune_run(student, teacher, text, len, &p, out_path, true, &rep, &err);
        if (st) {
            fprintf(stderr, "lowbit tune: %s: %s\n", lb_status_str(st), err.msg);
        } else {
            printf("tuned %s -> %s: held-out KL %.5f -> %.5f (best at step %d of %d), %d training windows, %.0f s\n",
                   model_path, out_path, rep.heldout_kl_before, rep.heldout_kl_after, rep.best_step, rep.steps_done,
                   rep.n_train_windows, rep.seconds);
            rc = 0;
        }
    }
    lb_model_free(teacher);
    lb_model_free(student);
    free(text);
    return rc;
}
