/* The training run of `lowbit tune`: calibration windows, the teacher's
 * log-probabilities computed once, Adam steps over shuffled batches with a
 * warm-up and cosine decay, held-out KL on windows never trained on, and the
 * tuned file written from the best held-out point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/logits.h"
#include "tune/tune.h"

lb_tune_params lb_tune_default_params(void)
{
    lb_tune_params p = {0};
    p.ctx = 256;
    p.steps = 200;
    p.batch = 4;
    p.lr = 2e-3f;
    p.warmup = 10;
    p.holdout = 8;
    p.eval_every = 25;
    p.max_windows = 0;
    p.n_threads = 2;
    p.seed = 1;
    p.train_norms = true;
    p.keep_best = true;
    return p;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(int *a, int n, uint64_t *seed)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix(seed) % (uint64_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Rows of logits -> log-probabilities, in place. */
static void log_softmax_rows(float *z, int n, int V)
{
    for (int t = 0; t < n; t++) {
        float *r = z + (int64_t)t * V;
        float lse = (float)lb_log_sum_exp(r, V, NULL);
        for (int i = 0; i < V; i++)
            r[i] -= lse;
    }
}

/* Mean KL per position over the held-out windows. */
static double heldout_kl(lb_tune_state *st, const lb_tune_model *tm, lb_pool *pool, const int32_t *win,
                         const float *tlp, int first, int count, int ctx)
{
    if (count <= 0)
        return 0;
    const int64_t V = tm->hp.n_vocab;
    double s = 0;
    for (int w = first; w < first + count; w++) {
        lb__tune_forward(st, tm, pool, win + (int64_t)w * ctx, ctx);
        s += lb__tune_kl(st, tm, tlp + (int64_t)w * ctx * V, ctx, 0.0f);
    }
    return s / ((double)count * ctx);
}

