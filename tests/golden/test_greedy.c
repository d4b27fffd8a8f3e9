/* Golden test: greedy continuations equal llama.cpp's (../shared/oracles).
 * For each model file and prompt, generate 48 tokens greedily; where the text
 * departs from the oracle, report the first differing token and check it was
 * a near-tie in lowbit's own logits (top two probabilities within 1%) — a
 * divergence that is not a near-tie is a bug.  At least 6 of 8 prompts must
 * match exactly per model.
 * usage: test_greedy ORACLE.json MODELS_DIR [model-file ...] */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

#define N_GEN 48

static int failures = 0, passes = 0;

/* Index of the largest and second largest logit. */
static void top2(const float *l, int n, int *a, int *b)
{
    *a = l[0] >= l[1] ? 0 : 1;
    *b = 1 - *a;
    for (int i = 2; i < n; i++) {
        if (l[i] > l[*a]) {
            *b = *a;
            *a = i;
        } else if (l[i] > l[*b]) {
            *b = i;
        }
    }
}

static void show(const char *label, const char *s, size_t n)
{
    printf("      %s \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    printf("\"\n");
}

/* Returns 1 if the continuation matches exactly, 0 if it diverged at a near
 * tie, -1 if it diverged at a clear decision (a bug). */
static int run_prompt(lb_model *m, lb_session *s, const char *prompt, const char *expect)
{
    lb_model_info info;
    lb_model_get_info(m, &info);
    lb_token toks[1024];
    size_t n = 0;
    if (lb_tokenize(m, prompt, strlen(prompt), true, false, toks, 1024, &n)) {
        printf("    tokenize failed\n");
        return -1;
    }
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    char text[8192];
    size_t tlen = 0, elen = strlen(expect);
    int result = 1;
    lb_session_reset(s);
    lb_status st = lb_session_eval(s, toks, (int)n, logits, true);
    for (int i = 0; i < N_GEN && !st; i++) {
        int a, b;
        top2(logits, info.n_vocab, &a, &b);
        size_t pl;
        const char *p = lb_token_piece(m, a, &pl);
        if (tlen + pl < sizeof text) {
            memcpy(text + tlen, p, pl);
            tlen += pl;
        }
        /* Still a prefix of the oracle text? (the oracle holds the text of 48 tokens) */
        size_t cmp = tlen < elen ? tlen : elen;
        if (memcmp(text, expect, cmp) != 0 || (tlen > elen)) {
            /* Near tie: the top two logits within 1% of each other. */
            double gap = ((double)logits[a] - logits[b]) / fabs((double)logits[a]);
            double p_ratio = exp((double)logits[b] - logits[a]);
            size_t bl;
            const char *bp = lb_token_piece(m, b, &bl);
            size_t off = tlen - pl;
            bool second_matches = off + bl <= elen && memcmp(expect + off, bp, bl) == 0;
            printf("    diverges at generated token %d: lowbit's top two: %d (logit %.4f), %d (logit %.4f): "
                   "logits %.3f%% apart, p2/p1 = %.4f%s\n",
                   i, a, logits[a], b, logits[b], 100 * gap, p_ratio,
                   second_matches ? "; the oracle continues with the runner-up" : "; the oracle continues with neither");
            show("lowbit:", text, tlen);
            show("oracle:", expect, elen);
            result = gap <= 0.01 && second_matches ? 0 : -1;
            break;
        }
        if (i + 1 < N_GEN)
            st = lb_session_eval(s, &a, 1, logits, true);
    }
    if (st) {
        printf("    eval failed: %s\n", lb_session_last_error(s));
        result = -1;
    }
    if (result == 1 && tlen != elen) {
        printf("    text shorter than the oracle's (%zu vs %zu bytes)\n", tlen, elen);
        result = -1;
    }
    free(logits);
    return result;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ORACLE.json MODELS_DIR MODEL_FILE...\n", argv[0]);
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(argv[1], 0, &jerr);
    if (!root) {
        fprintf(stderr, "cannot read %s: %s\n", argv[1], jerr.text);
        return 2;
    }
    for (int f = 3; f < argc; f++) {
        const char *file = argv[f];
        json_t *list = json_object_get(json_object_get(json_object_get(root, "greedy"), "continuations"), file);
        if (!list)
            list = json_object_get(json_object_get(json_object_get(root, "qwen2_model"), "greedy"), file);
        if (!json_is_array(list)) {
            printf("FAIL %s: no greedy oracle\n", file);
            failures++;
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[2], file);
        lb_model *m = NULL;
        if (lb_model_load(path, NULL, &m)) {
            printf("FAIL %s: %s\n", file, lb_last_load_error());
            failures++;
            continue;
        }
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 256;
        lb_session *s = NULL;
        if (lb_session_new(m, &sp, &s)) {
            printf("FAIL %s: session: %s\n", file, lb_model_last_error(m));
            lb_model_free(m);
            failures++;
            continue;
        }
        int exact = 0, ties = 0, bugs = 0;
        size_t i;
        json_t *it;
        json_array_foreach(list, i, it) {
            const char *prompt = json_string_value(json_object_get(it, "prompt"));
            const char *cont = json_string_value(json_object_get(it, "continuation"));
            printf("  %s | %s\n", file, prompt);
            int r = run_prompt(m, s, prompt, cont);
            exact += r == 1;
            ties += r == 0;
            bugs += r < 0;
        }
        bool ok = exact >= 6 && bugs == 0;
        printf("%s %s: %d/%zu exact, %d near-tie divergences, %d clear divergences\n", ok ? "ok  " : "FAIL", file, exact,
               json_array_size(list), ties, bugs);
        ok ? passes++ : failures++;
        lb_session_free(s);
        lb_model_free(m);
    }
    json_decref(root);
    printf("golden greedy: %d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