lb_status lb_tune_run(lb_model *student, lb_model *teacher, const char *calib, size_t calib_len,
                      const lb_tune_params *p, const char *out_path, bool verbose, lb_tune_report *rep, lb_err *err)
{
    memset(rep, 0, sizeof *rep);
    const int ctx = p->ctx;
    const int64_t V = student->hp.n_vocab;
    if (teacher->hp.n_vocab != V || teacher->hp.n_embd != student->hp.n_embd)
        return lb__errf(err, LB_ERR_INVALID_ARG, "teacher and student differ (vocabulary %d vs %lld)",
                        teacher->hp.n_vocab, (long long)V);
    if (ctx < 8 || p->steps < 0 || p->batch < 1 || p->holdout < 0 || !(p->lr > 0))
        return lb__errf(err, LB_ERR_INVALID_ARG, "bad tuning parameters (ctx %d, steps %d, batch %d, lr %g)", ctx,
                        p->steps, p->batch, (double)p->lr);
    double t_start = lb_time_ms();
    lb_model_info info;
    lb_model_get_info(student, &info);
    /* Windows: BOS then ctx - 1 consecutive tokens of text, back to back. */
    size_t cap = calib_len + 16, n_tok = 0;
    int32_t *toks = malloc(cap * sizeof(int32_t));
    if (!toks)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu tokens", cap);
    if (lb_tokenize(student, calib, calib_len, false, false, toks, cap, &n_tok)) {
        free(toks);
        return lb__errf(err, LB_ERR_INVALID_ARG, "cannot tokenize the calibration text");
    }
    int lead = info.bos >= 0 ? 1 : 0, body = ctx - lead;
    int n_win = (int)(n_tok / (size_t)body);
    int n_hold = p->holdout < n_win ? p->holdout : 0;
    int n_train = n_win - n_hold;
    if (p->max_windows > 0 && n_train > p->max_windows)
        n_train = p->max_windows;
    if (n_train < 1) {
        free(toks);
        return lb__errf(err, LB_ERR_INVALID_ARG, "the calibration text gives %d windows of %d tokens (%zu tokens); "
                        "need more than --holdout %d", n_win, ctx, n_tok, p->holdout);
    }
    int n_use = n_train + n_hold;   /* training windows first, then the held-out ones (the text's last) */
    int32_t *win = malloc((size_t)n_use * ctx * sizeof(int32_t));   /* [n_use][ctx] */
    float *tlp = malloc((size_t)n_use * ctx * V * sizeof(float));    /* [n_use][ctx][V] teacher log-probs */
    int *order = malloc((size_t)n_train * sizeof(int));
    float *best = malloc(sizeof(float));
    lb_pool *pool = lb_pool_new(p->n_threads);
    lb_tune_model tm = {0};
    lb_tune_state *st = NULL;
    lb_adam adam = {0};
    lb_status s = !win || !tlp || !order || !best || !pool
                      ? lb__errf(err, LB_ERR_NOMEM, "cannot allocate the teacher cache (%zu MiB)",
                                 (size_t)(((size_t)n_use * ctx * (size_t)V * sizeof(float)) >> 20))
                      : LB_OK;
    for (int w = 0; w < n_use && !s; w++) {
        int src = w < n_train ? w : n_win - n_hold + (w - n_train);
        int32_t *row = win + (int64_t)w * ctx;
        if (lead)
            row[0] = info.bos;
        memcpy(row + lead, toks + (size_t)src * body, (size_t)body * sizeof(int32_t));
    }
    free(toks);
    if (verbose && !s)
        fprintf(stderr, "lowbit tune: %zu calibration tokens -> %d windows of %d: %d for training, %d held out; "
                "teacher log-probs %zu MiB\n", n_tok, n_win, ctx, n_train, n_hold,
                (size_t)(((size_t)n_use * ctx * (size_t)V * sizeof(float)) >> 20));
    /* The teacher runs through the same float forward pass (its weights
     * frozen): faster than the engine's prefill here, and free of the
     * engine's int8 activation rounding. */
    {
        lb_tune_model ttm = {0};
        lb_tune_state *tst = NULL;
        if (!s)
            s = lb__tune_model_init(&ttm, teacher, pool, err);
        if (!s)
            s = lb__tune_state_new(&ttm, ctx, lb_pool_size(pool), &tst, err);
        for (int w = 0; w < n_use && !s; w++) {
            const float *z = lb__tune_forward(tst, &ttm, pool, win + (int64_t)w * ctx, ctx);
            float *dst = tlp + (int64_t)w * ctx * V;
            memcpy(dst, z, (size_t)ctx * V * sizeof(float));
            log_softmax_rows(dst, ctx, (int)V);
        }
        lb__tune_state_free(tst);
        lb__tune_model_free(&ttm);
    }
    if (verbose && !s)
        fprintf(stderr, "lowbit tune: teacher done in %.1f s\n", (lb_time_ms() - t_start) / 1000);
    if (!s)
        s = lb__tune_model_init(&tm, student, pool, err);
    if (!s) {
        tm.train_norms = p->train_norms;
        s = lb__tune_state_new(&tm, ctx, lb_pool_size(pool), &st, err);
    }
    if (!s)
        s = lb__adam_init(&adam, tm.n_params, err);
    if (!s) {
        float *nb = realloc(best, (size_t)tm.n_params * sizeof(float));
        if (nb) {
            best = nb;
            memcpy(best, tm.params, (size_t)tm.n_params * sizeof(float));
        } else {
            s = lb__errf(err, LB_ERR_NOMEM, "cannot allocate a copy of the parameters");
        }
    }
    if (s)
        goto done;
    if (verbose)
        fprintf(stderr, "lowbit tune: %lld log-scales and %lld norm weights; lr %g, %d steps of %d windows\n",
                (long long)tm.n_scales, (long long)(tm.n_params - tm.n_scales), (double)p->lr, p->steps, p->batch);
    double kl0 = heldout_kl(st, &tm, pool, win, tlp, n_train, n_hold, ctx), best_kl = kl0;
    rep->heldout_kl_before = kl0;
    rep->best_step = 0;
    if (verbose)
        fprintf(stderr, "lowbit tune: step 0: held-out KL %.5f\n", kl0);
    for (int i = 0; i < n_train; i++)
        order[i] = i;
    uint64_t seed = p->seed;
    shuffle(order, n_train, &seed);
    int cursor = 0;
    double t_last = lb_time_ms(), loss_acc = 0;
    int loss_n = 0;
    for (int step = 1; step <= p->steps; step++) {
        float lr = p->lr;
        if (step <= p->warmup)
            lr *= (float)step / (float)(p->warmup + 1);
        else {
            double f = (double)(step - p->warmup) / (double)(p->steps - p->warmup > 0 ? p->steps - p->warmup : 1);
            lr *= (float)(0.1 + 0.9 * 0.5 * (1 + cos(M_PI * f)));
        }
        memset(tm.grads, 0, (size_t)tm.n_params * sizeof(float));
        for (int b = 0; b < p->batch; b++) {
            if (cursor == n_train) {
                shuffle(order, n_train, &seed);
                cursor = 0;
            }
            int w = order[cursor++];
            const int32_t *tw = win + (int64_t)w * ctx;
            lb__tune_forward(st, &tm, pool, tw, ctx);
            loss_acc += lb__tune_kl(st, &tm, tlp + (int64_t)w * ctx * V, ctx, 1.0f / ((float)ctx * p->batch)) / ctx;
            loss_n++;
            lb__tune_backward(st, &tm, pool, tw, ctx);
        }
        lb__adam_step(&adam, tm.params, tm.grads, tm.lr_scale, lr);
        lb__tune_model_apply(&tm, pool);
        rep->steps_done = step;
        if (step % p->eval_every == 0 || step == p->steps) {
            double kl = heldout_kl(st, &tm, pool, win, tlp, n_train, n_hold, ctx);
            double now = lb_time_ms();
            if (verbose)
                fprintf(stderr, "lowbit tune: step %d: train KL %.5f, held-out KL %.5f, lr %.2e, %.2f s/step\n", step,
                        loss_acc / (loss_n ? loss_n : 1), kl, (double)lr, (now - t_last) / 1000 / p->eval_every);
            t_last = now;
            loss_acc = 0;
            loss_n = 0;
            if (kl < best_kl || !p->keep_best || n_hold == 0) {
                best_kl = kl;
                rep->best_step = step;
                memcpy(best, tm.params, (size_t)tm.n_params * sizeof(float));
            }
        }
    }
    memcpy(tm.params, best, (size_t)tm.n_params * sizeof(float));
    rep->heldout_kl_after = best_kl;
    rep->n_train_windows = n_train;
    rep->n_heldout_windows = n_hold;
    if (verbose)
        fprintf(stderr, "lowbit tune: held-out KL %.5f -> %.5f (step %d); writing %s\n", kl0, best_kl,
                rep->best_step, out_path);
    {
        const char *keys[] = {"lowbit.tune.steps", "lowbit.tune.best_steps", "lowbit.tune.train_windows",
                              "lowbit.tune.window_tokens", "lowbit.tune.lr", "lowbit.tune.heldout_kl_before",
                              "lowbit.tune.heldout_kl_after"};
        double vals[] = {p->steps, rep->best_step, n_train, ctx, p->lr, kl0, best_kl};
        s = lb__tune_model_write(&tm, out_path, keys, vals, 7, err);
    }
done:
    rep->seconds = (lb_time_ms() - t_start) / 1000;
    lb__adam_free(&adam);
    lb__tune_state_free(st);
    lb__tune_model_free(&tm);
    lb_pool_free(pool);
    free(win);
    free(tlp);
    free(order);
    free(best);
    return s;
}
